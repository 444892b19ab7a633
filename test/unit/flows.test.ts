import {describe, expect, it} from 'vitest';
import {accessMatrix, INTERNET, summarizeFleetAccess, type AccessCell, type FleetHost} from '../../source/core/access.js';
import {flowsToTry, OPERATOR, type Flow} from '../../source/core/flows.js';
import type {Family} from '../../source/core/model.js';
import {factsFromInventory, parseInventoryText} from '../../source/core/inventory.js';
import {buildPlan} from '../../source/core/plan.js';
import {goldenFleet, readFixture} from './support/fixtures.js';

/** Is `port` open from source to destination in that family, by the plain matrix (the reference)? */
function openInMatrix(cells: readonly AccessCell[], source: string, destination: string, family: Family, port: number): boolean {
  return cells.some(
    (cell) =>
      cell.source === source && cell.destination === destination && cell.family === family && cell.protocol === 'tcp' &&
      cell.ports.some((range) => range.first <= port && port <= range.last),
  );
}

function flowsOf(fleet: FleetHost[]): {flows: Flow[]; cells: AccessCell[]} {
  return {flows: flowsToTry(fleet, summarizeFleetAccess(fleet)), cells: accessMatrix(fleet, {method: 'all-pairs'})};
}

describe('flowsToTry on the seed fleet', () => {
  const fleet = goldenFleet('seed-with-addresses');
  const {flows, cells} = flowsOf(fleet);
  const key = (flow: Flow): string => `${flow.from} ${flow.to} ${flow.address} ${flow.port} ${flow.expect}`;

  it('expects of every flow what the compiled rules say, in its family', () => {
    expect(flows.length).toBeGreaterThan(0);
    for (const flow of flows) {
      expect(openInMatrix(cells, flow.planSource, flow.to, flow.family, flow.port), key(flow)).toBe(flow.expect === 'open');
    }
  });

  it('tries every open range of the summary from its real source, IPv4 and IPv6, one port per range', () => {
    for (const cell of cells) {
      if (cell.protocol !== 'tcp' || cell.ports.length === 0) continue;
      const fleetSource = fleet.some((host) => host.name === cell.source);
      if (!fleetSource && cell.source !== INTERNET) continue;
      for (const range of cell.ports) {
        const tries = flows.filter(
          (flow) => flow.planSource === cell.source && flow.to === cell.destination && flow.family === cell.family && flow.expect === 'open' && flow.port === range.first,
        );
        expect(tries.length, `${cell.source} → ${cell.destination} IPv${cell.family} ${range.first}`).toBe(1);
        expect(tries[0]?.from).toBe(fleetSource ? cell.source : OPERATOR);
      }
    }
    // The private network carries fleet traffic; the internet comes to public addresses.
    expect(flows.filter((flow) => flow.from === 'haproxy-www' && flow.to === 'wordpress-1' && flow.expect === 'open').map((flow) => `${flow.address}:${flow.port}`).sort()).toEqual(
      ['10.132.0.12:443', '10.132.0.12:80', 'fd00:132::12:443', 'fd00:132::12:80'],
    );
    expect(flows.filter((flow) => flow.from === OPERATOR && flow.to === 'haproxy-www' && flow.expect === 'open').map((flow) => `${flow.address}:${flow.port}`).sort()).toEqual(
      ['2001:db8:100::11:443', '2001:db8:100::11:80', '203.0.113.11:443', '203.0.113.11:80'],
    );
    // 24007-24008 and 49152-49251: one try each, at the range's first port.
    expect(flows.filter((flow) => flow.from === 'wordpress-2' && flow.to === 'wordpress-1' && flow.family === 4 && flow.expect === 'open').map((flow) => flow.port)).toEqual([24007, 49152]);
  });

  it('samples closed flows for every destination, from the fleet and from the internet, in both families', () => {
    for (const host of fleet) {
      for (const family of [4, 6] as const) {
        const closed = flows.filter((flow) => flow.to === host.name && flow.family === family && flow.expect === 'closed');
        expect(closed.some((flow) => flow.from !== OPERATOR), `${host.name} IPv${family} from the fleet`).toBe(true);
        expect(closed.some((flow) => flow.from === OPERATOR), `${host.name} IPv${family} from the internet`).toBe(true);
      }
    }
    // The database port from a fleet host that has no grant to it, and from the internet.
    const mysql = flows.filter((flow) => flow.to === 'mysql-1' && flow.port === 3306 && flow.expect === 'closed');
    expect(mysql.map((flow) => flow.from)).toContain(OPERATOR);
    expect(mysql.some((flow) => flow.from === 'tunnel-1' || flow.from === 'haproxy-www')).toBe(true);
    // Never a try from a host to itself, one try per flow.
    expect(flows.every((flow) => flow.from !== flow.to)).toBe(true);
    expect(new Set(flows.map(key)).size).toBe(flows.length);
  });

  it('keeps to the hosts asked for', () => {
    const some = flowsToTry(fleet, summarizeFleetAccess(fleet), {hosts: new Set(['mysql-2'])});
    expect(some.length).toBeGreaterThan(0);
    expect(some.every((flow) => flow.to === 'mysql-2' || flow.from === 'mysql-2')).toBe(true);
    expect(some.some((flow) => flow.from === 'mysql-2')).toBe(true);
    const into = flowsToTry(fleet, summarizeFleetAccess(fleet), {hosts: new Set(['mysql-2']), destinationsOnly: true});
    expect(into.length).toBeGreaterThan(0);
    expect(into.every((flow) => flow.to === 'mysql-2')).toBe(true);
  });
});

