// Faults injected for real into one lab server (test/lab/faults.test.ts): a wrapper first on the
// agent's PATH, a full state directory, the xtables lock held, a killed watchdog, a simulated
// reboot, other software's chains. Each acts inside that server's own mount and network namespaces
// (through LabHost.exec, or `ip netns exec` for reading rules), never on the machine itself; a
// server's namespaces die with the lab, so whatever is left there goes at teardown.
import {randomUUID} from 'node:crypto';
import {readFileSync} from 'node:fs';
import type {LabHost} from '../../../source/lab/lab.js';
import {killAndWait, namespacePids} from '../../../source/lab/namespaces.js';
import {run} from '../../../source/lab/process.js';

/** First on the agent's PATH (/usr/local is overlaid per server: a wrapper there is this server's only). */
export const WRAPPER_DIR = '/usr/local/sbin';
/** Where the agent keeps its state and snapshots. */
export const STATE_DIR = '/var/lib/isolate-wizard';
/** A page of tmpfs: the unit a full file system refuses. */
const PAGE = 4096;

async function checked(host: LabHost, argv: string[], input?: string): Promise<string> {
  const output = await host.exec(argv, input === undefined ? {} : {input});
  if (output.code !== 0) throw new Error(`${host.name}: ${argv.join(' ')} exited ${output.code}: ${output.stderr.trim()}`);
  return output.stdout;
}

async function shell(host: LabHost, script: string, ...args: string[]): Promise<string> {
  return checked(host, ['sh', '-c', script, 'sh', ...args]);
}

/** `binary` on this server is `script` (a sh script; the real program stays at /usr/sbin/`binary`). */
export async function installWrapper(host: LabHost, binary: string, script: string): Promise<void> {
  if (!/^[a-z0-9][a-z0-9.-]*$/.test(binary)) throw new Error(`installWrapper: bad program name ${binary}`);
  await checked(host, ['sh', '-c', 'cat > "$1" && chmod 755 "$1"', 'sh', `${WRAPPER_DIR}/${binary}`], script);
}

/** Every wrapper and stand-in of this server gone. */
export async function removeWrappers(host: LabHost): Promise<void> {
  await shell(host, `rm -rf ${WRAPPER_DIR}/*`);
}

/**
 * Wrappers for iptables-restore and ip6tables-restore that turn one load into a failed restore:
 * the first family loaded passes, the other family's load fails (so the agent must put the first
 * back), and while `/run/iw-fault/hold` exists every later call of the first family fails too
 * (the restore, its retries). `--test` calls always pass through. Order-blind: whichever family
 * the agent loads first is the one left changed. `releaseRestore` lets the restores succeed.
 */
export const FLAKY_RESTORE = `#!/bin/sh
case $0 in */ip6tables-restore) me=ip6tables-restore ;; *) me=iptables-restore ;; esac
real=/usr/sbin/$me
for a; do case $a in --test|-t) exec "$real" "$@" ;; esac; done
mkdir -p /run/iw-fault
exec 8>/run/iw-fault/lock && flock 8 || exit 1
n=$(cat /run/iw-fault/calls 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > /run/iw-fault/calls
[ "$n" != 1 ] || echo "$me" > /run/iw-fault/first
first=$(cat /run/iw-fault/first)
exec 8>&-
why=
if [ "$n" = 2 ] && [ "$first" != "$me" ]; then why="the load of the second family"
elif [ "$n" -gt 1 ] && [ "$first" = "$me" ] && [ -e /run/iw-fault/hold ]; then why="restore held"; fi
echo "$n $me $* \${why:-passed}" >> /run/iw-fault/log
[ -z "$why" ] || { cat > /dev/null; echo "$me: line 1 failed (fault injected: $why)" >&2; exit 1; }
exec "$real" "$@"
`;

export async function installFlakyRestore(host: LabHost): Promise<void> {
  await shell(host, 'rm -rf /run/iw-fault && mkdir -p /run/iw-fault && : > /run/iw-fault/hold');
  for (const binary of ['iptables-restore', 'ip6tables-restore']) await installWrapper(host, binary, FLAKY_RESTORE);
}

/** From now on the flaky restore passes. */
export async function releaseRestore(host: LabHost): Promise<void> {
  await shell(host, 'rm -f /run/iw-fault/hold');
}

/** The calls the flaky restore saw: "N program args" per line. */
export async function flakyRestoreLog(host: LabHost): Promise<string> {
  return shell(host, 'cat /run/iw-fault/log 2>/dev/null; true');
}

/** `program` on this server fails every call, saying so on stderr. */
export async function installFailing(host: LabHost, program: string): Promise<void> {
  await installWrapper(host, program, `#!/bin/sh\necho "${program}: fault injected: cannot read the tables" >&2\nexit 1\n`);
}

