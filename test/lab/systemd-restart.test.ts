// Our nftables table under a real systemd as PID 1 (issue 12, point 3). A "machine" here is
// /lib/systemd/systemd booted in new pid, mount, network, UTS, IPC and cgroup namespaces made by
// this test: its /etc and /var/lib are overlays whose upper layers are the machine's disk (kept
// from one boot to the next), /run and /tmp are fresh each boot, and its network namespace (with
// its whole ruleset) dies with it. The real apply protocol (applyFleet, the agent, the nftables
// backend) runs inside through a connector that enters those namespaces, so the agent's persist
// step meets systemd itself: it writes our file and unit, enables the unit and starts it.
// Then, on Debian's nftables.service and /etc/nftables.conf (which begins with `flush ruleset`):
// `systemctl restart nftables`, `systemctl reload nftables` (its ExecReload loads the same file)
// and `systemctl reload-or-restart nftables` must leave our table as confirmed; a hand-run
// `nft -f /etc/nftables.conf`, which systemd cannot see, shows in status as our table gone; and a
// boot (a new systemd starting the units enabled in sysinit.target and multi-user.target) must
// bring it back.
// Run: npm run build && npx vitest run --project lab test/lab/systemd-restart.test.ts
import {spawn, type ChildProcess} from 'node:child_process';
import {existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, rmdirSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {hostCandidate} from '../../source/core/backend.js';
import {compileFleet} from '../../source/core/compiler.js';
import {fleetSync} from '../../source/core/drift.js';
import {factsFromInventory, parseInventoryText} from '../../source/core/inventory.js';
import type {HostFacts} from '../../source/core/model.js';
import {applyFleet, statusFleet} from '../../source/remote/fleet-apply.js';
import {LocalState} from '../../source/remote/local-state.js';
import type {Connector, ExecOptions, ExecResult, RemoteHost} from '../../source/remote/types.js';

const SYSTEMD = '/lib/systemd/systemd';
const NFTABLES_UNIT = '/lib/systemd/system/nftables.service';
const FIXTURES = path.join(import.meta.dirname, '..', '..', 'fixtures');
/** Debian 12's /etc/nftables.conf as the nftables package ships it: flush ruleset, then an empty inet filter table. */
const DEBIAN_NFTABLES_CONF = `#!/usr/sbin/nft -f\n\nflush ruleset\n\n${readFileSync(path.join(FIXTURES, 'nft', 'debian-default.nft'), 'utf8')}`;
const MACHINE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Where the cgroup v2 hierarchy is mounted (the machine's systemd gets a subtree of it), if anywhere. */
function cgroup2Mount(): string | undefined {
  if (!existsSync('/proc/self/mounts')) return undefined;
  const line = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .find((entry) => entry.split(' ')[2] === 'cgroup2');
  return line?.split(' ')[1];
}

const CGROUP2 = cgroup2Mount();
const CAN_RUN = process.getuid?.() === 0 && existsSync(SYSTEMD) && existsSync(NFTABLES_UNIT) && CGROUP2 !== undefined;

/**
 * Becomes the machine's PID 1 (argv: disk directory, console fd 3 already open on disk/console.log).
 * The disk's mounts come first: /tmp is then covered by a fresh tmpfs.
 */
const BOOT_SCRIPT = String.raw`set -eu
disk=$1
mount --make-rprivate /
mount -t proc proc /proc
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
mount --bind /sys /sys && mount -o remount,bind,ro /sys
mount -t tmpfs -o mode=755 iw-cgroup /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup
for d in etc var_lib; do mkdir -p "$disk/$d/upper" "$disk/$d/work"; done
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$disk/etc/upper,workdir=$disk/etc/work" /etc
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$disk/var_lib/upper,workdir=$disk/var_lib/work" /var/lib
mount -t tmpfs -o mode=755 iw-run /run
mount -t tmpfs -o mode=1777 iw-tmp /tmp
mount -t tmpfs -o mode=1777 iw-var-tmp /var/tmp
exec env -i container=iw-test PATH=${MACHINE_PATH} ${SYSTEMD} --system --unit=iw-boot.target --log-target=console --log-level=info >&3 2>&3
`;

class Machine {
  private constructor(
    readonly disk: string,
    private readonly cgroup: string,
    private readonly child: ChildProcess,
    readonly pid: number,
  ) {}

  /** Boots systemd on `disk` with iw-boot.target wanting `wanted` (units, as a boot starts what is enabled). */
  static async boot(disk: string, wanted: readonly string[]): Promise<Machine> {
    const units = path.join(disk, 'etc', 'upper', 'systemd', 'system');
    mkdirSync(units, {recursive: true});
    writeFileSync(path.join(units, 'iw-boot.target'), `[Unit]\nDescription=isolate-wizard test boot\n${wanted.length > 0 ? `Wants=${wanted.join(' ')}\n` : ''}`);
    writeFileSync(path.join(disk, 'boot.sh'), BOOT_SCRIPT);
    const cgroup = path.join(CGROUP2 as string, `iw-systemd-${process.pid}-${Date.now()}`);
    mkdirSync(cgroup);
    // The shell moves itself into the new cgroup, then becomes unshare: systemd's cgroup namespace is rooted there.
    const child = spawn(
      'sh',
      ['-c', 'echo $$ > "$1/cgroup.procs" && exec 3>>"$2/console.log" && exec unshare --pid --fork --mount --net --uts --ipc --cgroup bash "$2/boot.sh" "$2"', 'sh', cgroup, disk],
      {stdio: 'ignore', env: {PATH: MACHINE_PATH}},
    );
    const started = Date.now();
    for (;;) {
      const pid = systemdPid(cgroup);
      if (pid !== undefined) {
        const machine = new Machine(disk, cgroup, child, pid);
        // Up: the boot transaction done (its target active), whatever became of each unit.
        for (;;) {
          const state = await machine.exec('systemctl is-active iw-boot.target; systemctl is-system-running');
          if (/^active\n(running|degraded)/.test(state.stdout)) return machine;
          if (Date.now() - started > 60_000) throw new Error(`systemd did not finish booting: ${state.stdout}\n${machine.console()}`);
          await sleep(200);
        }
      }
      if (child.exitCode !== null || Date.now() - started > 30_000) throw new Error(`systemd did not start:\n${readConsole(disk)}`);
      await sleep(100);
    }
  }

  console(): string {
    return readConsole(this.disk);
  }

  /**
   * A shell command inside every namespace of the machine, as root. `reply` as in ExecOptions:
   * offered the output as it grows; its answer is written to stdin, which is then closed.
   */
  exec(command: string, stdin: string | Buffer = '', reply?: ExecOptions['reply']): Promise<ExecResult> {
    return new Promise((resolve) => {
      const child = spawn('nsenter', ['--target', String(this.pid), '--mount', '--pid', '--net', '--uts', '--ipc', '--cgroup', '--', 'sh', '-c', command], {
        env: {PATH: MACHINE_PATH, LC_ALL: 'C'},
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      let asked = false;
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (!reply || asked) return;
        const answer = reply(stdout);
        if (answer === undefined) return;
        asked = true;
        void answer.then((text) => child.stdin.end(text));
      });
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.stdin.on('error', () => undefined);
      if (reply) child.stdin.write(stdin);
      else child.stdin.end(stdin);
      child.on('close', (code, signal) => resolve({code: code ?? 128 + (signal === 'SIGKILL' ? 9 : 15), stdout, stderr}));
    });
  }

  /** Waits until systemd has no job queued or running (a propagated reload outlives the systemctl that caused it). */
  async jobsDone(): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const jobs = await this.exec('systemctl list-jobs --no-legend --no-pager');
      if (jobs.code === 0 && jobs.stdout.trim() === '') return;
      if (Date.now() > deadline) throw new Error(`systemd jobs still queued: ${jobs.stdout}${jobs.stderr}`);
      await sleep(100);
    }
  }

  /** A connector whose every host is this machine (what ssh would run, run here). */
  connector(): Connector {
    const host = (name: string): RemoteHost => ({name, route: `pid ${this.pid}`, exec: (command, options) => this.exec(command, options?.stdin ?? '', options?.reply), close: async () => undefined});
    return {connect: async (target) => host(target.name), closeAll: async () => undefined};
  }

  /** Pulls the plug: PID 1 killed, every namespace (and the ruleset) gone; the disk stays. */
  async powerOff(): Promise<void> {
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    const deadline = Date.now() + 20_000;
    while (this.child.exitCode === null && this.child.signalCode === null && Date.now() < deadline) await sleep(100);
    removeCgroup(this.cgroup);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function readConsole(disk: string): string {
  const file = path.join(disk, 'console.log');
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-40).join('\n') : '(no console output)';
}

/** The machine's PID 1 as the root namespace sees it: the `systemd` process in its cgroup tree. */
function systemdPid(cgroup: string): number | undefined {
  const pids: number[] = [];
  const walk = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const line of readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n')) if (line !== '') pids.push(Number(line));
    for (const entry of readdirSync(dir, {withFileTypes: true})) if (entry.isDirectory()) walk(path.join(dir, entry.name));
  };
  walk(cgroup);
  return pids.find((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'systemd' && readFileSync(`/proc/${pid}/status`, 'utf8').includes('\nNSpid:\t') && /\nNSpid:\t\d+\t1\n/.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
      return false;
    }
  });
}

