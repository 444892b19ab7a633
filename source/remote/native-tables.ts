// Before a batch touches anything: read each host's live nftables ruleset (and, where ufw is
// installed, its iptables filter tables) and refuse a plan whose opened flows another manager
// (firewalld, ufw, a hand-written `inet filter`, …) would drop, unless the operator chose a
// remedy for firewalld and ufw. Our rules cannot open what such a firewall drops, so applying
// anyway would report a lockdown whose intended access is broken.
import {summarizeFleetAccess, type AccessEntry, type FleetHost} from '../core/access.js';
import {parseIptablesSave} from '../core/iptables-save.js';
import type {OtherFirewallRemedy} from '../core/model.js';
import {formatNativeDrops, nativeDrops, type IptablesFilters, type NativeDrop} from '../core/native-drops.js';
import {NFT_PROBE_TABLE} from '../core/backend.js';
import {OUR_NFT_TABLE} from '../core/nft-equivalence.js';
import {isIptablesNftTable, parseNftJson, type NftRuleset} from '../core/nft-ruleset.js';
import {REMEDY_WORDS, remedySteps, unremediable} from '../core/remedy.js';
import type {Connector, HostTarget, RemoteHost} from './types.js';

/** Fixed and read-only; prints "no-nft" where nft is not installed. */
export const READ_NFT_RULESET = 'command -v nft >/dev/null 2>&1 || { echo no-nft; exit 0; }; nft -j list ruleset';

/**
 * READ_NFT_RULESET after `nft -c` of NFT_PROBE_TABLE (checked, never loaded): a first line
 * "nft-usable", or "nft-unusable" and nft's first error line, then the ruleset.
 */
export const CHECK_AND_READ_NFT =
  'command -v nft >/dev/null 2>&1 || { echo no-nft; exit 0; }; ' +
  `if iw_e=$(printf '%s\n' '${NFT_PROBE_TABLE}' | nft -c -f /dev/stdin 2>&1); then echo nft-usable; ` +
  `else printf 'nft-unusable %s\n' "$(printf '%s\n' "$iw_e" | sed -n '/Error/{p;q;}')"; fi; ` +
  'nft -j list ruleset';

/** Why a host's nft cannot hold our table (undefined: it can), from CHECK_AND_READ_NFT's first line. */
function nftProblem(firstLine: string): string | undefined {
  if (firstLine === 'nft-usable') return undefined;
  const error = firstLine.slice('nft-unusable'.length).trim();
  return `cannot load a table using what ours uses there (nft -c: ${error === '' ? 'failed' : error})`;
}

/**
 * Fixed and read-only: where ufw is installed, the iptables filter tables (ufw's chains live
 * there, on the legacy backend or through iptables-nft); "no-ufw" elsewhere.
 */
export const READ_UFW_FILTERS =
  "command -v ufw >/dev/null 2>&1 || { echo no-ufw; exit 0; }; printf '#iw:v4\\n'; iptables-save -t filter 2>/dev/null; printf '#iw:v6\\n'; ip6tables-save -t filter 2>/dev/null; true";

/** The iptables filter tables of a READ_UFW_FILTERS answer (undefined: no ufw there). */
export function parseUfwFilters(text: string): IptablesFilters | undefined {
  if (text.trim() === 'no-ufw') return undefined;
  const v6At = text.indexOf('#iw:v6\n');
  const v4Text = text.slice(text.indexOf('#iw:v4\n') + 7, v6At < 0 ? text.length : v6At);
  const v6Text = v6At < 0 ? '' : text.slice(v6At + 7);
  return {v4: parseIptablesSave(v4Text, 4), v6: parseIptablesSave(v6Text, 6)};
}

/** One host's other firewalls as read live: its native nftables ruleset and, with ufw, its iptables filters. */
export async function readOtherFirewalls(remote: RemoteHost): Promise<{ruleset: NftRuleset; withoutNft?: string; iptables?: IptablesFilters}> {
  const [nft, ufw] = await Promise.all([remote.exec(CHECK_AND_READ_NFT, {root: true, stdin: ''}), remote.exec(READ_UFW_FILTERS, {root: true, stdin: ''})]);
  if (nft.code !== 0) throw new Error(nft.stderr.trim().split('\n')[0] || `exit ${nft.code}`);
  if (ufw.code !== 0) throw new Error(ufw.stderr.trim().split('\n')[0] || `exit ${ufw.code}`);
  const iptables = parseUfwFilters(ufw.stdout);
  if (nft.stdout.trim() === 'no-nft') return {ruleset: {tables: []}, withoutNft: 'is not installed there', ...(iptables ? {iptables} : {})};
  const newline = nft.stdout.indexOf('\n');
  const withoutNft = nftProblem(nft.stdout.slice(0, newline < 0 ? undefined : newline).trim());
  // Our own table (the nftables backend) is not another manager's: the plan reads it exactly.
  const read = parseNftJson(newline < 0 ? '' : nft.stdout.slice(newline + 1));
  const ruleset = {tables: read.tables.filter((table) => !(table.family === OUR_NFT_TABLE.family && table.name === OUR_NFT_TABLE.name))};
  return {ruleset, ...(withoutNft === undefined ? {} : {withoutNft}), ...(iptables ? {iptables} : {})};
}

