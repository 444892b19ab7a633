// The SSH layer against in-process ssh2 servers on 127.0.0.1: host keys, authentication, sudo,
// ProxyJump sharing, dead links, and proof that only constant command strings are ever sent.
import {spawn, spawnSync} from 'node:child_process';
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import net from 'node:net';
import {tmpdir} from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';
import {HostError, RefusedError} from '../../source/core/errors.js';
import {
  createConnector,
  HEADLESS_PROMPTER,
  PRIVILEGE_COMMANDS,
  ROOT_STARTED_MARKER,
  rootCommand,
  SUDO_PROMPT_MARKER,
  type ConnectorOptions,
} from '../../source/remote/connection.js';
import {formatHost} from '../../source/commands/discover.js';
import {DISCOVERY_COMMANDS, discoverFleet, discoverHost} from '../../source/remote/discovery.js';
import {fingerprintSha256} from '../../source/remote/known-hosts.js';
import type {Prompter} from '../../source/remote/types.js';

interface ExecCall {
  command: string;
  stdin: string;
}
type Responder = (call: ExecCall) => {code: number; stdout?: string; stderr?: string} | 'hang' | 'drop';

interface FakeServer {
  /**
   * How the fake's sudo treats `sudo -k -S -p MARKER` commands: `needsPassword` = asks with the
   * marker and checks this password; undefined = runs them without asking (NOPASSWD for sh).
   */
  sudo?: {needsPassword?: string};
  /** Every byte written to the fake's stdin, per command, password included. */
  rawInputs: string[];
  port: number;
  hostKeyBlob: Buffer;
  calls: ExecCall[];
  handshakes: number;
  tunnels: string[];
  respond: Responder;
  close(): Promise<void>;
}

/**
 * ssh2's ed25519 generator drops a leading zero byte of the public key about once in 250 keys,
 * making a key its own parser rejects: draw again until both halves parse.
 */
function keyPair(options?: {passphrase: string; cipher: string; rounds: number}) {
  for (;;) {
    const pair = options ? ssh2.utils.generateKeyPairSync('ed25519', options) : ssh2.utils.generateKeyPairSync('ed25519');
    const parsedPublic = ssh2.utils.parseKey(pair.public);
    const parsedPrivate = ssh2.utils.parseKey(pair.private, options?.passphrase);
    if (!(parsedPublic instanceof Error) && !(parsedPrivate instanceof Error)) return pair;
  }
}

const clientKey = keyPair();
const clientPublic = ssh2.utils.parseKey(clientKey.public) as ssh2.ParsedKey;
/** Lets one test swap the client key the fake servers accept. */
const clientPublicOverride: {key?: ssh2.ParsedKey} = {};