/** Removes a cgroup and the ones systemd made under it, deepest first (they are empty once it is dead). */
function removeCgroup(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, {withFileTypes: true})) if (entry.isDirectory()) removeCgroup(path.join(dir, entry.name));
  for (let attempt = 0; attempt < 50; attempt += 1) {
    try {
      rmdirSync(dir);
      return;
    } catch {
      // processes still leaving
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    }
  }
}

/** Units enabled (by `systemctl enable` or the agent) in the targets a Debian boot reaches, as the disk holds them. */
function enabledAtBoot(disk: string): string[] {
  const system = path.join(disk, 'etc', 'upper', 'systemd', 'system');
  return ['sysinit.target.wants', 'multi-user.target.wants'].flatMap((wants) => (existsSync(path.join(system, wants)) ? readdirSync(path.join(system, wants)) : []));
}

/** Our table as `nft -j` lists it, without the handles (a table loaded again gets new ones): '' when it is absent. */
async function ourTableJson(machine: Machine): Promise<string> {
  const listed = await machine.exec('nft -j list table inet isolate_wizard');
  if (listed.code !== 0) return '';
  return JSON.stringify(JSON.parse(listed.stdout), (key, value: unknown) => (key === 'handle' ? undefined : value));
}

/** mysql-1 of the seed fleet, as the compiler writes it. */
function mysqlCompiled() {
  const inventory = parseInventoryText(readFileSync(path.join(FIXTURES, 'inventories', 'seed-with-addresses.json'), 'utf8'), 'seed-with-addresses.json');
  const facts = new Map(inventory.hosts.map((host) => [host.name, factsFromInventory(host) as HostFacts]));
  const compiled = compileFleet(inventory, facts).find((host) => host.host === 'mysql-1');
  if (!compiled) throw new Error('no mysql-1');
  return compiled;
}

