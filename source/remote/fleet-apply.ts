// Applying to a whole fleet as one batch: all hosts get the new rules, or none keeps them.
//
// Order matters because hosts behind a bastion are reached THROUGH it: the bastion's own rules
// load last, so no path is cut while other hosts are still being changed, and everything is
// verified afterwards over new connections (which pass through the bastion's new rules).
// One countdown for the batch: every host is armed with the same number of seconds at the end.
import {EXIT, HostError, RefusedError} from '../core/errors.js';
import type {LiveView} from '../core/drift.js';
import {parseIptablesSave} from '../core/iptables-save.js';
import type {Ruleset} from '../core/model.js';
import {withOurs} from '../core/own-chains.js';
import {parseNftJson} from '../core/nft-ruleset.js';
import {
  AgentError,
  armDeadline,
  BatchExpiredError,
  CandidateRejectedError,
  confirmBatch,
  hostStatus,
  installBeginStage,
  installPersistence,
  verifyAndHold,
  type NftCandidate,
  type Confirmed,
  type HeldVerification,
  LockHeldError,
  newBatchId,
  IPT_FILE_ONLY_NOTE,
  NFT_FILE_ONLY_NOTE,
  NO_PERSISTENCE_NOTE,
  prepareRules,
  readConfirmed,
  readLive,
  RestoreFailedError,
  rollbackBatch,
  loadCandidate,
  unlockBatch,
  verifyLoaded,
  type AgentStatus,
  type Persistence,
  type PreparedRules,
  type Snapshot,
  type WatchdogKind,
} from './apply-protocol.js';
import {backendRefusal} from './discovery.js';
import {READ_NFT_RULESET} from './native-tables.js';
import type {LocalState} from './local-state.js';
import type {Connector, HostTarget, RemoteHost} from './types.js';

export type FleetStep =
  | 'lock'
  | 'snapshot'
  | 'validate'
  | 'watchdog'
  | 'load'
  | 'verify'
  | 'confirm'
  | 'persist'
  | 'rollback'
  | 'unlock';

export interface ProgressEvent {
  readonly host: string;
  readonly step: FleetStep;
  readonly status: 'running' | 'done' | 'failed' | 'skipped';
  readonly detail?: string;
}

export type OnProgress = (event: ProgressEvent) => void;

export interface FleetHostPlan {
  readonly target: HostTarget;
  /** The iptables rules, and with the nftables backend our table (the iptables part then holds nothing of ours). */
  readonly candidate: {readonly v4: Ruleset; readonly v6: Ruleset; readonly nft?: NftCandidate};
  /** Inventory names of the hosts this one is reached through (ProxyJump / inventory jump). */
  readonly via?: readonly string[];
}

export interface ApplyFleetOptions {
  readonly connector: Connector;
  readonly hosts: readonly FleetHostPlan[];
  /** The operator's countdown, seconds. */
  readonly timeoutSeconds: number;
  readonly onProgress?: OnProgress;
  readonly localState?: LocalState;
  /**
   * Runs before any host is touched; non-empty = refused (exit 3). The commands pass the lockout
   * check here (the operator's SSH path against the compiled rules).
   */
  readonly preflight?: () => Promise<readonly string[]> | readonly string[];
  /**
   * Runs once every host is locked, with each host's rules as they will act: our chains first over
   * others' rules as its snapshot shows them (an OUTPUT rule of theirs still applies after our
   * chain returns), before any load; non-empty = refused (exit 3), every host unlocked unchanged.
   */
  readonly recheck?: (merged: ReadonlyMap<string, {readonly v4: Ruleset; readonly v6: Ruleset}>) => readonly string[];
  /** Hosts worked on at once (default APPLY_CONCURRENCY). */
  readonly concurrency?: number;
  /** A given batch id (tests); default a new one. */
  readonly batch?: string;
  /**
   * False when the caller confirms at once (`apply --yes`): the operator's countdown is not armed,
   * the lock's first watchdog (timeout + PREPARATION_SECONDS) stays the safety net until the
   * confirm, and a round trip per host is saved.
   */
  readonly armCountdown?: boolean;
  /**
   * Confirm as soon as every host passes its check (apply --yes): each host is confirmed over the
   * new connection that checked it, once all are checked. The outcomes land in `confirmed`.
   */
  readonly confirmAfterVerify?: boolean;
  /** With confirmAfterVerify: install the boot-time loader where none is (--install-persistence). */
  readonly installPersistence?: boolean;
  /**
   * Before anything else, ask every host which iptables backends hold tables, and refuse (exit 3,
   * nothing touched) a host where both do: packets pass both rule sets there.
   */
  readonly refuseMixedBackends?: boolean;
  /**
   * Runs once every host is loaded and verified, before the countdown is armed or the batch
   * confirmed (apply's live probes); non-empty = every host is rolled back (exit 4), these named.
   */
  readonly beforeConfirm?: () => Promise<readonly string[]>;
  /**
   * Runs on each host right after its load, before its countdown or checks (the remedy for
   * another firewall: remedy.ts); resolves with a progress detail; a throw fails the host's
   * load, and every host is rolled back.
   */
  readonly afterLoad?: (host: string, remote: RemoteHost, batch: string) => Promise<string | undefined>;
}

