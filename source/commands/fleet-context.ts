// What every command that reaches servers shares: the inventory read once, the hosts chosen with
// --host, one connector (connections reused within the run), what ~/.ssh/config says of each host,
// and the facts (interfaces, addresses) the compiler needs: from the inventory, else discovered.
import {readFileSync} from 'node:fs';
import {homedir} from 'node:os';
import path from 'node:path';
import {parseSshConnection, type HostDiscovery} from '../core/discovery/index.js';
import {InputError, UsageError} from '../core/errors.js';
import {factsFromInventory, parseInventoryText, type Inventory} from '../core/inventory.js';
import type {ResolvedSsh} from '../core/lockout.js';
import type {HostFacts} from '../core/model.js';
import {createConnector, HEADLESS_PROMPTER} from '../remote/connection.js';
import {discoverHost, DISCOVERY_COMMANDS, readDockerFacts} from '../remote/discovery.js';
import {LocalState} from '../remote/local-state.js';
import {resolveOperatorSsh} from '../remote/operator-ssh.js';
import type {Connector, HostTarget} from '../remote/types.js';
import {stringList, stringOption, type CliIo, type OptionValues} from './command.js';

export interface FleetContext {
  readonly file: string;
  readonly inventory: Inventory;
  /** The hosts the command acts on (--host, else all), in inventory order. */
  readonly selected: readonly HostTarget[];
  readonly allTargets: readonly HostTarget[];
  readonly home: string;
  readonly connector: Connector;
  readonly localState: LocalState;
}

export function readInventoryFile(file: string, io: CliIo): Inventory {
  let text: string;
  try {
    text = readFileSync(path.resolve(io.cwd, file), 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new InputError([`--inventory: cannot read ${file}${code === 'ENOENT' ? ' (no such file)' : code ? ` (${code})` : ''}`]);
  }
  return parseInventoryText(text, file);
}

/** The options every command that reaches servers takes. */
export const FLEET_OPTIONS = {
  inventory: {type: 'string', short: 'i'},
  host: {type: 'string', multiple: true},
  'accept-new': {type: 'boolean'},
} as const;

export function fleetContext(values: OptionValues, io: CliIo): FleetContext {
  const file = stringOption(values, 'inventory');
  if (file === undefined) throw new UsageError('--inventory FILE is required');
  const inventory = readInventoryFile(file, io);
  const names = stringList(values, 'host');
  const known = new Set(inventory.hosts.map((host) => host.name));
  const unknown = names.filter((name) => !known.has(name));
  if (unknown.length > 0) {
    throw new InputError(unknown.map((name) => `--host: no host "${name}" in ${file} (hosts: ${[...known].join(', ')})`));
  }
  const allTargets: HostTarget[] = inventory.hosts.map((host) => ({name: host.name, ssh: host.ssh, ...(host.jump === undefined ? {} : {jump: host.jump})}));
  const selected = names.length === 0 ? allTargets : allTargets.filter((target) => names.includes(target.name));
  const home = io.env.HOME ?? homedir();
  const connector = createConnector({home, env: io.env, prompter: HEADLESS_PROMPTER, acceptNew: values['accept-new'] === true, inventoryHosts: allTargets});
  return {file, inventory, selected, allTargets, home, connector, localState: new LocalState()};
}

/**
 * Facts for every inventory host (the compiler needs the whole fleet to write peers): from the
 * inventory when it gives them, else discovered over SSH. Also the operator's address as each
 * directly reached host sees it ($SSH_CONNECTION), for the lockout check.
 */
export async function gatherFacts(
  context: FleetContext,
  emit: (line: string) => void,
): Promise<{facts: Map<string, HostFacts>; resolved: Map<string, ResolvedSsh>; discovered: Map<string, HostDiscovery>}> {
  const facts = new Map<string, HostFacts>();
  const discovered = new Map<string, HostDiscovery>();
  const resolved = resolveOperatorSsh(context.inventory, context.home);
  const sources = new Map<string, string>();
  // Open every selected host's connection now, alongside the fact gathering: the apply reuses
  // them. A failure here is reported by the apply, host by host.
  for (const target of context.selected) void context.connector.connect(target).catch(() => undefined);
  const readDocker = async (target: HostTarget) => {
    try {
      const read = await readDockerFacts(await context.connector.connect(target));
      for (const warning of read.warnings) emit(`${warning}\n`);
      return read.docker;
    } catch {
      return undefined;
    }
  };
  await Promise.all(
    context.inventory.hosts.map(async (host) => {
      const target = context.allTargets.find((candidate) => candidate.name === host.name) as HostTarget;
      const written = factsFromInventory(host);
      const direct = resolved.get(host.name)?.proxyJump === undefined && host.jump === undefined;
      const isSelected = context.selected.some((candidate) => candidate.name === host.name);
      if (written) {
        facts.set(host.name, written);
        // Published container ports bypass input: the plan says who reaches them, and may restrict
        // them. A host that cannot be reached is reported by the apply, host by host.
        const docker = isSelected ? readDocker(target) : Promise.resolve(undefined);
        if (direct && isSelected) {
          // The operator's address as the server sees it: the lockout check needs it for direct paths.
          const remote = await context.connector.connect(target);
          const session = await remote.exec(DISCOVERY_COMMANDS.sshConnection);
          const parsed = session.code === 0 ? parseSshConnection(session.stdout) : undefined;
          if (parsed) sources.set(host.name, parsed.clientAddress);
        }
        const read = await docker;
        if (read) facts.set(host.name, {...written, docker: read});
        return;
      }
      emit(`${host.name.padEnd(14)} discover  (no addresses in the inventory)\n`);
      const discovery = await discoverHost(await context.connector.connect(target));
      facts.set(host.name, discovery.facts);
      discovered.set(host.name, discovery);
      if (discovery.sshConnection) sources.set(host.name, discovery.sshConnection.clientAddress);
    }),
  );
  for (const [name, source] of sources) resolved.set(name, {...resolved.get(name), source});
  return {facts, resolved, discovered};
}
