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
    name: 'plan',
    summary: 'compile the inventory into each host\'s rulesets and show the access they give (changes nothing)',
    usage: '--inventory FILE [--host NAME] [--family 4|6] [--format text|iptables|json] [--accept-new]',
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
    usage: '--inventory FILE [--host NAME ...] [--timeout SECONDS (default 120)] [--yes] [--accept-new] [--install-persistence]',
    load: async () => (await import('./apply.js')).applyCommand,
  },
  {
    name: 'confirm',
    summary: 'keep the rules of a pending apply: cancel each server\'s rollback timer and save the rules for boot',
    usage: '--inventory FILE [--host NAME ...] [--accept-new] [--install-persistence]',
    load: async () => (await import('./confirm.js')).confirmCommand,
  },
  {
    name: 'rollback',
    summary: 'put back the rules each server had before the pending apply, now, and check they are back',
    usage: '--inventory FILE [--host NAME ...] [--accept-new]',
    load: async () => (await import('./rollback.js')).rollbackCommand,
  },
  {
    name: 'status',
    summary: 'per host: managed or not, a pending batch and its seconds left, the last change, backups kept',
    usage: '--inventory FILE [--host NAME ...] [--json] [--accept-new]',
    load: async () => (await import('./status.js')).statusCommand,
  },
];
