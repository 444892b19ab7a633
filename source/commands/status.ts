import {EXIT} from '../core/errors.js';
import {NO_PERSISTENCE_NOTE} from '../remote/apply-protocol.js';
import {persistenceFiles, statusFleet, type HostStatusOutcome} from '../remote/fleet-apply.js';
import type {Command} from './command.js';
import {FLEET_OPTIONS, fleetContext} from './fleet-context.js';
import {compactStatus, isLargeFleet} from './fleet-output.js';

function describeHost(outcome: HostStatusOutcome, startedHere: boolean): string {
  const status = outcome.status;
  if (!status) return `${outcome.host}: unreachable — ${outcome.error ?? 'unknown error'}`;
  if (!status.managed || !status.batch) return `${outcome.host}: not managed by isolate-wizard`;
  const parts: string[] = [];
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

export const statusCommand: Command = {
  options: {
    ...FLEET_OPTIONS,
    json: {type: 'boolean'},
  },
  async run(values, _positionals, io) {
    const context = fleetContext(values, io);
    try {
      const outcomes = await statusFleet({connector: context.connector, hosts: context.selected});
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
              }
            : {}),
        }));
        io.stdout.write(`${JSON.stringify({hosts}, null, 2)}\n`);
      } else {
        const lines = isLargeFleet(outcomes.length) ? compactStatus(outcomes) : outcomes.map((outcome) => describeHost(outcome, startedHere(outcome)));
        io.stdout.write(`${lines.join('\n')}\n`);
      }
      return outcomes.every((outcome) => outcome.status) ? EXIT.ok : EXIT.failed;
    } finally {
      await context.connector.closeAll().catch(() => undefined);
    }
  },
};
