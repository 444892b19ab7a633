// Walks every nftables base chain on a packet's hook, the way the kernel does (nft(8), "Overall
// evaluation of the ruleset"): base chains run in priority order, an accept ends only its own
// base chain, a drop (or reject) anywhere is final. So a packet passes only when no base chain
// drops it.
//
// What this evaluator cannot read is never assumed open: a statement it does not model makes
// its rule "may match"; such a rule whose verdict would drop (directly or through the chain it
// jumps to) turns the answer into "may drop", named with the rule; one whose verdict would accept
// is assumed not to match (the walk goes on, which can only drop more).
import {networkContains, parseAddress, parseNetwork, type IpAddress} from './ip.js';
import type {Packet} from './evaluator.js';
import {isIptablesNftTable, type NftChain, type NftHook, type NftRuleset, type NftSet, type NftStatement, type NftTable} from './nft-ruleset.js';

export type NftOutcome = 'pass' | 'drop' | 'may-drop';

export interface NftRuleRef {
  readonly table: string; // "inet firewalld"
  readonly chain: string;
  readonly index: number; // 0-based among the chain's rules
  readonly handle?: number;
}

export interface NftDecision {
  readonly outcome: NftOutcome;
  /** The rule or policy that dropped (or may drop) the packet. */
  readonly by?: NftRuleRef | {readonly table: string; readonly chain: string; readonly policy: 'drop'};
  /** Why a "may drop": the statement the evaluator could not read. */
  readonly reason?: string;
  /** Everything it could not read on the way, whatever the outcome. */
  readonly unread: readonly {readonly at: NftRuleRef; readonly what: string}[];
}

type Tri = true | false | {readonly unknown: string};

const HOOK_OF_CHAIN: Readonly<Record<Packet['chain'], NftHook>> = {INPUT: 'input', FORWARD: 'forward', OUTPUT: 'output'};

/** Tables that see a packet of this family. */
function tableSees(table: NftTable, family: 4 | 6): boolean {
  return table.family === 'inet' || table.family === (family === 4 ? 'ip' : 'ip6');
}

const MAX_DEPTH = 64;

/**
 * The verdict of every native base chain on the packet's hook (iptables-nft's own tables left
 * out: the iptables evaluator reads those). `only` limits the walk to some tables (ours).
 */
export function evaluateNft(ruleset: NftRuleset, packet: Packet, options: {readonly tables?: (table: NftTable) => boolean} = {}): NftDecision {
  const source = parseAddress(packet.source);
  const destination = parseAddress(packet.destination);
  if (!source || !destination || source.family !== destination.family) throw new Error(`packet addresses ${packet.source} → ${packet.destination} are not of one family`);
  const family = source.family;
  const hook = HOOK_OF_CHAIN[packet.chain];
  const unread: {at: NftRuleRef; what: string}[] = [];
  const bases: {table: NftTable; chain: NftChain}[] = [];
  for (const table of ruleset.tables) {
    if (!tableSees(table, family) || isIptablesNftTable(table) || (options.tables && !options.tables(table))) continue;
    for (const chain of table.chains.values()) {
      if (chain.base && chain.base.hook === hook && chain.base.type === 'filter') bases.push({table, chain});
    }
  }
  bases.sort((a, b) => (a.chain.base?.priority ?? 0) - (b.chain.base?.priority ?? 0));

  const context: Context = {packet, family, source, destination, unread};
  let mayDrop: MayDrop | undefined;
  for (const {table, chain} of bases) {
    const walked = walkChain(context, table, chain, 0, false);
    let dropped: NftDecision['by'] | undefined;
    if (walked.kind === 'drop') dropped = walked.by;
    else if (walked.kind !== 'accept' && chain.base?.policy === 'drop') dropped = {table: tableName(table), chain: chain.name, policy: 'drop'};
    if (dropped && walked.doubt === undefined) return {outcome: 'drop', by: dropped, unread};
    if (dropped) mayDrop ??= {by: dropped, reason: `a rule that may accept (${walked.doubt ?? "?"}) was passed over`};
    if (walked.kind !== 'drop' && walked.mayDrop) mayDrop ??= walked.mayDrop;
  }
  if (mayDrop) return {outcome: 'may-drop', by: mayDrop.by, reason: mayDrop.reason, unread};
  return {outcome: 'pass', unread};
}

