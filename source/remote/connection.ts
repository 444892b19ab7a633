// SSH the way the operator's own ssh does it: ~/.ssh/config, ProxyJump chains (a bastion connection
// shared by every host behind it), ssh-agent and identity files, known_hosts always checked by the
// logical host name, keepalives so a dead link is noticed in seconds, and root through sudo when the
// login is not root. Every command string sent is a constant of the calling module; data goes on stdin.
import {appendFileSync, existsSync, mkdirSync, readFileSync} from 'node:fs';
import path from 'node:path';
import {performance} from 'node:perf_hooks';
import type {Duplex} from 'node:stream';
import {NodeSSH} from 'node-ssh';
import ssh2 from 'ssh2';
import type {AnyAuthMethod, AuthHandlerMiddleware, Client, ClientChannel, ParsedKey} from 'ssh2';
import {HostError, RefusedError} from '../core/errors.js';
import {stripControl} from '../core/terminal-text.js';
import {
  checkHostKey,
  fingerprintSha256,
  keyTypeOfBlob,
  knownHostsLine,
  knownKeyTypes,
  preferredHostKeyAlgorithms,
  usesHashedNames,
} from './known-hosts.js';
import {defaultIdentityFiles, resolveSshTarget, SshConfigError, type SshTarget} from './ssh-config.js';
import type {ConnectOptions, Connector, ExecOptions, ExecResult, HostTarget, Prompter, RemoteHost, TcpTry} from './types.js';

export interface ConnectorOptions {
  /** The operator's home: ~/.ssh/config, known_hosts and default keys live under it. */
  readonly home: string;
  /** SSH_AUTH_SOCK is read from here. */
  readonly env: NodeJS.ProcessEnv;
  readonly prompter: Prompter;
  /** Trust and remember unknown host keys (like OpenSSH's StrictHostKeyChecking=accept-new). Never changed ones. */
  readonly acceptNew?: boolean;
  /** How many SSH handshakes may run at once (default 8). */
  readonly concurrency?: number;
  /** Lets an inventory `jump` name another inventory host. */
  readonly inventoryHosts?: readonly HostTarget[];
  /** The ssh config text (tests); read from `home` when omitted. */
  readonly configText?: string;
  /** Handshake + authentication limit when the config has no ConnectTimeout (default 20 s). */
  readonly readyTimeoutMs?: number;
  /** Keepalive period (default 5 s; 3 missed = dead link). */
  readonly keepaliveIntervalMs?: number;
  /** Opens the TCP stream to a first hop (tests reach lab namespaces this way); default: a plain TCP connect. */
  readonly dial?: (host: string, port: number) => Promise<Duplex>;
}

/** A Prompter for headless runs: trusts nothing, knows no secrets. */
export const HEADLESS_PROMPTER: Prompter = {
  confirmHostKey: async () => false,
  askSecret: async () => undefined,
};

/**
 * sudo's prompt (`-p`) in password mode, and the line the root shell prints first on stderr: the
 * password is written only after the prompt, and the command's data only after the root shell
 * has started, so neither can ever be read as the other (where sudoers lets `sh` run without a
 * password, sudo never asks and the password is never sent).
 */
export const SUDO_PROMPT_MARKER = '[iw-sudo-password-prompt]';
export const ROOT_STARTED_MARKER = '[iw-root-shell-started]';

/** How commands that need root are run on one host. */
export type Privilege =
  | {readonly kind: 'root'}
  | {readonly kind: 'sudo'}
  | {readonly kind: 'sudo-password'; readonly password: string};

