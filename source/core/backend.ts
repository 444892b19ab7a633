// Which backend holds a host's rules, and what each part of its batch then carries. Every batch
// owns both parts on a host (see the agent): with nftables our table holds the rules and the
// iptables filter tables hold nothing of ours (others' chains are kept by the agent's merge);
// with iptables our table must be absent. A host that changes backend thus loses the other's
// rules in the same batch, with the same way back.
import type {BackendChoice, CompiledHost, Family, Ruleset} from './model.js';
import {InputError} from './errors.js';
import {compileGroupedNftTable} from './nft-compiler.js';

export type Backend = 'iptables' | 'nftables';

/** The backend a choice gives a host; `hasNft` undefined = not known (then iptables: it works everywhere). */
export function resolveBackend(choice: BackendChoice | undefined, hasNft: boolean | undefined): Backend {
  if (choice === 'nftables') return 'nftables';
  if (choice === 'auto') return hasNft === true ? 'nftables' : 'iptables';
  return 'iptables';
}

/** A filter table with nothing of ours: every chain accepts (the agent adds others' chains live). */
export function emptyFilter(family: Family): Ruleset {
  return {
    family,
    tables: [{name: 'filter', chains: [{name: 'INPUT', policy: 'ACCEPT'}, {name: 'FORWARD', policy: 'ACCEPT'}, {name: 'OUTPUT', policy: 'ACCEPT'}], rules: []}],
  };
}

export interface HostCandidate {
  readonly v4: Ruleset;
  readonly v6: Ruleset;
  /** Our table and the iptables rules it was compiled from (the plan it is held to once live). */
  readonly nft?: {readonly text: string; readonly planned: {readonly v4: Ruleset; readonly v6: Ruleset}};
}

export function hostCandidate(host: CompiledHost, backend: Backend): HostCandidate {
  if (backend === 'iptables') return {v4: host.v4, v6: host.v6};
  // The grouped table (sets of a group's addresses) gives the per-address rulesets' access (nft-compiler.test.ts).
  return {v4: emptyFilter(4), v6: emptyFilter(6), nft: {text: compileGroupedNftTable(host, true), planned: {v4: host.v4, v6: host.v6}}};
}

/**
 * Each host's backend under `choice`, from what was read on it (`withoutNft`: hosts where nft is
 * not installed; `read`: hosts whose nftables state was read), and a refusal line per host where
 * the chosen backend cannot run.
 */
export function chooseBackends(
  names: readonly string[],
  choice: BackendChoice | undefined,
  withoutNft: ReadonlySet<string>,
  read: ReadonlySet<string>,
): {backends: Map<string, Backend>; refusals: string[]} {
  const backends = new Map<string, Backend>();
  const refusals: string[] = [];
  for (const name of names) {
    const hasNft = withoutNft.has(name) ? false : read.has(name) ? true : undefined;
    if (choice === 'nftables' && hasNft === false) refusals.push(`${name}: the nftables backend needs nft, which is not installed there (--backend auto uses iptables on such a host)`);
    backends.set(name, resolveBackend(choice, hasNft));
  }
  return {backends, refusals};
}

/** `--backend` as given on the command line; undefined when absent. */
export function parseBackendChoice(text: string | undefined): BackendChoice | undefined {
  if (text === undefined) return undefined;
  if (text === 'iptables' || text === 'nftables' || text === 'auto') return text;
  throw new InputError([`--backend: "${text}" is not one of iptables, nftables, auto`]);
}
