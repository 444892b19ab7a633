// What the wizard's screens need from the world. Screens only see this interface:
// `real-services.ts` implements it with the engine (core + remote), tests with fakes.
// Pure types plus one small clock helper: no React, no I/O.

import type {AccessMatrix} from '../core/matrix.js';
import type {OtherFirewallRemedy, BackendChoice} from '../core/model.js';
import type {ListeningHost, PeerPortSuggestion} from '../core/peer-ports.js';
import type {Prompter} from '../remote/types.js';

export type {ListeningHost, PeerPortSuggestion};

// ---------------------------------------------------------------------------
// The fleet document: the same JSON shape as an inventory file (hosts, roles, options).

export type PortSpec = number | string; // 8443 or "8000-8100"

export interface FleetAllow {
  readonly port: PortSpec;
  readonly proto?: 'tcp' | 'udp';
  /** 'internet' | 'private' | a role | a host | a CIDR or address. */
  readonly from: string;
}

export interface FleetHost {
  readonly name: string;
  /** An alias from ~/.ssh/config or [user@]host[:port]. */
  readonly ssh: string;
  readonly jump?: string;
  readonly roles: readonly string[];
  readonly allow?: readonly FleetAllow[];
  readonly interfaces?: {readonly public?: string; readonly private?: string};
  readonly addresses?: {readonly public: readonly string[]; readonly private: readonly string[]};
}

export interface FleetOptionsDoc {
  readonly strictOutbound?: boolean;
  readonly trustPrivate?: boolean;
  readonly logDrops?: boolean;
  /** Where our rules live (see the inventory's options.backend). */
  readonly backend?: BackendChoice;
  /** Docker hosts: published container ports only from the plan's sources (see the inventory's options). */
  readonly restrictPublished?: boolean;
  /** What apply does about another firewall that drops planned flows (see options.otherFirewall). */
  readonly otherFirewall?: OtherFirewallRemedy;
}

/** Exactly what an inventory file holds; saved with `conf` and imported/exported as a file. */
export interface FleetDoc {
  readonly roles?: Readonly<Record<string, unknown>>;
  readonly hosts: readonly FleetHost[];
  readonly options?: FleetOptionsDoc;
}

/** Wizard-only preferences (not part of the inventory format). */
export interface WizardSettings {
  /** Seconds the operator has to keep new rules before the servers roll back by themselves. */
  readonly deadlineSeconds: number;
}

export const DEFAULT_SETTINGS: WizardSettings = {deadlineSeconds: 120};

// ---------------------------------------------------------------------------
// Host state on the fleet home.

export type HostState =
  | {readonly kind: 'unknown'}
  | {readonly kind: 'unmanaged'}
  /** `batch`: the confirmed batch whose rules are live (undo puts back the rules from before it). */
  | {readonly kind: 'locked'; readonly detail?: string; readonly batch?: string}
  /** Its live rules differ from the confirmed ones (a rule added by hand, another manager's table): never "locked down". */
  | {
      readonly kind: 'drifted';
      readonly drift: string;
      readonly batch?: string;
      /** When the drift only opened ports: the `allow` entries that would make the plan give that access. */
      readonly adopt?: readonly FleetAllow[];
    }
  /** Confirmed, but its live rules could not be compared with the confirmed ones: not claimed locked down. */
  | {readonly kind: 'unchecked'; readonly reason: string}
  | {
      readonly kind: 'pending';
      readonly deadline: number /* epoch ms, operator clock */;
      readonly batch?: string;
      /** Who began the batch ("user@machine pid=N"). */
      readonly owner?: string;
      /** False when this machine has no record of the batch: another operator's, or another machine's. */
      readonly startedHere?: boolean;
    }
  | {readonly kind: 'unreachable'; readonly reason: string};

// ---------------------------------------------------------------------------
// Discovery.

export type InterfaceSide = 'public' | 'private' | 'ignore';

export interface DiscoveredInterface {
  readonly name: string;
  /** Plain addresses (no prefix length), v4 and v6. */
  readonly addresses: readonly string[];
  readonly side: InterfaceSide;
  /** Why the classification is uncertain, when it is. */
  readonly note?: string;
}

