// Inventory + facts -> one IPv4 and one IPv6 filter ruleset per host. Pure and deterministic:
// hosts follow the inventory's order, sources follow it too, and every rule's tokens are
// written exactly as iptables-save prints them back.
//
// The compiler first lists "grants" (who may open what on which host), then writes each
// host's INPUT from the grants it receives and, with strictOutbound, its OUTPUT from the
// grants it holds on its peers, so both ends agree by construction.
import {addressFamily, hostCidrOf, parseCidr, readAddress} from './addresses.js';
import {InputError} from './errors.js';
import {classifySource, INTERFACE_PATTERN, sshPortOf, type HostEntry, type Inventory, type SourceKind} from './inventory.js';
import type {
  Chain,
  CompiledHost,
  Family,
  HostFacts,
  Opening,
  PortRange,
  Protocol,
  RoleTemplate,
  Rule,
  Ruleset,
  Table,
} from './model.js';
import {addressSet, setSpec, type AddressSet} from './address-sets.js';
import {resolveRoles} from './roles.js';

/** The drop-logging chain. Never "LOG": that is a target, and `iptables -N LOG` fails. */
export const LOG_DROP_CHAIN = 'IW-LOG-DROP';
export const LOG_PREFIX = 'isolate-wizard DROP ';
/** multiport takes at most 15 ports per rule; a range counts as two. */
export const MULTIPORT_SLOTS = 15;

const ICMP_ESSENTIAL: readonly {type: number; name: string}[] = [
  {type: 3, name: 'destination-unreachable'},
  {type: 11, name: 'time-exceeded'},
  {type: 12, name: 'parameter-problem'},
  {type: 8, name: 'echo-request'},
];
const ICMPV6_ESSENTIAL: readonly {type: number; name: string}[] = [
  {type: 1, name: 'destination-unreachable'},
  {type: 2, name: 'packet-too-big'},
  {type: 3, name: 'time-exceeded'},
  {type: 4, name: 'parameter-problem'},
  {type: 128, name: 'echo-request'},
];
/** Neighbour discovery; only from the local link (hop limit 255), or IPv6 stops working at all. */
const ICMPV6_NEIGHBOUR_DISCOVERY: readonly {type: number; name: string}[] = [
  {type: 133, name: 'router-solicitation'},
  {type: 134, name: 'router-advertisement'},
  {type: 135, name: 'neighbour-solicitation'},
  {type: 136, name: 'neighbour-advertisement'},
];

const DHCPV6_REPLY = ['-s', 'fe80::/10', '-d', 'fe80::/10', '-p', 'udp', '-m', 'udp', '--sport', '547', '--dport', '546'];
const DHCPV6_REQUEST = ['-s', 'fe80::/10', '-p', 'udp', '-m', 'udp', '--sport', '546', '--dport', '547'];

const SERVICE_NAMES: Readonly<Record<string, string>> = {
  'tcp/22': 'ssh',
  'tcp/53': 'dns',
  'udp/53': 'dns',
  'tcp/80': 'http',
  'udp/123': 'ntp',
  'tcp/443': 'https',
  'tcp/3306': 'mysql',
  'tcp/5432': 'postgres',
  'tcp/6379': 'redis',
};

// ---------------------------------------------------------------------------
// Grants

/**
 * One reason to open something (a role's opening on its hosts, SSH from the bastions, a role's
 * peers, trustPrivate), shared by every host pair it applies to. A grant is one such template
 * applied to one receiving host (and one sending fleet host): the comments name the pair, so
 * the template holds how to write them, and the rules written for it, per path.
 */
interface GrantTemplate {
  /** Who may connect: anyone (on the receiver's public interface), a CIDR, or fleet hosts. */
  readonly source:
    | {readonly kind: 'any'}
    | {readonly kind: 'cidr'; readonly family: Family; readonly cidr: string}
    | {readonly kind: 'host'};
  /** undefined: every protocol (trustPrivate). */
  readonly proto: Protocol | undefined;
  /** undefined: every port. */
  readonly ports: readonly PortRange[] | undefined;
  /** The INPUT rule's comment, given the sending host's name, e.g. "lb haproxy-www -> app" + " http,https". */
  readonly inputText: (from: string) => Describe;
  /** The sender's OUTPUT rule comment, given the receiving host's name, e.g. "to wordpress-1 app" + " http,https". */
  readonly outputText: (to: string) => Describe;
  /** Rules written for this template, by sending host (undefined: not a fleet source) and path. */
  readonly inputRecipes: Map<HostContext | undefined, Recipe[]>;
  /** OUTPUT rules written for this template, by receiving host and path (made when first needed: strictOutbound only). */
  outputRecipes: Map<HostContext, Recipe[]> | undefined;
}

type Side = 'public' | 'private';

/**
 * One template applied to one host pair: what writing a recipe's rules needs. Only the first
 * grant of each recipe is kept (as its writer); a host's rulesets list recipes, not grants.
 */
class Grant {
  constructor(
    readonly template: GrantTemplate,
    readonly to: HostContext,
    /** The sending fleet host; undefined for an internet or CIDR source. */
    readonly from: HostContext | undefined,
    /** The fleet path's side: private when both hosts have a private interface. */
    readonly side: Side,
  ) {}
}

function template(
  source: GrantTemplate['source'],
  proto: Protocol | undefined,
  ports: readonly PortRange[] | undefined,
  inputText: (from: string) => Describe,
  outputText: (to: string) => Describe,
): GrantTemplate {
  // (Every template has every field, undefined or not: one object shape for all of them.)
  return {source, proto, ports, inputText, outputText, inputRecipes: new Map(), outputRecipes: undefined};
}

/**
 * A rule comment, given its ports' label: "arrow" is `${label} ${ports}`, "ssh" names the
 * bastion in `label`, "fixed" is the label alone.
 */
interface Describe {
  readonly form: 'arrow' | 'ssh' | 'fixed';
  readonly label: string;
}
const arrow = (label: string): Describe => ({form: 'arrow', label});
const sshFrom = (bastion: string): Describe => ({form: 'ssh', label: bastion});
const fixed = (text: string): Describe => ({form: 'fixed', label: text});
/** Output comments of templates that never write OUTPUT rules (sources that are not fleet hosts). */
const NO_OUTPUT = arrow('');

function describe(text: Describe, ports: string): string {
  switch (text.form) {
    case 'arrow':
      return `${text.label} ${ports}`;
    case 'ssh':
      return ports === 'ssh' ? `ssh from bastion ${text.label}` : `ssh from bastion ${text.label} (${ports})`;
    case 'fixed':
      return text.label;
  }
}

interface HostContext {
  readonly entry: HostEntry;
  readonly facts: HostFacts;
  readonly sshPort: number;
  /** Its place in the compiled hosts (inventory order). */
  readonly index: number;
  /** The grants this host receives, in grant order: from no host or one, or from each host of a group. */
  readonly calls: GrantCall[];
}

/**
 * A grant as collected: of `reason`, from no fleet host (internet, CIDR) or one over `side`, or
 * from every host of `group` but the receiver (each over its own path, see pairSide).
 */
type GrantCall =
  | {readonly reason: GrantTemplate; readonly from: HostContext | undefined; readonly side: Side; readonly group?: undefined}
  | {readonly reason: GrantTemplate; readonly group: HostGroup};

/**
 * Fleet hosts a grant comes from as one: a role's hosts, or the whole fleet. A receiver with a
 * private interface reaches those with one over the private side and the others over the public
 * side (pairSide), so each side gets its own set of addresses.
 */
interface HostGroup {
  /** Names the group's sets: the role's name, or "fleet". */
  readonly label: string;
  readonly members: readonly HostContext[];
  readonly memberSet: ReadonlySet<HostContext>;
  readonly withPrivate: readonly HostContext[];
  readonly withoutPrivate: readonly HostContext[];
  /** Members lacking addresses on a side: the only ones a receiver with addresses on both sides has no path from. */
  readonly lacking: readonly HostContext[];
  /** Its address sets, by partition and family, once made. */
  readonly sets: Map<string, {set: AddressSet; holders: Map<string, number>}>;
}