const quoteForSh = (text: string): string => `'${text.replace(/'/g, `'\\''`)}'`;

/**
 * Wraps a FIXED command for root. The command is one of our constants; quoting it for `sh -c` keeps
 * compound commands whole under sudo. With a sudo password, the password is returned apart: the
 * exec writes it when sudo prints SUDO_PROMPT_MARKER, and the data once ROOT_STARTED_MARKER shows.
 */
export function rootCommand(
  command: string,
  privilege: Privilege,
  stdin?: string | Buffer,
): {command: string; stdin?: string | Buffer; sudoPassword?: string} {
  const withStdin = <T extends object>(wrapped: T) => (stdin === undefined ? wrapped : {...wrapped, stdin});
  if (privilege.kind === 'root') return withStdin({command});
  if (privilege.kind === 'sudo') return withStdin({command: `sudo -n -- sh -c ${quoteForSh(command)}`});
  // -k: never use cached credentials, so sudo asks whenever sudoers wants a password for this form.
  const started = `printf '%s\\n' '${ROOT_STARTED_MARKER}' >&2\n`;
  return withStdin({
    command: `sudo -k -S -p '${SUDO_PROMPT_MARKER}' -- sh -c ${quoteForSh(started + command)}`,
    sudoPassword: privilege.password,
  });
}

/** The fixed commands this module runs itself (the privilege probe): the very forms used later. */
export const PRIVILEGE_COMMANDS = {
  uid: 'id -u',
  sudoWithoutPassword: rootCommand('true', {kind: 'sudo'}).command,
  sudoPasswordCheck: rootCommand('true', {kind: 'sudo-password', password: ''}).command,
} as const;

// ---------------------------------------------------------------------------

/** One ssh2 connection (a hop); children are connections tunnelled through it. */
interface Link {
  readonly key: string;
  readonly label: string;
  readonly target: SshTarget;
  readonly ssh: NodeSSH;
  readonly client: Client;
  readonly parent?: Link;
  /** Where this link is shared from in `links` (undefined: a fresh link nobody else gets). */
  readonly shareKey?: string;
  users: number;
  dead?: string;
  ended: boolean;
  /** How root is reached on this server: probed once per connection, shared by its handles. */
  privilege?: Promise<Privilege>;
  /** openTcp tries waiting for an answer, told when the link closes (one listener for them all). */
  tcpTries?: Set<() => void>;
}

interface Hop {
  /** Name shown in messages: the inventory name when known, else the destination. */
  readonly name: string;
  readonly destination: string;
  /** Explicit chain before this hop (from a ProxyJump list); undefined = this hop's own config decides. */
  readonly via?: readonly string[];
  /** The inventory's jump for this hop, used when the ssh config gives no ProxyJump. */
  readonly inventoryJump?: string;
}

/** Why an attempt failed, when we know better than ssh2's message. */
interface AttemptNotes {
  refusal?: Error;
  prompted: boolean;
  /** The prompt in progress, if any. */
  pending?: Promise<unknown>;
  encryptedKeysSkipped: string[];
  badPassphrases: string[];
  triedIdentities: string[];
}

const MAX_HOPS = 8;

class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

export function createConnector(options: ConnectorOptions): Connector {
  const links = new Map<string, Promise<Link>>();
  const allLinks = new Set<Link>();
  const semaphore = new Semaphore(Math.max(1, options.concurrency ?? 8));
  const passphrases = new Map<string, string>();
  const inventory = new Map((options.inventoryHosts ?? []).map((host) => [host.name, host]));
  const defaultKnownHosts = path.join(options.home, '.ssh', 'known_hosts');
  const knownHostsFiles = (target: SshTarget) =>
    target.userKnownHostsFiles.length > 0 ? target.userKnownHostsFiles : [defaultKnownHosts];
  /** Revoked anywhere wins, then known anywhere, then changed (naming its file), else unknown. */
  function hostKeyStatus(target: SshTarget, name: string, port: number, blob: Buffer) {
    const statuses = knownHostsFiles(target).map((file) => ({
      file,
      status: checkHostKey(existsSync(file) ? readFileSync(file, 'utf8') : '', name, port, blob),
    }));
    const revoked = statuses.find((entry) => entry.status.kind === 'revoked');
    if (revoked) return {kind: 'revoked' as const};
    if (statuses.some((entry) => entry.status.kind === 'known')) return {kind: 'known' as const};
    for (const entry of statuses) {
      if (entry.status.kind === 'changed') return {...entry.status, file: entry.file};
    }
    for (const entry of statuses) {
      if (entry.status.kind === 'other-type') return {...entry.status, file: entry.file};
    }
    return {kind: 'unknown' as const};
  }
  const readKnownHosts = (target: SshTarget) =>
    knownHostsFiles(target)
      .map((file) => (existsSync(file) ? readFileSync(file, 'utf8') : ''))
      .join('\n');
  const keepaliveInterval = options.keepaliveIntervalMs ?? 5000;
  // IW_TIMING=1: one stderr line per handshake and per command, ms since the process started.
  const timing = options.env['IW_TIMING'] === '1' ? timingLog : undefined;
  if (timing) watchEventLoop();

  const display = (file: string): string =>
    file.startsWith(options.home + path.sep) ? `~${file.slice(options.home.length)}` : file;

  function resolve(hop: Hop): SshTarget {
    try {
      return resolveSshTarget(hop.destination, {
        home: options.home,
        ...(options.configText === undefined ? {} : {configText: options.configText}),
      });
    } catch (error) {
      if (error instanceof SshConfigError) throw new HostError(hop.name, error.message);
      throw error;
    }
  }

  /** An inventory name used as a jump means that host's ssh destination (and its own jump). */
  function hopFor(nameOrDestination: string, via?: readonly string[]): Hop {
    const host = inventory.get(nameOrDestination);
    if (host) {
      return {
        name: host.name,
        destination: host.ssh,
        ...(via ? {via} : {}),
        ...(host.jump === undefined ? {} : {inventoryJump: host.jump}),
      };
    }
    const byDestination = [...inventory.values()].find((candidate) => candidate.ssh === nameOrDestination);
    return {name: byDestination?.name ?? nameOrDestination, destination: nameOrDestination, ...(via ? {via} : {})};
  }

  /**
   * `fresh`: open new connections for the whole chain. With a `freshGroup`, connections opened for
   * that group are shared by its members (hosts behind one bastion verify over ONE new bastion
   * link), and never by ordinary connects or other groups.
   */
  async function linkFor(hop: Hop, fresh: boolean, depth: number, freshGroup?: string): Promise<Link> {
    if (depth > MAX_HOPS) throw new HostError(hop.name, 'the ProxyJump chain is too long or loops');
    const target = resolve(hop);
    let parentHop: Hop | undefined;
    const chain = hop.via ?? target.proxyJump;
    if (hop.via !== undefined || target.proxyJump.length > 0) {
      const last = chain[chain.length - 1];
      if (last !== undefined) {
        const before = chain.slice(0, -1);
        parentHop = hopFor(last, before.length > 0 ? before : undefined);
      }
    } else if (hop.inventoryJump !== undefined) {
      parentHop = hopFor(hop.inventoryJump);
    }
    let parent: Link | undefined;
    if (parentHop) {
      try {
        parent = await linkFor(parentHop, fresh, depth + 1, freshGroup);
      } catch (error) {
        if (error instanceof HostError && error.host !== hop.name) {
          throw new HostError(hop.name, `cannot reach its jump host: ${error.message}`);
        }
        throw error;
      }
    }
    const key = `${target.user}@${target.hostname}:${target.port}${parent ? ` via ${parent.key}` : ''}`;
    const shareKey = !fresh ? key : freshGroup !== undefined ? `fresh:${freshGroup}:${key}` : undefined;
    if (shareKey !== undefined) {
      // Share a connection that is open or opening; a failed attempt is shared by those who waited
      // for it, but never cached: the next connect tries again (e.g. after the operator fixed known_hosts).
      for (let existing = links.get(shareKey); existing; existing = links.get(shareKey)) {
        let link: Link;
        try {
          link = await existing;
        } catch (error) {
          if (parent) release(parent);
          throw error;
        }
        if (!link.dead && !link.ended) {
          link.users++;
          if (parent) release(parent); // the shared link already holds its own reference to the parent
          return link;
        }
        if (links.get(shareKey) === existing) links.delete(shareKey);
      }
    }
    const opening = semaphore.run(() => openLink(hop, target, key, parent, shareKey));
    if (shareKey !== undefined) links.set(shareKey, opening);
    try {
      return await opening;
    } catch (error) {
      if (shareKey !== undefined && links.get(shareKey) === opening) links.delete(shareKey);
      if (parent) release(parent);
      throw error;
    }
  }

  async function openLink(hop: Hop, target: SshTarget, key: string, parent: Link | undefined, shareKey: string | undefined): Promise<Link> {
    let notes = newNotes();
    try {
      return await attempt(hop, target, key, parent, shareKey, notes);
    } catch (error) {
      // A person answering a prompt can outlast the handshake timeout: wait for the answer (never ask
      // twice at once); answers are remembered, so one retry goes through without asking again.
      if (notes.pending) await notes.pending.catch(() => undefined);
      if (notes.refusal) throw notes.refusal;
      if (notes.prompted && /timed out|timeout/i.test(messageOf(error))) {
        notes = newNotes();
        return await attempt(hop, target, key, parent, shareKey, notes);
      }
      throw error;
    }
  }

  async function attempt(
    hop: Hop,
    target: SshTarget,
    key: string,
    parent: Link | undefined,
    shareKey: string | undefined,
    notes: AttemptNotes,
  ): Promise<Link> {
    const ssh = new NodeSSH();
    const startedAt = performance.now();
    const readyTimeout = target.connectTimeout !== undefined ? target.connectTimeout * 1000 : (options.readyTimeoutMs ?? 20_000);
    let sock: Duplex | undefined;
    if (parent) {
      sock = await forwardOut(parent, hop, target);
    } else if (options.dial) {
      try {
        sock = await options.dial(target.hostname, target.port);
      } catch (error) {
        throw explainConnectError(hop, target, undefined, error, notes);
      }
    }
    let earlyError: string | undefined;
    try {
      const connecting = ssh.connect({
        ...(sock ? {sock} : {host: target.hostname}),
        port: target.port,
        username: target.user,
        readyTimeout,
        keepaliveInterval: target.serverAliveInterval !== undefined ? target.serverAliveInterval * 1000 : keepaliveInterval,
        keepaliveCountMax: 3,
        // The key types known_hosts holds for this host first: a server with several host keys
        // then shows the one we know, instead of a key we never saw.
        algorithms: {serverHostKey: preferredHostKeyAlgorithms(knownKeyTypes(readKnownHosts(target), ...hostKeyName(target)))},
        // ssh2 treats any non-undefined return as the verdict: return nothing, answer through `verify`.
        hostVerifier: (blob: Buffer, verify: (valid: boolean) => void): void => {
          verifyHostKey(hop, target, blob, notes).then(verify, (error: unknown) => {
            notes.refusal ??= error instanceof Error ? error : new Error(String(error));
            verify(false);
          });
        },
        authHandler: authHandlerFor(hop, target, notes),
      });
      // Listen from the start: node-ssh drops its own error listener once connected, and an error
      // emitted before ours is attached would crash the process.
      ssh.connection?.on('error', (error: Error) => {
        earlyError ??= error.message;
      });
      await connecting;
    } catch (error) {
      ssh.dispose();
      sock?.destroy();
      throw explainConnectError(hop, target, parent, error, notes);
    }
    const client = ssh.connection!;
    timing?.(`handshake ${key}${shareKey === key ? '' : ` (fresh${shareKey === undefined ? '' : ', shared in its group'})`}`, startedAt);
    const link: Link = {
      key,
      label: hop.name,
      target,
      ssh,
      client,
      ...(parent ? {parent} : {}),
      ...(shareKey === undefined ? {} : {shareKey}),
      users: 1,
      ended: false,
      ...(earlyError === undefined ? {} : {dead: earlyError}),
    };
    client.on('error', (error: Error) => {
      link.dead ??= error.message;
    });
    client.on('close', () => {
      link.dead ??= 'the connection closed';
      if (shareKey === undefined) return;
      links.get(shareKey)?.then(
        (current) => {
          if (current === link) links.delete(shareKey);
        },
        () => undefined,
      );
    });
    allLinks.add(link);
    return link;
  }

  function forwardOut(parent: Link, hop: Hop, target: SshTarget): Promise<ClientChannel> {
    return new Promise((resolvePromise, reject) => {
      if (parent.dead) {
        reject(new HostError(hop.name, `the connection to its jump host ${parent.label} is gone (${parent.dead})`));
        return;
      }
      parent.client.forwardOut('127.0.0.1', 0, target.hostname, target.port, (error, channel) => {
        if (error) {
          reject(
            new HostError(
              hop.name,
              `the jump host ${parent.label} could not open a tunnel to ${target.hostname}:${target.port} (${error.message})`,
            ),
          );
        } else {
          resolvePromise(channel);
        }
      });
    });
  }

  async function verifyHostKey(hop: Hop, target: SshTarget, blob: Buffer, notes: AttemptNotes): Promise<boolean> {
    const [name, port] = hostKeyName(target);
    const status = hostKeyStatus(target, name, port, blob);
    const fingerprint = fingerprintSha256(blob);
    const keyType = keyTypeOfBlob(blob);
    const where = name === hop.name ? name : `${hop.name} (${name})`;
    switch (status.kind) {
      case 'known':
        return true;
      case 'revoked':
        notes.refusal = new RefusedError(`${hop.name}: the host key of ${name} (${keyType} ${fingerprint}) is marked @revoked in ~/.ssh/known_hosts; refusing to connect`);
        return false;
      case 'changed':
        notes.refusal = new RefusedError(
          `REMOTE HOST IDENTIFICATION HAS CHANGED for ${where}: expected ${status.expectedFingerprints.join(' or ')}, got ${fingerprint}` +
            ` — if this is expected, remove the old line from ${display(status.file)} (line ${status.lines.join(', ')})`,
        );
        return false;
      case 'other-type':
        notes.refusal = new RefusedError(
          `HOST KEY TYPE CHANGED for ${where}: it offered ${keyType} ${fingerprint}, but ${display(status.file)} knows it only by ${status.knownTypes.join(', ')}` +
            ` (line ${status.lines.join(', ')}); refusing — if this is expected, check the new key and replace those lines`,
        );
        return false;
      case 'unknown': {
        let trusted = options.acceptNew === true;
        if (!trusted) {
          notes.prompted = true;
          const answer = options.prompter.confirmHostKey(hop.name, keyType, fingerprint);
          notes.pending = answer;
          trusted = await answer;
        }
        if (!trusted) {
          notes.refusal = new RefusedError(
            `${hop.name}: unknown host key for ${name} (${keyType} ${fingerprint}); check it, then run again with --accept-new or trust it in the wizard`,
          );
          return false;
        }
        rememberHostKey(knownHostsFiles(target)[0]!, readKnownHosts(target), name, port, blob);
        return true;
      }
    }
  }

  /** The known_hosts name and port of a target: OpenSSH stores a HostKeyAlias without the port. */
  function hostKeyName(target: SshTarget): [string, number] {
    return target.hostKeyAlias !== undefined ? [target.hostKeyAlias, 22] : [target.hostname, target.port];
  }

  function rememberHostKey(file: string, allText: string, name: string, port: number, blob: Buffer): void {
    // Another hop may have trusted the same key a moment ago.
    if (checkHostKey(allText, name, port, blob).kind === 'known') return;
    mkdirSync(path.dirname(file), {recursive: true, mode: 0o700});
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    const separator = text === '' || text.endsWith('\n') ? '' : '\n';
    appendFileSync(file, `${separator}${knownHostsLine(name, port, blob, usesHashedNames(text))}\n`, {mode: 0o600});
  }

  /** Tries the agent first, then each identity file; asks for a passphrase only when a key is reached. */
  function authHandlerFor(hop: Hop, target: SshTarget, notes: AttemptNotes) {
    const files = target.identityFiles.length > 0 ? target.identityFiles : defaultIdentityFiles(options.home);
    const agentSocket = options.env['SSH_AUTH_SOCK'];
    const steps: (() => Promise<AnyAuthMethod | undefined>)[] = [];
    if (agentSocket) {
      steps.push(async () => {
        notes.triedIdentities.push('ssh-agent');
        const agent = target.identitiesOnly ? filteredAgent(agentSocket, files) : agentSocket;
        return agent === undefined ? undefined : {type: 'agent', username: target.user, agent};
      });
    }
    for (const file of files) {
      steps.push(async () => {
        if (!existsSync(file)) return undefined;
        notes.triedIdentities.push(display(file));
        const data = readFileSync(file);
        let parsed = firstKey(ssh2.utils.parseKey(data));
        if (parsed instanceof Error && /passphrase|encrypted/i.test(parsed.message)) {
          let passphrase = passphrases.get(file);
          if (passphrase === undefined) {
            notes.prompted = true;
            const answer = options.prompter.askSecret(hop.name, `Passphrase for ${display(file)}`);
            notes.pending = answer;
            passphrase = await answer;
          }
          if (passphrase === undefined) {
            notes.encryptedKeysSkipped.push(display(file));
            return undefined;
          }
          parsed = firstKey(ssh2.utils.parseKey(data, passphrase));
          if (parsed instanceof Error) {
            passphrases.delete(file);
            notes.badPassphrases.push(display(file));
            return undefined;
          }
          passphrases.set(file, passphrase);
        }
        if (parsed instanceof Error || !parsed.isPrivateKey()) return undefined;
        return {type: 'publickey', username: target.user, key: parsed};
      });
    }
    let index = 0;
    const handler: AuthHandlerMiddleware = (methodsLeft, _partial, next): void => {
      const advance = async (): Promise<AnyAuthMethod | false> => {
        while (index < steps.length) {
          const step = steps[index++]!;
          if (methodsLeft && !methodsLeft.includes('publickey')) return false;
          const method = await step();
          if (method) return method;
        }
        return false;
      };
      // ssh2 takes `false` as "no more methods" although its types do not say so.
      const stop = false as unknown as AnyAuthMethod;
      advance().then(
        (method) => next(method === false ? stop : method),
        () => next(stop),
      );
    };
    return handler;
  }

  function explainConnectError(hop: Hop, target: SshTarget, parent: Link | undefined, error: unknown, notes: AttemptNotes): Error {
    if (notes.refusal) return notes.refusal;
    if (error instanceof HostError || error instanceof RefusedError) return error;
    const message = messageOf(error);
    const address = `${target.user}@${target.hostname}:${target.port}${parent ? ` via ${parent.label}` : ''}`;
    if (/authentication methods failed/i.test(message)) {
      if (notes.encryptedKeysSkipped.length > 0) {
        const file = notes.encryptedKeysSkipped[0]!;
        return new HostError(hop.name, `the key ${file} is encrypted; load it into ssh-agent or run the wizard`);
      }
      if (notes.badPassphrases.length > 0) {
        return new HostError(hop.name, `wrong passphrase for ${notes.badPassphrases.join(', ')}`);
      }
      const tried = notes.triedIdentities.length > 0 ? notes.triedIdentities.join(', ') : 'no key found (no ssh-agent, no ~/.ssh/id_*)';
      return new HostError(hop.name, `permission denied for ${address} (tried ${tried})`);
    }
    if (/ECONNREFUSED/.test(message)) return new HostError(hop.name, `connection refused by ${address}: is sshd running on that port?`);
    if (/ETIMEDOUT|timed out|timeout/i.test(message)) return new HostError(hop.name, `no answer from ${address} (timed out)`);
    if (/ENOTFOUND|EAI_AGAIN/.test(message)) {
      const hint = target.hostname === target.alias ? ' (no HostName for it in ~/.ssh/config, and no such DNS name)' : '';
      return new HostError(hop.name, `cannot resolve ${target.hostname}${hint}`);
    }
    if (/EHOSTUNREACH|ENETUNREACH/.test(message)) return new HostError(hop.name, `${address} is unreachable`);
    return new HostError(hop.name, `cannot connect to ${address}: ${message}`);
  }

  function release(link: Link): void {
    link.users--;
    if (link.users > 0) return;
    endLink(link);
  }

  function endLink(link: Link): void {
    if (link.ended) return;
    link.ended = true;
    allLinks.delete(link);
    const shareKey = link.shareKey;
    if (shareKey !== undefined) {
      void links.get(shareKey)?.then(
        (current) => {
          if (current === link) links.delete(shareKey);
        },
        () => undefined,
      );
    }
    link.ssh.dispose();
    if (link.parent) release(link.parent);
  }

  function remoteHostFor(name: string, link: Link): RemoteHost {
    let closed = false;
    const chain: string[] = [];
    for (let hop = link.parent; hop; hop = hop.parent) chain.push(hop.label);
    const route =
      `${link.target.user}@${link.target.hostname}:${link.target.port}` + (chain.length > 0 ? ` via ${chain.join(' via ')}` : '');

    const raw = async (
      command: string,
      stdin: string | Buffer | undefined,
      timeoutMs: number | undefined,
      reply?: ExecOptions['reply'],
      sudoPassword?: string,
    ) => {
      const startedAt = performance.now();
      try {
        return await execOnLink(name, link, command, stdin, timeoutMs, reply, sudoPassword);
      } finally {
        timing?.(`exec ${name}${link.shareKey === link.key ? '' : ' (fresh)'}: ${command.slice(0, 70)}`, startedAt);
      }
    };

    async function detectPrivilege(): Promise<Privilege> {
      const uid = await raw(PRIVILEGE_COMMANDS.uid, undefined, 15_000);
      if (uid.code === 0 && uid.stdout.trim() === '0') return {kind: 'root'};
      const user = link.target.user;
      const sudo = await raw(PRIVILEGE_COMMANDS.sudoWithoutPassword, undefined, 15_000);
      if (sudo.code === 0) return {kind: 'sudo'};
      if (/not found/i.test(sudo.stderr) || sudo.code === 127) {
        throw new HostError(name, `${user} is not root and sudo is not installed; log in as root or install sudo`);
      }
      if (!/password/i.test(sudo.stderr)) {
        throw new HostError(name, `${user} may not use sudo (${stripControl(firstLine(sudo.stderr)) || `exit ${sudo.code}`}); log in as root or allow sudo for this user`);
      }
      for (let tries = 0; tries < 3; tries++) {
        const password = await options.prompter.askSecret(name, `sudo password for ${user}`);
        if (password === undefined) {
          throw new HostError(name, `sudo needs a password for ${user}; allow NOPASSWD for this user, log in as root, or run the wizard`);
        }
        // Checked on its own first: a wrong password must never make sudo read the command's data as retries.
        const check = await raw(PRIVILEGE_COMMANDS.sudoPasswordCheck, undefined, 15_000, undefined, password);
        if (check.code === 0) return {kind: 'sudo-password', password};
      }
      throw new HostError(name, `sudo refused the password for ${user}`);
    }

    return {
      name,
      route,
      async exec(command: string, execOptions: ExecOptions = {}): Promise<ExecResult> {
        if (closed) throw new HostError(name, 'the connection was closed');
        if (!execOptions.root) return raw(command, execOptions.stdin, execOptions.timeoutMs, execOptions.reply);
        // A root login is root: no probe round trip.
        const probe = (link.privilege ??= link.target.user === 'root' ? Promise.resolve<Privilege>({kind: 'root'}) : detectPrivilege());
        let mode: Privilege;
        try {
          mode = await probe;
        } catch (error) {
          if (link.privilege === probe) delete link.privilege; // e.g. no password given: ask again next time
          throw error;
        }
        const wrapped = rootCommand(command, mode, execOptions.stdin);
        return raw(wrapped.command, wrapped.stdin, execOptions.timeoutMs, execOptions.reply, wrapped.sudoPassword);
      },
      openTcp(address: string, port: number, timeoutMs: number): Promise<TcpTry> {
        if (closed || link.dead || link.ended) return Promise.resolve({outcome: 'untested', detail: `the connection is gone (${link.dead ?? 'closed'})`});
        return openTcpOnLink(link, address, port, timeoutMs);
      },
      async close(): Promise<void> {
        if (closed) return;
        closed = true;
        release(link);
      },
    };
  }

  return {
    async connect(target: HostTarget, connectOptions?: ConnectOptions): Promise<RemoteHost> {
      const hop: Hop = {
        name: target.name,
        destination: target.ssh,
        ...(target.jump === undefined ? {} : {inventoryJump: target.jump}),
      };
      const fresh = connectOptions?.fresh === true;
      const link = await linkFor(hop, fresh, 0, fresh ? connectOptions?.freshGroup : undefined);
      return remoteHostFor(target.name, link);
    },
    async closeAll(): Promise<void> {
      const pending = [...links.values()];
      links.clear();
      await Promise.allSettled(pending);
      for (const link of [...allLinks]) {
        link.ended = true;
        link.ssh.dispose();
      }
      allLinks.clear();
    },
  };
}

/** Runs one command on one connection; a link that dies before the exit status is a HostError. */
function execOnLink(
  name: string,
  link: Link,
  command: string,
  stdin: string | Buffer | undefined,
  timeoutMs: number | undefined,
  reply?: ExecOptions['reply'],
  sudoPassword?: string,
): Promise<ExecResult> {
  return new Promise((resolvePromise, reject) => {
    if (link.dead || link.ended) {
      reject(new HostError(name, `the connection is gone (${link.dead ?? 'closed'})`));
      return;
    }
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      link.client.removeListener('close', onClose);
      outcome();
    };
    const onClose = () => finish(() => reject(new HostError(name, `the connection was lost (${link.dead ?? 'closed'})`)));
    link.client.once('close', onClose);
    try {
      link.client.exec(command, (error, channel) => {
        if (error) {
          finish(() => reject(new HostError(name, `could not run a command: ${error.message}`)));
          return;
        }
        const stdout: Buffer[] = [];
        const stderr: Buffer[] = [];
        let code: number | null = null;
        let signal: string | undefined;
        // With a sudo password, nothing is written until sudo asks (then the password, once) or
        // the root shell has started (then the data): see SUDO_PROMPT_MARKER.
        let sudo = sudoPassword === undefined ? undefined : {before: '', prompts: 0, waiting: [] as (() => void)[]};
        const whenStarted = (write: () => void) => (sudo ? sudo.waiting.push(write) : write());
        // A conversation (reply): the output is offered to it as it grows; its answer ends stdin.
        let asked = false;
        channel.on('data', (chunk: Buffer) => {
          stdout.push(chunk);
          if (!reply || asked) return;
          const answer = reply(Buffer.concat(stdout).toString('utf8'));
          if (!answer) return;
          asked = true;
          answer.then(
            (text) => whenStarted(() => channel.end(text)),
            () => whenStarted(() => channel.end()),
          );
        });
        channel.stderr.on('data', (chunk: Buffer) => {
          if (!sudo) {
            stderr.push(chunk);
            return;
          }
          sudo.before += chunk.toString('utf8');
          for (;;) {
            const prompt = sudo.before.indexOf(SUDO_PROMPT_MARKER);
            const started = sudo.before.indexOf(`${ROOT_STARTED_MARKER}\n`);
            if (started >= 0 && (prompt < 0 || started < prompt)) {
              // The root shell runs: what follows is the command's own stderr.
              stderr.push(Buffer.from(sudo.before.slice(started + ROOT_STARTED_MARKER.length + 1)));
              const waiting = sudo.waiting;
              sudo = undefined;
              for (const write of waiting) write();
              return;
            }
            if (prompt < 0) return;
            sudo.before = sudo.before.slice(0, prompt) + sudo.before.slice(prompt + SUDO_PROMPT_MARKER.length);
            // Asked again: the password was refused. End the input, so sudo gives up; never retry here.
            if (++sudo.prompts === 1) channel.write(`${sudoPassword}\n`);
            else channel.end();
          }
        });
        channel.on('exit', (exitCode: number | null, exitSignal?: string) => {
          code = exitCode;
          signal = exitSignal;
        });
        channel.on('close', () => {
          finish(() => {
            if (code === null) {
              const why = signal ? `killed by ${signal}` : `the connection was lost (${link.dead ?? 'no exit status'})`;
              reject(new HostError(name, why));
              return;
            }
            resolvePromise({
              code,
              stdout: Buffer.concat(stdout).toString('utf8'),
              // The root shell never started: sudo's own messages are the story.
              stderr: sudo ? sudo.before : Buffer.concat(stderr).toString('utf8'),
            });
          });
        });
        if (timeoutMs !== undefined) {
          timer = setTimeout(() => {
            finish(() => reject(new HostError(name, `a command did not finish within ${Math.round(timeoutMs / 1000)} s`)));
            channel.close();
          }, timeoutMs);
        }
        whenStarted(() => {
          if (reply) {
            if (stdin !== undefined && stdin.length > 0) channel.write(stdin);
          } else if (stdin !== undefined) channel.end(stdin);
          else channel.end();
        });
      });
    } catch (error) {
      finish(() => reject(new HostError(name, `could not run a command: ${messageOf(error)}`)));
    }
  });
}

/**
 * A direct-tcpip channel asked of the link's sshd: sshd connects from its host to address:port and
 * answers once the handshake completes (open) or fails (refused: the destination answered too).
 */
function openTcpOnLink(link: Link, address: string, port: number, timeoutMs: number): Promise<TcpTry> {
  return new Promise((resolvePromise) => {
    let settled = false;
    const finish = (result: TcpTry): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      link.tcpTries?.delete(onClose);
      resolvePromise(result);
    };
    const timer = setTimeout(() => finish({outcome: 'dropped', detail: `no answer within ${timeoutMs / 1000} s`}), timeoutMs);
    const onClose = (): void => finish({outcome: 'untested', detail: `the connection was lost (${link.dead ?? 'closed'})`});
    if (!link.tcpTries) {
      const tries = (link.tcpTries = new Set());
      link.client.once('close', () => {
        for (const tell of [...tries]) tell();
      });
    }
    link.tcpTries.add(onClose);
    try {
      link.client.forwardOut('127.0.0.1', 0, address, port, (error, channel) => {
        if (!error) {
          channel.close(); // a late answer too: nothing is sent on it
          finish({outcome: 'open', detail: 'handshake completed'});
          return;
        }
        finish(judgeOpenFailure(error as Error & {reason?: number | string}));
      });
    } catch (error) {
      finish({outcome: 'untested', detail: messageOf(error)});
    }
  });
}

/** sshd's reasons for not opening a channel (RFC 4254 5.1: 1 prohibited, 2 connect failed). */
export function judgeOpenFailure(error: Error & {reason?: number | string}): TcpTry {
  const description = error.message.replace(/^\(SSH\) Channel open failure: /, '');
  if (error.reason === 2 || /refused|unreachable|no route|timed out/i.test(description)) {
    if (/refused/i.test(description)) return {outcome: 'open', detail: 'refused (no listener; the firewalls let it through)'};
    if (/no route to host|host is unreachable|prohibited/i.test(description)) return {outcome: 'dropped', detail: `rejected (${description})`};
    if (/timed out/i.test(description)) return {outcome: 'dropped', detail: `no answer (${description})`};
  }
  if (error.reason === 1) return {outcome: 'untested', detail: `sshd refuses to open connections (${description}: AllowTcpForwarding?)`};
  return {outcome: 'untested', detail: description};
}

/** An agent that offers only the keys named by IdentityFile (IdentitiesOnly yes), like OpenSSH. */
function filteredAgent(socket: string, files: readonly string[]): ssh2.BaseAgent | undefined {
  const allowed: Buffer[] = [];
  for (const file of files) {
    for (const candidate of [`${file}.pub`, file]) {
      if (!existsSync(candidate)) continue;
      const parsed = firstKey(ssh2.utils.parseKey(readFileSync(candidate)));
      if (!(parsed instanceof Error)) {
        allowed.push(parsed.getPublicSSH());
        break;
      }
    }
  }
  if (allowed.length === 0) return undefined;
  const inner = new ssh2.OpenSSHAgent(socket);
  class IdentitiesOnlyAgent extends ssh2.BaseAgent<ParsedKey> {
    getIdentities(callback: (error: Error | undefined, keys?: ParsedKey[]) => void): void {
      inner.getIdentities((error, keys) => {
        if (error) return callback(error);
        const offered = (keys ?? []).filter((key): key is ParsedKey => 'getPublicSSH' in key);
        callback(undefined, offered.filter((key) => allowed.some((blob) => blob.equals(key.getPublicSSH()))));
      });
    }
    sign(...args: unknown[]): void {
      (inner.sign as (...innerArgs: unknown[]) => void)(...args);
    }
  }
  return new IdentitiesOnlyAgent();
}

function firstKey(parsed: ParsedKey | ParsedKey[] | Error): ParsedKey | Error {
  if (Array.isArray(parsed)) return parsed[0] ?? new Error('no key in file');
  return parsed;
}

/** IW_TIMING: reports the moments this process was too busy to read its connections (> 50 ms late). */
function watchEventLoop(): void {
  let expected = performance.now() + 20;
  setInterval(() => {
    const now = performance.now();
    if (now - expected > 50) timingLog('event loop blocked', expected);
    expected = now + 20;
  }, 20).unref();
}

function timingLog(what: string, startedAt: number): void {
  const now = performance.now();
  process.stderr.write(`[timing] ${startedAt.toFixed(0).padStart(6)}..${now.toFixed(0).padStart(6)} ms (${(now - startedAt).toFixed(0).padStart(5)}) ${what}\n`);
}

function newNotes(): AttemptNotes {
  return {prompted: false, encryptedKeysSkipped: [], badPassphrases: [], triedIdentities: []};
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function firstLine(text: string): string {
  return text.trim().split('\n')[0] ?? '';
}
