import {InputError} from '../core/errors.js';
import {BATCH_PATTERN} from '../remote/apply-protocol.js';
import {confirmFleet} from '../remote/fleet-apply.js';
import type {HostTarget} from '../remote/types.js';
import {stringOption, type Command, type OptionValues} from './command.js';
import {printOutcomes, stderrProgress} from './apply.js';
import {FLEET_OPTIONS, fleetContext, type FleetContext} from './fleet-context.js';

/**
 * The hosts to act on: --host when given; else the hosts this machine applied a batch to that is
 * still pending; else every inventory host (each server knows its own batch).
 */
export function pendingTargets(context: FleetContext, explicit: boolean): readonly HostTarget[] {
  if (explicit) return context.selected;
  const pending = context.selected.filter((target) => context.localState.host(target.name)?.phase === 'pending');
  return pending.length > 0 ? pending : context.selected;
}

/** --batch BATCH: act on that batch even when this machine has no record of it (another machine began it). */
export function batchOption(values: OptionValues): string | undefined {
  const batch = stringOption(values, 'batch');
  if (batch !== undefined && !BATCH_PATTERN.test(batch)) throw new InputError([`--batch: "${batch}" is not a batch id (isolate-wizard status shows them)`]);
  return batch;
}

export const confirmCommand: Command = {
  options: {
    ...FLEET_OPTIONS,
    batch: {type: 'string'},
    'install-persistence': {type: 'boolean'},
  },
  async run(values, _positionals, io) {
    const batch = batchOption(values);
    const context = fleetContext(values, io);
    try {
      const hosts = pendingTargets(context, values['host'] !== undefined || batch !== undefined);
      const outcomes = await confirmFleet({
        connector: context.connector,
        hosts,
        onProgress: stderrProgress(io, hosts.length),
        localState: context.localState,
        installPersistence: values['install-persistence'] === true,
        ...(batch === undefined ? {} : {batch, onlyHostsInBatch: values['host'] === undefined}),
      });
      return printOutcomes(io, 'kept', outcomes);
    } finally {
      await context.connector.closeAll().catch(() => undefined);
    }
  },
};
