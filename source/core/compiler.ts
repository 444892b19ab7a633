// Inventory + facts -> one IPv4 and one IPv6 filter ruleset per host. Pure and deterministic:
// hosts follow the inventory's order, sources follow it too, and every rule's tokens are
// written exactly as iptables-save prints them back.
//
// The compiler first lists "grants" (who may open what on which host), then writes each
// host's INPUT from the grants it receives and, with strictOutbound, its OUTPUT from the
// grants it holds on its peers, so both ends agree by construction.
import {addressFamily, hostCidrText, parseCidr} from './addresses.js';
import {InputError} from './errors.js';
import {classifySource, INTERFACE_PATTERN, sshPortOf, type HostEntry, type Inventory} from './inventory.js';
import type {
  Chain,
  CompiledHost,
  Family,
  FleetOptions,
  HostFacts,
  Opening,
  PortRange,
  Protocol,
  RoleTemplate,
  Rule,
  Ruleset,
} from './model.js';
import {resolveRoles} from './roles.js';
import {fleetPath, type FleetPath} from './topology.js';

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

type GrantSource =
  | {readonly kind: 'any'; readonly interface?: string}
  | {readonly kind: 'cidr'; readonly family: Family; readonly cidr: string}
  | {readonly kind: 'host'; readonly host: string; readonly path: FleetPath};

interface Grant {
  readonly to: string;
  readonly source: GrantSource;
  /** undefined: every protocol (trustPrivate). */
  readonly proto?: Protocol;
  /** undefined: every port. */
  readonly ports?: readonly PortRange[];
  /** The INPUT rule's comment given its ports' label, e.g. "lb haproxy-www -> app http,https". */
  readonly inputText: Describe;
  /** The sender's OUTPUT rule comment, e.g. "to wordpress-1 app http,https". */
  readonly outputText: Describe;
}

type Describe = (ports: string) => string;
const arrow =
  (label: string): Describe =>
  (ports) =>
    `${label} ${ports}`;
const sshFrom =
  (bastion: string): Describe =>
  (ports) =>
    ports === 'ssh' ? `ssh from bastion ${bastion}` : `ssh from bastion ${bastion} (${ports})`;

interface HostContext {
  readonly entry: HostEntry;
  readonly facts: HostFacts;
  readonly sshPort: number;
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
  readonly grants: Grant[] = [];
  /** The same grants indexed by receiving host and by sending fleet host (each in grant order). */
  readonly grantsTo = new Map<string, Grant[]>();
  readonly grantsFrom = new Map<string, Grant[]>();
  readonly hosts: HostContext[] = [];
  readonly byName = new Map<string, HostContext>();
  readonly roles: ReadonlyMap<string, RoleTemplate>;
  private readonly roleNames: ReadonlySet<string>;
  private readonly hostNames: ReadonlySet<string>;
  /** Hosts per role, in inventory order (built once: looking them up per host would be quadratic). */
  private readonly membersOf = new Map<string, HostContext[]>();

  constructor(
    readonly inv: Inventory,
    facts: ReadonlyMap<string, HostFacts>,
  ) {
    this.roles = resolveRoles(inv);
    for (const entry of inv.hosts) {
      this.warnings.set(entry.name, []);
      const hostFacts = facts.get(entry.name);
      if (!hostFacts) {
        this.problems.push(
          `${entry.name}: no interfaces or addresses known (discover it, or give "interfaces" and "addresses" in the inventory)`,
        );
        continue;
      }
      if (!this.checkFacts(entry.name, hostFacts)) continue;
      const context: HostContext = {entry, facts: hostFacts, sshPort: hostFacts.sshPort ?? sshPortOf(entry) ?? 22};
      this.hosts.push(context);
      this.byName.set(entry.name, context);
      for (const role of new Set(entry.roles)) {
        const members = this.membersOf.get(role);
        if (members) members.push(context);
        else this.membersOf.set(role, [context]);
      }
    }
    this.roleNames = new Set(this.roles.keys());
    this.hostNames = new Set(this.byName.keys());
  }

