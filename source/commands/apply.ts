import {createInterface} from 'node:readline';
import {EXIT, InputError, RefusedError} from '../core/errors.js';
import {checkLockout, formatLockout, operatorPaths} from '../core/lockout.js';
import {chooseBackends, hostCandidate, parseBackendChoice, restrictRefusal} from '../core/backend.js';
import {publishedToRestrict} from '../core/docker.js';
import type {BackendChoice} from '../core/model.js';
import {
  applyFleet,
  confirmFleet,
  FleetApplyError,
  outcomeExitCode,
  rollbackFleet,
  type FleetHostPlan,
  type HostOutcome,
  type OnProgress,
  type PendingFleetBatch,
} from '../remote/fleet-apply.js';
import {stringOption, type CliIo, type Command, type OptionValues} from './command.js';
import {FLEET_OPTIONS, fleetContext, gatherFacts, type FleetContext} from './fleet-context.js';
import {buildPlan, type Plan} from '../core/plan.js';
import {checkOtherFirewalls, readNativeRulesets} from '../remote/native-tables.js';
import {remedyAfterLoad} from '../remote/remedy.js';
import {parseOtherFirewall} from '../core/remedy.js';
import {summarizeFleetAccess, type AccessEntry} from '../core/access.js';
import type {OtherFirewallRemedy} from '../core/model.js';
import type {ResolvedSsh} from '../core/lockout.js';
import type {ApplyFleetOptions} from '../remote/fleet-apply.js';
import {snapshotPlans} from '../remote/rollback-to.js';
import type {HostTarget} from '../remote/types.js';
import {differsFromPlan, formatResult, summarizeResults, type LiveCheck} from '../core/flows.js';
import {probePlan} from '../remote/probe.js';
import {operatorAddresses} from './verify.js';
import {alignedRows, compactOutcomes, isLargeFleet, summaryLine} from './fleet-output.js';


/**
 * Progress lines on stderr: "wordpress-1  load       done  (detail)". For a large fleet only the
 * failures: the outcome lines and their summary say the rest.
 */
export function stderrProgress(io: CliIo, hosts = 0): OnProgress {
  const large = isLargeFleet(hosts);
  return (event) => {
    if (event.status === 'running' || (large && event.status !== 'failed')) return;
    const detail = event.detail ? `  ${event.detail}` : '';
    io.stderr.write(`${event.host.padEnd(14)} ${event.step.padEnd(9)} ${event.status}${detail}\n`);
  };
}

export function printOutcomes(io: CliIo, verb: string, outcomes: readonly HostOutcome[]): number {
  if (isLargeFleet(outcomes.length)) {
    io.stdout.write(`${compactOutcomes(verb, outcomes).join('\n')}\n`);
    return outcomeExitCode(outcomes);
  }
  for (const outcome of outcomes) {
    // A refusal is one line that names its host already.
    if (outcome.refused) io.stdout.write(`${outcome.detail}\n`);
    else io.stdout.write(`${outcome.host}: ${outcome.skipped ? 'skipped' : outcome.ok ? verb : 'FAILED'} — ${outcome.detail}\n`);
  }
  return outcomeExitCode(outcomes);
}

export interface ApplyRequest {
  readonly context: FleetContext;
  readonly timeoutSeconds: number;
  readonly onProgress: OnProgress;
  /** Lockout warnings (not errors) go here. */
  readonly onWarning?: (line: string) => void;
  /** Confirm as soon as every host passes its check (apply --yes): no countdown is armed. */
  readonly confirmAtOnce?: boolean;
  /** With confirmAtOnce: install the boot-time loader where none is (--install-persistence). */
  readonly installPersistence?: boolean;
  /**
   * Live probes once every host is verified, before the countdown or the confirm: called with
   * the results; what it returns stops the batch (every host rolled back, exit 4). Absent: no probes.
   */
  readonly onProbes?: (check: LiveCheck) => readonly string[];
  /** `--backend`: overrides the inventory's options.backend. */
  readonly backend?: BackendChoice;
  /** `--restrict-published`: or the inventory's options.restrictPublished. */
  readonly restrictPublished?: boolean;
  /** `--other-firewall`: overrides the inventory's options.otherFirewall. */
  readonly otherFirewall?: OtherFirewallRemedy;
}

/**
 * Compiles the inventory, refuses a plan that cuts the operator's SSH path (RefusedError, before
 * any host is touched), then applies to the selected hosts as one batch. Resolves with the
 * pending batch; FleetApplyError when it failed (and was rolled back or released).
 */