async function startServer(respond: Responder, extraHostKeys: string[] = []): Promise<FakeServer> {
  const hostKey = keyPair();
  const parsedHost = ssh2.utils.parseKey(hostKey.public) as ssh2.ParsedKey;
  const sockets = new Set<net.Socket>();
  const fake: FakeServer = {
    port: 0,
    hostKeyBlob: parsedHost.getPublicSSH(),
    calls: [],
    rawInputs: [],
    handshakes: 0,
    tunnels: [],
    respond,
    close: async () => undefined,
  };
  const server = new ssh2.Server({hostKeys: [hostKey.private, ...extraHostKeys]}, (client) => {
    fake.handshakes++;
    client.on('error', () => undefined);
    client.on('authentication', (context) => {
      const accepted = clientPublicOverride.key ?? clientPublic;
      if (context.method !== 'publickey') return context.reject(['publickey']);
      if (!context.key.data.equals(accepted.getPublicSSH())) return context.reject(['publickey']);
      if (context.signature && context.blob && !accepted.verify(context.blob, context.signature, context.hashAlgo)) {
        return context.reject(['publickey']);
      }
      context.accept();
    });
    client.on('ready', () => {
      client.on('tcpip', (accept, _reject, info) => {
        fake.tunnels.push(`${info.destIP}:${info.destPort}`);
        const channel = accept();
        const socket = net.connect(info.destPort, info.destIP);
        sockets.add(socket);
        socket.on('error', () => channel.destroy());
        channel.pipe(socket).pipe(channel);
      });
      client.on('session', (acceptSession) => {
        const session = acceptSession();
        session.on('exec', (acceptExec, _reject, info) => {
          const channel = acceptExec();
          const chunks: Buffer[] = [];
          const raw: Buffer[] = [];
          fake.rawInputs.push('');
          const rawIndex = fake.rawInputs.length - 1;
          // A sudo with -S reads its password line before it runs the shell; the shell's data follows.
          const emulateSudo = info.command.startsWith(`sudo -k -S -p '${SUDO_PROMPT_MARKER}'`);
          let phase: 'password' | 'data' = 'data';
          let line = '';
          let prompts = 0;
          const startShell = () => {
            phase = 'data';
            channel.stderr.write(`${ROOT_STARTED_MARKER}\n`);
          };
          if (emulateSudo) {
            if (fake.sudo?.needsPassword === undefined) startShell();
            else {
              phase = 'password';
              prompts++;
              channel.stderr.write(SUDO_PROMPT_MARKER);
            }
          }
          channel.on('data', (chunk: Buffer) => {
            raw.push(chunk);
            fake.rawInputs[rawIndex] = Buffer.concat(raw).toString('utf8');
            if (phase === 'data') {
              chunks.push(chunk);
              return;
            }
            line += chunk.toString('utf8');
            const newline = line.indexOf('\n');
            if (newline < 0) return;
            const given = line.slice(0, newline);
            const rest = line.slice(newline + 1);
            line = '';
            if (given === fake.sudo?.needsPassword) {
              startShell();
              if (rest !== '') chunks.push(Buffer.from(rest));
            } else {
              prompts++;
              channel.stderr.write(`Sorry, try again.\n${SUDO_PROMPT_MARKER}`);
            }
          });
          channel.on('end', () => {
            if (phase === 'password') {
              channel.stderr.write(`sudo: ${prompts - 1} incorrect password attempt\n`);
              channel.exit(1);
              channel.end();
              return;
            }
            const call = {command: info.command, stdin: Buffer.concat(chunks).toString('utf8')};
            fake.calls.push(call);
            const answer = fake.respond(call);
            if (answer === 'hang') return;
            if (answer === 'drop') {
              client.end();
              return;
            }
            if (answer.stdout) channel.write(answer.stdout);
            if (answer.stderr) channel.stderr.write(answer.stderr);
            channel.exit(answer.code);
            channel.end();
          });
        });
      });
    });
  });
  server.on('connection', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.port = (server.address() as net.AddressInfo).port;
  fake.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
      // ssh2's server keeps client sockets; closing the listener is enough for the test process.
      setImmediate(resolve);
    });
  return fake;
}

/** A root login that answers the privilege probe and echoes. */
const rootResponder: Responder = (call) => {
  if (call.command === PRIVILEGE_COMMANDS.uid) return {code: 0, stdout: '0\n'};
  if (call.command === 'cat') return {code: 0, stdout: call.stdin};
  if (call.command === 'fail') return {code: 3, stderr: 'boom\n'};
  return {code: 0, stdout: `ran ${call.command}\n`};
};

let home: string;
let servers: FakeServer[];
let connectors: {closeAll(): Promise<void>}[];

beforeEach(() => {
  home = mkdtempSync(path.join(tmpdir(), 'iw-conn-'));
  mkdirSync(path.join(home, '.ssh'), {mode: 0o700});
  writeFileSync(path.join(home, '.ssh', 'id_ed25519'), clientKey.private, {mode: 0o600});
  servers = [];
  connectors = [];
});

afterEach(async () => {
  await Promise.all(connectors.map((connector) => connector.closeAll()));
  await Promise.all(servers.map((server) => server.close()));
  rmSync(home, {recursive: true, force: true});
});

async function server(respond: Responder = rootResponder, extraHostKeys: string[] = []): Promise<FakeServer> {
  const fake = await startServer(respond, extraHostKeys);
  servers.push(fake);
  return fake;
}

function knownHosts(...lines: string[]): void {
  writeFileSync(path.join(home, '.ssh', 'known_hosts'), lines.map((line) => `${line}\n`).join(''));
}
const knownLine = (fake: FakeServer, blob = fake.hostKeyBlob) => `[127.0.0.1]:${fake.port} ssh-ed25519 ${blob.toString('base64')}`;

function connector(options: Partial<ConnectorOptions> = {}) {
  const created = createConnector({home, env: {}, prompter: HEADLESS_PROMPTER, readyTimeoutMs: 10_000, ...options});
  connectors.push(created);
  return created;
}

const target = (fake: FakeServer, name = 'web-1') => ({name, ssh: `root@127.0.0.1:${fake.port}`});