export interface PendingFleetBatch {
  readonly batch: string;
  readonly hosts: readonly string[];
  /** Epoch ms on this machine's clock (each server counts the same seconds on its own clock). */
  readonly deadline: number;
  readonly timeoutSeconds: number;
  readonly checks: readonly {readonly host: string; readonly label: string; readonly ok: boolean}[];
  /** With confirmAfterVerify: how each host's confirmation went. */
  readonly confirmed?: readonly HostOutcome[];
}

/** The batch failed; `rolledBack` says whether hosts that had changed were put back. */
export class FleetApplyError extends Error {
  override readonly name = 'FleetApplyError';
  constructor(
    readonly problems: readonly string[],
    readonly exitCode: number,
    readonly rolledBack: boolean,
  ) {
    super(problems.join('\n'));
  }
}

/** Extra seconds the lock's first watchdog gives the run to validate, load and verify. */
const PREPARATION_SECONDS = 60;

interface HostRun {
  readonly plan: FleetHostPlan;
  remote?: RemoteHost;
  began: boolean;
  loaded: boolean;
  prepared?: PreparedRules;
  snapshot?: Snapshot;
}

function watchdogLabel(kind: WatchdogKind): string {
  return kind === 'unit' ? 'a systemd timer' : 'a detached process';
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Our rules loaded over others' as the snapshot shows them (unreadable: ours alone, as the plan). */
function loadedOver(prepared: PreparedRules, snapshot: Snapshot | undefined): PreparedRules {
  if (!snapshot) return prepared;
  try {
    return {...prepared, v4: withOurs(parseIptablesSave(snapshot.v4, 4), prepared.v4), v6: withOurs(parseIptablesSave(snapshot.v6, 6), prepared.v6)};
  } catch {
    return prepared;
  }
}

/** Runs `work` over `items` with at most `limit` at once; never rejects (errors come back as values). */
export async function mapLimit<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<({ok: true; value: R} | {ok: false; error: unknown})[]> {
  const results: ({ok: true; value: R} | {ok: false; error: unknown})[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      try {
        results[index] = {ok: true, value: await work(items[index] as T)};
      } catch (error) {
        results[index] = {ok: false, error};
      }
    }
  };
  await Promise.all(Array.from({length: Math.min(Math.max(1, limit), items.length)}, worker));
  return results;
}

/** Hosts others are reached through (bastions), by inventory name. */
export function bastionNames(plans: readonly FleetHostPlan[]): Set<string> {
  const names = new Set<string>();
  for (const plan of plans) for (const hop of plan.via ?? []) names.add(hop);
  if (plans.some((plan) => plan.target.jump !== undefined)) for (const plan of plans) if (plan.target.jump) names.add(plan.target.jump);
  return names;
}

/** Load waves: hosts behind bastions first, then bastions, deepest hop last. */
export function loadWaves(plans: readonly FleetHostPlan[]): FleetHostPlan[][] {
  const bastions = bastionNames(plans);
  const depth = (name: string, seen = new Set<string>()): number => {
    // How many fleet hosts are reached through `name`'s descendants: a bastion behind another
    // bastion loads before the outer one.
    if (seen.has(name)) return 0;
    seen.add(name);
    const children = plans.filter((plan) => (plan.via ?? []).includes(name) || plan.target.jump === name);
    return children.length === 0 ? 0 : 1 + Math.max(...children.map((child) => depth(child.target.name, seen)));
  };
  const byDepth = new Map<number, FleetHostPlan[]>();
  for (const plan of plans) {
    const level = bastions.has(plan.target.name) ? depth(plan.target.name) : 0;
    byDepth.set(level, [...(byDepth.get(level) ?? []), plan]);
  }
  return [...byDepth.entries()].sort(([a], [b]) => a - b).map(([, wave]) => wave);
}

async function reach(connector: Connector, target: HostTarget, existing?: RemoteHost): Promise<RemoteHost> {
  if (existing) return existing;
  return connector.connect(target);
}