export async function applyInventory(request: ApplyRequest): Promise<PendingFleetBatch> {
  const {context} = request;
  const warn = request.onWarning ?? (() => undefined);
  const {facts, resolved} = await gatherFacts(context, warn);
  // The access summary only when it is tried live (it is the slow part of a plan).
  const plan = buildPlan(context.inventory, facts, resolved, {withAccess: request.onProbes !== undefined});
  const selectedNames = new Set(context.selected.map((target) => target.name));
  const findings = plan.lockout.filter((finding) => selectedNames.has(finding.host));
  for (const line of formatLockout(findings.filter((finding) => finding.severity === 'warning'))) warn(`${line}\n`);
  // Read before the plans: `auto` chooses by whether nft is there; the preflight reuses it.
  const native = await readNativeRulesets(context.connector, context.selected);
  const chosen = chooseBackends(
    context.selected.map((target) => target.name),
    request.backend ?? context.inventory.options.backend,
    native.withoutNft,
    new Set(native.rulesets.keys()),
  );
  const restrict = request.restrictPublished === true || context.inventory.options.restrictPublished === true;
  const restrictRefusals: string[] = [];
  const plans: FleetHostPlan[] = context.selected.map((target) => {
    const host = plan.hosts.find((candidate) => candidate.name === target.name);
    if (!host) throw new InputError([`${target.name}: the compiler produced no rules for it`]);
    const backend = chosen.backends.get(target.name) ?? 'iptables';
    const published = publishedToRestrict(host.facts, restrict);
    const refusal = restrictRefusal(target.name, backend, published, host.facts.docker, '--backend nftables');
    if (refusal) restrictRefusals.push(refusal);
    return {target, candidate: hostCandidate(host.compiled, backend, published), via: viaOf(context, resolved, target)};
  });
  // The access summary only once, and only where another firewall needs it (the slow part of a plan).
  let access: readonly AccessEntry[] | undefined = request.onProbes === undefined ? undefined : plan.access;
  const accessOnce = (): readonly AccessEntry[] => (access ??= summarizeFleetAccess(plan.hosts));
  const remedy = request.otherFirewall ?? context.inventory.options.otherFirewall;
  let remedies = new Map<string, string[]>();
  return applyFleet({
    connector: context.connector,
    hosts: plans,
    timeoutSeconds: request.timeoutSeconds,
    onProgress: request.onProgress,
    localState: context.localState,
    preflight: () => {
      for (const line of native.unread) warn(`${line}\n`);
      const others = checkOtherFirewalls(plan.hosts, native, selectedNames, accessOnce, remedy);
      remedies = others.remedies;
      for (const lines of others.described.values()) for (const line of lines) warn(`${line}; --other-firewall ${remedy}\n`);
      return [...formatLockout(findings.filter((finding) => finding.severity === 'error')), ...chosen.refusals, ...restrictRefusals, ...others.refusals];
    },
    afterLoad: (host, remote, batch) => remedyAfterLoad(remedies, plan.hosts, accessOnce)(host, remote, batch),
    recheck: sshPathRecheck(context, plan, resolved),
    ...batchModes(request),
    ...(request.onProbes === undefined ? {} : {beforeConfirm: probesBeforeConfirm(request.onProbes, plan, context, selectedNames, operatorAddresses(resolved))}),
  });
}

/**
 * The lockout check again with the rules as each host will really have them: our chains first,
 * over others' rules as the snapshot shows them (fail2ban, Docker, the operator's OUTPUT).
 */
function sshPathRecheck(context: FleetContext, plan: Plan, resolved: ReadonlyMap<string, ResolvedSsh>): NonNullable<ApplyFleetOptions['recheck']> {
  const selectedNames = new Set(context.selected.map((target) => target.name));
  return (merged) => {
    const hosts = plan.hosts.map((host) => {
      const rules = merged.get(host.name);
      return rules ? {...host, compiled: {...host.compiled, v4: rules.v4, v6: rules.v6}} : host;
    });
    const refusals = checkLockout(hosts, operatorPaths(context.inventory, resolved));
    return formatLockout(refusals.filter((finding) => finding.severity === 'error' && selectedNames.has(finding.host)));
  };
}

/** What apply and rollback --to share: the countdown or --yes, and the backend check. */
function batchModes(request: ApplyRequest): Pick<ApplyFleetOptions, 'armCountdown' | 'confirmAfterVerify' | 'installPersistence' | 'refuseMixedBackends'> {
  return {
    armCountdown: request.confirmAtOnce !== true,
    // --yes: each host is confirmed over the new connection that proved it, once all are proven.
    confirmAfterVerify: request.confirmAtOnce === true,
    ...(request.installPersistence === undefined ? {} : {installPersistence: request.installPersistence}),
    refuseMixedBackends: true,
  };
}

