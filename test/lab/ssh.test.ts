// The SSH layer against real OpenSSH servers in the lab: known_hosts (changed, unknown, hashed),
// sudo with a password, encrypted keys, a link that dies. Run:
//   npm run build && npx vitest run --project lab test/lab/ssh.test.ts
import {copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest';
import {HostError} from '../../source/core/errors.js';
import {createConnector, HEADLESS_PROMPTER, type ConnectorOptions} from '../../source/remote/connection.js';
import {discoverHost} from '../../source/remote/discovery.js';
import {fingerprintSha256} from '../../source/remote/known-hosts.js';
import type {Prompter} from '../../source/remote/types.js';
import {createLab, DEPLOY_SUDO_PASSWORD, LOCKED_KEY_PASSPHRASE, type Lab} from '../../source/lab/lab.js';

const SEED = {
  hosts: ['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'].map((name) => ({
    name,
    ssh: name,
    roles: [name === 'tunnel-1' ? 'bastion' : name === 'haproxy-www' ? 'lb' : name.startsWith('mysql') ? 'db' : 'app'],
  })),
};

const fingerprintOf = (hostKeyPublic: string) => fingerprintSha256(Buffer.from(hostKeyPublic.split(' ')[1]!, 'base64'));

describe('ssh against the lab', () => {
  let lab: Lab;
  let originalKnownHosts: string;
  const connectors: {closeAll(): Promise<void>}[] = [];

  beforeAll(async () => {
    lab = await createLab({tenant: false});
    originalKnownHosts = readFileSync(lab.knownHostsPath, 'utf8');
  });

  afterEach(async () => {
    await Promise.all(connectors.splice(0).map((connector) => connector.closeAll()));
    writeFileSync(lab.knownHostsPath, originalKnownHosts);
  });

  afterAll(async () => {
    await lab?.teardown();
  });

  function connector(options: Partial<ConnectorOptions> = {}) {
    const created = createConnector({
      home: lab.home,
      env: {},
      prompter: HEADLESS_PROMPTER,
      dial: (host, port) => lab.dial(host, port),
      inventoryHosts: SEED.hosts,
      ...options,
    });
    connectors.push(created);
    return created;
  }

  const withoutLinesFor = (text: string, addresses: (string | undefined)[]) =>
    text
      .split('\n')
      .filter((line) => !addresses.some((address) => address && line.startsWith(`${address} `)))
      .join('\n');

  it('refuses a changed host key loudly, even with --accept-new, and leaves known_hosts alone', async () => {
    const mysql = lab.hosts.get('mysql-1')!;
    const tunnel = lab.hosts.get('tunnel-1')!;
    // known_hosts now says mysql-1's private address has the bastion's key: a changed key.
    const tampered = originalKnownHosts
      .split('\n')
      .map((line) => (line.startsWith(`${mysql.privateV4} `) ? `${mysql.privateV4} ${tunnel.hostKeyPublic}` : line))
      .join('\n');
    writeFileSync(lab.knownHostsPath, tampered);
    const inventory = lab.writeInventory(SEED);
    for (const extra of [[], ['--accept-new']]) {
      const result = await lab.runCli(['discover', '--inventory', inventory, '--host', 'mysql-1', ...extra]);
      expect(result.code, result.stderr).toBe(3);
      expect(result.stderr).toContain(
        `REMOTE HOST IDENTIFICATION HAS CHANGED for mysql-1 (${mysql.privateV4}): expected ${fingerprintOf(tunnel.hostKeyPublic)}, got ${fingerprintOf(mysql.hostKeyPublic)}`,
      );
      expect(result.stderr).toContain('remove the old line from ~/.ssh/known_hosts');
      expect(result.stdout).toBe('');
    }
    expect(readFileSync(lab.knownHostsPath, 'utf8')).toBe(tampered);
  });

  it('refuses an unknown host key headless; --accept-new trusts it and appends a line OpenSSH accepts', async () => {
    const mysql = lab.hosts.get('mysql-2')!;
    const stripped = withoutLinesFor(originalKnownHosts, [mysql.publicV4, mysql.publicV6, mysql.privateV4, mysql.privateV6]);
    writeFileSync(lab.knownHostsPath, stripped);
    const inventory = lab.writeInventory(SEED);

    const refused = await lab.runCli(['discover', '--inventory', inventory, '--host', 'mysql-2']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain(`mysql-2: unknown host key for ${mysql.privateV4} (ssh-ed25519 ${fingerprintOf(mysql.hostKeyPublic)})`);
    expect(readFileSync(lab.knownHostsPath, 'utf8')).toBe(stripped);

    const accepted = await lab.runCli(['discover', '--inventory', inventory, '--host', 'mysql-2', '--accept-new']);
    expect(accepted.stderr).toBe('');
    expect(accepted.code).toBe(0);
    const after = readFileSync(lab.knownHostsPath, 'utf8');
    expect(after.slice(stripped.length).trim()).toBe(`${mysql.privateV4} ${mysql.hostKeyPublic}`);

    const again = await lab.runCli(['discover', '--inventory', inventory, '--host', 'mysql-2']);
    expect(again.code).toBe(0);
    const openssh = await lab.execOperator([
      'ssh', '-F', lab.sshConfigPath, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', 'mysql-2', 'true',
    ]);
    expect(openssh.code, openssh.stderr).toBe(0);
  });

  it('headless: sudo that needs a password (user deploy) fails naming the host and the fix', async () => {
    const inventory = lab.writeInventory({
      hosts: [
        {name: 'tunnel-1', ssh: 'tunnel-1', roles: ['bastion']},
        {name: 'mysql-1', ssh: 'deploy@mysql-1', roles: ['db']},
      ],
    });
    const result = await lab.runCli(['discover', '--inventory', inventory]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      'isolate-wizard: mysql-1: sudo needs a password for deploy; allow NOPASSWD for this user, log in as root, or run the wizard\n',
    );
    expect(result.stdout).toMatch(/^tunnel-1 /);
  });

  it('with a prompter: the sudo password is asked once and fed to sudo -S ahead of the data', async () => {
    const asked: string[] = [];
    const prompter: Prompter = {
      confirmHostKey: async () => false,
      askSecret: async (host, question) => {
        asked.push(`${host}: ${question}`);
        return DEPLOY_SUDO_PASSWORD;
      },
    };
    const remote = await connector({prompter}).connect({name: 'mysql-1', ssh: 'deploy@mysql-1'});
    expect((await remote.exec('id -u')).stdout.trim()).not.toBe('0');
    expect((await remote.exec('id -u', {root: true})).stdout).toBe('0\n');
    expect(await remote.exec('cat', {root: true, stdin: 'rules travel as data\n'})).toMatchObject({
      code: 0,
      stdout: 'rules travel as data\n',
    });
    expect(asked).toEqual(['mysql-1: sudo password for deploy']);
  });

  it('a command that asks: the reply is written once the question is out (through the bastion, and after sudo -S reads its password)', async () => {
    const asking = "printf 'question?\\n'; IFS= read -r answer; printf 'got %s\\n' \"$answer\"";
    const answerLater = (output: string): Promise<string> | undefined =>
      output.includes('question?\n') ? new Promise((resolve) => setTimeout(() => resolve('yes\n'), 200)) : undefined;
    const viaBastion = await connector().connect({name: 'wordpress-1', ssh: 'wordpress-1'});
    expect(await viaBastion.exec(asking, {root: true, reply: answerLater})).toMatchObject({code: 0, stdout: 'question?\ngot yes\n'});
    // No answer at all: the command reads the end of its input.
    expect(await viaBastion.exec(asking, {root: true, reply: (output) => (output.includes('question?') ? Promise.resolve('') : undefined)})).toMatchObject({
      code: 0,
      stdout: 'question?\ngot \n',
    });
    const prompter: Prompter = {confirmHostKey: async () => false, askSecret: async () => DEPLOY_SUDO_PASSWORD};
    const withSudo = await connector({prompter}).connect({name: 'mysql-1', ssh: 'deploy@mysql-1'});
    expect(await withSudo.exec(asking, {root: true, reply: answerLater})).toMatchObject({code: 0, stdout: 'question?\ngot yes\n'});
  });

  it('an encrypted key: headless fails clearly; a prompter passphrase unlocks it', async () => {
    const home = path.join(lab.dir, 'home-locked');
    mkdirSync(path.join(home, '.ssh'), {recursive: true, mode: 0o700});
    copyFileSync(path.join(lab.home, '.ssh', 'id_ed25519_locked'), path.join(home, '.ssh', 'id_ed25519_locked'));
    copyFileSync(lab.knownHostsPath, path.join(home, '.ssh', 'known_hosts'));
    const config = readFileSync(lab.sshConfigPath, 'utf8')
      .replace(/^ {2}IdentityFile .*$/m, '  IdentityFile ~/.ssh/id_ed25519_locked')
      .replace(/^ {2}UserKnownHostsFile .*$/m, '');
    writeFileSync(path.join(home, '.ssh', 'config'), config, {mode: 0o600});

    const inventory = lab.writeInventory({hosts: [{name: 'tunnel-1', ssh: 'tunnel-1', roles: ['bastion']}]});
    const result = await lab.runCli(['discover', '--inventory', inventory], {env: {HOME: home}});
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      'isolate-wizard: tunnel-1: the key ~/.ssh/id_ed25519_locked is encrypted; load it into ssh-agent or run the wizard\n',
    );

    const prompter: Prompter = {confirmHostKey: async () => false, askSecret: async () => LOCKED_KEY_PASSPHRASE};
    const remote = await connector({home, prompter}).connect({name: 'mysql-2', ssh: 'mysql-2'});
    expect((await remote.exec('id -u', {root: true})).stdout).toBe('0\n');
  });

  it('notices a dead link within seconds and reports it as a HostError', async () => {
    const remote = await connector({keepaliveIntervalMs: 1000}).connect({name: 'wordpress-1', ssh: 'wordpress-1'});
    expect((await remote.exec('true')).code).toBe(0);
    const running = remote.exec('sleep 120').catch((error: unknown) => error);
    const cutAt = Date.now();
    await lab.setLinkDown('wordpress-1', 'private', true);
    try {
      const error = await running;
      console.info(`dead link noticed after ${Date.now() - cutAt} ms (keepalive 1 s x 3)`);
      expect(error).toBeInstanceOf(HostError);
      expect((error as HostError).host).toBe('wordpress-1');
    } finally {
      await lab.setLinkDown('wordpress-1', 'private', false);
    }
    // A new connection works again once the link is back.
    const again = await connector().connect({name: 'wordpress-1', ssh: 'wordpress-1'});
    expect((await again.exec('true')).code).toBe(0);
  });
});

describe('hashed known_hosts', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await createLab({hashKnownHosts: true, tenant: false});
  });
  afterAll(async () => {
    await lab?.teardown();
  });

  it('discovers the whole fleet through the bastion with |1|salt|hash entries only', async () => {
    expect(readFileSync(lab.knownHostsPath, 'utf8')).toMatch(/^\|1\|/);
    const result = await lab.runCli(['discover', '--inventory', lab.writeInventory(SEED), '--json']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });
});

