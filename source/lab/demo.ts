// `isolate-wizard demo`: the tutorial's fleet as a lab on this machine (the one the tests use), held
// by a process of its own so it outlives the command that built it, and found again through a state
// file in /run (gone at reboot, like the namespaces). Only the lab's own namespaces, processes and
// directory are ever made or removed: the machine's network is not touched.
import {spawn} from 'node:child_process';
import {existsSync, linkSync, readFileSync, renameSync, rmSync, writeFileSync} from 'node:fs';
import {fileURLToPath} from 'node:url';
import {CLI_ENTRY, DEFAULT_HOSTS, operatorEnvironment, type LabHostSpec, type OperatorCommand} from './lab.js';
import {currentOwner, killAndWait, labNamespaces, namespaceFor, processStartTime, removeNamespaces, sleepSync, type Owner} from './namespaces.js';
import {installCommand} from './requirements.js';

/** One demo lab per machine; root's, in a directory only root can write. */
export const DEMO_STATE_PATH = '/run/isolate-wizard-demo.json';

/** The demo lab as the holder reports it (and writes it into DEMO_STATE_PATH). */
export interface DemoLab {
  id: string;
  /** The lab directory (/var/tmp/iwlab-ID): servers' files, sshd logs, the operator's HOME. */
  dir: string;
  /** The operator's HOME: .ssh/config (ProxyJump via tunnel-1), id_ed25519, known_hosts, fleet.json. */
  home: string;
  /** The tutorial's inventory of the fleet (roles given), for the headless commands or the wizard's `i`. */
  inventory: string;
  /** The namespace the wizard and the commands run in (the lab's "internet"). */
  operatorNetns: string;
  /** Servers' names, in the lab's order (the other tenant's server not included). */
  servers: string[];
  holder: Owner;
}

/** The tutorial's fleet with its roles (fixtures/inventories/seed.json, which the package does not ship). */
export const DEMO_INVENTORY = {
  roles: {app: {peers: ['24007-24008', '49152-49251']}},
  hosts: [
    {name: 'tunnel-1', ssh: 'tunnel-1', roles: ['bastion']},
    {name: 'haproxy-www', ssh: 'haproxy-www', roles: ['lb']},
    {name: 'wordpress-1', ssh: 'wordpress-1', roles: ['app']},
    {name: 'wordpress-2', ssh: 'wordpress-2', roles: ['app']},
    {name: 'mysql-1', ssh: 'mysql-1', roles: ['db']},
    {name: 'mysql-2', ssh: 'mysql-2', roles: ['db']},
  ],
};

/** The lab's seed fleet, its listeners named as the tutorial's programs, so discovery suggests each role. */
const PROGRAMS: Record<string, string> = {'haproxy-www': 'haproxy', 'wordpress-1': 'apache2', 'wordpress-2': 'apache2', 'mysql-1': 'mysqld', 'mysql-2': 'mysqld'};
export const DEMO_HOSTS: readonly LabHostSpec[] = DEFAULT_HOSTS.map((host) => {
  const program = PROGRAMS[host.name];
  return program && host.listen ? {...host, listen: {...host.listen, program}} : host;
});

/** Why the demo cannot run here, in one line; undefined when it can. */
export function demoRefusal(machine: {platform: string; isRoot: boolean; missingPackages: readonly string[]}): string | undefined {
  if (machine.platform !== 'linux') {
    return `demo needs Linux (network namespaces, iptables); this machine runs ${machine.platform}`;
  }
  const needs: string[] = [];
  if (!machine.isRoot) needs.push('root, for network namespaces and sshd (sudo isolate-wizard demo)');
  if (machine.missingPackages.length > 0) {
    needs.push(`the Debian packages ${machine.missingPackages.join(', ')} (as root: ${installCommand(machine.missingPackages)})`);
  }
  return needs.length === 0 ? undefined : `demo needs ${needs.join('; and ')}`;
}

function holderAlive(lab: {holder: Owner}): boolean {
  return processStartTime(lab.holder.pid) === lab.holder.startTime;
}

/** The state file: the whole lab once it is up; only its holder while it is being built. */
type DemoState = DemoLab | {holder: Owner; id?: undefined};

function readState(): DemoState | undefined {
  try {
    return JSON.parse(readFileSync(DEMO_STATE_PATH, 'utf8')) as DemoState;
  } catch {
    return undefined;
  }
}

/** The demo lab that is up (its holder alive, the lab built), if any. */
export function runningDemoLab(): DemoLab | undefined {
  const state = readState();
  return state?.id !== undefined && holderAlive(state) ? state : undefined;
}

/**
 * Takes the machine's one demo slot for this process (the holder), before it builds anything: a
 * second `demo` started meanwhile must not build a lab that no state file would then name. A slot
 * whose holder is gone is taken over (its lab went with it, or the next lab's sweep removes it).
 */
