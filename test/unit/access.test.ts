import {describe, expect, it} from 'vitest';
import {
  accessMatrix,
  formatAccess,
  INTERNET,
  PRIVATE_TENANTS,
  summarizeAccess,
  tenantAddress,
  type FleetHost,
} from '../../source/core/access.js';
import {parseIptablesSave} from '../../source/core/iptables-save.js';
import type {HostFacts, Ruleset} from '../../source/core/model.js';
import {goldenFleet, readFixture} from './support/fixtures.js';


function filter(rules: string[], family: 4 | 6 = 4, policies = {input: 'DROP', output: 'ACCEPT'}): Ruleset {
  return parseIptablesSave(
    ['*filter', `:INPUT ${policies.input} [0:0]`, ':FORWARD DROP [0:0]', `:OUTPUT ${policies.output} [0:0]`, ...rules, 'COMMIT'].join('\n'),
    family,
  );
}

const REPLIES = '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT';

/** Two-NIC host n (1..): public 203.0.113.n / 2001:db8::n on eth0, private 10.0.0.n / fd00::n on eth1. */
function facts(n: number, v6 = true): HostFacts {
  return {
    interfaces: {public: 'eth0', private: 'eth1'},
    addresses: {
      public: [`203.0.113.${n}`, ...(v6 ? [`2001:db8::${n}`] : [])],
      private: [`10.0.0.${n}`, ...(v6 ? [`fd00::${n}`] : [])],
    },
  };
}

function host(name: string, n: number, v4: Ruleset, v6: Ruleset = filter([], 6), v6Addresses = true): FleetHost {
  return {name, facts: facts(n, v6Addresses), compiled: {host: name, v4, v6, warnings: []}};
}


// The tutorial's access needs with its traps fixed (the lb reaches the apps on their destination
// ports, ssh only through tunnel-1), one line per destination and source group.
const SEED_ACCESS = readFixture('seed-access.txt').trimEnd().split('\n');

describe('summarizeAccess on the seed fleet (golden compiled rules)', () => {
  it('gives the seed access table, sources grouped by identical ports', () => {
    expect(formatAccess(summarizeAccess(goldenFleet('seed-with-addresses')))).toEqual(SEED_ACCESS);
  });

  it('keeps the same table with strict outbound (senders\' OUTPUT is checked too)', () => {
    expect(formatAccess(summarizeAccess(goldenFleet('strict-outbound')))).toEqual(
      formatAccess(summarizeAccess(goldenFleet('seed-with-addresses'))),
    );
  });

  it('exposes the raw matrix: both families, both protocols, empty cells included', () => {
    const cells = accessMatrix(goldenFleet('seed-with-addresses'));
    const cell = (source: string, destination: string, family: 4 | 6, protocol: 'tcp' | 'udp') =>
      cells.find((item) => item.source === source && item.destination === destination && item.family === family && item.protocol === protocol);
    expect(cell('haproxy-www', 'wordpress-1', 6, 'tcp')?.ports).toEqual([{first: 80, last: 80}, {first: 443, last: 443}]);
    expect(cell('mysql-1', 'wordpress-1', 4, 'tcp')?.ports).toEqual([]);
    expect(cell(INTERNET, 'mysql-1', 4, 'udp')?.ports).toEqual([]);
    expect(cell(PRIVATE_TENANTS, 'mysql-1', 6, 'tcp')?.ports).toEqual([]);
    expect(cells.every((item) => item.uncertain.length === 0)).toBe(true);
  });
});

