import {formatAccess, type AccessEntry, type FleetHost} from '../core/access.js';
import type {HostDiscovery} from '../core/discovery/index.js';
import {buildPlan, type Plan} from '../core/plan.js';
import {InputError} from '../core/errors.js';
import {DEFAULT_BACKEND_CHOICE, nftTableOf, parseBackendChoice, resolveBackend, type Backend} from '../core/backend.js';
import {describePublished, publishedToRestrict, withPublishedRules} from '../core/docker.js';
import {factsFromInventory, type Inventory} from '../core/inventory.js';
import {formatLockout, type ResolvedSsh} from '../core/lockout.js';
import type {BackendChoice, Family, HostFacts, Ruleset} from '../core/model.js';
import {buildMatrix, renderMatrix} from '../core/matrix.js';
import {groupedRules} from '../core/compiler.js';
import {nftSetDeclarations} from '../core/nft-compiler.js';
import {toOwnChains} from '../core/own-chains.js';
import {renderRuleset} from '../core/render.js';
import {stringOption, type CliIo, type Command, type OptionValues} from './command.js';
import {fleetContext, gatherFacts} from './fleet-context.js';
import {resolveOperatorSsh} from '../remote/operator-ssh.js';
import {otherFirewallDrops, readNativeRulesets, type OtherFirewallsRead} from '../remote/native-tables.js';
import {formatNativeDrops} from '../core/native-drops.js';
import {REMEDY_WORDS} from '../core/remedy.js';

const FORMATS = ['text', 'iptables', 'nft', 'json', 'matrix'] as const;
type Format = (typeof FORMATS)[number];


/** Facts written in the inventory, when it gives them for every host (then plan needs no network). */
function writtenFacts(inv: Inventory): Map<string, HostFacts> | undefined {
  const facts = new Map<string, HostFacts>();
  for (const host of inv.hosts) {
    const hostFacts = factsFromInventory(host);
    if (!hostFacts) return undefined;
    facts.set(host.name, hostFacts);
  }
  return facts;
}

/**
 * Facts for every host and what the operator's ssh does: offline when the inventory has them all,
 * else discovered over SSH (the compiler needs the whole fleet to write each host's peers).
 */
export async function planInputs(
  values: OptionValues,
  io: CliIo,
): Promise<{inventory: Inventory; facts: Map<string, HostFacts>; resolved: Map<string, ResolvedSsh>; discovered: ReadonlyMap<string, HostDiscovery>; read: boolean; others?: OtherFirewallsRead}> {
  const context = fleetContext(values, io);
  const facts = writtenFacts(context.inventory);
  if (facts) return {inventory: context.inventory, facts, resolved: resolveOperatorSsh(context.inventory, context.home), discovered: new Map(), read: false};
  try {
    const gathered = await gatherFacts(context, (line) => io.stderr.write(line));
    // Online anyway: the other firewalls of the hosts discovered, as apply will judge them.
    const discoveredTargets = context.selected.filter((target) => gathered.discovered.has(target.name));
    const others = await readNativeRulesets(context.connector, discoveredTargets);
    for (const line of others.unread) io.stderr.write(`isolate-wizard: ${line}\n`);
    return {inventory: context.inventory, ...gathered, read: true, others};
  } finally {
    await context.connector.closeAll();
  }
}

function parseFamily(value: string | undefined): Family | undefined {
  if (value === undefined) return undefined;
  if (value === '4' || value === '6') return Number(value) as Family;
  throw new InputError([`--family: "${value}" is not 4 or 6`]);
}

function parseFormat(value: string | undefined): Format {
  if (value === undefined) return 'text';
  if ((FORMATS as readonly string[]).includes(value)) return value as Format;
  throw new InputError([`--format: "${value}" is not one of ${FORMATS.join(', ')}`]);
}

/**
 * Which rules plan prints for each host: what `--backend` (else the inventory's options.backend,
 * else auto) gives it. Plan reads nothing live: under auto a host shows nftables unless
 * discovery (run when the inventory has no addresses) found that its nft cannot hold our table;
 * the server decides at apply time. `note` says so when auto decided.
 */
