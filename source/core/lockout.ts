// Does the operator keep a way in? For each host, the path the operator's ssh takes (directly,
// or through a jump host of the fleet) must still allow a NEW connection to sshd, its replies,
// and the session that is open right now. Read from the compiled rules, like the access summary.

import {EPHEMERAL_PORT, INTERNET_ADDRESS, type FleetHost} from './access.js';
import {groupedRules} from './compiler.js';
import {addressFamily, canonicalAddress} from './addresses.js';
import {describeDecidedBy, evaluate, type Packet} from './evaluator.js';
import {parseAddress as parseIpAddress, type IpAddress} from './ip.js';
import {acceptedPortsOf, acceptsAt, chainViewAt, type ViewKind} from './port-sets.js';
import {parseSshDestination, sshPortOf, type Inventory} from './inventory.js';
import type {Family, HostFacts, Ruleset} from './model.js';
import {fleetSide} from './topology.js';

export interface OperatorPath {
  readonly host: string;
  /** The port sshd listens on for this path. */
  readonly port: number;
  /** The address ssh connects to on this host, when known (resolved destination). */
  readonly address?: string;
  readonly via:
    | {readonly kind: 'direct'; /** The operator's address as the host sees it ($SSH_CONNECTION); unknown offline. */ readonly source?: string}
    | {readonly kind: 'jump'; /** An inventory host. */ readonly jumpHost: string}
    /** The operator's ssh config says how, but not in a way this tool follows (e.g. a ProxyCommand). */
    | {readonly kind: 'unusable'; readonly reason: string};
}

export interface LockoutFinding {
  readonly host: string;
  /** error: the path would be cut. warning: it could not be fully checked. */
  readonly severity: 'error' | 'warning';
  readonly message: string;
  /** True when a representative internet address stood in for the operator's unknown one. */
  readonly assumed: boolean;
}

/** What the ssh layer resolved for a host (from ~/.ssh/config and the live session). */
export interface ResolvedSsh {
  readonly port?: number;
  /** The ProxyJump host, when it is an inventory host name. */
  readonly proxyJump?: string;
  /** The operator's address as the host sees it. */
  readonly source?: string;
  /** The address ssh connects to. */
  readonly address?: string;
  /** Why the ssh config cannot be followed for this host (its path is then not checked, and not dialled). */
  readonly unusable?: string;
}

const VERB: Record<string, string> = {DROP: 'dropped', REJECT: 'rejected'};

/**
 * True when the port-set view of this kind of SSH packet accepts it (false: ask the evaluator).
 * `own` is the ruleset's host's address on the hop, `peer` the other end's, `iface` the host's
 * interface the packet crosses; the varying port is sshd's, the fixed one the ephemeral port.
 */
function acceptedByView(ruleset: Ruleset, kind: ViewKind, iface: string | undefined, own: HopEnd, peer: HopEnd, sshPort: number): boolean {
  const view = own.ip && chainViewAt(ruleset, kind, 'tcp', iface, own.ip, EPHEMERAL_PORT);
  if (view === undefined) return false;
  // (A peer of another family: acceptsAt words the error.)
  if (!peer.ip || peer.ip.family !== view.family) return acceptsAt(view, peer.text, sshPort);
  const ports = acceptedPortsOf(view, peer.ip);
  for (let index = 0; index < ports.length; index += 2) {
    if (sshPort >= (ports[index] as number) && sshPort <= (ports[index + 1] as number)) return true;
  }
  return false;
}

/** An end of a hop: its address as written and as read (once per hop, not once per check). */
interface HopEnd {
  readonly text: string;
  readonly ip: IpAddress | undefined;
}

/** The host's grouped rules where the compiler made them (a rule per group of peers: read per set), else its rulesets. */
function rulesetOf(host: FleetHost, family: Family): Ruleset {
  const rules = groupedRules(host.compiled) ?? host.compiled;
  return family === 4 ? rules.v4 : rules.v6;
}

/**
 * The rules a packet from `peer` meets on the host: its grouped rules as packets from other
 * addresses than its own meet them (the same access; hosts differing only by their own address
 * share them, and so their views), unless `peer` is one of its own.
 */
