// What is ours in an iptables filter table, and the compiler's rules in that form.
//
// The compiler writes a host's rules as if the built-in chains were ours (INPUT, FORWARD,
// OUTPUT with their policies): that is what the evaluator, the access summary and the nftables
// compiler read. On a server they live in chains of our own instead: IW-INPUT, IW-FORWARD,
// IW-OUTPUT (and helpers such as IW-LOG-DROP), each entered by one plain jump at position 1 of its
// built-in chain and ending with the drop the policy stood for. What the compiler accepts, ours
// RETURNs: the rest of the built-in chain (others' rules, its policy) still decides, so a ban of
// fail2ban's holds for the addresses we admit, as with our nftables table. On a Docker host whose
// published ports are restricted, IW-PUBLISHED too, entered by one jump at position 1 of Docker's
// DOCKER-USER (a chain Docker owns: never declared, created, flushed or deleted by us; only our
// jump in it is ours). Everything else in the table —
// others' chains and rules (fail2ban, Docker, the operator's), the built-in chains' policies —
// is theirs: never written (the agent loads ours with iptables-restore --noflush), never compared.
import type {Chain, Rule, Ruleset, Table} from './model.js';

/** Every chain of ours starts so; no other software's chain does. */
export const OWN_CHAIN_PREFIX = 'IW-';
const BUILT_IN_CHAINS = new Set(['INPUT', 'FORWARD', 'OUTPUT']);
/** Others' chains that hold one jump of ours, and the chain it enters (Docker keeps DOCKER-USER for user rules). */
const FOREIGN_JUMPS: ReadonlyMap<string, string> = new Map([['DOCKER-USER', 'IW-PUBLISHED']]);
/** The chains our jumps are in, in the order the jumps are written. */
const JUMP_CHAINS = [...BUILT_IN_CHAINS, ...FOREIGN_JUMPS.keys()];

/** Our chain for a built-in one: INPUT -> IW-INPUT. */
export function ownChainOf(builtIn: string): string {
  return `${OWN_CHAIN_PREFIX}${builtIn}`;
}

export function isOwnChain(name: string): boolean {
  return name.startsWith(OWN_CHAIN_PREFIX);
}

/** One of our jumps: a rule of a built-in chain that only jumps into one of ours, or DOCKER-USER's into IW-PUBLISHED. */
export function isOwnJump(rule: Rule): boolean {
  if (rule.spec.length !== 2 || rule.spec[0] !== '-j') return false;
  const target = rule.spec[1] as string;
  return BUILT_IN_CHAINS.has(rule.chain) ? isOwnChain(target) : FOREIGN_JUMPS.get(rule.chain) === target;
}

function filterOf(ruleset: Ruleset): Table | undefined {
  return ruleset.tables.find((table) => table.name === 'filter');
}

/** The chain a rule jumps or goes to (-j / -g), if any. */
export function ruleTarget(rule: Rule): string | undefined {
  for (let index = 0; index < rule.spec.length - 1; index += 1) {
    const token = rule.spec[index];
    if (token === '-j' || token === '--jump' || token === '-g' || token === '--goto') return rule.spec[index + 1];
  }
  return undefined;
}

/**
 * What is ours of a ruleset (the agent's our_part): the filter table's IW-* chains with their
 * rules and our jumps; no table when nothing is ours. The built-in chains are not declared: their
 * policies are not ours.
 */
export function ownPart(ruleset: Ruleset): Ruleset {
  const filter = filterOf(ruleset);
  const own = filter ? filter.chains.filter((chain) => isOwnChain(chain.name)) : [];
  const rules = filter ? filter.rules.filter((rule) => isOwnChain(rule.chain) || isOwnJump(rule)) : [];
  if (own.length === 0 && rules.length === 0) return {family: ruleset.family, tables: []};
  return {family: ruleset.family, tables: [{name: 'filter', chains: ownChainList(own.map((chain) => chain.name), rules), rules}]};
}

