import {describe, expect, it} from 'vitest';
import {accessMatrix, INTERNET, summarizeFleetAccess, type FleetHost} from '../../source/core/access.js';
import {flowsToTry, type FlowResult} from '../../source/core/flows.js';
import {abbreviate, buildMatrix, cellPorts, renderMatrix} from '../../source/core/matrix.js';
import {hostKinds, sampleFlows} from '../../source/core/flow-sample.js';
import {goldenFleet} from './support/fixtures.js';
import {planOf, sizedInventory} from './support/sized-fleet.js';

const columnsOf = (line: string): number => [...line].length;

function matrixOf(fleet: FleetHost[], results: FlowResult[] = []) {
  return buildMatrix(fleet.map((host) => host.name), summarizeFleetAccess(fleet), results);
}

describe('the access matrix of the seed fleet', () => {
  const fleet = goldenFleet('seed-with-addresses');
  const matrix = matrixOf(fleet);

  it('holds in each cell the tcp ports the plain matrix opens, in both families', () => {
    const reference = accessMatrix(fleet, {method: 'all-pairs'});
    expect(matrix.sources[0]).toBe(INTERNET);
    expect(matrix.cells.length).toBe(7 * 6 - 6);
    for (const cell of matrix.cells) {
      for (const family of [4, 6] as const) {
        const plain = reference.find((entry) => entry.source === cell.source && entry.destination === cell.destination && entry.family === family && entry.protocol === 'tcp');
        expect(cell.tcp, `${cell.source} → ${cell.destination} IPv${family}`).toEqual(plain?.ports ?? []);
      }
    }
    const at = (source: string, destination: string) => cellPorts(matrix.cells.find((cell) => cell.source === source && cell.destination === destination)!);
    expect(at(INTERNET, 'haproxy-www')).toBe('80,443');
    expect(at('tunnel-1', 'mysql-1')).toBe('22');
    expect(at('wordpress-2', 'mysql-1')).toBe('3306');
    expect(at('haproxy-www', 'mysql-1')).toBe('-');
    expect(at('wordpress-2', 'wordpress-1')).toBe('24007-24008,49152-49251');
  });

  it('fits 80 columns, every host named, long cells explained in the legend', () => {
    const lines = renderMatrix(matrix);
    for (const line of lines) expect(columnsOf(line), line).toBeLessThanOrEqual(80);
    const text = lines.join('\n');
    expect(text).toMatch(/^internet +22 +80,443 +- /m);
    expect(text).toMatch(/^wordpress-1 +- +- +\[a\] +3306 +3306$/m);
    expect(text).toContain('= 24007-24008,49152-49251');
    // One block: the header row names all six destinations.
    expect(lines.filter((line) => line.startsWith('from'))).toHaveLength(1);
    for (const name of ['tunnel-1', 'haproxy', 'wordpress1', 'wordpress2', 'mysql-1', 'mysql-2']) expect(lines[0]).toContain(name);
  });

  it('marks cells by the live results: ✓ as planned, ✗ a planned flow dropped, ! a closed port answering', () => {
    const flows = flowsToTry(fleet, summarizeFleetAccess(fleet));
    const results: FlowResult[] = flows.map((flow) => {
      const broken = flow.to === 'wordpress-1' && flow.planSource === 'haproxy-www' && flow.port === 80 && flow.expect === 'open';
      const leaking = flow.to === 'mysql-1' && flow.planSource === INTERNET && flow.port === 3306;
      const live = broken ? 'dropped' : leaking ? 'open' : flow.expect === 'open' ? 'open' : 'dropped';
      return {flow, live, detail: '', triedFrom: 'test'};
    });
    const marked = buildMatrix(fleet.map((host) => host.name), summarizeFleetAccess(fleet), results);
    const mark = (source: string, destination: string) => marked.cells.find((cell) => cell.source === source && cell.destination === destination)?.live;
    expect(mark('haproxy-www', 'wordpress-1')).toBe('✗');
    expect(mark(INTERNET, 'mysql-1')).toBe('!');
    expect(mark('haproxy-www', 'wordpress-2')).toBe('✓');
    const lines = renderMatrix(marked);
    for (const line of lines) expect(columnsOf(line)).toBeLessThanOrEqual(80);
    expect(lines.join('\n')).toMatch(/^haproxy-www +✓- +✗80,443 +✓80,443 /m);
    expect(lines.join('\n')).toMatch(/^internet +✓22 +✓80,443 +✓- +✓- +!- +✓-$/m);
  });
});

