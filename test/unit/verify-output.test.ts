// verify's text on a large fleet: a line per destination host (its flows and how they went), the
// flows that differ or were not tried in full, then the summary; a small fleet keeps a line per flow.
import {describe, expect, it} from 'vitest';
import {hostKinds, sampleFlows} from '../../source/core/flow-sample.js';
import {flowsToTry, type FlowResult} from '../../source/core/flows.js';
import {renderResults} from '../../source/commands/verify.js';
import {planOf, sizedInventory} from './support/sized-fleet.js';

function checked(count: number, broken?: string) {
  const inventory = sizedInventory(count);
  const plan = planOf(inventory);
  const planned = flowsToTry(plan.hosts, plan.access);
  const flows = count > 20 ? sampleFlows(planned, hostKinds(inventory.hosts)) : planned;
  const results: FlowResult[] = flows.map((flow) => {
    const dropped = flow.to === broken && flow.expect === 'open';
    return {flow, live: dropped || flow.expect === 'closed' ? 'dropped' : 'open', detail: dropped ? 'no answer within 2 s' : '', triedFrom: 'test'};
  });
  return {plan, check: {results, planned: planned.length}};
}

describe('verify --format text', () => {
  it('40 servers: one line per server and the summary, the differing flows named; not a line per flow', () => {
    const {plan, check} = checked(40, 'db-39');
    const lines = renderResults('text', plan, check, 3.2).trimEnd().split('\n');
    expect(lines.length).toBeLessThan(40 + 20);
    for (const host of plan.hosts) expect(lines.some((line) => line.startsWith(`${host.name} `)), host.name).toBe(true);
    expect(lines.find((line) => line.startsWith('db-39 '))).toMatch(/db-39 +\d+ flows +\d+ DIFFER/);
    expect(lines.find((line) => line.startsWith('db-36 '))).toMatch(/db-36 +\d+ flows +as planned$/);
    const differing = check.results.filter((result) => result.flow.to === 'db-39' && result.flow.expect === 'open');
    expect(differing.length).toBeGreaterThan(0);
    for (const result of differing) expect(lines.some((line) => line.startsWith('✗ ') && line.includes(`→ db-39 `) && line.includes(`:${result.flow.port} `))).toBe(true);
    expect(lines.at(-2)).toMatch(/^40 hosts: 39 as planned, 1 DIFFER$/);
    expect(lines.at(-1)).toMatch(/^\d+ of \d+ flows tried \(a sample, every host covered\): .* \(in 3\.2 s\)$/);
  });

  it('six servers: a line per flow', () => {
    const {plan, check} = checked(6);
    const lines = renderResults('text', plan, check, 1).trimEnd().split('\n');
    expect(lines.filter((line) => /^[✓✗!?] /.test(line))).toHaveLength(check.results.length);
  });
});