describe('rootCommand', () => {
  it('leaves root logins alone and wraps sudo with sh -c, quoting the constant safely', () => {
    expect(rootCommand('iptables-save', {kind: 'root'})).toEqual({command: 'iptables-save'});
    expect(rootCommand("printf '%s' x", {kind: 'sudo'}, 'data')).toEqual({
      command: `sudo -n -- sh -c 'printf '\\''%s'\\'' x'`,
      stdin: 'data',
    });
  });

  it('keeps the sudo password apart from the command and the data, and probes with the form it uses', () => {
    const wrapped = rootCommand('sh -s', {kind: 'sudo-password', password: 's3cret'}, 'echo hi\n');
    expect(wrapped.command).toBe(`sudo -k -S -p '${SUDO_PROMPT_MARKER}' -- sh -c 'printf '\\''%s\\n'\\'' '\\''${ROOT_STARTED_MARKER}'\\'' >&2\nsh -s'`);
    expect(wrapped.command).not.toContain('s3cret');
    expect(wrapped).toMatchObject({stdin: 'echo hi\n', sudoPassword: 's3cret'});
    expect(PRIVILEGE_COMMANDS.sudoWithoutPassword).toBe(rootCommand('true', {kind: 'sudo'}).command);
    expect(PRIVILEGE_COMMANDS.sudoPasswordCheck).toBe(rootCommand('true', {kind: 'sudo-password', password: 'x'}).command);
  });
});

describe('host keys', () => {
  it('refuses an unknown host key headless, showing the fingerprint, and writes nothing', async () => {
    const fake = await server();
    const error = await connector().connect(target(fake)).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RefusedError);
    expect((error as Error).message).toContain('web-1: unknown host key');
    expect((error as Error).message).toContain(fingerprintSha256(fake.hostKeyBlob));
    expect((error as Error).message).toContain('--accept-new');
    expect(existsSync(path.join(home, '.ssh', 'known_hosts'))).toBe(false);
    expect(fake.calls).toEqual([]);
  });

  it('does not cache a failure: after the operator fixes known_hosts, the same connector connects', async () => {
    const fake = await server();
    const shared = connector();
    await expect(shared.connect(target(fake))).rejects.toThrow(RefusedError);
    knownHosts(knownLine(fake));
    expect((await (await shared.connect(target(fake))).exec('hello')).code).toBe(0);
  });

  it('accept-new appends the key as [host]:port and later runs trust it', async () => {
    const fake = await server();
    const remote = await connector({acceptNew: true}).connect(target(fake));
    expect((await remote.exec('hello')).stdout).toBe('ran hello\n');
    expect(readFileSync(path.join(home, '.ssh', 'known_hosts'), 'utf8')).toBe(`${knownLine(fake)}\n`);
    const again = await connector().connect(target(fake));
    expect((await again.exec('hello')).code).toBe(0);
  });

  it('asks the prompter with the SHA256 fingerprint and remembers a yes', async () => {
    const fake = await server();
    const asked: string[] = [];
    const prompter: Prompter = {
      confirmHostKey: async (host, keyType, fingerprint) => {
        asked.push(`${host} ${keyType} ${fingerprint}`);
        return true;
      },
      askSecret: async () => undefined,
    };
    await connector({prompter}).connect(target(fake));
    expect(asked).toEqual([`web-1 ssh-ed25519 ${fingerprintSha256(fake.hostKeyBlob)}`]);
    expect(readFileSync(path.join(home, '.ssh', 'known_hosts'), 'utf8')).toContain(knownLine(fake));
  });

  it('a person slower than the handshake timeout is asked once, and the connection still comes up', async () => {
    const fake = await server();
    let asked = 0;
    const prompter: Prompter = {
      confirmHostKey: async () => {
        asked++;
        await new Promise((resolve) => setTimeout(resolve, 600));
        return true;
      },
      askSecret: async () => undefined,
    };
    const remote = await connector({prompter, readyTimeoutMs: 200}).connect(target(fake));
    expect((await remote.exec('hello')).code).toBe(0);
    expect(asked).toBe(1);
  });

  it('refuses a changed key loudly, even with accept-new, and keeps the old line', async () => {
    const fake = await server();
    const other = await server();
    knownHosts(knownLine(fake, other.hostKeyBlob));
    const error = await connector({acceptNew: true})
      .connect(target(fake, 'mysql-1'))
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RefusedError);
    const message = (error as Error).message;
    expect(message).toContain('REMOTE HOST IDENTIFICATION HAS CHANGED for mysql-1 (127.0.0.1)');
    expect(message).toContain(`expected ${fingerprintSha256(other.hostKeyBlob)}, got ${fingerprintSha256(fake.hostKeyBlob)}`);
    expect(message).toContain('remove the old line from ~/.ssh/known_hosts');
    expect(readFileSync(path.join(home, '.ssh', 'known_hosts'), 'utf8')).toBe(`${knownLine(fake, other.hostKeyBlob)}\n`);
  });

  it('refuses a host known only by another key type like a changed key, even with accept-new', async () => {
    const fake = await server();
    const ecdsa = ssh2.utils.generateKeyPairSync('ecdsa', {bits: 256});
    const ecdsaBlob = (ssh2.utils.parseKey(ecdsa.public) as ssh2.ParsedKey).getPublicSSH();
    const line = `[127.0.0.1]:${fake.port} ecdsa-sha2-nistp256 ${ecdsaBlob.toString('base64')}`;
    knownHosts(line);
    const error = await connector({acceptNew: true})
      .connect(target(fake, 'mysql-1'))
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RefusedError);
    expect((error as Error).message).toBe(
      `HOST KEY TYPE CHANGED for mysql-1 (127.0.0.1): it offered ssh-ed25519 ${fingerprintSha256(fake.hostKeyBlob)},` +
        ' but ~/.ssh/known_hosts knows it only by ecdsa-sha2-nistp256 (line 1); refusing — if this is expected, check the new key and replace those lines',
    );
    expect(readFileSync(path.join(home, '.ssh', 'known_hosts'), 'utf8')).toBe(`${line}\n`);
  });

  it('asks a server with several host keys for the type known_hosts holds', async () => {
    const ecdsa = ssh2.utils.generateKeyPairSync('ecdsa', {bits: 256});
    const ecdsaBlob = (ssh2.utils.parseKey(ecdsa.public) as ssh2.ParsedKey).getPublicSSH();
    const fake = await server(rootResponder, [ecdsa.private]);
    knownHosts(`[127.0.0.1]:${fake.port} ecdsa-sha2-nistp256 ${ecdsaBlob.toString('base64')}`);
    const remote = await connector().connect(target(fake));
    expect((await remote.exec('true')).code).toBe(0);
  });

  it('refuses a revoked key', async () => {
    const fake = await server();
    knownHosts(knownLine(fake), `@revoked * ssh-ed25519 ${fake.hostKeyBlob.toString('base64')}`);
    await expect(connector().connect(target(fake))).rejects.toThrow(/@revoked/);
  });

  it('checks and appends to the UserKnownHostsFile the config names', async () => {
    const fake = await server();
    const file = path.join(home, 'lab_known_hosts');
    const configText = `Host *\n  UserKnownHostsFile ${file}\n`;
    await connector({configText, acceptNew: true}).connect(target(fake));
    expect(readFileSync(file, 'utf8')).toBe(`${knownLine(fake)}\n`);
    expect(existsSync(path.join(home, '.ssh', 'known_hosts'))).toBe(false);
  });

  it('looks keys up by HostKeyAlias when the config sets one', async () => {
    const fake = await server();
    knownHosts(`web-pool ssh-ed25519 ${fake.hostKeyBlob.toString('base64')}`);
    const configText = `Host web\n  HostName 127.0.0.1\n  Port ${fake.port}\n  User root\n  HostKeyAlias web-pool\n`;
    const remote = await connector({configText}).connect({name: 'web-1', ssh: 'web'});
    expect(remote.route).toBe(`root@127.0.0.1:${fake.port}`);
  });
});