/**
 * This server's iptables, ip6tables and their -save/-restore are iptables-legacy, as an older
 * iptables has them: without `-w`/`--wait`, a call that needs the xtables lock fails at once when
 * someone holds it (the report; this machine's iptables-legacy 1.8.9 waits by default, so
 * a wrapper plays the older behaviour, then runs the real legacy program). False when
 * iptables-legacy is not installed on this machine.
 */
export async function useLegacyIptables(host: LabHost): Promise<boolean> {
  if ((await host.exec(['test', '-x', '/usr/sbin/xtables-legacy-multi'])).code !== 0) return false;
  for (const program of ['iptables', 'ip6tables', 'iptables-restore', 'ip6tables-restore']) {
    const real = `/usr/sbin/${program.replace(/^(ip6?tables)/, '$1-legacy')}`;
    await installWrapper(
      host,
      program,
      `#!/bin/sh\nfor a; do case $a in -w|-w*|--wait|--wait=*) exec ${real} "$@" ;; esac; done\n` +
        `if ! flock -n /run/xtables.lock true; then\n` +
        `  echo "Another app is currently holding the xtables lock. Perhaps you want to use the -w option?" >&2\n  exit 4\nfi\n` +
        `exec ${real} "$@"\n`,
    );
  }
  await shell(host, `ln -sf /usr/sbin/iptables-legacy-save ${WRAPPER_DIR}/iptables-save && ln -sf /usr/sbin/ip6tables-legacy-save ${WRAPPER_DIR}/ip6tables-save`);
  return true;
}

/**
 * Empties the legacy tables this server holds (no legacy rules left to mix with nft ones). Only
 * tables that exist in its network namespace (/proc/net/ip*_tables_names) are touched: naming
 * another would create it. The tables themselves stay until the namespace goes.
 */
export async function resetLegacyTables(host: LabHost): Promise<void> {
  await shell(
    host,
    'for pair in ip_tables_names:iptables-legacy ip6_tables_names:ip6tables-legacy; do ' +
      'names=/proc/net/${pair%%:*} c=/usr/sbin/${pair#*:}; [ -r "$names" ] && [ -x "$c" ] || continue; ' +
      'for t in $(cat "$names"); do "$c" -t "$t" -F && "$c" -t "$t" -X || exit 1; ' +
      'if [ "$t" = filter ]; then for ch in INPUT FORWARD OUTPUT; do "$c" -t filter -P "$ch" ACCEPT || exit 1; done; fi; done; done',
  );
}

export interface HeldLock {
  /** Lets go of the lock (kills the holder) and waits for it to be gone. */
  release(): Promise<void>;
}

/** Holds the xtables lock (flock on /run/xtables.lock, in this server's private /run) until released. */
export async function holdXtablesLock(host: LabHost): Promise<HeldLock> {
  // The holder is a shell that takes the lock on its fd 8 and becomes `sleep`: killing it frees the lock.
  const pid = Number(
    (await shell(host, 'sh -c "exec 8>/run/xtables.lock && flock 8 && exec sleep 600" </dev/null >/dev/null 2>&1 & echo $!')).trim(),
  );
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`${host.name}: the xtables lock holder did not start`);
  const release = async (): Promise<void> => {
    killAndWait([pid]);
  };
  for (let tries = 0; ; tries++) {
    if ((await host.exec(['flock', '-n', '/run/xtables.lock', 'true'])).code !== 0) return {release};
    if (tries > 50) {
      await release();
      throw new Error(`${host.name}: /run/xtables.lock is not held`);
    }
    await new Promise((done) => setTimeout(done, 100));
  }
}

/**
 * A size-limited tmpfs over `path` in this server (hiding what is there until `unmountTmpfs`).
 * `bytes` is rounded to pages.
 */
export async function mountSmallTmpfs(host: LabHost, path: string, bytes: number): Promise<void> {
  const size = Math.ceil(bytes / PAGE) * PAGE;
  await checked(host, ['mount', '-t', 'tmpfs', '-o', `size=${size},mode=755`, 'iw-lab-full', path]);
}

/** Unmounts the small tmpfs of `mountSmallTmpfs` (what it hid shows again). */
export async function unmountTmpfs(host: LabHost, path: string): Promise<void> {
  await shell(host, 'while grep -q "^iw-lab-full $1 " /proc/self/mounts; do umount "$1" || exit 1; done', path);
}

/**
 * Fills the file system of `path` (a small tmpfs) until exactly `leaveBytes` (rounded up to pages)
 * stay free: a file needing one more page then fails with "No space left on device". Appends
 * inside a file's last page still succeed, as on any full file system.
 */
