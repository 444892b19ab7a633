// The ports at which a chain accepts a packet whose fields are all fixed but two: the peer's
// address and one port. The access summary and the SSH path check ask this for every pair of
// hosts that may talk; on a 10,000-host fleet that is hundreds of thousands of questions, and
// walking the rules port piece by port piece (evaluator.ts) was too slow for it.
//
// How: each rule is read once into plain fields; for one "view" (chain, protocol, state,
// interfaces, the host's own address, the port that stays fixed) every condition that does not
// involve the peer or the varying port is decided once, leaving a short list of entries
// (peer address?, port set, target). Answering for a peer is then a walk over that list with
// port sets, and a peer no entry names gets the answer computed once for all such peers.
//
// Sharing: tables with the same rules share one reading and its views. Tables that differ only
// in the single addresses INPUT's rules accept from (a cluster's servers each name their own
// peers) share the first one's too, and a peer is renamed to the one the first table names at
// the same places before a view answers (RenamedTable).
//
// Exactness: this mirrors evaluator.ts, which stays the reference (a property test compares
// them). Whatever it does not model exactly — an unsupported match, a hop-limit condition on a
// packet that could match, a jump to a missing chain — makes the view undefined, and callers
// fall back to the evaluator, which notes what it cannot judge.

import {
  interfaceMatches,
  KNOWN_MODULES,
  MAX_DEPTH,
  NON_TERMINATING_TARGETS,
  parsePortList,
  parsePortRange,
  protocolName,
  type BuiltInChain,
  type ConnectionState,
} from './evaluator.js';
import {isHostNetwork, networkContains, parseAddress, parseNetwork, valueKey, type IpAddress, type IpNetwork} from './ip.js';
import {rememberedPerObject} from './remembered.js';
import {setOfSpec, type AddressSet} from './address-sets.js';
import type {PortRange, Ruleset, Table} from './model.js';

// ---------------------------------------------------------------------------
// Port sets: sorted, disjoint, non-adjacent inclusive ranges, flat: [first0, last0, first1, ...]

export type PortSet = readonly number[];
const FIRST_PORT = 1;
const LAST_PORT = 65535;
export const ALL_PORTS: PortSet = Object.freeze([FIRST_PORT, LAST_PORT]);
const NO_PORTS: PortSet = Object.freeze([]);

export function intersectPorts(a: PortSet, b: PortSet): PortSet {
  if (a.length === 0 || b.length === 0) return NO_PORTS;
  if (b === ALL_PORTS) return a;
  if (a === ALL_PORTS) return b;
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const first = Math.max(a[i] as number, b[j] as number);
    const last = Math.min(a[i + 1] as number, b[j + 1] as number);
    if (first <= last) out.push(first, last);
    if ((a[i + 1] as number) < (b[j + 1] as number)) i += 2;
    else j += 2;
  }
  return out;
}

export function subtractPorts(a: PortSet, b: PortSet): PortSet {
  if (a.length === 0 || b.length === 0) return a;
  if (b === ALL_PORTS || a === b) return NO_PORTS;
  const out: number[] = [];
  let j = 0;
  for (let i = 0; i < a.length; i += 2) {
    let first = a[i] as number;
    const last = a[i + 1] as number;
    while (j < b.length && (b[j + 1] as number) < first) j += 2;
    let k = j;
    while (k < b.length && (b[k] as number) <= last && first <= last) {
      if ((b[k] as number) > first) out.push(first, (b[k] as number) - 1);
      first = (b[k + 1] as number) + 1;
      k += 2;
    }
    if (first <= last) out.push(first, last);
  }
  return out;
}

export function unionPorts(a: PortSet, b: PortSet): PortSet {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let first: number;
    let last: number;
    if (j >= b.length || (i < a.length && (a[i] as number) <= (b[j] as number))) {
      first = a[i] as number;
      last = a[i + 1] as number;
      i += 2;
    } else {
      first = b[j] as number;
      last = b[j + 1] as number;
      j += 2;
    }
    const end = out.length - 1;
    if (end > 0 && first <= (out[end] as number) + 1) out[end] = Math.max(out[end] as number, last);
    else out.push(first, last);
  }
  return out;
}

function portSetOf(ranges: readonly {first: number; last: number}[]): PortSet {
  let set: PortSet = NO_PORTS;
  for (const range of ranges) {
    const first = Math.max(FIRST_PORT, range.first);
    const last = Math.min(LAST_PORT, range.last);
    if (first <= last) set = unionPorts(set, [first, last]);
  }
  return set;
}

function portsContain(set: PortSet, port: number): boolean {
  for (let i = 0; i < set.length; i += 2) if (port >= (set[i] as number) && port <= (set[i + 1] as number)) return true;
  return false;
}

export function portSetToRanges(set: PortSet): PortRange[] {
  const ranges: PortRange[] = [];
  for (let i = 0; i < set.length; i += 2) ranges.push({first: set[i] as number, last: set[i + 1] as number});
  return ranges;
}


// ---------------------------------------------------------------------------
// Reading rules into plain fields (the same token walk as evaluator.ts's compileRuleText)

interface AddressMatch {
  readonly network: IpNetwork;
  readonly negate: boolean;
  /**
   * A grouped rule's set (`-m set --match-set`): the peer is in the set and none of `except`
   * (the rule's negated single addresses, folded in: the receiver's own). `network` then holds
   * every address of the family, so whatever reads networks alone errs towards "may match".
   */
  readonly set?: AddressSet;
  readonly except?: readonly IpNetwork[];
}
interface NameMatch {
  readonly pattern: string;
  readonly negate: boolean;
}
interface PortMatch {
  readonly field: 'sourcePort' | 'destinationPort' | 'both';
  readonly ranges: readonly {first: number; last: number}[];
  readonly negate: boolean;
}

type RuleTarget =
  | {readonly kind: 'accept' | 'drop' | 'return' | 'pass'}
  | {readonly kind: 'jump' | 'goto'; readonly chain: string};

interface ReadRule {
  readonly source: AddressMatch[];
  readonly destination: AddressMatch[];
  readonly inInterface: NameMatch[];
  readonly outInterface: NameMatch[];
  /** Every protocol test: `-p` (maybe negated) and the protocol a match module needs. */
  readonly protocols: {readonly names: readonly string[]; readonly negate: boolean}[];
  readonly states: {readonly states: readonly string[]; readonly negate: boolean}[];
  readonly ports: PortMatch[];
  /** A condition that never holds (`-f`, `! -p all`, `! --icmp-type any`). */
  never: boolean;
  /** Conditions on ICMP type or hop limit: unknown for a TCP/UDP packet that reaches them. */
  unknowable: boolean;
  target: RuleTarget;
  /** reducedRule's answers, by view shape id (see there). */
  readonly reduced: (Entry | 'skip' | 'unmodelled')[];
  /** Whether a packet of the protocol can match (not `never`, every protocol test passes). */
  readonly admits: {readonly tcp: boolean; readonly udp: boolean};
  /** Names the rule in the keys of tables' contents. */
  readonly id: number;
}

