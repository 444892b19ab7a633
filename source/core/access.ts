// Who can open connections to whom, read from the compiled RULES (not from the inventory),
// so the preview shows what the firewall will really do. Every port range is exact: the
// port space is cut at every boundary any rule mentions and one port per piece is evaluated.

import {evaluate, portCutPoints, type Decision, type Packet} from './evaluator.js';
import {formatAddress, parseAddress, type IpAddress} from './ip.js';
import type {CompiledHost, Family, HostFacts, PortRange, Protocol, Ruleset} from './model.js';
import {fleetPath} from './topology.js';

export interface FleetHost {
  readonly name: string;
  readonly facts: HostFacts;
  readonly compiled: CompiledHost;
}

/** Source label for anyone on the internet (a representative outside address on the public interface). */
export const INTERNET = 'internet';
/** Source label for a machine on the shared private network that is not in the fleet. */
export const PRIVATE_TENANTS = 'other tenants on the private network';

/** Representative outside addresses (benchmarking / documentation ranges, never a fleet host). */
export const INTERNET_ADDRESS: Record<Family, string> = {4: '198.18.0.1', 6: '2001:db8:ffff::1'};
/** The ephemeral source port the representative connections come from. */
export const EPHEMERAL_PORT = 50000;

const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];
const FAMILIES: readonly Family[] = [4, 6];

/** One source → destination, family and protocol: the destination ports a NEW connection gets through. */
export interface AccessCell {
  readonly source: string;
  readonly destination: string;
  readonly family: Family;
  readonly protocol: Protocol;
  readonly ports: readonly PortRange[];
  /** Rules that could not be judged on the way (assumed not to match). */
  readonly uncertain: readonly string[];
}

/** A source's route to a destination in one family: what a packet looks like on the way. */
interface Route {
  readonly source: string;
  readonly family: Family;
  readonly sourceAddress: string;
  readonly destinationAddress: string;
  readonly inInterface: string;
  /** Present when the source is a fleet host: its OUTPUT must let the packet out too. */
  readonly sender?: {readonly ruleset: Ruleset; readonly outInterface?: string};
}

function firstOfFamily(addresses: readonly string[], family: Family): string | undefined {
  return addresses.find((address) => parseAddress(address)?.family === family);
}

function allOfFamily(addresses: readonly string[], family: Family): string[] {
  return addresses.filter((address) => parseAddress(address)?.family === family);
}

/**
 * An address in the same /24 (IPv4) or /64 (IPv6) as `near` that no fleet host uses:
 * a neighbour on the shared private network that is not ours.
 */
export function tenantAddress(near: string, taken: ReadonlySet<string>): string | undefined {
  const address = parseAddress(near);
  if (!address) return undefined;
  const hostBits = address.family === 4 ? 8n : 64n;
  const network = (address.value >> hostBits) << hostBits;
  const top = (1n << hostBits) - 2n; // skip the all-ones host (IPv4 broadcast)
  for (let offset = top; offset > top - 64n; offset -= 1n) {
    const candidate = formatAddress({family: address.family, value: network + offset} satisfies IpAddress);
    if (!taken.has(candidate)) return candidate;
  }
  return undefined;
}

function fleetAddresses(hosts: readonly FleetHost[]): Set<string> {
  const taken = new Set<string>();
  for (const host of hosts) {
    for (const address of [...host.facts.addresses.public, ...host.facts.addresses.private]) {
      const parsed = parseAddress(address);
      if (parsed) taken.add(formatAddress(parsed));
    }
  }
  return taken;
}

function rulesetOf(host: FleetHost, family: Family): Ruleset {
  return family === 4 ? host.compiled.v4 : host.compiled.v6;
}