export async function fillUp(host: LabHost, path: string, leaveBytes = 0): Promise<void> {
  const leave = Math.ceil(leaveBytes / PAGE) * PAGE;
  const free = await freeBytes(host, path);
  if (free < leave) throw new Error(`${host.name}: only ${free} bytes free in ${path}, cannot leave ${leave}`);
  await shell(host, 'head -c "$2" /dev/zero > "$1/iw-filler"', path, String(free - leave));
  const left = await freeBytes(host, path);
  if (left !== leave) throw new Error(`${host.name}: ${path} has ${left} bytes free after filling, wanted ${leave}`);
}

async function freeBytes(host: LabHost, path: string): Promise<number> {
  const [blocks, blockSize] = (await checked(host, ['stat', '-f', '-c', '%a %S', path])).trim().split(' ').map(Number);
  return (blocks ?? 0) * (blockSize ?? 0);
}

/** Removes what `fillUp` wrote. */
export async function freeUp(host: LabHost, path: string): Promise<void> {
  await shell(host, 'rm -f "$1/iw-filler"', path);
}

/** Pids of this server's agent processes (its watchdogs, any op still running): their command line names the agent. */
export function agentPids(host: LabHost): number[] {
  return namespacePids(host.netns).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`${STATE_DIR}/agent.sh`);
    } catch {
      return false;
    }
  });
}

/** Kills this server's watchdog (and any agent process), as a crash or a power cut would. Returns the pids killed. */
export function killWatchdog(host: LabHost): number[] {
  const pids = agentPids(host);
  killAndWait(pids);
  return pids;
}

/** What a boot-time loader left: no filter table at all (a fresh nf_tables host), or `rules`. */
export type BootRules = 'none' | {readonly v4: string; readonly v6: string};

/**
 * A reboot in the middle of a countdown, as the server would come back from one: the watchdog
 * gone, the firewall reset (to no filter table, or to what a boot-time loader puts back), and a
 * new boot id (a file bind-mounted over /proc/sys/kernel/random/boot_id in this server's mount
 * namespace only). Returns the new boot id.
 */
export async function fakeReboot(host: LabHost, rules: BootRules): Promise<string> {
  killWatchdog(host);
  await setFilterRules(host, rules);
  const bootId = randomUUID();
  await shell(
    host,
    'printf "%s\\n" "$1" > /run/iw-fake-boot_id && mount --bind /run/iw-fake-boot_id /proc/sys/kernel/random/boot_id',
    bootId,
  );
  const seen = (await checked(host, ['cat', '/proc/sys/kernel/random/boot_id'])).trim();
  if (seen !== bootId) throw new Error(`${host.name}: boot id is ${seen}, wanted ${bootId}`);
  return bootId;
}

/** Back to the machine's boot id (every fake one unmounted). */
export async function undoFakeReboots(host: LabHost): Promise<void> {
  await shell(host, 'while grep -q " /proc/sys/kernel/random/boot_id " /proc/self/mounts; do umount /proc/sys/kernel/random/boot_id || exit 1; done');
}

/** The filter tables (nf_tables backend, the lab's default) set to `rules`, or removed ('none'); real binaries, past any wrapper. */
export async function setFilterRules(host: LabHost, rules: BootRules): Promise<void> {
  await shell(host, 'nft delete table ip filter 2>/dev/null; nft delete table ip6 filter 2>/dev/null; true');
  if (rules === 'none') return;
  await checked(host, ['/usr/sbin/iptables-restore'], rules.v4);
  await checked(host, ['/usr/sbin/ip6tables-restore'], rules.v6);
}

/** A fail2ban ban and a Docker chain, as those programs add them (real binaries, past any wrapper). */
export interface ForeignChains {
  /** Banned from ssh (fail2ban's f2b-sshd jail): an IPv4 and an IPv6 address. */
  readonly banV4: string;
  readonly banV6: string;
}

/** The rules addForeignChains adds, as liveFilter reads them (filter table, no counters). */
export function foreignLines(chains: ForeignChains): {v4: string[]; v6: string[]} {
  const f2b = (ban: string, reject: string): string[] => [
    ':f2b-sshd -',
    '-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd',
    `-A f2b-sshd -s ${ban} -j REJECT --reject-with ${reject}`,
    '-A f2b-sshd -j RETURN',
  ];
  return {
    v4: [
      ...f2b(`${chains.banV4}/32`, 'icmp-port-unreachable'),
      ':DOCKER -',
      '-A FORWARD -o docker0 -j DOCKER',
      '-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT',
    ],
    v6: f2b(`${chains.banV6}/128`, 'icmp6-port-unreachable'),
  };
}

