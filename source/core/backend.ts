// Which backend holds a host's rules, and what each part of its batch then carries. Every batch
// owns both parts on a host (see the agent): with nftables our table holds the rules and the
// iptables filter tables hold nothing of ours (no IW- chain, no jump: others' rules are never written);
// with iptables our table must be absent. A host that changes backend thus loses the other's
// rules in the same batch, with the same way back.
import type {BackendChoice, CompiledHost, Family, Ruleset} from './model.js';
import {InputError} from './errors.js';
import {compileGroupedNftTable} from './nft-compiler.js';
import {publishedChainLines, withPublishedChain, withPublishedRules, type DockerFacts, type PublishedPort} from './docker.js';

export type Backend = 'iptables' | 'nftables';

/** What a host gets when neither `--backend` nor the inventory's options.backend says. */
export const DEFAULT_BACKEND_CHOICE: BackendChoice = 'auto';

/**
 * A small table using what our compiled tables use (an inet table, named interval sets of both
 * families, base chains at a named priority, ct state, iifname, anonymous port sets with ranges,
 * icmpv6 with hoplimit), checked on a host with `nft -c`: nothing is loaded, but the kernel
 * validates every expression. One line, no single quote: it is pasted between single quotes
 * into the fixed commands that run it.
 */
export const NFT_PROBE_TABLE =
  'table inet isolate_wizard_check { ' +
  'set v4 { type ipv4_addr; flags interval; elements = { 10.0.0.0/8, 192.0.2.1 }; }; ' +
  'set v6 { type ipv6_addr; flags interval; elements = { fd00::/8, 2001:db8::1 }; }; ' +
  'chain input { type filter hook input priority filter; policy accept; iifname "lo" accept; ' +
  'ct state established,related accept; ct state invalid drop; ' +
  'ip saddr @v4 tcp dport { 22, 80-90 } ct state new accept comment "probe"; ' +
  'ip6 saddr @v6 udp dport 53 ct state new accept; icmpv6 type nd-neighbor-solicit ip6 hoplimit 255 accept; }; }';

/**
 * The backend a choice gives a host (no choice: auto). `nftUsable`: whether the host's nft took
 * NFT_PROBE_TABLE; undefined = not known (then auto gives iptables: it works everywhere).
 */
export function resolveBackend(choice: BackendChoice | undefined, nftUsable: boolean | undefined): Backend {
  const effective = choice ?? DEFAULT_BACKEND_CHOICE;
  if (effective === 'nftables') return 'nftables';
  if (effective === 'auto') return nftUsable === true ? 'nftables' : 'iptables';
  return 'iptables';
}

/** A filter table with nothing of ours in it: loaded, it removes our chains (others' rules are never written). */
export function emptyFilter(family: Family): Ruleset {
  return {family, tables: [{name: 'filter', chains: [], rules: []}]};
}

export interface HostCandidate {
  readonly v4: Ruleset;
  readonly v6: Ruleset;
  /** Our table and the iptables rules it was compiled from (the plan it is held to once live). */
  readonly nft?: {readonly text: string; readonly planned: {readonly v4: Ruleset; readonly v6: Ruleset}};
}

/** `restrict`: a Docker host's published ports, restricted to the plan (in our table, or IW-PUBLISHED on iptables). */
export function hostCandidate(host: CompiledHost, backend: Backend, restrict?: readonly PublishedPort[]): HostCandidate {
  if (backend === 'iptables') return {v4: withPublishedRules(host.v4, restrict), v6: withPublishedRules(host.v6, restrict)};
  return {v4: emptyFilter(4), v6: emptyFilter(6), nft: {text: nftTableOf(host, restrict), planned: {v4: host.v4, v6: host.v6}}};
}

/**
 * Why published ports cannot be restricted on a host, if they cannot: on iptables the restriction
 * is a jump of ours in Docker's DOCKER-USER, which only Docker creates (absent: Docker not running,
 * or Docker 29 on nftables). `elsewhere`: how to choose the nftables backend.
 */
export function restrictRefusal(host: string, backend: Backend, published: readonly PublishedPort[] | undefined, docker: DockerFacts | undefined, elsewhere: string): string | undefined {
  if (backend !== 'iptables' || !published) return undefined;
  const lacking = [...new Set(published.map((port) => port.family))].sort().filter((family) => !docker?.userChain?.includes(family));
  if (lacking.length === 0) return undefined;
  return `${host}: restricting published container ports on the iptables backend needs Docker's DOCKER-USER chain, which the IPv${lacking.join(' and IPv')} filter table lacks (Docker not running, or Docker 29 on nftables: ${elsewhere}); nothing was changed`;
}

/**
 * Our table for a host: the grouped table (sets of a group's addresses, which gives the per-address
 * rulesets' access: nft-compiler.test.ts), with the published ports' chain when restricted.
 * `declareSets` false: the sets are only named (plan prints them once, before the tables).
 */
export function nftTableOf(host: CompiledHost, restrict?: readonly PublishedPort[], declareSets = true): string {
  const text = compileGroupedNftTable(host, declareSets);
  return restrict === undefined ? text : withPublishedChain(text, publishedChainLines(restrict, host));
}

/**
 * Each host's backend under `choice`, from what was read on it (`withoutNft`: hosts where nft is
 * missing or cannot load what our table uses, with why; `read`: hosts whose nftables state was
 * read), and a refusal line per host where the chosen backend cannot run.
 */
export function chooseBackends(
  names: readonly string[],
  choice: BackendChoice | undefined,
  withoutNft: ReadonlyMap<string, string>,
  read: ReadonlySet<string>,
): {backends: Map<string, Backend>; refusals: string[]} {
  const backends = new Map<string, Backend>();
  const refusals: string[] = [];
  for (const name of names) {
    const why = withoutNft.get(name);
    const nftUsable = why !== undefined ? false : read.has(name) ? true : undefined;
    if (choice === 'nftables' && why !== undefined) refusals.push(`${name}: the nftables backend needs nft, which ${why} (--backend auto uses iptables on such a host)`);
    backends.set(name, resolveBackend(choice, nftUsable));
  }
  return {backends, refusals};
}

/** `--backend` as given on the command line; undefined when absent. */
export function parseBackendChoice(text: string | undefined): BackendChoice | undefined {
  if (text === undefined) return undefined;
  if (text === 'iptables' || text === 'nftables' || text === 'auto') return text;
  throw new InputError([`--backend: "${text}" is not one of iptables, nftables, auto`]);
}
