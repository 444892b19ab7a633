// `verify`: the network tried for real, flow by flow, against the plan (nothing is changed).
import {performance} from 'node:perf_hooks';
import {InputError} from '../core/errors.js';
import {asPlanned, differsFromPlan, formatResult, summarizeResults, type FlowResult, type LiveCheck} from '../core/flows.js';
import {buildMatrix, matrixJson, renderMatrix} from '../core/matrix.js';
import type {ResolvedSsh} from '../core/lockout.js';
import {buildPlan, type Plan} from '../core/plan.js';
import {probePlan} from '../remote/probe.js';
import {stringOption, type Command} from './command.js';
import {FLEET_OPTIONS, fleetContext, gatherFacts} from './fleet-context.js';
import {alignedRows, isLargeFleet, summaryLine} from './fleet-output.js';

const FORMATS = ['text', 'matrix', 'json'] as const;
type Format = (typeof FORMATS)[number];

/** Exit code of verify when a flow differs from the plan. */
export const EXIT_DIFFERS = 6;

export function parseVerifyFormat(value: string | undefined): Format {
  if (value === undefined) return 'text';
  if ((FORMATS as readonly string[]).includes(value)) return value as Format;
  throw new InputError([`--format: "${value}" is not one of ${FORMATS.join(', ')}`]);
}

/** The results as the chosen format prints them. */
export function renderResults(format: Format, plan: Plan, check: LiveCheck, seconds: number): string {
  const {results} = check;
  const names = plan.hosts.map((host) => host.name);
  const summary = `${summarizeResults(check)} (in ${seconds.toFixed(1)} s)`;
  if (format === 'json') {
    return `${JSON.stringify({flows: results, planned: check.planned, matrix: matrixJson(buildMatrix(names, plan.access, results)), summary}, null, 2)}\n`;
  }
  const large = format === 'text' && isLargeFleet(names.length);
  const lines = format === 'matrix' ? renderMatrix(buildMatrix(names, plan.access, results), {columns: 80}) : large ? perHost(names, results) : results.map(formatResult);
  const differing = results.filter(differsFromPlan);
  if (format === 'matrix' && differing.length > 0) lines.push('', 'differ from the plan:', ...differing.map(formatResult));
  if (large) {
    const notAsPlanned = results.filter((result) => !asPlanned(result));
    if (notAsPlanned.length > 0) lines.push('', ...notAsPlanned.map(formatResult));
    lines.push('', hostsLine(names, results), summary);
  } else lines.push('', summary);
  return `${lines.join('\n')}\n`;
}

/** What a destination's tries came to: as planned, DIFFER (some flow differs), untested, not tried. */
function hostOutcome(results: readonly FlowResult[], name: string): {tried: number; outcome: string; detail: string} {
  const mine = results.filter((result) => result.flow.to === name);
  const differ = mine.filter(differsFromPlan).length;
  const untested = mine.filter((result) => result.live === 'untested').length;
  if (mine.length === 0) return {tried: 0, outcome: 'not tried', detail: 'not tried'};
  if (differ + untested === 0) return {tried: mine.length, outcome: 'as planned', detail: 'as planned'};
  const detail = [differ > 0 ? `${differ} DIFFER` : '', untested > 0 ? `${untested} untested` : ''].filter(Boolean).join(', ');
  return {tried: mine.length, outcome: differ > 0 ? 'DIFFER' : 'untested', detail};
}

/** A large fleet's text: per destination host, its flows and how they went. */
function perHost(names: readonly string[], results: readonly FlowResult[]): string[] {
  return alignedRows(names.map((name) => {
    const {tried, detail} = hostOutcome(results, name);
    return [name, `${tried} flows`, detail];
  }));
}

/** "40 hosts: 39 as planned, 1 DIFFER" */
function hostsLine(names: readonly string[], results: readonly FlowResult[]): string {
  return summaryLine(names.map((name) => hostOutcome(results, name).outcome));
}

/** Where the servers see this machine from ($SSH_CONNECTION of the hosts reached directly). */
export function operatorAddresses(resolved: ReadonlyMap<string, ResolvedSsh>): string[] {
  return [...new Set([...resolved.values()].flatMap((entry) => (entry.source === undefined ? [] : [entry.source])))];
}

export const verifyCommand: Command = {
  options: {...FLEET_OPTIONS, format: {type: 'string'}, 'all-flows': {type: 'boolean'}},
  async run(values, _positionals, io) {
    const format = parseVerifyFormat(stringOption(values, 'format'));
    const context = fleetContext(values, io);
    try {
      const {facts, resolved} = await gatherFacts(context, (line) => io.stderr.write(line));
      const plan = buildPlan(context.inventory, facts, resolved);
      const started = performance.now();
      const check = await probePlan(plan, context.connector, context.allTargets, new Set(context.selected.map((target) => target.name)), {
        operatorAddresses: operatorAddresses(resolved),
        all: values['all-flows'] === true,
      });
      io.stdout.write(renderResults(format, plan, check, (performance.now() - started) / 1000));
      if (check.results.some(differsFromPlan)) return EXIT_DIFFERS;
      return check.results.some((result) => result.live === 'untested') ? 1 : 0;
    } finally {
      await context.connector.closeAll().catch(() => undefined);
    }
  },
};
