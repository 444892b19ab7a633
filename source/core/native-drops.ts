// What other software's firewalls would drop of what the plan opens. Our rules can only take
// access away from what every other base chain lets through (a drop anywhere is final), so a
// flow the plan opens is real only if no other firewall on the destination drops it: firewalld's
// default zone, a hand-written `inet filter`, fail2ban's sets (nftables tables, from
// `nft -j list ruleset`), and ufw (its `ufw-*` / `ufw6-*` chains in the iptables filter table,
// legacy or iptables-nft, from iptables-save). Pure: the rulesets are read on each server.
import {INTERNET, INTERNET_ADDRESS, type AccessEntry, type FleetHost} from './access.js';
import {evaluate, type Packet, type Uncertainty} from './evaluator.js';
import {familyOf} from './ip.js';
import {ruleTarget} from './own-chains.js';
import type {Family, PortRange, Protocol, Rule, Ruleset} from './model.js';
import {evaluateNft, type NftDecision} from './nft-evaluator.js';
import type {NftRuleset} from './nft-ruleset.js';
import {fleetPath} from './topology.js';

export interface NativeDrop {
  readonly destination: string;
  readonly source: string;
  /** The source address tried; undefined for the internet (any source). */
  readonly sourceAddress?: string;
  readonly family: Family;
  readonly protocol: Protocol;
  readonly port: number;
  /** The planned range the port was tried for (a remedy opens the whole range). */
  readonly range: PortRange;
  readonly outcome: 'drop' | 'may-drop';
  /** "inet firewalld"; for ufw "iptables filter" */
  readonly table: string;
  /** "firewalld", "ufw", "fail2ban", ..., or "unknown manager". */
  readonly manager: string;
  /** "rule 8 of filter_INPUT", "the policy of input", and why when it is a may-drop. */
  readonly where: string;
}

/** The managers the operator can ask us to open ports in, or to stop (`--other-firewall`). */
export const REMEDIABLE_MANAGERS: readonly string[] = ['firewalld', 'ufw'];

/** The software an nftables table belongs to, by the names those programs give their tables. */
export function tableOwner(table: string): string {
  const name = table.split(' ')[1] ?? table;
  if (name === 'firewalld') return 'firewalld';
  if (name.startsWith('f2b')) return 'fail2ban';
  if (name.startsWith('docker')) return 'Docker';
  if (name.startsWith('kube')) return 'Kubernetes (kube-proxy)';
  if (name === 'nixos-fw') return 'the NixOS firewall';
  return 'unknown manager';
}

const UFW_TABLE = 'iptables filter';
/** An unread rule that could end a flow (an unread ACCEPT or LOG cannot take access away). */
const mayTakeAway = (rule: Uncertainty): boolean => !['ACCEPT', 'RETURN', 'LOG', undefined].includes(ruleTarget(rule));
const isUfwChain = (name: string): boolean => name.startsWith('ufw-') || name.startsWith('ufw6-');

/**
 * ufw's part of a live iptables filter table: INPUT's jumps into its chains, those chains, and
 * INPUT's policy (ufw's default, which `ufw enable` sets and reasserts at every boot). Undefined
 * when INPUT does not enter ufw (ufw inactive or absent).
 */
export function ufwPart(ruleset: Ruleset): Ruleset | undefined {
  const filter = ruleset.tables.find((table) => table.name === 'filter');
  if (!filter) return undefined;
  const entries = filter.rules.filter((rule) => rule.chain === 'INPUT' && isUfwChain(ruleTarget(rule) ?? ''));
  if (entries.length === 0) return undefined;
  const rules: Rule[] = [...entries, ...filter.rules.filter((rule) => isUfwChain(rule.chain))];
  const chains = filter.chains.filter((chain) => chain.name === 'INPUT' || isUfwChain(chain.name));
  return {family: ruleset.family, tables: [{name: 'filter', chains, rules}]};
}