/**
 * The chains of our part: the chains our jumps are in (policy "-": theirs, not named: the agent
 * passes on only our chains' declarations), then ours.
 */
function ownChainList(own: readonly string[], rules: readonly Rule[]): Chain[] {
  const builtIns = JUMP_CHAINS.filter((name) => rules.some((rule) => rule.chain === name && isOwnJump(rule)));
  return [...builtIns, ...own].map((name) => ({name, policy: null}));
}

/** True when nothing of ours is in the ruleset. */
export function hasNothingOurs(ruleset: Ruleset): boolean {
  return ownPart(ruleset).tables.length === 0;
}

/**
 * A compiled ruleset (built-in chains with policies) in our own chains, as the agent loads it:
 * our jumps first (INPUT, FORWARD, OUTPUT, in the compiled order), then each built-in's rules in
 * its IW- chain, followed by `-j DROP` where its policy was DROP, then the helper chains. A
 * ruleset already in that form (no built-in chain with a policy) is returned as its own part.
 */
export function toOwnChains(compiled: Ruleset): Ruleset {
  const filter = filterOf(compiled);
  if (!filter || !filter.chains.some((chain) => BUILT_IN_CHAINS.has(chain.name) && chain.policy !== null)) {
    const ours = ownPart(compiled);
    return ours.tables.length > 0 ? ours : {family: compiled.family, tables: [{name: 'filter', chains: [], rules: []}]};
  }
  const own: string[] = [];
  const jumps: Rule[] = [];
  const rules: Rule[] = [];
  for (const chain of filter.chains) {
    const builtIn = BUILT_IN_CHAINS.has(chain.name);
    const name = builtIn ? ownChainOf(chain.name) : chain.name;
    if (!isOwnChain(name)) throw new Error(`chain ${chain.name} is not ours (${OWN_CHAIN_PREFIX}*): the compiler writes only built-in and ${OWN_CHAIN_PREFIX} chains`);
    own.push(name);
    if (builtIn) jumps.push({chain: chain.name, spec: ['-j', name]});
    for (const rule of filter.rules) if (rule.chain === chain.name) rules.push(builtIn ? {chain: name, spec: acceptAsReturn(rule.spec)} : rule);
    if (builtIn && chain.policy === 'DROP') rules.push({chain: name, spec: ['-j', 'DROP']});
  }
  // Jumps from others' chains (DOCKER-USER into IW-PUBLISHED): after the built-ins'.
  jumps.push(...filter.rules.filter((rule) => !BUILT_IN_CHAINS.has(rule.chain) && isOwnJump(rule)));
  return {family: compiled.family, tables: [{name: 'filter', chains: ownChainList(own, jumps), rules: [...jumps, ...rules]}]};
}

/**
 * Our accept, in a chain of ours: RETURN, so the packet goes on through the rest of the built-in
 * chain — others' rules (a fail2ban ban, ufw, the operator's) and its policy still decide, as an
 * accept in our nftables table ends only our chain. Only our drops are final.
 */
function acceptAsReturn(spec: readonly string[]): string[] {
  return spec.map((token, index) => (token === 'ACCEPT' && (spec[index - 1] === '-j' || spec[index - 1] === '--jump') ? 'RETURN' : token));
}

/**
 * The filter table as it will be once the agent loaded `ours` (a toOwnChains output) over
 * `live`: live without its part of ours, our chains added, our jumps at position 1 of their
 * chains (built-in, or DOCKER-USER), before whatever others have there. Others' rules stay exactly where they are,
 * so what they accept or drop before our jump is evaluated as it will act.
 */