/** Runs an agent call on a host; when the cached link died, retries once on a fresh one. */
async function withHost<T>(connector: Connector, target: HostTarget, existing: RemoteHost | undefined, call: (remote: RemoteHost) => Promise<T>): Promise<T> {
  try {
    return await call(await reach(connector, target, existing));
  } catch (error) {
    // The host answered (or refused on purpose): retrying cannot change that.
    if (error instanceof AgentError || error instanceof RefusedError) throw error;
    return call(await connector.connect(target, {fresh: true}));
  }
}

/**
 * Locks, snapshots, validates, loads and verifies the batch on every host. Resolves with the
 * pending batch (every host verified and counting down); on any failure every host that changed
 * is rolled back, the others are unlocked, and FleetApplyError says what happened.
 */
/**
 * Hosts an apply works on at once. Each step waits for every host before the next, so on 40
 * servers 8 at once made five rounds of every step; most of a host's step is waiting on its sshd.
 */
export const APPLY_CONCURRENCY = 32;

export async function applyFleet(options: ApplyFleetOptions): Promise<PendingFleetBatch> {
  const {connector, timeoutSeconds} = options;
  const emit: OnProgress = options.onProgress ?? (() => undefined);
  const limit = options.concurrency ?? APPLY_CONCURRENCY;
  const batch = options.batch ?? newBatchId();

  // 0. Refuse a plan that cuts the operator's path, or a host whose two iptables backends both
  // filter, before touching anything.
  const [refusals, backends] = await Promise.all([
    options.preflight ? options.preflight() : [],
    options.refuseMixedBackends ? mapLimit(options.hosts, limit, async (plan) => backendRefusal(await connector.connect(plan.target))) : [],
  ]);
  const backendRefusals = backends.flatMap((result) => (result.ok && result.value !== undefined ? [result.value] : []));
  if (refusals.length + backendRefusals.length > 0) throw new RefusedError([...refusals, ...backendRefusals].join('\n'));
  const unchecked = backends.flatMap((result) => (result.ok ? [] : [describe(result.error)]));
  if (unchecked.length > 0) throw new FleetApplyError([...unchecked, 'nothing was changed on any host'], EXIT.failed, false);

  const runs = options.hosts.map((plan): HostRun => ({plan, began: false, loaded: false}));
  const runOf = new Map(runs.map((run) => [run.plan.target.name, run]));
  const leaseSeconds = timeoutSeconds + PREPARATION_SECONDS;

  // 1-4. Lock, snapshot and validate everywhere; nothing changes yet.
  const prepared = await mapLimit(runs, limit, async (run) => {
    const name = run.plan.target.name;
    emit({host: name, step: 'lock', status: 'running'});
    try {
      run.remote = await connector.connect(run.plan.target);
      // The rules travel with the lock and snapshot request and are tested there (one round
      // trip): ours only, whatever the server holds.
      const planned = prepareRules(name, run.plan.candidate);
      let began;
      try {
        began = await installBeginStage(run.remote, batch, leaseSeconds, planned);
      } catch (error) {
        // Locked by someone else: ours never began. Any other answer may come after the lock.
        if (!(error instanceof LockHeldError)) run.began = true;
        throw error;
      }
      run.began = true;
      emit({host: name, step: 'lock', status: 'done', detail: `batch ${batch}`});
      run.snapshot = began.snapshot;
      const copy = options.localState?.saveSnapshot(batch, name, began.snapshot);
      emit({host: name, step: 'snapshot', status: 'done', detail: copy ? `copy in ${copy}` : undefined});
      const kind = began.watchdog === undefined ? 'the server\'s watchdog' : watchdogLabel(began.watchdog);
      emit({host: name, step: 'watchdog', status: 'done', detail: `rollback armed on the server: ${kind} (${leaseSeconds} s until load and verify finish)`});
      emit({host: name, step: 'validate', status: 'running'});
      run.prepared = planned;
      if (began.rejected !== undefined) throw new CandidateRejectedError(name, `rules rejected by the server, nothing changed: ${began.rejected}`);
      emit({host: name, step: 'validate', status: 'done', detail: 'iptables-restore --noflush --test passed (our chains only)'});
    } catch (error) {
      const step = run.began ? 'validate' : 'lock';
      emit({host: name, step, status: 'failed', detail: describe(error)});
      throw error;
    }
  });
  const prepareFailures = prepared.flatMap((result) => (result.ok ? [] : [result.error]));
  if (prepareFailures.length > 0) {
    await releaseAll(options, runs, batch, emit);
    const lockHeld = prepareFailures.some((error) => error instanceof LockHeldError || error instanceof RefusedError);
    throw new FleetApplyError(
      [...prepareFailures.map(describe), 'nothing was changed on any host'],
      lockHeld ? EXIT.refused : EXIT.failed,
      false,
    );
  }
  // The rules as they will act once loaded: ours first, over others' rules as the snapshot shows them.
  const merged = new Map(runs.map((run) => [run.plan.target.name, loadedOver(run.prepared as PreparedRules, run.snapshot)]));
  const rechecked = options.recheck ? options.recheck(merged) : [];
  if (rechecked.length > 0) {
    await releaseAll(options, runs, batch, emit);
    throw new FleetApplyError([...rechecked, 'nothing was changed on any host'], EXIT.refused, false);
  }

  // 5. Load: hosts behind bastions first, bastions last.
  let firstArm: number | undefined;
  for (const wave of loadWaves(options.hosts)) {
    const loads = await mapLimit(wave, limit, async (plan) => {
      const run = runOf.get(plan.target.name) as HostRun;
      emit({host: plan.target.name, step: 'load', status: 'running'});
      run.loaded = true; // from here a rollback is needed whatever the answer (the link may die mid-load)
      try {
        await loadCandidate(run.remote as RemoteHost, batch);
        const detail = options.afterLoad ? await options.afterLoad(plan.target.name, run.remote as RemoteHost, batch) : undefined;
        emit({host: plan.target.name, step: 'load', status: 'done', ...(detail === undefined ? {} : {detail})});
        if (options.armCountdown === false) {
          // No countdown comes after the checks (apply --yes), and the lock's watchdog counts from
          // the lock: on a slow fleet a host loaded early could expire before its confirm. Each
          // host gets the whole timeout from its own load.
          await armDeadline(run.remote as RemoteHost, batch, timeoutSeconds);
          firstArm ??= Date.now();
          emit({host: plan.target.name, step: 'watchdog', status: 'done', detail: `re-armed: rolls back by itself in ${timeoutSeconds} s unless confirmed`});
        }
      } catch (error) {
        emit({host: plan.target.name, step: 'load', status: 'failed', detail: describe(error)});
        throw error;
      }
    });
    const failures = loads.flatMap((result) => (result.ok ? [] : [result.error]));
    if (failures.length > 0) throw rolledBackError(failures, await releaseAll(options, runs, batch, emit));
  }

  // 7. Verify every host over a NEW connection (the operator's path through the new rules). The
  // hosts behind a bastion share one new bastion link, opened after every load: it proves the
  // same path at one handshake instead of one per host.
  const checks: {host: string; label: string; ok: boolean}[] = [];
  const held = new Map<string, HeldVerification>();
  const verifications = await mapLimit(runs, limit, async (run) => {
    const name = run.plan.target.name;
    emit({host: name, step: 'verify', status: 'running'});
    try {
      let label: string;
      const verifyOptions = {freshGroup: `verify-${batch}`};
      if (options.confirmAfterVerify) {
        const holding = await verifyAndHold(connector, run.plan.target, batch, run.prepared as PreparedRules, verifyOptions);
        held.set(name, holding);
        label = holding.label;
      } else {
        label = await verifyLoaded(connector, run.plan.target, batch, run.prepared as PreparedRules, verifyOptions);
      }
      checks.push({host: name, label, ok: true});
      emit({host: name, step: 'verify', status: 'done', detail: label});
    } catch (error) {
      checks.push({host: name, label: describe(error), ok: false});
      emit({host: name, step: 'verify', status: 'failed', detail: describe(error)});
      throw error;
    }
  });
  const verifyFailures = verifications.flatMap((result) => (result.ok ? [] : [result.error]));
  if (verifyFailures.length > 0) {
    await Promise.all([...held.values()].map((holding) => holding.release()));
    throw rolledBackError(verifyFailures, await releaseAll(options, runs, batch, emit));
  }

  // The caller's last look at the live fleet (apply's probes), before any countdown or confirm.
  const objections = options.beforeConfirm
    ? await options.beforeConfirm().catch((error: unknown) => [`the live check could not run: ${describe(error)}`])
    : [];
  if (objections.length > 0) {
    await Promise.all([...held.values()].map((holding) => holding.release()));
    await releaseAll(options, runs, batch, emit);
    throw new FleetApplyError([...objections, 'every host was rolled back'], EXIT.rolledBack, true);
  }

  // 6. The operator's countdown: the same seconds on every server, from now.
  const armed = await mapLimit(options.armCountdown === false ? [] : runs, limit, async (run) => {
    const {watchdog} = await withHost(connector, run.plan.target, run.remote, (remote) => armDeadline(remote, batch, timeoutSeconds));
    const by = watchdog === undefined ? '' : ` (${watchdogLabel(watchdog)})`;
    emit({host: run.plan.target.name, step: 'watchdog', status: 'done', detail: `rolls back by itself in ${timeoutSeconds} s unless confirmed${by}`});
  });
  const deadline = options.armCountdown === false ? (firstArm ?? Date.now()) + timeoutSeconds * 1000 : Date.now() + timeoutSeconds * 1000;
  const armFailures = armed.flatMap((result) => (result.ok ? [] : [result.error]));
  if (armFailures.length > 0) throw rolledBackError(armFailures, await releaseAll(options, runs, batch, emit));
  for (const run of runs) options.localState?.setHost(run.plan.target.name, {batch, phase: 'pending', deadline, changedAt: Date.now()});

  // apply --yes: every host passed; confirm each over the connection that checked it.
  let confirmed: HostOutcome[] | undefined;
  if (options.confirmAfterVerify) {
    const outcomes = await mapLimit(runs, limit, async (run): Promise<HostOutcome> => {
      const target = run.plan.target;
      const holding = held.get(target.name) as HeldVerification;
      emit({host: target.name, step: 'confirm', status: 'running'});
      try {
        const answer = await holding.confirm();
        return await afterConfirm(options, target, answer.remote, batch, answer.confirmed, emit);
      } catch (error) {
        return confirmFailed(options, target, error, emit);
      } finally {
        await holding.release().catch(() => undefined); // closes the new connection
      }
    });
    confirmed = outcomesOf(outcomes, runs.map((run) => run.plan.target.name));
  }

  return {
    batch,
    hosts: runs.map((run) => run.plan.target.name),
    deadline,
    timeoutSeconds,
    checks,
    ...(confirmed ? {confirmed} : {}),
  };
}

