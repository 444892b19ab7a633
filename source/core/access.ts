// Who can open connections to whom, read from the compiled RULES (not from the inventory),
// so the preview shows what the firewall will really do. Every port range is exact: the
// port space is cut at every boundary any rule mentions and one port per piece is evaluated.

import {evaluate, mayReportUncertainty, portCutPoints, type Decision, type Packet} from './evaluator.js';
import {setOfSpec, type AddressSet} from './address-sets.js';
import {groupedRules} from './compiler.js';
import {acceptedPortsOf, chainViewAt, EVERY_ADDRESS, intersectPorts, matchedNetworks, portSetToRanges, subtractPorts, viewsDefined, type ChainView, type PortSet} from './port-sets.js';
import {formatAddress, isHostNetwork, networkContains, parseAddress, parseNetwork, valueKey, type IpAddress, type IpNetwork} from './ip.js';
import type {CompiledHost, Family, HostFacts, PortRange, Protocol, Ruleset} from './model.js';
import {canonicalAddress} from './addresses.js';
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

/**
 * One end of a route in the fleet: a host's address (parsed once), its ruleset in that family
 * and the interface the packet crosses there. The port-set views asked at this end are kept on
 * it: every route through the address shares them.
 */
class RouteEnd {
  private canonical: string | undefined;
  /** By kind and protocol (VIEW_SLOTS); undefined: not asked yet, null: not defined. */
  private readonly views: (ChainView | null | undefined)[] = [undefined, undefined, undefined, undefined, undefined, undefined, undefined, undefined];
  private definedTcp: boolean | undefined;
  private definedUdp: boolean | undefined;

  constructor(
    readonly ruleset: Ruleset,
    readonly iface: string | undefined,
    /** The address as the host's facts spell it. */
    readonly text: string,
    /** `text` read (ends are made for readable addresses only). */
    readonly address: IpAddress,
  ) {}

  /** The address as the fleet path spells it (canonical; topology.ts). Only routes walked cell by cell need it. */
  get canonicalText(): string {
    return (this.canonical ??= canonicalAddress(this.text) ?? this.text);
  }

  view(kind: RouteViewKind, protocol: Protocol): ChainView | undefined {
    const slot = VIEW_SLOTS[kind] + (protocol === 'udp' ? 1 : 0);
    let view = this.views[slot];
    if (view === undefined) {
      view = (this.address && chainViewAt(this.ruleset, kind, protocol, this.iface, this.address, EPHEMERAL_PORT)) ?? null;
      this.views[slot] = view;
    }
    return view ?? undefined;
  }

  /** viewsDefined for this end's ruleset. */
  viewsDefined(protocol: Protocol): boolean {
    if (protocol === 'tcp') return (this.definedTcp ??= viewsDefined(this.ruleset, 'tcp'));
    return (this.definedUdp ??= viewsDefined(this.ruleset, 'udp'));
  }
}

type RouteViewKind = 'request-in' | 'reply-out' | 'request-out' | 'reply-in';
const VIEW_SLOTS: Readonly<Record<RouteViewKind, number>> = {'request-in': 0, 'reply-out': 2, 'request-out': 4, 'reply-in': 6};

/**
 * The route ends of every host, built once per matrix: per host, side and family, one end per
 * address of the family on that side, in the order of the host's list.
 */
class RouteEnds {
  /** By host index (the fleet's order): asked for several times per destination. */
  private readonly ends: (readonly (readonly RouteEnd[])[] | undefined)[];

  constructor(readonly hosts: readonly FleetHost[]) {
    this.ends = new Array<undefined>(hosts.length).fill(undefined);
  }

  of(hostIndex: number, side: 'public' | 'private', family: Family): readonly RouteEnd[] {
    return this.allOf(hostIndex)[(side === 'public' ? 0 : 2) + (family === 4 ? 0 : 1)] as readonly RouteEnd[];
  }

  /** A host's ends by side and family (public IPv4, public IPv6, private IPv4, private IPv6). */
  allOf(hostIndex: number): readonly (readonly RouteEnd[])[] {
    return (this.ends[hostIndex] ??= endsOfHost(this.hosts[hostIndex] as FleetHost));
  }
}

const NO_ENDS: readonly RouteEnd[] = Object.freeze([]);

/** RouteEnds' slots for one host: each address read once (a large fleet's reads are cache look-ups that add up). */
function endsOfHost(host: FleetHost): readonly (readonly RouteEnd[])[] {
  const slots: (readonly RouteEnd[])[] = [NO_ENDS, NO_ENDS, NO_ENDS, NO_ENDS];
  for (let sideIndex = 0; sideIndex < 2; sideIndex += 1) {
    const side = sideIndex === 0 ? 'public' : 'private';
    const iface = host.facts.interfaces[side];
    for (const text of host.facts.addresses[side]) {
      const address = parseAddress(text);
      if (!address) continue;
      const slot = sideIndex * 2 + (address.family === 4 ? 0 : 1);
      const end = new RouteEnd(rulesetOf(host, address.family), iface, text, address);
      // (Most sides have one address per family: a list of its own length.)
      if ((slots[slot] as readonly RouteEnd[]).length === 0) slots[slot] = [end];
      else (slots[slot] as RouteEnd[]).push(end);
    }
  }
  return slots;
}

/** A destination's end of a route: the packet always comes in by a known interface. */
type ReceivingEnd = RouteEnd & {readonly iface: string};

/** A source's route to a destination in one family: what a packet looks like on the way. */
interface Route {
  readonly source: string;
  readonly family: Family;
  readonly sourceAddress: string;
  readonly sourceIp: IpAddress | undefined;
  readonly destinationAddress: string;
  /** The destination's end: its address on the route, ruleset and the interface the packet comes in by. */
  readonly receiving: ReceivingEnd;
  /** Present when the source is a fleet host: its OUTPUT must let the packet out too. */
  readonly sending?: RouteEnd;
  /** portsOnRoute's answers, once computed (the representatives' routes are asked twice). */
  answers?: {tcp?: RouteAnswer; udp?: RouteAnswer};
}

/**
 * An address in the same /24 (IPv4) or /64 (IPv6) as `near` that no fleet host uses:
 * a neighbour on the shared private network that is not ours.
 */
// Every host of a private network asks for the same neighbour: found once per network and fleet.
// (Also by the address asked about, which each host asks with again and again.)
const tenantCache = new WeakMap<ReadonlySet<string>, {byNetwork: Map<string, string | undefined>; byNear: Map<string, string | undefined>}>();

export function tenantAddress(near: string, taken: ReadonlySet<string>): string | undefined {
  let known = tenantCache.get(taken);
  if (!known) tenantCache.set(taken, (known = {byNetwork: new Map(), byNear: new Map()}));
  if (known.byNear.has(near)) return known.byNear.get(near);
  const address = parseAddress(near);
  if (!address) return undefined;
  const hostBits = address.family === 4 ? 8n : 64n;
  const network = (address.value >> hostBits) << hostBits;
  const key = `${address.family}/${network.toString(16)}`;
  let found: string | undefined;
  if (known.byNetwork.has(key)) found = known.byNetwork.get(key);
  else {
    const tenant = findTenant(address.family, network, hostBits, (candidate) => taken.has(formatAddress(candidate)));
    known.byNetwork.set(key, (found = tenant && formatAddress(tenant)));
  }
  known.byNear.set(near, found);
  return found;
}

/**
 * The first address down from the top of the network (the all-ones host skipped) that is not
 * taken; only the top 64 are tried.
 */
function findTenant(family: Family, network: bigint, hostBits: bigint, isTaken: (candidate: IpAddress) => boolean): IpAddress | undefined {
  const top = (1n << hostBits) - 2n; // skip the all-ones host (IPv4 broadcast)
  for (let offset = top; offset > top - 64n; offset -= 1n) {
    const candidate: IpAddress = {family, value: network + offset};
    if (!isTaken(candidate)) return candidate;
  }
  return undefined;
}

function fleetAddresses(hosts: readonly FleetHost[]): Set<string> {
  const taken = new Set<string>();
  for (const host of hosts) {
    for (const side of [host.facts.addresses.public, host.facts.addresses.private]) {
      for (const address of side) {
        // (A zone index, `fe80::1%eth1`, is not part of the address.)
        const canonical = canonicalAddress(address.includes('%') ? (address.split('%')[0] ?? '') : address);
        if (canonical !== undefined) taken.add(canonical);
      }
    }
  }
  return taken;
}

/** Could evaluating this ruleset note an unjudgeable rule? (Defined views cannot; else the evaluator's own check.) */
function mayNote(ruleset: Ruleset, protocol: Protocol): boolean {
  return !viewsDefined(ruleset, protocol) && mayReportUncertainty(ruleset, protocol);
}

