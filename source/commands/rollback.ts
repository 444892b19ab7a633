import {InputError} from '../core/errors.js';
import {BATCH_PATTERN} from '../remote/apply-protocol.js';
import {rollbackFleet} from '../remote/fleet-apply.js';
import {stringOption, type Command} from './command.js';
import {parseTimeout, printOutcomes, rollbackToInventory, runBatch, stderrProgress} from './apply.js';
import {batchOption, pendingTargets} from './confirm.js';
import {FLEET_OPTIONS, fleetContext} from './fleet-context.js';

export const rollbackCommand: Command = {
  options: {
    ...FLEET_OPTIONS,
    batch: {type: 'string'},
    to: {type: 'string'},
    timeout: {type: 'string'},
    yes: {type: 'boolean', short: 'y'},
  },
  async run(values, _positionals, io) {
    const toBatch = stringOption(values, 'to');
    if (toBatch === undefined) {
      for (const name of ['timeout', 'yes'] as const) {
        if (values[name] !== undefined) throw new InputError([`--${name}: only with --to BATCH (a rollback of the pending batch has no countdown)`]);
      }
      const batch = batchOption(values);
      const context = fleetContext(values, io);
      try {
        const hosts = pendingTargets(context, values['host'] !== undefined || batch !== undefined);
        const outcomes = await rollbackFleet({
          connector: context.connector,
          hosts,
          onProgress: stderrProgress(io, hosts.length),
          localState: context.localState,
          ...(batch === undefined ? {} : {batch, onlyHostsInBatch: values['host'] === undefined}),
        });
        return printOutcomes(io, 'rolled back', outcomes);
      } finally {
        await context.connector.closeAll().catch(() => undefined);
      }
    }
    if (values['batch'] !== undefined) throw new InputError(['--batch: not with --to (--to names the batch whose earlier rules come back)']);
    if (!BATCH_PATTERN.test(toBatch)) throw new InputError([`--to: "${toBatch}" is not a batch id (isolate-wizard status shows them)`]);
    const timeoutSeconds = parseTimeout(stringOption(values, 'timeout'));
    const context = fleetContext(values, io);
    return runBatch(io, context, values, `put back the rules from before batch ${toBatch} as`, (request) =>
      rollbackToInventory({...request, timeoutSeconds, toBatch, onWarning: (line) => io.stderr.write(line)}),
    );
  },
};
