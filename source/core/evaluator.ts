// Walks a ruleset's filter table for one packet, the way netfilter would: built-in chain,
// jumps into user chains, RETURN, goto, and the policy at the end. What it cannot judge it
// never guesses in the packet's favour: an unknown match counts as "does not match" and is
// recorded in `uncertain`, so callers can warn.

import {isHostNetwork, networkContains, parseAddress, parseNetwork} from './ip.js';
import {setOfSpec} from './address-sets.js';
import type {Rule, Ruleset, Table} from './model.js';
import {formatRule} from './iptables-save.js';

export type BuiltInChain = 'INPUT' | 'OUTPUT' | 'FORWARD';
export type PacketProtocol = 'tcp' | 'udp' | 'icmp' | 'ipv6-icmp';
export type ConnectionState = 'NEW' | 'ESTABLISHED' | 'RELATED' | 'INVALID';

export interface Packet {
  readonly chain: BuiltInChain;
  readonly inInterface?: string;
  readonly outInterface?: string;
  /** Plain addresses of the ruleset's family. */
  readonly source: string;
  readonly destination: string;
  readonly protocol: PacketProtocol;
  readonly sourcePort?: number;
  readonly destinationPort?: number;
  readonly icmpType?: number;
  readonly icmpCode?: number;
  /** IPv6 hop limit (or IPv4 TTL) as the packet arrives. */
  readonly hopLimit?: number;
  readonly state: ConnectionState;
}

export type Verdict = 'ACCEPT' | 'DROP' | 'REJECT';

export interface RuleRef {
  readonly chain: string;
  /** 0-based position among the chain's rules (iptables -L --line-numbers shows index + 1). */
  readonly index: number;
  readonly spec: readonly string[];
  readonly comment?: string;
}

export type DecidedBy =
  | ({readonly kind: 'rule'} & RuleRef)
  | {readonly kind: 'policy'; readonly chain: string; readonly policy: string; readonly note?: string};

export interface Uncertainty extends RuleRef {
  readonly reason: string;
}

export interface Decision {
  readonly verdict: Verdict;
  readonly decidedBy: DecidedBy;
  /** Rules the walk could not judge (assumed not to match), in walk order. */
  readonly uncertain: readonly Uncertainty[];
  /** Non-deciding rules that matched on the way: jumps, gotos, LOG. */
  readonly trail: readonly RuleRef[];
}

// ---------------------------------------------------------------------------
// Compiling a rule's tokens into conditions

type MatchResult = true | false | {readonly unknown: string};
type Condition = (packet: Packet) => MatchResult;

type Target =
  | {readonly kind: 'verdict'; readonly verdict: Verdict}
  | {readonly kind: 'return'}
  | {readonly kind: 'jump' | 'goto'; readonly chain: string}
  | {readonly kind: 'continue'; readonly name: string}
  | {readonly kind: 'none'};

interface CompiledRule extends RuleRef {
  readonly conditions: readonly Condition[];
  /** Matches or options this evaluator does not model: the rule is assumed not to match. */
  readonly unsupported: readonly string[];
  readonly target: Target;
}

/** Targets that let the packet go on to the next rule. */
export const NON_TERMINATING_TARGETS = new Set([
  'LOG', 'NFLOG', 'ULOG', 'MARK', 'CONNMARK', 'CT', 'NOTRACK', 'TRACE', 'AUDIT', 'CLASSIFY', 'DSCP', 'TOS',
  'TCPMSS', 'CHECKSUM', 'SECMARK', 'CONNSECMARK', 'SET', 'IDLETIMER', 'LED', 'TEE', 'HL', 'TTL',
]);

const CORE_OPTIONS = new Set([
  '-s', '--source', '--src', '-d', '--destination', '--dst', '-i', '--in-interface', '-o', '--out-interface',
  '-p', '--protocol', '-f', '--fragment', '-m', '--match', '-j', '--jump', '-g', '--goto',
]);

