// The remedy for another firewall on one host, within the batch: the agent takes the steps
// (remedy.ts in core says which) right after the load, recording them first so that its
// rollback, and the watchdog's, undo them. Then the host's other firewalls are read again: the
// planned flows must pass them now, or the host fails and the batch is rolled back.
import type {AccessEntry, FleetHost} from '../core/access.js';
import {HostError} from '../core/errors.js';
import {formatNativeDrops} from '../core/native-drops.js';
import {stripControl} from '../core/terminal-text.js';
import {BATCH_PATTERN} from './apply-protocol.js';
import {otherFirewallDrops, readOtherFirewalls} from './native-tables.js';
import type {RemoteHost} from './types.js';

/** The one command sent; the batch id is checked by BATCH_PATTERN, the steps travel on stdin. */
const REMEDY_COMMAND = 'sh /var/lib/isolate-wizard/agent.sh remedy %BATCH%';

export class RemedyError extends HostError {}

/** The agent takes `steps` on `remote` for `batch` (loaded); RemedyError when any fails. */
export async function takeRemedy(remote: RemoteHost, batch: string, steps: readonly string[]): Promise<void> {
  if (!BATCH_PATTERN.test(batch)) throw new Error(`invalid batch id: ${JSON.stringify(batch)}`);
  const result = await remote.exec(REMEDY_COMMAND.replace('%BATCH%', batch), {root: true, stdin: `${steps.join('\n')}\n`});
  if (result.code !== 0) {
    const why = stripControl((result.stderr.trim() || result.stdout.trim() || `exit ${result.code}`).split('\n')[0] ?? '').replace(/^agent: /, '');
    throw new RemedyError(remote.name, `the remedy for the other firewall failed: ${why}`);
  }
}

/**
 * An `afterLoad` for applyFleet: where `remedies` has steps for the host, take them, read the
 * host's other firewalls again and throw (the batch then rolls back) while they still drop a
 * planned flow. The detail says what was done.
 */
export function remedyAfterLoad(
  remedies: ReadonlyMap<string, readonly string[]>,
  hosts: readonly FleetHost[],
  access: () => readonly AccessEntry[],
): (host: string, remote: RemoteHost, batch: string) => Promise<string | undefined> {
  return async (host, remote, batch) => {
    const steps = remedies.get(host);
    if (!steps || steps.length === 0) return undefined;
    await takeRemedy(remote, batch, steps);
    const read = await readOtherFirewalls(remote);
    const left = otherFirewallDrops(hosts, {rulesets: new Map([[host, read.ruleset]]), iptables: read.iptables ? new Map([[host, read.iptables]]) : new Map()}, new Set([host]), access());
    if (left.length > 0) {
      throw new RemedyError(host, `after the remedy the other firewall still drops planned flows, so the batch is rolled back: ${formatNativeDrops(left).join('; ')}`);
    }
    const managers = [...new Set(steps.map((step) => step.split(' ')[1]))].join(', ');
    const opened = steps.filter((step) => step.startsWith('open ')).length;
    return steps.some((step) => step.startsWith('stop ')) ? `${managers} stopped for this batch; the planned flows pass` : `${opened} flow(s) opened in ${managers}; the planned flows pass`;
  };
}