export function claimDemoSlot(): string | undefined {
  // Written whole under another name, then linked: the slot is never seen empty or half-written.
  const draft = `${DEMO_STATE_PATH}.${process.pid}`;
  writeFileSync(draft, `${JSON.stringify({holder: currentOwner()})}\n`, {mode: 0o600});
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        linkSync(draft, DEMO_STATE_PATH);
        return undefined;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const state = readState();
      if (state && holderAlive(state)) return 'another demo lab is up or being built (isolate-wizard demo --down removes it)';
      rmSync(DEMO_STATE_PATH, {force: true});
    }
    return 'could not take the demo slot';
  } finally {
    rmSync(draft, {force: true});
  }
}

/** Writes the built lab into the slot this process claimed (replaced whole, as it was taken). */
export function recordDemoLab(lab: DemoLab): void {
  const draft = `${DEMO_STATE_PATH}.${process.pid}`;
  writeFileSync(draft, `${JSON.stringify(lab)}\n`, {mode: 0o600});
  renameSync(draft, DEMO_STATE_PATH);
}

const HOLDER_ENTRY = fileURLToPath(new URL('./demo-holder.js', import.meta.url));
const START_LIMIT_MS = 180_000;

/** Builds the lab in a detached holder process and returns it once every server is up. */
export function startDemoLab(): Promise<DemoLab> {
  return new Promise((resolve, reject) => {
    // Its own session: the terminal's Ctrl+C and hang-up reach the wizard, not the lab.
    const holder = spawn(process.execPath, [HOLDER_ENTRY], {detached: true, stdio: ['ignore', 'pipe', 'ignore'], cwd: '/'});
    let output = '';
    const timer = setTimeout(() => {
      holder.kill('SIGTERM');
      finish(new Error('the demo lab did not start in time'));
    }, START_LIMIT_MS);
    // Interrupted while building: the lab goes too (the holder's signal handler tears it down).
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
    const abandon = (signal: NodeJS.Signals): void => {
      holder.kill('SIGTERM');
      for (const name of signals) process.removeListener(name, abandon);
      process.kill(process.pid, signal);
    };
    for (const name of signals) process.on(name, abandon);
    const finish = (result: DemoLab | Error): void => {
      for (const name of signals) process.removeListener(name, abandon);
      clearTimeout(timer);
      holder.stdout.removeAllListeners('data');
      holder.removeAllListeners('close');
      holder.stdout.destroy();
      holder.unref();
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    holder.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const end = output.indexOf('\n');
      if (end < 0) return;
      let report: {lab?: DemoLab; error?: string};
      try {
        report = JSON.parse(output.slice(0, end)) as typeof report;
      } catch {
        report = {error: output.slice(0, end)};
      }
      finish(report.lab ?? new Error(`the demo lab could not be built: ${report.error ?? 'no reason given'}`));
    });
    holder.once('error', (error) => finish(error));
    // 'close', not 'exit': a report written just before the holder exits is read first.
    holder.once('close', (code, signal) => finish(new Error(`the demo lab's process ended (${code ?? signal}) before the lab was up`)));
  });
}

/** What is left of a demo lab after removing it: namespaces and the directory, named. Empty when all is gone. */
export interface Removal {
  lab: DemoLab | undefined;
  left: string[];
  /** A holder was stopped while building (its signal handler removes what it had made). */
  stoppedBuild?: boolean;
}

/**
 * Removes the demo lab: its holder tears it down (processes, namespaces, directory); whatever a dead
 * holder left is removed here the same way. The result is read back from the machine, not assumed.
 */
export function removeDemoLab(): Removal {
  const state = readState();
  if (!state) return {lab: undefined, left: []};
  if (holderAlive(state)) {
    process.kill(state.holder.pid, 'SIGTERM');
    const deadline = Date.now() + 30_000;
    while (holderAlive(state) && Date.now() < deadline) sleepSync(50);
    if (holderAlive(state)) killAndWait([state.holder.pid]);
  }
  // A lab still being built when its holder got SIGTERM was torn down by the holder's signal handler.
  if (state.id === undefined) {
    rmSync(DEMO_STATE_PATH, {force: true});
    return {lab: undefined, left: [], stoppedBuild: true};
  }
  const lab = state;
  removeNamespaces(labNamespaces(lab.id), namespaceFor(lab.id, 'switch'));
  rmSync(lab.dir, {recursive: true, force: true});
  const left = [...labNamespaces(lab.id).map((name) => `namespace ${name}`), ...(existsSync(lab.dir) ? [lab.dir] : [])];
  if (left.length === 0) rmSync(DEMO_STATE_PATH, {force: true});
  return {lab, left};
}

/** How to run this package's CLI in the lab's operator namespace with its HOME (for the wizard: a terminal). */
export function demoCliCommand(lab: DemoLab, args: readonly string[] = []): OperatorCommand {
  return {
    file: 'nsenter',
    args: [`--net=/run/netns/${lab.operatorNetns}`, '--', process.execPath, CLI_ENTRY, ...args],
    env: operatorEnvironment(lab.home),
    cwd: lab.home,
  };
}