describe('authentication', () => {
  it('fails clearly headless when the only key is encrypted', async () => {
    const fake = await server();
    knownHosts(knownLine(fake));
    const encrypted = keyPair({passphrase: 'pass phrase', cipher: 'aes256-ctr', rounds: 4});
    writeFileSync(path.join(home, '.ssh', 'id_ed25519'), encrypted.private);
    await expect(connector().connect(target(fake, 'mysql-1'))).rejects.toThrow(
      'mysql-1: the key ~/.ssh/id_ed25519 is encrypted; load it into ssh-agent or run the wizard',
    );
  });

  it('asks the prompter for a passphrase and uses the decrypted key', async () => {
    const fake = await server();
    knownHosts(knownLine(fake));
    const keyFile = path.join(home, '.ssh', 'id_team');
    const encrypted = keyPair({passphrase: 'pass phrase', cipher: 'aes256-ctr', rounds: 4});
    writeFileSync(keyFile, encrypted.private);
    // The server only knows the unencrypted client key: make it accept this one instead.
    const encryptedPublic = ssh2.utils.parseKey(encrypted.public) as ssh2.ParsedKey;
    clientPublicOverride.key = encryptedPublic;
    try {
      const questions: string[] = [];
      const prompter: Prompter = {
        confirmHostKey: async () => false,
        askSecret: async (host, question) => {
          questions.push(`${host}: ${question}`);
          return 'pass phrase';
        },
      };
      const configText = `Host *\n  IdentityFile ~/.ssh/id_team\n  IdentitiesOnly yes\n`;
      await connector({prompter, configText}).connect(target(fake, 'db-1'));
      expect(questions).toEqual(['db-1: Passphrase for ~/.ssh/id_team']);
    } finally {
      clientPublicOverride.key = undefined;
    }
  });

  it('says which identities it tried when the server refuses them', async () => {
    const fake = await server();
    knownHosts(knownLine(fake));
    writeFileSync(path.join(home, '.ssh', 'id_ed25519'), keyPair().private);
    await expect(connector().connect(target(fake))).rejects.toThrow(/web-1: permission denied for root@127\.0\.0\.1:\d+ \(tried ~\/\.ssh\/id_ed25519\)/);
  });
});