function hostGroup(label: string, members: readonly HostContext[]): HostGroup {
  return {
    label,
    members,
    memberSet: new Set(members),
    withPrivate: members.filter((member) => member.facts.interfaces.private !== undefined),
    withoutPrivate: members.filter((member) => member.facts.interfaces.private === undefined),
    lacking: members.filter((member) => member.facts.addresses.public.length === 0 || member.facts.addresses.private.length === 0),
    sets: new Map(),
  };
}

/** The side of the path from one fleet host to another: private when both have a private interface. */
function pairSide(from: HostContext, to: HostContext): Side {
  return from.facts.interfaces.private !== undefined && to.facts.interfaces.private !== undefined ? 'private' : 'public';
}

function hasPath(from: HostContext, to: HostContext, side: Side): boolean {
  return from.facts.addresses[side].length > 0 && to.facts.addresses[side].length > 0;
}

function portsLabel(proto: Protocol | undefined, ports: readonly PortRange[] | undefined): string {
  if (proto === undefined) return 'all';
  if (ports === undefined) return `${proto}/all`;
  const label = ports
    .map((range) =>
      range.first === range.last
        ? (SERVICE_NAMES[`${proto}/${range.first}`] ?? `${proto}/${range.first}`)
        : `${proto}/${range.first}-${range.last}`,
    )
    .join(',');
  // A comment holds at most 256 characters; a long port list is summarised.
  return label.length > 100 ? `${proto} ${ports.length} port ranges` : label;
}

/** Sorted, overlapping and adjacent ranges merged: fewer rules, same access. */
export function mergePortRanges(ranges: readonly PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.first - b.first || a.last - b.last);
  const merged: PortRange[] = [];
  for (const range of sorted) {
    const previous = merged[merged.length - 1];
    if (previous && range.first <= previous.last + 1) {
      merged[merged.length - 1] = {first: previous.first, last: Math.max(previous.last, range.last)};
    } else {
      merged.push(range);
    }
  }
  return merged;
}