function where(decision: NftDecision): string {
  const by = decision.by;
  if (!by) return '';
  const place = 'policy' in by ? `the drop policy of ${by.chain}` : `rule ${by.index + 1} of ${by.chain}`;
  return decision.outcome === 'may-drop' && decision.reason ? `${place} (may drop: ${decision.reason})` : place;
}

/** A port to try per range: its ends (one port per range suffices when the table names no ports inside it). */
function portsToTry(ranges: readonly PortRange[]): number[] {
  return ranges.flatMap((range) => (range.first === range.last ? [range.first] : [range.first, range.last]));
}

/** The iptables filter tables of a host (iptables-save as read), where ufw may live. */
export interface IptablesFilters {
  readonly v4?: Ruleset;
  readonly v6?: Ruleset;
}

/**
 * Every planned-open flow to a host that has other firewalls, tried against them: its native
 * nftables tables (`native`) and ufw's chains in its iptables filter tables (`iptables`). Hosts
 * without an entry in either are not judged (the caller says so).
 */
export function nativeDrops(
  hosts: readonly FleetHost[],
  access: readonly AccessEntry[],
  native: ReadonlyMap<string, NftRuleset>,
  iptables: ReadonlyMap<string, IptablesFilters> = new Map(),
): NativeDrop[] {
  const byName = new Map(hosts.map((host) => [host.name, host]));
  const ufw = new Map<string, {4?: Ruleset; 6?: Ruleset}>();
  for (const [name, filters] of iptables) {
    const v4 = filters.v4 && ufwPart(filters.v4);
    const v6 = filters.v6 && ufwPart(filters.v6);
    if (v4 || v6) ufw.set(name, {...(v4 ? {4: v4} : {}), ...(v6 ? {6: v6} : {})});
  }
  const drops: NativeDrop[] = [];
  for (const entry of access) {
    const ruleset = native.get(entry.destination);
    const ufwRules = ufw.get(entry.destination);
    const destination = byName.get(entry.destination);
    if (!destination || ((!ruleset || ruleset.tables.length === 0) && !ufwRules)) continue;
    for (const sourceName of entry.sources) {
      for (const end of endsOf(sourceName, destination, byName)) {
        if (entry.only !== undefined && entry.only !== end.family) continue;
        for (const protocol of ['tcp', 'udp'] as const) {
          for (const range of entry[protocol]) {
            for (const port of portsToTry([range])) {
              const packet: Packet = {
                chain: 'INPUT',
                ...(end.inInterface === undefined ? {} : {inInterface: end.inInterface}),
                source: end.source,
                destination: end.destination,
                protocol,
                sourcePort: 50000,
                destinationPort: port,
                state: 'NEW',
              };
              const flow = {
                destination: entry.destination,
                source: sourceName,
                ...(sourceName === INTERNET ? {} : {sourceAddress: end.source}),
                family: end.family,
                protocol,
                port,
                range,
              };
              if (ruleset && ruleset.tables.length > 0) {
                const decision = evaluateNft(ruleset, packet);
                if (decision.outcome !== 'pass' && decision.by) {
                  drops.push({...flow, outcome: decision.outcome, table: decision.by.table, manager: tableOwner(decision.by.table), where: where(decision)});
                }
              }
              const ufwFamily = ufwRules?.[end.family];
              if (ufwFamily) {
                const decision = evaluate(ufwFamily, packet);
                if (decision.verdict !== 'ACCEPT') {
                  const by = decision.decidedBy;
                  const place = by.kind === 'policy' ? `the ${by.policy} policy of INPUT (ufw's default)` : `rule ${by.index + 1} of ${by.chain}`;
                  drops.push({...flow, outcome: 'drop', table: UFW_TABLE, manager: 'ufw', where: place});
                } else if (decision.uncertain.some(mayTakeAway)) {
                  const first = decision.uncertain.find(mayTakeAway) as Uncertainty;
                  drops.push({...flow, outcome: 'may-drop', table: UFW_TABLE, manager: 'ufw', where: `rule ${first.index + 1} of ${first.chain} (may drop: ${first.reason})`});
                }
              }
            }
          }
        }
      }
    }
  }
  return drops;
}

