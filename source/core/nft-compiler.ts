// A host's compiled iptables rulesets (v4 and v6, see compiler.ts) -> one nftables table,
// `table inet isolate_wizard { ... }`, as `nft -f` reads it, giving exactly the same access.
// Pure and deterministic.
//
// How the two families become one table:
// - Every chain's rules of each family are translated one by one (the compiler's vocabulary
//   only: anything else is an InputError naming the host and the rule, never a dropped rule).
// - In a family, rules that differ only in their one source (INPUT) or destination (OUTPUT)
//   address, within a run of consecutive ACCEPT rules, become one rule matching a named set:
//   moving an accept before other accepts changes no verdict, so the rule count follows the
//   host's flows, not its peers.
// - The two families' lists are then merged in order: a rule with an `ip`/`ip6` address, an
//   ICMP type or a hop limit only matches its own family; any other rule is written once when
//   both families have it at the same point, else with `meta nfproto ipv4`/`ipv6` in front.
//   Each family's rules keep their relative order, so each family's verdicts are unchanged.
import {setOfSpec, type AddressSet} from './address-sets.js';
import {groupedRules} from './compiler.js';
import {InputError} from './errors.js';
import {formatAddress, isHostNetwork, parseNetwork, valueKey} from './ip.js';
import type {CompiledHost, Family, Rule, Ruleset, Table} from './model.js';

export const nftTableName = 'isolate_wizard';
export const nftTableFamily = 'inet';

/** nft refuses a comment longer than this many bytes. */
export const NFT_COMMENT_BYTES = 128;
/** Set names stay under 32 bytes: older kernels (before 4.16) refuse longer ones. */
const SET_NAME_SLUG = 24;

const BASE_CHAINS: Readonly<Record<string, string>> = {INPUT: 'input', FORWARD: 'forward', OUTPUT: 'output'};
const HOOK_ORDER = ['INPUT', 'FORWARD', 'OUTPUT'] as const;

const ICMP_TYPES: Readonly<Record<number, string>> = {
  0: 'echo-reply', 3: 'destination-unreachable', 4: 'source-quench', 5: 'redirect', 8: 'echo-request',
  9: 'router-advertisement', 10: 'router-solicitation', 11: 'time-exceeded', 12: 'parameter-problem',
  13: 'timestamp-request', 14: 'timestamp-reply', 17: 'address-mask-request', 18: 'address-mask-reply',
};
const ICMPV6_TYPES: Readonly<Record<number, string>> = {
  1: 'destination-unreachable', 2: 'packet-too-big', 3: 'time-exceeded', 4: 'parameter-problem',
  128: 'echo-request', 129: 'echo-reply', 133: 'nd-router-solicit', 134: 'nd-router-advert',
  135: 'nd-neighbor-solicit', 136: 'nd-neighbor-advert', 137: 'nd-redirect',
};
/** iptables' names for the types above (iptables-save prints numbers; a hand-written rule may not). */
const ICMP_NAMES: Readonly<Record<string, number>> = {
  'echo-reply': 0, 'destination-unreachable': 3, 'source-quench': 4, redirect: 5, 'echo-request': 8,
  'router-advertisement': 9, 'router-solicitation': 10, 'time-exceeded': 11, 'parameter-problem': 12,
  'timestamp-request': 13, 'timestamp-reply': 14, 'address-mask-request': 17, 'address-mask-reply': 18,
};
const ICMPV6_NAMES: Readonly<Record<string, number>> = {
  'destination-unreachable': 1, 'packet-too-big': 2, 'time-exceeded': 3, 'parameter-problem': 4,
  'echo-request': 128, 'echo-reply': 129, 'router-solicitation': 133, 'router-advertisement': 134,
  'neighbour-solicitation': 135, 'neighbor-solicitation': 135, 'neighbour-advertisement': 136,
  'neighbor-advertisement': 136, redirect: 137,
};
const LOG_LEVELS = ['emerg', 'alert', 'crit', 'err', 'warn', 'notice', 'info', 'debug'];
const LOG_LEVEL_NAMES: Readonly<Record<string, string>> = {
  emerg: 'emerg', alert: 'alert', crit: 'crit', error: 'err', err: 'err', warning: 'warn', warn: 'warn',
  notice: 'notice', info: 'info', debug: 'debug',
};
const RATE_UNITS: Readonly<Record<string, string>> = {
  s: 'second', sec: 'second', second: 'second', m: 'minute', min: 'minute', minute: 'minute',
  h: 'hour', hour: 'hour', d: 'day', day: 'day',
};