const ICMP_NAMES: Record<string, [number, number?]> = {
  'echo-reply': [0], pong: [0], 'destination-unreachable': [3], 'network-unreachable': [3, 0],
  'host-unreachable': [3, 1], 'protocol-unreachable': [3, 2], 'port-unreachable': [3, 3],
  'fragmentation-needed': [3, 4], 'source-route-failed': [3, 5], 'network-unknown': [3, 6],
  'host-unknown': [3, 7], 'network-prohibited': [3, 9], 'host-prohibited': [3, 10],
  'TOS-network-unreachable': [3, 11], 'TOS-host-unreachable': [3, 12], 'communication-prohibited': [3, 13],
  'host-precedence-violation': [3, 14], 'precedence-cutoff': [3, 15], 'source-quench': [4], redirect: [5],
  'network-redirect': [5, 0], 'host-redirect': [5, 1], 'TOS-network-redirect': [5, 2], 'TOS-host-redirect': [5, 3],
  'echo-request': [8], ping: [8], 'router-advertisement': [9], 'router-solicitation': [10],
  'time-exceeded': [11], 'ttl-exceeded': [11], 'ttl-zero-during-transit': [11, 0],
  'ttl-zero-during-reassembly': [11, 1], 'parameter-problem': [12], 'ip-header-bad': [12, 0],
  'required-option-missing': [12, 1], 'timestamp-request': [13], 'timestamp-reply': [14],
  'address-mask-request': [17], 'address-mask-reply': [18],
};

const ICMPV6_NAMES: Record<string, [number, number?]> = {
  'destination-unreachable': [1], 'no-route': [1, 0], 'communication-prohibited': [1, 1],
  'beyond-scope': [1, 2], 'address-unreachable': [1, 3], 'port-unreachable': [1, 4],
  'failed-policy': [1, 5], 'reject-route': [1, 6], 'packet-too-big': [2], 'time-exceeded': [3],
  'ttl-exceeded': [3], 'ttl-zero-during-transit': [3, 0], 'ttl-zero-during-reassembly': [3, 1],
  'parameter-problem': [4], 'bad-header': [4, 0], 'unknown-header-type': [4, 1], 'unknown-option': [4, 2],
  'echo-request': [128], ping: [128], 'echo-reply': [129], pong: [129], 'router-solicitation': [133],
  'router-advertisement': [134], 'neighbour-solicitation': [135], 'neighbor-solicitation': [135],
  'neighbour-advertisement': [136], 'neighbor-advertisement': [136], redirect: [137],
};

/** `-p` spellings to one name: numbers, `icmpv6`/`icmp6` → `ipv6-icmp`, lower case. */
export function protocolName(value: string): string {
  const lower = value.toLowerCase();
  const byNumber: Record<string, string> = {'0': 'all', '1': 'icmp', '6': 'tcp', '17': 'udp', '58': 'ipv6-icmp'};
  if (byNumber[lower]) return byNumber[lower];
  if (lower === 'icmpv6' || lower === 'icmp6') return 'ipv6-icmp';
  return lower;
}

/** `22`, `1024:65535`, `:1023`, `1024:` → an inclusive range; undefined when not numeric. */
export function parsePortRange(text: string): {first: number; last: number} | undefined {
  const match = /^(\d*)(?::(\d*))?$/.exec(text);
  if (!match || text === '' || text === ':') return undefined;
  const [, low = '', high] = match;
  const first = low === '' ? 0 : Number(low);
  const last = high === undefined ? first : high === '' ? 65535 : Number(high);
  if (first > 65535 || last > 65535 || first > last) return undefined;
  return {first, last};
}

export function parsePortList(text: string): {first: number; last: number}[] | undefined {
  const ranges = text.split(',').map(parsePortRange);
  return ranges.every((range) => range !== undefined) ? (ranges as {first: number; last: number}[]) : undefined;
}

function inRanges(port: number, ranges: readonly {first: number; last: number}[]): boolean {
  return ranges.some((range) => port >= range.first && port <= range.last);
}

/** `eth+` matches every name starting with `eth`; an absent interface is the empty name. */
export function interfaceMatches(pattern: string, name: string | undefined): boolean {
  const actual = name ?? '';
  return pattern.endsWith('+') ? actual.startsWith(pattern.slice(0, -1)) : actual === pattern;
}