interface End {
  readonly family: Family;
  readonly source: string;
  readonly destination: string;
  readonly inInterface?: string;
}

/** One source and destination address per family, on the side the flow takes. */
function endsOf(sourceName: string, destination: FleetHost, byName: ReadonlyMap<string, FleetHost>): End[] {
  const ends: End[] = [];
  const source = byName.get(sourceName);
  let side: 'public' | 'private';
  let sourceAddresses: readonly string[];
  if (sourceName === INTERNET) {
    side = 'public';
    sourceAddresses = [INTERNET_ADDRESS[4], INTERNET_ADDRESS[6]];
  } else if (source) {
    const path = fleetPath(source, destination);
    side = path.side;
    sourceAddresses = path.fromAddresses;
  } else {
    return ends; // a CIDR or another label: the access summary names hosts and the internet only
  }
  const inInterface = destination.facts.interfaces[side];
  for (const family of [4, 6] as const) {
    const from = sourceAddresses.find((address) => familyOf(address) === family);
    const to = destination.facts.addresses[side].find((address) => familyOf(address) === family);
    if (from && to) ends.push({family, source: from, destination: to, ...(inInterface === undefined ? {} : {inInterface})});
  }
  return ends;
}

/** One line per destination and table: "wordpress-1: firewalld (table inet firewalld) drops tcp/80 from haproxy-www (IPv4, IPv6) …". */
export function formatNativeDrops(drops: readonly NativeDrop[]): string[] {
  const groups = new Map<string, NativeDrop[]>();
  for (const drop of drops) {
    const key = `${drop.destination}\0${drop.table}`;
    groups.set(key, [...(groups.get(key) ?? []), drop]);
  }
  const lines: string[] = [];
  for (const group of groups.values()) {
    const first = group[0] as NativeDrop;
    // per source and port: the families and places; then sources whose ports share all that, on one line
    const perPort = new Map<string, {source: string; port: string; families: Set<Family>; where: Set<string>; may: boolean}>();
    for (const drop of group) {
      const key = `${drop.source}\0${drop.protocol}/${drop.port}`;
      const flow = perPort.get(key) ?? {source: drop.source, port: `${drop.protocol}/${drop.port}`, families: new Set<Family>(), where: new Set<string>(), may: false};
      flow.families.add(drop.family);
      flow.where.add(drop.where);
      flow.may ||= drop.outcome === 'may-drop';
      perPort.set(key, flow);
    }
    const lines2 = new Map<string, {source: string; ports: string[]; tail: string}>();
    for (const flow of perPort.values()) {
      const tail = `${[...flow.families].sort().map((family) => `IPv${family}`).join(', ')}${flow.may ? ', may drop' : ''}; ${[...flow.where].join(', ')}`;
      const key = `${flow.source}\0${tail}`;
      const line = lines2.get(key) ?? {source: flow.source, ports: [], tail};
      line.ports.push(flow.port);
      lines2.set(key, line);
    }
    const described = [...lines2.values()].map((line) => `${joinPorts(line.ports)} from ${line.source} (${line.tail})`);
    const label = first.manager === 'ufw' ? 'ufw (iptables chains ufw-*/ufw6-*)' : `${first.manager} (table ${first.table})`;
    lines.push(`${first.destination}: ${label} drops what the plan opens: ${described.join('; ')}`);
  }
  return lines;
}

/** ["tcp/80", "tcp/443", "udp/53"] → "tcp/80,443 udp/53" */
function joinPorts(ports: readonly string[]): string {
  const byProtocol = new Map<string, string[]>();
  for (const port of ports) {
    const [protocol = '', number = ''] = port.split('/');
    byProtocol.set(protocol, [...(byProtocol.get(protocol) ?? []), number]);
  }
  return [...byProtocol].map(([protocol, numbers]) => `${protocol}/${numbers.join(',')}`).join(' ');
}