// ---------------------------------------------------------------------------
// One iptables rule, translated

/** The one address a rule may be grouped by: `-s` in INPUT, `-d` in OUTPUT (or either elsewhere). */
interface GroupAddress {
  readonly field: 'saddr' | 'daddr';
  /** As a set element: `10.0.0.1`, `10.132.0.0/24`. */
  readonly element: string;
  readonly network: NonNullable<ReturnType<typeof parseNetwork>>;
}

interface Translated {
  readonly family: Family;
  /** The statements before the grouped address (interfaces). */
  readonly head: readonly string[];
  readonly address: GroupAddress | undefined;
  /** The statements after it, verdict included. */
  readonly tail: readonly string[];
  /** Only matches packets of its family (an ip/ip6 address, an ICMP type or a hop limit). */
  readonly familyBound: boolean;
  /** Ends with `accept` (and nothing else decides): may be moved before other accepts. */
  readonly accepts: boolean;
  readonly comment: string | undefined;
  /** Everything but the grouped address and the comment: rules with one key may share a set (made when first needed). */
  key?: string;
}

class Untranslatable extends Error {}

function nftString(text: string): string {
  // nft's quoted strings have no escapes: a double quote or a control character cannot be written.
  // eslint-disable-next-line no-control-regex
  return `"${text.replace(/"/g, "'").replace(/[\u0000-\u001f\u007f]/g, ' ')}"`;
}

/** At most NFT_COMMENT_BYTES bytes of UTF-8, cut between characters. */
export function nftComment(text: string): string {
  // eslint-disable-next-line no-control-regex
  if (text.length <= NFT_COMMENT_BYTES && /^[\u0000-\u007f]*$/.test(text)) return text; // ASCII: a byte per character
  let bytes = 0;
  let end = 0;
  for (const character of text) {
    const size = Buffer.byteLength(character, 'utf8');
    if (bytes + size > NFT_COMMENT_BYTES) break;
    bytes += size;
    end += character.length;
  }
  return text.slice(0, end);
}

function networkElement(text: string, family: Family): GroupAddress['network'] & {element: string} {
  const network = parseNetwork(text);
  if (!network || network.family !== family) throw new Untranslatable(`"${text}" is not an IPv${family} address or prefix`);
  if (isHostNetwork(network)) {
    // A single address is written as the rule spells it (nft reads any spelling; sets fold by value).
    const slash = text.indexOf('/');
    return {...network, element: slash === -1 ? text : text.slice(0, slash)};
  }
  const bits = family === 4 ? 32 : 128;
  const length = network.mask.toString(2).replace(/0+$/, '').length;
  // A netmask with holes (iptables-save can print one) has no prefix form.
  if (network.mask !== ((1n << BigInt(length)) - 1n) << BigInt(bits - length)) throw new Untranslatable(`"${text}" is not a prefix`);
  return {...network, element: `${formatAddress({family, value: network.value})}/${length}`};
}

function portValue(text: string): string {
  const match = /^(\d+)(?::(\d+))?$/.exec(text);
  if (!match) throw new Untranslatable(`port "${text}"`);
  return match[2] === undefined || match[2] === match[1] ? match[1] as string : `${match[1]}-${match[2]}`;
}

function portList(text: string): string {
  const ports = text.split(',').map(portValue);
  return ports.length === 1 ? (ports[0] as string) : `{ ${ports.join(', ')} }`;
}

function icmpType(text: string, family: Family): string {
  const names = family === 4 ? ICMP_NAMES : ICMPV6_NAMES;
  const match = /^(\d+)(?:\/(\d+))?$/.exec(text);
  const type = match ? Number(match[1]) : names[text];
  if (type === undefined) throw new Untranslatable(`ICMP type "${text}"`);
  const keyword = family === 4 ? 'icmp' : 'icmpv6';
  const name = (family === 4 ? ICMP_TYPES : ICMPV6_TYPES)[type] ?? String(type);
  return match?.[2] === undefined ? `${keyword} type ${name}` : `${keyword} type ${name} ${keyword} code ${match[2]}`;
}

function limitRate(text: string): string {
  const match = /^(\d+)\/([a-z]+)$/.exec(text);
  const unit = match ? RATE_UNITS[match[2] as string] : undefined;
  if (!match || !unit) throw new Untranslatable(`limit "${text}"`);
  return `${match[1]}/${unit}`;
}

/**
 * One iptables rule of `family` as nft statements. `chainName` maps a jump's target to its nft
 * chain. Throws Untranslatable on anything outside the compiler's vocabulary.
 */