export interface ListeningService {
  readonly proto: 'tcp' | 'udp';
  readonly port: number;
  readonly address?: string;
  readonly program?: string;
}

export type DiscoveredHost =
  | {
      readonly host: string;
      readonly ok: true;
      /** How it was reached, e.g. "root@10.132.0.12:22 via tunnel-1". */
      readonly route: string;
      readonly interfaces: readonly DiscoveredInterface[];
      readonly listening: readonly ListeningService[];
      readonly suggestedRoles: readonly string[];
      /** ufw/firewalld active, Docker, fail2ban, mixed backends, no persistence package, ... */
      readonly warnings: readonly string[];
    }
  | {readonly host: string; readonly ok: false; readonly error: string};

/** Each host reports as it goes, so its spinner turns into its result as soon as it is ready. */
export type DiscoverProgress =
  | {readonly host: string; readonly phase: 'connecting' | 'reading'}
  | {readonly host: string; readonly phase: 'finished'; readonly result: DiscoveredHost};

// ---------------------------------------------------------------------------
// Preview.

export interface HostPreview {
  readonly host: string;
  /** iptables-restore text that will be loaded. */
  readonly rulesV4: string;
  readonly rulesV6: string;
  /** Lines prefixed "+ " / "- " against what the server has now; empty = no change. */
  readonly diff: readonly string[];
  readonly warnings: readonly string[];
}

export interface PreviewResult {
  readonly hosts: readonly HostPreview[];
  /** The access in plain words, derived from the compiled rules. */
  readonly access: readonly string[];
  /** Lockout findings for the operator's SSH path; empty = the path survives. */
  readonly lockout: readonly string[];
  /** Things that stop the preview (compile errors); the apply is blocked while non-empty. */
  readonly problems: readonly string[];
  /** Who reaches what, as a picture (sources down, destinations across); absent when nothing compiled. */
  readonly matrix?: AccessMatrix;
  /**
   * What other firewalls (firewalld, ufw, other nftables tables) on the servers drop of the
   * planned flows, read live: one line per server and firewall; empty or absent = nothing.
   */
  readonly otherFirewalls?: readonly string[];
}

// ---------------------------------------------------------------------------
// Apply, countdown, keep / roll back.

export type ApplyStep = 'lock' | 'snapshot' | 'validate' | 'watchdog' | 'load' | 'verify';
export const APPLY_STEPS: readonly ApplyStep[] = ['lock', 'snapshot', 'validate', 'watchdog', 'load', 'verify'];

export interface ApplyProgress {
  readonly host: string;
  readonly step: ApplyStep;
  readonly status: 'running' | 'done' | 'failed' | 'skipped';
  readonly detail?: string;
}

export interface PendingBatch {
  readonly id: string;
  readonly hosts: readonly string[];
  /** Epoch ms on the operator's clock (the servers count on their own clocks). */
  readonly deadline: number;
  /** Checks already done, e.g. "new SSH session to wordpress-1 through tunnel-1". */
  readonly checks: readonly {readonly label: string; readonly ok: boolean}[];
  /** Who began it, when the server said (a batch resumed from the fleet home). */
  readonly owner?: string;
  /** The flows tried live before the countdown: a summary line, and each flow that differs from the plan. */
  readonly liveCheck?: {readonly summary: string; readonly differing: readonly string[]; readonly matrix?: AccessMatrix};
}

export type ApplyOutcome =
  | {readonly kind: 'pending'; readonly batch: PendingBatch}
  | {readonly kind: 'refused'; readonly reasons: readonly string[]}
  | {readonly kind: 'failed'; readonly reasons: readonly string[]; readonly rolledBack: boolean};

export interface KeptHost {
  readonly host: string;
  /** Where the previous rules are kept on the server. */
  readonly backup?: string;
  /** Will the rules survive a reboot? */
  readonly persistent: boolean;
  readonly note?: string;
}

export interface KeepResult {
  readonly kept: readonly KeptHost[];
  /** Hosts that could not be confirmed (e.g. deadline passed: already rolled back). */
  readonly problems: readonly string[];
}

export interface RestoredHost {
  readonly host: string;
  /** True when the server was verified to be on its previous rules. */
  readonly restored: boolean;
  readonly detail: string;
}