/** The inventory hosts a selected host is reached through (its ProxyJump / inventory jump). */
function viaOf(context: FleetContext, resolved: ReadonlyMap<string, ResolvedSsh>, target: HostTarget): string[] {
  const jump = resolved.get(target.name)?.proxyJump ?? target.jump;
  return jump !== undefined && context.inventory.hosts.some((candidate) => candidate.name === jump) ? [jump] : [];
}

/**
 * rollback --to: the selected hosts get back the rules they had before `toBatch`, as a new batch
 * through the whole apply protocol (countdown, or confirmed at once with --yes).
 */
export async function rollbackToInventory(request: ApplyRequest & {readonly toBatch: string}): Promise<PendingFleetBatch> {
  const {context} = request;
  // The fleet's facts and the operator's path, as for apply: the rules that come back must not
  // cut the way in either (checked with them merged, once every host is locked).
  const {facts, resolved} = await gatherFacts(context, request.onWarning ?? (() => undefined));
  const plan = buildPlan(context.inventory, facts, resolved, {withAccess: false});
  const hosts = await snapshotPlans({
    connector: context.connector,
    hosts: context.selected.map((target) => ({target, via: viaOf(context, resolved, target)})),
    batch: request.toBatch,
    localState: context.localState,
  });
  return applyFleet({
    connector: context.connector,
    hosts,
    timeoutSeconds: request.timeoutSeconds,
    onProgress: request.onProgress,
    localState: context.localState,
    recheck: sshPathRecheck(context, plan, resolved),
    ...batchModes(request),
  });
}

/** The live probes of the selected hosts' flows, judged by the caller. */
function probesBeforeConfirm(
  judge: (check: LiveCheck) => readonly string[],
  plan: Plan,
  context: FleetContext,
  selected: ReadonlySet<string>,
  operator: readonly string[],
): () => Promise<readonly string[]> {
  return async () => judge(await probePlan(plan, context.connector, context.allTargets, selected, {destinationsOnly: true, operatorAddresses: operator}));
}

/**
 * apply's judge of the probes: every flow that differs from the plan is printed; with --yes (and
 * without --ignore-probes) they stop the confirm, otherwise the operator decides on the countdown.
 */
export function judgeProbes(io: CliIo, stopOnDifference: boolean): (check: LiveCheck) => readonly string[] {
  return (check) => {
    const {results} = check;
    const differing = results.filter(differsFromPlan);
    for (const result of results.filter((candidate) => candidate.live === 'untested' || differsFromPlan(candidate))) {
      io.stderr.write(`probe ${formatResult(result)}\n`);
    }
    io.stderr.write(`probes: ${summarizeResults(check)}\n`);
    if (!stopOnDifference) return [];
    return differing.map((result) => `live check: ${formatResult(result)}`);
  };
}

// ---------------------------------------------------------------------------
// The command

const MIN_TIMEOUT = 5;
const MAX_TIMEOUT = 3600;

export function parseTimeout(value: string | undefined): number {
  if (value === undefined) return 120;
  if (!/^\d+$/.test(value) || Number(value) < MIN_TIMEOUT || Number(value) > MAX_TIMEOUT) {
    throw new InputError([`--timeout: "${value}" is not a whole number of seconds between ${MIN_TIMEOUT} and ${MAX_TIMEOUT}`]);
  }
  return Number(value);
}

/** "keep? [y/N]" with the seconds left; resolves false on anything but y/yes, or when time runs out. */
async function askKeep(io: CliIo, deadline: number): Promise<boolean> {
  const rl = createInterface({input: process.stdin, output: io.stderr as NodeJS.WritableStream, terminal: true});
  try {
    return await new Promise<boolean>((resolve) => {
      const secondsLeft = (): number => Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
      const prompt = (): void => rl.setPrompt(`keep the new rules? [y/N] (rolls back by itself in ${secondsLeft()} s) `);
      prompt();
      rl.prompt();
      const ticker = setInterval(() => {
        if (secondsLeft() <= 0) {
          clearInterval(ticker);
          io.stderr.write('\n');
          resolve(false);
          return;
        }
        prompt();
        // Redraw the line with the new count, keeping what was typed.
        (rl as unknown as {_refreshLine?: () => void})._refreshLine?.();
      }, 1000);
      rl.once('line', (answer) => {
        clearInterval(ticker);
        resolve(/^(y|yes)$/i.test(answer.trim()));
      });
      rl.once('close', () => {
        clearInterval(ticker);
        resolve(false);
      });
    });
  } finally {
    rl.close();
  }
}

