// Resolves an ssh destination the way the operator's own `ssh` would: ~/.ssh/config (with Include),
// `Host *` defaults, first match wins. The `ssh-config` package computes the matching; this module
// expands Include (the package leaves it alone), parses destinations and normalizes the result.
import {existsSync, readdirSync, readFileSync} from 'node:fs';
import {userInfo} from 'node:os';
import path from 'node:path';
import SSHConfig from 'ssh-config';

export interface SshTarget {
  /** The destination's host part as given (an alias or an address). */
  readonly alias: string;
  /** Where to connect: the config's HostName, else the alias itself. */
  readonly hostname: string;
  readonly user: string;
  readonly port: number;
  /** Jump chain in order (first hop first); [] for none or `ProxyJump none`. */
  readonly proxyJump: readonly string[];
  /** Absolute paths (~ expanded). */
  readonly identityFiles: readonly string[];
  readonly identitiesOnly: boolean;
  /** Seconds. */
  readonly connectTimeout?: number;
  /** Seconds. */
  readonly serverAliveInterval?: number;
  readonly hostKeyAlias?: string;
  /** UserKnownHostsFile (absolute); [] = the default ~/.ssh/known_hosts. New keys go to the first. */
  readonly userKnownHostsFiles: readonly string[];
}

export interface Destination {
  readonly user?: string;
  readonly host: string;
  readonly port?: number;
}

export interface ResolveOptions {
  readonly home: string;
  /** The text of ~/.ssh/config; read from `home` when omitted (missing file = empty config). */
  readonly configText?: string;
  /** The local user name, the default login (like ssh). */
  readonly localUser?: string;
  /** The config already read and parsed (parseSshConfig): a fleet resolves many hosts with one. */
  readonly parsed?: ParsedSshConfig;
}

/** ~/.ssh/config with its Include lines expanded, parsed once. */
export type ParsedSshConfig = ReturnType<typeof SSHConfig.parse>;

export function parseSshConfig(home: string, configText?: string): ParsedSshConfig {
  return SSHConfig.parse(expandIncludes(configText ?? readSshConfig(home), home));
}

/** Thrown for a destination or config value that cannot be used; the caller names the host. */
export class SshConfigError extends Error {
  override readonly name = 'SshConfigError';
}

const MAX_INCLUDE_DEPTH = 16; // the same limit as OpenSSH's READCONF_MAX_DEPTH

/** Parses `[user@]host[:port]`, `[v6addr]:port`, `user@[v6addr]` and a bare IPv6 address. */
export function parseDestination(destination: string): Destination {
  const text = destination.trim();
  if (text === '' || /\s/.test(text)) throw new SshConfigError(`invalid ssh destination "${destination}"`);
  const at = text.lastIndexOf('@');
  const user = at >= 0 ? text.slice(0, at) : undefined;
  const rest = at >= 0 ? text.slice(at + 1) : text;
  if (user === '') throw new SshConfigError(`invalid ssh destination "${destination}": empty user`);
  let host: string;
  let portText: string | undefined;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) throw new SshConfigError(`invalid ssh destination "${destination}": missing "]"`);
    host = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) throw new SshConfigError(`invalid ssh destination "${destination}"`);
      portText = after.slice(1);
    }
  } else {
    const colons = rest.split(':').length - 1;
    if (colons === 1) {
      [host, portText] = rest.split(':') as [string, string];
    } else {
      host = rest; // no port, or a bare IPv6 address
    }
  }
  if (host === '') throw new SshConfigError(`invalid ssh destination "${destination}": empty host`);
  if (portText === undefined) return {user, host};
  return {user, host, port: parsePort(portText, destination)};
}