function rulesetFrom(host: FleetHost, family: Family, peer: IpAddress | undefined): Ruleset {
  const grouped = groupedRules(host.compiled);
  if (!grouped || peer === undefined || holds(host, peer)) return rulesetOf(host, family);
  return family === 4 ? grouped.fromOthers.v4 : grouped.fromOthers.v6;
}

function holds(host: FleetHost, address: IpAddress): boolean {
  for (const text of [...host.facts.addresses.public, ...host.facts.addresses.private]) {
    const own = parseIpAddress(text);
    if (own && own.family === address.family && own.value === address.value) return true;
  }
  return false;
}

function sideHolding(facts: HostFacts, address: string | undefined): 'public' | 'private' | undefined {
  if (address === undefined) return undefined;
  const canonical = canonicalAddress(address) ?? address;
  if (facts.addresses.public.some((candidate) => (canonicalAddress(candidate) ?? candidate) === canonical)) return 'public';
  if (facts.addresses.private.some((candidate) => (canonicalAddress(candidate) ?? candidate) === canonical)) return 'private';
  return undefined;
}

function firstOfFamily(addresses: readonly string[], family: Family): string | undefined {
  return addresses.find((address) => addressFamily(address) === family);
}

interface Hop {
  readonly sourceLabel: string;
  readonly sourceAddress: string;
  readonly targetAddress: string;
  readonly targetInterface?: string;
  readonly family: Family;
  readonly jump?: {readonly host: FleetHost; readonly outInterface?: string};
}

/** The checks of a hop, in order: the jump host's two first (when there is one), then the target's. */
const JUMP_CHECKS: readonly ViewKind[] = ['request-out', 'reply-in'];
const TARGET_CHECKS: readonly ViewKind[] = ['request-in', 'reply-out', 'session-in'];

/** Checks one hop and returns findings (empty when the way in stays open). */
function checkHop(target: FleetHost, hop: Hop, port: number, assumed: boolean): LockoutFinding[] {
  const findings: LockoutFinding[] = [];
  // The port-set view answers most checks without a walk (and a defined view has nothing to
  // note); the evaluator runs when the way is shut, to say which rule shuts it. (Packets and
  // messages are only spelled out then.)
  const source: HopEnd = {text: hop.sourceAddress, ip: parseIpAddress(hop.sourceAddress)};
  const destination: HopEnd = {text: hop.targetAddress, ip: parseIpAddress(hop.targetAddress)};
  if (hop.jump) {
    for (const kind of JUMP_CHECKS) {
      if (!acceptedByView(rulesetFrom(hop.jump.host, hop.family, destination.ip), kind, hop.jump.outInterface, source, destination, port)) {
        judgeShut(target, hop, port, assumed, kind, findings);
      }
    }
  }
  for (const kind of TARGET_CHECKS) {
    if (!acceptedByView(rulesetFrom(target, hop.family, source.ip), kind, hop.targetInterface, destination, source, port)) {
      judgeShut(target, hop, port, assumed, kind, findings);
    }
  }
  return findings;
}

