import {formatAccess, type AccessEntry, type FleetHost} from '../core/access.js';
import type {HostDiscovery} from '../core/discovery/index.js';
import {buildPlan, type Plan} from '../core/plan.js';
import {InputError} from '../core/errors.js';
import {parseBackendChoice, type Backend} from '../core/backend.js';
import {factsFromInventory, type Inventory} from '../core/inventory.js';
import {formatLockout, type ResolvedSsh} from '../core/lockout.js';
import type {Family, HostFacts} from '../core/model.js';
import {buildMatrix, renderMatrix} from '../core/matrix.js';
import {groupedRules} from '../core/compiler.js';
import {compileGroupedNftTable, nftSetDeclarations} from '../core/nft-compiler.js';
import {renderRuleset} from '../core/render.js';
import {stringOption, type CliIo, type Command, type OptionValues} from './command.js';
import {fleetContext, gatherFacts} from './fleet-context.js';
import {resolveOperatorSsh} from '../remote/operator-ssh.js';

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
): Promise<{inventory: Inventory; facts: Map<string, HostFacts>; resolved: Map<string, ResolvedSsh>; discovered: ReadonlyMap<string, HostDiscovery>}> {
  const context = fleetContext(values, io);
  const facts = writtenFacts(context.inventory);
  if (facts) return {inventory: context.inventory, facts, resolved: resolveOperatorSsh(context.inventory, context.home), discovered: new Map()};
  try {
    const gathered = await gatherFacts(context, (line) => io.stderr.write(line));
    return {inventory: context.inventory, ...gathered};
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
 * Which rules plan prints: the nftables table when `--backend` (else the inventory's
 * options.backend) says nftables; the iptables rulesets otherwise (auto decides per server at
 * apply time, from whether nft is there).
 */
function printedBackend(flag: string | undefined, inventory: Inventory): Backend {
  return (parseBackendChoice(flag) ?? inventory.options.backend) === 'nftables' ? 'nftables' : 'iptables';
}

const familyTitle = (family: Family): string => (family === 4 ? 'IPv4 (iptables-restore)' : 'IPv6 (ip6tables-restore)');

/** Does the entry concern one of these hosts (as destination or source)? A set: plans can hold 10,000 hosts. */
function touchesAny(entry: AccessEntry, hosts: ReadonlySet<string>): boolean {
  return hosts.has(entry.destination) || entry.sources.some((source) => hosts.has(source));
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

function renderText(plan: Plan, hostNames: ReadonlySet<string>, families: readonly Family[], backend: Backend): string {
  const out: string[] = [];
  const shown = plan.hosts.filter((candidate) => hostNames.has(candidate.name));
  if (backend === 'nftables') {
    // Written once here, named by the tables: a set of a role's addresses is shared by every host admitting that role.
    const sets = addressSetsOf(shown);
    if (sets.length > 0) out.push('== nftables address sets (each table below declares those it matches) ==', ...sets, '');
  }
  for (const host of shown) {
    if (backend === 'nftables') {
      // One table holds both families.
      out.push(`== ${host.name} · nftables (nft -f) ==`, compileGroupedNftTable(host.compiled, false).trimEnd(), '');
    }
    for (const family of backend === 'nftables' ? [] : families) {
      out.push(`== ${host.name} · ${familyTitle(family)} ==`);
      out.push(renderRuleset(family === 4 ? host.compiled.v4 : host.compiled.v6).trimEnd());
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
  const lockout = plan.lockout.filter((finding) => hostNames.has(finding.host));
  out.push('== SSH path check ==');
  out.push(...(lockout.length > 0 ? formatLockout(lockout) : ['every host keeps the operator\'s SSH path']));
  return out.join('\n') + '\n';
}

function renderJson(plan: Plan, hostNames: ReadonlySet<string>, families: readonly Family[], backend: Backend): string {
  const hosts = plan.hosts
    .filter((host) => hostNames.has(host.name))
    .map((host) => ({
      name: host.name,
      warnings: host.compiled.warnings,
      ...(families.includes(4) ? {v4: renderRuleset(host.compiled.v4)} : {}),
      ...(families.includes(6) ? {v6: renderRuleset(host.compiled.v6)} : {}),
      ...(backend === 'nftables' ? {nft: compileGroupedNftTable(host.compiled, true)} : {}),
      rules: {
        ...(families.includes(4) ? {v4: host.compiled.v4} : {}),
        ...(families.includes(6) ? {v6: host.compiled.v6} : {}),
      },
    }));
  const access = plan.access
    .filter((entry) => touchesAny(entry, hostNames))
    .map((entry) => ({...entry, text: formatAccess([entry])[0]}));
  const lockout = plan.lockout.filter((finding) => hostNames.has(finding.host));
  return `${JSON.stringify({hosts, access, lockout}, null, 2)}\n`;
}

export const planCommand: Command = {
  options: {
    inventory: {type: 'string', short: 'i'},
    host: {type: 'string'},
    family: {type: 'string'},
    format: {type: 'string'},
    backend: {type: 'string'},
    'accept-new': {type: 'boolean'},
  },
  async run(values, _positionals, io) {
    const family = parseFamily(stringOption(values, 'family'));
    const format = parseFormat(stringOption(values, 'format'));
    const hostName = stringOption(values, 'host');
    parseBackendChoice(stringOption(values, 'backend')); // bad input fails before anything is read
    if (format === 'iptables' && (hostName === undefined || family === undefined)) {
      throw new InputError(['--format iptables prints one ruleset: give --host NAME and --family 4 or 6']);
    }
    if (format === 'nft' && hostName === undefined) throw new InputError(['--format nft prints one table: give --host NAME']);
    const {inventory, facts, resolved} = await planInputs(values, io);
    const backend = printedBackend(stringOption(values, 'backend'), inventory);
    const plan = buildPlan(inventory, facts, resolved, {withAccess: format !== 'iptables' && format !== 'nft'});
    const hostNames = new Set(hostName === undefined ? plan.hosts.map((host) => host.name) : [hostName]);
    const families: Family[] = family === undefined ? [4, 6] : [family];

    if (format === 'iptables') {
      const host = plan.hosts.find((candidate) => candidate.name === hostName) as FleetHost;
      io.stdout.write(renderRuleset(family === 4 ? host.compiled.v4 : host.compiled.v6));
    } else if (format === 'nft') {
      const host = plan.hosts.find((candidate) => candidate.name === hostName) as FleetHost;
      io.stdout.write(compileGroupedNftTable(host.compiled, true));
    } else if (format === 'matrix') {
      io.stdout.write(`${renderMatrix(buildMatrix(plan.hosts.map((host) => host.name), plan.access), {columns: 80}).join('\n')}\n`);
    } else if (format === 'json') {
      io.stdout.write(renderJson(plan, hostNames, families, backend));
    } else {
      io.stdout.write(renderText(plan, hostNames, families, backend));
    }
    // plan only warns; apply is what refuses a plan that cuts the way in.
    for (const line of formatLockout(plan.lockout.filter((finding) => hostNames.has(finding.host)))) {
      io.stderr.write(`isolate-wizard: ${line}\n`);
    }
    return 0;
  },
};
