// The lab's own smoke test: the namespaces, servers, SSH paths and isolation that the other lab
// tests rely on. Run: npx vitest run --project lab test/lab/lab.test.ts
import {existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {spawn, spawnSync, type ChildProcess} from 'node:child_process';
import {connect} from 'node:net';
import {Client} from 'ssh2';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {createLab, DEFAULT_HOSTS, DEPLOY_SUDO_PASSWORD, LOCKED_KEY_PASSPHRASE, type Lab, type LabHost} from '../../source/lab/lab.js';
import {currentOwner, labDirFor, listNamespaces, namespaceFor, sweepAbandonedLabs} from '../../source/lab/namespaces.js';

const packageVersion = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {version: string})
  .version;

function processExists(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function host(lab: Lab, name: string): LabHost {
  const found = lab.hosts.get(name);
  if (!found) throw new Error(`no lab host ${name}`);
  return found;
}

/** The first line a TCP service sends, read from `from`'s side (the listener's banner). */
async function bannerFromOperator(lab: Lab, address: string, port: number): Promise<string> {
  const output = await lab.execOperator([
    'timeout',
    '2',
    'bash',
    '-c',
    'exec 3<>"/dev/tcp/$0/$1"; head -n1 <&3',
    address,
    String(port),
  ]);
  return output.stdout.trim();
}

describe('the default lab (the tutorial fleet)', () => {
  let lab: Lab;
  let createMs = 0;

  beforeAll(async () => {
    const started = Date.now();
    lab = await createLab();
    createMs = Date.now() - started;
    console.info(`lab ${lab.id} created in ${createMs} ms`);
  });

  afterAll(async () => {
    await lab?.teardown();
  });

  it('has the seed fleet on the address plan, plus a private-only tenant', () => {
    expect([...lab.hosts.keys()]).toEqual(DEFAULT_HOSTS.map((spec) => spec.name));
    expect(host(lab, 'tunnel-1')).toMatchObject({publicV4: '203.0.113.10', privateV4: '10.132.0.10', privateV6: 'fd00:132::10'});
    expect(host(lab, 'mysql-2')).toMatchObject({publicV6: '2001:db8:100::15', privateV4: '10.132.0.15', sshPort: 22});
    expect(lab.tenant.privateV4).toBe('10.132.0.99');
    expect(lab.tenant.publicV4).toBeUndefined();
    expect(lab.operator).toMatchObject({v4: '203.0.113.1', v6: '2001:db8:100::1'});
  });

  it('hides nft on mysql-2 only (the iptables-only server), in its own mount namespace; iptables stays', async () => {
    const probe = 'command -v nft || echo none; ls -l /usr/sbin/nft 2>&1 | head -n 1; iptables -V';
    const mysql2 = await host(lab, 'mysql-2').exec(['sh', '-c', probe]);
    expect(mysql2.stdout).toMatch(/^none\n.*No such file or directory\niptables v/);
    for (const name of ['tunnel-1', 'mysql-1']) expect((await host(lab, name).exec(['sh', '-c', 'command -v nft'])).stdout.trim()).toMatch(/\/nft$/);
    expect(existsSync('/usr/sbin/nft') || existsSync('/usr/bin/nft')).toBe(true); // the machine's own is untouched
  });

  it('gives every server eth0 public and eth1 private, default routes via the operator on v4 and v6', async () => {
    const output = await host(lab, 'wordpress-2').exec(['sh', '-c', 'ip -o addr show; ip route show default; ip -6 route show default']);
    expect(output.code).toBe(0);
    expect(output.stdout).toMatch(/eth0\s+inet 203\.0\.113\.13\/24/);
    expect(output.stdout).toMatch(/eth0\s+inet6 2001:db8:100::13\/64/);
    expect(output.stdout).toMatch(/eth1\s+inet 10\.132\.0\.13\/24/);
    expect(output.stdout).toMatch(/eth1\s+inet6 fd00:132::13\/64/);
    expect(output.stdout).toContain('default via 203.0.113.1 dev eth0');
    expect(output.stdout).toContain('default via 2001:db8:100::1 dev eth0');
    const tenant = await lab.tenant.exec(['ip', '-o', 'link', 'show']);
    expect(tenant.stdout).not.toContain('eth0');
    expect(tenant.stdout).toContain('eth1');
  });

  it('reaches every server with OpenSSH from the operator namespace, private ones through tunnel-1', async () => {
    const results = await Promise.all(
      [...lab.hosts.keys()].map((name) => lab.execOperator(['ssh', '-F', lab.sshConfigPath, '-o', 'BatchMode=yes', name, 'hostname'])),
    );
    expect(results.map((result) => result.stdout.trim())).toEqual([...lab.hosts.keys()]);
    const config = readFileSync(lab.sshConfigPath, 'utf8');
    expect(config).toMatch(/Host wordpress-1\n\s+HostName 10\.132\.0\.12\n\s+ProxyJump tunnel-1/);
    // The jump really happened: wordpress-1 saw the connection come from tunnel-1's private address.
    const log = readFileSync(host(lab, 'wordpress-1').sshdLogPath, 'utf8');
    expect(log).toMatch(/Accepted publickey for root from 10\.132\.0\.10 /);
  });

  it('refuses a host key that does not match known_hosts', async () => {
    const wrongKnownHosts = join(lab.dir, 'wrong_known_hosts');
    writeFileSync(wrongKnownHosts, `203.0.113.10 ${host(lab, 'haproxy-www').hostKeyPublic}\n`);
    const output = await lab.execOperator([
      'ssh', '-F', lab.sshConfigPath, '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${wrongKnownHosts}`, 'tunnel-1', 'true',
    ]);
    expect(output.code).not.toBe(0);
    expect(output.stderr).toContain('HOST IDENTIFICATION HAS CHANGED');
  });

  it('logs in with the passphrase-protected key only when given its passphrase', async () => {
    const locked = join(lab.home, '.ssh', 'id_ed25519_locked');
    // Not the lab config: its IdentityFile would add the unencrypted key.
    const ssh = [
      'ssh', '-F', '/dev/null', '-o', `UserKnownHostsFile=${lab.knownHostsPath}`, '-o', 'IdentitiesOnly=yes', '-i', locked,
    ];
    const withoutPassphrase = await lab.execOperator([...ssh, '-o', 'BatchMode=yes', 'root@203.0.113.10', 'true']);
    expect(withoutPassphrase.code).not.toBe(0);
    expect(withoutPassphrase.stderr).toContain('Permission denied (publickey)');
    const askpass = join(lab.dir, 'askpass.sh');
    writeFileSync(askpass, `#!/bin/sh\necho '${LOCKED_KEY_PASSPHRASE}'\n`, {mode: 0o755});
    const withPassphrase = await lab.execOperator([...ssh, 'root@203.0.113.10', 'hostname'], {
      env: {SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force'},
    });
    expect(withPassphrase).toMatchObject({code: 0, stdout: 'tunnel-1\n'});
  });

  it('serves every role port and sshd on v4 and v6 to the operator, each answered by the right server', async () => {
    const checks: Array<Promise<[string, string]>> = [];
    for (const spec of DEFAULT_HOSTS) {
      const server = host(lab, spec.name);
      for (const address of [server.publicV4, server.publicV6]) {
        if (!address) throw new Error(`${spec.name} has no public address`);
        for (const port of spec.listen?.tcp ?? []) {
          checks.push(bannerFromOperator(lab, address, port).then((banner) => [banner, `${spec.name} tcp ${port}`]));
        }
        checks.push(
          lab.canConnect('operator', address, 22).then((open) => [String(open), 'true'] as [string, string]),
        );
      }
    }
    const results = await Promise.all(checks);
    // 10 role ports and 6 sshds, each on v4 and v6.
    expect(results.length).toBe(2 * 10 + 2 * 6);
    for (const [actual, expected] of results) expect(actual).toBe(expected);
  });

  it('serves the fleet private addresses to the tenant, and keeps the operator off the private net', async () => {
    const checks: Array<Promise<boolean>> = [];
    for (const spec of DEFAULT_HOSTS) {
      const server = host(lab, spec.name);
      for (const address of [server.privateV4, server.privateV6]) {
        if (!address) throw new Error(`${spec.name} has no private address`);
        for (const port of [22, ...(spec.listen?.tcp ?? [])]) checks.push(lab.canConnect('tenant', address, port));
      }
    }
    expect(await Promise.all(checks)).not.toContain(false);
    expect(await lab.canConnect('operator', '10.132.0.12', 80)).toBe(false);
    expect(await lab.canConnect('tunnel-1', '10.132.0.99', 80)).toBe(true);
  });

  it('decides a refused or dropped connect within about 2 s', async () => {
    const refusedStart = Date.now();
    expect(await lab.canConnect('operator', '203.0.113.14', 80)).toBe(false); // mysql-1 serves no port 80
    const refusedMs = Date.now() - refusedStart;
    const mysql1 = host(lab, 'mysql-1');
    await mysql1.exec(['iptables', '-I', 'INPUT', '-p', 'tcp', '--dport', '3306', '-j', 'DROP']);
    try {
      const droppedStart = Date.now();
      expect(await lab.canConnect('operator', '203.0.113.14', 3306)).toBe(false);
      const droppedMs = Date.now() - droppedStart;
      console.info(`canConnect: refused decided in ${refusedMs} ms, dropped in ${droppedMs} ms`);
      // The rule lives in mysql-1's namespace only.
      expect(await lab.canConnect('operator', '203.0.113.15', 3306)).toBe(true);
    } finally {
      await mysql1.exec(['iptables', '-D', 'INPUT', '-p', 'tcp', '--dport', '3306', '-j', 'DROP']);
    }
    expect(await lab.canConnect('operator', '203.0.113.14', 3306)).toBe(true);
  });

  it('keeps what is written on one server to that server (/tmp, /run, /etc, /var/lib/isolate-wizard, ...)', async () => {
    const marker = `marker-${lab.id}`;
    const paths = [
      `/tmp/${marker}`,
      `/var/tmp/${marker}`,
      `/run/${marker}`,
      `/var/lib/isolate-wizard/${marker}`,
      `/etc/iptables/${marker}`,
      `/etc/${marker}`,
      `/usr/local/${marker}`,
      `/root/${marker}`,
    ];
    const writer = host(lab, 'wordpress-1');
    const written = await writer.exec(['sh', '-c', 'for path; do echo here > "$path"; done', 'sh', ...paths]);
    expect(written).toMatchObject({code: 0, stderr: ''});
    expect((await writer.exec(['cat', ...paths])).stdout).toBe('here\n'.repeat(paths.length));
    const other = await host(lab, 'wordpress-2').exec(['ls', ...paths]);
    expect(other.code).not.toBe(0);
    for (const path of paths) expect(other.stderr).toContain(`cannot access '${path}'`);
    for (const path of paths) expect(existsSync(path)).toBe(false); // nor on the machine itself
    // Each server starts with empty state dirs of its own.
    const fresh = await host(lab, 'mysql-1').exec(['sh', '-c', 'ls -A /etc/iptables /var/lib/isolate-wizard']);
    expect(fresh.stdout).toBe('/etc/iptables:\n\n/var/lib/isolate-wizard:\n');
  });

  it('has its own host name per server', async () => {
    expect((await host(lab, 'mysql-2').exec(['hostname'])).stdout.trim()).toBe('mysql-2');
    expect((await lab.tenant.exec(['hostname'])).stdout.trim()).toBe('tenant');
  });

  it('lets deploy log in with the key, where sudo demands the password', async () => {
    const ssh = ['ssh', '-F', lab.sshConfigPath, '-o', 'BatchMode=yes', '-l', 'deploy', 'mysql-1'];
    const who = await lab.execOperator([...ssh, 'id -un']);
    expect(who).toMatchObject({code: 0, stdout: 'deploy\n'});
    const withoutPassword = await lab.execOperator([...ssh, 'sudo -n true']);
    expect(withoutPassword.code).not.toBe(0);
    expect(withoutPassword.stderr).toContain('a password is required');
    const withPassword = await lab.execOperator([...ssh, "sudo -S -p '' id -un"], {input: `${DEPLOY_SUDO_PASSWORD}\n`});
    expect(withPassword).toMatchObject({code: 0, stdout: 'root\n', stderr: ''});
    const wrongPassword = await lab.execOperator([...ssh, "sudo -S -p '' true"], {input: 'not-the-password\n'});
    expect(wrongPassword.code).not.toBe(0);
    // Each sudo asks again: a success is not cached for the next command.
    expect((await lab.execOperator([...ssh, 'sudo -n true'])).code).not.toBe(0);
    // deploy exists on the servers only.
    expect(readFileSync('/etc/passwd', 'utf8')).not.toMatch(/^deploy:/m);
  });

  it('runs the tool as the operator: lab HOME, CI=false, no agent', async () => {
    const env = await lab.execOperator(['sh', '-c', 'echo "$HOME|$CI|${SSH_AUTH_SOCK-none}"'], {
      env: {EXTRA: '1'},
    });
    expect(env.stdout.trim()).toBe(`${lab.home}|false|none`);
    const version = await lab.runCli(['--version']);
    expect(version).toMatchObject({code: 0, stdout: `${packageVersion}\n`});
  });

  it('lets code in the test process reach the lab: ssh2 over dial, a loopback forward', async () => {
    const sock = await lab.dial('203.0.113.10', 22);
    const client = new Client();
    const hostname = await new Promise<string>((resolvePromise, reject) => {
      client.once('error', reject);
      client.once('ready', () => {
        client.exec('hostname', (error, channel) => {
          if (error) return reject(error);
          let output = '';
          channel.on('data', (chunk: Buffer) => (output += chunk.toString()));
          channel.on('close', () => resolvePromise(output.trim()));
        });
      });
      client.connect({sock, username: 'root', privateKey: readFileSync(join(lab.home, '.ssh', 'id_ed25519'))});
    });
    client.end();
    expect(hostname).toBe('tunnel-1');

    const forward = await lab.forward('2001:db8:100::11', 443);
    try {
      const banner = await new Promise<string>((resolvePromise, reject) => {
        const socket = connect({host: forward.host, port: forward.port});
        socket.once('error', reject);
        socket.once('data', (chunk: Buffer) => {
          resolvePromise(chunk.toString());
          socket.destroy();
        });
      });
      expect(banner).toBe('haproxy-www tcp 443\n');
    } finally {
      await forward.close();
    }
    await expect(lab.dial('10.132.0.12', 80)).rejects.toThrow(/cannot connect to 10\.132\.0\.12 port 80/);
  });

  it('writes inventories into the lab dir', () => {
    const path = lab.writeInventory({hosts: [{name: 'tunnel-1'}]}, 'fleet.json');
    expect(path).toBe(join(lab.dir, 'fleet.json'));
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({hosts: [{name: 'tunnel-1'}]});
    expect(() => lab.writeInventory({}, '../escape.json')).toThrow();
  });

  it('cuts and restores a link', async () => {
    const lb = host(lab, 'haproxy-www');
    expect(await lab.canConnect('operator', '203.0.113.11', 80)).toBe(true);
    await lab.setLinkDown('haproxy-www', 'public', true);
    expect(await lab.canConnect('operator', '203.0.113.11', 80)).toBe(false);
    expect(await lab.canConnect('operator', '2001:db8:100::11', 80)).toBe(false);
    expect(await lab.canConnect('tenant', '10.132.0.11', 80)).toBe(true); // the other side still up
    await lab.setLinkDown('haproxy-www', 'both', true);
    expect(await lab.canConnect('tenant', '10.132.0.11', 80)).toBe(false);
    await lab.setLinkDown('haproxy-www', 'both', false);
    expect(await lab.canConnect('operator', '203.0.113.11', 80)).toBe(true);
    expect(await lab.canConnect('tenant', 'fd00:132::11', 80)).toBe(true);
    // The server kept its own configuration through the cut.
    expect((await lb.exec(['ip', 'route', 'show', 'default'])).stdout).toContain('via 203.0.113.1');
  });

  it('tears down every process and namespace, including ones started inside a server', async () => {
    // A detached process on a server, like a rollback timer the tool leaves behind.
    const detached = await host(lab, 'mysql-2').exec(['sh', '-c', 'setsid sleep 1000 >/dev/null 2>&1 < /dev/null & echo $!']);
    const detachedPid = Number(detached.stdout.trim());
    // A long-running command of the operator's.
    const operatorCommand = lab.execOperator(['sleep', '1000']);
    const pids = [
      detachedPid,
      ...[...lab.hosts.values(), lab.tenant].flatMap((server) => [server.pids.sshd, server.pids.listener ?? server.pids.sshd]),
    ];
    for (const pid of pids) expect(processExists(pid)).toBe(true);
    const namespaces = [...lab.hosts.values()].map((server) => server.netns);
    namespaces.push(lab.operator.netns, lab.tenant.netns, namespaceFor(lab.id, 'switch'));
    await lab.teardown();
    await lab.teardown(); // idempotent
    expect((await operatorCommand).code).toBe(137); // SIGKILL
    const left = listNamespaces();
    for (const name of namespaces) expect(left).not.toContain(name);
    expect(left.filter((name) => name.includes(lab.id))).toEqual([]);
    for (const pid of pids) expect(processExists(pid), `pid ${pid}`).toBe(false);
    expect(existsSync(lab.dir)).toBe(false);
  });
});

describe('a custom lab', () => {
  let lab: Lab;

  beforeAll(async () => {
    lab = await createLab({
      hosts: [
        {name: 'tunnel-1'},
        {name: 'cache-1', public: false, sshPort: 2222, listen: {tcp: [8080], udp: [5353], program: 'memcached'}},
        {name: 'web-1', private: false, listen: {udp: [53]}},
      ],
      tenant: false,
      hashKnownHosts: true,
    });
  });

  afterAll(async () => {
    await lab?.teardown();
  });

  it('reaches a private-only server on a non-22 port through the jump host with hashed known_hosts', async () => {
    const cache = host(lab, 'cache-1');
    expect(cache.publicV4).toBeUndefined();
    expect(cache.privateV4).toBe('10.132.0.20');
    const knownHosts = readFileSync(lab.knownHostsPath, 'utf8');
    expect(knownHosts).not.toContain('10.132.0.20');
    expect(knownHosts.split('\n').filter(Boolean).every((line) => line.startsWith('|1|'))).toBe(true);
    // OpenSSH finds the hashed [addr]:port entry.
    const found = await lab.execOperator(['ssh-keygen', '-F', '[10.132.0.20]:2222', '-f', lab.knownHostsPath]);
    expect(found.stdout).toContain(cache.hostKeyPublic);
    const output = await lab.execOperator(['ssh', '-F', lab.sshConfigPath, '-o', 'BatchMode=yes', 'cache-1', 'hostname']);
    expect(output).toMatchObject({code: 0, stdout: 'cache-1\n'});
    expect(readFileSync(lab.sshConfigPath, 'utf8')).toMatch(/Host cache-1\n\s+HostName 10\.132\.0\.20\n\s+ProxyJump tunnel-1\n\s+Port 2222/);
  });

  it('answers UDP on v4 and v6', async () => {
    const udpProbe = ['timeout', '2', 'bash', '-c', 'exec 3<>"/dev/udp/$0/$1"; echo ping >&3; head -n1 <&3'];
    const fromJump = await host(lab, 'tunnel-1').exec([...udpProbe, 'fd00:132::20', '5353']);
    expect(fromJump.stdout).toBe('cache-1 udp 5353\n');
    const fromOperator = await lab.execOperator([...udpProbe, '203.0.113.21', '53']);
    expect(fromOperator.stdout).toBe('web-1 udp 53\n');
  });

  it('names the listener process as asked (what discovery reads from ss)', async () => {
    const sockets = await host(lab, 'cache-1').exec(['ss', '-Hltnp', 'sport = :8080']);
    expect(sockets.stdout).toContain('"memcached"');
    expect((await host(lab, 'web-1').exec(['ss', '-Hlunp', 'sport = :53'])).stdout).toContain('"node"');
  });

  it('has no tenant when asked for none', () => {
    expect(() => lab.tenant).toThrow(/tenant/);
  });
});

interface ChildLab {
  id: string;
  dir: string;
  namespaces: string[];
  sshdPid: number;
}

/** Starts support/lab-child.ts (a process owning a small lab) and waits for its report. */
async function startChildLab(): Promise<{child: ChildProcess; lab: ChildLab}> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'support', 'lab-child.ts')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let errors = '';
  child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
  const lab = await new Promise<ChildLab>((resolvePromise, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('\n')) resolvePromise(JSON.parse(output) as ChildLab);
    });
    child.once('exit', (code) => reject(new Error(`lab child exited ${code}: ${errors}`)));
  });
  return {child, lab};
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolvePromise) => {
    if (child.exitCode !== null || child.signalCode !== null) resolvePromise();
    else child.once('exit', () => resolvePromise());
  });
}