/** The rule's fields, or undefined when a part of it is not modelled (the evaluator would note it). */
const readRule: (spec: readonly string[]) => ReadRule | undefined = rememberedPerObject(readSpec);

function readSpec(tokens: readonly string[]): ReadRule | undefined {
  const rule: ReadRule = {
    source: [], destination: [], inInterface: [], outInterface: [], protocols: [], states: [], ports: [],
    never: false, unknowable: false, target: {kind: 'pass'}, reduced: [], admits: {tcp: true, udp: true}, id: -1,
  };
  let module: string | undefined;
  let protocol: string | undefined;
  let position = 0;
  while (position < tokens.length) {
    let negate = false;
    let option = tokens[position++] as string;
    if (option === '!') {
      negate = true;
      const following = tokens[position++];
      if (following === undefined) return undefined;
      option = following;
    }
    const value = tokens[position];
    switch (option) {
      case '-s': case '--source': case '--src':
      case '-d': case '--destination': case '--dst': {
        if (value === undefined) return undefined;
        position += 1;
        const network = parseNetwork(value);
        if (!network) return undefined;
        (option.startsWith('-s') || option.startsWith('--s') ? rule.source : rule.destination).push({network, negate});
        break;
      }
      case '-i': case '--in-interface':
      case '-o': case '--out-interface':
        if (value === undefined) return undefined;
        position += 1;
        (option === '-i' || option === '--in-interface' ? rule.inInterface : rule.outInterface).push({pattern: value, negate});
        break;
      case '-p': case '--protocol': {
        if (value === undefined) return undefined;
        position += 1;
        const name = protocolName(value);
        protocol = negate ? undefined : name;
        if (name === 'all') {
          if (negate) rule.never = true;
          break;
        }
        rule.protocols.push({names: [name], negate});
        break;
      }
      case '-f': case '--fragment':
        if (!negate) rule.never = true;
        break;
      case '--match-set': {
        const set = setOfSpec(tokens);
        const direction = tokens[position + 1];
        if (!set || module !== 'set' || negate || set.name !== value || (direction !== 'src' && direction !== 'dst')) return undefined;
        position += 2;
        (direction === 'src' ? rule.source : rule.destination).push({network: EVERY_ADDRESS[set.family], negate: false, set});
        break;
      }
      case '-m': case '--match':
        if (value === undefined) return undefined;
        position += 1;
        module = value;
        if (!KNOWN_MODULES.has(module)) return undefined;
        if (module === 'tcp' || module === 'udp') rule.protocols.push({names: [module], negate: false});
        else if (module === 'multiport') rule.protocols.push({names: ['tcp', 'udp'], negate: false});
        else if (module === 'icmp') rule.protocols.push({names: ['icmp'], negate: false});
        else if (module === 'icmp6') rule.protocols.push({names: ['ipv6-icmp'], negate: false});
        break;
      case '-j': case '--jump': case '-g': case '--goto': {
        if (value === undefined) return undefined;
        position = tokens.length; // the target's own options do not change the walk
        if (option === '-g' || option === '--goto') rule.target = {kind: 'goto', chain: value};
        else if (value === 'ACCEPT') rule.target = {kind: 'accept'};
        else if (value === 'DROP' || value === 'REJECT') rule.target = {kind: 'drop'};
        else if (value === 'RETURN') rule.target = {kind: 'return'};
        else if (NON_TERMINATING_TARGETS.has(value)) rule.target = {kind: 'pass'};
        else rule.target = {kind: 'jump', chain: value};
        break;
      }
      default: {
        const owner = module ?? (protocol === 'tcp' || protocol === 'udp' ? protocol : undefined);
        if (value === undefined || !readModuleOption(rule, owner, option, value, negate)) return undefined;
        position += 1;
      }
    }
  }
  return compact(rule);
}

const NONE: readonly never[] = Object.freeze([]);

/**
 * A large fleet keeps tens of thousands of read rules: absent fields share one empty list, the
 * others are copied to their own length (a list pushed to keeps room to grow).
 */
function compact(rule: ReadRule): ReadRule {
  const list = <T>(items: T[]): T[] => (items.length > 0 ? items.slice() : (NONE as unknown as T[]));
  return {
    source: list(withSetsFolded(rule.source)),
    destination: list(withSetsFolded(rule.destination)),
    inInterface: list(rule.inInterface),
    outInterface: list(rule.outInterface),
    protocols: list(rule.protocols),
    states: list(rule.states),
    ports: list(rule.ports),
    never: rule.never,
    unknowable: rule.unknowable,
    target: rule.target,
    reduced: [],
    admits: {tcp: admits(rule, 'tcp'), udp: admits(rule, 'udp')},
    id: nextRuleId++,
  };
}

let nextRuleId = 0;

/** What a set match's `network` holds (every address of the family): readers of networks alone see them as such. */
export const EVERY_ADDRESS: Readonly<Record<4 | 6, IpNetwork>> = {4: {family: 4, value: 0n, mask: 0n}, 6: {family: 6, value: 0n, mask: 0n}};

/** A set match and negated single addresses on the same field, as one match (a view takes one peer match per rule). */
function withSetsFolded(matches: AddressMatch[]): AddressMatch[] {
  const set = matches.find((match) => match.set);
  if (!set || matches.length === 1) return matches;
  const others = matches.filter((match) => match !== set);
  if (others.some((match) => !match.negate || !isHostNetwork(match.network) || match.set)) return matches; // (views give up on two)
  return [{...set, except: others.map((match) => match.network)}];
}

function admits(rule: ReadRule, protocol: 'tcp' | 'udp'): boolean {
  return !rule.never && !rule.protocols.some((test) => test.names.includes(protocol) === test.negate);
}

const ICMP_TYPE_OPTIONS: Readonly<Record<string, string>> = {icmp: '--icmp-type', icmp6: '--icmpv6-type'};

