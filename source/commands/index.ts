// The commands by name, with what --help says of them; each command's code is loaded only when it runs
// (start-up: `--version` and `--help` load none of it).
import type {Command} from './command.js';

export interface CommandEntry {
  readonly name: string;
  readonly summary: string;
  /** Usage lines after `isolate-wizard NAME`. */
  readonly usage: string;
  load(): Promise<Command>;
}

export const COMMANDS: readonly CommandEntry[] = [
  {
    name: 'demo',
    summary:
      'rehearse on this machine (Linux, root): the tutorial\'s fleet in network namespaces, the wizard against it, ' +
      'all removed when it exits; --up leaves the lab up for the commands, --down removes it',
    usage: '[--up | --down | --keep]',
    load: async () => (await import('./demo.js')).demoCommand,
  },
  {
    name: 'plan',
    summary: 'compile the inventory into each host\'s rulesets and show the access they give (changes nothing)',
    usage: '--inventory FILE [--host NAME] [--family 4|6] [--format text|iptables|nft|json|matrix] [--backend auto|nftables|iptables] [--restrict-published] [--accept-new]',
    load: async () => (await import('./plan.js')).planCommand,
  },
  {
    name: 'discover',
    summary: "connect to every host and report its interfaces, listening services, firewall and suggested roles",
    usage: '--inventory FILE [--host NAME ...] [--json] [--accept-new]',
    load: async () => (await import('./discover.js')).discoverCommand,
  },
  {
    name: 'apply',
    summary: 'load the rules on the servers with a server-side rollback countdown; keep them with --yes, a "y", or confirm',
    usage: '--inventory FILE [--host NAME ...] [--timeout SECONDS (default 120)] [--yes] [--ignore-probes] [--accept-new] [--install-persistence] [--backend auto|nftables|iptables] [--restrict-published] [--other-firewall open|stop]',
    load: async () => (await import('./apply.js')).applyCommand,
  },
  {
    name: 'confirm',
    summary: 'keep the rules of a pending apply: cancel each server\'s rollback timer and save the rules for boot',
    usage: '--inventory FILE [--host NAME ...] [--batch BATCH] [--accept-new] [--install-persistence]',
    load: async () => (await import('./confirm.js')).confirmCommand,
  },
  {
    name: 'rollback',
    summary:
      'put back the rules each server had before the pending apply, now, and check they are back; ' +
      'with --to BATCH, go back to the rules from before an earlier batch, with a countdown as for apply',
    usage:
      '--inventory FILE [--host NAME ...] [--batch BATCH] [--accept-new]\n' +
      '       isolate-wizard rollback --to BATCH --inventory FILE [--host NAME ...] [--timeout SECONDS] [--yes] [--accept-new]',
    load: async () => (await import('./rollback.js')).rollbackCommand,
  },
  {
    name: 'status',
    summary: 'per host: managed or not, its batch and who began it, a pending batch\'s seconds left, the last change, backups kept',
    usage: '--inventory FILE [--host NAME ...] [--json] [--accept-new]',
    load: async () => (await import('./status.js')).statusCommand,
  },
  {
    name: 'verify',
    summary: 'try the flows the plan opens and some it closes, for real from their real sources (past 200 flows a sample covering every host; changes nothing)',
    usage: '--inventory FILE [--host NAME ...] [--format text|matrix|json] [--all-flows] [--accept-new]',
    load: async () => (await import('./verify.js')).verifyCommand,
  },
  {
    name: 'export',
    summary: 'write the fleet as an Ansible project (rules per host, inventory, a playbook with the same safety as apply)',
    usage: '--format ansible --out DIR --inventory FILE [--backend iptables|nftables|auto] [--timeout SECONDS (rollback deadline, default 300)] [--accept-new]',
    load: async () => (await import('./export.js')).exportCommand,
  },
];