function negated(condition: Condition, negate: boolean): Condition {
  if (!negate) return condition;
  return (packet) => {
    const result = condition(packet);
    return typeof result === 'boolean' ? !result : result;
  };
}

// The same rule text recurs in every ruleset of a fleet (loopback, ICMP, replies...): its
// conditions are built once and shared (they are pure functions of the packet).
const compiledSpecCache = new Map<string, Omit<CompiledRule, 'index'>>();

// Specs the compiler shares between rulesets are found by identity first (no key to build).
const compiledBySpec = new WeakMap<readonly string[], Omit<CompiledRule, 'index'>>();

function compileRule(rule: Rule, index: number): CompiledRule {
  let shared = compiledBySpec.get(rule.spec);
  if (!shared || shared.chain !== rule.chain) {
    const key = `${rule.chain}\u0000${rule.spec.join('\u0000')}`;
    shared = compiledSpecCache.get(key);
    if (!shared) {
      if (compiledSpecCache.size >= 100_000) compiledSpecCache.clear();
      const {index: _index, ...rest} = compileRuleText(rule, index);
      shared = rest;
      compiledSpecCache.set(key, shared);
    }
    compiledBySpec.set(rule.spec, shared);
  }
  return {...shared, index, spec: rule.spec};
}

function compileRuleText(rule: Rule, index: number): CompiledRule {
  const conditions: Condition[] = [];
  const unsupported: string[] = [];
  let target: Target = {kind: 'none'};
  let comment: string | undefined;
  let module: string | undefined;
  let protocol: string | undefined;
  const tokens = rule.spec;
  let position = 0;
  const next = (): string | undefined => tokens[position++];
  const value = (option: string): string => {
    const result = next();
    if (result === undefined) throw new Error(`${option} has no value`);
    return result;
  };
  const add = (condition: Condition, negate: boolean): void => {
    conditions.push(negated(condition, negate));
  };
  const unknownUntilNextOption = (label: string): void => {
    const skipped = [label];
    while (position < tokens.length) {
      const token = tokens[position] as string;
      const following = tokens[position + 1];
      if (CORE_OPTIONS.has(token) || (token === '!' && following !== undefined && CORE_OPTIONS.has(following))) break;
      skipped.push(token);
      position += 1;
    }
    unsupported.push(skipped.join(' '));
  };
  const skipOptionValues = (): string[] => {
    const values: string[] = [];
    while (position < tokens.length && !(tokens[position] as string).startsWith('-') && tokens[position] !== '!') {
      values.push(tokens[position] as string);
      position += 1;
    }
    return values;
  };

  try {
    while (position < tokens.length) {
      let negate = false;
      let option = next() as string;
      if (option === '!') {
        negate = true;
        option = value('!');
      }
      switch (option) {
        case '-s': case '--source': case '--src':
        case '-d': case '--destination': case '--dst': {
          const text = value(option);
          const network = parseNetwork(text);
          const field = option.startsWith('-s') || option.startsWith('--s') ? 'source' : 'destination';
          if (!network) {
            unsupported.push(`${negate ? '! ' : ''}${option} ${text}`);
            break;
          }
          const single = isHostNetwork(network);
          // A single address (most rules): plain equality, no bigint masking (which allocates per packet).
          add(
            single
              ? (packet) => {
                  const address = parseAddress(packet[field]);
                  return address !== undefined && address.family === network.family && address.value === network.value;
                }
              : (packet) => {
                  const address = parseAddress(packet[field]);
                  return address !== undefined && networkContains(network, address);
                },
            negate,
          );
          break;
        }
        case '-i': case '--in-interface': {
          const pattern = value(option);
          add((packet) => interfaceMatches(pattern, packet.inInterface), negate);
          break;
        }
        case '-o': case '--out-interface': {
          const pattern = value(option);
          add((packet) => interfaceMatches(pattern, packet.outInterface), negate);
          break;
        }
        case '-p': case '--protocol': {
          const name = protocolName(value(option));
          protocol = negate ? undefined : name;
          if (name === 'all') {
            if (negate) add(() => false, false);
            break;
          }
          add((packet) => packet.protocol === name, negate);
          break;
        }
        case '-f': case '--fragment':
          // The packets we reason about are whole first fragments.
          add(() => false, negate);
          break;
        case '-m': case '--match': {
          module = value(option);
          if (!KNOWN_MODULES.has(module)) unknownUntilNextOption(`-m ${module}`);
          else if (module === 'tcp' || module === 'udp') {
            const required = module;
            add((packet) => packet.protocol === required, false);
          } else if (module === 'multiport') {
            add((packet) => packet.protocol === 'tcp' || packet.protocol === 'udp', false);
          } else if (module === 'icmp') {
            add((packet) => packet.protocol === 'icmp', false);
          } else if (module === 'icmp6') {
            add((packet) => packet.protocol === 'ipv6-icmp', false);
          }
          break;
        }
        case '--match-set': {
          // The compiler's grouped rules (ipset's syntax); their set is known from the spec.
          const name = value(option);
          const direction = value(option);
          const set = setOfSpec(rule.spec);
          if (module !== 'set' || set?.name !== name || (direction !== 'src' && direction !== 'dst')) {
            unsupported.push(`${negate ? '! ' : ''}-m set --match-set ${name} ${direction}`);
            break;
          }
          const field = direction === 'src' ? 'source' : 'destination';
          add((packet) => {
            const address = parseAddress(packet[field]);
            return address !== undefined && set.has(address);
          }, negate);
          break;
        }
        case '-j': case '--jump': case '-g': case '--goto': {
          const name = value(option);
          // What follows are the target's options (--log-prefix, --reject-with, ...): they do not change the walk.
          position = tokens.length;
          if (option === '-g' || option === '--goto') target = {kind: 'goto', chain: name};
          else if (name === 'ACCEPT' || name === 'DROP' || name === 'REJECT') target = {kind: 'verdict', verdict: name};
          else if (name === 'RETURN') target = {kind: 'return'};
          else if (NON_TERMINATING_TARGETS.has(name)) target = {kind: 'continue', name};
          else target = {kind: 'jump', chain: name};
          break;
        }
        default: {
          // Options of the current module (or, as iptables allows, of the protocol's implicit module).
          const owner = module ?? (protocol === 'tcp' || protocol === 'udp' ? protocol : undefined);
          if (!compileModuleOption(owner, option, negate, value, add, (label) => (comment = label))) {
            const values = skipOptionValues();
            unsupported.push([negate ? '!' : '', owner ? `-m ${owner}` : '', option, ...values].filter(Boolean).join(' '));
          }
        }
      }
    }
  } catch (error) {
    unsupported.push(error instanceof Error ? error.message : String(error));
  }
  return {chain: rule.chain, index, spec: rule.spec, ...(comment === undefined ? {} : {comment}), conditions, unsupported, target};
}