/** Splits ranges into groups that fit one multiport rule (15 slots, a range takes two). */
export function chunkPorts(ranges: readonly PortRange[]): PortRange[][] {
  const chunks: PortRange[][] = [];
  let current: PortRange[] = [];
  let used = 0;
  for (const range of ranges) {
    const cost = range.first === range.last ? 1 : 2;
    if (used + cost > MULTIPORT_SLOTS) {
      chunks.push(current);
      current = [];
      used = 0;
    }
    current.push(range);
    used += cost;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

function portText(range: PortRange): string {
  return range.first === range.last ? String(range.first) : `${range.first}:${range.last}`;
}

/** `-p tcp -m tcp --dport 80` or `-p tcp -m multiport --dports 80,443,8000:8100`. */
function protoPortTokens(proto: Protocol | undefined, ports: readonly PortRange[] | undefined): string[] {
  if (proto === undefined) return [];
  if (ports === undefined) return ['-p', proto];
  const only = ports.length === 1 ? ports[0] : undefined;
  if (only) return ['-p', proto, '-m', proto, '--dport', portText(only)];
  return ['-p', proto, '-m', 'multiport', '--dports', ports.map(portText).join(',')];
}

/** The kernel keeps at most 255 characters of a comment; a longer one would fail the whole restore. */
export const MAX_COMMENT_LENGTH = 255;

function comment(text: string): string[] {
  return ['-m', 'comment', '--comment', text.length > MAX_COMMENT_LENGTH ? text.slice(0, MAX_COMMENT_LENGTH) : text];
}

const NEW = ['-m', 'conntrack', '--ctstate', 'NEW'];

// ---------------------------------------------------------------------------

class Compilation {
  readonly problems: string[] = [];
  readonly warnings = new Map<string, string[]>();
  readonly hosts: HostContext[] = [];
  readonly byName = new Map<string, HostContext>();
  readonly roles: ReadonlyMap<string, RoleTemplate>;
  private readonly roleNames: ReadonlySet<string>;
  private readonly hostNames = new Set<string>();
  private readonly sources = new Map<string, ReturnType<typeof classifySource>>();
  /** Hosts per role, in inventory order (built once: looking them up per host would be quadratic). */
  private readonly membersOf = new Map<string, HostContext[]>();
  private readonly groups = new Map<string, HostGroup>();
  private everyHost: HostGroup | undefined;
  /** Templates, built once per reason and shared by the hosts it applies to. */
  private readonly openingTemplates = new Map<Opening, Map<string, GrantTemplate>>();
  private readonly sshTemplates = new Map<number, GrantTemplate>();
  private readonly peerTemplates = new Map<string, GrantTemplate>();
  private readonly trustTemplate = template(
    {kind: 'host'},
    undefined,
    undefined,
    (from) => fixed(`trust fleet ${from}`),
    (to) => fixed(`to ${to} trusted`),
  );

  constructor(
    readonly inv: Inventory,
    facts: ReadonlyMap<string, HostFacts>,
  ) {
    this.roles = resolveRoles(inv);
    for (const entry of inv.hosts) {
      const hostFacts = facts.get(entry.name);
      if (!hostFacts) {
        this.problems.push(
          `${entry.name}: no interfaces or addresses known (discover it, or give "interfaces" and "addresses" in the inventory)`,
        );
        continue;
      }
      if (!this.checkFacts(entry.name, hostFacts)) continue;
      const sshPort = hostFacts.sshPort ?? sshPortOf(entry) ?? 22;
      const context: HostContext = {entry, facts: hostFacts, sshPort, index: this.hosts.length, calls: []};
      this.hosts.push(context);
      this.byName.set(entry.name, context);
      this.hostNames.add(entry.name);
      for (let index = 0; index < entry.roles.length; index += 1) {
        const role = entry.roles[index] as string;
        if (entry.roles.indexOf(role) !== index) continue; // listed twice (validation refuses it)
        const members = this.membersOf.get(role);
        if (members) members.push(context);
        else this.membersOf.set(role, [context]);
      }
    }
    this.roleNames = new Set(this.roles.keys());
  }

  /** A grant of `reason` to `to` (from a fleet host, or from no host for internet and CIDR sources). */
  addGrant(reason: GrantTemplate, to: HostContext, from: HostContext | undefined, side: Side): void {
    to.calls.push({reason, from, side});
  }

  /** A grant of `reason` to `to` from every other host of `group`; the pairs with no path warned about now. */
  grantFromGroup(to: HostContext, group: HostGroup, reason: GrantTemplate): void {
    to.calls.push({reason, group});
    // The members `to` may have no path from: those lacking addresses on a side, and, when `to`
    // lacks them on a side, every member reached over it.
    let suspects: readonly HostContext[] = group.lacking;
    const toPrivate = to.facts.interfaces.private !== undefined;
    if (toPrivate && to.facts.addresses.private.length === 0) suspects = group.members;
    else if (to.facts.addresses.public.length === 0) suspects = toPrivate ? [...group.lacking, ...group.withoutPrivate].sort((a, b) => a.index - b.index) : group.members;
    let previous: HostContext | undefined;
    for (const from of suspects) {
      if (from === to || from === previous) continue;
      previous = from;
      if (!hasPath(from, to, pairSide(from, to))) this.warnNoPath(to, from, reason);
    }
  }

  private warnNoPath(to: HostContext, from: HostContext, reason: GrantTemplate): void {
    this.warn(
      to.entry.name,
      `no network path from ${from.entry.name} (the two hosts share no interface side with addresses): "${describe(reason.inputText(from.entry.name), portsLabel(reason.proto, reason.ports))}" opens nothing`,
    );
  }

  /** The role's hosts as a group (one object per role: its sets are shared by every receiver). */
  roleGroup(role: string): HostGroup {
    let group = this.groups.get(role);
    if (!group) this.groups.set(role, (group = hostGroup(role, this.hostsWithRole(role))));
    return group;
  }

  /** Every fleet host as a group ("private" sources, trustPrivate). */
  fleetGroup(): HostGroup {
    return (this.everyHost ??= hostGroup('fleet', this.hosts));
  }

  private checkFacts(name: string, facts: HostFacts): boolean {
    const before = this.problems.length;
    const {public: publicInterface, private: privateInterface} = facts.interfaces;
    if (publicInterface === undefined && privateInterface === undefined) {
      this.problems.push(`${name}: neither a public nor a private interface is known`);
    }
    if (publicInterface !== undefined && publicInterface === privateInterface) {
      this.problems.push(`${name}: interface "${publicInterface}" is both public and private`);
    }
    // (Indexed loops: this runs once per host, mostly before the optimizer has seen it.)
    for (let index = 0; index < 2; index += 1) {
      const interfaceName = index === 0 ? publicInterface : privateInterface;
      if (interfaceName !== undefined && (interfaceName === 'lo' || !INTERFACE_PATTERN.test(interfaceName))) {
        this.problems.push(`${name}: "${interfaceName}" cannot be a public or private interface`);
      }
    }
    for (let index = 0; index < SIDES.length; index += 1) {
      const side = SIDES[index] as Side;
      const addresses = facts.addresses[side];
      for (let at = 0; at < addresses.length; at += 1) {
        const address = addresses[at] as string;
        if (addressFamily(address) === undefined) this.problems.push(`${name}: "${address}" is not an address`);
      }
      if (addresses.length > 0 && facts.interfaces[side] === undefined) {
        this.problems.push(`${name}: ${side} addresses but no ${side} interface`);
      }
    }
    return this.problems.length === before;
  }

  /** Notes a warning for a fleet host (once per message); most hosts have none, and get no list. */
  warn(host: string, message: string): void {
    const list = this.warnings.get(host);
    if (!list) this.warnings.set(host, [message]);
    else if (!list.includes(message)) list.push(message);
  }

  hostsWithRole(role: string): readonly HostContext[] {
    return this.membersOf.get(role) ?? [];
  }

  /** One grant from a fleet source host, over the path between the two (see fleetPath). */
  grantFromHost(to: HostContext, from: HostContext, reason: GrantTemplate): void {
    const side = pairSide(from, to);
    if (!hasPath(from, to, side)) {
      this.warnNoPath(to, from, reason);
      return;
    }
    this.addGrant(reason, to, from, side);
  }

  /** classifySource, once per source text (every host of a role has the same openings). */
  private classify(from: string): ReturnType<typeof classifySource> {
    let source = this.sources.get(from);
    if (!source) {
      source = classifySource(from, this.roleNames, this.hostNames);
      this.sources.set(from, source);
    }
    return source;
  }

  /** The template of an opening (a role's or an allow entry's) under its target's name. */
  private openingTemplate(opening: Opening, target: string, source: SourceKind): GrantTemplate {
    let byTarget = this.openingTemplates.get(opening);
    if (!byTarget) this.openingTemplates.set(opening, (byTarget = new Map()));
    let reason = byTarget.get(target);
    if (!reason) {
      const ports = mergedPorts(opening.ports);
      const outputText = (to: string): Describe => arrow(`to ${to} ${target}`);
      switch (source.kind) {
        case 'internet':
          reason = template({kind: 'any'}, opening.proto, ports, () => arrow(`internet -> ${target}`), () => NO_OUTPUT);
          break;
        case 'cidr':
          reason = template(
            {kind: 'cidr', family: source.family, cidr: source.cidr},
            opening.proto,
            ports,
            () => arrow(`${source.cidr} -> ${target}`),
            () => NO_OUTPUT,
          );
          break;
        case 'private':
          reason = template({kind: 'host'}, opening.proto, ports, (from) => arrow(`private ${from} -> ${target}`), outputText);
          break;
        case 'role':
          reason = template({kind: 'host'}, opening.proto, ports, (from) => arrow(`${source.role} ${from} -> ${target}`), outputText);
          break;
        case 'host':
          reason = template({kind: 'host'}, opening.proto, ports, () => arrow(`${source.host} -> ${target}`), outputText);
          break;
      }
      byTarget.set(target, reason);
    }
    return reason;
  }

  /** A role's or an allow entry's opening on one host. */
  grantOpening(to: HostContext, opening: Opening, target: string): void {
    const name = to.entry.name;
    const source = this.classify(opening.from);
    if (source.kind === 'invalid') {
      // validateInventory refuses these; a hand-built Inventory could still carry one.
      this.problems.push(`${name}: ${target}: ${source.reason}`);
      return;
    }
    const reason = this.openingTemplate(opening, target, source);
    switch (source.kind) {
      case 'internet':
        if (to.facts.interfaces.public === undefined) {
          this.warn(
            name,
            `${target} accepts ${portsLabel(opening.proto, reason.ports)} from the internet, but the host has no public interface: the rule is bound to no interface`,
          );
        }
        this.addGrant(reason, to, undefined, 'public');
        return;
      case 'cidr':
        this.addGrant(reason, to, undefined, 'public');
        return;
      case 'private':
        this.grantFromGroup(to, this.fleetGroup(), reason);
        return;
      case 'role': {
        const members = this.hostsWithRole(source.role);
        if (members.length === 0 || (members.length === 1 && members[0] === to)) {
          this.warn(name, `${target} accepts from role ${source.role}, but no other host has that role`);
        }
        this.grantFromGroup(to, this.roleGroup(source.role), reason);
        return;
      }
      case 'host': {
        const from = this.byName.get(source.host);
        if (from === to) {
          this.warn(name, `${target} accepts from ${source.host}, the host itself: nothing to open`);
          return;
        }
        if (from) this.grantFromHost(to, from, reason);
        return;
      }
    }
  }

  /** SSH from the bastions to a host whose sshd listens on `port`. */
  private sshTemplate(port: number): GrantTemplate {
    let reason = this.sshTemplates.get(port);
    if (!reason) {
      reason = template({kind: 'host'}, 'tcp', [{first: port, last: port}], sshFrom, (to) => arrow(`to ${to}`));
      this.sshTemplates.set(port, reason);
    }
    return reason;
  }

  /** Between the hosts of one role, on its peer ports. */
  private peerTemplate(roleName: string, role: RoleTemplate): GrantTemplate {
    let reason = this.peerTemplates.get(roleName);
    if (!reason) {
      reason = template(
        {kind: 'host'},
        role.peersProto,
        mergedPorts(role.peers),
        (from) => arrow(`${roleName} peer ${from} ->`),
        (to) => arrow(`to ${to} ${roleName} peer`),
      );
      this.peerTemplates.set(roleName, reason);
    }
    return reason;
  }

  collectGrants(): void {
    const options = this.inv.options;
    const bastions = this.hostsWithRole('bastion');
    for (let hostIndex = 0; hostIndex < this.hosts.length; hostIndex += 1) {
      const host = this.hosts[hostIndex] as HostContext;
      const name = host.entry.name;

      // The operator's way in: SSH from every bastion over the fleet path.
      if (bastions.length === 0) {
        this.warn(name, 'no host has the bastion role: nothing opens SSH to this host except its own allow entries');
      }
      if (bastions.length > 0) this.grantFromGroup(host, this.roleGroup('bastion'), this.sshTemplate(host.sshPort));

      if (options.trustPrivate) {
        if (host.facts.interfaces.private === undefined) {
          this.warn(name, 'trustPrivate: no private interface, so fleet hosts are trusted on the public side');
        }
        this.grantFromGroup(host, this.fleetGroup(), this.trustTemplate);
      }

      // (Indexed loops here and below: they run per host, mostly before the optimizer has seen
      // them, and an unoptimized for-of allocates per step.)
      const roleNames = host.entry.roles;
      for (let index = 0; index < roleNames.length; index += 1) {
        const roleName = roleNames[index] as string;
        const role = this.roles.get(roleName);
        if (!role) {
          this.problems.push(`${name}: unknown role "${roleName}"`);
          continue;
        }
        for (let at = 0; at < role.accept.length; at += 1) this.grantOpening(host, role.accept[at] as Opening, roleName);
        if (roleName === 'bastion') this.keepBastionSshPort(host, role);
        if (role.peers.length > 0) this.grantFromGroup(host, this.roleGroup(roleName), this.peerTemplate(roleName, role));
      }

      const allows = host.entry.allow;
      for (let index = 0; index < allows.length; index += 1) this.grantOpening(host, allows[index] as Opening, name);
    }
  }

  /** A bastion whose sshd listens elsewhere than 22 must stay reachable on that port from the internet. */
  private keepBastionSshPort(host: HostContext, role: RoleTemplate): void {
    const covered = role.accept.some(
      (opening) =>
        opening.from === 'internet' &&
        opening.proto === 'tcp' &&
        opening.ports.some((range) => range.first <= host.sshPort && host.sshPort <= range.last),
    );
    if (covered) return;
    this.warn(host.entry.name, `bastion: also opening its ssh port ${host.sshPort} to the internet (sshd listens there)`);
    this.grantOpening(host, {ports: [{first: host.sshPort, last: host.sshPort}], proto: 'tcp', from: 'internet'}, 'bastion ssh');
  }
}

const SIDES = ['public', 'private'] as const;

/** mergePortRanges of an opening's ports, once per list (the same opening applies to many hosts). */
const mergedPortsCache = new WeakMap<readonly PortRange[], readonly PortRange[]>();

function mergedPorts(ranges: readonly PortRange[]): readonly PortRange[] {
  let merged = mergedPortsCache.get(ranges);
  if (!merged) {
    // (A list already sorted and apart, as most are, merges to itself.)
    merged = isMerged(ranges) ? ranges : mergePortRanges(ranges);
    mergedPortsCache.set(ranges, merged);
  }
  return merged;
}

/** Whether mergePortRanges would give the ranges back as they are: sorted, none overlapping or adjacent. */
function isMerged(ranges: readonly PortRange[]): boolean {
  for (let index = 0; index < ranges.length; index += 1) {
    const range = ranges[index] as PortRange;
    if (range.first > range.last) return false;
    if (index > 0 && range.first <= (ranges[index - 1] as PortRange).last + 1) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Rules

/**
 * A grant rule ready for rulesets: the shared rule, and its match (every grant rule reads
 * `[...match, -m comment --comment TEXT, -j ACCEPT]`, so rules with one match differ only by comment).
 */
interface KeyedRule {
  readonly match: GrantMatch;
  readonly rule: Rule;
}

/**
 * One chain and match of grant rules: the rules written with it, by comment, shared by every
 * ruleset of the process (readers cache what they learn from a spec by its identity), and the
 * last ruleset that took one of them (see buildRuleset: rules identical but for their comment
 * add nothing, a ruleset keeps the first).
 */
class GrantMatch {
  takenBy = 0;
  /** The first rule written with this match (most matches only ever have one comment). */
  readonly first: KeyedRule;
  /** Rules with other comments, by comment. */
  others?: Map<string, KeyedRule>;

  constructor(
    rule: Rule,
    readonly firstComment: string,
  ) {
    this.first = {match: this, rule};
  }
}

/**
 * The grant rules of one chain, interface (`-i` in INPUT, `-o` in OUTPUT; or none) and port chunk:
 * their matches by address (`-s` in INPUT, `-d` in OUTPUT; or none). Every rule of a recipe's
 * chunk is in one group, so a rule is found by its address alone (a string read before, its hash
 * known), with no key spelled per rule.
 */
interface MatchGroup {
  readonly chain: 'INPUT' | 'OUTPUT';
  readonly interfaceName: string | undefined;
  readonly tail: readonly string[];
  readonly byAddress: Map<string, GrantMatch>;
  /** The group's spec with a blank address and comment (see specOf), and without an address. */
  withAddress?: readonly string[];
  withoutAddress?: readonly string[];
}

/**
 * Match groups by `${chain}\0${interface}${tailKey}`. Bounded, but only emptied between
 * compilations (see compileFleet), so that within one, rules with the same match share one
 * GrantMatch and the duplicate check holds.
 */
const matchGroups = new Map<string, MatchGroup>();
let grantRulesKept = 0;
const GRANT_RULES_KEPT_AT_MOST = 200_000;
/** Stands for a missing address or interface in keys (never part of a token). */
const NONE = '\u0003';

function matchGroup(chain: 'INPUT' | 'OUTPUT', interfaceName: string | undefined, chunk: PortChunk): MatchGroup {
  const key = `${chain}\u0000${interfaceName ?? NONE}${chunk.tailKey}`;
  let group = matchGroups.get(key);
  if (!group) matchGroups.set(key, (group = {chain, interfaceName, tail: chunk.tail, byAddress: new Map()}));
  return group;
}

/** The grant rule of the group matching `address` (none when undefined), with its comment. */
function keyedGrantRule(group: MatchGroup, address: string | undefined, comment: string): KeyedRule {
  const text = comment.length > MAX_COMMENT_LENGTH ? comment.slice(0, MAX_COMMENT_LENGTH) : comment;
  const match = group.byAddress.get(address ?? NONE);
  if (!match) {
    const first = writeGrantRule(group, address, text, undefined);
    group.byAddress.set(address ?? NONE, first.match);
    return first;
  }
  if (match.firstComment === text) return match.first;
  let keyed = match.others?.get(text);
  if (!keyed) {
    keyed = writeGrantRule(group, address, text, match);
    (match.others ??= new Map()).set(text, keyed);
  }
  return keyed;
}

/** A new grant rule (see keyedGrantRule), with its match, or a new one when `match` is undefined. */
function writeGrantRule(group: MatchGroup, address: string | undefined, text: string, match: GrantMatch | undefined): KeyedRule {
  const rule: Rule = {chain: group.chain, spec: specOf(group, address, text)};
  grantRulesKept += 1;
  return match ? {match, rule} : new GrantMatch(rule, text).first;
}

/**
 * `[-s ADDRESS] [-i INTERFACE] ...tail -m comment --comment TEXT -j ACCEPT` (`-d`, `-o` in OUTPUT):
 * a copy of the group's spec with the blanks filled, at its size in one go.
 */
function specOf(group: MatchGroup, address: string | undefined, text: string): string[] {
  const input = group.chain === 'INPUT';
  let model = address === undefined ? group.withoutAddress : group.withAddress;
  if (!model) {
    const head = address === undefined ? [] : [input ? '-s' : '-d', ''];
    if (group.interfaceName !== undefined) head.push(input ? '-i' : '-o', group.interfaceName);
    model = head.concat(group.tail, ['-m', 'comment', '--comment', '', '-j', 'ACCEPT']);
    if (address === undefined) group.withoutAddress = model;
    else group.withAddress = model;
  }
  const spec = model.slice();
  if (address !== undefined) spec[1] = address;
  spec[spec.length - 3] = text;
  return spec;
}

/** Tails (`-p ...` to the state match) by their tokens joined, numbered; few per fleet, kept for the process. */
const tailNumbers = new Map<string, string>();

function tailKeyOf(tail: readonly string[]): string {
  const joined = tail.join('\u0000');
  let key = tailNumbers.get(joined);
  if (key === undefined) {
    // (\u0002: never part of a token, so a key cannot read as part of an interface name.)
    key = `\u0002${tailNumbers.size}`;
    tailNumbers.set(joined, key);
  }
  return key;
}

/** A template's ports split into multiport-sized chunks, each with its label and its tokens up to the comment. */
interface PortChunk {
  readonly label: string;
  /** `-p ... --dport(s) ...` then the NEW state match. */
  readonly tail: readonly string[];
  /** Names the tail's tokens in match keys. */
  readonly tailKey: string;
}

const portChunksCache = new WeakMap<GrantTemplate, readonly PortChunk[]>();

/**
 * Port chunks by protocol and ports (`tcp 80-80 443-443`): the templates of a fleet's many roles
 * open few distinct port lists. Kept for the process (bounded).
 */
const portChunksByPorts = new Map<string, readonly PortChunk[]>();

/** The template's port chunks: the same for every recipe of the template, so built once. */
function portChunks(reason: GrantTemplate): readonly PortChunk[] {
  let chunks = portChunksCache.get(reason);
  if (!chunks) {
    let key = reason.proto ?? 'all';
    const ranges = reason.ports;
    for (let index = 0; ranges && index < ranges.length; index += 1) {
      const range = ranges[index] as PortRange;
      key += ` ${range.first}-${range.last}`;
    }
    chunks = portChunksByPorts.get(key);
    if (!chunks) {
      const groups = ranges === undefined ? [undefined] : chunkPorts(ranges);
      chunks = groups.map((ports) => {
        const tail = protoPortTokens(reason.proto, ports).concat(NEW);
        return {label: portsLabel(reason.proto, ports), tail, tailKey: tailKeyOf(tail)};
      });
      if (portChunksByPorts.size >= 10_000) portChunksByPorts.clear();
      portChunksByPorts.set(key, chunks);
    }
    portChunksCache.set(reason, chunks);
  }
  return chunks;
}

/** A recipe's rules per family: written for both at once (they share all but addresses). */
interface FamilyRules {
  readonly v4: readonly KeyedRule[];
  readonly v6: readonly KeyedRule[];
}

/** A grant's rules per family as they are written (a family's list is made at its first rule: most recipes write one). */
class FamilyRulesWritten {
  private v4: KeyedRule[] | undefined;
  private v6: KeyedRule[] | undefined;

  add(family: Family, rule: KeyedRule): void {
    const list = family === 4 ? this.v4 : this.v6;
    if (list) list.push(rule);
    else if (family === 4) this.v4 = [rule];
    else this.v6 = [rule];
  }

  /** One rule of the group per address of a host (fleetPath's addresses), each as its canonical host CIDR. */
  addPerAddress(group: MatchGroup, addresses: readonly string[], text: string): void {
    for (let at = 0; at < addresses.length; at += 1) {
      const reading = readAddress(addresses[at] as string);
      if (reading !== undefined) this.add(reading.family, keyedGrantRule(group, hostCidrOf(reading), text));
    }
  }

  done(): FamilyRules {
    return {v4: this.v4 ?? NO_KEYED_RULES, v6: this.v6 ?? NO_KEYED_RULES};
  }
}
const NO_KEYED_RULES: readonly KeyedRule[] = [];

/** INPUT rules of one grant (a family gets none when it has nothing to match). */
function inputRules(grant: Grant, inInterface: string | undefined): FamilyRules {
  const reason = grant.template;
  const rules = new FamilyRulesWritten();
  const source = reason.source;
  const from = grant.from;
  const chunks = portChunks(reason);
  for (let index = 0; index < chunks.length; index += 1) {
    const chunk = chunks[index] as PortChunk;
    const text = describe(reason.inputText(from?.entry.name ?? ''), chunk.label);
    if (source.kind === 'any') {
      const rule = keyedGrantRule(matchGroup('INPUT', inInterface, chunk), undefined, text);
      rules.add(4, rule);
      rules.add(6, rule);
    } else if (source.kind === 'cidr') {
      const everything = parseCidr(source.cidr)?.prefix === 0; // iptables-save omits "-s 0.0.0.0/0"
      rules.add(source.family, keyedGrantRule(matchGroup('INPUT', undefined, chunk), everything ? undefined : source.cidr, text));
    } else if (from) {
      // fleetPath's fromAddresses (its side is the grant's).
      rules.addPerAddress(matchGroup('INPUT', inInterface, chunk), from.facts.addresses[grant.side], text);
    }
  }
  return rules.done();
}

/** OUTPUT rules on the sending host for a grant it holds on a peer. */
function outputRules(grant: Grant, outInterface: string | undefined): FamilyRules {
  if (!grant.from) return {v4: NO_KEYED_RULES, v6: NO_KEYED_RULES};
  const reason = grant.template;
  const rules = new FamilyRulesWritten();
  const chunks = portChunks(reason);
  for (let index = 0; index < chunks.length; index += 1) {
    const chunk = chunks[index] as PortChunk;
    // fleetPath's toAddresses.
    rules.addPerAddress(matchGroup('OUTPUT', outInterface, chunk), grant.to.facts.addresses[grant.side], describe(reason.outputText(grant.to.entry.name), chunk.label));
  }
  return rules.done();
}

// ---------------------------------------------------------------------------
// Grant rules, written once per recipe
//
// A fleet repeats itself: every host gets "ssh from bastion-1" over the same path, every
// database of a cluster the same rule per app server. Grants of one template whose rules
// would read the same share one written, keyed list (a recipe): the tokens are built and keyed
// once per recipe, not once per host. What the rules depend on besides the template: INPUT,
// the sending host's addresses on the path's side and the receiver's interface there (for an
// internet source, its public interface); OUTPUT, the receiver's addresses on the side and
// the sender's interface there.

/** The written rules of one template over one path. */
interface Recipe {
  /** Names the recipe in the keys of hosts' rule lists (see compileFleet). */
  readonly id: number;
  /** The fleet path's side (fleet sources only). */
  readonly side: Side;
  /** `-i` of INPUT rules, or `-o` of OUTPUT rules. */
  readonly interface: string | undefined;
  /** The first grant that needed the recipe: the rules are written from it. */
  readonly writer: Grant;
  /** Written when a ruleset first needs them. */
  rules: FamilyRules | undefined;
}

/** The recipe of a template over a path: `host` is the sender for INPUT rules, the receiver for OUTPUT ones. */
function recipeFor<Host>(
  recipes: Map<Host, Recipe[]>,
  host: Host,
  side: Side,
  interfaceName: string | undefined,
  reason: GrantTemplate,
  to: HostContext,
  from: HostContext | undefined,
): Recipe {
  let list = recipes.get(host);
  if (!list) recipes.set(host, (list = []));
  for (const recipe of list) {
    if (recipe.side === side && recipe.interface === interfaceName) return recipe;
  }
  const recipe: Recipe = {id: nextRecipeId++, side, interface: interfaceName, writer: new Grant(reason, to, from, side), rules: undefined};
  list.push(recipe);
  return recipe;
}
let nextRecipeId = 0;

function recipeInputRules(recipe: Recipe, family: Family): readonly KeyedRule[] {
  recipe.rules ??= inputRules(recipe.writer, recipe.interface);
  return family === 4 ? recipe.rules.v4 : recipe.rules.v6;
}

function recipeOutputRules(recipe: Recipe, family: Family): readonly KeyedRule[] {
  recipe.rules ??= outputRules(recipe.writer, recipe.interface);
  return family === 4 ? recipe.rules.v4 : recipe.rules.v6;
}

const icmpRulesCache = new Map<Family, readonly (readonly string[])[]>();

/**
 * The essential ICMP rules of a family: the same for every host, so built once and shared (specs
 * are read-only; readers cache what they learn from a spec by its identity).
 */
function icmpRules(family: Family): readonly (readonly string[])[] {
  let rules = icmpRulesCache.get(family);
  if (!rules) {
    rules = buildIcmpRules(family);
    icmpRulesCache.set(family, rules);
  }
  return rules;
}

function buildIcmpRules(family: Family): string[][] {
  if (family === 4) {
    return ICMP_ESSENTIAL.map(({type, name}) => [
      '-p', 'icmp', '-m', 'icmp', '--icmp-type', String(type), ...comment(`icmp ${name}`), '-j', 'ACCEPT',
    ]);
  }
  return [
    ...ICMPV6_ESSENTIAL.map(({type, name}) => [
      '-p', 'ipv6-icmp', '-m', 'icmp6', '--icmpv6-type', String(type), ...comment(`icmpv6 ${name}`), '-j', 'ACCEPT',
    ]),
    ...ICMPV6_NEIGHBOUR_DISCOVERY.map(({type, name}) => [
      '-p', 'ipv6-icmp', '-m', 'icmp6', '--icmpv6-type', String(type), '-m', 'hl', '--hl-eq', '255',
      ...comment(`icmpv6 ${name}`), '-j', 'ACCEPT',
    ]),
  ];
}

// Identical specs are shared between the rulesets of a fleet (loopback, ICMP, "ssh from the
// bastion", a cluster's peers...): readers that cache what they learn from a spec by its
// identity (the access summary's port-set views, the evaluator) then read each one once.
const internedSpecs = new Map<string, readonly string[]>();

/** The rule, with the spec shared by every rule of the same chain and tokens. */
function sharedRule(chain: string, spec: readonly string[]): Rule {
  const key = `${chain}\u0000${spec.join('\u0000')}`;
  let shared = internedSpecs.get(key);
  if (!shared) {
    if (internedSpecs.size >= 200_000) internedSpecs.clear();
    shared = [...spec];
    internedSpecs.set(key, shared);
  }
  return {chain, spec: shared};
}

/**
 * The rules every host of a family gets, in order, keyed once per process: INPUT's opening
 * (loopback, ICMP before the conntrack checks — ICMPv6 neighbour discovery is never tracked,
 * conntrack calls it INVALID —, replies, INVALID dropped, DHCPv6 replies) and, with
 * strictOutbound, OUTPUT's.
 */
function commonRules(family: Family): {readonly input: readonly Rule[]; readonly output: readonly Rule[]} {
  let common = commonRulesCache.get(family);
  if (!common) {
    const input = [
      ['-i', 'lo', ...comment('loopback'), '-j', 'ACCEPT'],
      ...icmpRules(family),
      ['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', ...comment('replies'), '-j', 'ACCEPT'],
      ['-m', 'conntrack', '--ctstate', 'INVALID', ...comment('invalid state'), '-j', 'DROP'],
      // DHCPv6 answers a multicast request from a link-local server: conntrack never pairs them,
      // so without this a DHCPv6-managed host loses its IPv6 address when the lease runs out.
      ...(family === 6 ? [[...DHCPV6_REPLY, ...comment('dhcpv6 replies (link-local)'), '-j', 'ACCEPT']] : []),
    ];
    const output = [
      ['-o', 'lo', ...comment('loopback'), '-j', 'ACCEPT'],
      ...icmpRules(family),
      ['-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', ...comment('replies'), '-j', 'ACCEPT'],
      ['-p', 'udp', '-m', 'udp', '--dport', '53', ...NEW, ...comment('dns out'), '-j', 'ACCEPT'],
      ['-p', 'tcp', '-m', 'tcp', '--dport', '53', ...NEW, ...comment('dns out'), '-j', 'ACCEPT'],
      ['-p', 'udp', '-m', 'udp', '--dport', '123', ...NEW, ...comment('ntp out'), '-j', 'ACCEPT'],
      ['-p', 'tcp', '-m', 'multiport', '--dports', '80,443', ...NEW, ...comment('http,https out'), '-j', 'ACCEPT'],
      ...(family === 6 ? [[...DHCPV6_REQUEST, ...comment('dhcpv6 requests (link-local)'), '-j', 'ACCEPT']] : []),
    ];
    common = {
      input: input.map((spec) => sharedRule('INPUT', spec)),
      output: output.map((spec) => sharedRule('OUTPUT', spec)),
    };
    commonRulesCache.set(family, common);
  }
  return common;
}
const commonRulesCache = new Map<Family, {readonly input: readonly Rule[]; readonly output: readonly Rule[]}>();

const logDropJump = sharedRule('INPUT', ['-m', 'comment', '--comment', 'log then drop the rest', '-j', LOG_DROP_CHAIN]);

/** The chains of a compiled ruleset; the same few lists for every host (read-only). */
function chainsOf(strictOutbound: boolean, logDrops: boolean): readonly Chain[] {
  const key = `${strictOutbound}/${logDrops}`;
  let chains = chainLists.get(key);
  if (!chains) {
    chains = Object.freeze([
      {name: 'INPUT', policy: 'DROP'},
      {name: 'FORWARD', policy: 'DROP'},
      {name: 'OUTPUT', policy: strictOutbound ? 'DROP' : 'ACCEPT'},
      ...(logDrops ? [{name: LOG_DROP_CHAIN, policy: null}] : []),
    ]);
    chainLists.set(key, chains);
  }
  return chains;
}
const chainLists = new Map<string, readonly Chain[]>();

/** The drop-logging chain's rules: the same for every host. */
const logDropRules = [
  // --log-level 4 (warning) is the default, and iptables-save leaves it out.
  sharedRule(LOG_DROP_CHAIN, [
    '-m', 'limit', '--limit', '10/min', '--limit-burst', '20', ...comment('log dropped (rate-limited)'),
    '-j', 'LOG', '--log-prefix', LOG_PREFIX,
  ]),
  sharedRule(LOG_DROP_CHAIN, [...comment('drop the rest'), '-j', 'DROP']),
];

/** Numbers every ruleset built in the process: a grant match taken by this one reads `takenBy === number`. */
let rulesetsBuilt = 0;

/**
 * Where a ruleset's rules are gathered before they are copied out at their exact size (one
 * allocation per ruleset, nothing left over); reused by every ruleset.
 */
const gathered: Rule[] = [];
let gatheredLength = 0;

function gather(rules: readonly Rule[]): void {
  for (let index = 0; index < rules.length; index += 1) gathered[gatheredLength++] = rules[index] as Rule;
}

/** Gathers the recipes' grant rules, but those whose match the ruleset already has. */
function gatherGrantRules(recipes: readonly Recipe[], rulesOf: (recipe: Recipe) => readonly KeyedRule[], ruleset: number): void {
  for (let index = 0; index < recipes.length; index += 1) {
    const keyedRules = rulesOf(recipes[index] as Recipe);
    for (let at = 0; at < keyedRules.length; at += 1) {
      const keyed = keyedRules[at] as KeyedRule;
      if (keyed.match.takenBy === ruleset) continue;
      keyed.match.takenBy = ruleset;
      gathered[gatheredLength++] = keyed.rule;
    }
  }
}

function buildRuleset(
  family: Family,
  received: readonly Recipe[],
  held: readonly Recipe[],
  strictOutbound: boolean,
  logDrops: boolean,
): Ruleset {
  // Only grant rules need the duplicate check: each matches NEW connections (and an OUTPUT
  // one a destination address), so none repeats a common rule or the jump to the log chain.
  const ruleset = (rulesetsBuilt += 1);
  gatheredLength = 0;
  // Order: the common opening (commonRules), then the openings.
  const common = commonRules(family);
  gather(common.input);
  gatherGrantRules(received, family === 4 ? recipeInputRulesV4 : recipeInputRulesV6, ruleset);
  if (logDrops) gathered[gatheredLength++] = logDropJump;

  if (strictOutbound) {
    gather(common.output);
    gatherGrantRules(held, family === 4 ? recipeOutputRulesV4 : recipeOutputRulesV6, ruleset);
  }

  if (logDrops) gather(logDropRules);
  const table: Table = {name: 'filter', chains: chainsOf(strictOutbound, logDrops), rules: gathered.slice(0, gatheredLength)};
  return {family, tables: [table]};
}

const recipeInputRulesV4 = (recipe: Recipe): readonly KeyedRule[] => recipeInputRules(recipe, 4);
const recipeInputRulesV6 = (recipe: Recipe): readonly KeyedRule[] => recipeInputRules(recipe, 6);
const recipeOutputRulesV4 = (recipe: Recipe): readonly KeyedRule[] => recipeOutputRules(recipe, 4);
const recipeOutputRulesV6 = (recipe: Recipe): readonly KeyedRule[] => recipeOutputRules(recipe, 6);

/** What a host's compiled entry says when it has no warnings: one empty list for all of them (read-only). */
const NO_WARNINGS: readonly string[] = Object.freeze([]);

/** A host's rules with a rule per group of hosts, matching the group's set of addresses (see address-sets.ts). */
export interface GroupedRules {
  readonly v4: Ruleset;
  readonly v6: Ruleset;
  /** The sets its rules match, each once, in the order first matched. */
  readonly sets: readonly AddressSet[];
  /**
   * The same rules as every packet not from the host's own addresses meets them: without the
   * `! -s OWN` a group's rule has where the host is in the group (the same rulesets when none
   * has). OWN is held by no other fleet host, so readers of fleet traffic (the access summary)
   * read these, and the databases of a flat fleet, whose rules differ only by OWN, share them.
   */
  readonly fromOthers: {readonly v4: Ruleset; readonly v6: Ruleset};
}

const groupedOf = new WeakMap<CompiledHost, GroupedRules>();

/**
 * A compiled host's grouped rules: the same access as its rulesets (`v4`, `v6`, one rule per
 * peer address, what the iptables backend loads), with a rule per group of peers matching a set.
 * Undefined for a host not made by compileFleet (e.g. one whose rulesets were read from a server).
 */
export function groupedRules(host: CompiledHost): GroupedRules | undefined {
  return groupedOf.get(host);
}

/**
 * Compiles every host of the inventory. `facts` must hold every host (from the inventory
 * or discovery); a missing or unusable entry is an InputError naming the host.
 *
 * Each host's grouped rules (groupedRules) are written at once: their size follows the host's
 * flows. Its rulesets with a rule per peer address grow with the number of peers, so they are
 * written when first read (the iptables backend, the nftables payload of a host being applied).
 */
export function compileFleet(inv: Inventory, facts: ReadonlyMap<string, HostFacts>): CompiledHost[] {
  // The kept grant rules are bounded here, between compilations: within one, every rule with a
  // given match must share its GrantMatch (the duplicate check relies on it).
  if (grantRulesKept >= GRANT_RULES_KEPT_AT_MOST) {
    matchGroups.clear();
    grantRulesKept = 0;
  }
  const compilation = new Compilation(inv, facts);
  if (compilation.problems.length > 0) throw new InputError(compilation.problems);
  compilation.collectGrants();
  if (compilation.problems.length > 0) throw new InputError(compilation.problems);
  const perAddress = new PerAddressRulesets(compilation);
  const grouped = new GroupedRulesets(compilation);
  return compilation.hosts.map((host) => {
    let rulesets: SharedRulesets | undefined;
    const compiled: CompiledHost = {
      host: host.entry.name,
      get v4() {
        return (rulesets ??= perAddress.of(host)).v4;
      },
      get v6() {
        return (rulesets ??= perAddress.of(host)).v6;
      },
      warnings: compilation.warnings.get(host.entry.name) ?? NO_WARNINGS, // the compilation's own list: no copy needed
    };
    groupedOf.set(compiled, grouped.of(host));
    return compiled;
  });
}

/** A host's grants one per sending host, as recipes: INPUT's (received) and, with strictOutbound, OUTPUT's (held). */
function recipesOf(compilation: Compilation, host: HostContext, strictOutbound: boolean): {received: Recipe[]; held: readonly Recipe[]} {
  const received: Recipe[] = [];
  for (const call of host.calls) {
    if (!call.group) {
      received.push(inputRecipe(call.reason, host, call.from, call.side));
      continue;
    }
    for (const from of call.group.members) {
      if (from === host) continue;
      const side = pairSide(from, host);
      if (hasPath(from, host, side)) received.push(inputRecipe(call.reason, host, from, side));
    }
  }
  return {received, held: strictOutbound ? heldRecipes(compilation, host) : NO_RECIPES};
}

/**
 * The recipes of the grants a host holds on its peers, in the order they were collected:
 * receivers in fleet order, then their grants. (A walk over every host's grants: strictOutbound's
 * OUTPUT rules are still written one per peer address.)
 */
function heldRecipes(compilation: Compilation, host: HostContext): Recipe[] {
  const held: Recipe[] = [];
  for (const to of compilation.hosts) {
    for (const call of to.calls) {
      if (!call.group) {
        if (call.from === host) held.push(outputRecipe(call.reason, to, host, call.side));
      } else if (to !== host && call.group.memberSet.has(host)) {
        const side = pairSide(host, to);
        if (hasPath(host, to, side)) held.push(outputRecipe(call.reason, to, host, side));
      }
    }
  }
  return held;
}

function inputRecipe(reason: GrantTemplate, to: HostContext, from: HostContext | undefined, side: Side): Recipe {
  const kind = reason.source.kind;
  const inInterface = kind === 'any' ? to.facts.interfaces.public : kind === 'host' ? to.facts.interfaces[side] : undefined;
  return recipeFor(reason.inputRecipes, from, side, inInterface, reason, to, from);
}

function outputRecipe(reason: GrantTemplate, to: HostContext, from: HostContext, side: Side): Recipe {
  return recipeFor((reason.outputRecipes ??= new Map()), to, side, from.facts.interfaces[side], reason, to, from);
}

/**
 * The rulesets with a rule per peer address, host by host as they are asked for. Hosts whose rules
 * come from the same recipes in the same order (a cluster's app servers, say) get the same
 * rulesets: built once and shared (read-only by type; not frozen, which would cost more than
 * building them), so readers that cache by ruleset or table (port-sets, evaluator, access) read
 * each one once.
 */
class PerAddressRulesets {
  private readonly byRecipes = new Map<number, SharedRulesets[]>();

  constructor(private readonly compilation: Compilation) {}

  of(host: HostContext): SharedRulesets {
    const options = this.compilation.inv.options;
    const strictOutbound = options.strictOutbound && host.facts.interfaces.public !== undefined;
    const {received, held} = recipesOf(this.compilation, host, strictOutbound);
    // Looked up by a number from the recipes' ids (no key string per host), then compared.
    const hash = recipesHash(received, held, strictOutbound);
    const sameHash = this.byRecipes.get(hash);
    for (let index = 0; sameHash && index < sameHash.length; index += 1) {
      if ((sameHash[index] as SharedRulesets).madeOf(received, held, strictOutbound)) return sameHash[index] as SharedRulesets;
    }
    const rulesets = new SharedRulesets(
      received,
      held,
      strictOutbound,
      buildRuleset(4, received, held, strictOutbound, options.logDrops),
      buildRuleset(6, received, held, strictOutbound, options.logDrops),
    );
    if (sameHash) sameHash.push(rulesets);
    else this.byRecipes.set(hash, [rulesets]);
    return rulesets;
  }
}

/** Set names stay under 32 bytes: older kernels (before 4.16) refuse longer ones in nftables. */
const SET_NAME_BYTES = 31;

/**
 * The grouped rulesets: a grant from a group is one rule per port chunk matching the set of the
 * group's addresses on the path's side (`-m set --match-set NAME src`), with the receiver's own
 * addresses left out where it is in the group (`! -s OWN`: a host never grants itself). Hosts
 * with the same rules share their rulesets.
 */
class GroupedRulesets {
  private readonly shared = new Map<string, Ruleset>();
  /** Grouped rules by what they are written from, shared by every host with one. */
  private readonly rules = new Map<string, Rule>();
  private readonly ruleIds = new Map<Rule, number>();
  private readonly setNames = new Set<string>();
  /** Sets of a group but for a receiver's addresses, by set and the addresses left out. */
  private readonly lessSets = new Map<string, AddressSet>();

  constructor(private readonly compilation: Compilation) {}

  of(host: HostContext): GroupedRules {
    const options = this.compilation.inv.options;
    const strictOutbound = options.strictOutbound && host.facts.interfaces.public !== undefined;
    // (The OUTPUT rules of strictOutbound stay one per peer address: see recipesOf.)
    const held = strictOutbound ? heldRecipes(this.compilation, host) : NO_RECIPES;
    const sets: AddressSet[] = [];
    const v4 = this.rulesets(4, host, held, strictOutbound, options.logDrops, sets);
    const v6 = this.rulesets(6, host, held, strictOutbound, options.logDrops, sets);
    return {v4: v4.own, v6: v6.own, sets, fromOthers: {v4: v4.fromOthers, v6: v6.fromOthers}};
  }

  /** A family's ruleset and the same without `! -s OWN` (fromOthers): one object when nothing is left out. */
  private rulesets(family: Family, host: HostContext, held: readonly Recipe[], strictOutbound: boolean, logDrops: boolean, sets: AddressSet[]): {own: Ruleset; fromOthers: Ruleset} {
    const ruleset = (rulesetsBuilt += 1);
    const rules: Rule[] = [...commonRules(family).input];
    // Where a grouped rule leaves OWN out, the same rule without it (at the rule's index).
    const withoutOwn = new Map<number, Rule>();
    for (const call of host.calls) {
      if (!call.group) {
        const keyedRules = recipeInputRules(inputRecipe(call.reason, host, call.from, call.side), family);
        for (const keyed of keyedRules) {
          if (keyed.match.takenBy === ruleset) continue;
          keyed.match.takenBy = ruleset;
          rules.push(keyed.rule);
        }
        continue;
      }
      this.groupRules(call.reason, call.group, host, family, rules, sets, withoutOwn);
    }
    if (logDrops) rules.push(logDropJump);
    if (strictOutbound) {
      rules.push(...commonRules(family).output);
      for (const recipe of held) {
        for (const keyed of recipeOutputRules(recipe, family)) {
          if (keyed.match.takenBy === ruleset) continue;
          keyed.match.takenBy = ruleset;
          rules.push(keyed.rule);
        }
      }
    }
    if (logDrops) rules.push(...logDropRules);
    const own = this.sharedRuleset(family, strictOutbound, logDrops, rules);
    if (withoutOwn.size === 0) return {own, fromOthers: own};
    return {own, fromOthers: this.sharedRuleset(family, strictOutbound, logDrops, rules.map((rule, index) => withoutOwn.get(index) ?? rule))};
  }

  /** The ruleset of these rules, shared by every host with the same. */
  private sharedRuleset(family: Family, strictOutbound: boolean, logDrops: boolean, rules: Rule[]): Ruleset {
    let key = `${family}/${strictOutbound}/${logDrops}`;
    for (const rule of rules) key += `,${this.idOf(rule)}`;
    let shared = this.shared.get(key);
    if (!shared) {
      shared = {family, tables: [{name: 'filter', chains: chainsOf(strictOutbound, logDrops), rules}]};
      this.shared.set(key, shared);
    }
    return shared;
  }

  private idOf(rule: Rule): number {
    let id = this.ruleIds.get(rule);
    if (id === undefined) this.ruleIds.set(rule, (id = this.ruleIds.size));
    return id;
  }

  /** A group's grant to `host`: per side the group reaches it over, a rule per port chunk matching the side's set. */
  private groupRules(reason: GrantTemplate, group: HostGroup, host: HostContext, family: Family, rules: Rule[], sets: AddressSet[], withoutOwn: Map<number, Rule>): void {
    const partitions: readonly {key: string; side: Side; members: readonly HostContext[]}[] =
      host.facts.interfaces.private !== undefined
        ? [
            {key: 'private', side: 'private', members: group.withPrivate},
            {key: 'public only', side: 'public', members: group.withoutPrivate},
          ]
        : [{key: 'public', side: 'public', members: group.members}];
    for (const partition of partitions) {
      if (host.facts.addresses[partition.side].length === 0) continue; // no path (warned)
      const {set, holders} = this.groupSet(group, partition.key, partition.side, partition.members, family);
      if (set.elements.length === 0) continue;
      // The host's own addresses no other member holds: left out (the grant is from the others).
      const own: string[] = [];
      const inPartition = partition.key === 'public' || (partition.key === 'private') === (host.facts.interfaces.private !== undefined);
      if (inPartition && group.memberSet.has(host)) {
        for (const address of host.facts.addresses[partition.side]) {
          const reading = readAddress(address);
          if (reading?.family !== family) continue;
          const cidr = hostCidrOf(reading);
          if (holders.get(cidr) === 1 && !own.includes(cidr)) own.push(cidr);
        }
      }
      let matched = set;
      let except: string | undefined;
      if (own.length === 1) except = own[0];
      else if (own.length > 1) matched = this.lessSet(set, own, host.entry.name);
      if (matched.elements.length === 0) continue;
      if (!sets.includes(matched)) sets.push(matched);
      const inInterface = host.facts.interfaces[partition.side];
      for (const chunk of portChunks(reason)) {
        if (except !== undefined) withoutOwn.set(rules.length, this.groupRule(matched, undefined, inInterface, chunk, reason));
        rules.push(this.groupRule(matched, except, inInterface, chunk, reason));
      }
    }
  }

  /** A group's rule for one port chunk, shared by every host with the same. */
  private groupRule(matched: AddressSet, except: string | undefined, inInterface: string | undefined, chunk: PortChunk, reason: GrantTemplate): Rule {
    const text = describe(reason.inputText('*'), chunk.label);
    const key = `${matched.name}\u0000${except ?? NONE}\u0000${inInterface ?? NONE}${chunk.tailKey}\u0000${text}`;
    let rule = this.rules.get(key);
    if (!rule) {
      const before = except === undefined ? [] : ['!', '-s', except];
      const rest = [...(inInterface === undefined ? [] : ['-i', inInterface]), ...chunk.tail, ...comment(text), '-j', 'ACCEPT'];
      rule = {chain: 'INPUT', spec: setSpec(matched, 'src', before, rest)};
      this.rules.set(key, rule);
    }
    return rule;
  }

  /** The set of a group's partition's addresses of a family, with how many members hold each. */
  private groupSet(group: HostGroup, key: string, side: Side, members: readonly HostContext[], family: Family): {set: AddressSet; holders: Map<string, number>} {
    const setKey = `${key}/${family}`;
    let made = group.sets.get(setKey);
    if (!made) {
      const holders = new Map<string, number>();
      const names: string[] = [];
      for (const member of members) {
        const mine = new Set<string>();
        for (const address of member.facts.addresses[side]) {
          const reading = readAddress(address);
          if (reading?.family === family) mine.add(hostCidrOf(reading));
        }
        if (mine.size > 0) names.push(member.entry.name);
        for (const cidr of mine) holders.set(cidr, (holders.get(cidr) ?? 0) + 1);
      }
      const suffix = key === 'private' ? '' : key === 'public only' ? '_pub_only' : '_pub';
      made = {set: addressSet(this.setName(group.label, `${suffix}_v${family}`), group.label, family, [...holders.keys()], names), holders};
      group.sets.set(setKey, made);
    }
    return made;
  }

  /** A set but for some addresses of one host (one that holds several, rare): its own set. */
  private lessSet(set: AddressSet, own: readonly string[], host: string): AddressSet {
    const key = `${set.name}\u0000${own.join('\u0000')}`;
    let less = this.lessSets.get(key);
    if (!less) {
      less = addressSet(
        this.setName(`${set.name.replace(/_v[46]$/, '')}_but_${host}`, `_v${set.family}`),
        set.label,
        set.family,
        set.elements.filter((element) => !own.includes(element)),
        set.members.filter((member) => member !== host),
      );
      this.lessSets.set(key, less);
    }
    return less;
  }

  /** A set name from a label (`app` -> `app_v4`): letters, digits and `_`, unique in the compilation, at most 31 bytes. */
  private setName(label: string, suffix: string): string {
    const slug = label.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '') || 'hosts';
    const base = /^[a-z]/.test(slug) ? slug : `h_${slug}`;
    for (let counter = 1; ; counter += 1) {
      const tail = counter === 1 ? suffix : `_${counter}${suffix}`;
      const name = `${base.slice(0, SET_NAME_BYTES - tail.length).replace(/_+$/, '')}${tail}`;
      if (!this.setNames.has(name)) {
        this.setNames.add(name);
        return name;
      }
    }
  }
}

const NO_RECIPES: readonly Recipe[] = [];

/** The rulesets of the hosts whose rules come from the same recipes in the same order. */
class SharedRulesets {
  constructor(
    private readonly received: readonly Recipe[],
    private readonly held: readonly Recipe[],
    private readonly strictOutbound: boolean,
    readonly v4: Ruleset,
    readonly v6: Ruleset,
  ) {}

  madeOf(received: readonly Recipe[], held: readonly Recipe[], strictOutbound: boolean): boolean {
    return strictOutbound === this.strictOutbound && sameRecipes(received, this.received) && sameRecipes(held, this.held);
  }
}

function sameRecipes(a: readonly Recipe[], b: readonly Recipe[]): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index += 1) if (a[index] !== b[index]) return false;
  return true;
}

/** A hash of what a host's rulesets are made of: strict outbound or not, its INPUT recipes, then its OUTPUT ones. */
function recipesHash(received: readonly Recipe[], held: readonly Recipe[], strictOutbound: boolean): number {
  let hash = strictOutbound ? 1 : 0;
  for (let index = 0; index < received.length; index += 1) hash = (Math.imul(hash, 31) + (received[index] as Recipe).id) | 0;
  hash = (Math.imul(hash, 31) + 0x5bd1e995) | 0; // between the lists
  for (let index = 0; index < held.length; index += 1) hash = (Math.imul(hash, 31) + (held[index] as Recipe).id) | 0;
  return hash & 0x3fffffff; // a small integer: a cheap Map key
}
