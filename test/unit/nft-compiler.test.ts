// The nftables table (nft-compiler.ts) must give exactly the access of the iptables rulesets it
// is written from. Each table is loaded by the real `nft` into a throwaway network namespace of
// this test's own (never the root namespace), read back as the kernel holds it (`nft -j`), and
// judged packet by packet by the nftables evaluator, against the iptables evaluator on the
// compiled rulesets.
import {execFileSync, spawnSync} from 'node:child_process';
import {readdirSync} from 'node:fs';
import fc from 'fast-check';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {compileFleet} from '../../source/core/compiler.js';
import {InputError} from '../../source/core/errors.js';
import {evaluate, portCutPoints, type Packet, type PacketProtocol} from '../../source/core/evaluator.js';
import {factsFromInventory, parseInventoryText, validateInventory, type Inventory} from '../../source/core/inventory.js';
import {formatAddress, parseNetwork} from '../../source/core/ip.js';
import type {CompiledHost, Family, HostFacts} from '../../source/core/model.js';
import {compileGroupedNftTable, compileNftTable, nftComment, nftTableFamily, nftTableName} from '../../source/core/nft-compiler.js';
import {evaluateNft} from '../../source/core/nft-evaluator.js';
import {parseNftJson, type NftRuleset} from '../../source/core/nft-ruleset.js';
import {readFixture} from './support/fixtures.js';

const canUseNetns = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0 && spawnSync('nft', ['--version']).status === 0;
const NAMESPACE = `iw-nftc-${process.pid}`;