/**
 * After a failure: roll back hosts that (may have) changed, unlock the others. Errors are
 * reported, not thrown; resolves with the hosts whose previous rules could not be restored
 * (RestoreFailedError: the server keeps retrying), for the caller to say so loudly.
 */
async function releaseAll(options: ApplyFleetOptions, runs: readonly HostRun[], batch: string, emit: OnProgress): Promise<string[]> {
  const notRestored: string[] = [];
  await mapLimit(
    runs.filter((run) => run.began),
    options.concurrency ?? 8,
    async (run) => {
      const name = run.plan.target.name;
      const step: FleetStep = run.loaded ? 'rollback' : 'unlock';
      emit({host: name, step, status: 'running'});
      try {
        await withHost(options.connector, run.plan.target, run.remote, (remote) =>
          run.loaded ? rollbackBatch(remote, batch) : unlockBatch(remote, batch),
        );
        options.localState?.setHost(name, {batch, phase: run.loaded ? 'rolledback' : 'released', changedAt: Date.now()});
        emit({host: name, step, status: 'done', detail: run.loaded ? 'previous rules restored and verified' : 'unlocked, nothing changed'});
      } catch (error) {
        if (error instanceof BatchExpiredError && error.serverRolledBack) {
          emit({host: name, step, status: 'done', detail: 'the server had already rolled back (verified)'});
          return;
        }
        if (error instanceof RestoreFailedError) {
          notRestored.push(error.message);
          emit({host: name, step, status: 'failed', detail: error.message});
          return;
        }
        emit({host: name, step, status: 'failed', detail: `${describe(error)}; the server rolls back by itself at its deadline`});
      }
    },
  );
  return notRestored;
}