function routesTo(destination: FleetHost, hosts: readonly FleetHost[], taken: ReadonlySet<string>): Route[] {
  const routes: Route[] = [];
  const {interfaces, addresses} = destination.facts;
  for (const family of FAMILIES) {
    if (interfaces.public === undefined) continue;
    for (const publicAddress of allOfFamily(addresses.public, family)) {
      routes.push({source: INTERNET, family, sourceAddress: INTERNET_ADDRESS[family], destinationAddress: publicAddress, inInterface: interfaces.public});
    }
  }
  for (const source of hosts) {
    if (source.name === destination.name) continue;
    const path = fleetPath(source, destination);
    if (path.toInterface === undefined) continue;
    for (const family of FAMILIES) {
      // Every address pair: the kernel picks one, and the summary must hold whichever it is.
      for (const sourceAddress of allOfFamily(path.fromAddresses, family)) {
        for (const destinationAddress of allOfFamily(path.toAddresses, family)) {
          routes.push({
            source: source.name,
            family,
            sourceAddress,
            destinationAddress,
            inInterface: path.toInterface,
            sender: {ruleset: rulesetOf(source, family), ...(path.fromInterface === undefined ? {} : {outInterface: path.fromInterface})},
          });
        }
      }
    }
  }
  for (const family of FAMILIES) {
    const privateAddress = firstOfFamily(addresses.private, family);
    if (interfaces.private === undefined || privateAddress === undefined) continue;
    const tenant = tenantAddress(privateAddress, taken);
    if (tenant === undefined) continue;
    for (const destinationAddress of allOfFamily(addresses.private, family)) {
      routes.push({source: PRIVATE_TENANTS, family, sourceAddress: tenant, destinationAddress, inInterface: interfaces.private});
    }
  }
  return routes;
}

/** Merges sorted, possibly adjacent ranges. */
function mergeRanges(ranges: readonly PortRange[]): PortRange[] {
  const merged: PortRange[] = [];
  for (const range of [...ranges].sort((a, b) => a.first - b.first)) {
    const last = merged[merged.length - 1];
    if (last && range.first <= last.last + 1) merged[merged.length - 1] = {first: last.first, last: Math.max(last.last, range.last)};
    else merged.push(range);
  }
  return merged;
}

function uncertaintyNotes(host: string, decision: Decision): string[] {
  return decision.uncertain.map((item) => `${host}: rule ${item.index + 1} of ${item.chain}: ${item.reason}`);
}

/**
 * The NEW connections that get through on one route, per protocol: the destination's INPUT
 * must accept it, the sender's OUTPUT (fleet hosts) must let it out, and the replies must
 * get back (destination OUTPUT, sender INPUT, as ESTABLISHED).
 */
function portsOnRoute(route: Route, destination: FleetHost, protocol: Protocol): {ports: PortRange[]; uncertain: string[]} {
  const inbound = rulesetOf(destination, route.family);
  const cuts = new Set(portCutPoints(inbound, protocol));
  if (route.sender) for (const cut of portCutPoints(route.sender.ruleset, protocol)) cuts.add(cut);
  const points = [...cuts].sort((a, b) => a - b);
  const ports: PortRange[] = [];
  const uncertain = new Set<string>();
  const check = (host: string, ruleset: Ruleset, packet: Packet): boolean => {
    const decision = evaluate(ruleset, packet);
    for (const note of uncertaintyNotes(host, decision)) uncertain.add(note);
    return decision.verdict === 'ACCEPT';
  };
  for (let index = 0; index + 1 < points.length; index += 1) {
    const first = points[index] as number;
    const last = (points[index + 1] as number) - 1;
    const request = {
      source: route.sourceAddress,
      destination: route.destinationAddress,
      protocol,
      sourcePort: EPHEMERAL_PORT,
      destinationPort: first,
    } as const;
    const reply = {
      source: route.destinationAddress,
      destination: route.sourceAddress,
      protocol,
      sourcePort: first,
      destinationPort: EPHEMERAL_PORT,
      state: 'ESTABLISHED',
    } as const;
    const senderName = route.source;
    const works =
      (!route.sender || check(senderName, route.sender.ruleset, {...request, chain: 'OUTPUT', state: 'NEW', ...outOf(route.sender.outInterface)})) &&
      check(destination.name, inbound, {...request, chain: 'INPUT', state: 'NEW', inInterface: route.inInterface}) &&
      check(destination.name, inbound, {...reply, chain: 'OUTPUT', outInterface: route.inInterface}) &&
      (!route.sender || check(senderName, route.sender.ruleset, {...reply, chain: 'INPUT', ...inOf(route.sender.outInterface)}));
    if (works) ports.push({first, last});
  }
  return {ports: mergeRanges(ports), uncertain: [...uncertain]};
}