/** Match modules the evaluator models (the rest make a rule unjudgeable). */
export const KNOWN_MODULES = new Set(['tcp', 'udp', 'multiport', 'conntrack', 'state', 'icmp', 'icmp6', 'hl', 'ttl', 'comment', 'limit', 'set']);

function compileModuleOption(
  module: string | undefined,
  option: string,
  negate: boolean,
  value: (option: string) => string,
  add: (condition: Condition, negate: boolean) => void,
  setComment: (comment: string) => void,
): boolean {
  const portOption = (field: 'sourcePort' | 'destinationPort' | 'both', text: string, list: boolean): boolean => {
    const ranges = list ? parsePortList(text) : [parsePortRange(text)];
    if (!ranges || ranges.some((range) => range === undefined)) return false;
    const exact = ranges as {first: number; last: number}[];
    const condition: Condition = (packet) => {
      const ports = field === 'both' ? [packet.sourcePort, packet.destinationPort] : [packet[field]];
      if (ports.some((port) => port === undefined)) return {unknown: `${option} ${text}: the packet has no port`};
      return ports.some((port) => inRanges(port as number, exact));
    };
    add(condition, negate);
    return true;
  };
  const stateOption = (text: string): boolean => {
    const states = text.split(',');
    add((packet) => states.includes(packet.state), negate);
    return true;
  };
  const icmpOption = (text: string, names: Record<string, [number, number?]>, protocolLabel: string): boolean => {
    if (text === 'any') {
      add(() => true, negate);
      return true;
    }
    const named = names[text];
    const numeric = /^(\d+)(?:\/(\d+))?$/.exec(text);
    const [type, code] = named ?? (numeric ? [Number(numeric[1]), numeric[2] === undefined ? undefined : Number(numeric[2])] : []);
    if (type === undefined) return false;
    add((packet) => {
      if (packet.icmpType === undefined) return {unknown: `${protocolLabel} ${text}: the packet has no ICMP type`};
      if (packet.icmpType !== type) return false;
      if (code === undefined) return true;
      if (packet.icmpCode === undefined) return {unknown: `${protocolLabel} ${text}: the packet has no ICMP code`};
      return packet.icmpCode === code;
    }, negate);
    return true;
  };
  const hopOption = (text: string, compare: (hop: number, limit: number) => boolean): boolean => {
    const limit = Number(text);
    if (!Number.isInteger(limit)) return false;
    add((packet) => (packet.hopLimit === undefined ? {unknown: `${option} ${text}: the packet has no hop limit`} : compare(packet.hopLimit, limit)), negate);
    return true;
  };

  switch (module) {
    case 'tcp':
    case 'udp':
      if (option === '--dport' || option === '--destination-port') return portOption('destinationPort', value(option), false);
      if (option === '--sport' || option === '--source-port') return portOption('sourcePort', value(option), false);
      return false;
    case 'multiport':
      if (option === '--dports' || option === '--destination-ports') return portOption('destinationPort', value(option), true);
      if (option === '--sports' || option === '--source-ports') return portOption('sourcePort', value(option), true);
      if (option === '--ports') return portOption('both', value(option), true);
      return false;
    case 'conntrack':
      return option === '--ctstate' ? stateOption(value(option)) : false;
    case 'state':
      return option === '--state' ? stateOption(value(option)) : false;
    case 'icmp':
      return option === '--icmp-type' ? icmpOption(value(option), ICMP_NAMES, '--icmp-type') : false;
    case 'icmp6':
      return option === '--icmpv6-type' ? icmpOption(value(option), ICMPV6_NAMES, '--icmpv6-type') : false;
    case 'hl':
    case 'ttl': {
      const prefix = module === 'hl' ? '--hl-' : '--ttl-';
      if (option === `${prefix}eq`) return hopOption(value(option), (hop, limit) => hop === limit);
      if (option === `${prefix}lt`) return hopOption(value(option), (hop, limit) => hop < limit);
      if (option === `${prefix}gt`) return hopOption(value(option), (hop, limit) => hop > limit);
      return false;
    }
    case 'comment':
      if (option !== '--comment') return false;
      setComment(value(option));
      return true;
    case 'limit':
      // Rate limits are assumed to have room: a single packet passes.
      if (option !== '--limit' && option !== '--limit-burst') return false;
      value(option);
      return true;
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------
// Walking

const compiledTables = new WeakMap<Table, Map<string, CompiledRule[]>>();

function compiledChains(table: Table): Map<string, CompiledRule[]> {
  let chains = compiledTables.get(table);
  if (!chains) {
    chains = new Map();
    for (const rule of table.rules) {
      const list = chains.get(rule.chain) ?? [];
      list.push(compileRule(rule, list.length));
      chains.set(rule.chain, list);
    }
    compiledTables.set(table, chains);
  }
  return chains;
}

const declaredCache = new WeakMap<Table, ReadonlySet<string>>();
function declaredChains(table: Table): ReadonlySet<string> {
  let declared = declaredCache.get(table);
  if (!declared) {
    declared = new Set(table.chains.map((chain) => chain.name));
    declaredCache.set(table, declared);
  }
  return declared;
}

function refOf(rule: CompiledRule): RuleRef {
  return {chain: rule.chain, index: rule.index, spec: rule.spec, ...(rule.comment === undefined ? {} : {comment: rule.comment})};
}

/** Deeper jumps than this are not followed (noted as uncertain). */
export const MAX_DEPTH = 64;

type ChainOutcome = {readonly kind: 'verdict'; readonly verdict: Verdict; readonly rule: CompiledRule} | {readonly kind: 'return'};

/** The filter table's verdict for one packet. Throws if the packet's addresses are not of the ruleset's family. */
export function evaluate(ruleset: Ruleset, packet: Packet): Decision {
  if (parseAddress(packet.source)?.family !== ruleset.family) {
    throw new Error(`packet address ${packet.source} is not an IPv${ruleset.family} address`);
  }
  if (parseAddress(packet.destination)?.family !== ruleset.family) {
    throw new Error(`packet address ${packet.destination} is not an IPv${ruleset.family} address`);
  }
  const table = ruleset.tables.find((candidate) => candidate.name === 'filter');
  const uncertain: Uncertainty[] = [];
  const trail: RuleRef[] = [];
  if (!table) {
    return {verdict: 'ACCEPT', decidedBy: {kind: 'policy', chain: packet.chain, policy: 'ACCEPT', note: 'no filter table'}, uncertain, trail};
  }
  const builtIn = table.chains.find((chain) => chain.name === packet.chain);
  const chains = compiledChains(table);
  const declared = declaredChains(table);

  const runChain = (name: string, depth: number): ChainOutcome => {
    for (const rule of chains.get(name) ?? []) {
      let matched = true;
      let unknown: string | undefined;
      for (const condition of rule.conditions) {
        const result = condition(packet);
        if (result === false) {
          matched = false;
          break;
        }
        if (result !== true) unknown ??= result.unknown;
      }
      if (!matched) continue;
      const reason = unknown ?? rule.unsupported[0];
      if (reason !== undefined) {
        uncertain.push({...refOf(rule), reason: `not evaluated (${reason}); assumed not to match`});
        continue;
      }
      const target = rule.target;
      switch (target.kind) {
        case 'verdict':
          return {kind: 'verdict', verdict: target.verdict, rule};
        case 'return':
          return {kind: 'return'};
        case 'none':
          continue;
        case 'continue':
          trail.push(refOf(rule));
          continue;
        case 'jump':
        case 'goto': {
          if (!declared.has(target.chain) || depth >= MAX_DEPTH) {
            const why = depth >= MAX_DEPTH ? 'chains nest too deep' : `target ${target.chain} is not a chain of this table`;
            uncertain.push({...refOf(rule), reason: `${why}; assumed to continue`});
            continue;
          }
          trail.push(refOf(rule));
          const outcome = runChain(target.chain, depth + 1);
          if (outcome.kind === 'verdict') return outcome;
          if (target.kind === 'goto') return {kind: 'return'};
          continue;
        }
      }
    }
    return {kind: 'return'};
  };

  const outcome = runChain(packet.chain, 0);
  if (outcome.kind === 'verdict') {
    return {verdict: outcome.verdict, decidedBy: {kind: 'rule', ...refOf(outcome.rule)}, uncertain, trail};
  }
  const policy = builtIn?.policy ?? 'ACCEPT';
  const verdict: Verdict = policy === 'DROP' ? 'DROP' : 'ACCEPT';
  return {
    verdict,
    decidedBy: {kind: 'policy', chain: packet.chain, policy, ...(builtIn ? {} : {note: `no ${packet.chain} chain`})},
    uncertain,
    trail,
  };
}

/** "the INPUT policy DROP" or "rule 5 of INPUT (-A INPUT ... -j DROP)". */
export function describeDecidedBy(decidedBy: DecidedBy): string {
  if (decidedBy.kind === 'policy') return `the ${decidedBy.chain} policy ${decidedBy.policy}${decidedBy.note ? ` (${decidedBy.note})` : ''}`;
  const label = decidedBy.comment ? ` "${decidedBy.comment}"` : '';
  return `rule ${decidedBy.index + 1} of ${decidedBy.chain}${label} (${formatRule({chain: decidedBy.chain, spec: decidedBy.spec})})`;
}

/**
 * Every port where a destination-port match in the filter table starts or stops applying
 * for this protocol (sorted, within 1..65536): cutting 1-65535 at these points gives
 * intervals on which every rule decides the same way.
 */
export function portCutPoints(ruleset: Ruleset, protocol: 'tcp' | 'udp'): number[] {
  let cached = cutPointCache.get(ruleset);
  if (!cached) {
    cached = {tcp: computeCutPoints(ruleset, 'tcp'), udp: computeCutPoints(ruleset, 'udp')};
    cutPointCache.set(ruleset, cached);
  }
  return [...cached[protocol]];
}

const cutPointCache = new WeakMap<Ruleset, {readonly tcp: readonly number[]; readonly udp: readonly number[]}>();

function computeCutPoints(ruleset: Ruleset, protocol: 'tcp' | 'udp'): number[] {
  const cuts = new Set<number>([1, 65536]);
  const table = ruleset.tables.find((candidate) => candidate.name === 'filter');
  for (const rule of table?.rules ?? []) {
    let module: string | undefined;
    let ruleProtocol: string | undefined;
    rule.spec.forEach((token, index) => {
      const next = rule.spec[index + 1];
      if (token === '-m' || token === '--match') module = next;
      if ((token === '-p' || token === '--protocol') && next !== undefined) ruleProtocol = protocolName(next);
      if (next === undefined) return;
      const owner = module ?? ruleProtocol;
      const single = (owner === protocol) && (token === '--dport' || token === '--destination-port');
      const list = owner === 'multiport' && ['--dports', '--destination-ports', '--ports'].includes(token);
      if (!single && !list) return;
      for (const range of (list ? parsePortList(next) : [parsePortRange(next)]) ?? []) {
        if (!range) continue;
        cuts.add(Math.max(1, range.first));
        cuts.add(Math.min(65536, range.last + 1));
      }
    });
  }
  return [...cuts].sort((a, b) => a - b);
}

const UNKNOWN_CAPABLE_OPTIONS = new Set([
  '--icmp-type', '--icmpv6-type', '--hl-eq', '--hl-lt', '--hl-gt', '--ttl-eq', '--ttl-lt', '--ttl-gt',
]);
const MODULE_PROTOCOL: Readonly<Record<string, string>> = {tcp: 'tcp', udp: 'udp', icmp: 'icmp', icmp6: 'ipv6-icmp'};
const uncertaintyCache = new WeakMap<Ruleset, {tcp: boolean; udp: boolean}>();

/**
 * False when `evaluate` can never report an uncertain rule for a packet of this protocol that
 * carries both ports (no ICMP type, no hop limit): no rule that could match such a packet has
 * an unsupported part or a condition it cannot judge, and every jump lands in a declared chain.
 * Conservative: true whenever in doubt. Lets callers skip evaluations whose only output would be notes.
 */
export function mayReportUncertainty(ruleset: Ruleset, protocol: 'tcp' | 'udp'): boolean {
  let cached = uncertaintyCache.get(ruleset);
  if (!cached) {
    cached = {tcp: computeMayReport(ruleset, 'tcp'), udp: computeMayReport(ruleset, 'udp')};
    uncertaintyCache.set(ruleset, cached);
  }
  return cached[protocol];
}

function computeMayReport(ruleset: Ruleset, protocol: 'tcp' | 'udp'): boolean {
  const table = ruleset.tables.find((candidate) => candidate.name === 'filter');
  if (!table) return false;
  if (table.chains.length >= MAX_DEPTH) return true;
  const declared = new Set(table.chains.map((chain) => chain.name));
  for (const rules of compiledChains(table).values()) {
    for (const rule of rules) {
      const spec = rule.spec;
      // A rule that requires another protocol fails that condition, and a failed condition is never noted.
      const excluded = spec.some((token, index) => {
        const next = spec[index + 1];
        if (next === undefined) return false;
        if ((token === '-p' || token === '--protocol') && spec[index - 1] !== '!') {
          const name = protocolName(next);
          return name !== 'all' && name !== protocol;
        }
        if (token === '-m' || token === '--match') {
          const required = MODULE_PROTOCOL[next];
          return required !== undefined && required !== protocol;
        }
        return false;
      });
      if (excluded) continue;
      if (rule.unsupported.length > 0 || spec.some((token) => UNKNOWN_CAPABLE_OPTIONS.has(token))) return true;
      if ((rule.target.kind === 'jump' || rule.target.kind === 'goto') && !declared.has(rule.target.chain)) return true;
    }
  }
  return false;
}
