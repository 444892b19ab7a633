// The flows a live check tries: every TCP flow the plan opens between fleet hosts and from the
// internet (one port per range, each address family the plan gives), and a sample of the flows it
// closes (each destination's planned ports from a fleet source they are not open to, and from the
// internet). Read from the access summary (itself read from the compiled rules), never from the
// inventory. Pure. UDP is not tried: silence proves nothing there.
import {canonicalAddress} from './addresses.js';
import {EPHEMERAL_PORT, INTERNET, type AccessEntry, type FleetHost} from './access.js';
import {evaluate} from './evaluator.js';
import {familyOf} from './ip.js';
import type {Family, PortRange} from './model.js';
import {fleetPath} from './topology.js';

/** A try's source: a fleet host (its sshd connects), or the operator's machine playing the internet. */
export const OPERATOR = 'operator';

export interface Flow {
  /** A fleet host name, or OPERATOR. */
  readonly from: string;
  /** The source as the plan names it: a fleet host, or INTERNET. */
  readonly planSource: string;
  readonly to: string;
  /** The destination's address on the route (canonical). */
  readonly address: string;
  readonly family: Family;
  readonly port: number;
  /** What the plan says a NEW connection gets: through (`open`) or stopped (`closed`). */
  readonly expect: 'open' | 'closed';
}

/** Ports tried as closed when a destination has no planned port to sample (none opens them). */
const SPARE_CLOSED_PORTS = [3306, 5432, 6379, 8080, 23, 25] as const;
/** Closed ports sampled per destination and per kind of source (fleet, internet). */
const CLOSED_SAMPLES = 3;

export interface FlowOptions {
  /** Only flows whose source or destination is one of these hosts (default: all). */
  readonly hosts?: ReadonlySet<string>;
  /** With `hosts`: only flows whose destination is one of them. */
  readonly destinationsOnly?: boolean;
  /**
   * Where the operator's machine is seen from (a directly reached host's $SSH_CONNECTION): a port
   * closed to the internet but open to these (an `allow` for your own address) is not sampled as
   * closed from here.
   */
  readonly operatorAddresses?: readonly string[];
}

/** Open TCP ranges per destination → source → family, from the summary. */
type Openings = Map<string, Map<string, Record<Family, PortRange[]>>>;

function openingsOf(access: readonly AccessEntry[]): Openings {
  const openings: Openings = new Map();
  for (const entry of access) {
    if (entry.tcp.length === 0) continue;
    let bySource = openings.get(entry.destination);
    if (!bySource) openings.set(entry.destination, (bySource = new Map()));
    for (const source of entry.sources) {
      let families = bySource.get(source);
      if (!families) bySource.set(source, (families = {4: [], 6: []}));
      for (const family of [4, 6] as const) if (entry.only === undefined || entry.only === family) families[family].push(...entry.tcp);
    }
  }
  return openings;
}

const inRanges = (ranges: readonly PortRange[] | undefined, port: number): boolean =>
  (ranges ?? []).some((range) => range.first <= port && port <= range.last);

function addressesOf(list: readonly string[], family: Family): string[] {
  const out: string[] = [];
  for (const text of list) {
    const plain = text.includes('%') ? (text.split('%')[0] ?? '') : text;
    if (familyOf(plain) !== family) continue;
    const canonical = canonicalAddress(plain);
    if (canonical !== undefined && !out.includes(canonical)) out.push(canonical);
  }
  return out;
}

/** The addresses a fleet source reaches the destination at in one family (empty: no route). */
function fleetAddresses(source: FleetHost, destination: FleetHost, family: Family): string[] {
  const path = fleetPath(source, destination);
  if (path.toInterface === undefined || addressesOf(path.fromAddresses, family).length === 0) return [];
  return addressesOf(path.toAddresses, family);
}

function publicAddresses(destination: FleetHost, family: Family): string[] {
  return destination.facts.interfaces.public === undefined ? [] : addressesOf(destination.facts.addresses.public, family);
}

/**
 * The flows to try, open ones first, in fleet order. `hosts` is the whole fleet (every host a
 * source may be), `access` its summary (buildPlan's `access`).
 */
