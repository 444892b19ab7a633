// The SSH layer against real OpenSSH servers in the lab: known_hosts (changed, unknown, hashed),
// sudo with a password, encrypted keys, a link that dies. Run:
//   npm run build && npx vitest run --project lab test/lab/ssh.test.ts
import {copyFileSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, afterEach, beforeAll, describe, expect, it} from 'vitest';
import {HostError} from '../../source/core/errors.js';
import {createConnector, HEADLESS_PROMPTER, type ConnectorOptions} from '../../source/remote/connection.js';
import {fingerprintSha256} from '../../source/remote/known-hosts.js';
import type {Prompter} from '../../source/remote/types.js';
import {createLab, DEPLOY_SUDO_PASSWORD, LOCKED_KEY_PASSPHRASE, type Lab} from './lab.js';

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