function translateRule(rule: Rule, family: Family, chainName: (chain: string) => string): Translated {
  const tokens = rule.spec;
  let position = 0;
  const value = (option: string): string => {
    const next = tokens[position++];
    if (next === undefined) throw new Untranslatable(`${option} has no value`);
    return next;
  };
  const interfaces: string[] = [];
  const addresses: {field: 'saddr' | 'daddr'; negate: boolean; network: GroupAddress['network'] & {element: string}}[] = [];
  let protocol: string | undefined;
  let protocolUsed = false;
  let module: string | undefined;
  const ports: string[] = [];
  const icmp: string[] = [];
  const hops: string[] = [];
  const states: string[] = [];
  const sets: string[] = [];
  let rate: string | undefined;
  let burst: string | undefined;
  let comment: string | undefined;
  let verdict: string | undefined;
  let log: string | undefined;
  let accepts = false;
  const ipKeyword = family === 4 ? 'ip' : 'ip6';

  while (position < tokens.length) {
    let option = tokens[position++] as string;
    let negate = false;
    if (option === '!') {
      negate = true;
      option = value('!');
    }
    const not = negate ? '!= ' : '';
    switch (option) {
      case '-s':
      case '-d':
        addresses.push({field: option === '-s' ? 'saddr' : 'daddr', negate, network: networkElement(value(option), family)});
        break;
      case '-i':
      case '-o': {
        const name = value(option);
        // iptables' `eth+` is nft's `eth*`.
        const pattern = name.endsWith('+') ? `${name.slice(0, -1)}*` : name;
        interfaces.push(`${option === '-i' ? 'iifname' : 'oifname'} ${not}${nftString(pattern)}`);
        break;
      }
      case '-p': {
        if (negate) throw new Untranslatable('! -p');
        const name = value(option).toLowerCase();
        protocol = name === 'icmpv6' || name === 'ipv6-icmp' || name === '58' ? 'ipv6-icmp' : name === '6' ? 'tcp' : name === '17' ? 'udp' : name === '1' ? 'icmp' : name;
        if (!['tcp', 'udp', 'icmp', 'ipv6-icmp', 'all'].includes(protocol)) throw new Untranslatable(`protocol "${name}"`);
        if (protocol === 'all') protocol = undefined;
        break;
      }
      case '-m':
        module = value(option);
        if (!['tcp', 'udp', 'multiport', 'conntrack', 'state', 'icmp', 'icmp6', 'hl', 'ttl', 'comment', 'limit', 'set'].includes(module)) {
          throw new Untranslatable(`-m ${module}`);
        }
        if (negate) throw new Untranslatable(`! -m ${module}`);
        break;
      case '--dport':
      case '--sport':
      case '--dports':
      case '--sports': {
        if (protocol !== 'tcp' && protocol !== 'udp') throw new Untranslatable(`${option} without -p tcp or udp`);
        const list = option.endsWith('s');
        if (list !== (module === 'multiport')) throw new Untranslatable(`${option} outside its module`);
        const text = value(option);
        ports.push(`${protocol} ${option.startsWith('--d') ? 'dport' : 'sport'} ${not}${list ? portList(text) : portValue(text)}`);
        protocolUsed = true;
        break;
      }
      case '--ctstate':
      case '--state': {
        if (negate) throw new Untranslatable(`! ${option}`);
        const names = value(option).toLowerCase().split(',');
        if (!names.every((name) => ['new', 'established', 'related', 'invalid', 'untracked'].includes(name))) throw new Untranslatable(`${option} ${names.join(',')}`);
        states.push(`ct state ${[...names].sort().join(',')}`);
        break;
      }
      case '--icmp-type':
      case '--icmpv6-type': {
        const wanted = option === '--icmp-type' ? 4 : 6;
        if (negate || wanted !== family || protocol !== (family === 4 ? 'icmp' : 'ipv6-icmp')) throw new Untranslatable(`${option} here`);
        icmp.push(icmpType(value(option), family));
        protocolUsed = true;
        break;
      }
      case '--hl-eq':
      case '--hl-lt':
      case '--hl-gt':
      case '--ttl-eq':
      case '--ttl-lt':
      case '--ttl-gt': {
        const isHl = option.startsWith('--hl');
        if (negate || isHl !== (family === 6)) throw new Untranslatable(`${option} in IPv${family}`);
        const number = value(option);
        if (!/^\d+$/.test(number)) throw new Untranslatable(`${option} ${number}`);
        const compare = option.endsWith('eq') ? '' : option.endsWith('lt') ? '< ' : '> ';
        hops.push(`${isHl ? 'ip6 hoplimit' : 'ip ttl'} ${compare}${number}`);
        break;
      }
      case '--comment':
        comment = value(option);
        break;
      case '--match-set': {
        // Only the compiler's grouped rules: their set is known from the spec (address-sets.ts).
        const name = value(option);
        const direction = value(option);
        const set = setOfSpec(rule.spec);
        if (negate || module !== 'set' || set?.name !== name || set.family !== family || (direction !== 'src' && direction !== 'dst')) {
          throw new Untranslatable(`--match-set ${name} ${direction}`);
        }
        sets.push(`${ipKeyword} ${direction === 'src' ? 'saddr' : 'daddr'} @${name}`);
        break;
      }
      case '--limit':
        rate = limitRate(value(option));
        break;
      case '--limit-burst':
        burst = value(option);
        if (!/^\d+$/.test(burst)) throw new Untranslatable(`--limit-burst ${burst}`);
        break;
      case '-j':
      case '-g': {
        const target = value(option);
        const options = tokens.slice(position);
        position = tokens.length;
        if (option === '-g') verdict = `goto ${chainName(target)}`;
        else if (target === 'ACCEPT' || target === 'DROP' || target === 'RETURN') verdict = target.toLowerCase();
        else if (target === 'REJECT' && options.length === 0) verdict = 'reject';
        else if (target === 'LOG') log = logStatement(options);
        else if (/^[A-Z]+$/.test(target)) throw new Untranslatable(`-j ${target}`);
        else verdict = `jump ${chainName(target)}`;
        if (target !== 'LOG' && options.length > 0) throw new Untranslatable(`-j ${target} ${options.join(' ')}`);
        accepts = verdict === 'accept';
        break;
      }
      default:
        throw new Untranslatable(`"${negate ? '! ' : ''}${option}"`);
    }
  }
  if (burst !== undefined && rate === undefined) throw new Untranslatable('--limit-burst without --limit');
  if (protocol !== undefined && !protocolUsed) ports.unshift(`meta l4proto ${protocol}`);

  // The address a rule may be grouped by: the only one, not negated.
  const grouped = addresses.length === 1 && !(addresses[0] as (typeof addresses)[number]).negate ? addresses[0] : undefined;
  const addressText = addresses
    .filter((address) => address !== grouped)
    .map((address) => `${ipKeyword} ${address.field} ${address.negate ? '!= ' : ''}${address.network.element}`);
  const tail = [
    ...sets,
    ...addressText,
    ...ports,
    ...icmp,
    ...hops,
    ...states,
    ...(rate === undefined ? [] : [`limit rate ${rate}${burst === undefined ? '' : ` burst ${burst} packets`}`]),
    ...(log === undefined ? [] : [log]),
    ...(verdict === undefined ? [] : [verdict]),
  ];
  return {
    family,
    head: interfaces,
    address: grouped ? {field: grouped.field, element: grouped.network.element, network: grouped.network} : undefined,
    tail,
    familyBound: addresses.length > 0 || sets.length > 0 || icmp.length > 0 || hops.length > 0,
    accepts,
    comment,
  };
}