interface Context {
  readonly packet: Packet;
  readonly family: 4 | 6;
  readonly source: IpAddress;
  readonly destination: IpAddress;
  readonly unread: {at: NftRuleRef; what: string}[];
}

type MayDrop = {readonly by: NonNullable<NftDecision['by']>; readonly reason: string};

/**
 * How a chain's walk ended. `mayDrop`: a rule on the way may have dropped the packet. `doubt`: a
 * rule on the way that may have accepted (or returned) was passed over, so a drop after it is
 * only a "may drop".
 */
type Walk =
  | {readonly kind: 'drop'; readonly by: NftRuleRef; readonly doubt?: string}
  | {readonly kind: 'accept' | 'return' | 'end'; readonly mayDrop?: MayDrop; readonly doubt?: string}; // end: a base chain's end, its policy decides

function tableName(table: NftTable): string {
  return `${table.family} ${table.name}`;
}

/**
 * Walks one chain. `speculative`: reached through a rule that may not match, so a drop there is
 * only a "may drop".
 */
function walkChain(context: Context, table: NftTable, chain: NftChain, depth: number, speculative: boolean): Walk {
  let mayDrop: MayDrop | undefined;
  let doubt: string | undefined;
  const ended = (kind: 'accept' | 'return' | 'end'): Walk => ({kind, ...(mayDrop ? {mayDrop} : {}), ...(doubt === undefined ? {} : {doubt})});
  for (let index = 0; index < chain.rules.length; index += 1) {
    const rule = chain.rules[index];
    if (!rule) continue;
    let unknown: string | undefined;
    let matched = true;
    let verdict: Verdict | undefined;
    for (const statement of rule.statements) {
      const step = judgeStatement(context, table, statement);
      if (step.kind === 'match') {
        if (step.result === false) {
          matched = false;
          break;
        }
        if (step.result !== true) unknown ??= step.result.unknown;
      } else if (step.kind === 'verdict') {
        verdict = step.verdict;
        break;
      } else if (step.kind === 'unread') {
        unknown ??= step.what;
      }
      // 'ignore': counter, log, comment …: the walk goes on
    }
    if (!matched) continue;
    // Named only for a rule that matched: most rules do not, for most packets.
    const at: NftRuleRef = {table: tableName(table), chain: chain.name, index, ...(rule.handle === undefined ? {} : {handle: rule.handle})};
    if (unknown !== undefined) context.unread.push({at, what: unknown});
    if (verdict === undefined) continue;
    // A rule that may not match is assumed not to, except that what it would drop is a "may drop".
    const certain = unknown === undefined;
    switch (verdict.kind) {
      case 'accept':
        if (!certain) {
          doubt ??= unknown;
          continue;
        }
        return ended('accept');
      case 'drop':
        if (certain && !speculative) return {kind: 'drop', by: at, ...(doubt === undefined ? {} : {doubt})};
        mayDrop ??= {by: at, reason: unknown ?? 'reached through a rule that may not match'};
        continue;
      case 'may-drop':
        mayDrop ??= {by: at, reason: verdict.reason};
        continue;
      case 'return':
        if (!certain) {
          doubt ??= unknown;
          continue;
        }
        return ended('return');
      case 'jump':
      case 'goto': {
        const target = table.chains.get(verdict.chain);
        if (!target || depth >= MAX_DEPTH) {
          mayDrop ??= {by: at, reason: target ? 'chains nest too deep' : `no chain ${verdict.chain}`};
          continue;
        }
        const inner = walkChain(context, table, target, depth + 1, speculative || !certain);
        if (inner.kind === 'drop') return doubt === undefined || inner.doubt !== undefined ? inner : {...inner, doubt};
        if (inner.mayDrop) mayDrop ??= inner.mayDrop;
        if (!certain) {
          // the target may have accepted: what follows here is in doubt
          if (inner.kind === 'accept') doubt ??= unknown;
          continue;
        }
        if (inner.doubt !== undefined) doubt ??= inner.doubt;
        if (inner.kind === 'accept') return ended('accept');
        // goto: the end of the target ends this chain too
        if (verdict.kind === 'goto') return ended(chain.base ? 'end' : 'return');
        continue;
      }
    }
  }
  return ended(chain.base ? 'end' : 'return');
}

