import {readFileSync} from 'node:fs';
import {join} from 'node:path';
import fc from 'fast-check';
import {describe, expect, it} from 'vitest';
import {canonicalAddress, isPrivateAddress, parseAddress, parseCidrDetailed} from '../../source/core/addresses.js';
import {InputError} from '../../source/core/errors.js';
import {parseAddress as parseIpAddress} from '../../source/core/ip.js';
import {
  factsFromInventory,
  fleetOptions,
  formatPath,
  parseInventoryText,
  parseSshDestination,
  validateInventory,
} from '../../source/core/inventory.js';
import {BUILTIN_ROLES, resolveRoles} from '../../source/core/roles.js';

const fixtures = join(import.meta.dirname, '..', '..', 'fixtures', 'inventories');

/** A small valid fleet to break one piece at a time. */
function fleet(): {roles?: Record<string, unknown>; options?: unknown; hosts: Record<string, unknown>[]} {
  return {
    hosts: [
      {name: 'tunnel-1', ssh: 'tunnel-1', roles: ['bastion']},
      {name: 'web-1', ssh: 'web-1', roles: ['app']},
      {name: 'db-1', ssh: 'db-1', roles: ['db']},
    ],
  };
}

function problemsOf(json: unknown): readonly string[] {
  try {
    validateInventory(json);
  } catch (error) {
    expect(error).toBeInstanceOf(InputError);
    return (error as InputError).problems;
  }
  throw new Error('expected the inventory to be refused');
}

function withHost(index: number, changes: Record<string, unknown>): ReturnType<typeof fleet> {
  const inv = fleet();
  inv.hosts[index] = {...inv.hosts[index], ...changes};
  return inv;
}

const FACTS = {
  interfaces: {public: 'eth0', private: 'eth1'},
  addresses: {public: ['203.0.113.5'], private: ['10.0.0.5']},
};

describe('valid inventories', () => {
  it('accepts the exact seed example and keeps its meaning', () => {
    const inv = parseInventoryText(readFileSync(join(fixtures, 'seed.json'), 'utf8'), 'seed.json');
    expect(inv.hosts.map((host) => `${host.name}:${host.roles.join(',')}`)).toEqual([
      'tunnel-1:bastion',
      'haproxy-www:lb',
      'wordpress-1:app',
      'wordpress-2:app',
      'mysql-1:db',
      'mysql-2:db',
    ]);
    expect(fleetOptions(inv)).toEqual({strictOutbound: false, trustPrivate: false, logDrops: false});
    const app = resolveRoles(inv).get('app');
    expect(app?.peers).toEqual([
      {first: 24007, last: 24008},
      {first: 49152, last: 49251},
    ]);
    // Fields not given keep the built-in's: the lb still reaches app on destination 80/443.
    expect(app?.accept).toEqual(BUILTIN_ROLES['app']?.accept);
    expect(app?.accept[0]).toMatchObject({from: 'lb', proto: 'tcp', ports: [{first: 80, last: 80}, {first: 443, last: 443}]});
  });

  it('accepts every fixture inventory', () => {
    for (const file of ['seed-with-addresses', 'single-nic', 'two-bastions', 'custom-role', 'strict-outbound', 'trust-private', 'log-drops']) {
      expect(() => parseInventoryText(readFileSync(join(fixtures, `${file}.json`), 'utf8'), file)).not.toThrow();
    }
  });

  it('normalizes ports, protocols, addresses and options', () => {
    const inv = validateInventory({
      options: {logDrops: true},
      roles: {cache: {accept: [{ports: ['6379', 80, '8000-8100'], from: 'app'}]}},
      hosts: [
        {
          name: 'c-1',
          ssh: 'root@[2001:DB8::0:1]:2222',
          roles: ['cache'],
          allow: [{port: 161, proto: 'udp', from: '2001:db8:feed::/48'}],
          ...FACTS,
          addresses: {public: ['2001:0DB8:0:0::5'], private: ['10.0.0.5']},
        },
      ],
    });
    expect(inv.options).toEqual({strictOutbound: false, trustPrivate: false, logDrops: true});
    expect(inv.roles['cache']?.accept?.[0]).toEqual({
      ports: [{first: 6379, last: 6379}, {first: 80, last: 80}, {first: 8000, last: 8100}],
      proto: 'tcp',
      from: 'app',
    });
    const host = inv.hosts[0]!;
    expect(host.allow).toEqual([{ports: [{first: 161, last: 161}], proto: 'udp', from: '2001:db8:feed::/48'}]);
    expect(factsFromInventory(host)).toEqual({
      interfaces: {public: 'eth0', private: 'eth1'},
      addresses: {public: ['2001:db8::5'], private: ['10.0.0.5']},
      sshPort: 2222,
    });
  });

  it('gives no facts when the addresses are left to discovery', () => {
    const inv = validateInventory(withHost(1, {interfaces: {private: 'ens4'}}));
    expect(inv.hosts[1]?.interfaces).toEqual({private: 'ens4'});
    expect(factsFromInventory(inv.hosts[1]!)).toBeUndefined();
  });

  it('accepts a private-only host and a jump through an inventory host or a destination', () => {
    expect(() =>
      validateInventory({
        hosts: [
          {name: 'tunnel-1', ssh: 'ops@tunnel.example.net:2200', roles: ['bastion'], jump: 'ops@gw.example.net'},
          {name: 'db-1', ssh: '10.0.0.7', jump: 'tunnel-1', roles: ['db'], interfaces: {private: 'eth1'}, addresses: {private: ['10.0.0.7']}},
        ],
      }),
    ).not.toThrow();
  });
});

