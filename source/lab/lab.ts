// The network-namespace lab: the tutorial's fleet as real (tiny) servers, for the end-to-end tests and
// for `isolate-wizard demo`.
//
// Layout, all in namespaces of the lab's own (the root namespace's firewall, routes and addresses are
// never touched):
//   switch    namespace holding two bridges, br-pub (203.0.113.0/24, 2001:db8:100::/64) and
//             br-priv (10.132.0.0/24, fd00:132::/64); every other namespace has veths into it.
//   operator  "the internet" and the operator's laptop: .1 / ::1 on the public net, every server's
//             default gateway; the tool and OpenSSH run here.
//   servers   one network namespace each (eth0 public, eth1 private) plus a mount + UTS namespace held
//             by its sshd, with private /tmp, /run, /var/tmp, /root, /home and overlays on /etc,
//             /var/lib, /var/log, /usr/local, /opt (upper layers in dir/hosts/NAME/overlays, so a
//             test can also look at what the tool wrote); a listener process serves the role ports.
//             mysql-2 has no nft (hidden by an overlay on /usr/sbin): the iptables-only server,
//             where backend auto falls back to iptables.
//   tenant    another customer's server, private net only.
//
// Usage (in test/lab/*.test.ts, run one file at a time: npx vitest run --project lab FILE; and
// source/commands/demo.ts):
//   const lab = await createLab();                        // ~2 s on an idle machine
//   afterAll(() => lab.teardown());                       // also done on exit / SIGINT / SIGTERM
//   await lab.runCli(['apply', '--inventory', lab.writeInventory(inventory)]);
//   await lab.hosts.get('wordpress-1')!.exec(['iptables-save']);   // as root inside that server
//   await lab.canConnect('operator', '203.0.113.12', 80);           // false once locked down
//   await lab.execOperator(['ssh', '-F', lab.sshConfigPath, 'mysql-1', 'true']);
//   const sock = await lab.dial('203.0.113.10', 22);      // for ssh2 in the test process itself
// Logins: root with lab.home/.ssh/id_ed25519 (or id_ed25519_locked, passphrase lab-key-pass);
// user deploy with the same keys, whose sudo always asks for the password lab-sudo-pass.
// IW_LAB_KEEP=1 keeps the lab dir (sshd logs) after teardown, until the next createLab sweeps it;
// IW_LAB_DEBUG=1 times each build step.
import {execFileSync, spawn, type ChildProcess} from 'node:child_process';
import {randomBytes, createHmac} from 'node:crypto';
import {closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, realpathSync, rmSync, writeFileSync, chmodSync} from 'node:fs';
import {createServer, type Server} from 'node:net';
import {basename, dirname, join, resolve} from 'node:path';
import {Duplex} from 'node:stream';
import {fileURLToPath} from 'node:url';
import {
  currentOwner,
  killAndWait,
  labDirFor,
  namespaceFor,
  removeNamespaces,
  sweepAbandonedLabs,
} from './namespaces.js';
import {run, runChecked, type ExecOutput} from './process.js';

export type {ExecOutput} from './process.js';

export interface LabHostSpec {
  name: string;
  /** Role ports served (v4 and v6); `program` is the process name discovery sees (default "node"). */
  listen?: {tcp?: number[]; udp?: number[]; program?: string};
  /** eth0 on the public net, default true */
  public?: boolean;
  /** eth1 on the private net, default true */
  private?: boolean;
  /** default 22 */
  sshPort?: number;
  /**
   * false: `nft` is hidden in this server (a whiteout in an overlay on its directory), as on a
   * server without the nftables package: backend auto gives it iptables. Default true.
   */
  nft?: boolean;
}

export interface LabOptions {
  /** default: the seed fleet with its role ports */
  hosts?: readonly LabHostSpec[];
  /** another customer's server on the private net, default true */
  tenant?: boolean;
  /** write known_hosts hashed (|1|...) */
  hashKnownHosts?: boolean;
  /**
   * Every address on each net known to its neighbours as a permanent entry (no ARP or neighbour
   * discovery). The kernel's neighbour tables are shared by all namespaces, 1,024 entries per family
   * (gc_thresh3): a mesh of 40 servers overflows them ("neighbor table overflow") and first
   * connections then fail; permanent entries are not counted. Default false: the other labs keep
   * neighbour discovery through the firewall under test.
   */
  staticNeighbours?: boolean;
}

export interface LabHost {
  name: string;
  netns: string;
  publicV4?: string;
  publicV6?: string;
  privateV4?: string;
  privateV6?: string;
  sshPort: number;
  /** "ssh-ed25519 AAAA..." */
  hostKeyPublic: string;
  /** sshd's log (LogLevel VERBOSE, plus any error of the server's setup): read it when a test fails. */
  sshdLogPath: string;
  /** The sshd that holds this server's mount namespace, and the role-port listener (if any ports; it
   * runs in the server's network namespace only). */
  pids: {sshd: number; listener?: number};
  /**
   * argv inside this server (its network AND mount namespace) as root; no shell unless argv has one.
   * Rejects if it runs longer than timeoutMs (default 60 s); a signal death gives code 128 + signal.
   */
  exec(argv: string[], options?: {input?: string; timeoutMs?: number}): Promise<ExecOutput>;
}

/** What it takes to start a program in the operator namespace yourself (e.g. with node-pty). */
export interface OperatorCommand {
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
}

export interface LabForward {
  host: '127.0.0.1';
  port: number;
  close(): Promise<void>;
}