type Verdict =
  | {readonly kind: 'accept' | 'drop' | 'return'}
  | {readonly kind: 'jump' | 'goto'; readonly chain: string}
  | {readonly kind: 'may-drop'; readonly reason: string};

type Step =
  | {readonly kind: 'match'; readonly result: Tri}
  | {readonly kind: 'verdict'; readonly verdict: Verdict}
  | {readonly kind: 'unread'; readonly what: string}
  | {readonly kind: 'ignore'};

/** Statements that neither match nor decide. */
const PASSIVE = new Set(['counter', 'log', 'comment', 'mangle', 'notrack', 'meter', 'set', 'ct helper', 'ct timeout', 'ct expectation']);

function judgeStatement(context: Context, table: NftTable, statement: NftStatement): Step {
  // A statement is an object of one key (its kind); read without copying it (once per rule and packet).
  let kind = '?';
  for (const key in statement) {
    kind = key;
    break;
  }
  const body: unknown = statement[kind];
  if (kind === 'match') return {kind: 'match', result: judgeMatch(context, table, body)};
  if (kind === 'accept' || kind === 'drop' || kind === 'return') return {kind: 'verdict', verdict: {kind}};
  if (kind === 'reject') return {kind: 'verdict', verdict: {kind: 'drop'}};
  if (kind === 'jump' || kind === 'goto') {
    const target = isRecord(body) ? body['target'] : undefined;
    return typeof target === 'string' ? {kind: 'verdict', verdict: {kind, chain: target}} : {kind: 'unread', what: `${kind} without a target`};
  }
  if (kind === 'continue') return {kind: 'ignore'};
  if (kind === 'vmap') return judgeVmap(context, table, body);
  if (kind === 'queue') return {kind: 'verdict', verdict: {kind: 'may-drop', reason: 'queued to a user-space program'}};
  if (PASSIVE.has(kind)) return {kind: 'ignore'};
  if (kind === 'limit' || kind === 'quota') return {kind: 'match', result: {unknown: `${kind} (depends on traffic)`}};
  return {kind: 'unread', what: `statement "${kind}"`};
}

function judgeVmap(context: Context, table: NftTable, body: unknown): Step {
  if (!isRecord(body)) return {kind: 'unread', what: 'vmap'};
  const key = valueOf(context, body['key']);
  if (typeof key === 'object' && 'unknown' in key) return {kind: 'match', result: key};
  const data = body['data'];
  const pairs = isRecord(data) && Array.isArray(data['set']) ? (data['set'] as unknown[]) : typeof data === 'string' && data.startsWith('@') ? mapElements(table, data.slice(1)) : undefined;
  if (!pairs) return {kind: 'unread', what: 'vmap data'};
  for (const pair of pairs) {
    if (!Array.isArray(pair) || pair.length !== 2) continue;
    const hit = contains(key, pair[0], table);
    if (typeof hit === 'object') return {kind: 'match', result: hit};
    if (!hit) continue;
    const step = judgeStatement(context, table, isRecord(pair[1]) ? pair[1] : {});
    return step.kind === 'verdict' ? step : {kind: 'unread', what: 'vmap value'};
  }
  return {kind: 'match', result: false};
}

function mapElements(table: NftTable, name: string): unknown[] | undefined {
  const map = table.sets.get(name);
  return map?.isMap ? [...map.elements] : undefined;
}

// ---------------------------------------------------------------------------
// Values of the packet that a match's left side names.

/** The names `nft -j` prints for ICMP types. */
const ICMP_TYPE_NUMBERS: Readonly<Record<string, number>> = {
  'echo-reply': 0, 'destination-unreachable': 3, 'source-quench': 4, redirect: 5, 'echo-request': 8,
  'router-advertisement': 9, 'router-solicitation': 10, 'time-exceeded': 11, 'parameter-problem': 12,
  'timestamp-request': 13, 'timestamp-reply': 14, 'info-request': 15, 'info-reply': 16,
  'address-mask-request': 17, 'address-mask-reply': 18,
};
const ICMPV6_TYPE_NUMBERS: Readonly<Record<string, number>> = {
  'destination-unreachable': 1, 'packet-too-big': 2, 'time-exceeded': 3, 'parameter-problem': 4,
  'echo-request': 128, 'echo-reply': 129, 'mld-listener-query': 130, 'mld-listener-report': 131,
  'mld-listener-done': 132, 'mld-listener-reduction': 132, 'nd-router-solicit': 133, 'nd-router-advert': 134,
  'nd-neighbor-solicit': 135, 'nd-neighbor-advert': 136, 'nd-redirect': 137, 'router-renumbering': 138,
  'ind-neighbor-solicit': 141, 'ind-neighbor-advert': 142, 'mld2-listener-report': 143,
};

