import {rollbackFleet} from '../remote/fleet-apply.js';
import type {Command} from './command.js';
import {fleetContext, printOutcomes, stderrProgress} from './apply.js';
import {pendingTargets} from './confirm.js';

export const rollbackCommand: Command = {
  name: 'rollback',
  summary: 'put back the rules each server had before the pending apply, now, and check they are back',
  usage: '--inventory FILE [--host NAME ...] [--accept-new]',
  options: {
    inventory: {type: 'string', short: 'i'},
    host: {type: 'string', multiple: true},
    'accept-new': {type: 'boolean'},
  },
  async run(values, _positionals, io) {
    const context = fleetContext(values, io, {acceptNew: values['accept-new'] === true});
    try {
      const hosts = pendingTargets(context, values['host'] !== undefined);
      const outcomes = await rollbackFleet({connector: context.connector, hosts, onProgress: stderrProgress(io), localState: context.localState});
      return printOutcomes(io, 'rolled back', outcomes);
    } finally {
      await context.connector.closeAll().catch(() => undefined);
    }
  },
};