/** The error of a batch that failed after a load: exit 4 when every host is back, 5 (act now) when one is not. */
function rolledBackError(failures: readonly unknown[], notRestored: readonly string[]): FleetApplyError {
  // A load that failed and could not restore reports it itself (exit 7), besides releaseAll.
  const restoreFailures = [...new Set([...failures.filter((error) => error instanceof RestoreFailedError).map(describe), ...notRestored])];
  if (restoreFailures.length > 0) {
    const others = failures.filter((error) => !(error instanceof RestoreFailedError)).map(describe);
    return new FleetApplyError([...others, ...restoreFailures, 'the other hosts were rolled back'], EXIT.restoreFailed, false);
  }
  return new FleetApplyError([...failures.map(describe), 'every host was rolled back'], EXIT.rolledBack, true);
}

// ---------------------------------------------------------------------------
// Confirm / roll back / status of hosts (the batch is found locally, else on the server).

export interface HostOutcome {
  readonly host: string;
  readonly ok: boolean;
  readonly detail: string;
  /** Set for confirm: where the rules persist. */
  readonly persistence?: Persistence;
  /** The deadline had passed: the server already rolled back (and verified it). */
  readonly expired?: boolean;
  /** The server could not put the previous rules back: act now (it keeps retrying). */
  readonly restoreFailed?: boolean;
  /** Refused on purpose (another operator's batch, this machine has no record of it). */
  readonly refused?: boolean;
  /** Not part of the batch asked for (onlyHostsInBatch): left as it is. */
  readonly skipped?: boolean;
}