function logStatement(options: readonly string[]): string {
  let prefix: string | undefined;
  let level: string | undefined;
  for (let index = 0; index < options.length; index += 2) {
    const option = options[index];
    const argument = options[index + 1];
    if (argument === undefined) throw new Untranslatable(`-j LOG ${options.join(' ')}`);
    if (option === '--log-prefix') prefix = argument;
    else if (option === '--log-level') {
      level = /^[0-7]$/.test(argument) ? LOG_LEVELS[Number(argument)] : LOG_LEVEL_NAMES[argument.toLowerCase()];
      if (level === undefined) throw new Untranslatable(`--log-level ${argument}`);
    } else throw new Untranslatable(`-j LOG ${option}`);
  }
  // (warn is both iptables' and nft's default level.)
  return ['log', ...(prefix === undefined ? [] : [`prefix ${nftString(prefix)}`]), ...(level === undefined || level === 'warn' ? [] : [`level ${level}`])].join(' ');
}

// ---------------------------------------------------------------------------
// Grouping by address into named sets

/** A rule of one family as it will be written: plain, or matching a named set of addresses. */
interface Entry {
  readonly family: Family;
  readonly first: Translated;
  /** Set members (two or more rules grouped), in rule order. */
  readonly members: Translated[];
  /** The rule's text once the set is named (filled in when written). */
  text?: string;
}

