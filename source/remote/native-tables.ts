// Before a batch touches anything: read each host's live nftables ruleset and refuse a plan whose
// opened flows another manager's table (firewalld, a hand-written `inet filter`, …) would drop.
// Our rules cannot open what such a table drops, so applying anyway would report a lockdown whose
// intended access is broken.
import {summarizeFleetAccess, type AccessEntry, type FleetHost} from '../core/access.js';
import {formatNativeDrops, nativeDrops} from '../core/native-drops.js';
import {NFT_PROBE_TABLE} from '../core/backend.js';
import {OUR_NFT_TABLE} from '../core/nft-equivalence.js';
import {isIptablesNftTable, parseNftJson, type NftRuleset} from '../core/nft-ruleset.js';
import type {Connector, HostTarget} from './types.js';

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
 * The live ruleset of each target (an empty one where nft is missing or nothing is loaded). A host
 * that cannot be reached is left out (the batch's lock step reports it); one whose ruleset cannot
 * be read is named in `unread`, so the caller can say that it was not checked.
 */
export async function readNativeRulesets(
  connector: Connector,
  targets: readonly HostTarget[],
): Promise<{rulesets: Map<string, NftRuleset>; unread: string[]; withoutNft: Map<string, string>}> {
  const rulesets = new Map<string, NftRuleset>();
  const unread: string[] = [];
  /** Hosts where nft is missing or cannot load what our table uses, with why. */
  const withoutNft = new Map<string, string>();
  await Promise.all(
    targets.map(async (target) => {
      let result;
      try {
        result = await (await connector.connect(target)).exec(CHECK_AND_READ_NFT, {root: true, stdin: ''});
      } catch {
        return;
      }
      try {
        if (result.code !== 0) throw new Error(result.stderr.trim().split('\n')[0] || `exit ${result.code}`);
        if (result.stdout.trim() === 'no-nft') {
          withoutNft.set(target.name, 'is not installed there');
          rulesets.set(target.name, {tables: []});
          return;
        }
        const newline = result.stdout.indexOf('\n');
        const problem = nftProblem(result.stdout.slice(0, newline < 0 ? undefined : newline).trim());
        if (problem !== undefined) withoutNft.set(target.name, problem);
        // Our own table (the nftables backend) is not another manager's: the plan reads it exactly.
        const read = parseNftJson(newline < 0 ? '' : result.stdout.slice(newline + 1));
        rulesets.set(target.name, {tables: read.tables.filter((table) => !(table.family === OUR_NFT_TABLE.family && table.name === OUR_NFT_TABLE.name))});
      } catch (error) {
        unread.push(`${target.name}: its nftables ruleset could not be read (${error instanceof Error ? error.message : String(error)}): other tables there were not checked against the plan`);
      }
    }),
  );
  return {rulesets, unread, withoutNft};
}

/** Whether a ruleset holds any table that filters on its own (iptables-nft's tables are read through iptables-save). */
function hasNativeFilter(ruleset: NftRuleset): boolean {
  return ruleset.tables.some((table) => !isIptablesNftTable(table) && [...table.chains.values()].some((chain) => chain.base?.type === 'filter'));
}

/**
 * Refusal lines (empty: nothing in the way) for the hosts of `scope`. The access summary is
 * computed only when a host really has such a table (it is the slow part of a plan).
 */
export function nativeDropRefusals(hosts: readonly FleetHost[], native: ReadonlyMap<string, NftRuleset>, scope: ReadonlySet<string>, access?: readonly AccessEntry[]): string[] {
  const relevant = new Map([...native].filter(([name, ruleset]) => scope.has(name) && hasNativeFilter(ruleset)));
  if (relevant.size === 0) return [];
  const lines = formatNativeDrops(nativeDrops(hosts, access ?? summarizeFleetAccess(hosts), relevant));
  if (lines.length === 0) return [];
  return [
    ...lines,
    'nothing was changed: open those ports in that firewall too, or stop and disable it, then apply again (our rules cannot open what another table drops)',
  ];
}