function printedBackends(
  choice: BackendChoice,
  names: readonly string[],
  discovered: ReadonlyMap<string, HostDiscovery>,
): {backends: Map<string, Backend>; note?: string} {
  const backends = new Map(names.map((name) => [name, resolveBackend(choice, choice === 'auto' ? (discovered.get(name)?.firewall.nftUsable ?? true) : undefined)]));
  if (choice !== 'auto') return {backends};
  const seen = names.filter((name) => discovered.get(name)?.firewall.nftUsable !== undefined);
  return {
    backends,
    note:
      'backend auto: each server gets nftables where its nft can load a table like ours (checked with nft -c), else iptables; ' +
      `the server decides at apply time${seen.length > 0 ? ` (shown for ${seen.join(', ')} as discovery found it)` : ''}`,
  };
}

const familyTitle = (family: Family): string => (family === 4 ? 'IPv4 (iptables-restore)' : 'IPv6 (ip6tables-restore)');

/** Does the entry concern one of these hosts (as destination or source)? A set: plans can hold 10,000 hosts. */
function touchesAny(entry: AccessEntry, hosts: ReadonlySet<string>): boolean {
  return hosts.has(entry.destination) || entry.sources.some((source) => hosts.has(source));
}

/** Our table as plan prints it: with the published ports' chain when they are restricted. */
function nftOf(host: FleetHost, restrict: boolean, declareSets = true): string {
  return nftTableOf(host.compiled, publishedToRestrict(host.facts, restrict), declareSets);
}

/** Our iptables chains as plan prints them (what is loaded): with IW-PUBLISHED when published ports are restricted. */
function ownChainsOf(host: FleetHost, family: Family, restrict: boolean): Ruleset {
  return toOwnChains(withPublishedRules(family === 4 ? host.compiled.v4 : host.compiled.v6, publishedToRestrict(host.facts, restrict)));
}

/** The address sets the hosts' tables match, each once, in the order first matched. */
function addressSetsOf(hosts: readonly FleetHost[]): string[] {
  const seen = new Set<object>();
  const sets = [];
  for (const host of hosts) {
    for (const set of groupedRules(host.compiled)?.sets ?? []) {
      if (seen.has(set)) continue;
      seen.add(set);
      sets.push(set);
    }
  }
  return nftSetDeclarations(sets);
}

/**
 * Who reaches each Docker host's published ports (they bypass input). `read`: whether the hosts
 * were read at all (an offline plan reads no server, so it cannot know).
 */
function publishedLines(plan: Plan, hostNames: ReadonlySet<string>, restrict: boolean, read: boolean): string[] {
  const hosts = plan.hosts.filter((host) => hostNames.has(host.name));
  const lines = hosts.flatMap((host) => describePublished(host, plan.hosts, restrict));
  if (lines.length > 0) return lines;
  return [read ? 'no Docker host' : 'not read: the inventory gives every host\'s facts, so plan read no server (apply reads them)'];
}

/**
 * Lines written as they come, in pieces of about 64 KB: a 10,000-host plan is tens of megabytes,
 * never held as one string. `done` writes the rest.
 */
function lineWriter(write: (text: string) => void): {push(...lines: string[]): void; done(): void} {
  let pending: string[] = [];
  let size = 0;
  const flush = (): void => {
    if (pending.length > 0) write(`${pending.join('\n')}\n`);
    pending = [];
    size = 0;
  };
  return {
    push(...lines) {
      for (const line of lines) {
        pending.push(line);
        size += line.length + 1;
      }
      if (size >= 65_536) flush();
    },
    done: flush,
  };
}