type Value = {readonly address: IpAddress} | {readonly number: number; readonly symbols?: Readonly<Record<string, number>>} | {readonly name: string} | {readonly names: readonly string[]; readonly decides?: readonly string[]} | {readonly absent: true} | {readonly unknown: string};

const L4_NAMES: Readonly<Record<Packet['protocol'], string>> = {tcp: 'tcp', udp: 'udp', icmp: 'icmp', 'ipv6-icmp': 'ipv6-icmp'};
const L4_NUMBERS: Readonly<Record<string, number>> = {tcp: 6, udp: 17, icmp: 1, 'ipv6-icmp': 58};

function valueOf(context: Context, left: unknown): Value {
  const {packet, family} = context;
  if (!isRecord(left)) return {unknown: 'an expression'};
  if (isRecord(left['payload'])) {
    const protocol = String(left['payload']['protocol']);
    const field = String(left['payload']['field']);
    if (protocol === 'ip' || protocol === 'ip6') {
      if ((protocol === 'ip') !== (family === 4)) return {absent: true};
      if (field === 'saddr') return {address: context.source};
      if (field === 'daddr') return {address: context.destination};
      if (field === 'protocol' || field === 'nexthdr') return {name: L4_NAMES[packet.protocol]};
      if (field === (protocol === 'ip' ? 'ttl' : 'hoplimit')) return packet.hopLimit === undefined ? {unknown: `${protocol} ${field}`} : {number: packet.hopLimit};
      return {unknown: `${protocol} ${field}`};
    }
    if (protocol === 'tcp' || protocol === 'udp' || protocol === 'th') {
      if (protocol === 'th' ? packet.protocol !== 'tcp' && packet.protocol !== 'udp' : packet.protocol !== protocol) return {absent: true};
      if (field === 'dport') return packet.destinationPort === undefined ? {unknown: `${protocol} dport`} : {number: packet.destinationPort};
      if (field === 'sport') return packet.sourcePort === undefined ? {unknown: `${protocol} sport`} : {number: packet.sourcePort};
      return {unknown: `${protocol} ${field}`};
    }
    if (protocol === 'icmp' || protocol === 'icmpv6') {
      // In an inet table, nft makes `icmp` depend on IPv4 and `icmpv6` on IPv6 (`meta nfproto`).
      if (packet.protocol !== (protocol === 'icmp' ? 'icmp' : 'ipv6-icmp') || (protocol === 'icmp') !== (family === 4)) return {absent: true};
      if (field === 'type' && packet.icmpType !== undefined) return {number: packet.icmpType, symbols: protocol === 'icmp' ? ICMP_TYPE_NUMBERS : ICMPV6_TYPE_NUMBERS};
      return {unknown: `${protocol} ${field}`};
    }
    return {unknown: `${protocol} ${field}`};
  }
  if (isRecord(left['meta'])) {
    const key = String(left['meta']['key']);
    if (key === 'l4proto') return {name: L4_NAMES[packet.protocol]};
    if (key === 'nfproto') return {name: family === 4 ? 'ipv4' : 'ipv6'};
    if (key === 'protocol') return {name: family === 4 ? 'ip' : 'ip6'};
    if (key === 'iifname' || key === 'iif') return packet.inInterface === undefined ? {unknown: `meta ${key}`} : {name: packet.inInterface};
    if (key === 'oifname' || key === 'oif') return packet.outInterface === undefined ? {unknown: `meta ${key}`} : {name: packet.outInterface};
    return {unknown: `meta ${key}`};
  }
  if (isRecord(left['ct'])) {
    const key = String(left['ct']['key']);
    if (key === 'state') return {names: [packet.state.toLowerCase()]};
    // The packets reasoned about reach the address they were sent to: never NATed.
    if (key === 'status') return {names: [], decides: ['dnat', 'snat']};
    return {unknown: `ct ${key}`};
  }
  return {unknown: Object.keys(left)[0] ?? 'an expression'};
}

// ---------------------------------------------------------------------------
// Matching a value against a match's right side.