// The client items of issue 11 against real OpenSSH servers: host key types, ProxyCommand and
// Match exec, sudoers that let `sh` run without a password. Each test rewrites what it needs
// (the operator's ssh config, a server's sudoers) and puts it back.
describe('host key types, ProxyCommand and sudo forms (issue 11)', () => {
  let lab: Lab;
  let originalConfig: string;
  let originalKnownHosts: string;
  const connectors: {closeAll(): Promise<void>}[] = [];

  beforeAll(async () => {
    lab = await createLab({
      tenant: false,
      hosts: [{name: 'tunnel-1'}, {name: 'mysql-1', listen: {tcp: [3306]}}, {name: 'mysql-2', listen: {tcp: [3306]}}],
    });
    originalConfig = readFileSync(lab.sshConfigPath, 'utf8');
    originalKnownHosts = readFileSync(lab.knownHostsPath, 'utf8');
  });

  afterEach(async () => {
    await Promise.all(connectors.splice(0).map((connector) => connector.closeAll()));
    writeFileSync(lab.sshConfigPath, originalConfig);
    writeFileSync(lab.knownHostsPath, originalKnownHosts);
  });

  afterAll(async () => {
    await lab?.teardown();
  });

  /** Blocks first: the first match wins, before the lab's `Host *` defaults. */
  const prependConfig = (text: string) => writeFileSync(lab.sshConfigPath, `${text}\n${originalConfig}`);
  const tunnelAndOne = (ssh: string, name = 'mysql-1') =>
    lab.writeInventory({
      hosts: [
        {name: 'tunnel-1', ssh: 'tunnel-1', roles: ['bastion']},
        {name, ssh, roles: ['db']},
      ],
    });

  /** A second sshd in mysql-1 (its namespaces) on `port`, with exactly these host key files. */
  async function extraSshd(port: number, hostKeyFiles: string[]): Promise<void> {
    const host = lab.hosts.get('mysql-1')!;
    const base = readFileSync(path.join(lab.dir, 'hosts', 'mysql-1', 'sshd_config'), 'utf8')
      .split('\n')
      .filter((line) => !/^(Port|HostKey|PidFile) /.test(line));
    const file = path.join(lab.dir, `sshd-${port}.conf`);
    writeFileSync(file, [`Port ${port}`, ...hostKeyFiles.map((key) => `HostKey ${key}`), `PidFile ${lab.dir}/sshd-${port}.pid`, ...base].join('\n'));
    // Without -D sshd forks into the background once it listens; teardown kills it with the namespace.
    const started = await host.exec(['/usr/sbin/sshd', '-f', file, '-E', path.join(lab.dir, `sshd-${port}.log`)]);
    expect(started.code, started.stderr).toBe(0);
  }

  async function rsaHostKey(): Promise<{file: string; publicLine: string}> {
    const file = path.join(lab.dir, 'ssh_host_rsa_key');
    if (!existsSync(file)) {
      const made = await lab.execOperator(['ssh-keygen', '-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', file]);
      expect(made.code, made.stderr).toBe(0);
    }
    const [type, key] = readFileSync(`${file}.pub`, 'utf8').trim().split(/\s+/);
    return {file, publicLine: `${type} ${key}`};
  }

  it('a host known by its ed25519 key that offers only ssh-rsa is refused like a changed key, even with --accept-new', async () => {
    const mysql = lab.hosts.get('mysql-1')!;
    const rsa = await rsaHostKey();
    await extraSshd(2222, [rsa.file]);
    prependConfig(`Host mysql-1-rsa\n  HostName ${mysql.privateV4}\n  Port 2222\n  ProxyJump tunnel-1\n`);
    const knownHosts = `${originalKnownHosts}[${mysql.privateV4}]:2222 ${mysql.hostKeyPublic}\n`;
    writeFileSync(lab.knownHostsPath, knownHosts);
    const line = knownHosts.split('\n').length - 1;
    const inventory = tunnelAndOne('mysql-1-rsa');
    for (const extra of [[], ['--accept-new']]) {
      const result = await lab.runCli(['discover', '--inventory', inventory, '--host', 'mysql-1', ...extra]);
      expect(result.code, result.stderr).toBe(3);
      expect(result.stderr).toBe(
        `isolate-wizard: HOST KEY TYPE CHANGED for mysql-1 (${mysql.privateV4}): it offered ssh-rsa ${fingerprintOf(rsa.publicLine)},` +
          ` but ~/.ssh/known_hosts knows it only by ssh-ed25519 (line ${line}); refusing — if this is expected, check the new key and replace those lines\n`,
      );
      expect(result.stdout).toBe('');
    }
    expect(readFileSync(lab.knownHostsPath, 'utf8')).toBe(knownHosts);
  });

  it('a server with ed25519 and rsa host keys, known by rsa only, is asked for its rsa key and is known', async () => {
    const mysql = lab.hosts.get('mysql-1')!;
    const rsa = await rsaHostKey();
    await extraSshd(2223, [path.join(lab.dir, 'hosts', 'mysql-1', 'ssh_host_ed25519_key'), rsa.file]);
    prependConfig(`Host mysql-1-both\n  HostName ${mysql.privateV4}\n  Port 2223\n  ProxyJump tunnel-1\n`);
    writeFileSync(lab.knownHostsPath, `${originalKnownHosts}[${mysql.privateV4}]:2223 ${rsa.publicLine}\n`);
    const result = await lab.runCli(['discover', '--inventory', tunnelAndOne('mysql-1-both'), '--host', 'mysql-1']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`mysql-1  root@${mysql.privateV4}:2223 via tunnel-1`);
  });

  it('ProxyCommand ssh -W %h:%p tunnel-1 is a jump through tunnel-1: discover, the path check and apply --yes take it', async () => {
    const mysql = lab.hosts.get('mysql-1')!;
    prependConfig(`Host mysql-1-pc\n  HostName ${mysql.privateV4}\n  ProxyCommand ssh -q -W %h:%p tunnel-1\n`);
    const inventory = tunnelAndOne('mysql-1-pc');
    const discovered = await lab.runCli(['discover', '--inventory', inventory]);
    expect(discovered.stderr).toBe('');
    expect(discovered.code).toBe(0);
    expect(discovered.stdout).toContain(`mysql-1  root@${mysql.privateV4}:22 via tunnel-1`);
    // The db role takes SSH from the bastion only: right through tunnel-1, a lockout if dialled directly.
    const plan = await lab.runCli(['plan', '--inventory', inventory]);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stderr).not.toMatch(/lockout|warning/);
    expect(plan.stdout).toContain("every host keeps the operator's SSH path");
    const applied = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60']);
    expect(applied.code, applied.stderr + applied.stdout).toBe(0);
    // Really locked down: the operator (the internet) no longer reaches mysql-1's public sshd.
    expect(await lab.canConnect('operator', mysql.publicV4!, 22)).toBe(false);
    const again = await lab.runCli(['discover', '--inventory', inventory, '--host', 'mysql-1']);
    expect(again.code, again.stderr).toBe(0);
  });

  it('any other ProxyCommand, and a Match exec that applies, are refused in one line naming the host: nothing is dialled', async () => {
    const mysql = lab.hosts.get('mysql-2')!;
    prependConfig(`Host mysql-2-nc\n  HostName ${mysql.publicV4}\n  ProxyCommand nc %h %p\n`);
    const refused = await lab.runCli(['discover', '--inventory', tunnelAndOne('mysql-2-nc', 'mysql-2')]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      'isolate-wizard: mysql-2: ProxyCommand "nc %h %p" is not supported: use ProxyJump (or ProxyCommand ssh -W %h:%p JUMPHOST)\n',
    );
    expect(refused.stdout).toMatch(/^tunnel-1 /);

    const marker = path.join(lab.dir, 'match-exec-ran');
    prependConfig(`Match host mysql-2-exec exec "touch ${marker}"\n  ProxyJump tunnel-1\nHost mysql-2-exec\n  HostName ${mysql.publicV4}\n`);
    const matchExec = await lab.runCli(['discover', '--inventory', tunnelAndOne('mysql-2-exec', 'mysql-2'), '--host', 'mysql-2']);
    expect(matchExec.code).toBe(1);
    expect(matchExec.stderr).toBe(
      `isolate-wizard: mysql-2: ~/.ssh/config: Match exec "touch ${marker}" is not supported (this tool never runs commands from the config, and it would change how ssh reaches this host): use Host blocks\n`,
    );
    expect(existsSync(marker)).toBe(false);
    // No session was opened on mysql-2 for either: sshd logged no login from the operator.
    expect(readFileSync(mysql.sshdLogPath, 'utf8')).not.toMatch(/Accepted publickey/);
  });

  describe('sudoers that let sh run without a password and ask for everything else', () => {
    const SUDO_LOG = '/var/log/iw-sudo.log';
    async function setSudoers(rules: string[]): Promise<void> {
      const text = [...rules, `Defaults:deploy timestamp_timeout=0, lecture=never, logfile=${SUDO_LOG}`, ''].join('\n');
      const written = await lab.hosts.get('mysql-2')!.exec(['sh', '-c', 'umask 337 && cat > /etc/sudoers.d/iw-lab-deploy && visudo -c'], {input: text});
      expect(written.code, written.stdout + written.stderr).toBe(0);
    }
    afterEach(async () => {
      await setSudoers(['deploy ALL=(ALL:ALL) ALL']);
    });

    it('headless discover and apply --yes run as root through the NOPASSWD sh; the owner recorded is ours', async () => {
      await setSudoers(['deploy ALL=(ALL:ALL) ALL', 'deploy ALL=(ALL:ALL) NOPASSWD: /bin/sh, /usr/bin/sh']);
      const mysql = lab.hosts.get('mysql-2')!;
      // The lab's deploy still needs a password for anything but sh.
      const other = await mysql.exec(['su', 'deploy', '-c', 'sudo -n true']);
      expect(other.code).not.toBe(0);
      const inventory = tunnelAndOne('deploy@mysql-2', 'mysql-2');
      const discovered = await lab.runCli(['discover', '--inventory', inventory, '--host', 'mysql-2']);
      expect(discovered.stderr).toBe('');
      expect(discovered.code).toBe(0);
      const applied = await lab.runCli(['apply', '--inventory', inventory, '--host', 'mysql-2', '--yes', '--timeout', '60']);
      expect(applied.code, applied.stderr + applied.stdout).toBe(0);
      const state = await mysql.exec(['cat', '/var/lib/isolate-wizard/state']);
      expect(state.stdout).toMatch(/^owner=root@\S+ pid=\d+$/m);
      expect(state.stdout).toMatch(/^phase=confirmed$/m);
      const log = await mysql.exec(['cat', SUDO_LOG]);
      expect(log.stdout).toMatch(/COMMAND=\/usr\/bin\/sh -c\s+'sh \/var\/lib\/isolate-wizard\/agent.sh verify/);
      expect(log.stdout).not.toContain(DEPLOY_SUDO_PASSWORD);
    });

    it('with a password given: where sudo runs the command form without asking, the password is never sent; the data is all it reads', async () => {
      // sudo -n -- sh -c 'true' is refused (so the password is asked), but the shell form our
      // password mode runs (it starts with printf) needs none.
      await setSudoers(['deploy ALL=(ALL:ALL) ALL', 'deploy ALL=(ALL:ALL) NOPASSWD: /bin/sh -c printf*, /usr/bin/sh -c printf*']);
      const asked: string[] = [];
      const prompter: Prompter = {
        confirmHostKey: async () => false,
        askSecret: async (host, question) => {
          asked.push(`${host}: ${question}`);
          return DEPLOY_SUDO_PASSWORD;
        },
      };
      const created = createConnector({home: lab.home, env: {}, prompter, dial: (host, port) => lab.dial(host, port)});
      connectors.push(created);
      const remote = await created.connect({name: 'mysql-2', ssh: 'deploy@mysql-2'});
      expect(await remote.exec('cat', {root: true, stdin: 'owner line\nrules\n'})).toEqual({code: 0, stdout: 'owner line\nrules\n', stderr: ''});
      expect((await remote.exec('id -u', {root: true})).stdout).toBe('0\n');
      const discovery = await discoverHost(remote);
      expect(discovery.facts.interfaces.private).toBe('eth1');
      expect(asked).toEqual(['mysql-2: sudo password for deploy']);
      const log = await lab.hosts.get('mysql-2')!.exec(['cat', SUDO_LOG]);
      expect(log.stdout).not.toContain(DEPLOY_SUDO_PASSWORD);
      // discovery's `sh -s` would have run the password as its first line: sh says "not found" then.
      expect(log.stdout).toMatch(/COMMAND=\/usr\/bin\/sh -c\s+'printf/);
    });
  });
});