function outOf(name: string | undefined): {outInterface?: string} {
  return name === undefined ? {} : {outInterface: name};
}
function inOf(name: string | undefined): {inInterface?: string} {
  return name === undefined ? {} : {inInterface: name};
}

/**
 * The raw matrix: for every destination host, every source (internet, each other fleet
 * host, other private-network tenants), each family with a route and each protocol, the
 * destination ports open to NEW connections. Cells with no open port are included. When a
 * host has several addresses on a side, a cell holds the ports open between every pair
 * (and notes the pairs that differ).
 */
export function accessMatrix(hosts: readonly FleetHost[]): AccessCell[] {
  const taken = fleetAddresses(hosts);
  const cells: AccessCell[] = [];
  for (const destination of hosts) {
    const routes = routesTo(destination, hosts, taken);
    for (const protocol of PROTOCOLS) {
      const byKey = new Map<string, {source: string; family: Family; ports: PortRange[]; uncertain: string[]; first: Route}>();
      for (const route of routes) {
        const {ports, uncertain} = portsOnRoute(route, destination, protocol);
        const key = `${route.source}|${route.family}`;
        const cell = byKey.get(key);
        if (!cell) {
          byKey.set(key, {source: route.source, family: route.family, ports, uncertain, first: route});
          continue;
        }
        const common = intersect(cell.ports, ports);
        if (formatPorts(protocol, common) !== formatPorts(protocol, cell.ports) || formatPorts(protocol, common) !== formatPorts(protocol, ports)) {
          cell.uncertain.push(
            `${destination.name}: ${protocol} from ${route.source} differs between addresses (${cell.first.sourceAddress} -> ${cell.first.destinationAddress} vs ${route.sourceAddress} -> ${route.destinationAddress}); only what all allow is shown`,
          );
        }
        cell.ports = common;
        for (const note of uncertain) if (!cell.uncertain.includes(note)) cell.uncertain.push(note);
      }
      for (const cell of byKey.values()) {
        cells.push({source: cell.source, destination: destination.name, family: cell.family, protocol, ports: cell.ports, uncertain: cell.uncertain});
      }
    }
  }
  return cells;
}

/** One line of the summary: these sources reach this destination on these ports. */
export interface AccessEntry {
  readonly destination: string;
  readonly sources: readonly string[];
  readonly tcp: readonly PortRange[];
  readonly udp: readonly PortRange[];
  /** Set when the access holds in one family only while the route exists in both. */
  readonly only?: Family;
  readonly uncertain: readonly string[];
}

function intersect(a: readonly PortRange[], b: readonly PortRange[]): PortRange[] {
  const result: PortRange[] = [];
  for (const left of a) {
    for (const right of b) {
      const first = Math.max(left.first, right.first);
      const last = Math.min(left.last, right.last);
      if (first <= last) result.push({first, last});
    }
  }
  return mergeRanges(result);
}

function subtract(a: readonly PortRange[], b: readonly PortRange[]): PortRange[] {
  let remaining = [...a];
  for (const cut of b) {
    remaining = remaining.flatMap((range) => {
      if (cut.last < range.first || cut.first > range.last) return [range];
      const pieces: PortRange[] = [];
      if (range.first < cut.first) pieces.push({first: range.first, last: cut.first - 1});
      if (range.last > cut.last) pieces.push({first: cut.last + 1, last: range.last});
      return pieces;
    });
  }
  return remaining;
}