function renderText(write: (text: string) => void, plan: Plan, hostNames: ReadonlySet<string>, families: readonly Family[], printed: {backends: ReadonlyMap<string, Backend>; note?: string}, restrict: boolean, read: boolean, others?: OtherFirewallsRead): void {
  const out = lineWriter(write);
  if (printed.note !== undefined) out.push(`(${printed.note})`, '');
  const shown = plan.hosts.filter((candidate) => hostNames.has(candidate.name));
  // Written once here, named by the tables: a set of a role's addresses is shared by every host admitting that role.
  const sets = addressSetsOf(shown.filter((host) => printed.backends.get(host.name) === 'nftables'));
  if (sets.length > 0) out.push('== nftables address sets (each table below declares those it matches) ==', ...sets, '');
  for (const host of shown) {
    const backend = printed.backends.get(host.name);
    if (backend === 'nftables') {
      // One table holds both families.
      out.push(`== ${host.name} · nftables (nft -f) ==`, nftOf(host, restrict, false).trimEnd(), '');
    }
    for (const family of backend === 'nftables' ? [] : families) {
      out.push(`== ${host.name} · ${familyTitle(family)} ==`);
      out.push(renderRuleset(ownChainsOf(host, family, restrict)).trimEnd());
      out.push('');
    }
    if (host.compiled.warnings.length > 0) {
      out.push(`== ${host.name} · warnings ==`);
      for (const warning of host.compiled.warnings) out.push(`- ${warning}`);
      out.push('');
    }
  }
  const access = plan.access.filter((entry) => touchesAny(entry, hostNames));
  out.push('== Access (read back from the compiled rules: new connections that get through) ==');
  out.push(...(access.length > 0 ? formatAccess(access) : ['(none)']));
  const uncertain = [...new Set(access.flatMap((entry) => entry.uncertain))];
  for (const note of uncertain) out.push(`? ${note}`);
  out.push('');
  if (plan.hosts.some((host) => hostNames.has(host.name) && host.facts.docker)) {
    out.push('== Published container ports (Docker: DNATed, so they bypass input) ==');
    out.push(...publishedLines(plan, hostNames, restrict, read), '');
  }
  out.push('== Other firewalls (firewalld, ufw, other nftables tables) ==');
  out.push(...otherFirewallLines(plan, hostNames, others));
  out.push('');
  const lockout = plan.lockout.filter((finding) => hostNames.has(finding.host));
  out.push('== SSH path check ==');
  out.push(...(lockout.length > 0 ? formatLockout(lockout) : ['every host keeps the operator\'s SSH path']));
  out.done();
}

/**
 * What other firewalls drop of the planned flows, where they were read (plan discovered the
 * hosts over SSH); else that apply checks them. Either way what apply then does.
 */
function otherFirewallLines(plan: Plan, hostNames: ReadonlySet<string>, others: OtherFirewallsRead | undefined): string[] {
  const remedy = plan.inventory.options.otherFirewall;
  const then =
    remedy === undefined
      ? 'apply refuses (exit 3, nothing touched) while one drops a planned flow, unless you choose --other-firewall open or stop (options.otherFirewall)'
      : `options.otherFirewall is "${remedy}": apply will ${REMEDY_WORDS[remedy]}, then check the flows pass`;
  const read = others === undefined ? [] : [...hostNames].filter((name) => others.rulesets.has(name));
  const lines: string[] = [];
  if (others !== undefined && read.length > 0) {
    const drops = formatNativeDrops(otherFirewallDrops(plan.hosts, others, new Set(read), plan.access));
    lines.push(...(drops.length > 0 ? drops : [`none of them drops a planned flow on ${read.length === hostNames.size ? 'any host' : read.join(', ')} (read live now)`]));
  }
  const unread = [...hostNames].filter((name) => !read.includes(name));
  if (unread.length > 0) {
    const which = unread.length === hostNames.size ? 'every host' : unread.join(', ');
    lines.push(`not read for ${which} (plan ran from the inventory's addresses): apply reads each server's other firewalls and checks every planned flow against them`);
  }
  lines.push(then);
  return lines;
}

