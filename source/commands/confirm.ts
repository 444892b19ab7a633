import {confirmFleet} from '../remote/fleet-apply.js';
import type {HostTarget} from '../remote/types.js';
import type {Command} from './command.js';
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

export const confirmCommand: Command = {
  options: {
    ...FLEET_OPTIONS,
    'install-persistence': {type: 'boolean'},
  },
  async run(values, _positionals, io) {
    const context = fleetContext(values, io);
    try {
      const hosts = pendingTargets(context, values['host'] !== undefined);
      const outcomes = await confirmFleet({
        connector: context.connector,
        hosts,
        onProgress: stderrProgress(io),
        localState: context.localState,
        installPersistence: values['install-persistence'] === true,
      });
      return printOutcomes(io, 'kept', outcomes);
    } finally {
      await context.connector.closeAll().catch(() => undefined);
    }
  },
};