function rulesetOf(host: FleetHost, family: Family): Ruleset {
  // The grouped rules where the compiler made them (a rule per group of peers: read per set).
  const grouped = groupedRules(host.compiled);
  // As packets from other addresses meet them (no `! -s OWN`: hosts differing only by OWN share
  // them): the summary sends nothing from a host's own addresses but from the internet's
  // representative, which only an odd inventory gives a host.
  const rules = grouped ? (holdsInternetAddress(host) ? grouped : grouped.fromOthers) : host.compiled;
  return family === 4 ? rules.v4 : rules.v6;
}

const holdsInternet = new WeakMap<FleetHost, boolean>();

function holdsInternetAddress(host: FleetHost): boolean {
  let holds = holdsInternet.get(host);
  if (holds === undefined) {
    holds = false;
    for (const side of ['public', 'private'] as const) {
      for (const text of host.facts.addresses[side]) {
        const address = parseAddress(text);
        if (address && address.value === INTERNET_IP[address.family]?.value) holds = true;
      }
    }
    holdsInternet.set(host, holds);
  }
  return holds;
}

const INTERNET_IP: Readonly<Record<Family, IpAddress | undefined>> = {4: parseAddress(INTERNET_ADDRESS[4]), 6: parseAddress(INTERNET_ADDRESS[6])};

/** The internet representative to each public address of the destination. */
function internetRoutes(ends: RouteEnds, destinationIndex: number): Route[] {
  const routes: Route[] = [];
  if ((ends.hosts[destinationIndex] as FleetHost).facts.interfaces.public === undefined) return routes;
  for (const family of FAMILIES) {
    for (const receiving of ends.of(destinationIndex, 'public', family)) {
      routes.push({
        source: INTERNET,
        family,
        sourceAddress: INTERNET_ADDRESS[family],
        sourceIp: INTERNET_IP[family],
        destinationAddress: receiving.text,
        receiving: receiving as ReceivingEnd,
      });
    }
  }
  return routes;
}

/** A fleet host to the destination over their fleet path, every address pair in each family. */
function fleetRoutes(ends: RouteEnds, sourceIndex: number, destinationIndex: number): Route[] {
  const routes: Route[] = [];
  const source = ends.hosts[sourceIndex] as FleetHost;
  const path = fleetPath(source, ends.hosts[destinationIndex] as FleetHost);
  if (path.toInterface === undefined) return routes;
  for (const family of FAMILIES) {
    // Every address pair: the kernel picks one, and the summary must hold whichever it is.
    // (Spelled as the path spells them: path.fromAddresses and toAddresses.)
    for (const sending of ends.of(sourceIndex, path.side, family)) {
      for (const receiving of ends.of(destinationIndex, path.side, family)) {
        routes.push({
          source: source.name,
          family,
          sourceAddress: sending.canonicalText,
          sourceIp: sending.address,
          destinationAddress: receiving.canonicalText,
          receiving: receiving as ReceivingEnd,
          sending,
        });
      }
    }
  }
  return routes;
}