function parsePort(text: string, context: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new SshConfigError(`invalid port "${text}" in "${context}"`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw new SshConfigError(`invalid port "${text}" in "${context}"`);
  return port;
}

/** Reads ~/.ssh/config (empty when missing). */
export function readSshConfig(home: string): string {
  const file = path.join(home, '.ssh', 'config');
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

/** Replaces every `Include` line by the text of the files it names (relative to ~/.ssh, globs sorted). */
export function expandIncludes(text: string, home: string, depth = 0): string {
  if (depth > MAX_INCLUDE_DEPTH) throw new SshConfigError('ssh config: Include nested too deeply');
  return text
    .split(/\r?\n/)
    .map((line) => {
      const match = /^\s*include(?:\s*=\s*|\s+)(.+?)\s*$/i.exec(line);
      if (!match?.[1]) return line;
      const included = splitWords(match[1]).flatMap((pattern) => includedFiles(pattern, home));
      return included.map((file) => expandIncludes(readFileSync(file, 'utf8'), home, depth + 1)).join('\n');
    })
    .join('\n');
}

function splitWords(text: string): string[] {
  const words: string[] = [];
  for (const match of text.matchAll(/"([^"]*)"|(\S+)/g)) words.push(match[1] ?? match[2] ?? '');
  return words.filter((word) => word !== '');
}

function includedFiles(pattern: string, home: string): string[] {
  const expanded = expandTilde(pattern, home);
  const absolute = path.isAbsolute(expanded) ? expanded : path.join(home, '.ssh', expanded);
  const directory = path.dirname(absolute);
  const base = path.basename(absolute);
  if (!/[*?]/.test(base)) return existsSync(absolute) ? [absolute] : [];
  if (!existsSync(directory)) return [];
  const matcher = new RegExp(
    '^' + base.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$',
  );
  return readdirSync(directory)
    .filter((name) => matcher.test(name) && !name.startsWith('.'))
    .sort()
    .map((name) => path.join(directory, name));
}

export function expandTilde(file: string, home: string): string {
  if (file === '~') return home;
  if (file.startsWith('~/')) return path.join(home, file.slice(2));
  return file;
}

/**
 * Resolves a destination through the ssh config: what `ssh -G destination` would use. A config
 * whose answer for this host depends on something we cannot do like ssh (a `ProxyCommand` other
 * than `ssh -W %h:%p jump`, a `Match exec` that applies) is refused: dialling such a host
 * directly would test and use a path the operator's ssh never takes.
 */
export function resolveSshTarget(destination: string, options: ResolveOptions): SshTarget {
  const parsed = parseDestination(destination);
  const config = options.parsed ?? parseSshConfig(options.home, options.configText);
  // Match exec would run a shell from the config: this tool never runs shells for configs.
  const target = targetFrom(computeConfig(config, parsed), parsed, options);
  const assumingExec = execAssumedTrue(config);
  if (assumingExec) {
    let same: boolean;
    try {
      same = JSON.stringify(targetFrom(computeConfig(assumingExec.config, parsed), parsed, options)) === JSON.stringify(target);
    } catch {
      same = false;
    }
    if (!same) {
      throw new SshConfigError(
        `~/.ssh/config: Match exec ${assumingExec.commands.map((command) => JSON.stringify(command)).join(', ')} is not supported` +
          ' (this tool never runs commands from the config, and it would change how ssh reaches this host): use Host blocks',
      );
    }
  }
  return target;
}

type Computed = Record<string, string | string[]>;

function computeConfig(config: ParsedSshConfig, parsed: Destination): Computed {
  // A config without directives (or none at all) gives nothing but the user asked for: what
  // compute answers, without its look-up of the local user per call (a fleet asks thousands).
  if (!config.some((line) => line.type === SSHConfig.DIRECTIVE)) return parsed.user === undefined ? {} : {user: parsed.user};
  return config.compute(parsed.user === undefined ? {Host: parsed.host} : {Host: parsed.host, User: parsed.user}, {
    ignoreCase: true,
    matchExec: false,
  }) as Computed;
}

/**
 * The config with every `Match exec` criterion taken as true (criteria are matched by the
 * package, exec is left out), or undefined when it has none. Resolving with it and without it
 * tells whether an exec could change anything for a host, without running it.
 */
const execVariants = new WeakMap<ParsedSshConfig, {config: ParsedSshConfig; commands: string[]} | null>();

function execAssumedTrue(config: ParsedSshConfig): {config: ParsedSshConfig; commands: string[]} | undefined {
  const cached = execVariants.get(config);
  if (cached !== undefined) return cached ?? undefined;
  const commands: string[] = [];
  const variant = SSHConfig.parse('');
  for (const line of config) {
    const criteria = 'criteria' in line ? (line.criteria as Record<string, unknown>) : undefined;
    const execKey = criteria && Object.keys(criteria).find((key) => key.toLowerCase() === 'exec');
    if (criteria && execKey !== undefined) {
      const value = criteria[execKey];
      commands.push(Array.isArray(value) ? value.join(' ') : String(value));
      const rest = Object.fromEntries(Object.entries(criteria).filter(([key]) => key !== execKey));
      variant.push({...line, criteria: rest} as (typeof config)[number]);
    } else {
      variant.push(line);
    }
  }
  const result = commands.length > 0 ? {config: variant, commands} : undefined;
  execVariants.set(config, result ?? null);
  return result;
}

function targetFrom(computed: Computed, parsed: Destination, options: ResolveOptions): SshTarget {
  const single = (key: string): string | undefined => {
    const value = computed[key];
    return Array.isArray(value) ? value[0] : value;
  };
  const localUser = options.localUser ?? safeLocalUser();
  const hostname = expandTokens(single('hostname') ?? parsed.host, {h: parsed.host, n: parsed.host, d: options.home});
  const user = parsed.user ?? single('user') ?? localUser;
  const configPort = single('port');
  const port = parsed.port ?? (configPort === undefined ? 22 : parsePort(configPort, `Port for ${parsed.host}`));
  const proxyJump = jumpChain(computed, single);
  const identityValue = computed['identityfile'];
  const identityFiles = (Array.isArray(identityValue) ? identityValue : identityValue ? [identityValue] : [])
    .filter((file) => file.toLowerCase() !== 'none')
    .map((file) =>
      expandTilde(expandTokens(file, {h: hostname, n: parsed.host, d: options.home, r: user, u: localUser}), options.home),
    );
  const identitiesOnly = /^(yes|true)$/i.test(single('identitiesonly') ?? 'no');
  const seconds = (key: string): number | undefined => {
    const value = single(key);
    if (value === undefined) return undefined;
    const number = Number(value);
    return Number.isFinite(number) && number > 0 ? number : undefined;
  };
  const hostKeyAlias = single('hostkeyalias');
  const knownHostsValue = computed['userknownhostsfile'];
  const userKnownHostsFiles = (Array.isArray(knownHostsValue) ? knownHostsValue : knownHostsValue ? [knownHostsValue] : [])
    .filter((file) => file.toLowerCase() !== 'none')
    .map((file) => expandTilde(expandTokens(file, {h: hostname, n: parsed.host, d: options.home, r: user, u: localUser}), options.home));
  return {
    alias: parsed.host,
    hostname,
    user,
    port,
    proxyJump,
    identityFiles,
    identitiesOnly,
    userKnownHostsFiles,
    ...(seconds('connecttimeout') === undefined ? {} : {connectTimeout: seconds('connecttimeout')}),
    ...(seconds('serveraliveinterval') === undefined ? {} : {serverAliveInterval: seconds('serveraliveinterval')}),
    ...(hostKeyAlias === undefined ? {} : {hostKeyAlias}),
  };
}

/**
 * The jump chain: ProxyJump, or a ProxyCommand that is a plain `ssh -W %h:%p jump`. Like OpenSSH,
 * whichever of the two the config gives first wins.
 */
function jumpChain(computed: Computed, single: (key: string) => string | undefined): string[] {
  const keys = Object.keys(computed);
  const jumpText = single('proxyjump');
  const commandText = single('proxycommand');
  const commandFirst = commandText !== undefined && (jumpText === undefined || keys.indexOf('proxycommand') < keys.indexOf('proxyjump'));
  if (commandFirst) {
    if (commandText.trim().toLowerCase() === 'none') return [];
    return [jumpOfProxyCommand(commandText)];
  }
  if (jumpText === undefined || jumpText.toLowerCase() === 'none') return [];
  return jumpText
    .split(',')
    .map((hop) => hop.trim())
    .filter((hop) => hop !== '');
}

/** Flags of ssh that change nothing about where a `-W` tunnel goes. */
const HARMLESS_SSH_FLAGS = /^-[qTNn]+$/;

/**
 * `[exec] ssh [-q] [-T] [-N] [-p PORT] [-l USER] -W %h:%p|[%h]:%p [user@]jump` → `[user@]jump[:port]`.
 * Anything else is refused: we cannot run it, and must not dial around it.
 */
export function jumpOfProxyCommand(command: string): string {
  const refuse = (): never => {
    throw new SshConfigError(`ProxyCommand "${command.trim()}" is not supported: use ProxyJump (or ProxyCommand ssh -W %h:%p JUMPHOST)`);
  };
  const words = command.trim().split(/\s+/);
  if (words[0] === 'exec') words.shift();
  const program = words.shift();
  if (program === undefined || !/^(\/[\w./-]*\/)?ssh$/.test(program)) refuse();
  let forward: string | undefined;
  let port: string | undefined;
  let user: string | undefined;
  let jump: string | undefined;
  while (words.length > 0) {
    const word = words.shift()!;
    const valueOf = (flag: string): string => (word.length > flag.length ? word.slice(flag.length) : (words.shift() ?? refuse()));
    if (HARMLESS_SSH_FLAGS.test(word)) continue;
    if (word.startsWith('-W')) forward = valueOf('-W');
    else if (word.startsWith('-p')) port = valueOf('-p');
    else if (word.startsWith('-l')) user = valueOf('-l');
    else if (word.startsWith('-') || jump !== undefined) refuse();
    else jump = word;
  }
  if (jump === undefined || (forward !== '%h:%p' && forward !== '[%h]:%p') || !/^[\w.@:[\]-]+$/.test(`${jump}${port ?? ''}${user ?? ''}`)) refuse();
  let destination: Destination;
  try {
    destination = parseDestination(jump!);
  } catch {
    return refuse();
  }
  const jumpUser = user ?? destination.user;
  const jumpPort = port === undefined ? destination.port : parsePort(port, `ProxyCommand "${command.trim()}"`);
  const host = destination.host.includes(':') ? `[${destination.host}]` : destination.host;
  return `${jumpUser === undefined ? '' : `${jumpUser}@`}${host}${jumpPort === undefined ? '' : `:${jumpPort}`}`;
}

/** The default identities ssh tries when the config names none. */
export function defaultIdentityFiles(home: string): string[] {
  return ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((name) => path.join(home, '.ssh', name));
}

function expandTokens(text: string, values: Record<string, string>): string {
  return text.replace(/%(.)/g, (token, letter: string) => (letter === '%' ? '%' : (values[letter] ?? token)));
}

// Asked once per process: userInfo() reads the password database each time, and a fleet
// resolves thousands of hosts.
let localUserName: string | undefined;

function safeLocalUser(): string {
  if (localUserName === undefined) {
    try {
      localUserName = userInfo().username;
    } catch {
      localUserName = process.env['USER'] ?? 'root';
    }
  }
  return localUserName;
}