describe('a sampled live check (40 servers)', () => {
  it('marks only the pairs it tried, each with every open flow of the pair tried; the legend says the rest were not', () => {
    const inventory = sizedInventory(40);
    const plan = planOf(inventory);
    const planned = flowsToTry(plan.hosts, plan.access);
    const sample = sampleFlows(planned, hostKinds(inventory.hosts));
    const results: FlowResult[] = sample.map((flow) => ({flow, live: flow.expect === 'open' ? 'open' : 'dropped', detail: '', triedFrom: 'test'}));
    const matrix = buildMatrix(plan.hosts.map((host) => host.name), plan.access, results);
    const triedPairs = new Set(sample.map((flow) => `${flow.planSource}\n${flow.to}`));
    const sampled = new Set(sample);
    for (const cell of matrix.cells) {
      const pair = `${cell.source}\n${cell.destination}`;
      expect(cell.live, pair).toBe(triedPairs.has(pair) ? '✓' : undefined);
      if (cell.live === undefined) continue;
      const missed = planned.filter((flow) => flow.expect === 'open' && `${flow.planSource}\n${flow.to}` === pair && !sampled.has(flow));
      expect(missed, pair).toEqual([]);
    }
    expect(matrix.cells.filter((cell) => cell.live === undefined && cell.tcp.length > 0).length).toBeGreaterThan(0);
    expect(renderMatrix(matrix, {columns: 200}).join('\n')).toContain('unmarked: not tried (a sample)');
    // Every pair tried: no such line.
    const full = buildMatrix(plan.hosts.map((host) => host.name), plan.access, planned.map((flow) => ({flow, live: flow.expect === 'open' ? 'open' : 'dropped', detail: '', triedFrom: 'test'})));
    expect(renderMatrix(full, {columns: 200}).join('\n')).not.toContain('unmarked');
  });
});

describe('larger fleets', () => {
  it('prints in blocks of destination columns, each line within the width', () => {
    const names = Array.from({length: 30}, (_, index) => `app-server-${index + 1}`);
    const access = names.map((destination) => ({destination, sources: [INTERNET, names[0] as string], tcp: [{first: 22, last: 22}], udp: [], uncertain: []}));
    const lines = renderMatrix(buildMatrix(names, access));
    for (const line of lines) expect(columnsOf(line)).toBeLessThanOrEqual(80);
    const blocks = lines.filter((line) => /^destinations \d+-\d+ of 30:$/.test(line));
    expect(blocks.length).toBeGreaterThan(1);
    expect(lines.filter((line) => line.startsWith('from'))).toHaveLength(blocks.length);
    // Every destination appears in exactly one block's header.
    const headers = lines.filter((line) => line.startsWith('from')).join(' ');
    for (const name of names) expect(headers.split(/ +/)).toContain(abbreviate(name, 10));
  });

  it('spells udp, the same ports in both protocols, one family only', () => {
    expect(cellPorts({tcp: [{first: 1, last: 65535}], udp: [{first: 1, last: 65535}]})).toBe('all+u');
    expect(cellPorts({tcp: [{first: 80, last: 80}], udp: [{first: 53, last: 53}]})).toBe('80 u53');
    expect(cellPorts({tcp: [], udp: [{first: 53, last: 53}]})).toBe('u53');
    expect(cellPorts({tcp: [{first: 22, last: 22}], udp: [], only: 4})).toBe('22(4)');
    const fleet = goldenFleet('trust-private');
    const lines = renderMatrix(matrixOf(fleet));
    for (const line of lines) expect(columnsOf(line)).toBeLessThanOrEqual(80);
    expect(lines.join('\n')).toMatch(/^tunnel-1 +all\+u /m);
  });

  it('abbreviates names keeping what tells them apart', () => {
    expect(abbreviate('wordpress-1', 10)).toBe('wordpress1');
    expect(abbreviate('mysql-1', 10)).toBe('mysql-1');
    expect([...abbreviate('application-server-12', 10)].length).toBeLessThanOrEqual(10);
    expect(abbreviate('application-server-12', 10)).toMatch(/…-?12$/);
  });
});

describe('a matrix of a thousand hosts', () => {
  it('renders (a million cells measured in a loop, not spread into one call)', () => {
    const names = Array.from({length: 1000}, (_unused, index) => `host-${index}`);
    const cells = names.flatMap((source) => names.map((destination) => ({source, destination, tcp: [{first: 22, last: 22}], udp: []})));
    const lines = renderMatrix({sources: names, destinations: names, cells}, {columns: 80});
    expect(lines.length).toBeGreaterThan(1000);
    expect(lines.every((line) => line.length <= 80)).toBe(true);
  });
});
