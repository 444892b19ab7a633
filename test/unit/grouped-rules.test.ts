// The compiler's grouped rules (a rule per group of peers, matching the group's address set) are
// what the access summary and the SSH path check read. They must give exactly the access of the
// per-address rulesets the iptables backend loads: compared here on every fixture and on flat
// fleets with the shapes that make sets differ (two NICs or one, a host holding two addresses,
// a role admitting its own hosts).
import {readdirSync} from 'node:fs';
import {describe, expect, it} from 'vitest';
import {formatAccess, summarizeFleetAccess, type FleetHost} from '../../source/core/access.js';
import {compileFleet, groupedRules} from '../../source/core/compiler.js';
import {factsFromInventory, parseInventoryText, validateInventory, type Inventory} from '../../source/core/inventory.js';
import {checkLockout, operatorPaths} from '../../source/core/lockout.js';
import type {HostFacts} from '../../source/core/model.js';
import {readFixture} from './support/fixtures.js';

function fleetHosts(inv: Inventory, grouped: boolean): FleetHost[] {
  const facts = new Map<string, HostFacts>(inv.hosts.map((host) => [host.name, factsFromInventory(host)!]));
  return compileFleet(inv, facts).map((compiled) => ({
    name: compiled.host,
    facts: facts.get(compiled.host)!,
    // A plain copy has no grouped rules: readers then read the per-address rulesets.
    compiled: grouped ? compiled : {host: compiled.host, v4: compiled.v4, v6: compiled.v6, warnings: compiled.warnings},
  }));
}

function expectSameReading(inv: Inventory): void {
  const grouped = fleetHosts(inv, true);
  const perAddress = fleetHosts(inv, false);
  expect(grouped.every((host) => groupedRules(host.compiled) !== undefined)).toBe(true);
  expect(perAddress.some((host) => groupedRules(host.compiled) !== undefined)).toBe(false);
  expect(summarizeFleetAccess(grouped)).toEqual(summarizeFleetAccess(perAddress));
  const paths = operatorPaths(inv);
  expect(checkLockout(grouped, paths)).toEqual(checkLockout(perAddress, paths));
}

const FIXTURES = readdirSync(new URL('../../fixtures/inventories/', import.meta.url))
  .filter((file) => file.endsWith('.json') && file !== 'seed.json')
  .map((file) => file.slice(0, -'.json'.length))
  .sort();

/** A flat fleet: every db admits every app server and every other db; `shape` varies what sets hold. */
function flatFleet(count: number, shape: {singleNic?: boolean; twoAddresses?: boolean; options?: object}): Inventory {
  const hosts = Array.from({length: count}, (_unused, index) => {
    const role = index < 2 ? 'bastion' : index < 4 ? 'lb' : index < count / 2 ? 'app' : 'db';
    const oneNic = shape.singleNic === true && index % 3 === 0;
    const privateV4 = `10.0.0.${index}`;
    const extra = shape.twoAddresses === true && index === count - 2 ? [`10.0.1.${index}`, `fd00::1:${index.toString(16)}`] : [];
    return {
      name: `${role}-${index}`,
      ssh: `root@198.19.0.${index + 1}`,
      roles: [role],
      interfaces: oneNic ? {public: 'eth0'} : {public: 'eth0', private: 'eth1'},
      addresses: oneNic
        ? {public: [`198.19.0.${index + 1}`, `2001:db8::${(index + 1).toString(16)}`]}
        : {public: [`198.19.0.${index + 1}`, `2001:db8::${(index + 1).toString(16)}`], private: [privateV4, `fd00::${index.toString(16)}`, ...extra]},
    };
  });
  return validateInventory({...(shape.options ? {options: shape.options} : {}), hosts});
}