export interface Lab {
  id: string;
  /** temp dir of this lab */
  dir: string;
  hosts: ReadonlyMap<string, LabHost>;
  tenant: LabHost;
  /** "the internet": where the tool runs */
  operator: {netns: string; v4: string; v6: string};
  /** temp HOME: .ssh/config (ProxyJump via tunnel-1 for private hosts), id_ed25519, known_hosts */
  home: string;
  sshConfigPath: string;
  knownHostsPath: string;
  /** Writes JSON into the lab dir (file name only, default inventory.json); returns its path. */
  writeInventory(inventory: object, fileName?: string): string;
  /**
   * The built CLI (node bin/isolate-wizard.js) in the operator namespace, HOME=lab.home, CI=false,
   * no SSH agent, cwd lab.dir. Rejects if it runs longer than timeoutMs (default 100 s).
   */
  runCli(args: string[], options?: {input?: string; env?: Record<string, string>; timeoutMs?: number}): Promise<ExecOutput>;
  spawnCli(args: string[], options?: {env?: Record<string, string>}): ChildProcess;
  /** argv in the operator namespace (e.g. OpenSSH `ssh -F lab.sshConfigPath ...`). */
  execOperator(
    argv: string[],
    options?: {input?: string; timeoutMs?: number; env?: Record<string, string>},
  ): Promise<ExecOutput>;
  /** How to run argv in the operator namespace with the operator's environment (for node-pty). */
  operatorCommand(argv: string[], env?: Record<string, string>): OperatorCommand;
  /** Does a TCP connect from `from` ('operator', a fleet host name or 'tenant') to address:port succeed (~2 s limit)? */
  canConnect(from: string, address: string, port: number): Promise<boolean>;
  /** Cut or restore a server's links, for "link cut during the countdown" tests. */
  setLinkDown(host: string, side: 'public' | 'private' | 'both', down: boolean): Promise<void>;
  /**
   * A byte stream to address:port, connected from the operator namespace: lets code running in the
   * test process itself (root namespace, which has no route to the lab) reach a server, e.g. as
   * ssh2's `sock`. Rejects if the connection fails (5 s limit).
   */
  dial(address: string, port: number): Promise<Duplex>;
  /** A port on 127.0.0.1 of the test process that relays each connection to address:port via `dial`. */
  forward(address: string, port: number): Promise<LabForward>;
  /** idempotent; kills every process, deletes every namespace */
  teardown(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// The address plan and the default fleet (the tutorial's).

export const PUBLIC_V4_PREFIX = '203.0.113.';
export const PUBLIC_V6_PREFIX = '2001:db8:100::';
export const PRIVATE_V4_PREFIX = '10.132.0.';
export const PRIVATE_V6_PREFIX = 'fd00:132::';
const OPERATOR_SUFFIX = 1;
const TENANT_SUFFIX = 99;
const SEED_SUFFIXES: Record<string, number> = {
  'tunnel-1': 10,
  'haproxy-www': 11,
  'wordpress-1': 12,
  'wordpress-2': 13,
  'mysql-1': 14,
  'mysql-2': 15,
};
/** Other host names get the next free suffix from here. */
const FIRST_FREE_SUFFIX = 20;
export const JUMP_HOST = 'tunnel-1';
export const DEPLOY_SUDO_PASSWORD = 'lab-sudo-pass';
export const LOCKED_KEY_PASSPHRASE = 'lab-key-pass';

export const DEFAULT_HOSTS: readonly LabHostSpec[] = [
  {name: 'tunnel-1'},
  {name: 'haproxy-www', listen: {tcp: [80, 443]}},
  {name: 'wordpress-1', listen: {tcp: [80, 443, 24007]}},
  {name: 'wordpress-2', listen: {tcp: [80, 443, 24007]}},
  {name: 'mysql-1', listen: {tcp: [3306]}},
  // Without nft: the fleet's iptables-only server, where backend auto falls back to iptables.
  {name: 'mysql-2', listen: {tcp: [3306]}, nft: false},
];
/** The tenant serves a web port, so a test can also check what the fleet may reach of it. */
const TENANT_SPEC: LabHostSpec = {name: 'tenant', public: false, private: true, listen: {tcp: [80]}};

const RESERVED_NAMES = new Set(['switch', 'operator', 'tenant']);
const HOST_NAME_PATTERN = /^[a-z][a-z0-9-]{0,30}$/;

/** server-init.sh, listener.mjs, relay.mjs: next to this module (the build copies them into dist/lab). */
const ASSET_DIR = dirname(fileURLToPath(import.meta.url));
// source/lab or dist/lab: the package root is two levels up either way.
const PACKAGE_ROOT = resolve(ASSET_DIR, '..', '..');
/** The CLI the lab's operator runs (the built one: `npm run build` first when running from source). */
export const CLI_ENTRY = join(PACKAGE_ROOT, 'bin', 'isolate-wizard.js');
const SERVER_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const STARTUP_TIMEOUT_MS = 60_000;
const DEFAULT_EXEC_TIMEOUT_MS = 60_000;
const DEFAULT_CLI_TIMEOUT_MS = 100_000;
const CONNECT_TIMEOUT_SECONDS = '2';

// ---------------------------------------------------------------------------------------------
// Every live lab of this process, torn down on exit or on a fatal signal.

const liveLabs = new Set<LabImplementation>();
let exitHandlersInstalled = false;

function installExitHandlers(): void {
  if (exitHandlersInstalled) return;
  exitHandlersInstalled = true;
  process.on('exit', () => {
    for (const lab of liveLabs) lab.teardownSync();
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      for (const lab of liveLabs) lab.teardownSync();
      // Then die of the signal as if we had not been listening.
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

// ---------------------------------------------------------------------------------------------

interface PlannedHost {
  spec: LabHostSpec;
  name: string;
  netns: string;
  suffix: number;
  sshPort: number;
  tcp: number[];
  udp: number[];
  /** The listener's process name. */
  program: string;
  publicV4?: string;
  publicV6?: string;
  privateV4?: string;
  privateV6?: string;
  /** Names of this server's veth ends in the switch namespace. */
  publicPeer?: string;
  privatePeer?: string;
  dir: string;
}

function validatePort(host: string, field: string, port: unknown): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`lab host ${host}: ${field} must be a port number 1-65535, got ${String(port)}`);
  }
  return port;
}

type HostPlan = Omit<PlannedHost, 'netns' | 'dir'>;

/** Checks the specs and lays out addresses; the tenant, when there is one, comes last. Throws on a bad spec. */
function planHosts(specs: readonly LabHostSpec[], withTenant: boolean): HostPlan[] {
  const names = new Set<string>();
  const usedSuffixes = new Set<number>([OPERATOR_SUFFIX, TENANT_SUFFIX]);
  for (const spec of specs) {
    const seed = SEED_SUFFIXES[spec.name];
    if (seed !== undefined) usedSuffixes.add(seed);
  }
  let nextSuffix = FIRST_FREE_SUFFIX;
  const planned: HostPlan[] = [];
  const all = withTenant ? [...specs, TENANT_SPEC] : [...specs];
  all.forEach((spec, index) => {
    const isTenant = withTenant && index === specs.length;
    if (!HOST_NAME_PATTERN.test(spec.name)) {
      throw new Error(`lab host name ${JSON.stringify(spec.name)}: use lowercase letters, digits and dashes`);
    }
    if ((!isTenant && RESERVED_NAMES.has(spec.name)) || names.has(spec.name)) {
      throw new Error(`lab host name ${spec.name}: reserved or used twice`);
    }
    names.add(spec.name);
    const onPublic = spec.public ?? true;
    const onPrivate = spec.private ?? true;
    if (!onPublic && !onPrivate) throw new Error(`lab host ${spec.name}: needs the public or the private net`);
    let suffix = isTenant ? TENANT_SUFFIX : SEED_SUFFIXES[spec.name];
    if (suffix === undefined) {
      while (usedSuffixes.has(nextSuffix)) nextSuffix++;
      suffix = nextSuffix;
      usedSuffixes.add(suffix);
    }
    if (suffix > 254) throw new Error('lab: too many hosts');
    const sshPort = validatePort(spec.name, 'sshPort', spec.sshPort ?? 22);
    const tcp = (spec.listen?.tcp ?? []).map((port) => validatePort(spec.name, 'listen.tcp', port));
    const udp = (spec.listen?.udp ?? []).map((port) => validatePort(spec.name, 'listen.udp', port));
    if (tcp.includes(sshPort)) throw new Error(`lab host ${spec.name}: tcp ${sshPort} is sshd's port`);
    const program = spec.listen?.program ?? 'node';
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(program)) {
      throw new Error(`lab host ${spec.name}: listen.program must be a process name of 1-15 letters, digits, . _ -`);
    }
    planned.push({
      spec,
      name: spec.name,
      suffix,
      sshPort,
      tcp,
      udp,
      program,
      ...(onPublic
        ? {publicV4: `${PUBLIC_V4_PREFIX}${suffix}`, publicV6: `${PUBLIC_V6_PREFIX}${suffix}`, publicPeer: `pub${index}`}
        : {}),
      ...(onPrivate
        ? {privateV4: `${PRIVATE_V4_PREFIX}${suffix}`, privateV6: `${PRIVATE_V6_PREFIX}${suffix}`, privatePeer: `prv${index}`}
        : {}),
    });
  });
  return planned;
}

function newLabId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return Array.from(randomBytes(6), (byte) => alphabet[byte % alphabet.length]).join('');
}