/** A check the view did not pass: the evaluator decides, and names the rule that shuts the way. */
function judgeShut(target: FleetHost, hop: Hop, port: number, assumed: boolean, kind: ViewKind, findings: LockoutFinding[]): void {
  const onJump = kind === 'request-out' || kind === 'reply-in';
  const jump = hop.jump;
  const host = onJump && jump ? jump.host : target;
  const base = {source: hop.sourceAddress, destination: hop.targetAddress, protocol: 'tcp', sourcePort: EPHEMERAL_PORT, destinationPort: port} as const;
  const reply = {source: hop.targetAddress, destination: hop.sourceAddress, protocol: 'tcp', sourcePort: port, destinationPort: EPHEMERAL_PORT, state: 'ESTABLISHED'} as const;
  const targetIn = hop.targetInterface === undefined ? {} : {inInterface: hop.targetInterface};
  const targetOut = hop.targetInterface === undefined ? {} : {outInterface: hop.targetInterface};
  const jumpOut = jump?.outInterface;
  let packet: Packet;
  switch (kind) {
    case 'request-out':
      packet = {...base, chain: 'OUTPUT', state: 'NEW', ...(jumpOut === undefined ? {} : {outInterface: jumpOut})};
      break;
    case 'reply-in':
      packet = {...reply, chain: 'INPUT', ...(jumpOut === undefined ? {} : {inInterface: jumpOut})};
      break;
    case 'request-in':
      packet = {...base, chain: 'INPUT', state: 'NEW', ...targetIn};
      break;
    case 'reply-out':
      packet = {...reply, chain: 'OUTPUT', ...targetOut};
      break;
    case 'session-in':
      packet = {...base, chain: 'INPUT', state: 'ESTABLISHED', ...targetIn};
      break;
  }
  const decision = evaluate(rulesetOf(host, hop.family), packet);
  for (const item of decision.uncertain) {
    findings.push({host: target.name, severity: 'warning', assumed, message: `${target.name}: the SSH check could not judge rule ${item.index + 1} of ${item.chain} on ${host.name} (${item.reason})`});
  }
  if (decision.verdict === 'ACCEPT') return;
  const note = assumed
    ? ' (assumed: your address is unknown offline, a representative internet address was used; if you reach it through a bastion, set "jump" in the inventory or ProxyJump in ~/.ssh/config)'
    : '';
  const verb = `${VERB[decision.verdict] ?? decision.verdict} by ${describeDecidedBy(decision.decidedBy)}`;
  const onInterface = hop.targetInterface === undefined ? '' : ` on ${hop.targetInterface}`;
  const who = `${hop.sourceLabel} (${hop.sourceAddress})`;
  const jumpName = jump?.host.name ?? '';
  let message: string;
  switch (kind) {
    case 'request-out':
      message = `${jumpName} could not open a new SSH connection to ${hop.targetAddress} tcp/${port}: its OUTPUT would have it ${verb} on ${jumpName}`;
      break;
    case 'reply-in':
      message = `the SSH replies to ${jumpName} would be ${verb} on ${jumpName}`;
      break;
    case 'request-in':
      message = `a new SSH connection from ${who}${onInterface} to tcp/${port} would be ${verb}`;
      break;
    case 'reply-out':
      message = `the SSH replies to ${who}${onInterface} would be ${verb}`;
      break;
    case 'session-in':
      message = `the open SSH session from ${who}${onInterface} would be cut: ${verb}`;
      break;
  }
  findings.push({host: target.name, severity: 'error', assumed, message: `${target.name}: ${message}${note}`});
}

function directHop(target: FleetHost, path: OperatorPath & {via: {kind: 'direct'}}): Hop | string {
  const {facts} = target;
  const source = path.via.source;
  const family: Family = addressFamily(source ?? '') ?? addressFamily(path.address ?? '') ??
    (firstOfFamily([...facts.addresses.public, ...facts.addresses.private], 4) !== undefined ? 4 : 6);
  const side = sideHolding(facts, path.address) ?? (facts.interfaces.public !== undefined ? 'public' : 'private');
  const targetAddress =
    (path.address !== undefined && addressFamily(path.address) === family ? path.address : undefined) ??
    firstOfFamily(facts.addresses[side], family) ??
    firstOfFamily([...facts.addresses.public, ...facts.addresses.private], family);
  if (targetAddress === undefined) return `it has no IPv${family} address to check the SSH path against`;
  const targetInterface = facts.interfaces[side];
  return {
    sourceLabel: source === undefined ? 'the internet' : 'your address',
    sourceAddress: source ?? INTERNET_ADDRESS[family],
    targetAddress,
    family,
    ...(targetInterface === undefined ? {} : {targetInterface}),
  };
}