function judgeMatch(context: Context, table: NftTable, body: unknown): Tri {
  if (!isRecord(body)) return {unknown: 'a match'};
  const op = String(body['op']);
  const value = valueOf(context, body['left']);
  if ('unknown' in value) return value;
  // A header the packet does not have (a tcp match on a udp packet, ip saddr on IPv6): nftables'
  // implicit dependency fails, whatever the operator.
  if ('absent' in value) return false;
  const right = body['right'];
  if (op === '==' || op === 'in') return contains(value, right, table);
  if (op === '!=') {
    const hit = contains(value, right, table);
    return typeof hit === 'object' ? hit : !hit;
  }
  if ((op === '<' || op === '>' || op === '<=' || op === '>=') && 'number' in value && typeof right === 'number') {
    const n = value.number;
    return op === '<' ? n < right : op === '>' ? n > right : op === '<=' ? n <= right : n >= right;
  }
  return {unknown: `operator ${op}`};
}

/** Whether the value is in the right side (a literal, a set, a range, a prefix or a named set). */
function contains(value: Value, right: unknown, table: NftTable): Tri {
  if (typeof right === 'string' && right.startsWith('@')) {
    const set = table.sets.get(right.slice(1));
    if (!set) return {unknown: `set ${right}`};
    return anyOf(value, set.elements, set);
  }
  if (isRecord(right) && Array.isArray(right['set'])) return anyOf(value, right['set'] as unknown[]);
  if (Array.isArray(right)) return anyOf(value, right);
  return single(value, right);
}

function anyOf(value: Value, elements: readonly unknown[], set?: NftSet): Tri {
  let unknown: {unknown: string} | undefined;
  for (const element of elements) {
    const item = isRecord(element) && isRecord(element['elem']) ? element['elem']['val'] : element;
    const hit = single(value, set?.isMap && Array.isArray(item) ? item[0] : item);
    if (hit === true) return true;
    if (hit !== false) unknown ??= hit;
  }
  return unknown ?? false;
}

function single(value: Value, literal: unknown): Tri {
  if ('names' in value) {
    // ct state / status: flags; a list on the right is "any of these".
    if (typeof literal === 'string' && (!value.decides || value.decides.includes(literal))) return value.names.includes(literal);
    if (typeof literal === 'string') return {unknown: `ct flag ${literal}`};
    return {unknown: 'a ct state value'};
  }
  if ('name' in value) {
    if (typeof literal === 'string') {
      if (literal.endsWith('*') && !literal.endsWith('\\*')) return value.name.startsWith(literal.slice(0, -1));
      if (literal === value.name) return true;
      // l4proto / ip protocol may be written as a number
      return false;
    }
    if (typeof literal === 'number') return L4_NUMBERS[value.name] === literal;
    return {unknown: 'a name value'};
  }
  if ('number' in value) {
    if (typeof literal === 'number') return value.number === literal;
    if (isRecord(literal) && Array.isArray(literal['range'])) {
      const [low, high] = literal['range'] as unknown[];
      if (typeof low === 'number' && typeof high === 'number') return value.number >= low && value.number <= high;
    }
    if (typeof literal === 'string' && 'symbols' in value && value.symbols?.[literal] !== undefined) return value.number === value.symbols[literal];
    if (typeof literal === 'string') return {unknown: `a port named ${literal}`};
    return {unknown: 'a number value'};
  }
  if ('address' in value) {
    if (typeof literal === 'string') {
      const address = parseAddress(literal);
      if (!address) return {unknown: `address ${literal}`};
      return address.family === value.address.family && address.value === value.address.value;
    }
    if (isRecord(literal) && isRecord(literal['prefix'])) {
      const network = parseNetwork(`${String(literal['prefix']['addr'])}/${String(literal['prefix']['len'])}`);
      if (!network) return {unknown: 'a prefix'};
      return network.family === value.address.family && networkContains(network, value.address);
    }
    if (isRecord(literal) && Array.isArray(literal['range'])) {
      const [low, high] = (literal['range'] as unknown[]).map((end) => (typeof end === 'string' ? parseAddress(end) : undefined));
      if (!low || !high) return {unknown: 'an address range'};
      return low.family === value.address.family && value.address.value >= low.value && value.address.value <= high.value;
    }
    return {unknown: 'an address value'};
  }
  return {unknown: 'a value'};
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