function makeLabDir(): {id: string; dir: string} {
  for (let attempt = 0; attempt < 10; attempt++) {
    const id = newLabId();
    const dir = labDirFor(id);
    try {
      mkdirSync(dir, {mode: 0o755});
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw error;
    }
    // mkdir's mode is masked by the umask; `deploy` must reach authorized_keys in here.
    chmodSync(dir, 0o755);
    writeFileSync(join(dir, 'owner.json'), JSON.stringify(currentOwner()));
    return {id, dir};
  }
  throw new Error('lab: could not pick a free lab id');
}

/** The first id at or above 2000 free as both a uid and a gid on this machine. */
function freeDeployId(): number {
  const used = new Set<number>();
  for (const file of ['/etc/passwd', '/etc/group']) {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const id = Number(line.split(':')[2]);
      if (Number.isInteger(id)) used.add(id);
    }
  }
  let id = 2000;
  while (used.has(id)) id++;
  return id;
}

function knownHostsName(address: string, port: number): string {
  return port === 22 ? address : `[${address}]:${port}`;
}

/** OpenSSH's HashKnownHosts form: |1|base64(salt)|base64(HMAC-SHA1(salt, name)). */
function hashedHostName(name: string): string {
  const salt = randomBytes(20);
  const hash = createHmac('sha1', salt).update(name).digest();
  return `|1|${salt.toString('base64')}|${hash.toString('base64')}`;
}