/** The grouping key: everything but the grouped address and the comment. */
function groupKey(rule: Translated): string {
  return (rule.key ??= `${rule.address?.field}\u0000${rule.head.join('\u0000')}\u0001${rule.tail.join('\u0000')}`);
}

/** A chain's translated rules of one family, with runs of accepts grouped by address. */
function groupByAddress(rules: readonly Translated[]): Entry[] {
  const entries: Entry[] = [];
  let run = new Map<string, Entry>();
  for (const rule of rules) {
    if (!rule.accepts) run = new Map();
    if (!rule.accepts || !rule.address) {
      entries.push({family: rule.family, first: rule, members: [rule]});
      continue;
    }
    const key = groupKey(rule);
    const entry = run.get(key);
    if (entry) entry.members.push(rule);
    else {
      const created: Entry = {family: rule.family, first: rule, members: [rule]};
      run.set(key, created);
      entries.push(created);
    }
  }
  return entries;
}

/**
 * One comment for a set's rules: comments that differ in one word are folded, `*` for that word
 * ("app wordpress-1 -> db mysql", "app wordpress-2 -> db mysql" -> "app * -> db mysql"); the
 * folded comments that still differ are joined with "; ".
 */
function sharedComment(comments: readonly (string | undefined)[]): string | undefined {
  const patterns: string[][] = [];
  for (const text of new Set(comments)) {
    if (text === undefined) continue;
    const words = text.split(' ');
    const near = patterns.find((pattern) => {
      if (pattern.length !== words.length) return false;
      let differ = 0;
      for (let index = 0; index < words.length && differ <= 1; index += 1) if (pattern[index] !== '*' && pattern[index] !== words[index]) differ += 1;
      // Once a word varies, only that one may: "app * -> db" takes "app x -> db", not "lb x -> db".
      return differ === 0 || (differ === 1 && !pattern.includes('*'));
    });
    if (!near) patterns.push(words);
    else for (let index = 0; index < words.length; index += 1) if (near[index] !== words[index]) near[index] = '*';
  }
  return patterns.length === 0 ? undefined : patterns.map((words) => words.join(' ')).join('; ');
}

/** Set elements: each once; with prefixes, sorted and members of a wider prefix left out (an interval set refuses overlaps). */
function setElements(members: readonly Translated[]): {elements: string[]; interval: boolean} {
  if (members.every((member) => isHostNetwork((member.address as GroupAddress).network))) {
    // Single addresses (most sets): in rule order, each once (by value: spellings may differ); nothing to fold.
    const byValue = new Map<number | string, string>();
    for (const member of members) {
      const address = member.address as GroupAddress;
      const key = valueKey(address.network);
      if (!byValue.has(key)) byValue.set(key, address.element);
    }
    return {elements: [...byValue.values()], interval: false};
  }
  const networks = members
    .map((member) => (member.address as GroupAddress).network)
    .sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : a.mask < b.mask ? -1 : a.mask > b.mask ? 1 : 0));
  const kept: GroupAddress['network'][] = [];
  const elementOf = new Map<GroupAddress['network'], string>();
  for (const member of members) elementOf.set((member.address as GroupAddress).network, (member.address as GroupAddress).element);
  for (const network of networks) {
    const previous = kept[kept.length - 1];
    // Sorted by value then by wider mask first: a prefix comes before what it holds.
    if (previous && (network.value & previous.mask) === previous.value) continue;
    kept.push(network);
  }
  return {elements: kept.map((network) => elementOf.get(network) as string), interval: kept.some((network) => !isHostNetwork(network))};
}

// ---------------------------------------------------------------------------
// Writing

interface NamedSet {
  readonly name: string;
  readonly family: Family;
  readonly elements: readonly string[];
  readonly interval: boolean;
}

/**
 * Set names come from the rule's comment (`in_app_db_mysql_v4`, from "app * -> db mysql" in
 * input): a listing reads by itself, and a set keeps its name while other flows come and go
 * (a counter would renumber them). Clashes get `_2`, `_3`... in the order the sets are written.
 */
class SetNames {
  /** `taken`: the names of the address sets the table matches. */
  constructor(private readonly used = new Set<string>()) {}