describe('bad lab specs', () => {
  it('are refused before anything is built, naming the host and field', async () => {
    const ownLabDirs = (): string[] =>
      readdirSync('/var/tmp').filter((entry) => {
        try {
          return (JSON.parse(readFileSync(join('/var/tmp', entry, 'owner.json'), 'utf8')) as {pid: number}).pid === process.pid;
        } catch {
          return false;
        }
      });
    const before = ownLabDirs();
    await expect(createLab({hosts: [{name: 'Web 1'}]})).rejects.toThrow(/lab host name "Web 1"/);
    await expect(createLab({hosts: [{name: 'web-1', listen: {tcp: [22]}}]})).rejects.toThrow(/web-1: tcp 22 is sshd's port/);
    await expect(createLab({hosts: [{name: 'web-1', sshPort: 70000}]})).rejects.toThrow(/web-1: sshPort/);
    await expect(createLab({hosts: [{name: 'operator'}]})).rejects.toThrow(/reserved/);
    expect(ownLabDirs()).toEqual(before);
  });
});

describe('cleaning up after crashed labs', () => {
  it('tears the lab down when its process is terminated by a signal', async () => {
    const {child, lab} = await startChildLab();
    expect(listNamespaces()).toEqual(expect.arrayContaining(lab.namespaces));
    expect(processExists(lab.sshdPid)).toBe(true);
    child.kill('SIGTERM');
    await exited(child);
    expect(child.signalCode).toBe('SIGTERM'); // and it still dies of the signal
    const left = listNamespaces();
    for (const name of lab.namespaces) expect(left).not.toContain(name);
    expect(processExists(lab.sshdPid)).toBe(false);
    expect(existsSync(lab.dir)).toBe(false);
  });

  it('leaves a SIGKILLed lab to the next sweep, which removes it', async () => {
    const {child, lab} = await startChildLab();
    child.kill('SIGKILL');
    await exited(child);
    expect(listNamespaces()).toEqual(expect.arrayContaining(lab.namespaces));
    expect(sweepAbandonedLabs()).toContain(lab.id);
    const left = listNamespaces();
    for (const name of lab.namespaces) expect(left).not.toContain(name);
    expect(processExists(lab.sshdPid)).toBe(false);
    expect(existsSync(lab.dir)).toBe(false);
  });

  it('removes the namespaces, processes and dir of a lab whose owner is gone, never a live one', () => {
    const deadPid = spawnSync('true').pid;
    if (deadPid === undefined) throw new Error('could not spawn');
    const crashedId = 'zzdead';
    const liveId = 'zzlive';
    const crashedDir = labDirFor(crashedId);
    const liveDir = labDirFor(liveId);
    const crashedNetns = namespaceFor(crashedId, 'switch');
    const liveNetns = namespaceFor(liveId, 'switch');
    try {
      mkdirSync(crashedDir, {recursive: true});
      writeFileSync(join(crashedDir, 'owner.json'), JSON.stringify({pid: deadPid, startTime: '1'}));
      mkdirSync(liveDir, {recursive: true});
      writeFileSync(join(liveDir, 'owner.json'), JSON.stringify(currentOwner()));
      for (const name of [crashedNetns, liveNetns]) expect(spawnSync('ip', ['netns', 'add', name]).status).toBe(0);
      // A process left inside the crashed lab's namespace.
      const leftover = spawnSync('sh', ['-c', `nsenter --net=/run/netns/${crashedNetns} setsid sleep 1000 >/dev/null 2>&1 & echo $!`], {
        encoding: 'utf8',
      });
      const leftoverPid = Number(leftover.stdout.trim());
      expect(processExists(leftoverPid)).toBe(true);

      const swept = sweepAbandonedLabs();

      expect(swept).toContain(crashedId);
      expect(swept).not.toContain(liveId);
      const left = listNamespaces();
      expect(left).not.toContain(crashedNetns);
      expect(left).toContain(liveNetns);
      expect(existsSync(crashedDir)).toBe(false);
      expect(existsSync(liveDir)).toBe(true);
      expect(processExists(leftoverPid)).toBe(false);
    } finally {
      for (const name of [crashedNetns, liveNetns]) spawnSync('ip', ['netns', 'del', name]);
      rmSync(crashedDir, {recursive: true, force: true});
      rmSync(liveDir, {recursive: true, force: true});
    }
  });
});