describe('malformed inventories: one exact line per problem', () => {
  const cases: [string, () => unknown, string[]][] = [
    ['unknown role', () => withHost(2, {roles: ['dbx']}), ['hosts[2].roles[0]: unknown role "dbx" (known: app, bastion, db, lb)']],
    [
      'peer range first > last',
      () => ({...fleet(), roles: {app: {peers: ['24007-24008', '49252-49151']}}}),
      ['roles.app.peers[1]: "49252-49151" is not a port range (first > last)'],
    ],
    ['port 0', () => ({...fleet(), roles: {app: {peers: [0]}}}), ['roles.app.peers[0]: 0 is not a port (1-65535)']],
    [
      'port above 65535',
      () => withHost(1, {allow: [{port: 70000, from: 'internet'}]}),
      ['hosts[1].allow[0].port: 70000 is not a port (1-65535)'],
    ],
    [
      'fractional port',
      () => ({...fleet(), roles: {cache: {accept: [{ports: [63.5], from: 'app'}]}}}),
      ['roles.cache.accept[0].ports[0]: 63.5 is not a port (not a whole number)'],
    ],
    [
      'range beyond 65535',
      () => ({...fleet(), roles: {app: {peers: ['65000-70000']}}}),
      ['roles.app.peers[0]: "65000-70000" is not a port range (ports are 1-65535)'],
    ],
    [
      'port text that is not a port',
      () => ({...fleet(), roles: {app: {peers: ['http']}}}),
      ['roles.app.peers[0]: "http" is not a port or port range (use 80 or "8000-8100")'],
    ],
    [
      'port of the wrong type',
      () => ({...fleet(), roles: {app: {peers: [true]}}}),
      ['roles.app.peers[0]: expected a port (80) or a port range ("8000-8100"), got boolean true'],
    ],
    [
      'role from a missing role or host',
      () => ({...fleet(), roles: {cache: {accept: [{ports: [6379], from: 'apps'}]}}}),
      ['roles.cache.accept[0].from: "apps" is not a role, a host, a CIDR, "internet" or "private" (roles: app, bastion, cache, db, lb)'],
    ],
    [
      'CIDR with host bits',
      () => withHost(1, {allow: [{port: 8443, from: '10.0.0.5/8'}]}),
      ['hosts[1].allow[0].from: "10.0.0.5/8" has host bits set (did you mean 10.0.0.0/8?)'],
    ],
    [
      'bad IPv4 address as source',
      () => withHost(1, {allow: [{port: 8443, from: '10.0.0.256'}]}),
      ['hosts[1].allow[0].from: "10.0.0.256" is not an IPv4/IPv6 address or CIDR'],
    ],
    [
      'bad IPv6 prefix',
      () => withHost(1, {allow: [{port: 8443, from: '2001:db8::/129'}]}),
      ['hosts[1].allow[0].from: "2001:db8::/129" has a bad prefix length (0-128)'],
    ],
    [
      'duplicate names',
      () => withHost(2, {name: 'web-1'}),
      ['hosts[2].name: duplicate name "web-1" (also hosts[1])'],
    ],
    [
      'duplicate ssh destinations (other login, same machine)',
      () => ({hosts: [{name: 'a', ssh: 'root@10.0.0.1', roles: []}, {name: 'b', ssh: 'admin@10.0.0.1', roles: []}]}),
      ['hosts[1].ssh: "admin@10.0.0.1" is the same destination as hosts[0]'],
    ],
    [
      'jump that points nowhere',
      () => withHost(1, {jump: 'tunel-1'}),
      ['hosts[1].jump: "tunel-1" points nowhere (not a host of this inventory; a destination needs @, . or :)'],
    ],
    ['jump through itself', () => withHost(1, {jump: 'web-1'}), ['hosts[1].jump: "web-1" jumps through itself']],
    [
      'jumps in a circle',
      () => {
        const inv = withHost(1, {jump: 'db-1'});
        inv.hosts[2] = {...inv.hosts[2], jump: 'web-1'};
        return inv;
      },
      ['hosts[1].jump: jump hosts go in a circle (web-1 -> db-1 -> web-1)', 'hosts[2].jump: jump hosts go in a circle (db-1 -> web-1 -> db-1)'],
    ],
    [
      'name with a space',
      () => withHost(1, {name: 'web 1'}),
      ['hosts[1].name: "web 1" may only use A-Z a-z 0-9 . _ -'],
    ],
    ['empty fleet', () => ({hosts: []}), ['hosts: the fleet is empty (add at least one host)']],
    [
      'unknown key on a host',
      () => withHost(0, {sshh: 'x'}),
      ['hosts[0].sshh: unknown key (allowed here: name, ssh, roles, jump, allow, interfaces, addresses)'],
    ],
    [
      'unknown option',
      () => ({...fleet(), options: {strictOutbound: true, logDrop: true}}),
      ['options.logDrop: unknown key (allowed here: strictOutbound, trustPrivate, logDrops, backend, restrictPublished, otherFirewall)'],
    ],
    ['wrong type: roles as a string', () => withHost(1, {roles: 'app'}), ['hosts[1].roles: expected array, got "app"']],
    ['missing ssh', () => ({hosts: [{name: 'a', roles: []}]}), ['hosts[0].ssh: missing (expected string)']],
    [
      'wrong protocol',
      () => withHost(1, {allow: [{port: 53, proto: 'icmp', from: 'internet'}]}),
      ['hosts[1].allow[0].proto: "icmp" is not one of tcp, udp'],
    ],
    [
      'address both public and private',
      () => withHost(1, {...FACTS, addresses: {public: ['203.0.113.5'], private: ['10.0.0.5', '203.0.113.5']}}),
      ['hosts[1].addresses.private[1]: 203.0.113.5 is also listed as public'],
    ],
    [
      'interface named twice',
      () => withHost(1, {...FACTS, interfaces: {public: 'eth0', private: 'eth0'}}),
      ['hosts[1].interfaces.private: "eth0" is also the public interface'],
    ],
    [
      'private address without a private interface',
      () => withHost(1, {...FACTS, interfaces: {public: 'eth0'}}),
      ['hosts[1].addresses.private: private addresses given without interfaces.private'],
    ],
    [
      'private interface without private addresses',
      () => withHost(1, {...FACTS, addresses: {public: ['203.0.113.5']}}),
      ['hosts[1].interfaces.private: a private interface given without addresses.private'],
    ],
    [
      'address with a prefix',
      () => withHost(1, {...FACTS, addresses: {public: ['203.0.113.5/24'], private: ['10.0.0.5']}}),
      ['hosts[1].addresses.public[0]: "203.0.113.5/24" is not an address (give it without /prefix)'],
    ],
    [
      'not an address',
      () => withHost(1, {...FACTS, addresses: {public: ['203.0.113'], private: ['10.0.0.5']}}),
      ['hosts[1].addresses.public[0]: "203.0.113" is not an IPv4/IPv6 address'],
    ],
    [
      'same address on two hosts',
      () => {
        const inv = withHost(1, FACTS);
        inv.hosts[2] = {...inv.hosts[2], interfaces: {private: 'eth1'}, addresses: {private: ['10.0.0.5']}};
        return inv;
      },
      ['hosts[2].addresses.private[0]: 10.0.0.5 is also an address of web-1 (hosts[1])'],
    ],
    [
      'addresses without interfaces',
      () => withHost(1, {addresses: {private: ['10.0.0.5']}}),
      ['hosts[1].addresses: addresses given without interfaces (give both, or neither to discover them)'],
    ],
    [
      'ssh destination that is an option',
      () => withHost(1, {ssh: '-oProxyCommand=sh'}),
      ['hosts[1].ssh: "-oProxyCommand=sh" is not an ssh destination (use an ssh config alias or [user@]host[:port])'],
    ],
    [
      'ssh port out of range',
      () => withHost(1, {ssh: 'root@web-1:0'}),
      ['hosts[1].ssh: "root@web-1:0" is not an ssh destination (use an ssh config alias or [user@]host[:port])'],
    ],
    [
      'host named like a role',
      () => withHost(1, {name: 'app'}),
      ['hosts[1].name: "app" is also a role name (a "from" would be ambiguous)'],
    ],
    ['name too long', () => withHost(1, {name: 'w'.repeat(64)}), ['hosts[1].name: longer than 63 characters']],
    ['host named like an address', () => withHost(1, {name: '10.0.0.1'}), ['hosts[1].name: "10.0.0.1" looks like an address (a "from" would be ambiguous)']],
    ['role listed twice', () => withHost(1, {roles: ['app', 'app']}), ['hosts[1].roles[1]: role "app" is listed twice']],
    ['loopback as an interface', () => withHost(1, {interfaces: {private: 'lo'}}), ['hosts[1].interfaces.private: "lo" is the loopback interface']],
    ['inventory that is not an object', () => [], ['inventory: expected object, got an array']],
  ];

  for (const [label, build, expected] of cases) {
    it(label, () => {
      expect(problemsOf(build())).toEqual(expected);
    });
  }

  it(`has at least 25 cases (${cases.length})`, () => {
    expect(cases.length).toBeGreaterThanOrEqual(25);
  });

  it('reports every problem at once, shape and meaning together', () => {
    const inv = fleet();
    inv.roles = {app: {peers: ['9-1'], peersProto: 'sctp'}};
    inv.hosts[0] = {...inv.hosts[0], roles: ['bastionx']};
    inv.hosts[1] = {...inv.hosts[1], jump: 'nowhere', colour: 'red'};
    expect([...problemsOf(inv)].sort()).toEqual(
      [
        'roles.app.peersProto: "sctp" is not one of tcp, udp',
        'hosts[1].colour: unknown key (allowed here: name, ssh, roles, jump, allow, interfaces, addresses)',
        'roles.app.peers[0]: "9-1" is not a port range (first > last)',
        'hosts[0].roles[0]: unknown role "bastionx" (known: app, bastion, db, lb)',
        'hosts[1].jump: "nowhere" points nowhere (not a host of this inventory; a destination needs @, . or :)',
      ].sort(),
    );
  });

  it('finds a wrong shape anywhere in a full inventory (a valid one skips zod; a broken one must not)', () => {
    const full = (): Record<string, unknown> => ({
      options: {strictOutbound: true, trustPrivate: false, logDrops: true},
      roles: {
        app: {description: 'apps', accept: [{ports: [80, '8000-8100'], proto: 'tcp', from: 'lb'}], peers: [9000], peersProto: 'udp'},
      },
      hosts: [
        {name: 'tunnel-1', ssh: 'root@10.0.0.1', roles: ['bastion'], ...structuredClone(FACTS)},
        {
          name: 'web-1',
          ssh: 'web-1',
          roles: ['app'],
          jump: 'tunnel-1',
          allow: [{port: 443, proto: 'tcp', from: 'internet'}],
          interfaces: {private: 'eth1'},
          addresses: {private: ['10.0.0.6']},
        },
      ],
    });
    expect(validateInventory(full()).hosts).toHaveLength(2);
    const PORT_SLOTS = new Set(['ports', 'peers', 'port']);
    const REQUIRED = new Set(['hosts', 'name', 'ssh', 'roles', 'ports', 'from', 'port']);
    const kindOf = (value: unknown): string => (Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value);
    // Every slot of the inventory, with the key it sits under and whether its parent is a record of free names.
    const slots: (string | number)[][] = [];
    const walk = (value: unknown, path: (string | number)[]): void => {
      if (path.length > 0) slots.push(path);
      if (value !== null && typeof value === 'object') {
        for (const [key, child] of Object.entries(value)) walk(child, [...path, Array.isArray(value) ? Number(key) : key]);
      }
    };
    walk(full(), []);
    let checked = 0;
    for (const path of slots) {
      const parentPath = path.slice(0, -1);
      const key = path[path.length - 1] as string | number;
      const original = path.reduce<unknown>((value, step) => (value as Record<string, unknown>)[step], full());
      const slotName = String(typeof key === 'number' ? parentPath[parentPath.length - 1] : key);
      const isPort = PORT_SLOTS.has(slotName);
      const bad: unknown[] = [null, true, 'sctp', 7, [], {}].filter((value) => {
        if (kindOf(value) === kindOf(original) && !(slotName === 'proto' || slotName === 'peersProto')) return false;
        if (isPort && (typeof value === 'number' || typeof value === 'string') && !(typeof key !== 'number' && slotName !== 'port')) return false;
        if (parentPath[0] === 'roles' && parentPath.length === 1 && kindOf(value) === 'object') return false; // an empty role is a role
        if (parentPath[0] === 'options' && typeof value === 'boolean') return false;
        return true;
      });
      // Required keys, left out (the top-level `roles` is the optional record, not a host's list).
      if (typeof key === 'string' && REQUIRED.has(key) && !(key === 'roles' && parentPath.length === 0)) bad.push(undefined);
      for (const value of bad) {
        const inv = full();
        const parent = parentPath.reduce<unknown>((node, step) => (node as Record<string, unknown>)[step], inv) as Record<string, unknown>;
        if (value === undefined) delete parent[key];
        else parent[key] = value;
        let problems: readonly string[] = [];
        try {
          validateInventory(inv);
        } catch (error) {
          problems = (error as InputError).problems;
        }
        expect(problems.some((line) => line.startsWith(`${formatPath(path)}:`) || line.startsWith(`${formatPath(path)}[`)), `${formatPath(path)} = ${JSON.stringify(value)}: ${problems.join('; ')}`).toBe(true);
        checked += 1;
      }
      if (kindOf(original) === 'object' && !(parentPath.length === 0 && key === 'roles')) {
        const inv = full();
        const node = path.reduce<unknown>((value, step) => (value as Record<string, unknown>)[step], inv) as Record<string, unknown>;
        node['colour'] = 'red';
        expect(problemsOf(inv)).toContainEqual(expect.stringMatching(new RegExp(`^${formatPath([...path, 'colour']).replace(/[[\].]/g, '\\$&')}: unknown key`)));
        checked += 1;
      }
    }
    // An explicit undefined or a non-plain object is left to zod, which reads them as it always has.
    const withUndefinedJump = full();
    (withUndefinedJump['hosts'] as Record<string, unknown>[])[1]!['jump'] = undefined;
    expect(validateInventory(withUndefinedJump).hosts[1]?.jump).toBeUndefined();
    expect(checked).toBeGreaterThan(100);
  });

  it('names the file on a JSON syntax error', () => {
    expect(() => parseInventoryText('{"hosts": [', 'fleet.json')).toThrow(InputError);
    try {
      parseInventoryText('{"hosts": [', 'fleet.json');
    } catch (error) {
      expect((error as InputError).problems).toHaveLength(1);
      expect((error as InputError).problems[0]).toMatch(/^fleet\.json: not valid JSON \(/);
    }
  });
});

describe('normal form and sameness, whatever the spelling', () => {
  const sshOf = (...destinations: string[]) => ({hosts: destinations.map((ssh, index) => ({name: `h-${index}`, ssh, roles: []}))});

  it('finds the same ssh destination across spellings, and keeps another port apart', () => {
    expect(problemsOf(sshOf('root@[fd00::1]', 'FD00:0::1'))).toEqual(['hosts[1].ssh: "FD00:0::1" is the same destination as hosts[0]']);
    expect(problemsOf(sshOf('ops@[fd00::1]:22', '[fd00:0:0::1]:22'))).toEqual(['hosts[1].ssh: "[fd00:0:0::1]:22" is the same destination as hosts[0]']);
    expect(problemsOf(sshOf('Web-1', 'ops@web-1'))).toEqual(['hosts[1].ssh: "ops@web-1" is the same destination as hosts[0]']);
    expect(() => validateInventory(sshOf('web-1', 'web-1:22', 'web-1:2222', '[fd00::1]', '[fd00::1]:22', '10.0.0.1', '10.0.0.1:22'))).not.toThrow();
  });

  it('finds the same address across spellings and hosts', () => {
    const inv = withHost(1, {...FACTS, addresses: {public: ['2001:DB8::5'], private: ['10.0.0.5']}});
    inv.hosts[2] = {...inv.hosts[2], ...FACTS, addresses: {public: ['2001:db8:0::5'], private: []}, interfaces: {public: 'eth0'}};
    expect(problemsOf(inv)).toEqual(['hosts[2].addresses.public[0]: 2001:db8::5 is also an address of web-1 (hosts[1])']);
  });

  it('gives interfaces as public, then private, however the JSON orders them', () => {
    const text = JSON.stringify(withHost(1, {interfaces: {private: 'eth1', public: 'eth0'}, addresses: {private: ['10.0.0.5'], public: ['203.0.113.5']}}));
    const host = parseInventoryText(text, 'inventory.json').hosts[1]!;
    expect(Object.keys(host.interfaces!)).toEqual(['public', 'private']);
    expect(Object.keys(host.addresses!)).toEqual(['public', 'private']);
    expect(host.addresses).toEqual({public: ['203.0.113.5'], private: ['10.0.0.5']});
    expect(parseInventoryText(JSON.stringify(withHost(1, {interfaces: {private: 'eth1'}})), 'x').hosts[1]?.interfaces).toEqual({private: 'eth1'});
  });

  it('respells only the address lists that need it, wherever the first odd spelling is', () => {
    const inv = parseInventoryText(
      JSON.stringify(withHost(1, {...FACTS, addresses: {public: ['203.0.113.5', 'FD00:0::5', 'fd00::6'], private: ['10.0.0.5', 'fd00::7']}})),
      'x',
    );
    expect(inv.hosts[1]?.addresses).toEqual({public: ['203.0.113.5', 'fd00::5', 'fd00::6'], private: ['10.0.0.5', 'fd00::7']});
  });

  it('shares one reading between the spellings of an IPv6 address', () => {
    expect(parseAddress('FD00:0::5')).toBe(parseAddress('fd00::5'));
    expect(parseIpAddress('fd00:0:0::5')).toBe(parseIpAddress('fd00::5'));
    expect(parseIpAddress('fd00:0:0::5')).toEqual({family: 6, value: 0xfd00_0000_0000_0000_0000_0000_0000_0005n});
    expect(canonicalAddress('FD00:0000::5')).toBe('fd00::5');
  });
});

describe('ssh destinations', () => {
  it('parses aliases, user@host:port and bracketed IPv6', () => {
    expect(parseSshDestination('tunnel-1')).toEqual({host: 'tunnel-1'});
    expect(parseSshDestination('root@10.0.0.1:2222')).toEqual({user: 'root', host: '10.0.0.1', port: 2222});
    expect(parseSshDestination('ops@[2001:db8::1]:22')).toEqual({user: 'ops', host: '2001:db8::1', port: 22});
    expect(parseSshDestination('2001:db8::1')).toEqual({host: '2001:db8::1'});
    expect(parseSshDestination('a b')).toBeUndefined();
    expect(parseSshDestination('host:99999')).toBeUndefined();
    expect(parseSshDestination('[not-v6]:22')).toBeUndefined();
  });
});

describe('addresses', () => {
  it('spells IPv6 the way ip6tables-save prints it', () => {
    expect(canonicalAddress('FD00:0132:0:0::0011')).toBe('fd00:132::11');
    expect(canonicalAddress('2001:db8:0:0:1:0:0:1')).toBe('2001:db8::1:0:0:1');
    expect(canonicalAddress('2001:0:0:1:0:0:0:1')).toBe('2001:0:0:1::1');
    expect(canonicalAddress('::ffff:10.0.0.1')).toBe('::ffff:10.0.0.1');
    expect(canonicalAddress('::1')).toBe('::1');
    expect(canonicalAddress('::')).toBe('::');
    expect(canonicalAddress('1:2:3:4:5:6:7::')).toBe('1:2:3:4:5:6:7:0');
    expect(canonicalAddress('1::2:3:4:5:6:7:8')).toBeUndefined();
    expect(canonicalAddress('1:::2')).toBeUndefined();
    expect(canonicalAddress('01.2.3.4')).toBeUndefined();
  });

  it('reads addresses exactly by the spelled-out grammar', () => {
    // The grammar as regular expressions and splits (the reader itself goes character by character).
    const octet = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
    const ipv4 = (text: string): number[] | undefined => {
      const parts = text.split('.');
      return parts.length === 4 && parts.every((part) => octet.test(part)) ? parts.map(Number) : undefined;
    };
    const groups = (part: string): number[] | undefined => {
      if (part === '') return [];
      const words: number[] = [];
      const list = part.split(':');
      for (const [index, group] of list.entries()) {
        if (group.includes('.')) {
          const v4 = index === list.length - 1 ? ipv4(group) : undefined;
          if (!v4) return undefined;
          words.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
        } else if (/^[0-9A-Fa-f]{1,4}$/.test(group)) {
          words.push(parseInt(group, 16));
        } else {
          return undefined;
        }
      }
      return words;
    };
    const ipv6 = (text: string): number[] | undefined => {
      if (!/^[0-9A-Fa-f:.]+$/.test(text)) return undefined;
      const halves = text.split('::');
      const head = groups(halves[0] ?? '');
      const tail = halves.length === 2 ? groups(halves[1] ?? '') : [];
      if (halves.length > 2 || !head || !tail) return undefined;
      const missing = 8 - head.length - tail.length;
      if (halves.length === 2 ? missing < 1 : head.length !== 8) return undefined;
      return [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail].flatMap((word) => [word >> 8, word & 0xff]);
    };
    const reference = (text: string): {family: number; bytes: number[]} | undefined => {
      const v4 = ipv4(text);
      if (v4) return {family: 4, bytes: v4};
      const v6 = text.includes(':') ? ipv6(text) : undefined;
      return v6 ? {family: 6, bytes: v6} : undefined;
    };
    const read = (text: string): {family: number; bytes: number[]} | undefined => {
      const parsed = parseAddress(text);
      return parsed && {family: parsed.family, bytes: [...parsed.bytes]};
    };
    const spelling = fc.oneof(
      fc.stringMatching(/^[0-9a-fA-F:.]{0,24}$/),
      fc.stringMatching(/^[0-2]?[0-9]{0,2}(\.[0-2]?[0-9]{0,2}){2,4}$/),
      fc.stringMatching(/^([0-9a-f]{0,5}:){0,8}[0-9a-f]{0,5}(\.[0-9]{1,3}){0,3}$/),
      fc.array(fc.integer({min: 0, max: 0xffff}), {minLength: 8, maxLength: 8}).chain((words) =>
        fc.tuple(fc.integer({min: 0, max: 8}), fc.integer({min: 0, max: 8})).map(([from, length]) => {
          const hex = words.map((word) => word.toString(16));
          return length === 0 ? hex.join(':') : `${hex.slice(0, from).join(':')}::${hex.slice(Math.min(8, from + length)).join(':')}`;
        }),
      ),
    );
    fc.assert(
      fc.property(spelling, (text) => {
        expect(read(text)).toEqual(reference(text));
      }),
      {numRuns: 5_000},
    );
  }, 60_000);

  it('parses CIDRs and refuses host bits', () => {
    expect(parseCidrDetailed('10.0.0.0/8')).toMatchObject({ok: true, cidr: {family: 4, text: '10.0.0.0/8'}});
    expect(parseCidrDetailed('10.1.2.3')).toMatchObject({ok: true, cidr: {family: 4, text: '10.1.2.3/32'}});
    expect(parseCidrDetailed('2001:db8:0:1::/64')).toMatchObject({ok: true, cidr: {family: 6, text: '2001:db8:0:1::/64'}});
    expect(parseCidrDetailed('2001:db8::1/64')).toEqual({ok: false, reason: 'has host bits set (did you mean 2001:db8::/64?)'});
  });

  it('knows private ranges', () => {
    expect(isPrivateAddress('10.132.0.1')).toBe(true);
    expect(isPrivateAddress('172.31.255.255')).toBe(true);
    expect(isPrivateAddress('172.32.0.1')).toBe(false);
    expect(isPrivateAddress('fd00:132::1')).toBe(true);
    expect(isPrivateAddress('2001:db8::1')).toBe(false);
  });
});