describe('ssh-agent', () => {
  /** A real OpenSSH agent holding the client key; stopped by its own pid. */
  async function agentWithClientKey(): Promise<{socket: string; stop(): void}> {
    const socket = path.join(home, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', socket], {stdio: 'ignore'});
    for (let tries = 0; tries < 100 && !existsSync(socket); tries++) await new Promise((resolve) => setTimeout(resolve, 20));
    const keyFile = path.join(home, 'agent_key');
    writeFileSync(keyFile, clientKey.private, {mode: 0o600});
    const added = spawnSync('ssh-add', [keyFile], {env: {...process.env, SSH_AUTH_SOCK: socket}, encoding: 'utf8'});
    expect(added.status, added.stderr).toBe(0);
    rmSync(keyFile);
    return {socket, stop: () => agent.kill()};
  }

  it('authenticates with the agent when no key file exists', async () => {
    const fake = await server();
    knownHosts(knownLine(fake));
    rmSync(path.join(home, '.ssh', 'id_ed25519'));
    const agent = await agentWithClientKey();
    try {
      const remote = await connector({env: {SSH_AUTH_SOCK: agent.socket}}).connect(target(fake));
      expect((await remote.exec('hello')).code).toBe(0);
    } finally {
      agent.stop();
    }
  });

  it('with IdentitiesOnly, offers only the agent keys named by IdentityFile', async () => {
    const fake = await server();
    knownHosts(knownLine(fake));
    rmSync(path.join(home, '.ssh', 'id_ed25519'));
    writeFileSync(path.join(home, '.ssh', 'id_client.pub'), clientKey.public);
    writeFileSync(path.join(home, '.ssh', 'id_other.pub'), keyPair().public);
    const agent = await agentWithClientKey();
    try {
      const only = (file: string) => `Host *\n  IdentityFile ~/.ssh/${file}\n  IdentitiesOnly yes\n`;
      const allowed = await connector({env: {SSH_AUTH_SOCK: agent.socket}, configText: only('id_client')}).connect(target(fake));
      expect((await allowed.exec('hello')).code).toBe(0);
      await expect(
        connector({env: {SSH_AUTH_SOCK: agent.socket}, configText: only('id_other')}).connect(target(fake, 'web-2')),
      ).rejects.toThrow(/web-2: permission denied .*\(tried ssh-agent\)/);
    } finally {
      agent.stop();
    }
  });
});

describe('running commands', () => {
  it('returns code, stdout and stderr untouched, and passes stdin as data', async () => {
    const fake = await server();
    knownHosts(knownLine(fake));
    const remote = await connector().connect(target(fake));
    expect(await remote.exec('cat', {stdin: '  spaced\n\n'})).toEqual({code: 0, stdout: '  spaced\n\n', stderr: ''});
    expect(await remote.exec('fail')).toEqual({code: 3, stdout: '', stderr: 'boom\n'});
  });

  it('throws a HostError when the link dies before the exit status', async () => {
    const fake = await server((call) => (call.command === 'die' ? 'drop' : rootResponder(call)));
    knownHosts(knownLine(fake));
    const remote = await connector().connect(target(fake));
    const error = await remote.exec('die').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(HostError);
    expect((error as HostError).host).toBe('web-1');
    await expect(remote.exec('hello')).rejects.toThrow(HostError);
  });

  it('times out a command that never finishes', async () => {
    const fake = await server((call) => (call.command === 'sleep' ? 'hang' : rootResponder(call)));
    knownHosts(knownLine(fake));
    const remote = await connector().connect(target(fake));
    await expect(remote.exec('sleep', {timeoutMs: 200})).rejects.toThrow(/did not finish/);
  });

  it('reuses one connection per host, and fresh opens a new one', async () => {
    const fake = await server();
    knownHosts(knownLine(fake));
    const shared = connector();
    const [first, second] = await Promise.all([shared.connect(target(fake)), shared.connect(target(fake))]);
    await first.exec('a');
    await second.exec('b');
    expect(fake.handshakes).toBe(1);
    const fresh = await shared.connect(target(fake), {fresh: true});
    await fresh.exec('c');
    expect(fake.handshakes).toBe(2);
    await fresh.close();
    expect((await first.exec('d')).code).toBe(0);
  });
});

describe('privilege', () => {
  /** deploy: `sudo -n` works when `nopasswd`; the fake's sudo emulation handles `sudo -S` (fake.sudo). */
  const deployResponder =
    (nopasswd: boolean): Responder =>
    (call) => {
      if (call.command === PRIVILEGE_COMMANDS.uid) return {code: 0, stdout: '1000\n'};
      if (call.command.startsWith('sudo -n')) {
        return nopasswd ? {code: 0, stdout: 'root via sudo -n\n'} : {code: 1, stderr: 'sudo: a password is required\n'};
      }
      if (call.command.startsWith('sudo -k -S')) return {code: 0, stdout: `root ran with: ${call.stdin}`};
      return {code: 0, stdout: 'as deploy\n'};
    };
  const answering = (answers: (string | undefined)[], asked: string[]): Prompter => ({
    confirmHostKey: async () => false,
    askSecret: async (host, question) => {
      asked.push(`${host}: ${question}`);
      return answers.shift();
    },
  });

  it('uses sudo -n when the user has NOPASSWD, probed with the very form it runs', async () => {
    const fake = await server(deployResponder(true));
    knownHosts(knownLine(fake));
    const remote = await connector().connect({name: 'web-1', ssh: `deploy@127.0.0.1:${fake.port}`});
    expect((await remote.exec('iptables-save', {root: true})).stdout).toBe('root via sudo -n\n');
    expect((await remote.exec('iptables-save', {root: true})).code).toBe(0);
    // probed once per host
    expect(fake.calls.filter((call) => call.command === PRIVILEGE_COMMANDS.uid)).toHaveLength(1);
    expect(fake.calls.map((call) => call.command)).toContain(`sudo -n -- sh -c 'true'`);
    expect(fake.calls.at(-1)?.command).toBe(`sudo -n -- sh -c 'iptables-save'`);
  });

  it('headless: a password-needing sudo fails naming the host, the user and the fix', async () => {
    const fake = await server(deployResponder(false));
    fake.sudo = {needsPassword: 'hunter2'};
    knownHosts(knownLine(fake));
    const remote = await connector().connect({name: 'mysql-1', ssh: `deploy@127.0.0.1:${fake.port}`});
    await expect(remote.exec('iptables-save', {root: true})).rejects.toThrow(
      'mysql-1: sudo needs a password for deploy; allow NOPASSWD for this user, log in as root, or run the wizard',
    );
    expect(fake.calls.some((call) => call.command.includes('iptables-save'))).toBe(false);
  });

  it('TUI: asks once per host, checks the password alone, writes it only after the prompt and the data only after the shell started', async () => {
    const fake = await server(deployResponder(false));
    fake.sudo = {needsPassword: 'hunter2'};
    knownHosts(knownLine(fake));
    const asked: string[] = [];
    const remote = await connector({prompter: answering(['wrong', 'hunter2'], asked)}).connect({name: 'mysql-1', ssh: `deploy@127.0.0.1:${fake.port}`});
    expect(await remote.exec('sh -s', {root: true, stdin: 'payload'})).toEqual({code: 0, stdout: 'root ran with: payload', stderr: ''});
    expect((await remote.exec('sh -s', {root: true, stdin: 'again'})).stdout).toBe('root ran with: again');
    expect(asked).toEqual(['mysql-1: sudo password for deploy', 'mysql-1: sudo password for deploy']);
    // the wrong password only ever reached the check (which gave up at the second prompt), never a real command
    const checks = fake.rawInputs.filter((_input, index) => fake.calls[index]?.command === PRIVILEGE_COMMANDS.sudoPasswordCheck);
    expect(fake.rawInputs).toContain('wrong\n');
    expect(fake.rawInputs).toContain('hunter2\n');
    expect(checks.length).toBeLessThanOrEqual(2);
    expect(fake.rawInputs.filter((input) => input.includes('payload') || input.includes('again'))).toEqual(['hunter2\npayload', 'hunter2\nagain']);
  });

  it('where sudoers runs sh without a password, the password is never written: the data is all the command reads', async () => {
    // `sudo -n` is refused (sudoers asks for other commands), but sudo runs the shell form without asking.
    const fake = await server(deployResponder(false));
    fake.sudo = {};
    knownHosts(knownLine(fake));
    const asked: string[] = [];
    const remote = await connector({prompter: answering(['hunter2'], asked)}).connect({name: 'mysql-1', ssh: `deploy@127.0.0.1:${fake.port}`});
    expect((await remote.exec('sh -s', {root: true, stdin: 'owner-line\nrules\n'})).stdout).toBe('root ran with: owner-line\nrules\n');
    expect(asked).toEqual(['mysql-1: sudo password for deploy']);
    expect(fake.rawInputs.join('')).not.toContain('hunter2');
  });
});

describe('ProxyJump', () => {
  it('tunnels through the bastion by the target HostName:port and shares one bastion connection', async () => {
    const bastion = await server();
    const app1 = await server();
    const app2 = await server();
    knownHosts(knownLine(bastion), knownLine(app1), knownLine(app2));
    const configText = [
      `Host tunnel-1\n  HostName 127.0.0.1\n  Port ${bastion.port}`,
      `Host app-1\n  HostName 127.0.0.1\n  Port ${app1.port}\n  ProxyJump tunnel-1`,
      `Host app-2\n  HostName 127.0.0.1\n  Port ${app2.port}\n  ProxyJump tunnel-1`,
      `Host *\n  User root\n  IdentityFile ~/.ssh/id_ed25519\n  IdentitiesOnly yes`,
    ].join('\n');
    const inventoryHosts = [
      {name: 'tunnel-1', ssh: 'tunnel-1'},
      {name: 'wordpress-1', ssh: 'app-1'},
      {name: 'wordpress-2', ssh: 'app-2'},
    ];
    const shared = connector({configText, inventoryHosts});
    const [one, two] = await Promise.all(inventoryHosts.slice(1).map((host) => shared.connect(host)));
    expect(one!.route).toBe(`root@127.0.0.1:${app1.port} via tunnel-1`);
    expect((await two!.exec('x')).stdout).toBe('ran x\n');
    expect(bastion.handshakes).toBe(1);
    expect(bastion.tunnels.sort()).toEqual([`127.0.0.1:${app1.port}`, `127.0.0.1:${app2.port}`].sort());
    // a fresh connect builds a whole new chain, bastion included
    const fresh = await shared.connect(inventoryHosts[1]!, {fresh: true});
    await fresh.exec('y');
    expect(bastion.handshakes).toBe(2);
  });

  it('fresh connects in one group share one NEW bastion link; other groups and ordinary connects do not', async () => {
    const bastion = await server();
    const app1 = await server();
    const app2 = await server();
    knownHosts(knownLine(bastion), knownLine(app1), knownLine(app2));
    const inventoryHosts = [
      {name: 'tunnel-1', ssh: `root@127.0.0.1:${bastion.port}`},
      {name: 'wordpress-1', ssh: `root@127.0.0.1:${app1.port}`, jump: 'tunnel-1'},
      {name: 'wordpress-2', ssh: `root@127.0.0.1:${app2.port}`, jump: 'tunnel-1'},
    ];
    const shared = connector({inventoryHosts});
    const cached = await shared.connect(inventoryHosts[1]!);
    expect(bastion.handshakes).toBe(1);
    // The verification: the bastion itself and both hosts behind it, one new bastion handshake.
    const group = await Promise.all(inventoryHosts.map((host) => shared.connect(host, {fresh: true, freshGroup: 'verify-1'})));
    for (const remote of group) expect((await remote.exec('x')).code).toBe(0);
    expect(bastion.handshakes).toBe(2);
    expect(app1.handshakes).toBe(2);
    expect(app2.handshakes).toBe(1);
    // Another group, and a fresh connect without a group, each prove the path anew.
    await (await shared.connect(inventoryHosts[2]!, {fresh: true, freshGroup: 'verify-2'})).exec('y');
    expect(bastion.handshakes).toBe(3);
    await (await shared.connect(inventoryHosts[2]!, {fresh: true})).exec('y');
    expect(bastion.handshakes).toBe(4);
    // Ordinary connects keep using the cached chain, never a group's.
    await (await shared.connect(inventoryHosts[2]!)).exec('z');
    expect(bastion.handshakes).toBe(4);
    expect(app2.handshakes).toBe(4);
    // Closing the group's handles leaves the cached chain working.
    for (const remote of group) await remote.close();
    expect((await cached.exec('still')).code).toBe(0);
  });

  it('runs no privilege probe for a root login', async () => {
    const fake = await server();
    knownHosts(knownLine(fake));
    const remote = await connector().connect(target(fake));
    expect((await remote.exec('iptables-save', {root: true})).code).toBe(0);
    expect(fake.calls.map((call) => call.command)).toEqual(['iptables-save']);
  });

  it('uses the inventory jump (an inventory host name) when the config has no ProxyJump', async () => {
    const bastion = await server();
    const db = await server();
    knownHosts(knownLine(bastion), knownLine(db));
    const inventoryHosts = [
      {name: 'tunnel-1', ssh: `root@127.0.0.1:${bastion.port}`},
      {name: 'mysql-1', ssh: `root@127.0.0.1:${db.port}`, jump: 'tunnel-1'},
    ];
    const remote = await connector({inventoryHosts}).connect(inventoryHosts[1]!);
    expect(remote.route).toBe(`root@127.0.0.1:${db.port} via tunnel-1`);
    expect(bastion.tunnels).toEqual([`127.0.0.1:${db.port}`]);
  });

  it('names the jump host when the bastion cannot be reached', async () => {
    const db = await server();
    knownHosts(knownLine(db));
    const inventoryHosts = [
      {name: 'tunnel-1', ssh: 'root@127.0.0.1:1'},
      {name: 'mysql-1', ssh: `root@127.0.0.1:${db.port}`, jump: 'tunnel-1'},
    ];
    await expect(connector({inventoryHosts}).connect(inventoryHosts[1]!)).rejects.toThrow(
      /^mysql-1: cannot reach its jump host: tunnel-1: connection refused/,
    );
  });
});

describe('discovery over SSH', () => {
  const fixture = readFileSync(path.join(import.meta.dirname, '..', '..', 'fixtures', 'discovery', 'debian-12', 'output.txt'), 'utf8');
  const discoveryResponder: Responder = (call) => {
    if (call.command === PRIVILEGE_COMMANDS.uid) return {code: 0, stdout: '0\n'};
    if (call.command === DISCOVERY_COMMANDS.script) return {code: 0, stdout: fixture};
    if (call.command === DISCOVERY_COMMANDS.sshConnection) return {code: 0, stdout: '10.132.0.10 40522 10.132.0.14 22\n'};
    return {code: 127, stderr: 'not expected\n'};
  };

  it('sends only the module constants, with the script on stdin, whatever the host is called', async () => {
    const fake = await server(discoveryResponder);
    knownHosts(knownLine(fake));
    const hostile = [
      {name: 'mysql-1;touch /tmp/iw-pwned', ssh: `root@127.0.0.1:${fake.port}`},
      {name: '$(id)', ssh: `root@127.0.0.1:${fake.port}`},
    ];
    const shared = connector({inventoryHosts: hostile});
    for (const host of hostile) {
      const discovery = await discoverHost(await shared.connect(host));
      expect(discovery.host).toBe(host.name);
      expect(discovery.facts.interfaces).toEqual({public: 'eth0', private: 'eth1'});
      expect(discovery.facts.sshPort).toBe(22);
    }
    const allowed = new Set<string>([...Object.values(PRIVILEGE_COMMANDS), ...Object.values(DISCOVERY_COMMANDS)]);
    expect(fake.calls.length).toBeGreaterThan(0);
    for (const call of fake.calls) {
      expect(allowed.has(call.command), call.command).toBe(true);
      expect(call.stdin).not.toContain('iw-pwned');
      expect(call.stdin).not.toContain('$(id)');
    }
    expect(fake.calls.filter((call) => call.command === DISCOVERY_COMMANDS.script)[0]?.stdin).toMatch(/^# isolate-wizard discovery/);
  });

  it('strips terminal control sequences from what the server says before anything shows it', async () => {
    const hostile = fixture
      .replace('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"', 'PRETTY_NAME="\u001b]0;owned\u0007Debian\u001b[2J 12\u009b1;1H"')
      .replace('users:(("python3",pid=16964,fd=3))', 'users:(("my\u001b[31msqld",pid=16964,fd=3))');
    const fake = await server((call) => (call.command === DISCOVERY_COMMANDS.script ? {code: 0, stdout: hostile} : discoveryResponder(call)));
    knownHosts(knownLine(fake));
    const discovery = await discoverHost(await connector().connect(target(fake, 'mysql-1')));
    expect(discovery.os.prettyName).toBe('Debian 12');
    expect(discovery.listening.find((service) => service.port === 3306)?.program).toBe('mysqld');
    const shown = formatHost(discovery);
    expect(shown).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  });

  it('refuses a chosen interface whose name holds control characters rather than show or use another name', async () => {
    const hostile = fixture.replaceAll('"eth1"', '"eth\\u001b[8m1"');
    const fake = await server((call) => (call.command === DISCOVERY_COMMANDS.script ? {code: 0, stdout: hostile} : discoveryResponder(call)));
    knownHosts(knownLine(fake));
    await expect(discoverHost(await connector().connect(target(fake, 'mysql-1')))).rejects.toThrow(
      'mysql-1: the interface "eth1" has control characters in its name; name the interfaces in the inventory',
    );
  });

  it('discoverFleet keeps going past a failing host and reports progress', async () => {
    const fake = await server(discoveryResponder);
    knownHosts(knownLine(fake));
    const phases: string[] = [];
    const results = await discoverFleet(
      connector(),
      [
        {name: 'good', ssh: `root@127.0.0.1:${fake.port}`},
        {name: 'bad', ssh: 'root@127.0.0.1:1'},
      ],
      {onProgress: (host, phase) => phases.push(`${host}:${phase}`)},
    );
    expect(results.map((result) => [result.host, result.ok])).toEqual([
      ['good', true],
      ['bad', false],
    ]);
    const bad = results[1]!;
    expect(!bad.ok && bad.error).toMatch(/^bad: connection refused/);
    expect(phases).toContain('good:done');
    expect(phases).toContain('bad:failed');
  });
});