describe.skipIf(!CAN_RUN)('our nftables table under a real systemd (Debian nftables.service, flush ruleset)', () => {
  let disk = '';
  let machine: Machine | undefined;
  let confirmedTable = '';

  beforeAll(() => {
    disk = mkdtempSync(path.join(tmpdir(), 'iw-systemd-'));
    mkdirSync(path.join(disk, 'etc', 'upper'), {recursive: true});
    writeFileSync(path.join(disk, 'etc', 'upper', 'nftables.conf'), DEBIAN_NFTABLES_CONF);
  });

  afterAll(async () => {
    await machine?.powerOff();
    if (disk !== '') rmSync(disk, {recursive: true, force: true});
  });

  it('the agent installs, enables and starts our unit; systemctl restart nftables (flush ruleset) leaves our table as confirmed', async () => {
    machine = await Machine.boot(disk, []);
    expect((await machine.exec('cat /proc/1/comm')).stdout.trim()).toBe('systemd');
    const enabled = await machine.exec('systemctl enable --now nftables.service && nft list tables');
    expect(enabled.code, enabled.stderr).toBe(0);
    expect(enabled.stdout.trim()).toBe('table inet filter');

    const batch = await applyFleet({
      connector: machine.connector(),
      hosts: [{target: {name: 'mysql-1', ssh: 'mysql-1'}, candidate: hostCandidate(mysqlCompiled(), 'nftables')}],
      timeoutSeconds: 120,
      armCountdown: false,
      confirmAfterVerify: true,
      localState: new LocalState({directory: path.join(disk, 'operator')}),
    });
    expect(batch.confirmed?.map((outcome) => outcome.host)).toEqual(['mysql-1']);
    const unit = await machine.exec('systemctl is-enabled isolate-wizard.service; systemctl is-active isolate-wizard.service; systemctl show -p After -p PartOf isolate-wizard.service');
    expect(unit.stdout).toMatch(/^enabled\nactive\n/);
    expect(unit.stdout).toMatch(/PartOf=nftables\.service/);
    expect(unit.stdout).toMatch(/After=.*nftables\.service/);
    confirmedTable = (await machine.exec('nft list table inet isolate_wizard')).stdout;
    expect(confirmedTable).toMatch(/^table inet isolate_wizard \{[\s\S]*set app_v4 \{[^}]*10\.132\.0\.12/);

    // Something that is nobody's: a flush takes it away, so its absence afterwards proves the flush ran.
    expect((await machine.exec('nft add table ip iw_scratch')).code).toBe(0);
    const restarted = await machine.exec('systemctl restart nftables.service');
    expect(restarted.code, restarted.stderr).toBe(0);
    await machine.jobsDone();
    const after = await machine.exec('nft list tables; systemctl is-active isolate-wizard.service');
    expect(after.stdout).not.toContain('iw_scratch');
    expect(after.stdout).toContain('table inet filter\n');
    expect(after.stdout).toContain('table inet isolate_wizard\n');
    expect(after.stdout).toMatch(/active\n$/);
    expect((await machine.exec('nft list table inet isolate_wizard')).stdout).toBe(confirmedTable);
  }, 300_000);

  it('systemctl reload nftables (flush ruleset again) reloads ours after it, as does reload-or-restart; a hand-run nft -f is drift, and reloading our unit mends it', async () => {
    if (!machine) throw new Error('no machine: the first test did not boot it');
    const running = machine;
    const unit = await running.exec('systemctl show -p ReloadPropagatedFrom isolate-wizard.service');
    expect(unit.stdout).toMatch(/ReloadPropagatedFrom=nftables\.service/);
    const confirmedJson = await ourTableJson(running);
    expect(confirmedJson).toContain('"name":"isolate_wizard"');
    // nftables' own reload made slow before its flush: had ours not waited for it to finish, the
    // flush would come after ours and take our table away.
    const dropIn = '/etc/systemd/system/nftables.service.d/iw-slow-reload.conf';
    const slowed = await running.exec(
      `mkdir -p ${path.dirname(dropIn)} && printf '[Service]\nExecReload=\nExecReload=/bin/sleep 2\nExecReload=/usr/sbin/nft -f /etc/nftables.conf\n' > ${dropIn} && systemctl daemon-reload`,
    );
    expect(slowed.code, slowed.stderr).toBe(0);

    for (const verb of ['reload', 'reload-or-restart']) {
      expect((await running.exec('nft add table ip iw_scratch')).code).toBe(0);
      const reloaded = await running.exec(`systemctl ${verb} nftables.service`);
      expect(reloaded.code, `${verb}: ${reloaded.stderr}`).toBe(0);
      // systemctl waits for nftables' job alone; ours, queued behind it, runs right after.
      await running.jobsDone();
      const after = await running.exec('nft list tables; systemctl is-active nftables.service isolate-wizard.service');
      expect(after.stdout, verb).not.toContain('iw_scratch');
      expect(after.stdout, verb).toBe('table inet filter\ntable inet isolate_wizard\nactive\nactive\n');
      expect(await ourTableJson(running), verb).toBe(confirmedJson);
    }
    expect((await running.exec(`rm ${dropIn} && rmdir ${path.dirname(dropIn)} && systemctl daemon-reload`)).code).toBe(0);

    // By hand, systemd sees nothing: our table is gone, and status says so.
    const byHand = await running.exec('nft -f /etc/nftables.conf && nft list tables');
    expect(byHand.stdout).toBe('table inet filter\n');
    const outcomes = await statusFleet({connector: running.connector(), hosts: [{name: 'mysql-1', ssh: 'mysql-1'}], readDrift: true});
    const [sync] = fleetSync(
      [],
      outcomes.map((outcome) => ({host: outcome.host, managed: outcome.status?.managed ?? false, pending: outcome.status?.pending ?? false, ...(outcome.view ? {view: outcome.view} : {}), ...(outcome.viewError === undefined ? {} : {viewError: outcome.viewError})})),
    );
    expect(sync?.state).toBe('drifted');
    expect(sync?.changes).toContain('nftables: our table inet isolate_wizard is gone (deleted, or the server rebooted without loading it)');
    // What the operator runs then (README): our unit's reload loads our file again.
    const mended = await running.exec('systemctl reload isolate-wizard.service');
    expect(mended.code, mended.stderr).toBe(0);
    expect(await ourTableJson(running)).toBe(confirmedJson);
  }, 300_000);

  it('a boot brings it back: nftables.service loads Debian\'s file, then our unit our table', async () => {
    expect(confirmedTable).not.toBe('');
    await machine?.powerOff();
    // What a boot starts of ours: the units enabled in sysinit.target (nftables) and multi-user.target (ours).
    const wanted = enabledAtBoot(disk);
    expect(wanted.sort()).toEqual(['isolate-wizard.service', 'nftables.service']);
    machine = await Machine.boot(disk, wanted);
    const booted = await machine.exec('nft list tables; systemctl is-active nftables.service isolate-wizard.service');
    expect(booted.stdout, machine.console()).toBe('table inet filter\ntable inet isolate_wizard\nactive\nactive\n');
    expect((await machine.exec('nft list table inet isolate_wizard')).stdout).toBe(confirmedTable);
  }, 300_000);
});
