import {rollbackFleet} from '../remote/fleet-apply.js';
import type {Command} from './command.js';
import {printOutcomes, stderrProgress} from './apply.js';
import {FLEET_OPTIONS, fleetContext} from './fleet-context.js';
import {pendingTargets} from './confirm.js';

export const rollbackCommand: Command = {
  options: {
    ...FLEET_OPTIONS,
  },
  async run(values, _positionals, io) {
    const context = fleetContext(values, io);
    try {
      const hosts = pendingTargets(context, values['host'] !== undefined);
      const outcomes = await rollbackFleet({connector: context.connector, hosts, onProgress: stderrProgress(io), localState: context.localState});
      return printOutcomes(io, 'rolled back', outcomes);
    } finally {
      await context.connector.closeAll().catch(() => undefined);
    }
  },
};
