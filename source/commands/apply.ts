import {createInterface} from 'node:readline';
import {EXIT, InputError, RefusedError} from '../core/errors.js';
import {checkLockout, formatLockout, operatorPaths} from '../core/lockout.js';
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
import {stringOption, type CliIo, type Command} from './command.js';
import {FLEET_OPTIONS, fleetContext, gatherFacts, type FleetContext} from './fleet-context.js';
import {buildPlan} from '../core/plan.js';


/** Progress lines on stderr: "wordpress-1  load       done  (detail)". */
export function stderrProgress(io: CliIo): OnProgress {
  return (event) => {
    if (event.status === 'running') return;
    const detail = event.detail ? `  ${event.detail}` : '';
    io.stderr.write(`${event.host.padEnd(14)} ${event.step.padEnd(9)} ${event.status}${detail}\n`);
  };
}

export function printOutcomes(io: CliIo, verb: string, outcomes: readonly HostOutcome[]): number {
  for (const outcome of outcomes) io.stdout.write(`${outcome.host}: ${outcome.ok ? verb : 'FAILED'} — ${outcome.detail}\n`);
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
  const plan = buildPlan(context.inventory, facts, resolved, {withAccess: false});
  const selectedNames = new Set(context.selected.map((target) => target.name));
  const findings = plan.lockout.filter((finding) => selectedNames.has(finding.host));
  for (const line of formatLockout(findings.filter((finding) => finding.severity === 'warning'))) warn(`${line}\n`);
  const plans: FleetHostPlan[] = context.selected.map((target) => {
    const host = plan.hosts.find((candidate) => candidate.name === target.name);
    if (!host) throw new InputError([`${target.name}: the compiler produced no rules for it`]);
    const jump = resolved.get(target.name)?.proxyJump ?? target.jump;
    const via = jump !== undefined && context.inventory.hosts.some((candidate) => candidate.name === jump) ? [jump] : [];
    return {target, candidate: {v4: host.compiled.v4, v6: host.compiled.v6}, via};
  });
  return applyFleet({
    connector: context.connector,
    hosts: plans,
    timeoutSeconds: request.timeoutSeconds,
    onProgress: request.onProgress,
    localState: context.localState,
    preflight: () => formatLockout(findings.filter((finding) => finding.severity === 'error')),
    // Again with what each server keeps of its own (fail2ban bans, Docker): only then is the path known.
    recheck: (merged) => {
      const hosts = plan.hosts.map((host) => {
        const rules = merged.get(host.name);
        return rules ? {...host, compiled: {...host.compiled, v4: rules.v4, v6: rules.v6}} : host;
      });
      const refusals = checkLockout(hosts, operatorPaths(context.inventory, resolved));
      return formatLockout(refusals.filter((finding) => finding.severity === 'error' && selectedNames.has(finding.host)));
    },
    armCountdown: request.confirmAtOnce !== true,
    // --yes: each host is confirmed over the new connection that proved it, once all are proven.
    confirmAfterVerify: request.confirmAtOnce === true,
    ...(request.installPersistence === undefined ? {} : {installPersistence: request.installPersistence}),
  });
}

// ---------------------------------------------------------------------------
// The command

const MIN_TIMEOUT = 5;
const MAX_TIMEOUT = 3600;

function parseTimeout(value: string | undefined): number {
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

function printPending(io: CliIo, context: FleetContext, batch: PendingFleetBatch): void {
  const hostArgs = context.selected.length === context.allTargets.length ? '' : context.selected.map((target) => ` --host ${target.name}`).join('');
  io.stdout.write(
    `applied batch ${batch.batch} to ${batch.hosts.join(', ')}; every host passed its check over a new SSH connection.\n` +
      `Each server rolls back by itself at ${new Date(batch.deadline).toISOString()} (in ${batch.timeoutSeconds} s) unless you run:\n` +
      `  isolate-wizard confirm --inventory ${context.file}${hostArgs}\n`,
  );
}

export const applyCommand: Command = {
  options: {
    ...FLEET_OPTIONS,
    timeout: {type: 'string'},
    yes: {type: 'boolean', short: 'y'},
    'install-persistence': {type: 'boolean'},
  },
  async run(values, _positionals, io) {
    const timeoutSeconds = parseTimeout(stringOption(values, 'timeout'));
    const context = fleetContext(values, io);
    const onProgress = stderrProgress(io);
    try {
      const installPersistence = values['install-persistence'] === true;
      let batch: PendingFleetBatch;
      try {
        batch = await applyInventory({
          context,
          timeoutSeconds,
          onProgress,
          onWarning: (line) => io.stderr.write(line),
          confirmAtOnce: values['yes'] === true,
          installPersistence,
        });
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
        printPending(io, context, batch);
        return EXIT.ok;
      } else keep = await askKeep(io, batch.deadline);

      const targets = context.selected;
      if (keep) {
        const outcomes = await confirmFleet({connector: context.connector, hosts: targets, batch: batch.batch, onProgress, localState: context.localState, installPersistence, fresh: false});
        return printOutcomes(io, 'kept', outcomes);
      }
      if (Date.now() >= batch.deadline) {
        io.stdout.write(`not confirmed in time: every server rolled back by itself to its previous rules (batch ${batch.batch}).\n`);
        return EXIT.rolledBack;
      }
      const outcomes = await rollbackFleet({connector: context.connector, hosts: targets, batch: batch.batch, onProgress, localState: context.localState, fresh: false});
      const code = printOutcomes(io, 'rolled back', outcomes);
      return code === EXIT.ok ? EXIT.rolledBack : code;
    } catch (error) {
      if (error instanceof RefusedError) throw new RefusedError(`refused, nothing was changed: ${error.message}`);
      throw error;
    } finally {
      await context.connector.closeAll().catch(() => undefined);
    }
  },
};