export async function addForeignChains(host: LabHost, chains: ForeignChains): Promise<void> {
  const f2b = (tool: string, ban: string, reject: string): string =>
    `/usr/sbin/${tool} -N f2b-sshd && /usr/sbin/${tool} -A f2b-sshd -s ${ban} -j REJECT --reject-with ${reject} && ` +
    `/usr/sbin/${tool} -A f2b-sshd -j RETURN && /usr/sbin/${tool} -I INPUT 1 -p tcp -m multiport --dports 22 -j f2b-sshd`;
  await shell(
    host,
    [
      f2b('iptables', `${chains.banV4}/32`, 'icmp-port-unreachable'),
      f2b('ip6tables', `${chains.banV6}/128`, 'icmp6-port-unreachable'),
      '/usr/sbin/iptables -N DOCKER',
      '/usr/sbin/iptables -A FORWARD -o docker0 -j DOCKER',
      '/usr/sbin/iptables -A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT',
    ].join(' && '),
  );
}

/**
 * netfilter-persistent "installed" on this server (its command on PATH): a confirm then writes
 * /etc/iptables/rules.v4 and rules.v6. Only the boot-time loader's presence is faked; the files
 * are real.
 */
export async function installPersistenceStandIn(host: LabHost): Promise<void> {
  await installWrapper(host, 'netfilter-persistent', '#!/bin/sh\nexit 0\n');
}

/**
 * ufw "installed": its command on PATH (reports itself inactive) and its dpkg status entry, plus
 * apt-get and debconf-set-selections stand-ins that record what they are asked in
 * /var/log/iw-fake-apt (and "install" netfilter-persistent), as in apply.test.ts.
 */
export async function installUfwStandIn(host: LabHost): Promise<void> {
  await installWrapper(host, 'ufw', '#!/bin/sh\necho "Status: inactive"\n');
  await installWrapper(host, 'debconf-set-selections', '#!/bin/sh\ncat >> /var/log/iw-fake-debconf\n');
  await installWrapper(
    host,
    'apt-get',
    '#!/bin/sh\necho "$*" >> /var/log/iw-fake-apt\n' +
      'case " $* " in *" install "*) printf "#!/bin/sh\\nexit 0\\n" > /usr/local/sbin/netfilter-persistent; chmod 755 /usr/local/sbin/netfilter-persistent ;; esac\n',
  );
  await shell(
    host,
    'mkdir -p /var/lib/dpkg /etc/ufw && cp /var/lib/dpkg/status /var/lib/dpkg/status.iw-orig 2>/dev/null; ' +
      'printf "\\nPackage: ufw\\nStatus: install ok installed\\nPriority: optional\\nSection: admin\\nArchitecture: all\\nVersion: 0.36.2-1\\nDescription: program for managing a Netfilter firewall\\n" >> /var/lib/dpkg/status && ' +
      'printf "ENABLED=no\\nLOGLEVEL=low\\n" > /etc/ufw/ufw.conf',
  );
}

export async function removeUfwStandIn(host: LabHost): Promise<void> {
  await shell(
    host,
    'if [ -f /var/lib/dpkg/status.iw-orig ]; then mv -f /var/lib/dpkg/status.iw-orig /var/lib/dpkg/status; fi; ' +
      'rm -rf /etc/ufw /var/log/iw-fake-apt /var/log/iw-fake-debconf',
  );
}

/**
 * The filter table of one family as `iptables-save` prints it, read through `ip netns exec` with
 * the real program (past any wrapper on the server's PATH): comment lines and counters removed;
 * '' when the family has no filter table. `legacy` reads iptables-legacy's tables.
 */
export async function liveFilter(host: LabHost, family: 4 | 6, options: {legacy?: boolean} = {}): Promise<string> {
  const program = `/usr/sbin/${family === 4 ? 'iptables' : 'ip6tables'}${options.legacy ? '-legacy' : ''}-save`;
  const output = await run('ip', ['netns', 'exec', host.netns, program], {timeoutMs: 30_000});
  if (output.code !== 0) throw new Error(`${host.name}: ${program} exited ${output.code}: ${output.stderr.trim()}`);
  const lines: string[] = [];
  let inFilter = false;
  for (const line of output.stdout.split('\n')) {
    if (line.startsWith('#')) continue;
    if (line.startsWith('*')) inFilter = line === '*filter';
    if (inFilter) lines.push(line.replace(/ \[\d+:\d+\]$/, ''));
    if (line === 'COMMIT') inFilter = false;
  }
  return lines.join('\n');
}

/** Every table of one family, exactly as `iptables-save` prints it but for its dated comment lines and the packet counters. */
export async function liveTables(host: LabHost, family: 4 | 6): Promise<string> {
  const program = `/usr/sbin/${family === 4 ? 'iptables' : 'ip6tables'}-save`;
  const output = await run('ip', ['netns', 'exec', host.netns, program], {timeoutMs: 30_000});
  if (output.code !== 0) throw new Error(`${host.name}: ${program} exited ${output.code}: ${output.stderr.trim()}`);
  return output.stdout
    .split('\n')
    .filter((line) => !line.startsWith('#'))
    .map((line) => line.replace(/ \[\d+:\d+\]$/, ''))
    .join('\n');
}
