// Keeping what other software owns when our filter table replaces the server's.
//
// iptables-restore replaces a whole table at once. Docker, fail2ban and Kubernetes keep their
// own chains in `filter` (and rules in nat, which we never write). Loading our candidate as is
// would delete their chains and the jumps into them: containers lose their networking and banned
// addresses get back in. So the candidate is merged with the server's current filter table first.
import type {Chain, Rule, Ruleset, Table} from './model.js';

/**
 * Prefixes of the chains created by software that manages its own rules; this tool never writes
 * them. The one list: the server's agent gets the same prefixes (agent-script.ts builds its sh
 * `case` and awk patterns from it), so letters, digits, `-` and `_` only.
 */
export const FOREIGN_CHAIN_PATTERNS: readonly string[] = [
  'DOCKER', // DOCKER, DOCKER-USER, DOCKER-ISOLATION-STAGE-1/2, DOCKER-FORWARD, ...
  'f2b-', // fail2ban
  'KUBE-', // kube-proxy, kubelet
  'cali-', // Calico
  'CILIUM', // Cilium
  'ts-', // Tailscale
  'LIBVIRT_', // libvirt
  'ufw-', // ufw (IPv4)
  'ufw6-', // ufw (IPv6)
];

/** Prefixes of the container runtimes' chains: a FORWARD that jumps into one of them is theirs. */
export const FORWARD_OWNER_PATTERNS: readonly string[] = ['DOCKER', 'KUBE-', 'cali-', 'CILIUM'];

const BUILT_IN_CHAINS = new Set(['INPUT', 'FORWARD', 'OUTPUT']);

export function isForeignChain(name: string): boolean {
  return FOREIGN_CHAIN_PATTERNS.some((prefix) => name.startsWith(prefix));
}

/** A regular expression (Python's and JavaScript's alike) for the `:CHAIN …` line of an
 * iptables-save text declaring a chain isForeignChain names, the chain's name as its group. */
export function foreignChainLinePattern(): string {
  return `^:((?:${FOREIGN_CHAIN_PATTERNS.join('|')})\\S*)`;
}

/** The chain a rule jumps or goes to (-j / -g), if any. */
export function ruleTarget(rule: Rule): string | undefined {
  for (let index = 0; index < rule.spec.length - 1; index += 1) {
    const token = rule.spec[index];
    if (token === '-j' || token === '--jump' || token === '-g' || token === '--goto') return rule.spec[index + 1];
  }
  return undefined;
}

/** FORWARD belongs to a container runtime when it jumps into one of its chains. */
function forwardIsForeign(filter: Table): boolean {
  return filter.rules.some((rule) => {
    const target = ruleTarget(rule);
    return rule.chain === 'FORWARD' && target !== undefined && FORWARD_OWNER_PATTERNS.some((prefix) => target.startsWith(prefix));
  });
}

export interface MergeReport {
  readonly ruleset: Ruleset;
  /** Foreign chains carried over from the server, e.g. ["DOCKER", "f2b-sshd"]. */
  readonly keptChains: readonly string[];
  /** True when FORWARD was kept exactly as the server had it (Docker/Kubernetes). */
  readonly keptForward: boolean;
}

/**
 * The candidate's filter table plus, from `current`: every foreign chain with its rules, the
 * jumps into them from INPUT/FORWARD/OUTPUT (placed first, in their original order), and the
 * whole FORWARD chain (policy and rules) when Docker or Kubernetes uses it. Only the filter table
 * is returned: the loaded file holds nothing else, so iptables-restore leaves nat, mangle, raw
 * and security exactly as they are on the server.
 */