export function flowsToTry(hosts: readonly FleetHost[], access: readonly AccessEntry[], options: FlowOptions = {}): Flow[] {
  const byName = new Map(hosts.map((host) => [host.name, host]));
  const openings = openingsOf(access);
  const wanted = (from: string, to: string): boolean => !options.hosts || options.hosts.has(to) || (!options.destinationsOnly && options.hosts.has(from));
  const open: Flow[] = [];
  const closed: Flow[] = [];

  for (const [destinationIndex, destination] of hosts.entries()) {
    const bySource = openings.get(destination.name) ?? new Map<string, Record<Family, PortRange[]>>();
    // The ports that answer when let through: one per planned range, and sshd's.
    const planned = new Set<number>([destination.facts.sshPort ?? 22]);
    for (const families of bySource.values()) for (const range of [...families[4], ...families[6]]) planned.add(range.first);
    const plannedPorts = [...planned].sort((a, b) => a - b);
    const openToAnyone = (port: number): boolean => [...bySource.values()].some((families) => inRanges(families[4], port) || inRanges(families[6], port));
    const spare = SPARE_CLOSED_PORTS.find((port) => !openToAnyone(port));

    // Open: each planned source, each range's first port, every address of the family.
    for (const [source, families] of bySource) {
      const fleetSource = byName.get(source);
      if (source !== INTERNET && !fleetSource) continue; // other tenants: nothing of ours to try from
      const from = fleetSource ? source : OPERATOR;
      if (fleetSource === destination || !wanted(source, destination.name)) continue;
      for (const family of [4, 6] as const) {
        const addresses = fleetSource ? fleetAddresses(fleetSource, destination, family) : publicAddresses(destination, family);
        const ports = [...new Set(families[family].map((range) => range.first))].sort((a, b) => a - b);
        for (const address of addresses) {
          for (const port of ports) open.push({from, planSource: source, to: destination.name, address, family, port, expect: 'open'});
        }
      }
    }

    // Closed, from the fleet: each planned port from a fleet host it is not open to (taken in
    // turn from the host after the destination, so the tries spread over the fleet).
    for (const family of [4, 6] as const) {
      let samples = 0;
      const candidates = [...hosts.slice(destinationIndex + 1), ...hosts.slice(0, destinationIndex)];
      const ports = [...plannedPorts, ...(spare === undefined || planned.has(spare) ? [] : [spare])];
      for (const [turn, port] of ports.entries()) {
        if (samples >= CLOSED_SAMPLES) break;
        if (turn === plannedPorts.length && samples > 0) break; // the spare port only when nothing else was sampled
        for (let offset = 0; offset < candidates.length; offset += 1) {
          const source = candidates[(turn + offset) % candidates.length] as FleetHost;
          if (inRanges(bySource.get(source.name)?.[family], port) || !wanted(source.name, destination.name)) continue;
          const address = fleetAddresses(source, destination, family)[0];
          if (address === undefined) continue;
          closed.push({from: source.name, planSource: source.name, to: destination.name, address, family, port, expect: 'closed'});
          samples += 1;
          break;
        }
      }
    }

    // Closed, from the internet: the planned ports it is not given, else a spare one.
    if (!wanted(INTERNET, destination.name)) continue;
    for (const family of [4, 6] as const) {
      const address = publicAddresses(destination, family)[0];
      if (address === undefined) continue;
      const internet = bySource.get(INTERNET)?.[family];
      const operator = addressesOf(options.operatorAddresses ?? [], family);
      const ruleset = family === 4 ? destination.compiled.v4 : destination.compiled.v6;
      const iface = destination.facts.interfaces.public;
      const closedHere = (port: number): boolean =>
        !operator.some(
          (source) =>
            evaluate(ruleset, {chain: 'INPUT', ...(iface === undefined ? {} : {inInterface: iface}), source, destination: address, protocol: 'tcp', sourcePort: EPHEMERAL_PORT, destinationPort: port, state: 'NEW'}).verdict === 'ACCEPT',
        );
      const ports = plannedPorts.filter((port) => !inRanges(internet, port) && closedHere(port)).slice(0, CLOSED_SAMPLES);
      if (ports.length === 0 && spare !== undefined && closedHere(spare)) ports.push(spare);
      for (const port of ports) closed.push({from: OPERATOR, planSource: INTERNET, to: destination.name, address, family, port, expect: 'closed'});
    }
  }
  return [...open, ...closed];
}

/** "haproxy-www → wordpress-1 10.132.0.12 tcp/80" (the internet's tries: "internet → …"). */
export function describeFlow(flow: Flow): string {
  const address = flow.family === 6 ? `[${flow.address}]` : flow.address;
  return `${flow.planSource} → ${flow.to} ${address}:${flow.port}`;
}

/** A flow as tried: what the plan says and what the network did. */
export interface FlowResult {
  readonly flow: Flow;
  readonly live: 'open' | 'dropped' | 'untested';
  /** Why, in a few words ("handshake completed", "no answer within 2 s", the reason it was not tried). */
  readonly detail: string;
  /** Where it was tried from: "wordpress-1's sshd", "wordpress-1 (fixed command)", "this machine". */
  readonly triedFrom: string;
}

/** Tried, and the network did what the plan says (a closed flow must be dropped, an open one answer). */
export function asPlanned(result: FlowResult): boolean {
  return result.live === (result.flow.expect === 'open' ? 'open' : 'dropped');
}

/** Tried, and the network did otherwise: a planned flow dropped, or a closed port answering. */
export function differsFromPlan(result: FlowResult): boolean {
  return result.live !== 'untested' && !asPlanned(result);
}

/** "✗ haproxy-www → wordpress-1 10.132.0.12:80  planned open, live dropped (no answer within 2 s) — from haproxy-www's sshd" */
export function formatResult(result: FlowResult): string {
  const mark = result.live === 'untested' ? '?' : asPlanned(result) ? '✓' : result.flow.expect === 'open' ? '✗' : '!';
  return `${mark} ${describeFlow(result.flow)}  planned ${result.flow.expect}, live ${result.live} (${result.detail}) — from ${result.triedFrom}`;
}

/** A live check: the flows tried, and how many the plan has (more than tried when sampled). */
export interface LiveCheck {
  readonly results: readonly FlowResult[];
  readonly planned: number;
}

/** The closing line: how many flows were tried (of how many, when sampled), matched, differed, were not tried. */
export function summarizeResults({results, planned}: LiveCheck): string {
  const differ = results.filter(differsFromPlan).length;
  const untested = results.filter((result) => result.live === 'untested').length;
  const matched = results.length - differ - untested;
  const tried = planned > results.length ? `${results.length} of ${planned} flows tried (a sample, every host covered)` : `${results.length} flows tried`;
  return `${tried}: ${matched} as planned, ${differ} differ from the plan, ${untested} untested`;
}
