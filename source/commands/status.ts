import {EXIT} from '../core/errors.js';
import {NO_PERSISTENCE_NOTE} from '../remote/apply-protocol.js';
import {persistenceFiles, statusFleet, type HostStatusOutcome} from '../remote/fleet-apply.js';
import type {FleetHost} from '../core/access.js';
import {describeDrift, fleetSync, type HostSync} from '../core/drift.js';
import {buildPlan} from '../core/plan.js';
import type {CliIo, Command} from './command.js';
import {FLEET_OPTIONS, fleetContext, gatherFacts, type FleetContext} from './fleet-context.js';
import {compactStatus, isLargeFleet} from './fleet-output.js';

/** Exit code of status when a host's live rules drifted from what was confirmed there (as verify's "live differs"). */
export const EXIT_DRIFTED = 6;

/** The first words of a managed host's line: in sync, DRIFTED with the drift in words, or why that is not known. */
function syncWords(sync: HostSync | undefined): string[] {
  if (!sync || sync.state === 'pending') return [];
  if (sync.state === 'drifted') return [`DRIFTED — ${describeDrift(sync)}`];
  if (sync.state === 'in sync') return ['in sync (the live rules are the confirmed ones)'];
  if (sync.state === 'unmanaged') return ['unmanaged: no batch was confirmed here'];
  return [`drift not checked: ${sync.reason ?? 'unknown'}`];
}

function describeHost(outcome: HostStatusOutcome, startedHere: boolean, sync: HostSync | undefined): string {
  const status = outcome.status;
  if (!status) return `${outcome.host}: unreachable — ${outcome.error ?? 'unknown error'}`;
  if (!status.managed || !status.batch) return `${outcome.host}: unmanaged (not managed by isolate-wizard)`;
  const parts: string[] = [...syncWords(sync)];
  if (status.restoring) {
    parts.push(`COULD NOT RESTORE: act now — batch ${status.batch}: its previous rules could not be put back; the server retries`);
  } else if (status.stale) {
    parts.push(`STALE batch ${status.batch} (${status.phase}): its deadline passed and no watchdog acted (a reboot?); nothing was restored: run rollback`);
  } else if (status.pending) parts.push(`PENDING batch ${status.batch} (${status.phase}), rolls back in ${status.secondsLeft ?? '?'} s unless confirmed`);
  else parts.push(`batch ${status.batch} ${status.phase}`);
  parts.push(`by ${status.owner ?? 'unknown'}`);
  if (status.pending && !startedHere) parts.push(`not started on this machine: confirm / rollback need --batch ${status.batch}`);
  if (status.lastChange) parts.push(`last change ${status.lastChange.toISOString()}`);
  parts.push(`${status.backups} backup${status.backups === 1 ? '' : 's'} kept`);
  parts.push(status.persistence === 'none' ? 'no boot-time loader installed' : `boot: ${persistenceFiles(status.persistence)}`);
  return `${outcome.host}: ${parts.join('; ')}`;
}

/** `sync`: "in sync" | "drifted" | "pending" | "unmanaged" | null (not known: `syncError` says why); `drift` the changes and their effects. */
function syncJson(sync: HostSync | undefined, confirmedBatch: string | undefined): Record<string, unknown> {
  if (!sync) return {};
  return {
    sync: sync.state ?? null,
    ...(sync.reason === undefined ? {} : {syncError: sync.reason}),
    ...(confirmedBatch === undefined ? {} : {confirmedBatch}),
    ...(sync.state === 'drifted' ? {drift: {changes: sync.changes, effects: sync.effects}} : {}),
  };
}

/**
 * The fleet compiled from the inventory: drift names sources and effects with it, and tries the
 * planned flows against others' tables. Without it (facts not known, a host unreachable) the
 * rule changes are still told, without their effects (`note` says so).
 */
async function compiledFleet(context: FleetContext, io: CliIo): Promise<{hosts: readonly FleetHost[]; note?: string}> {
  try {
    const {facts, resolved} = await gatherFacts(context, (line) => io.stderr.write(line));
    return {hosts: buildPlan(context.inventory, facts, resolved, {withAccess: false}).hosts};
  } catch (error) {
    return {hosts: [], note: `drift effects not evaluated (the plan could not be built: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}): rule changes only, other firewalls not checked`};
  }
}

export const statusCommand: Command = {
  options: {
    ...FLEET_OPTIONS,
    json: {type: 'boolean'},
  },
  async run(values, _positionals, io) {
    const context = fleetContext(values, io);
    try {
      const outcomes = await statusFleet({connector: context.connector, hosts: context.selected, readDrift: true});
      const {hosts: compiled, note} = await compiledFleet(context, io);
      const syncs = new Map(
        fleetSync(
          compiled,
          outcomes.flatMap((outcome) =>
            outcome.status
              ? [{host: outcome.host, managed: outcome.status.managed, pending: outcome.status.pending, ...(outcome.view ? {view: outcome.view} : {}), ...(outcome.viewError === undefined ? {} : {viewError: outcome.viewError})}]
              : [],
          ),
        ).map((sync) => [sync.host, sync]),
      );
      // This machine began the host's batch (it holds the record): confirm / rollback find it alone.
      const startedHere = (outcome: HostStatusOutcome): boolean =>
        outcome.status?.batch !== undefined && context.localState.host(outcome.host)?.batch === outcome.status.batch;
      if (values['json'] === true) {
        const hosts = outcomes.map((outcome) => ({
          host: outcome.host,
          ...(outcome.error === undefined ? {} : {error: outcome.error}),
          ...(outcome.status
            ? {
                ...outcome.status,
                lastChange: outcome.status.lastChange?.toISOString(),
                confirmedAt: outcome.status.confirmedAt?.toISOString(),
                ...(outcome.status.persistence === 'none' && outcome.status.managed ? {note: NO_PERSISTENCE_NOTE} : {}),
                local: context.localState.host(outcome.host) ?? null,
                startedHere: startedHere(outcome),
                ...syncJson(syncs.get(outcome.host), outcome.confirmedBatch),
              }
            : {}),
        }));
        io.stdout.write(`${JSON.stringify({hosts, ...(note === undefined ? {} : {note})}, null, 2)}\n`);
      } else {
        const lines = isLargeFleet(outcomes.length) ? compactStatus(outcomes, syncs) : outcomes.map((outcome) => describeHost(outcome, startedHere(outcome), syncs.get(outcome.host)));
        if (note !== undefined) lines.push(note);
        io.stdout.write(`${lines.join('\n')}\n`);
      }
      if ([...syncs.values()].some((sync) => sync.state === 'drifted')) return EXIT_DRIFTED;
      return outcomes.every((outcome) => outcome.status) && [...syncs.values()].every((sync) => sync.state !== undefined) ? EXIT.ok : EXIT.failed;
    } finally {
      await context.connector.closeAll().catch(() => undefined);
    }
  },
};
