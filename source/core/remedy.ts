// What to do about another firewall (firewalld, ufw) that would drop what the plan opens: the
// operator's choice (`--other-firewall`, options.otherFirewall, the wizard's preview), and the
// steps the server's agent runs for it within the batch (undone by its rollback and watchdog).
// Pure: the drops come from native-drops.ts.
import {InputError} from './errors.js';
import {REMEDIABLE_MANAGERS, type NativeDrop} from './native-drops.js';
import type {OtherFirewallRemedy} from './model.js';

export const OTHER_FIREWALL_REMEDIES: readonly OtherFirewallRemedy[] = ['open', 'stop'];

/** What each remedy does, in the words the refusal, the preview and the help use. */
export const REMEDY_WORDS: Record<OtherFirewallRemedy, string> = {
  open: 'open exactly those flows in that firewall too (at runtime during the countdown, permanently at confirm; removed on rollback)',
  stop: 'stop that firewall within the batch (disabled at confirm; started again on rollback)',
};

/** `--other-firewall` as given; undefined when absent. */
export function parseOtherFirewall(text: string | undefined): OtherFirewallRemedy | undefined {
  if (text === undefined) return undefined;
  if ((OTHER_FIREWALL_REMEDIES as readonly string[]).includes(text)) return text as OtherFirewallRemedy;
  throw new InputError([`--other-firewall: "${text}" is not one of ${OTHER_FIREWALL_REMEDIES.join(', ')}`]);
}

/**
 * The agent's remedy payload for one host, one step a line (the agent checks every field again):
 *   open MANAGER FAMILY SOURCE PROTOCOL FIRST LAST   (SOURCE an address, or "any" for the internet)
 *   stop MANAGER
 * Each flow once, whatever number of ports of its range were tried.
 */
export function remedySteps(drops: readonly NativeDrop[], remedy: OtherFirewallRemedy): string[] {
  const steps = new Set<string>();
  for (const drop of drops) {
    if (!REMEDIABLE_MANAGERS.includes(drop.manager)) continue;
    if (remedy === 'stop') steps.add(`stop ${drop.manager}`);
    else steps.add(`open ${drop.manager} ${drop.family} ${drop.sourceAddress ?? 'any'} ${drop.protocol} ${drop.range.first} ${drop.range.last}`);
  }
  return [...steps];
}

/** The managers of these drops that no remedy can change (unknown tables, fail2ban, ...). */
export function unremediable(drops: readonly NativeDrop[]): NativeDrop[] {
  return drops.filter((drop) => !REMEDIABLE_MANAGERS.includes(drop.manager));
}
