// The indexed access matrix (sources no rule can tell apart from a closed representative are
// not walked one by one) must equal the plain all-pairs matrix, cell for cell, on random
// fleets — also when hand-added rules make the evaluator uncertain — and the summary built
// from the matrix without closed sources must equal the summary of the full matrix.
import fc from 'fast-check';
import {describe, expect, it} from 'vitest';
import {accessMatrix, PRIVATE_TENANTS, summarizeFleetAccess, summarizeMatrix, type FleetHost} from '../../source/core/access.js';
import {compileFleet} from '../../source/core/compiler.js';
import {factsFromInventory, validateInventory} from '../../source/core/inventory.js';
import type {HostFacts, Rule, Ruleset} from '../../source/core/model.js';

const ROLES = ['bastion', 'lb', 'app', 'db', 'cache'] as const;
const CIDRS = ['10.132.0.0/24', '10.132.0.12/32', '10.132.0.254/32', '198.18.0.0/15', '0.0.0.0/0', 'fd00:132::/64', '2001:db8::/32', 'fd00:132::ffff:ffff:ffff:fffe/128'];

/** Rules an operator (or another tool) could have added: some the evaluator cannot judge. */
const EXTRA_RULES: readonly (readonly string[])[] = [
  ['-m', 'hl', '--hl-eq', '255', '-j', 'ACCEPT'],
  ['-s', '10.132.0.0/24', '-m', 'recent', '--rcheck', '-j', 'ACCEPT'],
  ['-p', 'tcp', '-m', 'tcp', '--dport', '25', '-j', 'ACCEPT'],
  ['-s', '10.132.0.254/32', '-j', 'ACCEPT'],
  // The tenant representative dropped by address, every other private source let in: a host
  // no rule names must then not be taken for the representative.
  ['-s', '10.132.0.254/32', '-j', 'DROP'],
  ['-s', 'fd00:132::ffff:ffff:ffff:fffe/128', '-j', 'DROP'],
  ['-i', 'eth1', '-p', 'tcp', '-j', 'ACCEPT'],
  ['-p', 'udp', '-j', 'NOWHERE'],
  ['-d', '203.0.113.0/24', '-p', 'tcp', '-m', 'tcp', '--dport', '1000:2000', '-j', 'DROP'],
];

const host = fc.record({
  nics: fc.constantFrom('both', 'both', 'public', 'private'),
  v6: fc.boolean(),
  roles: fc.subarray([...ROLES], {maxLength: 2}),
  allowFrom: fc.array(fc.nat(30), {maxLength: 2}),
  extra: fc.array(fc.tuple(fc.nat(EXTRA_RULES.length - 1), fc.constantFrom('INPUT', 'OUTPUT'), fc.nat(40)), {maxLength: 2}),
  /** A second IPv4 address on each side (only in the fleets of the test that asks for it). */
  second: fc.constant<boolean>(false),
});

const fleetOptions = fc.record({strictOutbound: fc.boolean(), trustPrivate: fc.boolean(), logDrops: fc.boolean()});

const fleet = fc.record({
  hosts: fc.array(host, {minLength: 2, maxLength: 6}),
  cacheFrom: fc.nat(30),
  options: fleetOptions,
});

type Fleet = typeof fleet extends fc.Arbitrary<infer T> ? T : never;

function source(seed: number, names: readonly string[]): string {
  const kinds = ['internet', 'private', 'lb', 'app', ...names, ...CIDRS];
  return kinds[seed % kinds.length] as string;
}

function withExtraRules(ruleset: Ruleset, extras: Fleet['hosts'][number]['extra']): Ruleset {
  if (extras.length === 0) return ruleset;
  return {
    ...ruleset,
    tables: ruleset.tables.map((table) => {
      const rules: Rule[] = [...table.rules];
      for (const [which, chain, at] of extras) {
        rules.splice(at % (rules.length + 1), 0, {chain, spec: [...(EXTRA_RULES[which] ?? [])]});
      }
      return {...table, rules};
    }),
  };
}

function fleetHosts(shape: Fleet): FleetHost[] {
  const names = shape.hosts.map((_host, index) => `h${index}`);
  const inventory = validateInventory({
    options: shape.options,
    roles: {cache: {accept: [{ports: [6379], from: source(shape.cacheFrom, names)}]}},
    hosts: shape.hosts.map((spec, index) => {
      const sides = spec.nics === 'both' ? (['public', 'private'] as const) : [spec.nics as 'public' | 'private'];
      const addresses = (side: 'public' | 'private'): string[] => {
        const v4 = side === 'public' ? `203.0.113.${10 + index}` : `10.132.0.${10 + index}`;
        const v6 = side === 'public' ? `2001:db8:100::${10 + index}` : `fd00:132::${10 + index}`;
        const second = side === 'public' ? `203.0.113.${100 + index}` : `10.132.0.${100 + index}`;
        return [v4, ...(spec.second ? [second] : []), ...(spec.v6 ? [v6] : [])];
      };
      return {
        name: names[index],
        ssh: names[index],
        roles: spec.roles,
        allow: spec.allowFrom.map((seed) => ({port: 8080 + seed, from: source(seed, names)})),
        interfaces: Object.fromEntries(sides.map((side) => [side, side === 'public' ? 'eth0' : 'eth1'])),
        addresses: Object.fromEntries(sides.map((side) => [side, addresses(side)])),
      };
    }),
  });
  const facts = new Map(inventory.hosts.map((entry) => [entry.name, factsFromInventory(entry) as HostFacts]));
  return compileFleet(inventory, facts).map((compiled, index) => {
    const extras = shape.hosts[index]?.extra ?? [];
    return {
      name: compiled.host,
      facts: facts.get(compiled.host) as HostFacts,
      compiled: {...compiled, v4: withExtraRules(compiled.v4, extras), v6: withExtraRules(compiled.v6, extras)},
    };
  });
}