export function withOurs(live: Ruleset, ours: Ruleset): Ruleset {
  const theirs = filterOf(live) ?? {name: 'filter', chains: [...BUILT_IN_CHAINS].map((name) => ({name, policy: 'ACCEPT'})), rules: []};
  const own = filterOf(ownPart(ours)) ?? {name: 'filter', chains: [], rules: []};
  const ownJumps = own.rules.filter(isOwnJump);
  const chains = theirs.chains.filter((chain) => !isOwnChain(chain.name));
  for (const name of JUMP_CHAINS) {
    if (!chains.some((chain) => chain.name === name) && ownJumps.some((rule) => rule.chain === name)) chains.push({name, policy: BUILT_IN_CHAINS.has(name) ? 'ACCEPT' : null});
  }
  chains.push(...own.chains.filter((chain) => isOwnChain(chain.name)));
  const others = theirs.rules.filter((rule) => !isOwnChain(rule.chain) && !isOwnJump(rule));
  const rules: Rule[] = [];
  for (const chain of chains) {
    if (isOwnChain(chain.name)) continue;
    rules.push(...ownJumps.filter((rule) => rule.chain === chain.name), ...others.filter((rule) => rule.chain === chain.name));
  }
  rules.push(...own.rules.filter((rule) => !isOwnJump(rule)));
  const tables = live.tables.filter((table) => table.name !== 'filter');
  return {family: live.family, tables: [...tables, {name: 'filter', chains, rules}]};
}

/** Others' rules that come before our jump in its chain (built-in, or DOCKER-USER): they decide before ours do. */
export function rulesBeforeOurs(live: Ruleset): Rule[] {
  const filter = filterOf(live);
  if (!filter) return [];
  const before: Rule[] = [];
  for (const name of JUMP_CHAINS) {
    const rules = filter.rules.filter((rule) => rule.chain === name);
    const jump = rules.findIndex(isOwnJump);
    if (jump > 0) before.push(...rules.slice(0, jump));
  }
  return before;
}

// ---------------------------------------------------------------------------
// Comparing what was sent with what the server prints back.

const PROTOCOL_ALIASES: Readonly<Record<string, string>> = {icmpv6: 'ipv6-icmp', 'ipv6-icmp': 'ipv6-icmp', '58': 'ipv6-icmp', '6': 'tcp', '17': 'udp', '1': 'icmp'};
/** The match module iptables-save adds after `-p PROTO` (`-p tcp -m tcp --dport 22`). */
const IMPLICIT_MATCH: Readonly<Record<string, string>> = {tcp: 'tcp', udp: 'udp', icmp: 'icmp', 'ipv6-icmp': 'icmp6'};

function withPrefixLength(address: string): string {
  if (address.includes('/')) return address;
  return address.includes(':') ? `${address}/128` : `${address}/32`;
}

/**
 * A rule's tokens in the form iptables-save prints them, for the usual spellings a renderer may
 * choose differently: the implicit `-m tcp` after `-p tcp`, `icmpv6` for `ipv6-icmp`, and bare
 * addresses for /32 and /128. Anything else must already match token for token.
 */
export function canonicalSpec(spec: readonly string[]): string[] {
  const tokens: string[] = [];
  let protocol: string | undefined;
  for (let index = 0; index < spec.length; index += 1) {
    const token = spec[index] as string;
    const next = spec[index + 1];
    if ((token === '-p' || token === '--protocol') && next !== undefined) {
      protocol = PROTOCOL_ALIASES[next] ?? next;
      tokens.push('-p', protocol);
      index += 1;
    } else if (token === '-m' && next !== undefined && protocol !== undefined && IMPLICIT_MATCH[protocol] === next) {
      index += 1; // implicit: dropped on both sides
    } else if ((token === '-s' || token === '-d' || token === '--source' || token === '--destination') && next !== undefined) {
      tokens.push(token.length === 2 ? token : token === '--source' ? '-s' : '-d', withPrefixLength(next));
      index += 1;
    } else {
      tokens.push(token);
    }
  }
  return tokens;
}

/** The filter table only, with rule specs in canonical form (see canonicalSpec). */
export function canonicalFilter(ruleset: Ruleset): Ruleset {
  const filter = filterOf(ruleset);
  if (!filter) return {family: ruleset.family, tables: []};
  return {
    family: ruleset.family,
    tables: [{...filter, rules: filter.rules.map((rule) => ({chain: rule.chain, spec: canonicalSpec(rule.spec)}))}],
  };
}