export function mergeForeignDetailed(candidate: Ruleset, current: Ruleset): MergeReport {
  const ours = candidate.tables.find((table) => table.name === 'filter') ?? {name: 'filter', chains: [], rules: []};
  const theirs = current.tables.find((table) => table.name === 'filter');
  if (!theirs) return {ruleset: {family: candidate.family, tables: [ours]}, keptChains: [], keptForward: false};

  const ourChainNames = new Set(ours.chains.map((chain) => chain.name));
  const foreignChains: Chain[] = theirs.chains.filter((chain) => isForeignChain(chain.name) && !ourChainNames.has(chain.name));
  const foreignNames = new Set(foreignChains.map((chain) => chain.name));
  const keepForward = forwardIsForeign(theirs);

  const chains: Chain[] = ours.chains.map((chain) => {
    if (chain.name !== 'FORWARD' || !keepForward) return chain;
    return theirs.chains.find((their) => their.name === 'FORWARD') ?? chain;
  });
  for (const chain of foreignChains) chains.push(chain);

  const rules: Rule[] = [];
  const builtInsWritten = new Set<string>();
  const writeBuiltIn = (name: string): void => {
    if (builtInsWritten.has(name)) return;
    builtInsWritten.add(name);
    if (name === 'FORWARD' && keepForward) {
      rules.push(...theirs.rules.filter((rule) => rule.chain === 'FORWARD'));
      return;
    }
    const jumpsIntoForeign = theirs.rules.filter((rule) => {
      const target = ruleTarget(rule);
      return rule.chain === name && target !== undefined && foreignNames.has(target);
    });
    rules.push(...jumpsIntoForeign, ...ours.rules.filter((rule) => rule.chain === name));
  };
  // Keep the candidate's order of chains; built-ins get their foreign jumps in front.
  for (const chain of ours.chains) {
    if (BUILT_IN_CHAINS.has(chain.name)) writeBuiltIn(chain.name);
    else rules.push(...ours.rules.filter((rule) => rule.chain === chain.name));
  }
  for (const chain of foreignChains) rules.push(...theirs.rules.filter((rule) => rule.chain === chain.name));

  return {
    ruleset: {family: candidate.family, tables: [{name: 'filter', chains, rules}]},
    keptChains: foreignChains.map((chain) => chain.name),
    keptForward: keepForward,
  };
}

/** True when a container runtime owns the ruleset's FORWARD chain (it jumps into one of its chains). */
export function forwardIsRuntimes(ruleset: Ruleset): boolean {
  const filter = ruleset.tables.find((table) => table.name === 'filter');
  return filter !== undefined && forwardIsForeign(filter);
}

/**
 * What this tool owns of a ruleset, for comparing: the filter table without others' chains, their
 * rules and the jumps into them from the built-in chains (the agent's awk `strip` / `ours`).
 * `withoutForward`: FORWARD left out too, for when a container runtime owns it on either side.
 */
export function ownPart(ruleset: Ruleset, withoutForward = false): Ruleset {
  const filter = ruleset.tables.find((table) => table.name === 'filter');
  if (!filter) return {family: ruleset.family, tables: []};
  const ours = (chain: string): boolean => !isForeignChain(chain) && !(withoutForward && chain === 'FORWARD');
  const rules = filter.rules.filter((rule) => {
    if (!ours(rule.chain)) return false;
    const target = ruleTarget(rule);
    return !(BUILT_IN_CHAINS.has(rule.chain) && target !== undefined && isForeignChain(target));
  });
  return {family: ruleset.family, tables: [{...filter, chains: filter.chains.filter((chain) => ours(chain.name)), rules}]};
}

export function mergeForeign(candidate: Ruleset, current: Ruleset): Ruleset {
  return mergeForeignDetailed(candidate, current).ruleset;
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
  const filter = ruleset.tables.find((table) => table.name === 'filter');
  if (!filter) return {family: ruleset.family, tables: []};
  return {
    family: ruleset.family,
    tables: [{...filter, rules: filter.rules.map((rule) => ({chain: rule.chain, spec: canonicalSpec(rule.spec)}))}],
  };
}

/**
 * True when a filter table lets everything through: absent, or only the built-in chains with
 * ACCEPT policies and no rules. Restoring an empty snapshot produces one of these two forms.
 */
export function isOpenFilter(ruleset: Ruleset): boolean {
  const filter = ruleset.tables.find((table) => table.name === 'filter');
  if (!filter) return true;
  return filter.rules.length === 0 && filter.chains.every((chain) => BUILT_IN_CHAINS.has(chain.name) && chain.policy === 'ACCEPT');
}

/**
 * What of a saved ruleset is ours to put back (rollback --to): its filter table without other
 * software's chains, their rules and the jumps into them (the load merges in what they own LIVE,
 * not what they had then), with the built-in chains always declared. A snapshot without a filter
 * table (a fresh host) gives the open table: every built-in ACCEPT, no rules.
 */
export function restorablePart(saved: Ruleset): Ruleset {
  const filter = saved.tables.find((table) => table.name === 'filter') ?? {name: 'filter', chains: [], rules: []};
  const chains: Chain[] = filter.chains.filter((chain) => !isForeignChain(chain.name));
  for (const name of BUILT_IN_CHAINS) if (!chains.some((chain) => chain.name === name)) chains.push({name, policy: 'ACCEPT'});
  const rules = filter.rules.filter((rule) => {
    if (isForeignChain(rule.chain)) return false;
    const target = ruleTarget(rule);
    return !(target !== undefined && isForeignChain(target));
  });
  return {family: saved.family, tables: [{name: 'filter', chains, rules}]};
}