export interface FleetActionOptions {
  readonly connector: Connector;
  readonly hosts: readonly HostTarget[];
  readonly onProgress?: OnProgress;
  readonly localState?: LocalState;
  /**
   * The batch to act on (--batch, or the wizard's own); default: this machine's record. A batch
   * pending on the server that this machine has no record of is refused (BatchOwnerError).
   */
  readonly batch?: string;
  /**
   * With `batch`: a host whose server names another batch is skipped (left as it is) rather than
   * asked to act on one it does not hold (`--batch B` without `--host`).
   */
  readonly onlyHostsInBatch?: boolean;
  readonly concurrency?: number;
  /**
   * Open a NEW connection (default). `apply` passes false when it confirms right after its own
   * fresh-connection checks: the links it holds were just proven, and a handshake per host is saved.
   */
  readonly fresh?: boolean;
}

let freshGroups = 0;
/** New connections opened for one confirm/rollback share the new bastion link (see ConnectOptions). */
function freshGroupId(action: string): string {
  freshGroups += 1;
  return `${action}-${freshGroups}`;
}

/** A batch pending on a server was begun elsewhere: acting on it needs its id, given on purpose. */
export class BatchOwnerError extends RefusedError {
  constructor(
    readonly host: string,
    readonly batch: string,
    readonly owner: string | undefined,
  ) {
    super(`${host}: pending batch ${batch} by ${owner ?? 'an unknown owner'}; this machine has no record of it: pass --batch ${batch} to act on it`);
  }
}

/**
 * The batch confirm / rollback act on: the one given; else this machine's pending record; else the
 * server's, unless the server's is pending and this machine never started it (another operator's,
 * or a run on another machine): that one is refused rather than taken.
 */
async function batchFor(options: FleetActionOptions, remote: RemoteHost): Promise<string | undefined> {
  if (options.batch) return options.batch;
  const local = options.localState?.host(remote.name);
  if (local?.phase === 'pending') return local.batch;
  const server = await hostStatus(remote);
  if (server.pending && server.batch && server.batch !== local?.batch) throw new BatchOwnerError(remote.name, server.batch, server.owner);
  return local?.batch ?? server.batch;
}

/** Exit code for a set of outcomes: 0 all ok, 5 when a host could not be restored, 4 when any had expired, 3 when every failure was a refusal, else 1. */
export function outcomeExitCode(outcomes: readonly HostOutcome[]): number {
  if (outcomes.every((outcome) => outcome.ok)) return EXIT.ok;
  if (outcomes.some((outcome) => outcome.restoreFailed)) return EXIT.restoreFailed;
  if (outcomes.some((outcome) => outcome.expired)) return EXIT.rolledBack;
  if (outcomes.every((outcome) => outcome.ok || outcome.refused)) return EXIT.refused;
  return EXIT.failed;
}

/** Keep the rules: over fresh connections, cancel each watchdog and persist. */
/** After a host's confirm: local state, progress, and the boot-time files (installing the loader if asked). */
async function afterConfirm(
  options: {readonly localState?: LocalState; readonly installPersistence?: boolean},
  target: HostTarget,
  remote: RemoteHost,
  batch: string,
  first: Confirmed,
  emit: OnProgress,
): Promise<HostOutcome> {
  let confirmed = first;
  options.localState?.setHost(target.name, {batch, phase: 'confirmed', changedAt: Date.now()});
  emit({host: target.name, step: 'confirm', status: 'done', detail: confirmed.alreadyConfirmed ? 'already confirmed' : 'watchdog cancelled'});
  if (confirmed.persistence === 'none' && options.installPersistence) {
    emit({host: target.name, step: 'persist', status: 'running', detail: 'installing the boot-time loader'});
    try {
      await installPersistence(remote);
      confirmed = await confirmBatch(remote, batch); // already confirmed: writes the boot-time files
    } catch (error) {
      // The batch is confirmed and its rules are live: say so, and that they are not saved for boot.
      const why = `confirmed (the new rules are live), NOT saved for boot: ${describe(error)}`;
      emit({host: target.name, step: 'persist', status: 'failed', detail: why});
      return {host: target.name, ok: false, persistence: 'none', detail: why};
    }
  }
  const unsaved = confirmed.persistence === 'none' || confirmed.persistence === 'nftables-file' || confirmed.persistence === 'iptables-file';
  const detail =
    confirmed.persistence === 'none'
      ? NO_PERSISTENCE_NOTE
      : confirmed.persistence === 'nftables-file'
        ? NFT_FILE_ONLY_NOTE
        : confirmed.persistence === 'iptables-file'
          ? IPT_FILE_ONLY_NOTE
          : `saved for boot (${persistenceFiles(confirmed.persistence)})`;
  emit({host: target.name, step: 'persist', status: unsaved ? 'skipped' : 'done', detail});
  return {host: target.name, ok: true, persistence: confirmed.persistence, detail: `confirmed; ${detail}`};
}