  name(chain: string, comment: string | undefined, family: Family): string {
    const prefix = chain === 'input' ? 'in' : chain === 'output' ? 'out' : chain.slice(0, 8);
    // From the first folded comment only ("app * -> db mysql; ..." -> "app_db_mysql").
    const words = (comment ?? 'peers').split(';')[0] as string;
    const slug = `${prefix}_${words.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+/, '')}`.slice(0, SET_NAME_SLUG).replace(/_+$/, '');
    let name = `${slug}_v${family}`;
    for (let counter = 2; this.used.has(name); counter += 1) name = `${slug}_${counter}_v${family}`;
    this.used.add(name);
    return name;
  }
}

/** The text of a rule written alone (no set of its own): the same in every table, so written once. */
const aloneTexts = new WeakMap<Translated, string>();

function ruleText(entry: Entry, chain: string, names: SetNames, sets: NamedSet[]): string {
  const rule = entry.first;
  if (!rule.address || entry.members.length === 1) {
    let text = aloneTexts.get(rule);
    if (text === undefined) aloneTexts.set(rule, (text = writeRuleText(entry, chain, names, sets)));
    return text;
  }
  return writeRuleText(entry, chain, names, sets);
}

function writeRuleText(entry: Entry, chain: string, names: SetNames, sets: NamedSet[]): string {
  const rule = entry.first;
  let address = '';
  let comment = rule.comment;
  if (rule.address) {
    const keyword = `${entry.family === 4 ? 'ip' : 'ip6'} ${rule.address.field}`;
    if (entry.members.length === 1) address = `${keyword} ${rule.address.element}`;
    else {
      comment = sharedComment(entry.members.map((member) => member.comment));
      const {elements, interval} = setElements(entry.members);
      const name = names.name(chain, comment, entry.family);
      sets.push({name, family: entry.family, elements, interval});
      address = `${keyword} @${name}`;
    }
  }
  const parts = [...rule.head, ...(address ? [address] : []), ...rule.tail];
  if (comment !== undefined) parts.push(`comment ${nftString(nftComment(comment))}`);
  return parts.join(' ');
}

/**
 * Both families' entries of one chain in one list: each family's order kept; a rule that does
 * not name its family is written once when both have it next, else qualified by `meta nfproto`.
 */
function mergeFamilies(v4: readonly Entry[], v6: readonly Entry[], chain: string, names: SetNames, sets: NamedSet[]): string[] {
  const text = (entry: Entry): string => (entry.text ??= ruleText(entry, chain, names, sets));
  const bound = (entry: Entry): boolean => entry.first.familyBound;
  // How many unbound rules of each text are still ahead in each list.
  const ahead = (entries: readonly Entry[]): Map<string, number> => {
    const counts = new Map<string, number>();
    for (const entry of entries) if (!bound(entry)) counts.set(text(entry), (counts.get(text(entry)) ?? 0) + 1);
    return counts;
  };
  const ahead4 = ahead(v4);
  const ahead6 = ahead(v6);
  const lines: string[] = [];
  const own = (entry: Entry, counts: Map<string, number>): void => {
    if (bound(entry)) {
      // An ICMP type or hop limit alone implies the family in an inet table; an address does too.
      lines.push(text(entry));
      return;
    }
    counts.set(text(entry), (counts.get(text(entry)) ?? 1) - 1);
    lines.push(`meta nfproto ipv${entry.family} ${text(entry)}`);
  };
  let i = 0;
  let j = 0;
  while (i < v4.length || j < v6.length) {
    const a = v4[i];
    const b = v6[j];
    if (a && b && !bound(a) && !bound(b) && text(a) === text(b)) {
      ahead4.set(text(a), (ahead4.get(text(a)) ?? 1) - 1);
      ahead6.set(text(b), (ahead6.get(text(b)) ?? 1) - 1);
      lines.push(text(a));
      i += 1;
      j += 1;
    } else if (a && (bound(a) || !b || !(ahead6.get(text(a)) ?? 0))) {
      own(a, ahead4);
      i += 1;
    } else if (b && (bound(b) || !a || !(ahead4.get(text(b)) ?? 0))) {
      own(b, ahead6);
      j += 1;
    } else if (a) {
      own(a, ahead4);
      i += 1;
    }
  }
  return lines;
}

function filterTable(ruleset: Ruleset): Table {
  const table = ruleset.tables.find((candidate) => candidate.name === 'filter');
  if (!table) throw new Untranslatable(`the IPv${ruleset.family} ruleset has no filter table`);
  const other = ruleset.tables.find((candidate) => candidate.name !== 'filter');
  if (other) throw new Untranslatable(`the IPv${ruleset.family} ruleset has a ${other.name} table`);
  return table;
}