function renderJson(plan: Plan, hostNames: ReadonlySet<string>, families: readonly Family[], printed: {backends: ReadonlyMap<string, Backend>; note?: string}, restrict: boolean, read: boolean): string {
  const hosts = plan.hosts
    .filter((host) => hostNames.has(host.name))
    .map((host) => ({
      name: host.name,
      backend: printed.backends.get(host.name),
      warnings: host.compiled.warnings,
      ...(families.includes(4) ? {v4: renderRuleset(ownChainsOf(host, 4, restrict))} : {}),
      ...(families.includes(6) ? {v6: renderRuleset(ownChainsOf(host, 6, restrict))} : {}),
      ...(printed.backends.get(host.name) === 'nftables' ? {nft: nftOf(host, restrict)} : {}),
      ...(host.facts.docker ? {docker: {published: host.facts.docker.published, restricted: publishedToRestrict(host.facts, restrict) !== undefined}} : {}),
      rules: {
        ...(families.includes(4) ? {v4: ownChainsOf(host, 4, restrict)} : {}),
        ...(families.includes(6) ? {v6: ownChainsOf(host, 6, restrict)} : {}),
      },
    }));
  const access = plan.access
    .filter((entry) => touchesAny(entry, hostNames))
    .map((entry) => ({...entry, text: formatAccess([entry])[0]}));
  const lockout = plan.lockout.filter((finding) => hostNames.has(finding.host));
  const published = publishedLines(plan, hostNames, restrict, read);
  return `${JSON.stringify({...(printed.note === undefined ? {} : {backendNote: printed.note}), hosts, access, lockout, published}, null, 2)}\n`;
}

export const planCommand: Command = {
  options: {
    inventory: {type: 'string', short: 'i'},
    host: {type: 'string'},
    family: {type: 'string'},
    format: {type: 'string'},
    backend: {type: 'string'},
    'restrict-published': {type: 'boolean'},
    'accept-new': {type: 'boolean'},
  },
  async run(values, _positionals, io) {
    const family = parseFamily(stringOption(values, 'family'));
    const format = parseFormat(stringOption(values, 'format'));
    const hostName = stringOption(values, 'host');
    const flagged = parseBackendChoice(stringOption(values, 'backend')); // bad input fails before anything is read
    if (format === 'iptables' && (hostName === undefined || family === undefined)) {
      throw new InputError(['--format iptables prints one ruleset: give --host NAME and --family 4 or 6']);
    }
    if (format === 'nft' && hostName === undefined) throw new InputError(['--format nft prints one table: give --host NAME']);
    const {inventory, facts, resolved, discovered, read, others} = await planInputs(values, io);
    const restrict = values['restrict-published'] === true || inventory.options.restrictPublished === true;
    const choice = flagged ?? inventory.options.backend ?? DEFAULT_BACKEND_CHOICE;
    const plan = buildPlan(inventory, facts, resolved, {withAccess: format !== 'iptables' && format !== 'nft'});
    const hostNames = new Set(hostName === undefined ? plan.hosts.map((host) => host.name) : [hostName]);
    const families: Family[] = family === undefined ? [4, 6] : [family];
    const printed = printedBackends(choice, [...hostNames], discovered);

    if (format === 'iptables') {
      const host = plan.hosts.find((candidate) => candidate.name === hostName) as FleetHost;
      // What is loaded: our chains and the jumps into them (core/own-chains.ts).
      io.stdout.write(renderRuleset(ownChainsOf(host, family as Family, restrict)));
    } else if (format === 'nft') {
      const host = plan.hosts.find((candidate) => candidate.name === hostName) as FleetHost;
      io.stdout.write(nftOf(host, restrict));
    } else if (format === 'matrix') {
      io.stdout.write(`${renderMatrix(buildMatrix(plan.hosts.map((host) => host.name), plan.access), {columns: 80}).join('\n')}\n`);
    } else if (format === 'json') {
      io.stdout.write(renderJson(plan, hostNames, families, printed, restrict, read));
    } else {
      renderText((text) => io.stdout.write(text), plan, hostNames, families, printed, restrict, read, others);
    }
    // plan only warns; apply is what refuses a plan that cuts the way in.
    for (const line of formatLockout(plan.lockout.filter((finding) => hostNames.has(finding.host)))) {
      io.stderr.write(`isolate-wizard: ${line}\n`);
    }
    return 0;
  },
};