function confirmFailed(options: {readonly localState?: LocalState}, target: HostTarget, error: unknown, emit: OnProgress): HostOutcome {
  const expired = error instanceof BatchExpiredError && error.serverRolledBack;
  if (expired) {
    const local = options.localState?.host(target.name);
    if (local) options.localState?.setHost(target.name, {...local, phase: 'expired', changedAt: Date.now()});
  }
  emit({host: target.name, step: 'confirm', status: 'failed', detail: describe(error)});
  return {host: target.name, ok: false, expired, restoreFailed: error instanceof RestoreFailedError, detail: describe(error)};
}

export async function confirmFleet(options: FleetActionOptions & {readonly installPersistence?: boolean}): Promise<HostOutcome[]> {
  const emit = options.onProgress ?? (() => undefined);
  return onEachBatchHost(options, 'confirm', 'nothing to confirm', emit, async (target, remote, batch) => {
    try {
      return await afterConfirm(options, target, remote, batch, await confirmBatch(remote, batch), emit);
    } catch (error) {
      return confirmFailed(options, target, error, emit);
    }
  });
}

/**
 * The per-host frame of confirm and rollback: a connection (a new one unless `fresh: false`), the
 * host's batch, then `act`; any failure becomes that host's outcome, the others go on.
 */
async function onEachBatchHost(
  options: FleetActionOptions,
  step: 'confirm' | 'rollback',
  nothingTo: string,
  emit: OnProgress,
  act: (target: HostTarget, remote: RemoteHost, batch: string) => Promise<HostOutcome>,
): Promise<HostOutcome[]> {
  const group = freshGroupId(step);
  const fresh = options.fresh !== false;
  const results = await mapLimit(options.hosts, options.concurrency ?? 8, async (target): Promise<HostOutcome> => {
    emit({host: target.name, step, status: 'running'});
    let remote: RemoteHost | undefined;
    try {
      remote = await options.connector.connect(target, fresh ? {fresh, freshGroup: group} : {fresh});
      const batch = await batchFor(options, remote);
      if (!batch) throw new HostError(target.name, `${nothingTo}: no batch was applied here`);
      if (options.onlyHostsInBatch && options.batch) {
        const current = (await hostStatus(remote)).batch;
        if (current !== options.batch) {
          const detail = `not part of batch ${options.batch} (the server's batch is ${current ?? 'none'}): left as it is`;
          emit({host: target.name, step, status: 'skipped', detail});
          return {host: target.name, ok: true, skipped: true, detail};
        }
      }
      return await act(target, remote, batch);
    } catch (error) {
      emit({host: target.name, step, status: 'failed', detail: describe(error)});
      return {
        host: target.name,
        ok: false,
        expired: error instanceof BatchExpiredError && error.serverRolledBack,
        restoreFailed: error instanceof RestoreFailedError,
        refused: error instanceof BatchOwnerError,
        detail: describe(error),
      };
    } finally {
      if (fresh) await remote?.close().catch(() => undefined);
    }
  });
  return outcomesOf(results, options.hosts.map((target) => target.name));
}

/** mapLimit's results as outcomes: a host whose work threw is a failed outcome with the reason. */
function outcomesOf(results: readonly ({ok: true; value: HostOutcome} | {ok: false; error: unknown})[], hosts: readonly string[]): HostOutcome[] {
  return results.map((result, index) => (result.ok ? result.value : {host: hosts[index] ?? '?', ok: false, detail: describe(result.error)}));
}

