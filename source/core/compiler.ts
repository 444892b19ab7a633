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
import {resolveRoles} from './roles.js';
import {canonicalList} from './topology.js';

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
  readonly proto?: Protocol;
  /** undefined: every port. */
  readonly ports?: readonly PortRange[];
  /** The INPUT rule's comment, given the sending host's name, e.g. "lb haproxy-www -> app" + " http,https". */
  readonly inputText: (from: string) => Describe;
  /** The sender's OUTPUT rule comment, given the receiving host's name, e.g. "to wordpress-1 app" + " http,https". */
  readonly outputText: (to: string) => Describe;
  /** Rules written for this template, by sending host (undefined: not a fleet source) and path. */
  readonly inputRecipes: Map<HostContext | undefined, Recipe[]>;
  /** OUTPUT rules written for this template, by receiving host and path. */
  readonly outputRecipes: Map<HostContext, Recipe[]>;
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
  return {
    source,
    ...(proto === undefined ? {} : {proto}),
    ...(ports === undefined ? {} : {ports}),
    inputText,
    outputText,
    inputRecipes: new Map(),
    outputRecipes: new Map(),
  };
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
  /** The recipes of the grants this host receives (its INPUT rules), in grant order. */
  readonly received: Recipe[];
  /** With strictOutbound, the recipes of the grants it holds on its peers (its OUTPUT rules). */
  readonly held: Recipe[];
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
  private readonly hostNames: ReadonlySet<string>;
  /** Hosts per role, in inventory order (built once: looking them up per host would be quadratic). */
  private readonly membersOf = new Map<string, HostContext[]>();
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
      const context: HostContext = {entry, facts: hostFacts, sshPort, received: [], held: []};
      this.hosts.push(context);
      this.byName.set(entry.name, context);
      for (let index = 0; index < entry.roles.length; index += 1) {
        const role = entry.roles[index] as string;
        if (entry.roles.indexOf(role) !== index) continue; // listed twice (validation refuses it)
        const members = this.membersOf.get(role);
        if (members) members.push(context);
        else this.membersOf.set(role, [context]);
      }
    }
    this.roleNames = new Set(this.roles.keys());
    this.hostNames = new Set(this.byName.keys());
  }

  /** A grant of `reason` to `to` (from a fleet host, or from no host for internet and CIDR sources): its recipes noted on both ends. */
  addGrant(reason: GrantTemplate, to: HostContext, from: HostContext | undefined, side: Side): void {
    const kind = reason.source.kind;
    const inInterface = kind === 'any' ? to.facts.interfaces.public : kind === 'host' ? to.facts.interfaces[side] : undefined;
    to.received.push(recipeFor(reason.inputRecipes, from, side, inInterface, reason, to, from));
    // Only strictOutbound writes OUTPUT rules from the grants a host holds.
    if (from && this.inv.options.strictOutbound) {
      from.held.push(recipeFor(reason.outputRecipes, to, side, from.facts.interfaces[side], reason, to, from));
    }
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
    for (const interfaceName of [publicInterface, privateInterface]) {
      if (interfaceName !== undefined && (interfaceName === 'lo' || !INTERFACE_PATTERN.test(interfaceName))) {
        this.problems.push(`${name}: "${interfaceName}" cannot be a public or private interface`);
      }
    }
    for (const side of SIDES) {
      for (const address of facts.addresses[side]) {
        if (addressFamily(address) === undefined) this.problems.push(`${name}: "${address}" is not an address`);
      }
      if (facts.addresses[side].length > 0 && facts.interfaces[side] === undefined) {
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

  /** One grant per fleet source host, over the path between the two (see fleetPath). */
  grantFromHost(to: HostContext, from: HostContext, reason: GrantTemplate): void {
    const side: Side = from.facts.interfaces.private !== undefined && to.facts.interfaces.private !== undefined ? 'private' : 'public';
    if (from.facts.addresses[side].length === 0 || to.facts.addresses[side].length === 0) {
      this.warn(
        to.entry.name,
        `no network path from ${from.entry.name} (the two hosts share no interface side with addresses): "${describe(reason.inputText(from.entry.name), portsLabel(reason.proto, reason.ports))}" opens nothing`,
      );
      return;
    }
    this.addGrant(reason, to, from, side);
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
    const source = classifySource(opening.from, this.roleNames, this.hostNames);
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
        for (const from of this.hosts) {
          if (from !== to) this.grantFromHost(to, from, reason);
        }
        return;
      case 'role': {
        const members = this.hostsWithRole(source.role);
        if (members.length === 0 || (members.length === 1 && members[0] === to)) {
          this.warn(name, `${target} accepts from role ${source.role}, but no other host has that role`);
        }
        for (const from of members) {
          if (from !== to) this.grantFromHost(to, from, reason);
        }
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
    for (const host of this.hosts) {
      const name = host.entry.name;

      // The operator's way in: SSH from every bastion over the fleet path.
      if (bastions.length === 0) {
        this.warn(name, 'no host has the bastion role: nothing opens SSH to this host except its own allow entries');
      }
      const ssh = bastions.length === 0 ? undefined : this.sshTemplate(host.sshPort);
      for (const bastion of bastions) {
        if (ssh && bastion !== host) this.grantFromHost(host, bastion, ssh);
      }

      if (options.trustPrivate) {
        if (host.facts.interfaces.private === undefined) {
          this.warn(name, 'trustPrivate: no private interface, so fleet hosts are trusted on the public side');
        }
        for (const from of this.hosts) {
          if (from !== host) this.grantFromHost(host, from, this.trustTemplate);
        }
      }

      for (const roleName of host.entry.roles) {
        const role = this.roles.get(roleName);
        if (!role) {
          this.problems.push(`${name}: unknown role "${roleName}"`);
          continue;
        }
        for (const opening of role.accept) this.grantOpening(host, opening, roleName);
        if (roleName === 'bastion') this.keepBastionSshPort(host, role);
        if (role.peers.length > 0) {
          const peers = this.peerTemplate(roleName, role);
          for (const peer of this.hostsWithRole(roleName)) {
            if (peer !== host) this.grantFromHost(host, peer, peers);
          }
        }
      }

      for (const allow of host.entry.allow) this.grantOpening(host, allow, name);
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
    merged = mergePortRanges(ranges);
    mergedPortsCache.set(ranges, merged);
  }
  return merged;
}

// ---------------------------------------------------------------------------
// Rules

/**
 * A grant's rule before it is keyed: every one reads `[...match, -m comment --comment TEXT, -j ACCEPT]`,
 * so the tokens it matches by (its identity, see Dedupe) come apart from the comment for free.
 */
interface GrantRule {
  readonly match: readonly string[];
  /** Names the match (see matchKey). */
  readonly key: string;
  readonly text: string;
}

/** A grant's rules per family: written for both at once (they share all but addresses). */
interface FamilyRules {
  readonly v4: GrantRule[];
  readonly v6: GrantRule[];
}

/** A grant rule matching `head` (addresses, interface) then the chunk's ports and state. */
function grantRule(head: readonly string[], chunk: PortChunk, text: string): GrantRule {
  return {
    match: head.length === 0 ? chunk.tail : head.concat(chunk.tail),
    key: matchKey(head, chunk),
    text: text.length > MAX_COMMENT_LENGTH ? text.slice(0, MAX_COMMENT_LENGTH) : text,
  };
}

/**
 * A short key naming a match's tokens: the head's tokens, then the tail's number (equal tails,
 * equal numbers). Shorter than all tokens joined, and keys are kept per rule.
 */
function matchKey(head: readonly string[], chunk: PortChunk): string {
  return head.length === 0 ? chunk.tailKey : `${head.join('\u0000')}\u0000${chunk.tailKey}`;
}

/** Tails (`-p ...` to the state match) by their tokens joined, numbered; few per fleet, kept for the process. */
const tailNumbers = new Map<string, string>();

function tailKeyOf(tail: readonly string[]): string {
  const joined = tail.join('\u0000');
  let key = tailNumbers.get(joined);
  if (key === undefined) {
    // (\u0002: never part of a token, so a key cannot read as a head.)
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

/** The template's port chunks: the same for every recipe of the template, so built once. */
function portChunks(reason: GrantTemplate): readonly PortChunk[] {
  let chunks = portChunksCache.get(reason);
  if (!chunks) {
    const groups = reason.ports === undefined ? [undefined] : chunkPorts(reason.ports);
    chunks = groups.map((ports) => {
      const tail = protoPortTokens(reason.proto, ports).concat(NEW);
      return {label: portsLabel(reason.proto, ports), tail, tailKey: tailKeyOf(tail)};
    });
    portChunksCache.set(reason, chunks);
  }
  return chunks;
}

/** INPUT rules of one grant (a family gets none when it has nothing to match). */
function inputRules(grant: Grant, inInterface: string | undefined): FamilyRules {
  const reason = grant.template;
  const rules: FamilyRules = {v4: [], v6: []};
  const inputInterface = inInterface === undefined ? [] : ['-i', inInterface];
  // fleetPath's fromAddresses (its side is the grant's).
  const fromAddresses = grant.from ? canonicalList(grant.from.facts.addresses[grant.side]) : [];
  for (const chunk of portChunks(reason)) {
    const text = describe(reason.inputText(grant.from?.entry.name ?? ''), chunk.label);
    const source = reason.source;
    if (source.kind === 'any') {
      const rule = grantRule(inputInterface, chunk, text);
      rules.v4.push(rule);
      rules.v6.push(rule);
    } else if (source.kind === 'cidr') {
      const everything = parseCidr(source.cidr)?.prefix === 0; // iptables-save omits "-s 0.0.0.0/0"
      (source.family === 4 ? rules.v4 : rules.v6).push(grantRule(everything ? [] : ['-s', source.cidr], chunk, text));
    } else {
      for (const address of fromAddresses) {
        const reading = readAddress(address);
        if (reading === undefined) continue;
        (reading.family === 4 ? rules.v4 : rules.v6).push(grantRule(['-s', hostCidrOf(reading)].concat(inputInterface), chunk, text));
      }
    }
  }
  return rules;
}

/** OUTPUT rules on the sending host for a grant it holds on a peer. */
function outputRules(grant: Grant, outInterface: string | undefined): FamilyRules {
  const reason = grant.template;
  const rules: FamilyRules = {v4: [], v6: []};
  if (!grant.from) return rules;
  const outputInterface = outInterface === undefined ? [] : ['-o', outInterface];
  const toAddresses = canonicalList(grant.to.facts.addresses[grant.side]); // fleetPath's toAddresses
  for (const chunk of portChunks(reason)) {
    const text = describe(reason.outputText(grant.to.entry.name), chunk.label);
    for (const address of toAddresses) {
      const reading = readAddress(address);
      if (reading === undefined) continue;
      (reading.family === 4 ? rules.v4 : rules.v6).push(grantRule(['-d', hostCidrOf(reading)].concat(outputInterface), chunk, text));
    }
  }
  return rules;
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
  rules?: {readonly v4: readonly KeyedRule[]; readonly v6: readonly KeyedRule[]};
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
  const recipe: Recipe = {id: nextRecipeId++, side, interface: interfaceName, writer: new Grant(reason, to, from, side)};
  list.push(recipe);
  return recipe;
}
let nextRecipeId = 0;

function recipeInputRules(recipe: Recipe, family: Family, dedupe: Dedupe): readonly KeyedRule[] {
  recipe.rules ??= dedupe.keyAll('INPUT', inputRules(recipe.writer, recipe.interface));
  return family === 4 ? recipe.rules.v4 : recipe.rules.v6;
}

function recipeOutputRules(recipe: Recipe, family: Family, dedupe: Dedupe): readonly KeyedRule[] {
  recipe.rules ??= dedupe.keyAll('OUTPUT', outputRules(recipe.writer, recipe.interface));
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

// Grant rules are shared the same way, keyed by their match and comment (their own map: the key
// is spelled differently from sharedRule's).
const internedGrantSpecs = new Map<string, readonly string[]>();

function sharedGrantSpec(key: string, rule: GrantRule): readonly string[] {
  const fullKey = `${key}\u0001${rule.text}`;
  let shared = internedGrantSpecs.get(fullKey);
  if (!shared) {
    if (internedGrantSpecs.size >= 200_000) internedGrantSpecs.clear();
    shared = [...rule.match, '-m', 'comment', '--comment', rule.text, '-j', 'ACCEPT'];
    internedGrantSpecs.set(fullKey, shared);
  }
  return shared;
}

/** What a chain matches by a rule, comments left out: rules with the same one add nothing. */
interface RuleIdentity {
  /** The ruleset that last took a rule with this identity (see Dedupe). */
  takenBy: number;
}

/** A grant's rule with its identity. */
interface KeyedRule {
  readonly identity: RuleIdentity;
  readonly rule: Rule;
}

/**
 * Rules identical but for their comment add nothing: a ruleset keeps the first. Each identity
 * remembers the last ruleset that took it, so a ruleset needs no set of its own.
 */
class Dedupe {
  private readonly identities = new Map<string, RuleIdentity>();
  private ruleset = 0;

  keyAll(chain: string, rules: FamilyRules): {readonly v4: readonly KeyedRule[]; readonly v6: readonly KeyedRule[]} {
    const keyed = (rule: GrantRule): KeyedRule => {
      // Every grant rule ends the same way after `match`: the match alone tells rules apart.
      const key = `${chain}\u0000${rule.key}`;
      let identity = this.identities.get(key);
      if (!identity) this.identities.set(key, (identity = {takenBy: 0}));
      return {identity, rule: {chain, spec: sharedGrantSpec(key, rule)}};
    };
    return {v4: rules.v4.map(keyed), v6: rules.v6.map(keyed)};
  }

  startRuleset(): void {
    this.ruleset += 1;
  }

  /** Adds the rule unless this ruleset already has one with its identity. */
  push(rules: Rule[], keyed: KeyedRule): void {
    if (keyed.identity.takenBy === this.ruleset) return;
    keyed.identity.takenBy = this.ruleset;
    rules.push(keyed.rule);
  }
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

function buildRuleset(
  family: Family,
  received: readonly Recipe[],
  held: readonly Recipe[],
  strictOutbound: boolean,
  logDrops: boolean,
  dedupe: Dedupe,
): Ruleset {
  const rules: Rule[] = [];
  // Only grant rules need the duplicate check: each matches NEW connections (and an OUTPUT
  // one a destination address), so none repeats a common rule or the jump to the log chain.
  dedupe.startRuleset();

  // Order: the common opening (commonRules), then the openings.
  const common = commonRules(family);
  for (const rule of common.input) rules.push(rule);
  for (const recipe of received) {
    for (const keyed of recipeInputRules(recipe, family, dedupe)) dedupe.push(rules, keyed);
  }
  if (logDrops) rules.push(logDropJump);

  if (strictOutbound) {
    for (const rule of common.output) rules.push(rule);
    for (const recipe of held) {
      for (const keyed of recipeOutputRules(recipe, family, dedupe)) dedupe.push(rules, keyed);
    }
  }

  if (logDrops) {
    rules.push({
      chain: LOG_DROP_CHAIN,
      // --log-level 4 (warning) is the default, and iptables-save leaves it out.
      spec: [
        '-m', 'limit', '--limit', '10/min', '--limit-burst', '20', ...comment('log dropped (rate-limited)'),
        '-j', 'LOG', '--log-prefix', LOG_PREFIX,
      ],
    });
    rules.push({chain: LOG_DROP_CHAIN, spec: [...comment('drop the rest'), '-j', 'DROP']});
  }
  const table: Table = {name: 'filter', chains: chainsOf(strictOutbound, logDrops), rules};
  return {family, tables: [table]};
}

/**
 * Compiles every host of the inventory. `facts` must hold every host (from the inventory
 * or discovery); a missing or unusable entry is an InputError naming the host.
 */
export function compileFleet(inv: Inventory, facts: ReadonlyMap<string, HostFacts>): CompiledHost[] {
  const compilation = new Compilation(inv, facts);
  if (compilation.problems.length > 0) throw new InputError(compilation.problems);
  compilation.collectGrants();
  if (compilation.problems.length > 0) throw new InputError(compilation.problems);
  const dedupe = new Dedupe();
  // Hosts whose rules come from the same recipes in the same order (a cluster's app servers,
  // say) get the same rulesets: built once and shared (read-only by type; not frozen, which
  // would cost more than building them), so readers that cache by ruleset or table
  // (port-sets, evaluator, access) read each one once.
  const rulesetsByRecipes = new Map<string, {readonly v4: Ruleset; readonly v6: Ruleset}>();
  return compilation.hosts.map((host) => {
    const {received, held} = host;
    const strictOutbound = inv.options.strictOutbound && host.facts.interfaces.public !== undefined;
    const key = recipesKey(received, strictOutbound ? held : NO_RECIPES, strictOutbound);
    let rulesets = rulesetsByRecipes.get(key);
    if (!rulesets) {
      rulesets = {
        v4: buildRuleset(4, received, held, strictOutbound, inv.options.logDrops, dedupe),
        v6: buildRuleset(6, received, held, strictOutbound, inv.options.logDrops, dedupe),
      };
      rulesetsByRecipes.set(key, rulesets);
    }
    return {
      host: host.entry.name,
      v4: rulesets.v4,
      v6: rulesets.v6,
      warnings: compilation.warnings.get(host.entry.name) ?? [], // the compilation's own list: no copy needed
    };
  });
}

const NO_RECIPES: readonly Recipe[] = [];

/** What a host's rulesets are made of: strict outbound or not, its INPUT recipes, then its OUTPUT ones. */
function recipesKey(received: readonly Recipe[], held: readonly Recipe[], strictOutbound: boolean): string {
  let key = strictOutbound ? 'S' : 'L';
  for (const recipe of received) key += `${recipe.id},`;
  key += '/';
  for (const recipe of held) key += `${recipe.id},`;
  return key;
}