describe('grouped rules read as the per-address rulesets', () => {
  it.each(FIXTURES)('fixture %s: the same access summary and SSH path findings', (name) => {
    expectSameReading(parseInventoryText(readFixture(`inventories/${name}.json`), name));
  });

  it.each([
    ['two NICs everywhere', {}],
    ['some hosts with one NIC', {singleNic: true}],
    ['a db with two addresses per family on its side', {twoAddresses: true}],
    ['strict outbound and drop logging', {options: {strictOutbound: true, logDrops: true}}],
    ['trusted private network', {options: {trustPrivate: true}}],
  ])('flat fleet, %s', (_label, shape) => {
    expectSameReading(flatFleet(24, shape));
  });

  it('a line with many sources names the big classes by role; its sources are still every host', () => {
    const grouped = fleetHosts(flatFleet(60, {}), true);
    const access = summarizeFleetAccess(grouped);
    const db = access.find((entry) => entry.destination === 'db-59' && entry.tcp.some((range) => range.first === 3306))!;
    // 26 app servers (4-29) and the 29 other dbs (30-58).
    expect(formatAccess([db])).toEqual(['app (26 hosts), db (29 hosts) → db-59 tcp/3306']);
    expect(db.sources).toEqual([...Array.from({length: 26}, (_unused, index) => `app-${index + 4}`), ...Array.from({length: 29}, (_unused, index) => `db-${index + 30}`)]);
    const perAddress = summarizeFleetAccess(fleetHosts(flatFleet(60, {}), false));
    expect(formatAccess(perAddress.filter((entry) => entry.destination === 'db-59'))).toContainEqual(expect.stringMatching(/^app-4, app-5, .*db-58 → db-59 tcp\/3306$/));
  });

  it('a flat fleet of 200 with one-NIC hosts: an lb open to the internet, whose candidates are most of the fleet, reads as per address', () => {
    // (More candidates than CLASSES_FROM: read by source classes, its lines spelled source by source.)
    expectSameReading(flatFleet(200, {singleNic: true}));
  });

  it('such an lb admitting 20 bastions names each of them, as read per address (small sets: no labels)', () => {
    const hosts = Array.from({length: 150}, (_unused, index) => {
      const role = index < 20 ? 'bastion' : index < 22 ? 'lb' : 'app';
      const oneNic = role === 'lb' || index % 2 === 0;
      const address = `198.19.0.${index + 1}`;
      return {
        name: `${role}-${index}`,
        ssh: `root@${address}`,
        roles: [role],
        interfaces: oneNic ? {public: 'eth0'} : {public: 'eth0', private: 'eth1'},
        addresses: oneNic ? {public: [address]} : {public: [address], private: [`10.0.0.${index}`]},
      };
    });
    const inv = validateInventory({hosts});
    const lines = (grouped: boolean): string[] => formatAccess(summarizeFleetAccess(fleetHosts(inv, grouped)).filter((entry) => entry.destination === 'lb-20'));
    expect(lines(true)).toEqual(lines(false));
    expect(lines(true)).toContainEqual(`${Array.from({length: 20}, (_unused, index) => `bastion-${index}`).join(', ')} → lb-20 tcp/22,80,443`);
  });

  it('a host holding the internet\'s representative address is read with its own rules (its ! -s OWN matters then)', () => {
    const inv = flatFleet(24, {singleNic: true});
    // db-12 has one NIC (12 % 3 === 0): its db rule is on the public side, where the representative comes from.
    const hosts = inv.hosts.map((host) => (host.name === 'db-12' ? {...host, addresses: {public: ['198.18.0.1', '2001:db8::d'], private: host.addresses!.private}} : host));
    expectSameReading({...inv, hosts});
  });

  it('dbs differing only by their own address share the rules seen from other addresses', () => {
    const dbs = fleetHosts(flatFleet(24, {}), true).filter((host) => host.name.startsWith('db-'));
    const own = new Set(dbs.map((host) => groupedRules(host.compiled)!.v4));
    const fromOthers = new Set(dbs.map((host) => groupedRules(host.compiled)!.fromOthers.v4));
    expect(own.size).toBe(dbs.length);
    expect(fromOthers.size).toBe(1);
    // The only difference: the peers' rule leaves the host's own address out.
    const db = groupedRules(dbs[0]!.compiled)!;
    const differing = db.v4.tables[0]!.rules.flatMap((rule, index) => (rule === db.fromOthers.v4.tables[0]!.rules[index] ? [] : [{withOwn: rule.spec, without: db.fromOthers.v4.tables[0]!.rules[index]!.spec}]));
    expect(differing).toHaveLength(1);
    const {withOwn, without} = differing[0]!;
    expect(withOwn.slice(0, 3)).toEqual(['!', '-s', `${dbs[0]!.facts.addresses.private[0]}/32`]);
    expect(withOwn.slice(3)).toEqual(without);
  });

  it('a db\'s grouped rules stay a few per group however many app servers it admits', () => {
    const rulesOf = (count: number): number => {
      const hosts = fleetHosts(flatFleet(count, {}), true);
      const db = hosts.find((host) => host.name.startsWith('db-'))!;
      return groupedRules(db.compiled)!.v4.tables[0]!.rules.length;
    };
    expect(rulesOf(200)).toBe(rulesOf(20));
  });
});