export function persistenceFiles(kind: Persistence): string {
  if (kind === 'debian') return '/etc/iptables/rules.v4, rules.v6';
  if (kind === 'rhel') return '/etc/sysconfig/iptables, ip6tables';
  if (kind === 'nftables' || kind === 'nftables-file') return '/etc/isolate-wizard/isolate-wizard.nft, loaded by isolate-wizard.service';
  if (kind === 'iptables' || kind === 'iptables-file') return '/etc/isolate-wizard/isolate-wizard.v4, .v6, loaded by isolate-wizard-iptables.service';
  return 'none';
}

/** Put the previous rules back now, on every host, and check they are back. */
export async function rollbackFleet(options: FleetActionOptions): Promise<HostOutcome[]> {
  const emit = options.onProgress ?? (() => undefined);
  return onEachBatchHost(options, 'rollback', 'nothing to roll back', emit, async (target, remote, batch) => {
    try {
      await rollbackBatch(remote, batch);
    } catch (error) {
      // The server itself said so: its deadline passed and its restore was verified.
      if (!(error instanceof BatchExpiredError && error.serverRolledBack)) throw error;
      const detail = 'the deadline had passed: the server had already rolled back (verified)';
      options.localState?.setHost(target.name, {batch, phase: 'expired', changedAt: Date.now()});
      emit({host: target.name, step: 'rollback', status: 'done', detail});
      return {host: target.name, ok: true, expired: true, detail};
    }
    options.localState?.setHost(target.name, {batch, phase: 'rolledback', changedAt: Date.now()});
    emit({host: target.name, step: 'rollback', status: 'done', detail: 'previous rules restored and verified'});
    return {host: target.name, ok: true, detail: 'previous rules restored and verified'};
  });
}

export interface HostStatusOutcome {
  readonly host: string;
  readonly status?: AgentStatus;
  readonly error?: string;
  /** With `readDrift`, on a managed host with no batch pending: its last confirmed rules and its live ones. */
  readonly view?: LiveView;
  /** The batch `view.confirmed` comes from. */
  readonly confirmedBatch?: string;
  /** With `readDrift`: why the view could not be read (the host's state stays reported). */
  readonly viewError?: string;
}

/** Status, and with `readDrift` what drift needs: the rules last confirmed there, the live ones, and the live nftables ruleset (others' tables). */
async function readHostStatus(host: string, remote: RemoteHost, readDrift: boolean): Promise<Omit<HostStatusOutcome, 'host'>> {
  const status = await hostStatus(remote);
  if (!readDrift || !status.managed || status.pending) return {status};
  try {
    const confirmed = await readConfirmed(remote);
    if (!confirmed) {
      // Confirmed once, by an agent that kept no record of which batch (version 3 or older).
      if (status.confirmedAt) return {status, viewError: 'its last confirm was made by an older agent, which kept no record of the rules confirmed: apply again to compare'};
      return {status};
    }
    const live = await readLive(remote);
    const nft = await remote.exec(READ_NFT_RULESET, {root: true, stdin: ''});
    if (nft.code !== 0) throw new Error(`its nftables ruleset could not be read (${nft.stderr.trim().split('\n')[0] || `exit ${nft.code}`})`);
    const rules = (text: {v4: string; v6: string}): {v4: Ruleset; v6: Ruleset} => ({v4: parseIptablesSave(text.v4, 4), v6: parseIptablesSave(text.v6, 6)});
    const nativeText = nft.stdout.trim();
    const confirmedTable = confirmed.others.get('nft');
    const view: LiveView = {
      host,
      confirmed: rules(confirmed),
      live: rules(live),
      ...(nativeText === '' || nativeText === 'no-nft' ? {} : {native: parseNftJson(nft.stdout)}),
      ...(confirmedTable === undefined ? {} : {ourTable: {confirmed: confirmedTable, live: live.nft}}),
    };
    return {status, view, confirmedBatch: confirmed.batch};
  } catch (error) {
    return {status, viewError: describe(error)};
  }
}

export async function statusFleet(
  options: Omit<FleetActionOptions, 'batch'> & {readonly readDrift?: boolean; readonly onHost?: (outcome: HostStatusOutcome) => void},
): Promise<HostStatusOutcome[]> {
  const results = await mapLimit(options.hosts, options.concurrency ?? 8, async (target) => {
    let outcome: HostStatusOutcome;
    try {
      const remote = await options.connector.connect(target);
      outcome = {host: target.name, ...(await readHostStatus(target.name, remote, options.readDrift === true))};
    } catch (error) {
      outcome = {host: target.name, error: describe(error)};
    }
    options.onHost?.(outcome);
    return outcome;
  });
  return results.map((result, index) =>
    result.ok ? result.value : {host: options.hosts[index]?.name ?? '?', error: describe(result.error)},
  );
}