describe('flowsToTry on other shapes', () => {
  it('trustPrivate: no closed flow between fleet hosts (every port is open), closed ones from the internet still', () => {
    const fleet = goldenFleet('trust-private');
    const {flows, cells} = flowsOf(fleet);
    for (const flow of flows) expect(openInMatrix(cells, flow.planSource, flow.to, flow.family, flow.port)).toBe(flow.expect === 'open');
    expect(flows.some((flow) => flow.expect === 'closed' && flow.from === OPERATOR)).toBe(true);
  });

  it('single-NIC hosts are tried over their public side', () => {
    const fleet = goldenFleet('single-nic');
    const {flows, cells} = flowsOf(fleet);
    expect(flows.length).toBeGreaterThan(0);
    for (const flow of flows) expect(openInMatrix(cells, flow.planSource, flow.to, flow.family, flow.port)).toBe(flow.expect === 'open');
  });
});

describe('flowsToTry and the operator\'s own address', () => {
  it('does not sample as closed from here a port the plan opens to the operator\'s address (an allow for it)', () => {
    const json = JSON.parse(readFixture('inventories/seed-with-addresses.json')) as {hosts: {name: string; allow?: object[]}[]};
    for (const entry of json.hosts) if (entry.name === 'mysql-1') entry.allow = [{port: 22, proto: 'tcp', from: '198.51.100.7'}];
    const inventory = parseInventoryText(JSON.stringify(json), 'allow.json');
    const plan = buildPlan(inventory, new Map(inventory.hosts.map((entry) => [entry.name, factsFromInventory(entry)!])));
    const fromHere = (operatorAddresses?: string[]) =>
      flowsToTry(plan.hosts, plan.access, operatorAddresses ? {operatorAddresses} : {})
        .filter((flow) => flow.from === OPERATOR && flow.to === 'mysql-1' && flow.expect === 'closed')
        .map((flow) => `${flow.address}:${flow.port}`);
    expect(fromHere()).toContain('203.0.113.14:22');
    const known = fromHere(['198.51.100.7']);
    expect(known).not.toContain('203.0.113.14:22');
    expect(known).toContain('203.0.113.14:3306');
    expect(known).toContain('2001:db8:100::14:22'); // the allow is IPv4 only
  });
});