function sshdConfig(lab: {dir: string}, host: PlannedHost): string {
  return [
    `Port ${host.sshPort}`,
    `HostKey ${join(host.dir, 'ssh_host_ed25519_key')}`,
    `PidFile ${join(host.dir, 'sshd.pid')}`,
    'PermitRootLogin prohibit-password',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    `AuthorizedKeysFile ${join(lab.dir, 'authorized_keys')}`,
    'ClientAliveInterval 5',
    'LogLevel VERBOSE',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n');
}

/** Directories whose writes stay on each server: an overlay per server, upper layer in its host dir. */
// /usr/libexec: where a RHEL-family server keeps iptables-services' loader (the agent looks there).
const OVERLAID_DIRS = ['/etc', '/var/lib', '/var/log', '/usr/local', '/usr/libexec', '/opt'];

/**
 * The mounts that make a server's filesystem its own, in order, for one `mount --all` in
 * server-init.sh (one process instead of dozens: several servers start at once).
 */
function serverFstab(labDir: string, hostDir: string, deployId: number, hidden: readonly string[] = []): string {
  const entries = [
    // A fresh sysfs shows this network namespace's interfaces (its own source name, so
    // `mount --all` does not take it for the machine's /sys, already mounted).
    'iw-lab-sysfs /sys sysfs defaults',
    'iw-lab /run tmpfs mode=755',
    'iw-lab /run/sshd tmpfs mode=755,X-mount.mkdir',
    // The lab dir lives under /var/tmp, which becomes private: park it in /run, bind it back after.
    `${labDir} /run/iw-lab-dir none bind,X-mount.mkdir`,
    'iw-lab /tmp tmpfs mode=1777',
    'iw-lab /var/tmp tmpfs mode=1777',
    `/run/iw-lab-dir ${labDir} none bind,X-mount.mkdir`,
    'iw-lab /root tmpfs mode=700',
    'iw-lab /home tmpfs mode=755',
    `iw-lab /home/deploy tmpfs mode=755,uid=${deployId},gid=${deployId},X-mount.mkdir`,
  ];
  for (const dir of OVERLAID_DIRS) {
    if (!existsSync(dir)) continue;
    const layer = join(hostDir, 'overlays', dir.slice(1).replaceAll('/', '_'));
    mkdirSync(join(layer, 'upper'), {recursive: true});
    mkdirSync(join(layer, 'work'), {recursive: true});
    entries.push(`overlay ${dir} overlay lowerdir=${dir},upperdir=${layer}/upper,workdir=${layer}/work`);
  }
  // Programs this server must not have: each directory holding one gets an overlay whose upper
  // layer has a whiteout (a 0/0 character device) in its place.
  for (const program of hidden) {
    for (const dir of new Set(SERVER_PATH.split(':').filter((candidate) => existsSync(join(candidate, program))).map((candidate) => realpathSync(candidate)))) {
      const layer = join(hostDir, 'overlays', `hide${dir.replaceAll('/', '_')}`);
      mkdirSync(join(layer, 'upper'), {recursive: true});
      mkdirSync(join(layer, 'work'), {recursive: true});
      if (!existsSync(join(layer, 'upper', program))) execFileSync('mknod', [join(layer, 'upper', program), 'c', '0', '0']);
      entries.push(`overlay ${dir} overlay lowerdir=${dir},upperdir=${layer}/upper,workdir=${layer}/work`);
    }
  }
  // Where the tool keeps its rules and state: empty on every server, whatever the machine holds.
  entries.push('iw-lab /etc/iptables tmpfs mode=755,X-mount.mkdir', 'iw-lab /var/lib/isolate-wizard tmpfs mode=755,X-mount.mkdir');
  return `${entries.map((entry) => `${entry} 0 0`).join('\n')}\n`;
}

function operatorSshConfig(hosts: readonly PlannedHost[], identityFile: string, knownHostsPath: string): string {
  const jump = hosts.find((host) => host.name === JUMP_HOST && host.publicV4);
  const blocks: string[] = [];
  for (const host of hosts) {
    const lines = [`Host ${host.name}`];
    if (jump && host !== jump && host.privateV4) {
      lines.push(`  HostName ${host.privateV4}`, `  ProxyJump ${jump.name}`);
    } else {
      lines.push(`  HostName ${host.publicV4 ?? host.privateV4}`);
    }
    if (host.sshPort !== 22) lines.push(`  Port ${host.sshPort}`);
    blocks.push(lines.join('\n'));
  }
  // Absolute paths: OpenSSH's `ssh` expands ~ to the passwd home, not $HOME.
  blocks.push(
    [
      'Host *',
      '  User root',
      `  IdentityFile ${identityFile}`,
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${knownHostsPath}`,
    ].join('\n'),
  );
  return `${blocks.join('\n\n')}\n`;
}

/** The operator's environment: lab HOME, no agent, no XDG dirs pointing elsewhere, Ink not in CI mode. */
export function operatorEnvironment(home: string, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue;
    if (key === 'SSH_AUTH_SOCK' || key === 'SSH_AGENT_PID' || key === 'NODE_OPTIONS' || key.startsWith('XDG_')) continue;
    env[key] = value;
  }
  return {...env, HOME: home, CI: 'false', ...extra};
}

const SERVER_ENVIRONMENT = {PATH: SERVER_PATH, HOME: '/root', USER: 'root', LOGNAME: 'root', LANG: 'C'};

async function waitForSshd(child: ChildProcess, host: PlannedHost, logPath: string): Promise<void> {
  const wanted = [`Server listening on 0.0.0.0 port ${host.sshPort}.`, `Server listening on :: port ${host.sshPort}.`];
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    exited = `exited (${code ?? signal})`;
  });
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    const log = readFileSync(logPath, 'utf8');
    if (wanted.every((line) => log.includes(line))) return;
    if (exited || Date.now() > deadline) {
      throw new Error(`lab host ${host.name}: sshd ${exited ?? 'did not start in time'}:\n${log}`);
    }
    await new Promise((done) => setTimeout(done, 15));
  }
}

function waitForListener(child: ChildProcess, host: PlannedHost, logPath: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    let output = '';
    const timer = setTimeout(() => fail('did not start in time'), STARTUP_TIMEOUT_MS);
    const fail = (why: string): void => {
      clearTimeout(timer);
      let log = '';
      try {
        log = readFileSync(logPath, 'utf8');
      } catch {
        // no log yet
      }
      reject(new Error(`lab host ${host.name}: listener ${why}:\n${log}`));
    };
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('ready\n')) {
        clearTimeout(timer);
        resolvePromise();
      }
    });
    child.once('exit', (code, signal) => fail(`exited (${code ?? signal})`));
  });
}

// ---------------------------------------------------------------------------------------------

class LabImplementation implements Lab {
  readonly hosts = new Map<string, LabHost>();
  readonly operator: {netns: string; v4: string; v6: string};
  readonly home: string;
  readonly sshConfigPath: string;
  readonly knownHostsPath: string;
  readonly switchNetns: string;
  /** Every namespace of this lab, recorded before it is created. */
  readonly namespaces: string[] = [];
  readonly children: ChildProcess[] = [];
  private readonly forwards = new Set<Server>();
  /** Every server, the tenant included. */
  readonly planned: PlannedHost[];
  readonly fleet: PlannedHost[];
  readonly plannedTenant: PlannedHost | undefined;
  private tenantHost: LabHost | undefined;
  private tornDown = false;

  constructor(
    readonly id: string,
    readonly dir: string,
    planned: PlannedHost[],
    withTenant: boolean,
  ) {
    this.planned = planned;
    this.plannedTenant = withTenant ? planned[planned.length - 1] : undefined;
    this.fleet = planned.filter((host) => host !== this.plannedTenant);
    this.switchNetns = namespaceFor(id, 'switch');
    this.operator = {
      netns: namespaceFor(id, 'operator'),
      v4: `${PUBLIC_V4_PREFIX}${OPERATOR_SUFFIX}`,
      v6: `${PUBLIC_V6_PREFIX}${OPERATOR_SUFFIX}`,
    };
    this.home = join(dir, 'home');
    this.sshConfigPath = join(this.home, '.ssh', 'config');
    this.knownHostsPath = join(this.home, '.ssh', 'known_hosts');
  }

  // --- building -------------------------------------------------------------------------------

  async build(options: LabOptions): Promise<void> {
    const [keys, hashed] = await Promise.all([
      this.makeKeys(),
      // deploy's /etc/shadow entry, so sudo (PAM) checks the password for real.
      runChecked('openssl', ['passwd', '-6', '-stdin'], {input: `${DEPLOY_SUDO_PASSWORD}\n`}),
      this.makeNetwork(options.staticNeighbours ?? false),
    ]);
    trace('keys and network');
    const deployId = freeDeployId();
    const deployHash = hashed.stdout.trim();
    this.writeOperatorFiles(this.fleet, keys, options.hashKnownHosts ?? false);
    // Copied next to the lab, so servers reach them whatever their private mounts hide.
    copyFileSync(join(ASSET_DIR, 'server-init.sh'), join(this.dir, 'server-init.sh'));
    copyFileSync(join(ASSET_DIR, 'listener.mjs'), join(this.dir, 'listener.mjs'));
    trace('files');
    const started = await Promise.all(
      this.planned.map((host) => this.startServer(host, keys.hostKeys.get(host.name) ?? '', deployId, deployHash)),
    );
    trace('servers');
    started.forEach((host, index) => {
      if (this.planned[index] === this.plannedTenant) this.tenantHost = host;
      else this.hosts.set(host.name, host);
    });
  }

  get tenant(): LabHost {
    if (!this.tenantHost) throw new Error('lab: this lab was created with tenant: false');
    return this.tenantHost;
  }

  /** The operator's key pairs and each server's host key, made in parallel. */
  private async makeKeys(): Promise<{hostKeys: Map<string, string>; operatorPublic: string; lockedPublic: string}> {
    const sshDir = join(this.home, '.ssh');
    mkdirSync(sshDir, {recursive: true, mode: 0o700});
    const keygen = (file: string, passphrase: string, comment: string): Promise<ExecOutput> =>
      runChecked('ssh-keygen', ['-q', '-t', 'ed25519', '-N', passphrase, '-C', comment, '-f', file]);
    const hostJobs = this.planned.map(async (host) => {
      mkdirSync(host.dir, {recursive: true});
      const keyFile = join(host.dir, 'ssh_host_ed25519_key');
      await keygen(keyFile, '', `${host.name}@iw-lab`);
      const [type, key] = readFileSync(`${keyFile}.pub`, 'utf8').trim().split(/\s+/);
      return [host.name, `${type} ${key}`] as const;
    });
    const operatorKey = join(sshDir, 'id_ed25519');
    const lockedKey = join(sshDir, 'id_ed25519_locked');
    const [hostKeys] = await Promise.all([
      Promise.all(hostJobs),
      keygen(operatorKey, '', 'operator@iw-lab'),
      keygen(lockedKey, LOCKED_KEY_PASSPHRASE, 'operator-locked@iw-lab'),
    ]);
    return {
      hostKeys: new Map(hostKeys),
      operatorPublic: readFileSync(`${operatorKey}.pub`, 'utf8').trim(),
      lockedPublic: readFileSync(`${lockedKey}.pub`, 'utf8').trim(),
    };
  }

  private writeOperatorFiles(
    fleet: readonly PlannedHost[],
    keys: {hostKeys: Map<string, string>; operatorPublic: string; lockedPublic: string},
    hashKnownHosts: boolean,
  ): void {
    // Read by sshd as the logging-in user (root or deploy): world-readable.
    writeFileSync(join(this.dir, 'authorized_keys'), `${keys.operatorPublic}\n${keys.lockedPublic}\n`, {mode: 0o644});
    chmodSync(join(this.dir, 'authorized_keys'), 0o644);
    const knownHosts: string[] = [];
    for (const host of fleet) {
      const hostKey = keys.hostKeys.get(host.name);
      for (const address of [host.publicV4, host.publicV6, host.privateV4, host.privateV6]) {
        if (!address || !hostKey) continue;
        const name = knownHostsName(address, host.sshPort);
        knownHosts.push(`${hashKnownHosts ? hashedHostName(name) : name} ${hostKey}`);
      }
    }
    writeFileSync(this.knownHostsPath, `${knownHosts.join('\n')}\n`, {mode: 0o644});
    writeFileSync(this.sshConfigPath, operatorSshConfig(fleet, join(this.home, '.ssh', 'id_ed25519'), this.knownHostsPath), {
      mode: 0o600,
    });
  }

  /** Namespaces, bridges, veths, addresses and routes; a handful of `ip -batch` runs. */
  private async makeNetwork(staticNeighbours: boolean): Promise<void> {
    const hostNamespaces = this.planned.map((host) => host.netns);
    this.namespaces.push(this.switchNetns, this.operator.netns, ...hostNamespaces);
    await runChecked('ip', ['-batch', '-'], {input: this.namespaces.map((name) => `netns add ${name}\n`).join('')});

    const switchCommands = [
      'link set lo up',
      // No multicast snooping: IPv6 neighbour discovery must pass without an MLD querier.
      'link add br-pub type bridge mcast_snooping 0',
      'link add br-priv type bridge mcast_snooping 0',
      'link set br-pub up',
      'link set br-priv up',
    ];
    // Each inside end's MAC from its address's last number (02: locally administered), so the
    // neighbours can be written before any link is up.
    const macOf = (v4: string, side: 'public' | 'private'): string =>
      `02:69:77:${side === 'public' ? '00' : '01'}:00:${Number(v4.split('.').at(-1)).toString(16).padStart(2, '0')}`;
    const plug = (peer: string, bridge: string, netns: string, inside: string, mac: string): void => {
      switchCommands.push(
        `link add ${peer} type veth peer name ${inside} address ${mac} netns ${netns}`,
        `link set ${peer} master ${bridge}`,
        `link set ${peer} up`,
      );
    };
    plug('op0', 'br-pub', this.operator.netns, 'eth0', macOf(this.operator.v4, 'public'));
    for (const host of this.planned) {
      if (host.publicPeer && host.publicV4) plug(host.publicPeer, 'br-pub', host.netns, 'eth0', macOf(host.publicV4, 'public'));
      if (host.privatePeer && host.privateV4) plug(host.privatePeer, 'br-priv', host.netns, 'eth1', macOf(host.privateV4, 'private'));
    }
    // Who is on each net (both families), for the permanent neighbour entries.
    const members = {
      public: [
        {netns: this.operator.netns, v4: this.operator.v4, v6: this.operator.v6},
        ...this.planned.flatMap((host) => (host.publicV4 && host.publicV6 ? [{netns: host.netns, v4: host.publicV4, v6: host.publicV6}] : [])),
      ],
      private: this.planned.flatMap((host) => (host.privateV4 && host.privateV6 ? [{netns: host.netns, v4: host.privateV4, v6: host.privateV6}] : [])),
    };
    const neighbours = (netns: string): string[] =>
      !staticNeighbours
        ? []
        : (['public', 'private'] as const).flatMap((side) =>
            members[side].some((member) => member.netns === netns)
              ? members[side]
                  .filter((member) => member.netns !== netns)
                  .flatMap((member) => [member.v4, member.v6].map((address) => `neigh replace ${address} lladdr ${macOf(member.v4, side)} dev ${side === 'public' ? 'eth0' : 'eth1'} nud permanent`))
              : [],
          );
    await runChecked('ip', ['-n', this.switchNetns, '-batch', '-'], {input: `${switchCommands.join('\n')}\n`});

    const configure = (netns: string, commands: string[]): Promise<ExecOutput> =>
      runChecked('ip', ['-n', netns, '-batch', '-'], {input: `${commands.join('\n')}\n`});
    const jobs = [
      configure(this.operator.netns, [
        'link set lo up',
        `addr add ${this.operator.v4}/24 dev eth0`,
        // nodad: usable at once, no duplicate address detection delay.
        `addr add ${this.operator.v6}/64 dev eth0 nodad`,
        'link set eth0 up',
        ...neighbours(this.operator.netns),
      ]),
    ];
    for (const host of this.planned) {
      const commands = ['link set lo up'];
      if (host.publicV4 && host.publicV6) {
        commands.push(
          `addr add ${host.publicV4}/24 dev eth0`,
          `addr add ${host.publicV6}/64 dev eth0 nodad`,
          'link set eth0 up',
          `route add default via ${this.operator.v4} dev eth0`,
          `route add default via ${this.operator.v6} dev eth0`,
        );
      }
      if (host.privateV4 && host.privateV6) {
        commands.push(
          `addr add ${host.privateV4}/24 dev eth1`,
          `addr add ${host.privateV6}/64 dev eth1 nodad`,
          'link set eth1 up',
        );
      }
      commands.push(...neighbours(host.netns));
      jobs.push(configure(host.netns, commands));
    }
    await Promise.all(jobs);
  }

  /** Starts the server's sshd (holding its mount namespace) and its role-port listener. */
  private async startServer(host: PlannedHost, hostKeyPublic: string, deployId: number, deployHash: string): Promise<LabHost> {
    writeFileSync(join(host.dir, 'sshd_config'), sshdConfig(this, host));
    writeFileSync(join(host.dir, 'fstab'), serverFstab(this.dir, host.dir, deployId, host.spec.nft === false ? ['nft'] : []));
    const sshdLogPath = join(host.dir, 'sshd.log');
    const sshdLog = openSync(sshdLogPath, 'a');
    const sshd = spawn(
      'nsenter',
      [
        `--net=/run/netns/${host.netns}`,
        'unshare',
        '--mount',
        '--uts',
        '--propagation',
        'private',
        'bash',
        join(this.dir, 'server-init.sh'),
        host.dir,
        host.name,
        String(deployId),
        deployHash,
      ],
      {
        stdio: ['ignore', sshdLog, sshdLog],
        cwd: '/',
        env: {...SERVER_ENVIRONMENT, ...(process.env.IW_LAB_DEBUG ? {IW_LAB_DEBUG: process.env.IW_LAB_DEBUG} : {})},
      },
    );
    closeSync(sshdLog);
    this.track(sshd);
    const sshdPid = sshd.pid;
    if (sshdPid === undefined) throw new Error(`lab host ${host.name}: sshd did not start`);
    const sshdReady = waitForSshd(sshd, host, sshdLogPath).then(() => trace(`sshd ${host.name}`));

    let listenerPid: number | undefined;
    let listenerReady: Promise<void> = Promise.resolve();
    if (host.tcp.length > 0 || host.udp.length > 0) {
      const listenerLogPath = join(host.dir, 'listener.log');
      const listenerLog = openSync(listenerLogPath, 'a');
      // In the server's network namespace only, started alongside sshd (not after it, inside its
      // mount namespace): sockets are all it needs, and two node start-ups in a row cost seconds
      // on a busy machine.
      const listener = spawn(
        'nsenter',
        [
          `--net=/run/netns/${host.netns}`,
          process.execPath,
          join(this.dir, 'listener.mjs'),
          host.name,
          host.tcp.join(','),
          host.udp.join(','),
          host.program,
        ],
        {stdio: ['ignore', 'pipe', listenerLog], cwd: '/', env: SERVER_ENVIRONMENT},
      );
      closeSync(listenerLog);
      this.track(listener);
      listenerReady = waitForListener(listener, host, listenerLogPath).then(() => trace(`listener ${host.name}`));
      listenerPid = listener.pid;
    }
    await Promise.all([sshdReady, listenerReady]);

    const pids = listenerPid === undefined ? {sshd: sshdPid} : {sshd: sshdPid, listener: listenerPid};
    return {
      name: host.name,
      netns: host.netns,
      ...(host.publicV4 ? {publicV4: host.publicV4, publicV6: host.publicV6} : {}),
      ...(host.privateV4 ? {privateV4: host.privateV4, privateV6: host.privateV6} : {}),
      sshPort: host.sshPort,
      hostKeyPublic,
      sshdLogPath,
      pids,
      exec: (argv, options = {}) =>
        run('nsenter', ['-t', String(sshdPid), '--mount', '--net', '--uts', '--', ...argv], {
          env: SERVER_ENVIRONMENT,
          timeoutMs: options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS,
          ...(options.input === undefined ? {} : {input: options.input}),
        }),
    };
  }

  /** Long-lived children must not keep the test process alive; teardown kills them. */
  private track(child: ChildProcess): void {
    // A build step still running when a failed build tore the lab down must not leave a process.
    if (this.tornDown) child.kill('SIGKILL');
    this.children.push(child);
    child.unref();
    for (const stream of [child.stdout, child.stderr]) {
      stream?.on('data', () => {});
      (stream as {unref?: () => void} | null)?.unref?.();
    }
  }

  // --- using ----------------------------------------------------------------------------------

  writeInventory(inventory: object, fileName = 'inventory.json'): string {
    if (basename(fileName) !== fileName) throw new Error(`writeInventory: ${fileName} must be a plain file name`);
    const path = join(this.dir, fileName);
    writeFileSync(path, `${JSON.stringify(inventory, null, 2)}\n`);
    return path;
  }

  operatorCommand(argv: string[], env: Record<string, string> = {}): OperatorCommand {
    return {
      file: 'nsenter',
      args: [`--net=/run/netns/${this.operator.netns}`, '--', ...argv],
      env: operatorEnvironment(this.home, env),
      cwd: this.dir,
    };
  }

  execOperator(
    argv: string[],
    options: {input?: string; timeoutMs?: number; env?: Record<string, string>} = {},
  ): Promise<ExecOutput> {
    const command = this.operatorCommand(argv, options.env);
    return run(command.file, command.args, {
      env: command.env,
      cwd: command.cwd,
      timeoutMs: options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS,
      ...(options.input === undefined ? {} : {input: options.input}),
    });
  }

  runCli(args: string[], options: {input?: string; env?: Record<string, string>; timeoutMs?: number} = {}): Promise<ExecOutput> {
    return this.execOperator([process.execPath, CLI_ENTRY, ...args], {
      timeoutMs: options.timeoutMs ?? DEFAULT_CLI_TIMEOUT_MS,
      ...(options.input === undefined ? {} : {input: options.input}),
      ...(options.env === undefined ? {} : {env: options.env}),
    });
  }

  spawnCli(args: string[], options: {env?: Record<string, string>} = {}): ChildProcess {
    const command = this.operatorCommand([process.execPath, CLI_ENTRY, ...args], options.env);
    return spawn(command.file, command.args, {env: command.env, cwd: command.cwd, stdio: 'pipe'});
  }

  private netnsOf(from: string): string {
    if (from === 'operator') return this.operator.netns;
    if (from === 'tenant' && this.tenantHost) return this.tenantHost.netns;
    const host = this.hosts.get(from);
    if (!host) throw new Error(`lab: no host ${from}`);
    return host.netns;
  }

  async canConnect(from: string, address: string, port: number): Promise<boolean> {
    const netns = this.netnsOf(from);
    // Address and port are arguments of the script, never pasted into it.
    const output = await run('nsenter', [
      `--net=/run/netns/${netns}`,
      'timeout',
      CONNECT_TIMEOUT_SECONDS,
      'bash',
      '-c',
      'exec 3<>"/dev/tcp/$0/$1"',
      address,
      String(port),
    ]);
    return output.code === 0;
  }

  async setLinkDown(hostName: string, side: 'public' | 'private' | 'both', down: boolean): Promise<void> {
    const host = this.planned.find((planned) => planned.name === hostName);
    if (!host) throw new Error(`lab: no host ${hostName}`);
    const peers = [
      side !== 'private' ? host.publicPeer : undefined,
      side !== 'public' ? host.privatePeer : undefined,
    ].filter((peer): peer is string => Boolean(peer));
    if (peers.length === 0) throw new Error(`lab host ${hostName}: has no ${side} link`);
    // Cut at the switch end: the server keeps its addresses and routes and only loses carrier,
    // like a pulled cable; its packets and TCP connections stall instead of failing at once.
    const commands = peers.map((peer) => `link set ${peer} ${down ? 'down' : 'up'}\n`).join('');
    await runChecked('ip', ['-n', this.switchNetns, '-batch', '-'], {input: commands});
  }

  async dial(address: string, port: number): Promise<Duplex> {
    const command = this.operatorCommand([process.execPath, join(ASSET_DIR, 'relay.mjs'), address, String(port)]);
    const relay = spawn(command.file, command.args, {env: command.env, cwd: command.cwd, stdio: ['pipe', 'pipe', 'pipe']});
    // Tracked for teardown, but its output is the stream's data: not drained here.
    this.children.push(relay);
    return new Promise((resolvePromise, reject) => {
      let messages = '';
      const onData = (chunk: Buffer): void => {
        messages += chunk.toString();
        if (!messages.includes('connected\n')) return;
        relay.stderr.off('data', onData);
        relay.off('exit', onExit);
        const stream = Duplex.from({readable: relay.stdout, writable: relay.stdin});
        stream.on('close', () => relay.kill());
        relay.stdin.on('error', () => {});
        resolvePromise(stream);
      };
      const onExit = (): void => {
        reject(new Error(`lab: cannot connect to ${address} port ${port} from the operator: ${messages.trim()}`));
      };
      relay.stderr.on('data', onData);
      relay.once('exit', onExit);
    });
  }

  async forward(address: string, port: number): Promise<LabForward> {
    const server = createServer((client) => {
      client.on('error', () => {});
      this.dial(address, port).then(
        (remote) => {
          remote.on('error', () => client.destroy());
          client.on('close', () => remote.destroy());
          client.pipe(remote).pipe(client);
        },
        () => client.destroy(),
      );
    });
    this.forwards.add(server);
    await new Promise<void>((resolvePromise, reject) => {
      server.once('error', reject);
      server.listen({host: '127.0.0.1', port: 0}, resolvePromise);
    });
    server.unref();
    const {port: localPort} = server.address() as {port: number};
    return {
      host: '127.0.0.1',
      port: localPort,
      close: () => this.closeForward(server),
    };
  }

  private closeForward(server: Server): Promise<void> {
    this.forwards.delete(server);
    return new Promise((resolvePromise) => server.close(() => resolvePromise()));
  }

  // --- tearing down ---------------------------------------------------------------------------

  teardownSync(): void {
    if (this.tornDown) return;
    this.tornDown = true;
    liveLabs.delete(this);
    // Our own children first (they may not have entered a namespace yet), then whatever lives in
    // the namespaces: sessions, a server's rollback timers, CLIs the tests started.
    killAndWait(
      this.children
        .filter((child) => child.exitCode === null && child.signalCode === null)
        .map((child) => child.pid)
        .filter((pid): pid is number => pid !== undefined),
    );
    for (const server of this.forwards) server.close();
    this.forwards.clear();
    removeNamespaces(this.namespaces, this.switchNetns);
    if (process.env.IW_LAB_KEEP !== '1') rmSync(this.dir, {recursive: true, force: true});
  }

  async teardown(): Promise<void> {
    this.teardownSync();
  }
}

let traceStart = 0;
/** IW_LAB_DEBUG=1 prints how long each step of building a lab took. */
function trace(what: string): void {
  if (process.env.IW_LAB_DEBUG === '1') process.stderr.write(`lab: ${what} at ${Date.now() - traceStart} ms\n`);
}

export async function createLab(options: LabOptions = {}): Promise<Lab> {
  traceStart = Date.now();
  const withTenant = options.tenant ?? true;
  const plans = planHosts(options.hosts ?? DEFAULT_HOSTS, withTenant); // a bad spec stops here, nothing made
  sweepAbandonedLabs();
  trace('swept');
  installExitHandlers();
  const {id, dir} = makeLabDir();
  let lab: LabImplementation | undefined;
  try {
    const planned = plans.map((plan) => ({...plan, netns: namespaceFor(id, plan.name), dir: join(dir, 'hosts', plan.name)}));
    lab = new LabImplementation(id, dir, planned, withTenant);
    liveLabs.add(lab);
    await lab.build(options);
    return lab;
  } catch (error) {
    if (lab) lab.teardownSync();
    else rmSync(dir, {recursive: true, force: true});
    throw error;
  }
}