  addGrant(grant: Grant): void {
    this.grants.push(grant);
    const to = this.grantsTo.get(grant.to);
    if (to) to.push(grant);
    else this.grantsTo.set(grant.to, [grant]);
    if (grant.source.kind === 'host') {
      const from = this.grantsFrom.get(grant.source.host);
      if (from) from.push(grant);
      else this.grantsFrom.set(grant.source.host, [grant]);
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
    for (const side of ['public', 'private'] as const) {
      for (const address of facts.addresses[side]) {
        if (addressFamily(address) === undefined) this.problems.push(`${name}: "${address}" is not an address`);
      }
      if (facts.addresses[side].length > 0 && facts.interfaces[side] === undefined) {
        this.problems.push(`${name}: ${side} addresses but no ${side} interface`);
      }
    }
    return this.problems.length === before;
  }

  warn(host: string, message: string): void {
    const list = this.warnings.get(host);
    if (list && !list.includes(message)) list.push(message);
  }

  hostsWithRole(role: string): readonly HostContext[] {
    return this.membersOf.get(role) ?? [];
  }

  /** One grant per fleet source host, over the path between the two. */
  grantFromHost(
    to: HostContext,
    from: HostContext,
    proto: Protocol | undefined,
    ports: readonly PortRange[] | undefined,
    inputText: Describe,
    outputText: Describe,
  ): void {
    const path = fleetPath(from, to);
    if (path.fromAddresses.length === 0 || path.toAddresses.length === 0) {
      this.warn(
        to.entry.name,
        `no network path from ${from.entry.name} (the two hosts share no interface side with addresses): "${inputText(portsLabel(proto, ports))}" opens nothing`,
      );
      return;
    }
    this.addGrant({
      to: to.entry.name,
      source: {kind: 'host', host: from.entry.name, path},
      ...(proto === undefined ? {} : {proto}),
      ...(ports === undefined ? {} : {ports}),
      inputText,
      outputText,
    });
  }

  /** A role's or an allow entry's opening on one host. */
  grantOpening(to: HostContext, opening: Opening, target: string): void {
    const name = to.entry.name;
    const ports = mergePortRanges(opening.ports);
    const source = classifySource(opening.from, this.roleNames, this.hostNames);
    switch (source.kind) {
      case 'internet': {
        const publicInterface = to.facts.interfaces.public;
        if (publicInterface === undefined) {
          this.warn(
            name,
            `${target} accepts ${portsLabel(opening.proto, ports)} from the internet, but the host has no public interface: the rule is bound to no interface`,
          );
        }
        this.addGrant({
          to: name,
          source: {kind: 'any', ...(publicInterface === undefined ? {} : {interface: publicInterface})},
          proto: opening.proto,
          ports,
          inputText: arrow(`internet -> ${target}`),
          outputText: arrow(''),
        });
        return;
      }
      case 'cidr':
        this.addGrant({
          to: name,
          source: {kind: 'cidr', family: source.family, cidr: source.cidr},
          proto: opening.proto,
          ports,
          inputText: arrow(`${source.cidr} -> ${target}`),
          outputText: arrow(''),
        });
        return;
      case 'private':
        for (const from of this.hosts) {
          if (from !== to) {
            this.grantFromHost(
              to,
              from,
              opening.proto,
              ports,
              arrow(`private ${from.entry.name} -> ${target}`),
              arrow(`to ${name} ${target}`),
            );
          }
        }
        return;
      case 'role': {
        const members = this.hostsWithRole(source.role).filter((from) => from !== to);
        if (members.length === 0) {
          this.warn(name, `${target} accepts from role ${source.role}, but no other host has that role`);
        }
        for (const from of members) {
          this.grantFromHost(
            to,
            from,
            opening.proto,
            ports,
            arrow(`${source.role} ${from.entry.name} -> ${target}`),
            arrow(`to ${name} ${target}`),
          );
        }
        return;
      }
      case 'host': {
        const from = this.byName.get(source.host);
        if (from === to) {
          this.warn(name, `${target} accepts from ${source.host}, the host itself: nothing to open`);
          return;
        }
        if (from) {
          this.grantFromHost(to, from, opening.proto, ports, arrow(`${source.host} -> ${target}`), arrow(`to ${name} ${target}`));
        }
        return;
      }
      case 'invalid':
        // validateInventory refuses these; a hand-built Inventory could still carry one.
        this.problems.push(`${name}: ${target}: ${source.reason}`);
        return;
    }
  }

  collectGrants(): void {
    const options = this.inv.options;
    const bastions = this.hostsWithRole('bastion');
    for (const host of this.hosts) {
      const name = host.entry.name;

      // The operator's way in: SSH from every bastion over the fleet path.
      const otherBastions = bastions.filter((bastion) => bastion !== host);
      if (bastions.length === 0) {
        this.warn(name, 'no host has the bastion role: nothing opens SSH to this host except its own allow entries');
      }
      for (const bastion of otherBastions) {
        this.grantFromHost(
          host,
          bastion,
          'tcp',
          [{first: host.sshPort, last: host.sshPort}],
          sshFrom(bastion.entry.name),
          arrow(`to ${name}`),
        );
      }

      if (options.trustPrivate) {
        if (host.facts.interfaces.private === undefined) {
          this.warn(name, 'trustPrivate: no private interface, so fleet hosts are trusted on the public side');
        }
        for (const from of this.hosts) {
          if (from !== host) {
            this.grantFromHost(
              host,
              from,
              undefined,
              undefined,
              () => `trust fleet ${from.entry.name}`,
              () => `to ${name} trusted`,
            );
          }
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
          const ports = mergePortRanges(role.peers);
          for (const peer of this.hostsWithRole(roleName)) {
            if (peer !== host) {
              this.grantFromHost(
                host,
                peer,
                role.peersProto,
                ports,
                arrow(`${roleName} peer ${peer.entry.name} ->`),
                arrow(`to ${name} ${roleName} peer`),
              );
            }
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

// ---------------------------------------------------------------------------
// Rules

/** `-s`/`-d` text for one address: canonical with /32 or /128 (the address itself if unparsable). */
function hostCidr(address: string): string {
  return hostCidrText(address) ?? address;
}

function familyAddresses(addresses: readonly string[], family: Family): string[] {
  return addresses.filter((address) => addressFamily(address) === family);
}

/** INPUT rules for one grant in one family (none when the family has nothing to match). */
function inputRules(grant: Grant, family: Family): string[][] {
  const rules: string[][] = [];
  const chunks = grant.ports === undefined ? [undefined] : chunkPorts(grant.ports);
  for (const ports of chunks) {
    const tail = [...protoPortTokens(grant.proto, ports), ...NEW];
    const text = grant.inputText(portsLabel(grant.proto, ports));
    const source = grant.source;
    if (source.kind === 'any') {
      rules.push([...(source.interface === undefined ? [] : ['-i', source.interface]), ...tail, ...comment(text), '-j', 'ACCEPT']);
    } else if (source.kind === 'cidr') {
      if (source.family !== family) continue;
      const everything = parseCidr(source.cidr)?.prefix === 0; // iptables-save omits "-s 0.0.0.0/0"
      rules.push([...(everything ? [] : ['-s', source.cidr]), ...tail, ...comment(text), '-j', 'ACCEPT']);
    } else {
      for (const address of familyAddresses(source.path.fromAddresses, family)) {
        const inInterface = source.path.toInterface === undefined ? [] : ['-i', source.path.toInterface];
        rules.push(['-s', hostCidr(address), ...inInterface, ...tail, ...comment(text), '-j', 'ACCEPT']);
      }
    }
  }
  return rules;
}

/** OUTPUT rules on the sending host for a grant it holds on a peer. */
function outputRules(grant: Grant, family: Family): string[][] {
  if (grant.source.kind !== 'host') return [];
  const path = grant.source.path;
  const rules: string[][] = [];
  const chunks = grant.ports === undefined ? [undefined] : chunkPorts(grant.ports);
  for (const ports of chunks) {
    const text = grant.outputText(portsLabel(grant.proto, ports));
    for (const address of familyAddresses(path.toAddresses, family)) {
      const outInterface = path.fromInterface === undefined ? [] : ['-o', path.fromInterface];
      rules.push([
        '-d',
        hostCidr(address),
        ...outInterface,
        ...protoPortTokens(grant.proto, ports),
        ...NEW,
        ...comment(text),
        '-j',
        'ACCEPT',
      ]);
    }
  }
  return rules;
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

/** A rule with its dedupe key (the spec without its comment) and its shared spec. */
interface KeyedRule {
  readonly key: string;
  readonly rule: Rule;
}

function keyedRule(chain: string, spec: readonly string[]): KeyedRule {
  // The key leaves out the comment (`--comment TEXT`); built in one pass, this runs for every rule of a fleet.
  let key = chain;
  let commentAt = -1;
  for (let index = 0; index < spec.length; index += 1) {
    if (spec[index] === '--comment' && commentAt === -1) {
      commentAt = index;
      index += 1;
      continue;
    }
    key += `\u0000${spec[index]}`;
  }
  const fullKey = commentAt === -1 ? key : `${key}\u0001${spec[commentAt + 1]}\u0001${commentAt}`;
  let shared = internedSpecs.get(fullKey);
  if (!shared) {
    if (internedSpecs.size >= 200_000) internedSpecs.clear();
    shared = Object.freeze([...spec]);
    internedSpecs.set(fullKey, shared);
  }
  return {key, rule: {chain, spec: shared}};
}

/** Rules identical but for their comment add nothing: keep the first. */
function pushUnique(rules: Rule[], seen: Set<string>, chain: string, spec: readonly string[]): void {
  pushKeyed(rules, seen, keyedRule(chain, spec));
}

function pushKeyed(rules: Rule[], seen: Set<string>, keyed: KeyedRule): void {
  if (seen.has(keyed.key)) return;
  seen.add(keyed.key);
  rules.push(keyed.rule);
}

/**
 * The rules every host of a family gets, in order, keyed once per process: INPUT's opening
 * (loopback, ICMP before the conntrack checks — ICMPv6 neighbour discovery is never tracked,
 * conntrack calls it INVALID —, replies, INVALID dropped, DHCPv6 replies) and, with
 * strictOutbound, OUTPUT's.
 */
function commonRules(family: Family): {readonly input: readonly KeyedRule[]; readonly output: readonly KeyedRule[]} {
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
    common = {input: input.map((spec) => keyedRule('INPUT', spec)), output: output.map((spec) => keyedRule('OUTPUT', spec))};
    commonRulesCache.set(family, common);
  }
  return common;
}
const commonRulesCache = new Map<Family, {readonly input: readonly KeyedRule[]; readonly output: readonly KeyedRule[]}>();

function buildRuleset(
  host: HostContext,
  family: Family,
  received: readonly Grant[],
  held: readonly Grant[],
  options: FleetOptions,
): Ruleset {
  const strictOutbound = options.strictOutbound && host.facts.interfaces.public !== undefined;
  const rules: Rule[] = [];
  const seen = new Set<string>();
  const input = (spec: readonly string[]): void => pushUnique(rules, seen, 'INPUT', spec);
  const output = (spec: readonly string[]): void => pushUnique(rules, seen, 'OUTPUT', spec);

  // Order: the common opening (commonRules), then the openings.
  const common = commonRules(family);
  for (const keyed of common.input) pushKeyed(rules, seen, keyed);
  for (const grant of received) {
    for (const rule of inputRules(grant, family)) input(rule);
  }
  if (options.logDrops) input(['-m', 'comment', '--comment', 'log then drop the rest', '-j', LOG_DROP_CHAIN]);

  if (strictOutbound) {
    for (const keyed of common.output) pushKeyed(rules, seen, keyed);
    for (const grant of held) {
      for (const rule of outputRules(grant, family)) output(rule);
    }
  }

  const chains: Chain[] = [
    {name: 'INPUT', policy: 'DROP'},
    {name: 'FORWARD', policy: 'DROP'},
    {name: 'OUTPUT', policy: strictOutbound ? 'DROP' : 'ACCEPT'},
  ];
  if (options.logDrops) {
    chains.push({name: LOG_DROP_CHAIN, policy: null});
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
  return {family, tables: [{name: 'filter', chains, rules}]};
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
  return compilation.hosts.map((host) => {
    const received = compilation.grantsTo.get(host.entry.name) ?? [];
    const held = compilation.grantsFrom.get(host.entry.name) ?? [];
    return {
      host: host.entry.name,
      v4: buildRuleset(host, 4, received, held, inv.options),
      v6: buildRuleset(host, 6, received, held, inv.options),
      warnings: [...(compilation.warnings.get(host.entry.name) ?? [])],
    };
  });
}