/**
 * The live ruleset of each target (an empty one where nft is missing or nothing is loaded). A host
 * that cannot be reached is left out (the batch's lock step reports it); one whose ruleset cannot
 * be read is named in `unread`, so the caller can say that it was not checked.
 */
export async function readNativeRulesets(
  connector: Connector,
  targets: readonly HostTarget[],
): Promise<{rulesets: Map<string, NftRuleset>; iptables: Map<string, IptablesFilters>; unread: string[]; withoutNft: Map<string, string>}> {
  const rulesets = new Map<string, NftRuleset>();
  const iptables = new Map<string, IptablesFilters>();
  const unread: string[] = [];
  /** Hosts where nft is missing or cannot load what our table uses, with why. */
  const withoutNft = new Map<string, string>();
  await Promise.all(
    targets.map(async (target) => {
      let remote;
      try {
        remote = await connector.connect(target);
      } catch {
        return;
      }
      try {
        const read = await readOtherFirewalls(remote);
        rulesets.set(target.name, read.ruleset);
        if (read.withoutNft !== undefined) withoutNft.set(target.name, read.withoutNft);
        if (read.iptables) iptables.set(target.name, read.iptables);
      } catch (error) {
        unread.push(`${target.name}: its other firewalls (nftables ruleset, ufw) could not be read (${error instanceof Error ? error.message : String(error)}): they were not checked against the plan`);
      }
    }),
  );
  return {rulesets, iptables, unread, withoutNft};
}

/** Whether a ruleset holds any table that filters on its own (iptables-nft's tables are read through iptables-save). */
function hasNativeFilter(ruleset: NftRuleset): boolean {
  return ruleset.tables.some((table) => !isIptablesNftTable(table) && [...table.chains.values()].some((chain) => chain.base?.type === 'filter'));
}

/** The access summary, or how to get it (only computed where another firewall needs it). */
type Access = readonly AccessEntry[] | (() => readonly AccessEntry[]);

/** What was read of the hosts' other firewalls. */
export interface OtherFirewallsRead {
  readonly rulesets: ReadonlyMap<string, NftRuleset>;
  readonly iptables?: ReadonlyMap<string, IptablesFilters>;
}

export interface OtherFirewallCheck {
  /** Non-empty: refused (exit 3), nothing touched. */
  readonly refusals: string[];
  /** Per host, the agent's remedy steps (remedy.ts), when the operator chose one. */
  readonly remedies: Map<string, string[]>;
  /** Per host, one line per manager and flows the remedy is for (shown as progress). */
  readonly described: Map<string, string[]>;
}

/** The drops of the hosts of `scope`; the access summary is computed only when a host has another firewall (it is the slow part of a plan). */
export function otherFirewallDrops(hosts: readonly FleetHost[], read: OtherFirewallsRead, scope: ReadonlySet<string>, access?: Access): NativeDrop[] {
  const relevant = new Map([...read.rulesets].filter(([name, ruleset]) => scope.has(name) && hasNativeFilter(ruleset)));
  const iptables = new Map([...(read.iptables ?? new Map<string, IptablesFilters>())].filter(([name]) => scope.has(name)));
  if (relevant.size === 0 && iptables.size === 0) return [];
  const entries = typeof access === 'function' ? access() : (access ?? summarizeFleetAccess(hosts));
  return nativeDrops(hosts, entries, relevant, iptables);
}

/**
 * Refusal lines for the drops of the hosts of `scope`, unless `remedy` covers them: then each
 * host's remedy steps instead. Unknown managers are never remedied: refused whatever the choice.
 */
export function checkOtherFirewalls(
  hosts: readonly FleetHost[],
  read: OtherFirewallsRead,
  scope: ReadonlySet<string>,
  access?: Access,
  remedy?: OtherFirewallRemedy,
): OtherFirewallCheck {
  const drops = otherFirewallDrops(hosts, read, scope, access);
  const remedies = new Map<string, string[]>();
  const described = new Map<string, string[]>();
  if (drops.length === 0) return {refusals: [], remedies, described};
  if (remedy === undefined) {
    return {
      refusals: [
        ...formatNativeDrops(drops),
        `nothing was changed: our rules cannot open what another firewall drops. For firewalld and ufw choose --other-firewall open (${REMEDY_WORDS.open}) or --other-firewall stop (${REMEDY_WORDS.stop}), or change that firewall yourself and apply again`,
      ],
      remedies,
      described,
    };
  }
  const stuck = unremediable(drops);
  if (stuck.length > 0) {
    return {refusals: [...formatNativeDrops(stuck), `nothing was changed: --other-firewall ${remedy} changes firewalld and ufw only; change these yourself and apply again`], remedies, described};
  }
  for (const line of formatNativeDrops(drops)) {
    const host = line.slice(0, line.indexOf(':'));
    described.set(host, [...(described.get(host) ?? []), line]);
  }
  for (const host of new Set(drops.map((drop) => drop.destination))) {
    remedies.set(host, remedySteps(drops.filter((drop) => drop.destination === host), remedy));
  }
  return {refusals: [], remedies, described};
}

/** Refusal lines (empty: nothing in the way) for the hosts of `scope`, no remedy chosen. */
export function nativeDropRefusals(hosts: readonly FleetHost[], read: OtherFirewallsRead, scope: ReadonlySet<string>, access?: readonly AccessEntry[]): string[] {
  return checkOtherFirewalls(hosts, read, scope, access).refusals;
}