describe('indexed access matrix', () => {
  it('equals the all-pairs matrix, and the summary without closed sources (also read per destination) equals the full one', () => {
    let uncertainSeen = 0;
    let openSeen = 0;
    fc.assert(
      fc.property(fleet, (shape) => {
        const hosts = fleetHosts(shape);
        const names = hosts.map((entry) => entry.name);
        const plain = accessMatrix(hosts, {method: 'all-pairs'});
        expect(accessMatrix(hosts)).toEqual(plain);
        const omitted = accessMatrix(hosts, {omitClosed: true});
        expect(omitted.length).toBeLessThanOrEqual(plain.length);
        expect(summarizeMatrix(omitted, names)).toEqual(summarizeMatrix(plain, names));
        // What plan shows: the same summary, read destination by destination.
        expect(summarizeFleetAccess(hosts)).toEqual(summarizeMatrix(plain, names));
        if (plain.some((cell) => cell.uncertain.length > 0)) uncertainSeen += 1;
        if (plain.some((cell) => cell.ports.length > 0 && cell.source.startsWith('h'))) openSeen += 1;
      }),
      {numRuns: 80},
    );
    // The random fleets must have exercised both shortcuts' edges: notes and open fleet pairs.
    expect(uncertainSeen).toBeGreaterThan(0);
    expect(openSeen).toBeGreaterThan(0);
  }, 60_000);

  it('reads the same summary whether a source is answered from the views or walked address pair by pair', () => {
    // summarizeFleetAccess answers a source straight from the views when each family has one
    // address pair and no rule on the way is unmodelled, else walks its routes: fleets mixing
    // hosts with two IPv4 addresses, hand-added rules and plain hosts reach both, per source.
    const mixedHost = host.chain((spec) => fc.boolean().map((second) => ({...spec, second})));
    const mixedFleet = fc.record({hosts: fc.array(mixedHost, {minLength: 2, maxLength: 6}), cacheFrom: fc.nat(30), options: fleetOptions});
    let mixedSeen = 0;
    fc.assert(
      fc.property(mixedFleet, (shape) => {
        const hosts = fleetHosts(shape);
        const names = hosts.map((entry) => entry.name);
        expect(summarizeFleetAccess(hosts)).toEqual(summarizeMatrix(accessMatrix(hosts, {method: 'all-pairs'}), names));
        const plain = shape.hosts.filter((spec) => !spec.second && spec.extra.length === 0).length;
        if (plain >= 2 && plain < shape.hosts.length) mixedSeen += 1;
      }),
      {numRuns: 60},
    );
    expect(mixedSeen).toBeGreaterThan(0);
  }, 60_000);

  it('picks the same other tenant from the views as from the walked routes when a fleet host holds the top of the network', () => {
    // The tenant is the highest free address of the private network: here a fleet host holds the
    // top one in each family, so the tenant is the next one down, which a rule lets in.
    const inventory = validateInventory({
      roles: {},
      hosts: [
        {name: 'top', ssh: 'top', roles: [], interfaces: {private: 'eth1'}, addresses: {private: ['10.132.0.254', 'fd00:132::ffff:ffff:ffff:fffe']}},
        {
          name: 'web',
          ssh: 'web',
          roles: [],
          allow: [
            {port: 8080, from: '10.132.0.253/32'},
            {port: 8081, from: 'fd00:132::ffff:ffff:ffff:fffd/128'},
            {port: 8082, from: '10.132.0.254/32'},
          ],
          interfaces: {public: 'eth0', private: 'eth1'},
          addresses: {public: ['203.0.113.10'], private: ['10.132.0.10', 'fd00:132::10']},
        },
      ],
    });
    const facts = new Map(inventory.hosts.map((entry) => [entry.name, factsFromInventory(entry) as HostFacts]));
    const hosts: FleetHost[] = compileFleet(inventory, facts).map((compiled) => ({name: compiled.host, facts: facts.get(compiled.host) as HostFacts, compiled}));
    const summary = summarizeFleetAccess(hosts);
    expect(summary).toEqual(summarizeMatrix(accessMatrix(hosts, {method: 'all-pairs'}), ['top', 'web']));
    const tenants = summary.filter((entry) => entry.destination === 'web' && entry.sources.includes(PRIVATE_TENANTS));
    expect(tenants.flatMap((entry) => entry.tcp.map((range) => range.first)).sort()).toEqual([8080, 8081]);
  });

  it('leaves out the pairs nothing opens, and only those', () => {
    const hosts = fleetHosts({
      hosts: [
        {nics: 'both', v6: true, roles: ['bastion'], allowFrom: [], extra: [], second: false},
        {nics: 'both', v6: true, roles: ['lb'], allowFrom: [], extra: [], second: false},
        {nics: 'both', v6: true, roles: ['app'], allowFrom: [], extra: [], second: false},
        {nics: 'both', v6: true, roles: ['db'], allowFrom: [], extra: [], second: false},
      ],
      cacheFrom: 0,
      options: {strictOutbound: false, trustPrivate: false, logDrops: false},
    });
    const pairs = (cells: ReturnType<typeof accessMatrix>): string[] => [...new Set(cells.map((cell) => `${cell.source}->${cell.destination}`))].sort();
    // The db (h3) accepts 3306 from the app (h2) only; the lb (h1) gets nothing there.
    const omitted = pairs(accessMatrix(hosts, {omitClosed: true}));
    expect(omitted).toContain('h2->h3');
    expect(omitted).toContain('h0->h3');
    expect(omitted).not.toContain('h1->h3');
    expect(pairs(accessMatrix(hosts))).toContain('h1->h3');
  });
});