/** Another tenant of the private network (an address no fleet host uses) to each private address. */
function tenantRoutes(ends: RouteEnds, destinationIndex: number, taken: ReadonlySet<string>): Route[] {
  const routes: Route[] = [];
  const {interfaces} = (ends.hosts[destinationIndex] as FleetHost).facts;
  for (const family of FAMILIES) {
    const privateAddress = ends.of(destinationIndex, 'private', family)[0]?.text; // (the first of the family)
    if (interfaces.private === undefined || privateAddress === undefined) continue;
    const tenant = tenantAddress(privateAddress, taken);
    if (tenant === undefined) continue;
    const tenantIp = parseAddress(tenant);
    for (const receiving of ends.of(destinationIndex, 'private', family)) {
      routes.push({source: PRIVATE_TENANTS, family, sourceAddress: tenant, sourceIp: tenantIp, destinationAddress: receiving.text, receiving: receiving as ReceivingEnd});
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
function portsOnRoute(route: Route, destination: FleetHost, protocol: Protocol, plain = false): RouteAnswer {
  // (Only the representatives' routes are asked twice: closedFor, then their cells.)
  if (!plain && route.sending === undefined) {
    const known = route.answers?.[protocol];
    if (known) return known;
    const answer = portsOnRouteUncached(route, destination, protocol, false);
    (route.answers ??= {})[protocol] = answer;
    return answer;
  }
  return portsOnRouteUncached(route, destination, protocol, plain);
}

/** The ports a route lets through in one protocol, and what could not be judged on the way. */
interface RouteAnswer {
  readonly ports: PortRange[];
  readonly uncertain: readonly string[];
}

const NO_NOTES: readonly string[] = Object.freeze([]);

function portsOnRouteUncached(route: Route, destination: FleetHost, protocol: Protocol, plain: boolean): RouteAnswer {
  if (!plain) {
    const ports = viewPortsOnRoute(route, protocol);
    if (ports) return {ports, uncertain: NO_NOTES};
  }
  const inbound = route.receiving.ruleset;
  const sender = route.sending;
  const destinationAddress = route.destinationAddress;
  const inInterface = route.receiving.iface;
  const points = routeCutPoints(inbound, sender?.ruleset, protocol);
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
      destination: destinationAddress,
      protocol,
      sourcePort: EPHEMERAL_PORT,
      destinationPort: first,
    } as const;
    const reply = {
      source: destinationAddress,
      destination: route.sourceAddress,
      protocol,
      sourcePort: first,
      destinationPort: EPHEMERAL_PORT,
      state: 'ESTABLISHED',
    } as const;
    const senderName = route.source;
    const works =
      (!sender || check(senderName, sender.ruleset, {...request, chain: 'OUTPUT', state: 'NEW', ...outOf(sender.iface)})) &&
      check(destination.name, inbound, {...request, chain: 'INPUT', state: 'NEW', inInterface}) &&
      check(destination.name, inbound, {...reply, chain: 'OUTPUT', outInterface: inInterface}) &&
      (!sender || check(senderName, sender.ruleset, {...reply, chain: 'INPUT', ...inOf(sender.iface)}));
    if (works) ports.push({first, last});
  }
  return {ports: mergeRanges(ports), uncertain: [...uncertain]};
}

/**
 * portsOnRoute through port-set views (port-sets.ts): the same four checks, each answered for
 * every port at once. Undefined when a ruleset has a rule the views do not model (the caller
 * then walks the evaluator, which notes what it cannot judge).
 */
function viewPortsOnRoute(route: Route, protocol: Protocol): PortRange[] | undefined {
  const {receiving, sending} = route;
  // (Both addresses are of the route's family: the lists are split by family.)
  const sourceIp = route.sourceIp as IpAddress;
  const destinationIp = receiving.address as IpAddress;
  // When every view is sure to exist, stop at the first check that closes everything (the
  // destination's INPUT usually does); otherwise fetch them all first, so that an unreadable
  // ruleset sends the route to the evaluator (which notes what it cannot judge).
  if (receiving.viewsDefined(protocol) && (!sending || sending.viewsDefined(protocol))) {
    return portSetToRanges(definedViewPorts(receiving, sending, sourceIp, protocol));
  }
  const requestIn = receiving.view('request-in', protocol);
  const replyOut = receiving.view('reply-out', protocol);
  const requestOut = sending?.view('request-out', protocol);
  const replyIn = sending?.view('reply-in', protocol);
  if (!requestIn || !replyOut || (sending && (!requestOut || !replyIn))) return undefined;
  let ports = acceptedPortsOf(requestIn, sourceIp);
  if (ports.length > 0) ports = intersectPorts(ports, acceptedPortsOf(replyOut, sourceIp));
  if (requestOut && ports.length > 0) ports = intersectPorts(ports, acceptedPortsOf(requestOut, destinationIp));
  if (replyIn && ports.length > 0) ports = intersectPorts(ports, acceptedPortsOf(replyIn, destinationIp));
  return portSetToRanges(ports);
}

/**
 * The four checks of a route through views, for ends whose views are all defined (viewsDefined)
 * and whose addresses are read: stops at the first check that closes everything.
 */
function definedViewPorts(receiving: RouteEnd, sending: RouteEnd | undefined, sourceIp: IpAddress, protocol: Protocol): PortSet {
  let ports = acceptedPortsOf(receiving.view('request-in', protocol) as ChainView, sourceIp);
  if (ports.length > 0) ports = intersectPorts(ports, acceptedPortsOf(receiving.view('reply-out', protocol) as ChainView, sourceIp));
  if (!sending) return ports;
  const destinationIp = receiving.address as IpAddress;
  if (ports.length > 0) ports = intersectPorts(ports, acceptedPortsOf(sending.view('request-out', protocol) as ChainView, destinationIp));
  if (ports.length > 0) ports = intersectPorts(ports, acceptedPortsOf(sending.view('reply-in', protocol) as ChainView, destinationIp));
  return ports;
}

const cutsByPair = new WeakMap<Ruleset, WeakMap<Ruleset, {tcp?: number[]; udp?: number[]}>>();
const cutsAlone = new WeakMap<Ruleset, {tcp?: number[]; udp?: number[]}>();

/** The destination's and the sender's port cut points together, sorted (the same pair recurs per address pair). */
function routeCutPoints(inbound: Ruleset, sender: Ruleset | undefined, protocol: Protocol): readonly number[] {
  let slot: {tcp?: number[]; udp?: number[]} | undefined;
  if (sender) {
    let bySender = cutsByPair.get(inbound);
    if (!bySender) cutsByPair.set(inbound, (bySender = new WeakMap()));
    slot = bySender.get(sender);
    if (!slot) bySender.set(sender, (slot = {}));
  } else {
    slot = cutsAlone.get(inbound);
    if (!slot) cutsAlone.set(inbound, (slot = {}));
  }
  let points = slot[protocol];
  if (!points) {
    const cuts = new Set(portCutPoints(inbound, protocol));
    if (sender) for (const cut of portCutPoints(sender, protocol)) cuts.add(cut);
    points = [...cuts].sort((a, b) => a - b);
    slot[protocol] = points;
  }
  return points;
}

function outOf(name: string | undefined): {outInterface?: string} {
  return name === undefined ? {} : {outInterface: name};
}
function inOf(name: string | undefined): {inInterface?: string} {
  return name === undefined ? {} : {inInterface: name};
}

export interface AccessMatrixOptions {
  /**
   * "indexed" (default): a fleet source that no rule of the destination can tell apart from the
   * representative on its side (internet or other tenants), while that representative gets
   * nothing, is known to get nothing without walking the rules, and a destination's INPUT is
   * walked once for all ports of a route. "all-pairs": every source is evaluated on its own,
   * port piece by port piece (the plain reference the tests compare with).
   */
  readonly method?: 'indexed' | 'all-pairs';
  /**
   * Leave out a source whose every cell to a destination is closed. The summary never shows
   * such a source, and a large fleet has hosts² of them.
   */
  readonly omitClosed?: boolean;
}

/** One source's routes to the destination, and (indexed) which of its families are known closed. */
interface SourceGroup {
  readonly routes: readonly Route[];
  readonly knownClosed?: (family: Family, protocol: Protocol) => boolean;
}

interface PendingCell {
  readonly source: string;
  readonly family: Family;
  ports: PortRange[];
  readonly uncertain: string[];
  readonly first: Route;
}

/** A source's cells for one protocol, one per family with a route, in route order. */
function cellsOfGroup(group: SourceGroup, destination: FleetHost, protocol: Protocol, plain: boolean): PendingCell[] {
  const cells: PendingCell[] = []; // at most one per family, in route order
  for (const route of group.routes) {
    const cell = cells.find((candidate) => candidate.family === route.family);
    if (group.knownClosed?.(route.family, protocol)) {
      if (!cell) cells.push({source: route.source, family: route.family, ports: [], uncertain: [], first: route});
      continue;
    }
    const {ports, uncertain} = portsOnRoute(route, destination, protocol, plain);
    if (!cell) {
      // (A copy of the notes: the cell collects more, and the route keeps its answer.)
      cells.push({source: route.source, family: route.family, ports, uncertain: [...uncertain], first: route});
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
  return cells;
}

/**
 * The raw matrix: for every destination host, every source (internet, each other fleet
 * host, other private-network tenants), each family with a route and each protocol, the
 * destination ports open to NEW connections. Cells with no open port are included (unless
 * `omitClosed`). When a host has several addresses on a side, a cell holds the ports open
 * between every pair (and notes the pairs that differ).
 */
export function accessMatrix(hosts: readonly FleetHost[], options: AccessMatrixOptions = {}): AccessCell[] {
  const cells: AccessCell[] = [];
  forEachDestination(hosts, options, (_destination, mine) => {
    for (const cell of mine) cells.push(cell);
  });
  return cells;
}

/** The matrix one destination at a time (its cells in matrix order), so a caller need not hold it all. */
function forEachDestination(
  hosts: readonly FleetHost[],
  options: AccessMatrixOptions,
  visit: (destination: FleetHost, cells: AccessCell[]) => void,
): void {
  const ends = new RouteEnds(hosts);
  const index = options.method === 'all-pairs' ? undefined : new FleetIndex(hosts, ends);
  const taken = index?.taken ?? fleetAddresses(hosts);
  for (const [destinationIndex, destination] of hosts.entries()) {
    const cells: AccessCell[] = [];
    const shortcut = index?.forDestination(destinationIndex);
    const groups: SourceGroup[] = [{routes: shortcut?.internetRoutes() ?? internetRoutes(ends, destinationIndex)}];
    const sources = options.omitClosed && shortcut ? shortcut.candidates() : hosts.keys();
    for (const sourceIndex of sources) {
      if (sourceIndex === destinationIndex) continue;
      const routes = fleetRoutes(ends, sourceIndex, destinationIndex);
      groups.push(shortcut ? {routes, knownClosed: (family, protocol) => shortcut.closed(sourceIndex, family, protocol)} : {routes});
    }
    groups.push({routes: shortcut?.tenantRoutes() ?? tenantRoutes(ends, destinationIndex, taken)});
    const byProtocol = PROTOCOLS.map((protocol) => groups.map((group) => cellsOfGroup(group, destination, protocol, index === undefined)));
    const omitted = groups.map((_group, groupIndex) =>
      options.omitClosed === true && byProtocol.every((perGroup) => (perGroup[groupIndex] ?? []).every((cell) => cell.ports.length === 0)),
    );
    for (const [protocolIndex, protocol] of PROTOCOLS.entries()) {
      for (const [groupIndex, groupCells] of (byProtocol[protocolIndex] ?? []).entries()) {
        if (omitted[groupIndex]) continue;
        for (const cell of groupCells) {
          cells.push({source: cell.source, destination: destination.name, family: cell.family, protocol, ports: cell.ports, uncertain: cell.uncertain});
        }
      }
    }
    visit(destination, cells);
  }
}

type Networks = readonly IpNetwork[] | 'unreadable';
const ADDRESS_OPTIONS = new Set(['-s', '--source', '--src', '-d', '--destination', '--dst']);
const networksCache = new WeakMap<Ruleset, Networks>();

/** Every address or network a ruleset's rules match on (either direction, negated or not). */
function rulesetNetworks(ruleset: Ruleset): Networks {
  let networks = networksCache.get(ruleset);
  if (networks !== undefined) return networks; // (asked several times per destination)
  networks = matchedNetworks(ruleset);
  if (networks !== undefined && networks.some((network) => network === EVERY_ADDRESS[network.family])) {
    // A set match: the addresses it can single out are its elements.
    const sets = new Set<AddressSet>();
    for (const table of ruleset.tables) for (const rule of table.rules) {
      const set = setOfSpec(rule.spec);
      if (set) sets.add(set);
    }
    networks = [...networks.filter((network) => network !== EVERY_ADDRESS[network.family]), ...[...sets].flatMap(setNetworks)];
  }
  if (networks === undefined) {
    const found: IpNetwork[] = [];
    const seen = new Set<string>();
    networks = found;
    for (const table of ruleset.tables) {
      if (table.name !== 'filter') continue;
      for (const rule of table.rules) {
        rule.spec.forEach((token, position) => {
          const text = rule.spec[position + 1];
          if (!ADDRESS_OPTIONS.has(token) || text === undefined || seen.has(text)) return;
          seen.add(text);
          const network = parseNetwork(text);
          if (network) found.push(network);
          else networks = 'unreadable';
        });
      }
    }
  }
  networksCache.set(ruleset, networks);
  return networks;
}

const setNetworksCache = new WeakMap<AddressSet, readonly IpNetwork[]>();

function setNetworks(set: AddressSet): readonly IpNetwork[] {
  let networks = setNetworksCache.get(set);
  if (!networks) {
    networks = set.elements.flatMap((element) => parseNetwork(element) ?? []);
    setNetworksCache.set(set, networks);
  }
  return networks;
}

function coveredBy(networks: Networks, address: IpAddress | undefined): boolean {
  if (networks === 'unreadable' || address === undefined) return true;
  for (const network of networks) if (networkContains(network, address)) return true;
  return false;
}

/** The views of a source's own rules a route asks (definedViewPorts). */
const SENDER_VIEWS: readonly RouteViewKind[] = ['request-out', 'reply-in'];

/** Fleet sources a destination's rules and their own cannot tell apart (FleetIndex.sourceClasses), in fleet order. */
interface SourceClass {
  readonly members: readonly number[];
  /** What the destination's sets call them: role names joined by "+", or "other hosts". */
  readonly label: string;
  /** Members read one by one all the same (several addresses in a family on the side). */
  readonly oneByOne: boolean;
}

const objectIds = new WeakMap<object, number>();
let nextObjectId = 0;

/** A small number naming an object (a set, a ruleset) in keys. */
function objectId(object: object): number {
  let id = objectIds.get(object);
  if (id === undefined) objectIds.set(object, (id = nextObjectId++));
  return id;
}

/** Who in the fleet each rule address can mean, built once per matrix. */
class FleetIndex {
  /** Hosts by address (valueKey), per family (IPv4, IPv6): the host's index when it is the only one (most addresses). */
  private readonly owners = [new Map<number | string, number | number[]>(), new Map<number | string, number | number[]>()] as const;
  private readonly coveredCache = new Map<string, readonly number[]>();
  private readonly coveredByNetwork = new WeakMap<IpNetwork, readonly number[]>();
  private readonly mentionedByNetworks = new WeakMap<readonly IpNetwork[], ReadonlySet<number>>();
  private readonly singledOutCache = new WeakMap<ReadonlySet<number>, Map<ReadonlySet<number>, readonly number[]>>();
  /** Hosts with a private interface, and the others (their fleet paths use the public side). */
  readonly withPrivate: number[] = [];
  readonly withoutPrivate: number[] = [];
  /** Hosts whose own rules could add notes as senders (then never taken as known closed). */
  readonly uncertainSenders = new Set<number>();
  private takenSpellings: ReadonlySet<string> | undefined;
  /** tenantNear's answers by network (null: none free). */
  private readonly tenants = new Map<number | string, IpAddress | null>();
  /** ownSignature's answers, by host and side. */
  private readonly ownSignatures: ({readonly text: string; readonly oneByOne: boolean; readonly addresses: readonly (IpAddress | undefined)[]} | undefined)[] = [];
  /** Every host's index, in fleet order. */
  private everyHost: readonly number[] | undefined;
  /** sourceClasses' partitions, by what they depend on. */
  private readonly classesByKey = new Map<string, readonly SourceClass[]>();

  constructor(
    readonly hosts: readonly FleetHost[],
    private readonly ends: RouteEnds,
  ) {
    for (let hostIndex = 0; hostIndex < hosts.length; hostIndex += 1) {
      const host = hosts[hostIndex] as FleetHost;
      // (The route ends hold every readable address of the host, read once.)
      for (const list of ends.allOf(hostIndex)) {
        for (const {address} of list) {
          const owners = this.owners[address.family === 4 ? 0 : 1];
          const key = valueKey(address);
          const hostsThere = owners.get(key);
          if (hostsThere === undefined) owners.set(key, hostIndex);
          else if (typeof hostsThere === 'number') owners.set(key, [hostsThere, hostIndex]);
          else hostsThere.push(hostIndex);
        }
      }
      (host.facts.interfaces.private === undefined ? this.withoutPrivate : this.withPrivate).push(hostIndex);
      if (mayNote(rulesetOf(host, 4), 'tcp') || mayNote(rulesetOf(host, 4), 'udp') || mayNote(rulesetOf(host, 6), 'tcp') || mayNote(rulesetOf(host, 6), 'udp')) {
        this.uncertainSenders.add(hostIndex);
      }
    }
  }

  /** Every fleet address, canonically spelled (fleetAddresses): only routes walked cell by cell need it. */
  get taken(): ReadonlySet<string> {
    return (this.takenSpellings ??= fleetAddresses(this.hosts));
  }

  /**
   * Does a fleet host use this address? The same answer as whether `taken` holds its spelling
   * (an address has one canonical spelling), without spelling it.
   */
  private owns(address: IpAddress): boolean {
    return this.owners[address.family === 4 ? 0 : 1].has(valueKey(address));
  }

  /** tenantAddress for an address already read, read: each destination asks once per family. */
  tenantNear(near: IpAddress): IpAddress | undefined {
    // (An IPv4 network's key without bigint arithmetic.)
    const key = near.family === 4 ? Number(near.value) >>> 8 : (near.value >> 64n).toString(16);
    let found = this.tenants.get(key);
    if (found === undefined) {
      const hostBits = near.family === 4 ? 8n : 64n;
      const network = (near.value >> hostBits) << hostBits;
      found = findTenant(near.family, network, hostBits, (candidate) => this.owns(candidate)) ?? null;
      this.tenants.set(key, found);
    }
    return found ?? undefined;
  }

  /** Hosts with an address inside a network, address by address (each host as often as it has one there). */
  private scanned(network: IpNetwork): number[] {
    const hosts: number[] = [];
    for (let hostIndex = 0; hostIndex < this.hosts.length; hostIndex += 1) {
      for (const list of this.ends.allOf(hostIndex)) {
        for (const {address} of list) if (networkContains(network, address)) hosts.push(hostIndex);
      }
    }
    return hosts;
  }

  /** Fleet hosts with an address inside the network. */
  private covered(network: IpNetwork): readonly number[] {
    // Rulesets share their network objects (parsed once per spelling): found by identity first.
    let hosts = this.coveredByNetwork.get(network);
    if (hosts) return hosts;
    if (isHostNetwork(network)) {
      const owners = this.owners[network.family === 4 ? 0 : 1].get(valueKey(network));
      hosts = owners === undefined ? [] : typeof owners === 'number' ? [owners] : owners;
    } else {
      const key = `${network.family}/${network.value}/${network.mask}`;
      hosts = this.coveredCache.get(key);
      if (!hosts) {
        hosts = this.scanned(network);
        this.coveredCache.set(key, hosts);
      }
    }
    this.coveredByNetwork.set(network, hosts);
    return hosts;
  }

  /** Fleet hosts a ruleset's addresses can single out; undefined: any (a rule address could not be read). */
  mentioned(ruleset: Ruleset): ReadonlySet<number> | undefined {
    const networks = rulesetNetworks(ruleset);
    if (networks === 'unreadable') return undefined;
    // (Hosts sharing a filter table share its list of networks: found once for all of them.)
    let hosts = this.mentionedByNetworks.get(networks);
    if (!hosts) {
      const found = new Set<number>();
      for (const network of networks) for (const host of this.covered(network)) found.add(host);
      this.mentionedByNetworks.set(networks, (hosts = found));
    }
    return hosts;
  }

  /**
   * The hosts either family's rules single out, and the uncertain senders, in fleet order:
   * found once for the destinations sharing both tables' networks.
   */
  private singledOut(mentioned4: ReadonlySet<number>, mentioned6: ReadonlySet<number>): readonly number[] {
    let byMentioned6 = this.singledOutCache.get(mentioned4);
    if (!byMentioned6) this.singledOutCache.set(mentioned4, (byMentioned6 = new Map()));
    let hosts = byMentioned6.get(mentioned6);
    if (!hosts) {
      hosts = [...new Set<number>([...mentioned4, ...mentioned6, ...this.uncertainSenders])].sort((a, b) => a - b);
      byMentioned6.set(mentioned6, hosts);
    }
    return hosts;
  }

  /**
   * For a destination with grouped rules (compiler.ts): the fleet sources neither its rules nor
   * theirs can tell apart, in classes, and those to read one by one. A class is what a source
   * looks like to both ends' rules: the side of its path, its address per family there (one at
   * most) and which of the destination's sets and wider networks hold it, its own rulesets (by
   * identity: hosts with the same rules share them), its interface, and which of its own rules'
   * wider networks hold its address. Single addresses the destination's rules name single their
   * owners out, as do senders whose rules may add notes. Classes are kept per what they depend
   * on, so the destinations sharing sets (every db of a flat fleet) share one partition.
   * Undefined: the destination has no grouped rules, or a rule address could not be read.
   */
  sourceClasses(destinationIndex: number): {readonly classes: readonly SourceClass[]; readonly singled: readonly number[]} | undefined {
    const destination = this.hosts[destinationIndex] as FleetHost;
    const grouped = groupedRules(destination.compiled);
    if (!grouped) return undefined;
    const singled = new Set<number>(this.uncertainSenders);
    const wide: IpNetwork[] = [];
    for (const family of FAMILIES) {
      // (Its sets are read as sets: their elements are not listed here.)
      const networks = matchedNetworks(rulesetOf(destination, family));
      if (networks === undefined) return undefined;
      for (const network of networks) {
        if (network === EVERY_ADDRESS[network.family]) continue;
        if (isHostNetwork(network)) for (const host of this.covered(network)) singled.add(host);
        else if (network.mask !== 0n && !wide.includes(network)) wide.push(network); // (every address is in a /0)
      }
    }
    const destinationPrivate = destination.facts.interfaces.private !== undefined;
    let key = destinationPrivate ? 'p' : 'n';
    for (const set of grouped.sets) key += `|s${objectId(set)}`;
    for (const network of wide) key += `|n${network.family}/${network.value}/${network.mask}`;
    let classes = this.classesByKey.get(key);
    if (!classes) {
      classes = this.partition(destinationPrivate, grouped.sets, wide);
      if (this.classesByKey.size >= 1000) this.classesByKey.clear();
      this.classesByKey.set(key, classes);
    }
    singled.delete(destinationIndex);
    return {classes, singled: [...singled].sort((a, b) => a - b)};
  }

  private partition(destinationPrivate: boolean, sets: readonly AddressSet[], wide: readonly IpNetwork[]): SourceClass[] {
    const bySignature = new Map<string, {members: number[]; labels: Set<string>; oneByOne: boolean}>();
    for (let hostIndex = 0; hostIndex < this.hosts.length; hostIndex += 1) {
      const host = this.hosts[hostIndex] as FleetHost;
      const side = destinationPrivate && host.facts.interfaces.private !== undefined ? 'private' : 'public';
      const own = this.ownSignature(hostIndex, side);
      let signature = own.text;
      const oneByOne = own.oneByOne;
      const labels: string[] = [];
      for (let familyIndex = 0; familyIndex < 2 && !oneByOne; familyIndex += 1) {
        const address = own.addresses[familyIndex];
        if (address === undefined) continue;
        const family = FAMILIES[familyIndex] as Family;
        signature += `|${family}`;
        for (const set of sets) {
          if (set.family !== family) continue;
          const inside = set.has(address);
          signature += inside ? '1' : '0';
          if (inside && !labels.includes(set.label)) labels.push(set.label);
        }
        for (const network of wide) if (network.family === family) signature += networkContains(network, address) ? '1' : '0';
      }
      if (oneByOne) signature = `one by one ${hostIndex}`;
      const found = bySignature.get(signature);
      if (found) found.members.push(hostIndex);
      else bySignature.set(signature, {members: [hostIndex], labels: new Set(labels), oneByOne});
    }
    return [...bySignature.values()].map((found) => ({members: found.members, label: found.labels.size > 0 ? [...found.labels].join('+') : 'other hosts', oneByOne: found.oneByOne}));
  }

  /**
   * What a source looks like to its own rules on a side, whatever the destination (partition's
   * part of a signature that does not depend on the destination's sets): its interface, its
   * address count per family, its views there (or its rulesets), and which of its own rules'
   * wider networks hold its address. `addresses`: its one address per family (else undefined).
   */
  private ownSignature(hostIndex: number, side: 'public' | 'private'): {readonly text: string; readonly oneByOne: boolean; readonly addresses: readonly (IpAddress | undefined)[]} {
    const slot = hostIndex * 2 + (side === 'public' ? 0 : 1);
    let found = this.ownSignatures[slot];
    if (found) return found;
    const host = this.hosts[hostIndex] as FleetHost;
    let text = `${side}|${host.facts.interfaces[side] ?? ''}`;
    let oneByOne = false;
    const addresses: (IpAddress | undefined)[] = [undefined, undefined];
    for (let familyIndex = 0; familyIndex < 2; familyIndex += 1) {
      const family = FAMILIES[familyIndex] as Family;
      const ends = this.ends.of(hostIndex, side, family);
      const ruleset = rulesetOf(host, family);
      text += `|${family}:${ends.length}`;
      if (ends.length !== 1) {
        oneByOne ||= ends.length > 1; // (its address pairs may differ: walked and noted one by one)
        continue;
      }
      const end = ends[0] as RouteEnd;
      const address = end.address;
      addresses[familyIndex] = address;
      // Its own rules by what they answer on the way (views are shared by content: every db's
      // rules differ by its own address, and answer alike), else by identity.
      if (end.viewsDefined('tcp') && end.viewsDefined('udp')) {
        for (const protocol of PROTOCOLS) {
          for (const kind of SENDER_VIEWS) {
            const view = end.view(kind, protocol);
            text += view ? `:${objectId(view)}` : ':-';
          }
        }
      } else {
        text += `:r${objectId(ruleset)}`;
      }
      // Its own rules' wider networks (DHCPv6's link-local ones, say) hold its address or not.
      const own = matchedNetworks(ruleset);
      if (own === undefined) oneByOne = true;
      else for (const network of own) if (network !== EVERY_ADDRESS[network.family] && !isHostNetwork(network)) text += networkContains(network, address) ? '1' : '0';
    }
    found = {text, oneByOne, addresses};
    this.ownSignatures[slot] = found;
    return found;
  }

  forDestination(destinationIndex: number) {
    const destination = this.hosts[destinationIndex] as FleetHost;
    // (Asked only by the shortcuts below: a destination read by source classes never needs it.)
    let mentionedFamilies: {readonly 4: ReadonlySet<number> | undefined; readonly 6: ReadonlySet<number> | undefined} | undefined;
    const mentionedIn = (family: Family): ReadonlySet<number> | undefined =>
      (mentionedFamilies ??= {4: this.mentioned(rulesetOf(destination, 4)), 6: this.mentioned(rulesetOf(destination, 6))})[family];
    const destinationPrivate = destination.facts.interfaces.private !== undefined;
    const representativeClosed: (boolean | undefined)[] = []; // by side, family and protocol
    const representativeNamed: (boolean | undefined)[] = []; // by side and family
    let tenants: Route[] | undefined;
    let internet: Route[] | undefined;
    // The representatives' ports straight from the views, per side (public, private) when their
    // routes allow (undefined: not asked yet; null: walk the routes).
    const directs: (RepresentativePorts | null | undefined)[] = [undefined, undefined];
    const directOf = (side: 'public' | 'private'): RepresentativePorts | undefined => {
      const slot = side === 'public' ? 0 : 1;
      let direct = directs[slot];
      if (direct === undefined) directs[slot] = direct = representativePorts(this.ends, destinationIndex, side, this) ?? null;
      return direct ?? undefined;
    };
    /** The representative on that side gets nothing in that family and protocol, and nothing is uncertain. */
    const closedFor = (side: 'public' | 'private', family: Family, protocol: Protocol): boolean => {
      const key = (side === 'public' ? 0 : 4) + (family === 4 ? 0 : 2) + (protocol === 'tcp' ? 0 : 1);
      let closed = representativeClosed[key];
      if (closed === undefined) {
        const reachable = destination.facts.interfaces[side] !== undefined && this.ends.of(destinationIndex, side, family).length > 0;
        const direct = reachable ? directOf(side) : undefined;
        if (!reachable) {
          closed = true; // no fleet source has a route there in this family either
        } else if (direct) {
          // (One route at most, answered by defined views: nothing is uncertain.)
          const familyIndex = family === 4 ? 0 : 1;
          const sourceIp = direct.sourceIps[familyIndex];
          if (sourceIp === undefined || (direct.ports[familyIndex * 2 + (protocol === 'tcp' ? 0 : 1)] as PortSet).length > 0) {
            closed = false;
          } else {
            // (Whether a rule names the representative does not depend on the protocol.)
            const slot = (side === 'public' ? 0 : 2) + familyIndex;
            closed = !(representativeNamed[slot] ??= coveredBy(rulesetNetworks(rulesetOf(destination, family)), sourceIp));
          }
        } else {
          const routes = (side === 'private' ? (tenants ??= tenantRoutes(this.ends, destinationIndex, this.taken)) : (internet ??= internetRoutes(this.ends, destinationIndex))).filter(
            (route) => route.family === family,
          );
          const networks = rulesetNetworks(rulesetOf(destination, family));
          closed =
            routes.length > 0 &&
            routes.every((route) => {
              if (coveredBy(networks, route.sourceIp)) return false;
              const result = portsOnRoute(route, destination, protocol);
              return result.ports.length === 0 && result.uncertain.length === 0;
            });
        }
        representativeClosed[key] = closed;
      }
      return closed;
    };
    /** The side a fleet source's path to the destination takes (fleetPath's rule). */
    const sideOf = (sourceIndex: number): 'public' | 'private' =>
      destinationPrivate && this.hosts[sourceIndex]?.facts.interfaces.private !== undefined ? 'private' : 'public';
    return {
      sideOf,
      /** The representatives' routes, the same objects closedFor asked about (their answers are kept). */
      internetRoutes: (): Route[] => (internet ??= internetRoutes(this.ends, destinationIndex)),
      tenantRoutes: (): Route[] => (tenants ??= tenantRoutes(this.ends, destinationIndex, this.taken)),
      /** The representative's row on that side (the internet on the public one, other tenants on the private one). */
      representativeRow: (side: 'public' | 'private'): SourceRow => {
        const source = side === 'public' ? INTERNET : PRIVATE_TENANTS;
        const direct = directOf(side);
        if (direct) return rowOfPorts(source, direct.sourceIps[0] !== undefined, direct.sourceIps[1] !== undefined, direct.ports, NO_NOTES);
        const routes = side === 'public' ? (internet ??= internetRoutes(this.ends, destinationIndex)) : (tenants ??= tenantRoutes(this.ends, destinationIndex, this.taken));
        return rowOfGroup(source, {routes}, destination);
      },
      closed: (sourceIndex: number, family: Family, protocol: Protocol): boolean => {
        const singled = mentionedIn(family);
        if (singled === undefined || singled.has(sourceIndex) || this.uncertainSenders.has(sourceIndex)) return false;
        return closedFor(sideOf(sourceIndex), family, protocol);
      },
      /** Every source that is not known closed in every family and protocol, in fleet order. */
      candidates: (): readonly number[] => {
        const mentioned4 = mentionedIn(4);
        const mentioned6 = mentionedIn(6);
        if (mentioned4 === undefined || mentioned6 === undefined) return [...this.hosts.keys()];
        const sides = destinationPrivate ? (['private', 'public'] as const) : (['public'] as const);
        const isOpen = (side: 'public' | 'private'): boolean => FAMILIES.some((family) => PROTOCOLS.some((protocol) => !closedFor(side, family, protocol)));
        if (!sides.some(isOpen)) return this.singledOut(mentioned4, mentioned6);
        if (sides.every(isOpen)) return (this.everyHost ??= [...this.hosts.keys()]); // (every side's members: the fleet)
        const chosen = new Set<number>([...mentioned4, ...mentioned6, ...this.uncertainSenders]);
        for (const side of sides) {
          if (!isOpen(side)) continue;
          const members = !destinationPrivate ? [...this.hosts.keys()] : side === 'private' ? this.withPrivate : this.withoutPrivate;
          for (const member of members) chosen.add(member);
        }
        return [...chosen].sort((a, b) => a - b);
      },
    };
  }
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

/**
 * Equal lists of sorted ranges with gaps between them (what every cell holds): their
 * intersection is the list itself, and subtracting one from the other leaves nothing.
 */
function sameMergedRanges(a: readonly PortRange[], b: readonly PortRange[]): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index += 1) {
    const left = a[index] as PortRange;
    const right = b[index] as PortRange;
    if (left.first !== right.first || left.last !== right.last || left.first > left.last) return false;
    if (index > 0 && left.first <= (a[index - 1] as PortRange).last + 1) return false;
  }
  return true;
}

/** The ports of `a` that `b` does not hold. */
export function subtractRanges(a: readonly PortRange[], b: readonly PortRange[]): PortRange[] {
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

/**
 * The summary of a whole fleet, destination by destination as the matrix is read (sources with
 * no open port left out): the same entries as summarizeMatrix(accessMatrix(hosts, {omitClosed: true})),
 * without holding every cell of a large fleet at once.
 */
export function summarizeFleetAccess(hosts: readonly FleetHost[]): AccessEntry[] {
  const entries: AccessEntry[] = [];
  if (!namesDistinct(hosts)) {
    // (Cells of sources sharing a name are grouped together: only the cell-by-cell path does that.)
    const sourceRank = rankOfSources(hosts.map((host) => host.name));
    forEachDestination(hosts, {omitClosed: true}, (destination, cells) => {
      const bySource = new Map<string, AccessCell[]>();
      for (const cell of cells) {
        const list = bySource.get(cell.source);
        if (list) list.push(cell);
        else bySource.set(cell.source, [cell]);
      }
      summarizeDestination(destination.name, bySource, sourceRank, entries);
    });
    return entries;
  }
  // The same rows as forEachDestination's cells (omitClosed), one per source, already in the
  // lines' order: the internet, fleet hosts in fleet order, other tenants.
  const ends = new RouteEnds(hosts);
  const index = new FleetIndex(hosts, ends);
  for (let destinationIndex = 0; destinationIndex < hosts.length; destinationIndex += 1) {
    const destination = hosts[destinationIndex] as FleetHost;
    const shortcut = index.forDestination(destinationIndex);
    // Read by source classes where the destination's sets are big (a flat fleet's db admits thousands); else source by source.
    const bigSets = setElementCount(destination) > CLASSES_FROM;
    let grouping = bigSets ? index.sourceClasses(destinationIndex) : undefined;
    // By classes too where thousands of sources cannot be ruled out (no free address on a full
    // private network stands for them, say), its lines spelled as source by source would.
    const candidates = grouping ? [] : shortcut.candidates();
    if (candidates.length > CLASSES_FROM) grouping = index.sourceClasses(destinationIndex);
    if (grouping) {
      summarizeByClasses(destination.name, destinationIndex, grouping, ends, shortcut, entries, bigSets);
      continue;
    }
    const rows: SourceRow[] = [shortcut.representativeRow('public')];
    for (const sourceIndex of candidates) {
      if (sourceIndex === destinationIndex) continue;
      const source = hosts[sourceIndex] as FleetHost;
      rows.push(
        viewRow(ends, sourceIndex, destinationIndex, shortcut) ??
          rowOfGroup(source.name, {routes: fleetRoutes(ends, sourceIndex, destinationIndex), knownClosed: (family, protocol) => shortcut.closed(sourceIndex, family, protocol)}, destination),
      );
    }
    rows.push(shortcut.representativeRow('private'));
    summarizeRows(destination.name, rows, entries);
  }
  return entries;
}

/** A source row and who it stands for: one host, or the members of a class but some. */
interface PartRow {
  readonly row: SourceRow;
  /** The first fleet host it stands for (-1: the internet; the fleet's size: other tenants), for the lines' order. */
  readonly first: number;
  readonly part: SourcesPart;
}

/** Sources of an entry: one (at its place in the lines' order), or a class's members but those read one by one (and the destination). */
type SourcesPart =
  | {readonly index: number; readonly name: string}
  | {readonly names: readonly string[]; readonly members: readonly number[]; readonly left: ReadonlySet<number>; readonly label: string};

/** The parts of entries whose sources are classes (see summarizeByClasses); formatAccess names big classes by label. */
const entryParts = new WeakMap<AccessEntry, SourcesPart[]>();

/**
 * One destination's lines from source classes: a row per class (read from one member) and per
 * source read one by one, so the work follows the number of classes, not of sources. The same
 * entries, sources and order as reading every source; an entry's `sources` list is spelled when
 * first read (a flat fleet's db is reached by thousands of hosts, and so is every other db).
 */
function summarizeByClasses(
  destination: string,
  destinationIndex: number,
  grouping: {readonly classes: readonly SourceClass[]; readonly singled: readonly number[]},
  ends: RouteEnds,
  shortcut: DestinationShortcut,
  entries: AccessEntry[],
  /** Lines with many sources name big classes by label (formatAccess); else every source. */
  byLabel: boolean,
): void {
  const hosts = ends.hosts;
  const names = namesOf(hosts);
  // (No shortcut on closed sources: every class is read, from one member.)
  const open: DestinationShortcut = {...shortcut, closed: () => false};
  const rowOf = (sourceIndex: number): SourceRow => {
    const source = hosts[sourceIndex] as FleetHost;
    return (
      viewRow(ends, sourceIndex, destinationIndex, open) ??
      rowOfGroup(source.name, {routes: fleetRoutes(ends, sourceIndex, destinationIndex)}, hosts[destinationIndex] as FleetHost)
    );
  };
  const left = new Set<number>([destinationIndex, ...grouping.singled]);
  const one = (sourceIndex: number): PartRow => ({row: rowOf(sourceIndex), first: sourceIndex, part: {index: sourceIndex, name: names[sourceIndex] as string}});
  const rows: PartRow[] = [{row: shortcut.representativeRow('public'), first: -1, part: {index: -1, name: INTERNET}}];
  for (const sourceIndex of grouping.singled) rows.push(one(sourceIndex));
  for (const sourceClass of grouping.classes) {
    if (sourceClass.oneByOne) {
      for (const sourceIndex of sourceClass.members) {
        if (!left.has(sourceIndex)) rows.push(one(sourceIndex));
      }
      continue;
    }
    const first = sourceClass.members.find((member) => !left.has(member));
    if (first === undefined) continue;
    rows.push({row: rowOf(first), first, part: {names, members: sourceClass.members, left, label: sourceClass.label}});
  }
  rows.push({row: shortcut.representativeRow('private'), first: hosts.length, part: {index: hosts.length, name: PRIVATE_TENANTS}});
  rows.sort((a, b) => a.first - b.first);
  summarizeRows(destination, rows.map((item) => item.row), entries, rows.map((item) => item.part), byLabel);
}

const namesCache = new WeakMap<readonly FleetHost[], readonly string[]>();

function namesOf(hosts: readonly FleetHost[]): readonly string[] {
  let names = namesCache.get(hosts);
  if (!names) namesCache.set(hosts, (names = hosts.map((host) => host.name)));
  return names;
}

/** An entry's sources from its parts, in fleet order: the internet first, other tenants last. */
function spellSources(parts: readonly SourcesPart[]): string[] {
  const items: {index: number; name: string}[] = [];
  for (const part of parts) {
    if ('name' in part) items.push({index: part.index, name: part.name});
    else for (const member of part.members) if (!part.left.has(member)) items.push({index: member, name: part.names[member] as string});
  }
  return items.sort((a, b) => a.index - b.index).map((item) => item.name);
}

/** Set elements a destination's grouped rules match, from which reading by source classes pays. */
const CLASSES_FROM = 64;

function setElementCount(host: FleetHost): number {
  let count = 0;
  for (const set of groupedRules(host.compiled)?.sets ?? []) count += set.elements.length;
  return count;
}

/** No two hosts share a name, and none is named like a representative source. */
function namesDistinct(hosts: readonly FleetHost[]): boolean {
  const names = new Set<string>([INTERNET, PRIVATE_TENANTS]);
  for (const host of hosts) {
    if (names.has(host.name)) return false;
    names.add(host.name);
  }
  return true;
}

/** One source's cells to a destination, as port sets: what a line of the summary is made of. */
interface SourceRow {
  readonly source: string;
  /** Whether the source has a route in the family (then it has cells in it, maybe closed). */
  readonly has4: boolean;
  readonly has6: boolean;
  readonly tcp4: PortSet;
  readonly udp4: PortSet;
  readonly tcp6: PortSet;
  readonly udp6: PortSet;
  readonly uncertain: readonly string[];
}

const NO_PORTS: PortSet = Object.freeze([]);

/**
 * A fleet source's row straight from the views, when each family has at most one address pair
 * and every view on the way is defined (so nothing is noted): the cells' ports without routes
 * or cells. Undefined otherwise (then the source's routes are walked cell by cell).
 */
function viewRow(ends: RouteEnds, sourceIndex: number, destinationIndex: number, shortcut: DestinationShortcut): SourceRow | undefined {
  const side = shortcut.sideOf(sourceIndex);
  // (fleetPath's rule: no interface on the destination's side, no route at all.)
  const noRoute = (ends.hosts[destinationIndex] as FleetHost).facts.interfaces[side] === undefined;
  const ports: PortSet[] = [NO_PORTS, NO_PORTS, NO_PORTS, NO_PORTS]; // 4 tcp, 4 udp, 6 tcp, 6 udp
  const has = [false, false];
  for (let familyIndex = 0; familyIndex < 2 && !noRoute; familyIndex += 1) {
    const family = FAMILIES[familyIndex] as Family;
    const receivingEnds = ends.of(destinationIndex, side, family);
    const sendingEnds = ends.of(sourceIndex, side, family);
    if (receivingEnds.length === 0 || sendingEnds.length === 0) continue;
    if (receivingEnds.length > 1 || sendingEnds.length > 1) return undefined; // (pairs may differ: noted)
    const receiving = receivingEnds[0] as RouteEnd;
    const sending = sendingEnds[0] as RouteEnd;
    has[familyIndex] = true;
    for (let protocolIndex = 0; protocolIndex < 2; protocolIndex += 1) {
      const protocol = PROTOCOLS[protocolIndex] as Protocol;
      if (!receiving.viewsDefined(protocol) || !sending.viewsDefined(protocol)) return undefined;
      if (shortcut.closed(sourceIndex, family, protocol)) continue;
      ports[familyIndex * 2 + protocolIndex] = definedViewPorts(receiving, sending, sending.address as IpAddress, protocol);
    }
  }
  return rowOfPorts((ends.hosts[sourceIndex] as FleetHost).name, has[0] as boolean, has[1] as boolean, ports, NO_NOTES);
}

type DestinationShortcut = ReturnType<FleetIndex['forDestination']>;

/** A representative's answers on one side of a destination, from the views. */
interface RepresentativePorts {
  /** Its address per family (IPv4, IPv6); undefined: no route in that family. */
  readonly sourceIps: readonly (IpAddress | undefined)[];
  /** Ports per family and protocol (4 tcp, 4 udp, 6 tcp, 6 udp). */
  readonly ports: readonly PortSet[];
}

/**
 * What internetRoutes (public side) or tenantRoutes (private side) would let through, read
 * from the views: undefined unless each family has at most one route and the destination's
 * views are all defined there (then its routes are walked).
 */
function representativePorts(ends: RouteEnds, destinationIndex: number, side: 'public' | 'private', index: FleetIndex): RepresentativePorts | undefined {
  const sourceIps: (IpAddress | undefined)[] = [undefined, undefined];
  const ports: PortSet[] = [NO_PORTS, NO_PORTS, NO_PORTS, NO_PORTS];
  if ((ends.hosts[destinationIndex] as FleetHost).facts.interfaces[side] === undefined) return {sourceIps, ports};
  for (let familyIndex = 0; familyIndex < 2; familyIndex += 1) {
    const family = FAMILIES[familyIndex] as Family;
    const receivingEnds = ends.of(destinationIndex, side, family);
    if (receivingEnds.length === 0) continue;
    if (receivingEnds.length > 1) return undefined;
    const receiving = receivingEnds[0] as RouteEnd;
    let sourceIp: IpAddress | undefined;
    if (side === 'public') {
      sourceIp = INTERNET_IP[family];
    } else {
      // (tenantRoutes' neighbour: near the first private address of the family, here the only one.)
      sourceIp = index.tenantNear(receiving.address);
    }
    if (sourceIp === undefined) continue;
    if (!receiving.viewsDefined('tcp') || !receiving.viewsDefined('udp')) return undefined;
    sourceIps[familyIndex] = sourceIp;
    ports[familyIndex * 2] = definedViewPorts(receiving, undefined, sourceIp, 'tcp');
    ports[familyIndex * 2 + 1] = definedViewPorts(receiving, undefined, sourceIp, 'udp');
  }
  return {sourceIps, ports};
}

function rowOfPorts(source: string, has4: boolean, has6: boolean, ports: readonly PortSet[], uncertain: readonly string[]): SourceRow {
  return {
    source,
    has4,
    has6,
    tcp4: ports[0] as PortSet,
    udp4: ports[1] as PortSet,
    tcp6: ports[2] as PortSet,
    udp6: ports[3] as PortSet,
    uncertain,
  };
}

/** A source's row from its routes, cell by cell (any ruleset; notes what could not be judged). */
function rowOfGroup(source: string, group: SourceGroup, destination: FleetHost): SourceRow {
  const tcpCells = cellsOfGroup(group, destination, 'tcp', false);
  const udpCells = cellsOfGroup(group, destination, 'udp', false);
  const ports: PortSet[] = [NO_PORTS, NO_PORTS, NO_PORTS, NO_PORTS]; // 4 tcp, 4 udp, 6 tcp, 6 udp
  let noted = false;
  for (const cell of tcpCells) {
    ports[cell.family === 4 ? 0 : 2] = rangesToPortSet(cell.ports);
    if (cell.uncertain.length > 0) noted = true;
  }
  for (const cell of udpCells) {
    ports[cell.family === 4 ? 1 : 3] = rangesToPortSet(cell.ports);
    if (cell.uncertain.length > 0) noted = true;
  }
  return {
    source,
    has4: tcpCells.some((cell) => cell.family === 4),
    has6: tcpCells.some((cell) => cell.family === 6),
    tcp4: ports[0] as PortSet,
    udp4: ports[1] as PortSet,
    tcp6: ports[2] as PortSet,
    udp6: ports[3] as PortSet,
    uncertain: noted ? [...new Set([...tcpCells, ...udpCells].flatMap((cell) => cell.uncertain))] : NO_NOTES,
  };
}

/** A cell's ranges (sorted, merged) as a port set. */
function rangesToPortSet(ranges: readonly PortRange[]): PortSet {
  if (ranges.length === 0) return NO_PORTS;
  const set: number[] = [];
  for (const range of ranges) set.push(range.first, range.last);
  return set;
}

function samePorts(a: PortSet, b: PortSet): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index += 1) if (a[index] !== b[index]) return false;
  return true;
}

/** summarizeDestination for rows already in the lines' order (one per source). */
/** `parts`, when given: who each row stands for (summarizeByClasses), else its source alone. */
function summarizeRows(destination: string, rows: readonly SourceRow[], entries: AccessEntry[], parts?: readonly SourcesPart[], byLabel = true): void {
  const byKey = new Map<string, AccessEntry>();
  const partsOf = new Map<AccessEntry, SourcesPart[]>();
  let part: SourcesPart | undefined;
  const addPart = (row: SourceRow, only: Family | undefined, tcp: PortSet, udp: PortSet): void => {
    if (tcp.length === 0 && udp.length === 0) return;
    // (Port sets are canonical: equal sets, equal keys, as formatPorts would give.)
    const key = `${only ?? ''}|${tcp.join(',')}|${udp.join(',')}`;
    const existing = byKey.get(key);
    if (existing) {
      if (part) (partsOf.get(existing) as SourcesPart[]).push(part);
      else (existing.sources as string[]).push(row.source);
      for (const note of row.uncertain) if (!existing.uncertain.includes(note)) (existing.uncertain as string[]).push(note);
    } else {
      const sources = [row.source];
      const tcpRanges = portSetToRanges(tcp);
      const udpRanges = portSetToRanges(udp);
      const uncertain = [...row.uncertain];
      // (Two literals rather than a spread: every entry is kept, and a literal makes no object on the side.)
      const entry: AccessEntry = only
        ? {destination, sources, tcp: tcpRanges, udp: udpRanges, only, uncertain}
        : {destination, sources, tcp: tcpRanges, udp: udpRanges, uncertain};
      byKey.set(key, entry);
      entries.push(entry);
      if (part) partsOf.set(entry, [part]);
    }
  };
  for (let index = 0; index < rows.length; index += 1) {
    const row = rows[index] as SourceRow;
    part = parts?.[index];
    if (row.has4 && row.has6) {
      // Most sources get the same in both families: nothing then is one family's only.
      const tcpSame = samePorts(row.tcp4, row.tcp6);
      const udpSame = samePorts(row.udp4, row.udp6);
      addPart(row, undefined, tcpSame ? row.tcp4 : intersectPorts(row.tcp4, row.tcp6), udpSame ? row.udp4 : intersectPorts(row.udp4, row.udp6));
      if (!tcpSame || !udpSame) {
        addPart(row, 4, tcpSame ? NO_PORTS : subtractPorts(row.tcp4, row.tcp6), udpSame ? NO_PORTS : subtractPorts(row.udp4, row.udp6));
        addPart(row, 6, tcpSame ? NO_PORTS : subtractPorts(row.tcp6, row.tcp4), udpSame ? NO_PORTS : subtractPorts(row.udp6, row.udp4));
      }
    } else if (row.has4) {
      addPart(row, undefined, row.tcp4, row.udp4);
    } else if (row.has6) {
      addPart(row, undefined, row.tcp6, row.udp6);
    }
  }
  for (const [entry, mine] of partsOf) {
    if (mine.every((item) => 'name' in item)) {
      (entry as {sources: readonly string[]}).sources = mine.map((item) => (item as {name: string}).name);
      continue;
    }
    let spelled: string[] | undefined;
    Object.defineProperty(entry, 'sources', {get: () => (spelled ??= spellSources(mine)), enumerable: true, configurable: true});
    if (byLabel) entryParts.set(entry, mine);
  }
}

/** Where a source sorts in a destination's lines: the internet first, fleet hosts in order, other tenants last. */
function rankOfSources(hostOrder: readonly string[]): (source: string) => number {
  const rank = new Map<string, number>();
  hostOrder.forEach((name, position) => {
    if (!rank.has(name)) rank.set(name, position);
  });
  return (source) => (source === INTERNET ? -1 : source === PRIVATE_TENANTS ? hostOrder.length : (rank.get(source) ?? -1));
}

/** The same grouping, from a matrix already computed (the caller may want both). */
export function summarizeMatrix(cells: readonly AccessCell[], hostOrder: readonly string[]): AccessEntry[] {
  // Cells grouped by destination, then source (first-seen order), once: scanning the whole
  // matrix per destination would grow with hosts².
  const sourceRank = rankOfSources(hostOrder);
  const byDestination = new Map<string, Map<string, AccessCell[]>>();
  for (const cell of cells) {
    let bySource = byDestination.get(cell.destination);
    if (!bySource) byDestination.set(cell.destination, (bySource = new Map()));
    const list = bySource.get(cell.source);
    if (list) list.push(cell);
    else bySource.set(cell.source, [cell]);
  }
  const entries: AccessEntry[] = [];
  for (const destination of hostOrder) {
    const bySource = byDestination.get(destination);
    if (bySource) summarizeDestination(destination, bySource, sourceRank, entries);
  }
  return entries;
}

/** One destination's lines: sources with identical ports (and the same family note) share one. */
function summarizeDestination(
  destination: string,
  bySource: ReadonlyMap<string, readonly AccessCell[]>,
  sourceRank: (source: string) => number,
  entries: AccessEntry[],
): void {
  const sources = [...bySource.keys()].sort((a, b) => sourceRank(a) - sourceRank(b));
  const byKey = new Map<string, AccessEntry>();
  for (const source of sources) {
    const mine = bySource.get(source) ?? [];
    // The first cell of each family and protocol (by slot: family 4 tcp, 4 udp, 6 tcp, 6 udp).
    const firstCells: (AccessCell | undefined)[] = [undefined, undefined, undefined, undefined];
    let noted = false;
    for (const cell of mine) {
      const slot = (cell.family === 4 ? 0 : 2) + (cell.protocol === 'tcp' ? 0 : 1);
      firstCells[slot] ??= cell;
      if (cell.uncertain.length > 0) noted = true;
    }
    const portsOf = (slot: number): PortRange[] => {
      const cell = firstCells[slot];
      return cell ? [...cell.ports] : [];
    };
    const uncertain = noted ? [...new Set(mine.flatMap((cell) => cell.uncertain))] : [];
    const has4 = firstCells[0] !== undefined || firstCells[1] !== undefined;
    const has6 = firstCells[2] !== undefined || firstCells[3] !== undefined;
    const parts: {only?: Family; tcp: PortRange[]; udp: PortRange[]}[] = [];
    if (has4 && has6) {
      const [tcp4, udp4, tcp6, udp6] = [portsOf(0), portsOf(1), portsOf(2), portsOf(3)];
      // Most sources get the same in both families: nothing then is one family's only.
      const tcpSame = sameMergedRanges(tcp4, tcp6);
      const udpSame = sameMergedRanges(udp4, udp6);
      parts.push({tcp: tcpSame ? tcp4 : intersect(tcp4, tcp6), udp: udpSame ? udp4 : intersect(udp4, udp6)});
      if (!tcpSame || !udpSame) {
        parts.push({only: 4, tcp: tcpSame ? [] : subtractRanges(tcp4, tcp6), udp: udpSame ? [] : subtractRanges(udp4, udp6)});
        parts.push({only: 6, tcp: tcpSame ? [] : subtractRanges(tcp6, tcp4), udp: udpSame ? [] : subtractRanges(udp6, udp4)});
      }
    } else if (has4 || has6) {
      const first = has4 ? 0 : 2;
      parts.push({tcp: portsOf(first), udp: portsOf(first + 1)});
    }
    for (const part of parts) {
      if (part.tcp.length === 0 && part.udp.length === 0) continue;
      const key = `${part.only ?? ''}|${formatPorts('tcp', part.tcp)}|${formatPorts('udp', part.udp)}`;
      const existing = byKey.get(key);
      if (existing) {
        (existing.sources as string[]).push(source);
        (existing.uncertain as string[]).push(...uncertain.filter((note) => !existing.uncertain.includes(note)));
      } else {
        const entry: AccessEntry = {destination, sources: [source], tcp: part.tcp, udp: part.udp, ...(part.only ? {only: part.only} : {}), uncertain: [...uncertain]};
        byKey.set(key, entry);
        entries.push(entry);
      }
    }
  }
}

/** Lines naming more sources than this name the big classes by label instead ("app (4,000 hosts)"). */
const SOURCES_NAMED = 12;

/**
 * `internet → haproxy-www tcp/80,443`, `wordpress-1, wordpress-2 → mysql-1 tcp/3306 (IPv4 only)`;
 * with many sources, `app (4,000 hosts), db (5,939 hosts) → db-17 tcp/3306`.
 */
export function formatAccess(entries: readonly AccessEntry[]): string[] {
  return entries.map((entry) => {
    const ports = [
      ...(entry.tcp.length > 0 ? [formatPorts('tcp', entry.tcp)] : []),
      ...(entry.udp.length > 0 ? [formatPorts('udp', entry.udp)] : []),
    ].join(' ');
    return `${sourcesText(entry)} → ${entry.destination} ${ports}${entry.only ? ` (IPv${entry.only} only)` : ''}`;
  });
}

function sourcesText(entry: AccessEntry): string {
  const parts = entryParts.get(entry);
  if (!parts) return entry.sources.join(', ');
  const counted = parts.map((part) => ({part, count: 'name' in part ? 1 : classCount(part)}));
  if (counted.reduce((sum, item) => sum + item.count, 0) <= SOURCES_NAMED) return entry.sources.join(', ');
  return counted
    .map(({part, count}) => ('name' in part ? part.name : count === 1 ? (part.names[part.members.find((member) => !part.left.has(member)) as number] as string) : `${part.label} (${count.toLocaleString('en')} hosts)`))
    .join(', ');
}

/** How many of a class's members a part stands for (its members but those left out). */
function classCount(part: {readonly members: readonly number[]; readonly left: ReadonlySet<number>}): number {
  let count = part.members.length;
  for (const left of part.left) if (sortedIncludes(part.members, left)) count -= 1;
  return count;
}

function sortedIncludes(sorted: readonly number[], value: number): boolean {
  let low = 0;
  let high = sorted.length - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    const at = sorted[middle] as number;
    if (at === value) return true;
    if (at < value) low = middle + 1;
    else high = middle - 1;
  }
  return false;
}