function printPending(io: CliIo, context: FleetContext, batch: PendingFleetBatch, what: string): void {
  const hostArgs = context.selected.length === context.allTargets.length ? '' : context.selected.map((target) => ` --host ${target.name}`).join('');
  const large = isLargeFleet(batch.hosts.length);
  if (large) {
    const rows = batch.hosts.map((host) => [host, 'pending', batch.checks.filter((check) => check.host === host).map((check) => `${check.ok ? '✓' : '✗'} ${check.label}`).join('; ')]);
    io.stdout.write(`${[...alignedRows(rows), summaryLine(batch.hosts.map(() => 'pending'))].join('\n')}\n`);
  }
  io.stdout.write(
    `${what} batch ${batch.batch} to ${large ? `${batch.hosts.length} hosts` : batch.hosts.join(', ')}; every host passed its check over a new SSH connection.\n` +
      `Each server rolls back by itself at ${new Date(batch.deadline).toISOString()} (in ${batch.timeoutSeconds} s) unless you run:\n` +
      `  isolate-wizard confirm --inventory ${context.file}${hostArgs}\n`,
  );
}

export const applyCommand: Command = {
  options: {
    ...FLEET_OPTIONS,
    timeout: {type: 'string'},
    yes: {type: 'boolean', short: 'y'},
    'ignore-probes': {type: 'boolean'},
    'install-persistence': {type: 'boolean'},
    backend: {type: 'string'},
    'restrict-published': {type: 'boolean'},
    'other-firewall': {type: 'string'},
  },
  async run(values, _positionals, io) {
    const timeoutSeconds = parseTimeout(stringOption(values, 'timeout'));
    const backend = parseBackendChoice(stringOption(values, 'backend'));
    const otherFirewall = parseOtherFirewall(stringOption(values, 'other-firewall'));
    const context = fleetContext(values, io);
    return runBatch(io, context, values, 'applied', (request) =>
      applyInventory({...request, timeoutSeconds, ...(backend === undefined ? {} : {backend}), ...(otherFirewall === undefined ? {} : {otherFirewall}), restrictPublished: values['restrict-published'] === true, onWarning: (line) => io.stderr.write(line), onProbes: judgeProbes(io, values['yes'] === true && values['ignore-probes'] !== true)}),
    );
  },
};

/**
 * The part of apply that rollback --to shares: start the batch, then --yes (confirmed at once),
 * a terminal's question, or the batch left pending with the confirm command printed.
 */
export async function runBatch(
  io: CliIo,
  context: FleetContext,
  values: OptionValues,
  what: string,
  start: (request: Omit<ApplyRequest, 'timeoutSeconds'>) => Promise<PendingFleetBatch>,
): Promise<number> {
  const onProgress = stderrProgress(io, context.selected.length);
  try {
    const installPersistence = values['install-persistence'] === true;
    let batch: PendingFleetBatch;
    try {
      batch = await start({context, onProgress, confirmAtOnce: values['yes'] === true, installPersistence});
    } catch (error) {
      if (error instanceof FleetApplyError) {
        for (const problem of error.problems) io.stderr.write(`isolate-wizard: ${problem}\n`);
        return error.exitCode;
      }
      throw error;
    }
    if (batch.confirmed) return printOutcomes(io, 'kept', batch.confirmed);
    let keep: boolean;
    if (!io.isTTY) {
      printPending(io, context, batch, what);
      return EXIT.ok;
    } else keep = await askKeep(io, batch.deadline);

    const targets = context.selected;
    if (keep) {
      const outcomes = await confirmFleet({connector: context.connector, hosts: targets, batch: batch.batch, onProgress, localState: context.localState, installPersistence, fresh: false});
      return printOutcomes(io, 'kept', outcomes);
    }
    // Past the deadline too: each server says whether it rolled back (and verified it) by itself.
    const outcomes = await rollbackFleet({connector: context.connector, hosts: targets, batch: batch.batch, onProgress, localState: context.localState, fresh: false});
    const code = printOutcomes(io, 'rolled back', outcomes);
    return code === EXIT.ok ? EXIT.rolledBack : code;
  } catch (error) {
    if (error instanceof RefusedError) throw new RefusedError(`refused, nothing was changed: ${error.message}`);
    throw error;
  } finally {
    await context.connector.closeAll().catch(() => undefined);
  }
}