export function formatPorts(protocol: Protocol, ranges: readonly PortRange[]): string {
  if (ranges.length === 1 && ranges[0]?.first === 1 && ranges[0].last === 65535) return `${protocol}/all`;
  return `${protocol}/${ranges.map((range) => (range.first === range.last ? `${range.first}` : `${range.first}-${range.last}`)).join(',')}`;
}

/** Groups the matrix into readable entries: per destination, sources with identical ports share a line. */
export function summarizeAccess(hosts: readonly FleetHost[]): AccessEntry[] {
  return summarizeMatrix(accessMatrix(hosts), hosts.map((host) => host.name));
}

/** The same grouping, from a matrix already computed (the caller may want both). */
export function summarizeMatrix(cells: readonly AccessCell[], hostOrder: readonly string[]): AccessEntry[] {
  const sourceRank = (source: string): number =>
    source === INTERNET ? -1 : source === PRIVATE_TENANTS ? hostOrder.length : hostOrder.indexOf(source);
  const entries: (AccessEntry & {key: string})[] = [];
  for (const destination of hostOrder) {
    const sources = [...new Set(cells.filter((cell) => cell.destination === destination).map((cell) => cell.source))].sort(
      (a, b) => sourceRank(a) - sourceRank(b),
    );
    for (const source of sources) {
      const mine = cells.filter((cell) => cell.destination === destination && cell.source === source);
      const portsOf = (family: Family, protocol: Protocol): PortRange[] | undefined => {
        const cell = mine.find((candidate) => candidate.family === family && candidate.protocol === protocol);
        return cell ? [...cell.ports] : undefined;
      };
      const uncertain = [...new Set(mine.flatMap((cell) => cell.uncertain))];
      const families = FAMILIES.filter((family) => mine.some((cell) => cell.family === family));
      const parts: {only?: Family; tcp: PortRange[]; udp: PortRange[]}[] = [];
      if (families.length === 2) {
        const pick = (protocol: Protocol) => ({v4: portsOf(4, protocol) ?? [], v6: portsOf(6, protocol) ?? []});
        const tcp = pick('tcp');
        const udp = pick('udp');
        parts.push({tcp: intersect(tcp.v4, tcp.v6), udp: intersect(udp.v4, udp.v6)});
        parts.push({only: 4, tcp: subtract(tcp.v4, tcp.v6), udp: subtract(udp.v4, udp.v6)});
        parts.push({only: 6, tcp: subtract(tcp.v6, tcp.v4), udp: subtract(udp.v6, udp.v4)});
      } else if (families.length === 1) {
        const family = families[0] as Family;
        parts.push({tcp: portsOf(family, 'tcp') ?? [], udp: portsOf(family, 'udp') ?? []});
      }
      for (const part of parts) {
        if (part.tcp.length === 0 && part.udp.length === 0) continue;
        const key = `${part.only ?? ''}|${formatPorts('tcp', part.tcp)}|${formatPorts('udp', part.udp)}`;
        const existing = entries.find((entry) => entry.destination === destination && entry.key === key);
        if (existing) {
          (existing.sources as string[]).push(source);
          (existing.uncertain as string[]).push(...uncertain.filter((note) => !existing.uncertain.includes(note)));
        } else {
          entries.push({destination, sources: [source], tcp: part.tcp, udp: part.udp, ...(part.only ? {only: part.only} : {}), uncertain: [...uncertain], key});
        }
      }
    }
  }
  return entries.map(({key: _key, ...entry}) => entry);
}

/** `internet → haproxy-www tcp/80,443`, `wordpress-1, wordpress-2 → mysql-1 tcp/3306 (IPv4 only)`. */
export function formatAccess(entries: readonly AccessEntry[]): string[] {
  return entries.map((entry) => {
    const ports = [
      ...(entry.tcp.length > 0 ? [formatPorts('tcp', entry.tcp)] : []),
      ...(entry.udp.length > 0 ? [formatPorts('udp', entry.udp)] : []),
    ].join(' ');
    return `${entry.sources.join(', ')} → ${entry.destination} ${ports}${entry.only ? ` (IPv${entry.only} only)` : ''}`;
  });
}