/** `IW-LOG-DROP` -> `iw_log_drop`: nft chain names stay plain words. */
function userChainName(name: string): string {
  return `${/^[a-z]/i.test(name) ? '' : 'c_'}${name.toLowerCase().replace(/[^a-z0-9]+/g, '_')}`;
}

/**
 * The text of `table inet isolate_wizard { ... }` giving exactly the access of the host's
 * compiled iptables rulesets. Throws an InputError naming the host and the rule when a rule
 * cannot be translated.
 */
export function compileNftTable(host: CompiledHost): string {
  return writtenOnce(tablesWritten, host.host, host.v4, host.v6, [], false);
}

/**
 * Our table from the host's grouped rules (compiler.ts groupedRules): a rule per group of peers
 * matching the group's address set, so its size follows the host's flows, not the fleet's size.
 * With `declareSets`, the table declares the sets it matches (what `nft -f` loads); without, it
 * only names them (the plan prints each fleet set once: nftSetDeclarations). The same access as
 * compileNftTable's table; a host with no grouped rules gets that table.
 */
export function compileGroupedNftTable(host: CompiledHost, declareSets: boolean): string {
  const grouped = groupedRules(host);
  if (!grouped) return compileNftTable(host);
  return writtenOnce(declareSets ? groupedTablesWritten : groupedTablesListed, host.host, grouped.v4, grouped.v6, grouped.sets, declareSets);
}

/** The plan's listing of address sets: `set NAME { type ...; elements = { ... } }`, one line each. */
export function nftSetDeclarations(sets: readonly AddressSet[]): string[] {
  return sets.map((set) => `set ${set.name} { type ${set.family === 4 ? 'ipv4_addr' : 'ipv6_addr'}; elements = { ${set.elements.map(setElement).join(', ')} } }`);
}

/** `10.0.0.1/32` -> `10.0.0.1`: a set of host addresses needs no interval flag. */
function setElement(cidr: string): string {
  const slash = cidr.indexOf('/');
  return slash === -1 ? cidr : cidr.slice(0, slash);
}

type Written = WeakMap<Ruleset, WeakMap<Ruleset, string>>;

/** Hosts whose rules come from the same grants share their rulesets (compileFleet): one table text for them. */
function writtenOnce(cache: Written, host: string, v4: Ruleset, v6: Ruleset, sets: readonly AddressSet[], declare: boolean): string {
  let byV6 = cache.get(v4);
  const written = byV6?.get(v6);
  if (written !== undefined) return written;
  const text = writeTable(host, v4, v6, sets, declare);
  if (!byV6) cache.set(v4, (byV6 = new WeakMap()));
  byV6.set(v6, text);
  return text;
}

const tablesWritten: Written = new WeakMap();
const groupedTablesWritten: Written = new WeakMap();
const groupedTablesListed: Written = new WeakMap();
/**
 * Translations by rule spec: the compiler shares one spec between every ruleset with that rule
 * (loopback, ICMP, a peer's grant...), so each is read once per fleet.
 */
const translations = new WeakMap<readonly string[], {4?: Translated; 6?: Translated}>();