function jumpHop(target: FleetHost, jump: FleetHost, address: string | undefined): Hop | string {
  const side = sideHolding(target.facts, address);
  // The jump host connects to the address ssh was given; else it takes the fleet's path.
  // (Only the path's side and its families matter here: the addresses need no canonical spelling.)
  const pathSide = fleetSide(jump, target);
  const chosenSide = side ?? pathSide;
  const toAddresses = target.facts.addresses[pathSide];
  const fromAddresses = jump.facts.addresses[pathSide];
  const family: Family = addressFamily(address ?? '') ??
    ([4, 6] as const).find((candidate) => firstOfFamily(toAddresses, candidate) !== undefined && firstOfFamily(fromAddresses, candidate) !== undefined) ?? 4;
  const targetAddress = (address !== undefined && addressFamily(address) === family ? address : undefined) ?? firstOfFamily(target.facts.addresses[chosenSide], family);
  const sourceSide = jump.facts.interfaces[chosenSide] !== undefined ? chosenSide : pathSide;
  const sourceAddress = firstOfFamily(jump.facts.addresses[sourceSide], family);
  if (targetAddress === undefined || sourceAddress === undefined) {
    return `${jump.name} and ${target.name} share no IPv${family} addresses on one network, so the jump cannot reach it`;
  }
  const targetInterface = target.facts.interfaces[chosenSide];
  const outInterface = jump.facts.interfaces[sourceSide];
  return {
    sourceLabel: jump.name,
    sourceAddress,
    targetAddress,
    family,
    ...(targetInterface === undefined ? {} : {targetInterface}),
    jump: {host: jump, ...(outInterface === undefined ? {} : {outInterface})},
  };
}

/**
 * Findings for every operator path whose SSH way in the compiled rules would cut. An empty
 * list means every path stays open (warnings list what could not be judged).
 */
export function checkLockout(hosts: readonly FleetHost[], paths: readonly OperatorPath[]): LockoutFinding[] {
  const byName = new Map(hosts.map((host) => [host.name, host]));
  const findings: LockoutFinding[] = [];
  for (const path of paths) {
    const target = byName.get(path.host);
    if (!target) continue; // not part of this plan: its firewall does not change
    let hop: Hop | string;
    let assumed = false;
    if (path.via.kind === 'unusable') {
      hop = `the path cannot be checked: ${path.via.reason}`;
    } else if (path.via.kind === 'direct') {
      assumed = path.via.source === undefined;
      hop = directHop(target, {...path, via: path.via});
    } else {
      const jump = byName.get(path.via.jumpHost);
      hop = jump
        ? jumpHop(target, jump, path.address)
        : `its jump host ${path.via.jumpHost} is not in this plan, so the path through it cannot be checked`;
    }
    if (typeof hop === 'string') {
      findings.push({host: path.host, severity: 'warning', assumed, message: `${path.host}: ${hop}`});
      continue;
    }
    findings.push(...checkHop(target, hop, path.port, assumed));
  }
  return findings;
}

function fleetHostName(names: ReadonlySet<string>, name: string | undefined): string | undefined {
  return name !== undefined && names.has(name) ? name : undefined;
}

/**
 * The operator's ssh path to every inventory host: through its jump host when that is an
 * inventory host (the ssh config's ProxyJump first, then the inventory's `jump`), else direct.
 * The port comes from the resolved ssh config, else the inventory's destination, else 22.
 */
export function operatorPaths(inv: Inventory, resolved?: ReadonlyMap<string, ResolvedSsh>): OperatorPath[] {
  const names = new Set(inv.hosts.map((host) => host.name)); // a lookup per host, not a scan
  return inv.hosts.map((host) => {
    const facts = resolved?.get(host.name);
    const destination = parseSshDestination(host.ssh);
    const address = facts?.address ?? (destination && addressFamily(destination.host) !== undefined ? destination.host : undefined);
    const port = facts?.port ?? sshPortOf(host) ?? 22;
    const jumpHost = fleetHostName(names, facts?.proxyJump) ?? (facts?.proxyJump === undefined ? fleetHostName(names, host.jump) : undefined);
    const via: OperatorPath['via'] = facts?.unusable !== undefined
      ? {kind: 'unusable', reason: facts.unusable}
      : jumpHost !== undefined
      ? {kind: 'jump', jumpHost}
      : {kind: 'direct', ...(facts?.source === undefined ? {} : {source: facts.source})};
    return {host: host.name, port, ...(address === undefined ? {} : {address}), via};
  });
}

/** One line per finding, for stderr or a screen. */
export function formatLockout(findings: readonly LockoutFinding[]): string[] {
  return findings.map((finding) => `${finding.severity === 'error' ? 'lockout' : 'warning'}: ${finding.message}`);
}