function readModuleOption(rule: ReadRule, module: string | undefined, option: string, value: string, negate: boolean): boolean {
  const ports = (field: PortMatch['field'], list: boolean): boolean => {
    const ranges = list ? parsePortList(value) : [parsePortRange(value)];
    if (!ranges || ranges.some((range) => range === undefined)) return false;
    rule.ports.push({field, ranges: ranges as {first: number; last: number}[], negate});
    return true;
  };
  switch (module) {
    case 'tcp':
    case 'udp':
      if (option === '--dport' || option === '--destination-port') return ports('destinationPort', false);
      if (option === '--sport' || option === '--source-port') return ports('sourcePort', false);
      return false;
    case 'multiport':
      if (option === '--dports' || option === '--destination-ports') return ports('destinationPort', true);
      if (option === '--sports' || option === '--source-ports') return ports('sourcePort', true);
      if (option === '--ports') return ports('both', true);
      return false;
    case 'conntrack':
    case 'state':
      if (option !== (module === 'state' ? '--state' : '--ctstate')) return false;
      rule.states.push({states: value.split(','), negate});
      return true;
    case 'icmp':
    case 'icmp6':
      if (option !== ICMP_TYPE_OPTIONS[module]) return false;
      // The module already requires an ICMP protocol; "any" always holds.
      if (value === 'any') rule.never ||= negate;
      else rule.unknowable = true;
      return true;
    case 'hl':
    case 'ttl': {
      const prefix = module === 'hl' ? '--hl-' : '--ttl-';
      if (option !== `${prefix}eq` && option !== `${prefix}lt` && option !== `${prefix}gt`) return false;
      if (!Number.isInteger(Number(value))) return false;
      rule.unknowable = true;
      return true;
    }
    case 'comment':
      return option === '--comment';
    case 'limit':
      return option === '--limit' || option === '--limit-burst';
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------
// Views

/**
 * The packets a view answers for, seen from the host whose ruleset it is ("own" address):
 * - request-in: INPUT, NEW, from the peer to the varying destination port;
 * - session-in: INPUT, ESTABLISHED, the same packet once the connection is open;
 * - reply-out: OUTPUT, ESTABLISHED, back to the peer from the varying source port;
 * - request-out: OUTPUT, NEW, to the peer's varying destination port;
 * - reply-in: INPUT, ESTABLISHED, the peer's answer from the varying source port.
 * The other port is always the ephemeral one the caller names.
 */
export type ViewKind = 'request-in' | 'session-in' | 'reply-out' | 'request-out' | 'reply-in';

interface ViewShape {
  /** Small number naming the shape apart from its chain (-1: too many shapes seen to keep per rule). */
  readonly id: number;
  readonly chain: BuiltInChain;
  readonly protocol: 'tcp' | 'udp';
  readonly state: ConnectionState;
  readonly inInterface?: string;
  readonly outInterface?: string;
  /** The packet field holding the peer's address; the other one holds the host's own. */
  readonly peerField: 'source' | 'destination';
  /** The port field that varies; the other one is `fixedPort`. */
  readonly portField: 'sourcePort' | 'destinationPort';
  readonly fixedPort: number;
}

const KIND_SHAPES: Readonly<Record<ViewKind, {slot: number; chain: BuiltInChain; state: ConnectionState; inbound: boolean; peerField: 'source' | 'destination'; portField: 'sourcePort' | 'destinationPort'}>> = {
  'request-in': {slot: 0, chain: 'INPUT', state: 'NEW', inbound: true, peerField: 'source', portField: 'destinationPort'},
  'session-in': {slot: 1, chain: 'INPUT', state: 'ESTABLISHED', inbound: true, peerField: 'source', portField: 'destinationPort'},
  'reply-out': {slot: 2, chain: 'OUTPUT', state: 'ESTABLISHED', inbound: false, peerField: 'destination', portField: 'sourcePort'},
  'request-out': {slot: 3, chain: 'OUTPUT', state: 'NEW', inbound: false, peerField: 'destination', portField: 'destinationPort'},
  'reply-in': {slot: 4, chain: 'INPUT', state: 'ESTABLISHED', inbound: true, peerField: 'source', portField: 'sourcePort'},
};

interface Entry {
  /** Names an entry of a rule (not a jump) in the keys of views' contents. */
  readonly id?: number;
  readonly peer?: AddressMatch;
  readonly ports: PortSet;
  readonly kind: 'accept' | 'drop' | 'return' | 'jump' | 'goto';
  readonly chain?: readonly Entry[];
}

/** A view of one table's rules. */
interface TableView {
  readonly family: 4 | 6;
  readonly entries: readonly Entry[];
  readonly policyAccepts: boolean;
  /** Peer addresses some entry names exactly (with no wider network anywhere, the rest share one answer). */
  readonly namedPeers: ReadonlySet<bigint>;
  readonly networks: boolean;
  unnamedAnswer?: PortSet;
  /** Answers for peers the entries name, once asked (hosts sharing a table ask for the same peers). */
  // (Keyed by the parsed address object, one per spelling: V8 hashes a bigint by its low 64
  // bits only, and a fleet's IPv6 addresses often differ above them.)
  namedAnswers?: Map<IpAddress, PortSet>;
}

/** An inbound view of a renamed table (RenamedTable): the base's view, asked with the peer renamed. */
interface RenamedView {
  readonly family: 4 | 6;
  readonly renamed: RenamedTable;
  readonly view: TableView;
}

/** What a view answers: the ports at which a chain accepts a packet from or to a peer. Opaque outside. */
export type ChainView = TableView | RenamedView;

/**
 * A filter table as read, shared by every ruleset whose table has the same rules (the compiler
 * shares identical specs, so a cluster's app servers, say, all have one): views are built and
 * answered once for all of them.
 */
interface SharedTable {
  readonly family: 4 | 6;
  readonly chains: ReadonlyMap<string, readonly ReadRule[]>;
  readonly declared: ReadonlySet<string>;
  readonly policies: ReadonlyMap<string, string | null>;
  /**
   * Per protocol and chain, the networks the rules admitting that protocol match the host's own
   * address against: destinations for packets coming in, sources for packets going out. Two own
   * addresses inside the same of these networks get the same view (most tables have none, so
   * every host sharing the table shares its views). With user chains, a jump could lead
   * anywhere: every chain then lists the networks of all.
   */
  readonly ownNetworks: {
    readonly in: Readonly<Record<'tcp' | 'udp', ReadonlyMap<string, readonly IpNetwork[]>>>;
    readonly out: Readonly<Record<'tcp' | 'udp', ReadonlyMap<string, readonly IpNetwork[]>>>;
  };
  /** The views built, one short list (kind-and-protocol slots x interfaces x own addresses x fixed ports). */
  readonly views: {slot: number; iface: string | undefined; own: string; fixedPort: number; view: TableView | undefined}[];
  /** viewsDefined, per protocol, once computed. */
  readonly defined: {tcp?: boolean; udp?: boolean};
  /** matchedNetworks, once computed. */
  networks?: readonly IpNetwork[];
  /** The ids of the rules read, -1 where a chain's run starts (with the chains, the content). */
  readonly ruleIds: readonly number[];
}

const BUILT_IN: ReadonlySet<string> = new Set(['INPUT', 'FORWARD', 'OUTPUT']);
const NO_NETWORKS: ReadonlyMap<string, readonly IpNetwork[]> = new Map();
/** Shared tables by a short key of their content (tables with the same key told apart by ruleIds). */
const sharedByContent = new Map<string, SharedTable[]>();

/**
 * A table read as another table with other peers: the same rules but for the single address of
 * some INPUT rules' `-s` (and their comments). A cluster's database servers, say, have tables
 * that differ only in which app servers they name; they share the first one's reading and views,
 * and a peer is renamed to the one at the same place in the first table before views answer.
 */
interface RenamedTable {
  /** The reading of the first table with these rules. */
  readonly base: SharedTable;
  /** Where each of this table's open peers is first (the base's peer there is its new name). */
  readonly places: ValueIndex;
  /** Every network this table's rules match on (matchedNetworks), once asked. */
  networks?: readonly IpNetwork[];
  /** The base's fixed networks and this table's open peers, to build `networks` from. */
  readonly template: Template;
  readonly peers: readonly IpNetwork[];
  /** The renamed views handed out (one per view of the base). */
  readonly views: RenamedView[];
  /** The base's open peer matches, each with this table's peer at that place, once needed. */
  ownAtOpen?: ReadonlyMap<AddressMatch, IpNetwork>;
}

function ownAtOpen(renamed: RenamedTable): ReadonlyMap<AddressMatch, IpNetwork> {
  const map = new Map<AddressMatch, IpNetwork>();
  renamed.template.openMatches.forEach((match, index) => map.set(match, renamed.peers[index] as IpNetwork));
  return map;
}

type TableReading = SharedTable | RenamedTable;

function baseOf(reading: TableReading): SharedTable {
  return 'base' in reading ? reading.base : reading;
}

/** A ruleset's filter table as read: 'none' without one, undefined when not readable. Cached per ruleset. */
const tableOfRuleset = new WeakMap<Ruleset, TableReading | 'none' | null>();
function rulesetTable(ruleset: Ruleset): TableReading | 'none' | undefined {
  let entry = tableOfRuleset.get(ruleset);
  if (entry === undefined) {
    const table = ruleset.tables.find((candidate) => candidate.name === 'filter');
    entry = table ? (sharedTable(table, ruleset.family) ?? null) : 'none';
    tableOfRuleset.set(ruleset, entry);
  }
  return entry ?? undefined;
}

const readingByTable = new WeakMap<Table, TableReading | null>();

function sharedTable(table: Table, family: 4 | 6): TableReading | undefined {
  let reading = readingByTable.get(table);
  if (reading === undefined) {
    reading = readTable(table, family) ?? null;
    readingByTable.set(table, reading);
  }
  return reading && baseOf(reading).family === family ? reading : undefined;
}

function readTable(table: Table, family: 4 | 6): TableReading | undefined {
  const open = openReading(table, family);
  if (!open) return readShared(table, family);
  const candidates = templates.get(open.key);
  if (candidates) {
    for (const template of candidates) {
      if (!sameIds(template.ids, open.ids)) continue;
      const renamed = renamedOnto(template, open.peers);
      if (renamed) return renamed;
    }
  }
  // The first table with these rules (or one whose peers cannot be renamed onto theirs): read
  // in full, and offered to the tables that follow.
  const shared = readShared(table, family);
  if (!shared) return undefined;
  const template = templateOf(table, open.ids, open.peers, shared);
  if (templates.size >= 50_000) templates.clear();
  if (candidates) candidates.push(template);
  else templates.set(open.key, [template]);
  return shared;
}

/** The first table read with a given content but for INPUT's open peers. */
interface Template {
  readonly ids: readonly number[];
  /** Its open peers, one per INPUT rule with a single `-s` address, in rule order. */
  readonly peers: readonly IpNetwork[];
  /** Where each of its peers is first, and for each place, the place its peer is first. */
  readonly places: ValueIndex;
  readonly firstPlaces: readonly number[];
  readonly shared: SharedTable;
  /** The read matches of its open peers, at the same places. */
  readonly openMatches: readonly AddressMatch[];
  /** The networks its rules match on besides the open peers. */
  readonly fixedNetworks: readonly IpNetwork[];
  /** INPUT's other source matches (networks, negated): an open peer must fall inside each as the template's does. */
  readonly fixedPeerNetworks: readonly IpNetwork[];
}

const templates = new Map<string, Template[]>();

/**
 * A table whose open peers match the template's place for place as one-to-one renaming (equal
 * where theirs are equal, different where theirs differ): then every peer it names gets the
 * answer the template's peer at the same places gets, and every peer it does not name gets the
 * answer of a peer the template does not name.
 */
function renamedOnto(template: Template, peers: readonly IpNetwork[]): TableReading | undefined {
  const places = new ValueIndex(peers);
  let same = true;
  for (let place = 0; place < peers.length; place += 1) {
    const first = places.indexOf(peers[place] as IpNetwork);
    // One-to-one: a peer repeats exactly where the template's does.
    if (first !== template.firstPlaces[place]) return undefined;
    if (first !== place) continue;
    const mine = peers[place] as IpNetwork;
    const theirs = template.peers[place] as IpNetwork;
    if (mine.value !== theirs.value) same = false;
    // The fixed source matches must tell the two apart no more than they tell the base's.
    for (const network of template.fixedPeerNetworks) {
      if (networkContains(network, mine) !== networkContains(network, theirs)) return undefined;
    }
  }
  // (The same peers at the same places: the template's own reading.)
  if (same) return template.shared;
  return {base: template.shared, places, template, peers, views: []};
}

/**
 * Where an address value is first in a list of addresses of one family: a scan while they are few
 * (a cluster's tables name a handful), a map when they are many (a database whitelisting hundreds
 * of app servers).
 */
class ValueIndex {
  private readonly values: readonly bigint[] | undefined;
  private readonly byKey: ReadonlyMap<number | string, number> | undefined;

  constructor(addresses: readonly IpAddress[]) {
    if (addresses.length <= 16) {
      this.values = addresses.map((address) => address.value);
    } else {
      const byKey = new Map<number | string, number>();
      for (let place = addresses.length - 1; place >= 0; place -= 1) byKey.set(valueKey(addresses[place] as IpAddress), place);
      this.byKey = byKey;
    }
  }

  /** (For an address of the family of those given.) */
  indexOf(address: IpAddress): number {
    return this.values ? this.values.indexOf(address.value) : (this.byKey?.get(valueKey(address)) ?? -1);
  }
}

/** A table read in full (readShared), as the template of the tables with its rules but for the open peers. */
function templateOf(table: Table, ids: readonly number[], peers: readonly IpNetwork[], shared: SharedTable): Template {
  const openMatches: AddressMatch[] = [];
  const fixed = new Set<IpNetwork>();
  const fixedPeers = new Set<IpNetwork>();
  for (const rule of table.rules) {
    const read = readRule(rule.spec) as ReadRule; // (read by readShared)
    for (const match of read.destination) fixed.add(match.network);
    if (rule.chain !== 'INPUT') {
      for (const match of read.source) fixed.add(match.network);
    } else if ((openSpec(rule.spec) as OpenSpec).peer) {
      openMatches.push(read.source[0] as AddressMatch);
    } else {
      for (const match of read.source) {
        fixed.add(match.network);
        fixedPeers.add(match.network);
      }
    }
  }
  const places = new ValueIndex(peers);
  const firstPlaces = peers.map((peer) => places.indexOf(peer));
  return {ids, peers, places, firstPlaces, shared, openMatches, fixedNetworks: [...fixed], fixedPeerNetworks: [...fixedPeers]};
}

/**
 * A table's content with INPUT's peers left open: the ids of its rules (INPUT rules by their
 * pattern, the others by their reading; -1 where a chain's run starts), the open peers in rule
 * order, and a short key. Undefined when the table cannot be shared that way: a user chain (a
 * jump could carry INPUT's peers anywhere), an INPUT rule with two sources, an open peer of the
 * other family, a rule not read, or no open peer at all.
 */
function openReading(table: Table, family: 4 | 6): {key: string; ids: number[]; peers: IpNetwork[]} | undefined {
  if (table.chains.length >= MAX_DEPTH) return undefined;
  let header = `${family}`;
  for (const chain of table.chains) {
    if (!BUILT_IN.has(chain.name)) return undefined;
    header += `\n${chain.name}:${chain.policy ?? '-'}`;
  }
  const ids: number[] = [];
  const peers: IpNetwork[] = [];
  let hash = 0;
  let chainName: string | undefined;
  for (const rule of table.rules) {
    let id: number;
    if (rule.chain === 'INPUT') {
      const open = openSpec(rule.spec);
      if (!open) return undefined;
      id = open.pattern;
      if (open.peer) {
        if (open.peer.family !== family) return undefined;
        peers.push(open.peer);
      }
    } else {
      if (!BUILT_IN.has(rule.chain)) return undefined;
      const read = readRule(rule.spec);
      if (!read) return undefined;
      id = read.id;
    }
    if (rule.chain !== chainName) {
      header += `\n${(chainName = rule.chain)}`;
      ids.push(-1);
      hash = (Math.imul(hash, 31) - 1) | 0;
    }
    ids.push(id);
    hash = (Math.imul(hash, 31) + id) | 0;
  }
  if (peers.length === 0) return undefined; // (nothing to rename: equal tables share by content already)
  return {key: `${header}\n#${hash}`, ids, peers};
}

/** A rule's pattern (its tokens but for the `-s` address and the comment text) and its `-s` address. */
interface OpenSpec {
  /** Names the pattern: negative, apart from read rules' ids and the -1 of chain starts. */
  readonly pattern: number;
  readonly peer: IpNetwork | undefined;
}

/** Patterns by their tokens (blanks where the address and comment were); null: a pattern that does not read. */
const patterns = new Map<string, number | null>();
let patternCount = 0;

const openSpec: (spec: readonly string[]) => OpenSpec | undefined = rememberedPerObject(readOpenSpec);

function readOpenSpec(tokens: readonly string[]): OpenSpec | undefined {
  // The option/value walk of readSpec: every option takes one value, but -f (none) and the
  // target (the rest). Blanked values are consumed as values whatever they hold, so rules with
  // equal blanked tokens read alike but for them.
  let peer: IpNetwork | undefined;
  let sources = 0;
  let key = '';
  let position = 0;
  let blankFrom = 0; // tokens before this position are in the key
  const blank = (at: number): void => {
    for (let index = blankFrom; index < at; index += 1) key += `${tokens[index]}\u0000`;
    key += '\u0001\u0000';
    blankFrom = at + 1;
  };
  while (position < tokens.length) {
    let negate = false;
    let option = tokens[position++] as string;
    if (option === '!') {
      negate = true;
      const following = tokens[position++];
      if (following === undefined) break;
      option = following;
    }
    if (option === '-f' || option === '--fragment') continue;
    if (option === '-j' || option === '--jump' || option === '-g' || option === '--goto') break;
    if (position >= tokens.length) break;
    if (option === '-s' || option === '--source' || option === '--src') {
      if (sources++ > 0) return undefined; // (two: views give up on them anyway)
      // Only a single address is left open; a network or a negated one stays part of the pattern.
      const network = negate ? undefined : parseNetwork(tokens[position] as string);
      if (network && isHostNetwork(network)) {
        peer = network;
        blank(position);
      }
    } else if (option === '--comment') {
      blank(position);
    } else if (option === '--match-set') {
      return undefined; // (a grouped rule: its table is read in full)
    }
    position += 1;
  }
  for (let index = blankFrom; index < tokens.length; index += 1) key += `${tokens[index]}\u0000`;
  let pattern = patterns.get(key);
  if (pattern === undefined) {
    // The first rule of a pattern is read in full: a pattern that does not read is not shared.
    pattern = readRule(tokens) ? -2 - patternCount++ : null;
    if (patterns.size >= 200_000) patterns.clear();
    patterns.set(key, pattern);
  }
  return pattern === null ? undefined : {pattern, peer};
}

function readShared(table: Table, family: 4 | 6): SharedTable | undefined {
  // With fewer chains than MAX_DEPTH no walk without a loop nests that deep (a loop gives up).
  if (table.chains.length >= MAX_DEPTH) return undefined;
  // The content: family, chains and policies, then each rule's chain and read rule in file
  // order. Named by a short key (the chains and a hash of the rule ids) and told apart by the
  // ids themselves: a fleet has hundreds of thousands of rules, not worth a string each.
  let header = `${family}`;
  for (const chain of table.chains) header += `\n${chain.name}:${chain.policy ?? '-'}`;
  const reads: ReadRule[] = [];
  const ids: number[] = []; // rule ids, -1 where a run of one chain's rules starts
  let hash = 0;
  let chainName: string | undefined;
  for (const rule of table.rules) {
    const read = readRule(rule.spec);
    if (!read) return undefined;
    reads.push(read);
    if (rule.chain !== chainName) {
      header += `\n${(chainName = rule.chain)}`;
      ids.push(-1);
      hash = (Math.imul(hash, 31) - 1) | 0;
    }
    ids.push(read.id);
    hash = (Math.imul(hash, 31) + read.id) | 0;
  }
  const key = `${header}\n#${hash}`;
  const sameKey = sharedByContent.get(key);
  let shared = sameKey?.find((candidate) => sameIds(candidate.ruleIds, ids));
  if (!shared) {
    const chains = new Map<string, ReadRule[]>();
    table.rules.forEach((rule, position) => {
      const list = chains.get(rule.chain);
      if (list) list.push(reads[position] as ReadRule);
      else chains.set(rule.chain, [reads[position] as ReadRule]);
    });
    const userChains = table.chains.some((chain) => chain.policy === null) || [...chains.keys()].some((name) => !BUILT_IN.has(name));
    const ownNetworksOf = (field: 'source' | 'destination', protocol: 'tcp' | 'udp'): ReadonlyMap<string, readonly IpNetwork[]> => {
      let byChain: Map<string, IpNetwork[]> | undefined;
      for (const [name, rules] of chains) {
        let networks: IpNetwork[] | undefined;
        for (const rule of rules) {
          if (rule[field].length === 0 || !rule.admits[protocol]) continue;
          networks ??= [];
          for (const match of rule[field]) if (!networks.includes(match.network)) networks.push(match.network);
        }
        if (networks) (byChain ??= new Map()).set(name, networks);
      }
      if (!byChain) return NO_NETWORKS; // (most tables: one shared empty map)
      if (userChains) {
        const all = [...new Set([...byChain.values()].flat())];
        for (const name of [...BUILT_IN, ...chains.keys()]) byChain.set(name, all);
      }
      return byChain;
    };
    const ownNetworks = {
      in: {tcp: ownNetworksOf('destination', 'tcp'), udp: ownNetworksOf('destination', 'udp')},
      out: {tcp: ownNetworksOf('source', 'tcp'), udp: ownNetworksOf('source', 'udp')},
    };
    shared = {
      family, chains, ownNetworks, views: [], defined: {}, ruleIds: ids,
      declared: new Set(table.chains.map((chain) => chain.name)),
      policies: new Map(table.chains.map((chain) => [chain.name, chain.policy])),
    };
    if (sharedByContent.size >= 50_000) sharedByContent.clear();
    if (sameKey) sameKey.push(shared);
    else sharedByContent.set(key, [shared]);
  }
  return shared;
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index += 1) if (a[index] !== b[index]) return false;
  return true;
}

/**
 * The view of a ruleset for one kind of packet, cached. `iface` is the interface the packet
 * arrives on (inbound kinds) or leaves by (outbound kinds). Undefined when some rule such a
 * packet can reach is not modelled exactly (then ask the evaluator).
 */
export function chainView(
  ruleset: Ruleset,
  kind: ViewKind,
  protocol: 'tcp' | 'udp',
  iface: string | undefined,
  ownAddress: string,
  fixedPort: number,
): ChainView | undefined {
  const own = parseAddress(ownAddress);
  return own && chainViewAt(ruleset, kind, protocol, iface, own, fixedPort);
}

/** chainView for an own address already parsed. */
export function chainViewAt(
  ruleset: Ruleset,
  kind: ViewKind,
  protocol: 'tcp' | 'udp',
  iface: string | undefined,
  own: IpAddress,
  fixedPort: number,
): ChainView | undefined {
  if (own.family !== ruleset.family) return undefined;
  const reading = rulesetTable(ruleset);
  if (reading === 'none') return ACCEPT_EVERYTHING[ruleset.family];
  if (!reading) return undefined;
  const view = tableViewAt(baseOf(reading), kind, protocol, iface, own, fixedPort);
  // A renamed table's peers are INPUT's sources: only inbound views see them.
  if (!view || !('base' in reading) || KIND_SHAPES[kind].peerField !== 'source') return view;
  return renamedView(reading, view);
}

function renamedView(renamed: RenamedTable, view: TableView): ChainView {
  for (const known of renamed.views) if (known.view === view) return known;
  const made: RenamedView = {family: view.family, renamed, view};
  renamed.views.push(made);
  return made;
}

/** chainViewAt on a table as read. */
function tableViewAt(shared: SharedTable, kind: ViewKind, protocol: 'tcp' | 'udp', iface: string | undefined, own: IpAddress, fixedPort: number): TableView | undefined {
  const shape = KIND_SHAPES[kind];
  const slot = shape.slot * 2 + (protocol === 'udp' ? 1 : 0);
  // The host's own address matters only when some rule matches on its side of the packet.
  const ownKey = ownKeyOf((shape.peerField === 'source' ? shared.ownNetworks.in : shared.ownNetworks.out)[protocol].get(shape.chain), own);
  for (const known of shared.views) {
    if (known.slot === slot && known.iface === iface && known.own === ownKey && known.fixedPort === fixedPort) return known.view;
  }
  const view = buildView(
    shared,
    {
      id: shapeId(slot, iface, fixedPort),
      chain: shape.chain,
      protocol,
      state: shape.state,
      inInterface: shape.inbound ? iface : undefined,
      outInterface: shape.inbound ? undefined : iface,
      peerField: shape.peerField,
      portField: shape.portField,
      fixedPort,
    },
    own,
  );
  shared.views.push({slot, iface, own: ownKey, fixedPort, view});
  return view;
}

/** Shape ids by interface, then by slot and fixed port. */
const shapeIds = new Map<string | undefined, Map<number, number>>();
let shapeCount = 0;
const MAX_SHAPES = 256;

/** The id of a view shape: its kind and protocol (slot), interface and fixed port. */
function shapeId(slot: number, iface: string | undefined, fixedPort: number): number {
  if (!Number.isInteger(fixedPort) || fixedPort < 0 || fixedPort > 65535) return -1; // (not a port: not kept)
  let byPort = shapeIds.get(iface);
  if (!byPort) shapeIds.set(iface, (byPort = new Map()));
  const key = slot * 65536 + fixedPort;
  let id = byPort.get(key);
  if (id === undefined) {
    if (shapeCount >= MAX_SHAPES) return -1;
    byPort.set(key, (id = shapeCount++));
  }
  return id;
}

/** Which of the networks hold the host's own address: the part of it a view depends on. */
function ownKeyOf(networks: readonly IpNetwork[] | undefined, own: IpAddress): string {
  if (!networks) return '';
  let key = '';
  for (const network of networks) key += networkContains(network, own) ? '1' : '0';
  return key;
}

/** No filter table: everything passes. */
const ACCEPT_EVERYTHING: Readonly<Record<4 | 6, TableView>> = {
  4: {family: 4, entries: [], policyAccepts: true, namedPeers: new Set(), networks: false, unnamedAnswer: ALL_PORTS},
  6: {family: 6, entries: [], policyAccepts: true, namedPeers: new Set(), networks: false, unnamedAnswer: ALL_PORTS},
};

/** The views of a chain without rules, by policy and family (shared like views of equal content). */
const POLICY_ONLY_ACCEPT: Readonly<Record<4 | 6, TableView>> = {
  4: {family: 4, entries: [], policyAccepts: true, namedPeers: new Set(), networks: false},
  6: {family: 6, entries: [], policyAccepts: true, namedPeers: new Set(), networks: false},
};
const POLICY_ONLY_DROP: Readonly<Record<4 | 6, TableView>> = {
  4: {family: 4, entries: [], policyAccepts: false, namedPeers: new Set(), networks: false},
  6: {family: 6, entries: [], policyAccepts: false, namedPeers: new Set(), networks: false},
};

function buildView(table: SharedTable, shape: ViewShape, own: IpAddress): TableView | undefined {
  // A chain with no rules (OUTPUT, in most tables): only its policy decides.
  if (!table.chains.has(shape.chain)) {
    const policyAccepts = (table.policies.get(shape.chain) ?? 'ACCEPT') !== 'DROP';
    return (policyAccepts ? POLICY_ONLY_ACCEPT : POLICY_ONLY_DROP)[table.family];
  }
  let namedPeers: Set<bigint> | undefined;
  let networks = false;
  const reduced = new Map<string, readonly Entry[] | null>();

  const reduce = (name: string, depth: number): readonly Entry[] | undefined => {
    const known = reduced.get(name);
    if (known !== undefined) return known ?? undefined;
    reduced.set(name, null); // a jump back into a chain being read is a loop: give up
    const entries: Entry[] = [];
    for (const rule of table.chains.get(name) ?? []) {
      const target = rule.target;
      let entry: Entry;
      if (target.kind !== 'jump' && target.kind !== 'goto') {
        const plain = reducedRule(rule, shape, own);
        if (plain === 'skip') continue;
        if (plain === 'unmodelled') return undefined;
        entry = plain;
      } else {
        const ports = rulePorts(rule, shape, own);
        if (ports === null) continue;
        if (ports === undefined) return undefined;
        const peerMatches = shape.peerField === 'source' ? rule.source : rule.destination;
        if (peerMatches.length > 1) return undefined; // iptables allows one; not worth modelling
        const peer = peerMatches[0];
        if (!table.declared.has(target.chain) || depth >= MAX_DEPTH) return undefined;
        const sub = reduce(target.chain, depth + 1);
        if (!sub) return undefined;
        entry = peer ? {peer, ports, kind: target.kind, chain: sub} : {ports, kind: target.kind, chain: sub};
      }
      entries.push(entry);
      const {peer, ports} = entry;
      if (peer) {
        if (isHostNetwork(peer.network) && !peer.negate) (namedPeers ??= new Set()).add(peer.network.value);
        else networks = true;
      } else if (ports === ALL_PORTS && target.kind !== 'jump') {
        // Nothing gets past a verdict, RETURN or goto that holds for every peer and port (the
        // replies rule, for ESTABLISHED packets): the rules after it are never reached.
        break;
      }
    }
    reduced.set(name, entries);
    return entries;
  };

  const entries = reduce(shape.chain, 0);
  if (!entries) return undefined;
  const policyAccepts = (table.policies.get(shape.chain) ?? 'ACCEPT') !== 'DROP';
  // Views of different tables often come out the same (no entry at all, or only the replies
  // rule): those share one view, and so its answers.
  const key = contentKey(table.family, policyAccepts, entries);
  let view = key === undefined ? undefined : viewsByContent.get(key);
  if (!view) {
    view = {family: table.family, entries, policyAccepts, namedPeers: namedPeers ?? NO_PEERS, networks};
    if (key !== undefined) {
      if (viewsByContent.size >= 50_000) viewsByContent.clear();
      viewsByContent.set(key, view);
    }
  }
  return view;
}

const NO_PEERS: ReadonlySet<bigint> = new Set();
const viewsByContent = new Map<string, TableView>();
let nextEntryId = 0;

/** What makes a view: family, policy and its entries (undefined when one jumps: those are rebuilt per view). */
function contentKey(family: 4 | 6, policyAccepts: boolean, entries: readonly Entry[]): string | undefined {
  const parts: (string | number)[] = [`${family}${policyAccepts ? 'A' : 'D'}`];
  for (const entry of entries) {
    if (entry.id === undefined) return undefined;
    parts.push(entry.id);
  }
  return parts.join(','); // (joined: the map keeps a flat key)
}


/**
 * A rule that does not jump, for one view shape: its entry, 'skip' when no packet of the shape
 * can match it (or it passes the packet on), 'unmodelled' when the view must give up. Kept on
 * the rule per shape when it does not depend on the host's own address: rules are shared by
 * every table holding them, so the views of a large fleet's tables mostly look them up.
 */
function reducedRule(rule: ReadRule, shape: ViewShape, own: IpAddress): Entry | 'skip' | 'unmodelled' {
  const ownMatches = shape.peerField === 'source' ? rule.destination : rule.source;
  const keep = shape.id >= 0 && ownMatches.length === 0;
  if (keep) {
    const known = rule.reduced[shape.id];
    if (known !== undefined) return known;
  }
  let reduced: Entry | 'skip' | 'unmodelled';
  const ports = rulePorts(rule, shape, own);
  const peerMatches = shape.peerField === 'source' ? rule.source : rule.destination;
  const kind = rule.target.kind;
  if (ports === null) reduced = 'skip';
  else if (ports === undefined) reduced = 'unmodelled';
  else if (peerMatches.length > 1) reduced = 'unmodelled'; // iptables allows one; not worth modelling
  else if (kind === 'pass' || kind === 'jump' || kind === 'goto') reduced = 'skip';
  else reduced = peerMatches[0] ? {id: nextEntryId++, peer: peerMatches[0], ports, kind} : {id: nextEntryId++, ports, kind};
  if (keep) rule.reduced[shape.id] = reduced;
  return reduced;
}

/** The table's rules read, by chain (kept only inside its SharedTable: one per distinct content). */

const portSetCache = new WeakMap<PortMatch, PortSet>();

/**
 * A rule with everything fixed decided: the ports of the varying field it can match (null when
 * it cannot match at all; undefined when it could and has a condition that cannot be judged).
 */
function rulePorts(rule: ReadRule, shape: ViewShape, own: IpAddress): PortSet | null | undefined {
  if (!rule.admits[shape.protocol]) return null;
  for (const test of rule.inInterface) if (interfaceMatches(test.pattern, shape.inInterface) === test.negate) return null;
  for (const test of rule.outInterface) if (interfaceMatches(test.pattern, shape.outInterface) === test.negate) return null;
  for (const test of rule.states) if (test.states.includes(shape.state) === test.negate) return null;
  const ownMatches = shape.peerField === 'source' ? rule.destination : rule.source;
  for (const test of ownMatches) {
    if (test.set) return undefined; // (the compiler's sets hold peers only)
    if (networkContains(test.network, own) === test.negate) return null;
  }
  let ports: PortSet = ALL_PORTS;
  for (const test of rule.ports) {
    const fixedIn = test.ranges.some((range) => shape.fixedPort >= range.first && shape.fixedPort <= range.last);
    if (test.field === 'both') {
      // Either port in the list: with the fixed one in it, the rule holds whatever the other is.
      if (fixedIn) {
        if (test.negate) return null;
        continue;
      }
    } else if (test.field !== shape.portField) {
      if (fixedIn === test.negate) return null;
      continue;
    }
    let set = portSetCache.get(test);
    if (!set) {
      set = portSetOf(test.ranges);
      if (test.negate) set = subtractPorts(ALL_PORTS, set);
      portSetCache.set(test, set);
    }
    ports = intersectPorts(ports, set);
  }
  if (ports.length === 0) return null;
  // Every remaining condition could hold: an unknowable one would be noted by the evaluator.
  return rule.unknowable ? undefined : ports;
}

/**
 * Every address or network the filter table's rules match on (either direction, negated or
 * not), read from the parsed rules; undefined when a rule is not read (ask the token scan).
 */
export function matchedNetworks(ruleset: Ruleset): readonly IpNetwork[] | undefined {
  const reading = rulesetTable(ruleset);
  if (reading === 'none') return NONE;
  if (!reading) return undefined;
  if ('base' in reading) return (reading.networks ??= [...new Set([...reading.template.fixedNetworks, ...reading.peers])]);
  const shared = reading;
  if (!shared.networks) {
    const networks = new Set<IpNetwork>();
    for (const rules of shared.chains.values()) {
      for (const rule of rules) {
        for (const match of rule.source) networks.add(match.network);
        for (const match of rule.destination) networks.add(match.network);
      }
    }
    shared.networks = [...networks];
  }
  return shared.networks;
}

/**
 * True when every view of this ruleset for this protocol is defined (for own addresses of its
 * family): no rule that admits the protocol has an unjudgeable condition or two peer
 * addresses, every jump lands in a declared chain and no jumps loop. Callers may then skip
 * fetching views once an earlier check has closed everything.
 */
export function viewsDefined(ruleset: Ruleset, protocol: 'tcp' | 'udp'): boolean {
  const reading = rulesetTable(ruleset);
  if (reading === 'none') return true;
  if (!reading) return false;
  const shared = baseOf(reading);
  let defined = shared.defined[protocol];
  if (defined === undefined) {
    defined = computeDefined(shared, protocol);
    shared.defined[protocol] = defined;
  }
  return defined;
}

function computeDefined(table: SharedTable, protocol: 'tcp' | 'udp'): boolean {
  const jumps = new Map<string, string[]>();
  for (const [name, rules] of table.chains) {
    for (const rule of rules) {
      if (!rule.admits[protocol]) continue;
      if (rule.unknowable || rule.source.length > 1 || rule.destination.length > 1) return false;
      const target = rule.target;
      if (target.kind !== 'jump' && target.kind !== 'goto') continue;
      if (!table.declared.has(target.chain)) return false;
      const list = jumps.get(name);
      if (list) list.push(target.chain);
      else jumps.set(name, [target.chain]);
    }
  }
  // A loop in the jumps would make a view give up.
  const state = new Map<string, 'open' | 'done'>();
  const loops = (name: string): boolean => {
    const seen = state.get(name);
    if (seen === 'open') return true;
    if (seen === 'done') return false;
    state.set(name, 'open');
    for (const next of jumps.get(name) ?? []) if (loops(next)) return true;
    state.set(name, 'done');
    return false;
  };
  return ![...jumps.keys()].some(loops);
}

// ---------------------------------------------------------------------------
// Answers

function peerMatches(match: AddressMatch, peer: IpAddress | undefined): boolean {
  // undefined: a peer no entry names (only used when every peer match is a single address).
  const inside = peer !== undefined && (match.set ? inSet(match, peer) : networkContains(match.network, peer));
  return inside !== match.negate;
}

function inSet(match: AddressMatch, peer: IpAddress): boolean {
  if (!(match.set as AddressSet).has(peer)) return false;
  for (const network of match.except ?? NONE) if (networkContains(network, peer)) return false;
  return true;
}

/** Walks entries for the ports in `open`; accepted ports are added to `verdicts.accepted`; returns what comes back. */
function walk(entries: readonly Entry[], peer: IpAddress | undefined, start: PortSet, verdicts: {accepted: PortSet}, renamed?: ReadonlyMap<AddressMatch, IpNetwork>): PortSet {
  let open = start;
  let returned: PortSet = NO_PORTS;
  for (const entry of entries) {
    if (open.length === 0) break;
    if (entry.peer) {
      // (A renamed table's own peer stands where the base names one of its open peers.)
      const own = renamed?.get(entry.peer);
      if (own ? !(peer !== undefined && networkContains(own, peer)) : !peerMatches(entry.peer, peer)) continue;
    }
    const matching = intersectPorts(open, entry.ports);
    if (matching.length === 0) continue;
    switch (entry.kind) {
      case 'accept':
        verdicts.accepted = unionPorts(verdicts.accepted, matching);
        open = subtractPorts(open, matching);
        break;
      case 'drop':
        open = subtractPorts(open, matching);
        break;
      case 'return':
        returned = unionPorts(returned, matching);
        open = subtractPorts(open, matching);
        break;
      case 'jump': {
        const back = walk(entry.chain as readonly Entry[], peer, matching, verdicts);
        open = unionPorts(subtractPorts(open, matching), back);
        break;
      }
      case 'goto': {
        const back = walk(entry.chain as readonly Entry[], peer, matching, verdicts);
        returned = unionPorts(returned, back);
        open = subtractPorts(open, matching);
        break;
      }
    }
  }
  return unionPorts(returned, open);
}

function answer(view: TableView, peer: IpAddress | undefined, renamed?: ReadonlyMap<AddressMatch, IpNetwork>): PortSet {
  const verdicts = {accepted: NO_PORTS};
  const fallThrough = walk(view.entries, peer, ALL_PORTS, verdicts, renamed);
  return view.policyAccepts ? unionPorts(verdicts.accepted, fallThrough) : verdicts.accepted;
}


/** The ports (of the varying field) at which the view's chain accepts the packet from/to `peer`. */
export function acceptedPorts(view: ChainView, peer: string): PortSet {
  const address = parseAddress(peer);
  if (!address || address.family !== view.family) throw new Error(`packet address ${peer} is not an IPv${view.family} address`);
  return acceptedPortsOf(view, address);
}

/** acceptedPorts for a peer address already parsed (of the view's family). */
export function acceptedPortsOf(view: ChainView, address: IpAddress): PortSet {
  if ('renamed' in view) {
    // A peer the renamed table names is asked as the base's peer at the same places (shared
    // answers); a peer neither names, as itself. A peer only the base names is walked with
    // the renamed table's own peers in place of the base's.
    const {renamed, view: base} = view;
    if (address.family !== base.family) return tableAnswer(base, address);
    const {template} = renamed;
    const place = renamed.places.indexOf(address);
    if (place !== -1) return tableAnswer(base, template.peers[place] as IpNetwork);
    if (template.places.indexOf(address) === -1) return tableAnswer(base, address);
    return answer(base, address, (renamed.ownAtOpen ??= ownAtOpen(renamed)));
  }
  return tableAnswer(view, address);
}

function tableAnswer(view: TableView, address: IpAddress): PortSet {
  if (!view.networks && !view.namedPeers.has(address.value)) return (view.unnamedAnswer ??= answer(view, undefined));
  const answers = (view.namedAnswers ??= new Map());
  let ports = answers.get(address);
  if (!ports) {
    ports = answer(view, address);
    // With network matches every peer is answered on its own: keep the memo bounded.
    if (answers.size >= 4096) answers.clear();
    answers.set(address, ports);
  }
  return ports;
}

/** Does the view's chain accept the packet from/to `peer` at this port? */
export function acceptsAt(view: ChainView, peer: string, port: number): boolean {
  return portsContain(acceptedPorts(view, peer), port);
}