/** `addressSets`: the address sets the rules match, declared in the table when `declare`. */
function writeTable(hostName: string, rulesetV4: Ruleset, rulesetV6: Ruleset, addressSets: readonly AddressSet[], declare: boolean): string {
  const host = {host: hostName};
  const tables = {4: undefined as Table | undefined, 6: undefined as Table | undefined};
  try {
    tables[4] = filterTable(rulesetV4);
    tables[6] = filterTable(rulesetV6);
  } catch (error) {
    if (error instanceof Untranslatable) throw new InputError([`${host.host}: cannot write the nftables table: ${error.message}`]);
    throw error;
  }
  const v4 = tables[4];
  const v6 = tables[6];

  // User chains: one nft chain when both families' rules read the same, else one per family.
  const userChains = new Map<string, {4?: string; 6?: string}>();
  for (const table of [v4, v6]) {
    for (const chain of table.chains) {
      if (chain.name in BASE_CHAINS) continue;
      if (chain.policy !== null) throw new InputError([`${host.host}: cannot write the nftables table: chain ${chain.name} has a policy`]);
      userChains.set(chain.name, {});
    }
  }
  const rulesOf = (table: Table, chain: string): Rule[] => table.rules.filter((rule) => rule.chain === chain);
  const sameRules = (chain: string): boolean => {
    const a = rulesOf(v4, chain);
    const b = rulesOf(v6, chain);
    return a.length === b.length && a.every((rule, index) => rule.spec.join('\u0000') === (b[index] as Rule).spec.join('\u0000'));
  };
  const declared = (table: Table, chain: string): boolean => table.chains.some((candidate) => candidate.name === chain);
  for (const [chain, names] of userChains) {
    const both = declared(v4, chain) && declared(v6, chain);
    const shared = both && sameRules(chain);
    const base = userChainName(chain);
    if (declared(v4, chain)) names[4] = shared ? base : `${base}_v4`;
    if (declared(v6, chain)) names[6] = shared ? base : `${base}_v6`;
  }

  const translate = (table: Table, family: Family, chain: string): Translated[] =>
    rulesOf(table, chain).map((rule) => {
      const cached = translations.get(rule.spec)?.[family];
      if (cached) return cached;
      try {
        let jumps = false;
        const translated = translateRule(rule, family, (target) => {
          jumps = true;
          const name = userChains.get(target)?.[family];
          if (name === undefined) throw new Untranslatable(`jump to undeclared chain ${target}`);
          return name;
        });
        // A jump's text depends on the host's chains: only the others are kept.
        if (!jumps) {
          const byFamily = translations.get(rule.spec);
          if (byFamily) byFamily[family] = translated;
          else translations.set(rule.spec, {[family]: translated});
        }
        return translated;
      } catch (error) {
        if (!(error instanceof Untranslatable)) throw error;
        throw new InputError([`${host.host}: cannot write IPv${family} rule "-A ${rule.chain} ${rule.spec.join(' ')}" in nftables: ${error.message}`]);
      }
    });

  const names = new SetNames(new Set(addressSets.map((set) => set.name)));
  const sets: NamedSet[] = declare ? addressSets.map((set) => ({name: set.name, family: set.family, elements: set.elements.map(setElement), interval: false})) : [];
  const chains: {name: string; header?: string; lines: string[]}[] = [];
  for (const iptablesChain of HOOK_ORDER) {
    const name = BASE_CHAINS[iptablesChain] as string;
    const policy4 = v4.chains.find((chain) => chain.name === iptablesChain)?.policy ?? 'ACCEPT';
    const policy6 = v6.chains.find((chain) => chain.name === iptablesChain)?.policy ?? 'ACCEPT';
    for (const policy of [policy4, policy6]) {
      if (policy !== 'ACCEPT' && policy !== 'DROP') throw new InputError([`${host.host}: cannot write the nftables table: policy ${policy} of ${iptablesChain}`]);
    }
    const lines = mergeFamilies(groupByAddress(translate(v4, 4, iptablesChain)), groupByAddress(translate(v6, 6, iptablesChain)), name, names, sets);
    // Different policies per family (the compiler writes none): accept, and drop the other family at the end.
    const policy = policy4 === policy6 ? policy4.toLowerCase() : 'accept';
    if (policy4 !== policy6) lines.push(`meta nfproto ${policy4 === 'DROP' ? 'ipv4' : 'ipv6'} drop`);
    chains.push({name, header: `type filter hook ${name} priority filter; policy ${policy};`, lines});
  }
  for (const [chain, byFamily] of userChains) {
    if (byFamily[4] !== undefined && byFamily[4] === byFamily[6]) {
      // Both families' rules read the same: the merge writes each once.
      const lines = mergeFamilies(groupByAddress(translate(v4, 4, chain)), groupByAddress(translate(v6, 6, chain)), byFamily[4], names, sets);
      chains.push({name: byFamily[4], lines});
      continue;
    }
    for (const family of [4, 6] as const) {
      const name = byFamily[family];
      if (name === undefined) continue;
      const entries = groupByAddress(translate(family === 4 ? v4 : v6, family, chain));
      chains.push({name, lines: family === 4 ? mergeFamilies(entries, [], name, names, sets) : mergeFamilies([], entries, name, names, sets)});
    }
  }

  const out: string[] = [`table ${nftTableFamily} ${nftTableName} {`];
  for (const set of sets) {
    out.push(`\tset ${set.name} {`, `\t\ttype ${set.family === 4 ? 'ipv4_addr' : 'ipv6_addr'}`);
    if (set.interval) out.push('\t\tflags interval');
    out.push(`\t\telements = { ${set.elements.join(', ')} }`, '\t}', '');
  }
  chains.forEach((chain, index) => {
    out.push(`\tchain ${chain.name} {`);
    if (chain.header) out.push(`\t\t${chain.header}`);
    for (const line of chain.lines) out.push(`\t\t${line}`);
    out.push('\t}');
    if (index < chains.length - 1) out.push('');
  });
  out.push('}');
  return `${out.join('\n')}\n`;
}
