// The sample of flows a live check tries on a large fleet: every host still tried as a destination
// of each open port (from each kind of source), as a source, and on its closed ports, so one broken
// server is found; whole cells (the matrix marks only what was tried in full); and a size that
// grows with the fleet, not with its pairs.
import {describe, expect, it} from 'vitest';
import {INTERNET} from '../../source/core/access.js';
import {hostKinds, sampleFlows} from '../../source/core/flow-sample.js';
import {flowsToTry, OPERATOR, type Flow} from '../../source/core/flows.js';
import {planOf, sizedInventory} from './support/sized-fleet.js';

function fleetOf(count: number) {
  const inventory = sizedInventory(count);
  const plan = planOf(inventory);
  const flows = flowsToTry(plan.hosts, plan.access);
  const kindOf = hostKinds(inventory.hosts);
  return {plan, flows, kindOf, sample: sampleFlows(flows, kindOf)};
}

const cell = (flow: Flow): string => `${flow.planSource} → ${flow.to}`;

/** What the full set tries that the sample does not cover at all (empty: nothing lost). */
function uncovered(flows: readonly Flow[], sample: readonly Flow[], kindOf: (name: string) => string): string[] {
  const tried = new Set(sample.map((flow) => `${flow.to} ${flow.address} ${flow.port} ${flow.expect} ${kindOf(flow.planSource)}`));
  const closedTried = new Set(sample.filter((flow) => flow.expect === 'closed').map((flow) => `${flow.to} ${flow.family} ${flow.planSource === INTERNET}`));
  const sources = new Set(sample.map((flow) => flow.from));
  const missing = new Set<string>();
  for (const flow of flows) {
    if (flow.expect === 'open' && !tried.has(`${flow.to} ${flow.address} ${flow.port} open ${kindOf(flow.planSource)}`)) {
      missing.add(`${flow.to} ${flow.address}:${flow.port} from a ${kindOf(flow.planSource)}`);
    }
    if (flow.expect === 'closed' && !closedTried.has(`${flow.to} ${flow.family} ${flow.planSource === INTERNET}`)) {
      missing.add(`${flow.to} closed IPv${flow.family} from ${flow.planSource === INTERNET ? 'the internet' : 'the fleet'}`);
    }
    if (!sources.has(flow.from)) missing.add(`${flow.from} as a source`);
  }
  return [...missing];
}

describe('sampleFlows', () => {
  const forty = fleetOf(40);

  it('tries far fewer flows than the full set on 40 servers, and only flows of the full set, in its order', () => {
    expect(forty.flows.length).toBeGreaterThan(3000);
    expect(forty.sample.length).toBeLessThan(forty.flows.length / 4);
    const order = new Map(forty.flows.map((flow, index) => [flow, index]));
    const positions = forty.sample.map((flow) => order.get(flow));
    expect(positions.every((position) => position !== undefined)).toBe(true);
    expect(positions).toEqual([...positions].sort((a, b) => (a as number) - (b as number)));
  });

  it('covers every host: each open port at each address from each kind of source, each host as a source, its closed ports in both families from the fleet and the internet', () => {
    expect(uncovered(forty.flows, forty.sample, forty.kindOf)).toEqual([]);
    const names = forty.plan.hosts.map((host) => host.name);
    expect(new Set(forty.sample.map((flow) => flow.to))).toEqual(new Set(names));
    expect(new Set(forty.sample.map((flow) => flow.from))).toEqual(new Set([...names, OPERATOR]));
  });

  it('the coverage check fails when a host is left out (the check itself can fail)', () => {
    for (const skipped of ['app-4', 'db-39', 'lb-2', 'bastion-0']) {
      const without = forty.sample.filter((flow) => flow.to !== skipped && flow.from !== skipped);
      expect(uncovered(forty.flows, without, forty.kindOf).some((line) => line.startsWith(`${skipped} `)), skipped).toBe(true);
    }
  });

  it('finds a broken member of a class: any one server whose port drops, whose rules let all in, or that cannot send', () => {
    const differs = (broken: (flow: Flow) => boolean): boolean => forty.sample.some(broken);
    for (const host of forty.plan.hosts) {
      const name = host.name;
      const openPorts = new Set(forty.flows.filter((flow) => flow.to === name && flow.expect === 'open').map((flow) => flow.port));
      expect(openPorts.size, name).toBeGreaterThan(0);
      // Its port dropped (a listener's port closed by a foreign firewall): an open flow to it on that port is tried.
      for (const port of openPorts) expect(differs((flow) => flow.to === name && flow.port === port && flow.expect === 'open'), `${name}:${port} dropped`).toBe(true);
      // No rules at all: a flow the plan closes answers, in each family.
      for (const family of [4, 6] as const) expect(differs((flow) => flow.to === name && flow.family === family && flow.expect === 'closed'), `${name} open to all, IPv${family}`).toBe(true);
      // Its outbound cut: a flow from it is tried.
      expect(differs((flow) => flow.from === name && flow.expect === 'open'), `${name} cannot send`).toBe(true);
    }
  });

  it('chooses whole cells: every open flow of a (source, destination) pair it tries at all', () => {
    const sampledCells = new Set(forty.sample.map(cell));
    const chosen = new Set(forty.sample);
    const partial = forty.flows.filter((flow) => flow.expect === 'open' && sampledCells.has(cell(flow)) && !chosen.has(flow)).map(cell);
    expect(partial).toEqual([]);
  });

  it('spreads the tries over the sources of a kind: none opens much more than its share', () => {
    const perSource = new Map<string, number>();
    for (const flow of forty.sample) if (flow.from !== OPERATOR) perSource.set(flow.from, (perSource.get(flow.from) ?? 0) + 1);
    const byKind = new Map<string, number[]>();
    for (const [source, count] of perSource) byKind.set(forty.kindOf(source), [...(byKind.get(forty.kindOf(source)) ?? []), count]);
    for (const [kind, counts] of byKind) {
      const share = counts.reduce((sum, count) => sum + count, 0) / counts.length;
      expect(Math.max(...counts), kind).toBeLessThanOrEqual(2 * share + 4);
    }
  });

  it('grows with the fleet, not with its pairs', () => {
    const sizes = [20, 40, 80, 120].map((count) => ({count, ...fleetOf(count)}));
    for (const size of sizes) expect(uncovered(size.flows, size.sample, size.kindOf), `${size.count} hosts`).toEqual([]);
    const [small, , , large] = sizes as [(typeof sizes)[number], unknown, unknown, (typeof sizes)[number]];
    // Six times the hosts: the full set ~36 times the flows, the sample about six times.
    expect(large.flows.length / small.flows.length).toBeGreaterThan(20);
    expect(large.sample.length / small.sample.length).toBeLessThan(7.5);
    for (const size of sizes) expect(size.sample.length / size.count, `${size.count} hosts`).toBeLessThan(25);
  });
});