// ---------------------------------------------------------------------------
// Troubleshoot.

export interface CountersView {
  /** The filter table in words with packet counters (`iptables-save -c`), ours and others' rules told apart. */
  readonly v4: string;
  readonly v6: string;
}

export interface DropLogView {
  /** Where the lines came from; 'none' when no log could be read. */
  readonly source: 'journalctl' | 'dmesg' | 'syslog' | 'none';
  /** Each dropped packet in words, fleet hosts by name. */
  readonly lines: readonly string[];
  /** A plain statement when logging is off or the log cannot be read there. */
  readonly note?: string;
}

// ---------------------------------------------------------------------------

/** Injectable time: the countdown reads `now()` and redraws when `subscribe` fires. */
export interface Clock {
  now(): number;
  /** Calls `listener` regularly (real: every 250 ms); returns an unsubscribe function. */
  subscribe(listener: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  subscribe(listener) {
    const timer = setInterval(listener, 250);
    return () => clearInterval(timer);
  },
};

export interface WizardServices {
  readonly clock: Clock;
  /** Unknown host keys and secrets are asked through this; the UI renders its questions. */
  readonly prompter: Prompter;

  loadFleet(): Promise<{fleet: FleetDoc; settings: WizardSettings}>;
  saveFleet(fleet: FleetDoc, settings: WizardSettings): Promise<void>;
  /** Reads and validates an inventory file; throws InputError with one line per problem. */
  importFleet(path: string): Promise<FleetDoc>;
  exportFleet(fleet: FleetDoc, path: string): Promise<void>;
  /** Problems of the fleet document (one line each, naming the field); empty = valid. */
  validateFleet(fleet: FleetDoc): Promise<readonly string[]>;
  /** Host aliases from ~/.ssh/config (no wildcards). */
  sshHostSuggestions(): Promise<readonly string[]>;
  /** The role templates the operator can pick (built-ins plus the fleet's own). */
  roleNames(fleet: FleetDoc): readonly string[];
  /** Peer ports for roles whose servers (with the roles chosen for them) listen on the same ports. */
  peerPortSuggestions(fleet: FleetDoc, hosts: readonly ListeningHost[]): readonly PeerPortSuggestion[];

  /** Every host's state, at most a few hosts checked at once; `onHost` hears each as it is known. */
  status(fleet: FleetDoc, onHost?: (host: string, state: HostState) => void): Promise<ReadonlyMap<string, HostState>>;
  discover(fleet: FleetDoc, hosts: readonly string[], onProgress: (event: DiscoverProgress) => void): Promise<readonly DiscoveredHost[]>;
  /** Compile the fleet (facts from the document), diff against the servers' current rules, access, lockout. */
  preview(fleet: FleetDoc, hosts: readonly string[]): Promise<PreviewResult>;
  apply(fleet: FleetDoc, hosts: readonly string[], deadlineSeconds: number, onProgress: (event: ApplyProgress) => void): Promise<ApplyOutcome>;
  /**
   * Undo: put back on `hosts` the rules they had before `batch` (a confirmed batch), through the
   * same protocol as apply; a pending batch with its countdown follows, as after apply.
   */
  undo(fleet: FleetDoc, batch: string, hosts: readonly string[], deadlineSeconds: number, onProgress: (event: ApplyProgress) => void): Promise<ApplyOutcome>;
  /** Keep: confirm over fresh connections, then persist. */
  keep(batch: PendingBatch): Promise<KeepResult>;
  /**
   * For kept servers whose rules would not survive a reboot: install the boot-time loader
   * (iptables-persistent / iptables-services) and save the confirmed rules for it.
   */
  installPersistence(hosts: readonly string[]): Promise<KeepResult>;
  /** Roll back now and verify the previous rules are back. */
  rollback(batch: PendingBatch): Promise<readonly RestoredHost[]>;
  /** After the deadline: reconnect and report whether each server is back on its previous rules. */
  verifyExpired(batch: PendingBatch): Promise<readonly RestoredHost[]>;
  counters(fleet: FleetDoc, host: string): Promise<CountersView>;
  dropLog(fleet: FleetDoc, host: string): Promise<DropLogView>;
  /** Close every connection (on exit). */
  close(): Promise<void>;
}