function nft(args: readonly string[], input?: string): string {
  const result = spawnSync('ip', ['netns', 'exec', NAMESPACE, 'nft', ...args], {encoding: 'utf8', ...(input === undefined ? {} : {input})});
  if (result.status !== 0) throw new Error(`nft ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

/** Each host's table under its own name (`iw_0`, `iw_1`...), so one `nft -f` loads a whole fleet. */
function renamed(text: string, index: number): string {
  return text.replace(`table ${nftTableFamily} ${nftTableName} {`, `table ${nftTableFamily} iw_${index} {`);
}

/** Checks (`nft -c`), loads, reads back and deletes the tables: the kernel's reading of them. */
function throughKernel(texts: readonly string[]): NftRuleset {
  const all = texts.map(renamed).join('\n');
  nft(['-c', '-f', '-'], all);
  nft(['-f', '-'], all);
  try {
    return parseNftJson(nft(['-j', 'list', 'ruleset']));
  } finally {
    nft(['-f', '-'], texts.map((_text, index) => `delete table ${nftTableFamily} iw_${index}\n`).join(''));
  }
}

function inventoryFacts(inv: Inventory): Map<string, HostFacts> {
  return new Map(inv.hosts.map((host) => [host.name, factsFromInventory(host)!]));
}

const OUTSIDE: Record<Family, readonly string[]> = {
  4: ['198.51.100.7', '10.132.0.250', '192.0.2.1'],
  6: ['2001:db8:ffff::7', 'fd00:132::250', 'fe80::1', '2001:db8:100::ffff'],
};
const ICMP: Record<Family, readonly number[]> = {4: [0, 3, 8, 11, 12], 6: [1, 2, 128, 129, 133, 134, 135, 136]};

/** Addresses a packet may come from or go to: the fleet's, those the rules name, and a few outside. */
function addressesOf(fleet: readonly CompiledHost[], facts: ReadonlyMap<string, HostFacts>, family: Family): string[] {
  const found = new Set<string>(OUTSIDE[family]);
  for (const hostFacts of facts.values()) {
    for (const address of [...hostFacts.addresses.public, ...hostFacts.addresses.private]) {
      const network = parseNetwork(address);
      if (network?.family === family) found.add(formatAddress(network));
    }
  }
  for (const host of fleet) {
    for (const rule of (family === 4 ? host.v4 : host.v6).tables.flatMap((table) => table.rules)) {
      rule.spec.forEach((token, index) => {
        const network = (token === '-s' || token === '-d') ? parseNetwork(rule.spec[index + 1] ?? '') : undefined;
        if (network?.family !== family) return;
        found.add(formatAddress(network));
        found.add(formatAddress({family, value: network.value + 1n}));
      });
    }
  }
  return [...found].sort();
}

/** Ports where some rule's decision may change, and the port just below each. */
function portsOf(host: CompiledHost, protocol: 'tcp' | 'udp'): number[] {
  const cuts = [...portCutPoints(host.v4, protocol), ...portCutPoints(host.v6, protocol)];
  return [...new Set(cuts.flatMap((cut) => [cut - 1, cut]).filter((port) => port >= 1 && port <= 65535))].sort((a, b) => a - b);
}

/** A sample of the packets a host's chains may see: every address, interface, protocol, port boundary and state. */
function packetsFor(host: CompiledHost, facts: HostFacts, everyone: Record<Family, string[]>, limit: number): Packet[] {
  const packets: Packet[] = [];
  const interfaces = [facts.interfaces.public, facts.interfaces.private, 'lo', 'eth9'].filter((name): name is string => name !== undefined);
  for (const family of [4, 6] as const) {
    const own = [...facts.addresses.public, ...facts.addresses.private].filter((address) => parseNetwork(address)?.family === family);
    const mine = own.length > 0 ? own : [family === 4 ? '192.0.2.200' : '2001:db8:eeee::200'];
    const others = everyone[family];
    for (const chain of ['INPUT', 'OUTPUT', 'FORWARD'] as const) {
      for (const local of mine) {
        for (const remote of others) {
          for (const name of interfaces) {
            const base = {
              chain,
              ...(chain === 'OUTPUT' ? {outInterface: name} : chain === 'INPUT' ? {inInterface: name} : {inInterface: name, outInterface: 'eth9'}),
              source: chain === 'OUTPUT' ? local : remote,
              destination: chain === 'OUTPUT' ? remote : local,
            };
            for (const protocol of ['tcp', 'udp'] as const) {
              for (const port of portsOf(host, protocol)) packets.push({...base, protocol, sourcePort: 40000, destinationPort: port, state: 'NEW'});
              for (const state of ['ESTABLISHED', 'RELATED', 'INVALID'] as const) {
                packets.push({...base, protocol, sourcePort: 40000, destinationPort: 22, state});
              }
            }
            // DHCPv6 both ways.
            packets.push({...base, protocol: 'udp', sourcePort: 547, destinationPort: 546, state: 'NEW'});
            packets.push({...base, protocol: 'udp', sourcePort: 546, destinationPort: 547, state: 'NEW'});
            const icmp: PacketProtocol = family === 4 ? 'icmp' : 'ipv6-icmp';
            for (const icmpType of ICMP[family]) {
              for (const hopLimit of [255, 64]) {
                for (const state of ['NEW', 'INVALID'] as const) packets.push({...base, protocol: icmp, icmpType, icmpCode: 0, hopLimit, state});
              }
            }
          }
        }
      }
    }
  }
  return sample(packets, limit);
}

/** At most this many packets per host (a seeded random choice: the same every run), so a fleet takes seconds. */
const PACKETS_PER_HOST = 2500;
/** Random fleets are many: fewer packets each. */
const PACKETS_PER_RANDOM_HOST = 800;

function sample<T>(items: readonly T[], count: number): T[] {
  if (items.length <= count) return [...items];
  let seed = 12345;
  const random = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const chosen = [...items];
  for (let index = 0; index < count; index += 1) {
    const other = index + Math.floor(random() * (chosen.length - index));
    [chosen[index], chosen[other]] = [chosen[other] as T, chosen[index] as T];
  }
  return chosen.slice(0, count);
}

/** Every sampled packet of every host: the iptables verdict and the kernel-read nft table's verdict agree. */
function expectSameAccess(inv: Inventory, packetsPerHost = PACKETS_PER_HOST, write: (host: CompiledHost) => string = compileNftTable): number {
  const facts = inventoryFacts(inv);
  const fleet = compileFleet(inv, facts);
  const texts = fleet.map(write);
  const ruleset = throughKernel(texts);
  const everyone = {4: addressesOf(fleet, facts, 4), 6: addressesOf(fleet, facts, 6)};
  let compared = 0;
  const differences: string[] = [];
  fleet.forEach((host, index) => {
    const table = `iw_${index}`;
    for (const packet of packetsFor(host, facts.get(host.host)!, everyone, packetsPerHost)) {
      const family = parseNetwork(packet.source)?.family === 4 ? 4 : 6;
      const iptables = evaluate(family === 4 ? host.v4 : host.v6, packet);
      const nftables = evaluateNft(ruleset, packet, {tables: (candidate) => candidate.name === table});
      compared += 1;
      const open = iptables.verdict === 'ACCEPT';
      if (nftables.outcome === 'may-drop' || iptables.uncertain.length > 0 || open !== (nftables.outcome === 'pass')) {
        differences.push(`${host.host}: ${JSON.stringify(packet)}: iptables ${iptables.verdict}, nftables ${nftables.outcome} ${nftables.reason ?? ''}`);
      }
    }
  });
  expect(differences.slice(0, 5)).toEqual([]);
  return compared;
}

const FIXTURES = readdirSync(new URL('../../fixtures/inventories/', import.meta.url))
  .filter((file) => file.endsWith('.json') && file !== 'seed.json') // seed.json has no addresses (discover gives them)
  .map((file) => file.slice(0, -'.json'.length))
  .sort();

function fixture(name: string): Inventory {
  return parseInventoryText(readFixture(`inventories/${name}.json`), name);
}

// ---------------------------------------------------------------------------
// Random fleets (the shape of property.test.ts's, smaller)

const portSpec = fc.oneof(
  fc.constantFrom(22, 53, 80, 443, 3306, 2222),
  fc.integer({min: 1, max: 65535}),
  fc.tuple(fc.integer({min: 1, max: 65000}), fc.integer({min: 0, max: 300})).map(([first, width]) => `${first}-${Math.min(65535, first + width)}`),
);
const SOURCES = ['internet', 'private', 'lb', 'app', 'db', 'cache', '10.132.0.0/24', '10.132.0.12/32', '0.0.0.0/0', 'fd00:132::/64', '2001:db8::/32', 'fd00:132::11/128', '192.0.2.0/24'];

const fleetShape = fc.record({
  hosts: fc.array(
    fc.record({
      nics: fc.constantFrom('both', 'both', 'public', 'private'),
      families: fc.constantFrom('both', 'both', '4', '6'),
      roles: fc.subarray(['bastion', 'lb', 'app', 'db', 'cache'], {maxLength: 3}),
      sshPort: fc.constantFrom(undefined, 2222),
      allows: fc.array(fc.tuple(portSpec, fc.constantFrom('tcp', 'udp'), fc.nat(SOURCES.length + 4)), {maxLength: 2}),
    }),
    {minLength: 2, maxLength: 5},
  ),
  cache: fc.record({accept: fc.array(fc.tuple(fc.array(portSpec, {minLength: 1, maxLength: 3}), fc.constantFrom('tcp', 'udp'), fc.nat(SOURCES.length)), {maxLength: 2}), peers: fc.array(portSpec, {maxLength: 2})}),
  options: fc.record({strictOutbound: fc.boolean(), trustPrivate: fc.boolean(), logDrops: fc.boolean()}),
});

function randomInventory(shape: typeof fleetShape extends fc.Arbitrary<infer T> ? T : never): unknown {
  const names = shape.hosts.map((_host, index) => `h${index}`);
  const source = (seed: number): string => [...SOURCES, ...names][seed % (SOURCES.length + names.length)] as string;
  return {
    options: shape.options,
    roles: {cache: {accept: shape.cache.accept.map(([ports, proto, from]) => ({ports, proto, from: source(from)})), peers: shape.cache.peers}},
    hosts: shape.hosts.map((host, index) => {
      const sides = host.nics === 'both' ? (['public', 'private'] as const) : ([host.nics] as const);
      const addresses = (side: 'public' | 'private'): string[] => {
        const v4 = side === 'public' ? `203.0.113.${10 + index}` : `10.132.0.${10 + index}`;
        const v6 = side === 'public' ? `2001:db8:100::${10 + index}` : `fd00:132::${10 + index}`;
        return host.families === 'both' ? [v4, v6] : host.families === '4' ? [v4] : [v6];
      };
      return {
        name: names[index],
        ssh: host.sshPort === undefined ? names[index] : `${names[index]}:${host.sshPort}`,
        roles: host.roles,
        allow: host.allows.map(([port, proto, from]) => ({port, proto, from: source(from)})),
        interfaces: Object.fromEntries(sides.map((side) => [side, side === 'public' ? 'eth0' : 'ens4'])),
        addresses: Object.fromEntries(sides.map((side) => [side, addresses(side)])),
      };
    }),
  };
}

// ---------------------------------------------------------------------------

describe('nftables table: text', () => {
  it('is one table inet isolate_wizard, the same text every time, with base chains at priority filter', () => {
    const inv = fixture('log-drops');
    const [first] = compileFleet(inv, inventoryFacts(inv));
    const text = compileNftTable(first!);
    expect(text.startsWith('table inet isolate_wizard {\n')).toBe(true);
    expect(text).toContain('type filter hook input priority filter; policy drop;');
    expect(text).toContain('type filter hook forward priority filter; policy drop;');
    expect(text).toContain('type filter hook output priority filter; policy accept;');
    expect(text).toContain('jump iw_log_drop comment "log then drop the rest"');
    expect(text).toContain('limit rate 10/minute burst 20 packets log prefix "isolate-wizard DROP " comment "log dropped (rate-limited)"');
    expect(compileNftTable(compileFleet(inv, inventoryFacts(inv))[0]!)).toBe(text);
  });

  it('cuts comments to 128 bytes between characters and never writes a double quote', () => {
    expect(Buffer.byteLength(nftComment('é'.repeat(100)), 'utf8')).toBe(128);
    expect(nftComment('x'.repeat(127) + 'é')).toBe('x'.repeat(127));
    const host: CompiledHost = {
      host: 'odd',
      warnings: [],
      v4: {family: 4, tables: [{name: 'filter', chains: [{name: 'INPUT', policy: 'DROP'}], rules: [{chain: 'INPUT', spec: ['-m', 'comment', '--comment', `say "hi" ${'y'.repeat(300)}`, '-j', 'ACCEPT']}]}]},
      v6: {family: 6, tables: [{name: 'filter', chains: [{name: 'INPUT', policy: 'DROP'}], rules: []}]},
    };
    const line = compileNftTable(host).split('\n').find((text) => text.includes('accept'))!;
    expect(line).toMatch(/^\t\tmeta nfproto ipv4 accept comment "say 'hi' y+"$/);
    expect(Buffer.byteLength(/comment "(.*)"/.exec(line)![1]!, 'utf8')).toBe(128);
  });

  it('refuses a rule it cannot translate, naming the host and the rule', () => {
    const host: CompiledHost = {
      host: 'web-9',
      warnings: [],
      v4: {family: 4, tables: [{name: 'filter', chains: [{name: 'INPUT', policy: 'DROP'}], rules: [{chain: 'INPUT', spec: ['-p', 'tcp', '-m', 'recent', '--set', '-j', 'ACCEPT']}]}]},
      v6: {family: 6, tables: [{name: 'filter', chains: [{name: 'INPUT', policy: 'DROP'}], rules: []}]},
    };
    expect(() => compileNftTable(host)).toThrow(InputError);
    expect(() => compileNftTable(host)).toThrow('web-9: cannot write IPv4 rule "-A INPUT -p tcp -m recent --set -j ACCEPT" in nftables: -m recent');
  });

  it('keeps a host\'s rule count to its flows: one db and 200 app servers need no more rules than 2', () => {
    const fleet = (apps: number): Inventory =>
      validateInventory({
        hosts: [
          {name: 'bastion-1', ssh: 'bastion-1', roles: ['bastion'], interfaces: {public: 'eth0', private: 'eth1'}, addresses: {public: ['203.0.113.2'], private: ['10.0.0.2', 'fd00::2']}},
          {name: 'db-1', ssh: 'db-1', roles: ['db'], interfaces: {private: 'eth1'}, addresses: {private: ['10.0.0.3', 'fd00::3']}},
          ...Array.from({length: apps}, (_unused, index) => ({
            name: `app-${index}`,
            ssh: `app-${index}`,
            roles: ['app'],
            interfaces: {private: 'eth1'},
            addresses: {private: [`10.1.${index >> 8}.${index & 255}`, `fd00::1:${index.toString(16)}`]},
          })),
        ],
      });
    const dbTable = (apps: number): string => {
      const inv = fleet(apps);
      return compileNftTable(compileFleet(inv, inventoryFacts(inv)).find((host) => host.host === 'db-1')!);
    };
    const rules = (text: string): string[] => text.split('\n').filter((line) => /^\t\t/.test(line) && !/^\t\t(type|flags|elements) /.test(line));
    const small = dbTable(2);
    const large = dbTable(200);
    expect(rules(large)).toHaveLength(rules(small).length);
    expect(large).toContain('ip saddr @in_app_db_mysql_v4 tcp dport 3306 ct state new accept comment "app * -> db mysql"');
    expect(large).toContain('ip6 saddr @in_app_db_mysql_v6 tcp dport 3306 ct state new accept comment "app * -> db mysql"');
    const elements = /set in_app_db_mysql_v4 \{[^}]*elements = \{ ([^}]*) \}/.exec(large)![1]!.split(', ');
    expect(elements).toHaveLength(200);
  });
});

describe.skipIf(!canUseNetns)('nftables table: the kernel loads it and it gives the iptables rulesets\' access', () => {
  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', NAMESPACE]);
  });
  afterAll(() => {
    spawnSync('ip', ['netns', 'del', NAMESPACE]);
  });

  it.each(FIXTURES)('fixture %s: every sampled packet, IPv4 and IPv6, every host', (name) => {
    expect(expectSameAccess(fixture(name))).toBeGreaterThan(1000);
  }, 120_000);

  // The grouped table (a rule per group of peers, matching the group's address set) against the
  // per-address iptables rulesets: the same access, packet by packet.
  it.each(FIXTURES)('fixture %s, grouped table with its address sets: every sampled packet, every host', (name) => {
    expect(expectSameAccess(fixture(name), PACKETS_PER_HOST, (host) => compileGroupedNftTable(host, true))).toBeGreaterThan(1000);
  }, 120_000);

  // Each random fleet twice: the per-address table and the grouped one with its address sets.
  it('random fleets (roles, CIDR and host sources, 1-2 NICs, v4/v6, allows, options), per-address and grouped tables', () => {
    let fleets = 0;
    fc.assert(
      fc.property(fleetShape, (shape) => {
        let inventory: Inventory;
        try {
          inventory = validateInventory(randomInventory(shape));
        } catch {
          return; // a combination the validator refuses
        }
        expectSameAccess(inventory, PACKETS_PER_RANDOM_HOST);
        expectSameAccess(inventory, PACKETS_PER_RANDOM_HOST, (host) => compileGroupedNftTable(host, true));
        fleets += 1;
      }),
      {numRuns: 30},
    );
    expect(fleets).toBeGreaterThan(15);
  }, 300_000);

  it('folds a CIDR and the addresses inside it into one interval set the kernel takes', () => {
    const grant = (source: string, text: string): {chain: string; spec: string[]} => ({
      chain: 'INPUT',
      spec: ['-s', source, '-i', 'eth1', '-p', 'tcp', '-m', 'tcp', '--dport', '5432', '-m', 'conntrack', '--ctstate', 'NEW', '-m', 'comment', '--comment', text, '-j', 'ACCEPT'],
    });
    const host: CompiledHost = {
      host: 'pg-1',
      warnings: [],
      v4: {family: 4, tables: [{name: 'filter', chains: [{name: 'INPUT', policy: 'DROP'}], rules: [grant('10.132.0.12/32', 'a'), grant('10.132.0.0/24', 'b'), grant('10.9.0.1/32', 'c')]}]},
      v6: {family: 6, tables: [{name: 'filter', chains: [{name: 'INPUT', policy: 'DROP'}], rules: []}]},
    };
    const text = compileNftTable(host);
    expect(text).toContain('\t\tflags interval\n\t\telements = { 10.9.0.1, 10.132.0.0/24 }\n');
    const ruleset = throughKernel([text]);
    const packet = (source: string): Packet => ({chain: 'INPUT', inInterface: 'eth1', source, destination: '10.132.0.5', protocol: 'tcp', sourcePort: 40000, destinationPort: 5432, state: 'NEW'});
    for (const source of ['10.132.0.12', '10.132.0.200', '10.9.0.1', '10.9.0.2', '10.133.0.1']) {
      expect(evaluateNft(ruleset, packet(source)).outcome === 'pass').toBe(evaluate(host.v4, packet(source)).verdict === 'ACCEPT');
    }
  });

  it('the 200-app fleet\'s sets of both families load (nft -c then nft -f)', () => {
    const inv = validateInventory({
      hosts: [
        {name: 'db-1', ssh: 'db-1', roles: ['db'], interfaces: {private: 'eth1'}, addresses: {private: ['10.0.0.3', 'fd00::3']}},
        ...Array.from({length: 200}, (_unused, index) => ({
          name: `app-${index}`, ssh: `app-${index}`, roles: ['app'], interfaces: {private: 'eth1'},
          addresses: {private: [`10.1.${index >> 8}.${index & 255}`, `fd00::1:${index.toString(16)}`]},
        })),
      ],
    });
    const db = compileFleet(inv, inventoryFacts(inv)).find((host) => host.host === 'db-1')!;
    const ruleset = throughKernel([compileNftTable(db)]);
    const set = ruleset.tables[0]!.sets.get('in_app_db_mysql_v6');
    expect(set?.elements).toHaveLength(200);
  });
});