describe('summarizeAccess semantics', () => {
  const open = (rules: string[]): Ruleset => filter([REPLIES, ...rules.map((rule) => `-A INPUT ${rule}`)]);

  it('flags access that holds in one family only', () => {
    const a = host('a', 1, open([]), filter([REPLIES], 6));
    const b = host(
      'b',
      2,
      open(['-s 10.0.0.1/32 -i eth1 -p tcp -m multiport --dports 80,443 -j ACCEPT']),
      filter([REPLIES, '-A INPUT -s fd00::1/128 -i eth1 -p tcp -m tcp --dport 80 -j ACCEPT', '-A INPUT -s fd00::1/128 -i eth1 -p udp -m udp --dport 53 -j ACCEPT'], 6),
    );
    expect(formatAccess(summarizeAccess([a, b]))).toEqual(['a → b tcp/80', 'a → b tcp/443 (IPv4 only)', 'a → b udp/53 (IPv6 only)']);
  });

  it('does not flag a family that has no route (hosts without IPv6 addresses)', () => {
    const a = host('a', 1, open([]), filter([], 6), false);
    const b = host('b', 2, open(['-i eth1 -p tcp -m tcp --dport 22 -j ACCEPT']), filter([], 6), false);
    expect(formatAccess(summarizeAccess([a, b]))).toEqual(['a, other tenants on the private network → b tcp/22']);
  });

  it('cuts port ranges exactly at every rule boundary', () => {
    const a = host('a', 1, open([]));
    const b = host('b', 2, open(['-s 10.0.0.1/32 -p tcp -m tcp --dport 1500 -j DROP', '-s 10.0.0.1/32 -p tcp -m tcp --dport 1000:2000 -j ACCEPT']));
    const cells = accessMatrix([a, b]).filter((cell) => cell.source === 'a' && cell.family === 4 && cell.protocol === 'tcp');
    expect(cells[0]?.ports).toEqual([{first: 1000, last: 1499}, {first: 1501, last: 2000}]);
  });

  it('requires the sender\'s OUTPUT to let the connection out', () => {
    const a = host('a', 1, filter([REPLIES, '-A OUTPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT', '-A OUTPUT -d 10.0.0.2/32 -o eth1 -p tcp -m tcp --dport 22 -j ACCEPT'], 4, {input: 'DROP', output: 'DROP'}), filter([], 6), false);
    const b = host('b', 2, open(['-s 10.0.0.1/32 -p tcp -m multiport --dports 22,80 -j ACCEPT']), filter([], 6), false);
    expect(formatAccess(summarizeAccess([a, b]))).toEqual(['a → b tcp/22']);
  });

  it('requires the replies to get back: a destination whose OUTPUT drops them is not reachable', () => {
    const a = host('a', 1, open([]));
    const b = host('b', 2, filter(['-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT'], 4, {input: 'DROP', output: 'DROP'}));
    expect(summarizeAccess([a, b])).toEqual([]);
  });

  it('lists the internet, tenants and fleet hosts, with `all` for every port', () => {
    const a = host('a', 1, open([]), filter([], 6), false);
    const b = host('b', 2, open(['-i eth0 -p tcp -m tcp --dport 443 -j ACCEPT', '-i eth1 -j ACCEPT']), filter([], 6), false);
    expect(formatAccess(summarizeAccess([a, b]))).toEqual([
      'internet → b tcp/443',
      'a, other tenants on the private network → b tcp/all udp/all',
    ]);
  });

  it('carries rules it could not judge into the entry', () => {
    const a = host('a', 1, open([]));
    const b = host('b', 2, open(['-m set --match-set friends src -j ACCEPT', '-i eth1 -p tcp -m tcp --dport 22 -j ACCEPT']));
    const entry = summarizeAccess([a, b]).find((item) => item.sources.includes('a'));
    expect(entry?.uncertain.some((note) => note.startsWith('b: rule 2 of INPUT: not evaluated (-m set --match-set friends src)'))).toBe(true);
  });
});

describe('tenantAddress', () => {
  it('picks a neighbour in the same /24 or /64 that no fleet host uses', () => {
    expect(tenantAddress('10.132.0.12', new Set())).toBe('10.132.0.254');
    expect(tenantAddress('10.132.0.12', new Set(['10.132.0.254']))).toBe('10.132.0.253');
    expect(tenantAddress('fd00:132::12', new Set())).toBe('fd00:132::ffff:ffff:ffff:fffe');
  });
});

describe('hosts with several addresses on a side', () => {
  it('shows only what holds between every address pair, and says where they differ', () => {
    const a: FleetHost = {
      name: 'a',
      facts: {interfaces: {private: 'eth1'}, addresses: {public: [], private: ['10.0.0.1', '10.0.0.11']}},
      compiled: {host: 'a', v4: filter([REPLIES]), v6: filter([], 6), warnings: []},
    };
    const b: FleetHost = {
      name: 'b',
      facts: {interfaces: {private: 'eth1'}, addresses: {public: [], private: ['10.0.0.2']}},
      compiled: {
        host: 'b',
        v4: filter([REPLIES, '-A INPUT -s 10.0.0.1/32 -p tcp -m multiport --dports 22,80 -j ACCEPT', '-A INPUT -s 10.0.0.11/32 -p tcp -m tcp --dport 22 -j ACCEPT']),
        v6: filter([], 6),
        warnings: [],
      },
    };
    const [entry] = summarizeAccess([a, b]);
    expect(formatAccess([entry!])).toEqual(['a → b tcp/22']);
    expect(entry!.uncertain).toEqual([
      'b: tcp from a differs between addresses (10.0.0.1 -> 10.0.0.2 vs 10.0.0.11 -> 10.0.0.2); only what all allow is shown',
    ]);
  });
});
