// rollback --to BATCH: put back the rules the hosts had before an earlier batch, through the same
// protocol as apply (lock, snapshot, --test, load, fresh-connection check, countdown, confirm or
// the server's own rollback). The candidate of each host is the snapshot that batch took there:
// this machine's copy, else the server's (backups/BATCH.v4/.v6), our part of it only (our chains
// and jumps: what other software owns is never written, as for any apply).
import {EXIT, RefusedError} from '../core/errors.js';
import {parseIptablesSave} from '../core/iptables-save.js';
import {ownPart} from '../core/own-chains.js';
import type {Ruleset} from '../core/model.js';
import {BATCH_PATTERN, readBackup, type NftCandidate, type Snapshot} from './apply-protocol.js';
import {FleetApplyError, mapLimit, type FleetHostPlan} from './fleet-apply.js';
import type {LocalState} from './local-state.js';
import type {Connector, HostTarget} from './types.js';

export interface RollbackToHost {
  readonly target: HostTarget;
  readonly via?: readonly string[];
}

export interface SnapshotPlansOptions {
  readonly connector: Connector;
  readonly hosts: readonly RollbackToHost[];
  /** The batch whose snapshot is put back. */
  readonly batch: string;
  readonly localState?: LocalState;
  readonly concurrency?: number;
}

/** The candidate texts of a snapshot: our part of each family's saved rules. */
export function snapshotCandidate(host: string, batch: string, snapshot: Snapshot): {v4: Ruleset; v6: Ruleset; nft?: NftCandidate} {
  const read = (text: string, family: 4 | 6): Ruleset => {
    try {
      return ownPart(parseIptablesSave(text, family));
    } catch (error) {
      throw new RefusedError(`${host}: the IPv${family} snapshot of batch ${batch} cannot be read: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  // Our nftables table as it was (absent when the snapshot has none: before the nftables backend, none was ours).
  const nft = snapshot.nft?.trim() ? {nft: {text: snapshot.nft}} : {};
  return {v4: read(snapshot.v4, 4), v6: read(snapshot.v6, 6), ...nft};
}

/**
 * One apply plan per host whose candidate is the snapshot `batch` took there. RefusedError (one
 * line per host) when the batch id is not one, or a host has no snapshot of it here or on the
 * server; nothing is changed anywhere (the server is only read).
 */
export async function snapshotPlans(options: SnapshotPlansOptions): Promise<FleetHostPlan[]> {
  const {batch} = options;
  if (!BATCH_PATTERN.test(batch)) throw new RefusedError(`--to: "${batch}" is not a batch id (see isolate-wizard status)`);
  const results = await mapLimit(options.hosts, options.concurrency ?? 8, async (host): Promise<FleetHostPlan> => {
    const name = host.target.name;
    const snapshot = options.localState?.snapshot(batch, name) ?? (await readBackup(await options.connector.connect(host.target), batch));
    if (!snapshot) throw new RefusedError(`${name}: no snapshot of batch ${batch} (neither on this machine nor on the server): unknown batch for this host, or pruned`);
    return {target: host.target, candidate: snapshotCandidate(name, batch, snapshot), ...(host.via ? {via: host.via} : {})};
  });
  const errors = results.flatMap((result) => (result.ok ? [] : [result.error]));
  const problems = errors.map((error) => (error instanceof Error ? error.message : String(error)));
  if (errors.length > 0 && errors.every((error) => error instanceof RefusedError)) throw new RefusedError(problems.join('\n'));
  // A host that could not be asked (unreachable): a failure, not a refusal.
  if (errors.length > 0) throw new FleetApplyError([...problems, 'nothing was changed on any host'], EXIT.failed, false);
  return results.map((result) => (result.ok ? result.value : (undefined as never)));
}
