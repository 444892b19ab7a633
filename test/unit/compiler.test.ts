import {readFileSync} from 'node:fs';
import {join} from 'node:path';
import fc from 'fast-check';
import {describe, expect, it} from 'vitest';
import {chunkPorts, compileFleet, LOG_DROP_CHAIN, MAX_COMMENT_LENGTH, MULTIPORT_SLOTS, mergePortRanges} from '../../source/core/compiler.js';
import {InputError} from '../../source/core/errors.js';
import {factsFromInventory, parseInventoryText, validateInventory, type Inventory} from '../../source/core/inventory.js';
import type {CompiledHost, HostFacts, Rule, Ruleset} from '../../source/core/model.js';
import {renderRuleset} from '../../source/core/render.js';
import {fleetPath} from '../../source/core/topology.js';

const fixtures = join(import.meta.dirname, '..', '..', 'fixtures', 'inventories');

function load(name: string, change?: (json: {options?: Record<string, boolean>; hosts: Record<string, unknown>[]}) => void): Inventory {
  const json = JSON.parse(readFileSync(join(fixtures, `${name}.json`), 'utf8'));
  change?.(json);
  return validateInventory(json);
}

function inventoryFacts(inv: Inventory): Map<string, HostFacts> {
  return new Map(inv.hosts.flatMap((host) => {
    const facts = factsFromInventory(host);
    return facts ? [[host.name, facts] as const] : [];
  }));
}

function compile(inv: Inventory): Map<string, CompiledHost> {
  return new Map(compileFleet(inv, inventoryFacts(inv)).map((host) => [host.host, host]));
}

function rulesOf(ruleset: Ruleset | undefined, chain = 'INPUT'): Rule[] {
  return (ruleset?.tables[0]?.rules ?? []).filter((rule) => rule.chain === chain);
}

function option(rule: Rule, name: string): string | undefined {
  const index = rule.spec.indexOf(name);
  return index === -1 ? undefined : rule.spec[index + 1];
}

/** "80,443,8000:8100" -> ["80", "443", "8000-8100"]. */
function portParts(text: string | undefined): string[] {
  return text === undefined ? [] : text.split(',').map((part) => part.replace(':', '-'));
}

/**
 * A deliberately small reading of our own output (the real evaluator lives elsewhere):
 * which sources may open a NEW tcp connection to which destination port, as
 * "source@interface:port" with source "*" for any and interface "*" for any.
 */
function tcpOpenings(ruleset: Ruleset | undefined): string[] {
  const openings: string[] = [];
  for (const rule of rulesOf(ruleset)) {
    if (option(rule, '-j') !== 'ACCEPT' || option(rule, '-p') !== 'tcp') continue;
    for (const port of portParts(option(rule, '--dport') ?? option(rule, '--dports'))) {
      openings.push(`${option(rule, '-s') ?? '*'}@${option(rule, '-i') ?? '*'}:${port}`);
    }
  }
  return openings.sort();
}

describe('the seed fleet (seed-with-addresses)', () => {
  const compiled = compile(load('seed-with-addresses'));

  it('opens to the internet only lb 80/443 and tunnel-1 22, in both families', () => {
    for (const [name, host] of compiled) {
      for (const ruleset of [host.v4, host.v6]) {
        const fromAnywhere = tcpOpenings(ruleset).filter((opening) => opening.startsWith('*@'));
        const expected =
          name === 'haproxy-www' ? ['*@eth0:443', '*@eth0:80'] : name === 'tunnel-1' ? ['*@eth0:22'] : [];
        expect(fromAnywhere, `${name} IPv${ruleset.family}`).toEqual(expected);
      }
    }
  });

  it('lets the lb reach the app servers on DESTINATION port 80/443 over the private interface', () => {
    for (const app of ['wordpress-1', 'wordpress-2']) {
      const openings = tcpOpenings(compiled.get(app)?.v4);
      expect(openings).toContain('10.132.0.11/32@eth1:80');
      expect(openings).toContain('10.132.0.11/32@eth1:443');
      expect(tcpOpenings(compiled.get(app)?.v6)).toContain('fd00:132::11/128@eth1:80');
    }
    // The seed's trap was `--sport 80`; no tcp rule may match on a source port.
    const tcpTokens = [...compiled.values()]
      .flatMap((host) => [host.v4, host.v6])
      .flatMap((ruleset) => rulesOf(ruleset).filter((rule) => option(rule, '-p') === 'tcp').flatMap((rule) => rule.spec));
    expect(tcpTokens).toContain('--dports');
    expect(tcpTokens).not.toContain('--sport');
    expect(tcpTokens).not.toContain('--sports');
  });

  it('lets mysql accept 3306 only from the wordpress servers and the other mysql', () => {
    expect(tcpOpenings(compiled.get('mysql-1')?.v4)).toEqual([
      '10.132.0.10/32@eth1:22',
      '10.132.0.12/32@eth1:3306',
      '10.132.0.13/32@eth1:3306',
      '10.132.0.15/32@eth1:3306',
    ]);
    expect(tcpOpenings(compiled.get('mysql-2')?.v6)).toEqual([
      'fd00:132::10/128@eth1:22',
      'fd00:132::12/128@eth1:3306',
      'fd00:132::13/128@eth1:3306',
      'fd00:132::14/128@eth1:3306',
    ]);
  });

  it('opens the GlusterFS peer ranges between the app servers only', () => {
    expect(tcpOpenings(compiled.get('wordpress-1')?.v4)).toContain('10.132.0.13/32@eth1:49152-49251');
    expect(tcpOpenings(compiled.get('mysql-1')?.v4).some((opening) => opening.endsWith('49152-49251'))).toBe(false);
  });

  it('gives every host but the bastion SSH only from the bastion private address on eth1', () => {
    for (const [name, host] of compiled) {
      const ssh = tcpOpenings(host.v4).filter((opening) => opening.endsWith(':22'));
      expect(ssh, name).toEqual(name === 'tunnel-1' ? ['*@eth0:22'] : ['10.132.0.10/32@eth1:22']);
    }
  });

  it('drops by default, keeps loopback, replies, NDP with hop limit 255, and never uses -m state', () => {
    for (const host of compiled.values()) {
      for (const ruleset of [host.v4, host.v6]) {
        const table = ruleset.tables[0]!;
        expect(ruleset.tables).toHaveLength(1);
        expect(table.name).toBe('filter');
        expect(table.chains).toEqual([
          {name: 'INPUT', policy: 'DROP'},
          {name: 'FORWARD', policy: 'DROP'},
          {name: 'OUTPUT', policy: 'ACCEPT'},
        ]);
        const input = rulesOf(ruleset);
        expect(input[0]?.spec.slice(0, 2)).toEqual(['-i', 'lo']);
        expect(input.some((rule) => option(rule, '--ctstate') === 'RELATED,ESTABLISHED')).toBe(true);
        for (const rule of table.rules) {
          expect(rule.spec).not.toContain('state');
          expect(option(rule, '--comment'), rule.spec.join(' ')).toBeTruthy();
          if (option(rule, '-p') === 'tcp' && option(rule, '-j') === 'ACCEPT') expect(option(rule, '--ctstate')).toBe('NEW');
        }
      }
      const neighbourDiscovery = rulesOf(host.v6).filter((rule) => ['133', '134', '135', '136'].includes(option(rule, '--icmpv6-type') ?? ''));
      expect(neighbourDiscovery).toHaveLength(4);
      for (const rule of neighbourDiscovery) expect(option(rule, '--hl-eq')).toBe('255');
    }
  });

  it('keeps each family to its own addresses', () => {
    for (const host of compiled.values()) {
      for (const rule of rulesOf(host.v4)) expect(option(rule, '-s') ?? '').not.toContain(':');
      for (const rule of rulesOf(host.v6)) expect(option(rule, '-s') ?? '::').toContain(':');
      expect(rulesOf(host.v4).some((rule) => option(rule, '-p') === 'ipv6-icmp')).toBe(false);
      expect(rulesOf(host.v6).some((rule) => option(rule, '-p') === 'icmp')).toBe(false);
    }
  });
});

describe('determinism', () => {
  it('gives byte-identical output for the same input, whatever the facts map order', () => {
    const inv = load('custom-role');
    const facts = inventoryFacts(inv);
    const reversed = new Map([...facts].reverse());
    const render = (hosts: CompiledHost[]): string =>
      hosts.map((host) => `${host.host}\n${renderRuleset(host.v4)}${renderRuleset(host.v6)}${host.warnings.join('\n')}`).join('\n');
    const first = render(compileFleet(inv, facts));
    expect(render(compileFleet(inv, facts))).toBe(first);
    expect(render(compileFleet(inv, reversed))).toBe(first);
    expect(compileFleet(inv, reversed).map((host) => host.host)).toEqual(inv.hosts.map((host) => host.name));
  });
});

describe('duplicates', () => {
  it('keeps the first of rules identical but for their comment, in every ruleset that gets them', () => {
    const host = (name: string, roles: string[], index: number): Record<string, unknown> => ({
      name,
      ssh: name,
      roles,
      interfaces: {public: 'eth0', private: 'eth1'},
      addresses: {public: [`203.0.113.${index}`, `2001:db8::${index}`], private: [`10.0.0.${index}`, `fd00::${index}`]},
    });
    const inv = validateInventory({
      // "web" opens exactly what "app" opens, from the same source: on a host with both, one rule each.
      roles: {web: {accept: [{ports: [443, 80], from: 'lb'}]}},
      hosts: [host('tunnel-1', ['bastion'], 1), host('lb-1', ['lb'], 2), host('app-1', ['app', 'web'], 3), host('app-2', ['web', 'app'], 4)],
    });
    const compiled = compile(inv);
    for (const [name, first] of [['app-1', 'lb lb-1 -> app http,https'], ['app-2', 'lb lb-1 -> web http,https']] as const) {
      for (const ruleset of [compiled.get(name)?.v4, compiled.get(name)?.v6]) {
        const fromLb = rulesOf(ruleset).filter((rule) => option(rule, '--dports') === '80,443');
        expect(fromLb.map((rule) => option(rule, '--comment'))).toEqual([first]);
      }
    }
  });
});

describe('shared rulesets', () => {
  const host = (name: string, roles: string[], index: number, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    name,
    ssh: name,
    roles,
    interfaces: {public: 'eth0', private: 'eth1'},
    addresses: {public: [`203.0.113.${index}`, `2001:db8::${index}`], private: [`10.0.0.${index}`, `fd00::${index}`]},
    ...extra,
  });

  it('gives hosts whose rules come from the same grants one pair of rulesets, and others their own', () => {
    for (const strictOutbound of [false, true]) {
      const inv = validateInventory({
        options: {strictOutbound},
        hosts: [
          host('tunnel-1', ['bastion'], 1),
          host('lb-1', ['lb'], 2),
          host('app-1', ['app'], 3),
          host('app-2', ['app'], 4),
          host('app-3', ['app'], 5, {allow: [{port: 8080, from: 'lb-1'}]}),
          host('db-1', ['db'], 6),
        ],
      });
      const compiled = compile(inv);
      const [app1, app2, app3] = ['app-1', 'app-2', 'app-3'].map((name) => compiled.get(name) as CompiledHost);
      expect(app2?.v4).toBe(app1?.v4);
      expect(app2?.v6).toBe(app1?.v6);
      expect(app3?.v4).not.toBe(app1?.v4);
      expect(rulesOf(app3?.v4).length).toBe(rulesOf(app1?.v4).length + 1);
      // The shared ruleset reads as each host's own would: nothing in it names one of them.
      expect(renderRuleset(app1!.v4)).not.toMatch(/app-1|10\.0\.0\.3/);
    }
  });

  it('shares the tokens (and rules) of a fleet with a later compilation of it, and writes what changed anew', () => {
    const fleet = (lbName: string) =>
      validateInventory({
        options: {strictOutbound: true, logDrops: true},
        hosts: [host('tunnel-1', ['bastion'], 1), host(lbName, ['lb'], 2), host('app-1', ['app'], 3), host('db-1', ['db'], 6)],
      });
    const first = compile(fleet('lb-1'));
    const again = compile(fleet('lb-1'));
    const renamed = compile(fleet('lb-renamed'));
    for (const name of ['tunnel-1', 'app-1', 'db-1']) {
      for (const family of ['v4', 'v6'] as const) {
        const before = first.get(name)![family].tables[0]!.rules;
        const after = again.get(name)![family].tables[0]!.rules;
        expect(after.map((rule) => rule.spec)).toEqual(before.map((rule) => rule.spec));
        after.forEach((rule, index) => expect(rule.spec).toBe(before[index]!.spec));
      }
    }
    // The lb's new name is in app-1's comment: same match, new comment, a rule of its own.
    const fromLb = (compiled: Map<string, CompiledHost>) => rulesOf(compiled.get('app-1')!.v4).find((rule) => option(rule, '--dports') === '80,443')!;
    expect(option(fromLb(renamed), '--comment')).toBe('lb lb-renamed -> app http,https');
    expect(option(fromLb(first), '--comment')).toBe('lb lb-1 -> app http,https');
    expect(fromLb(renamed).spec).not.toBe(fromLb(first).spec);
    expect(compile(fleet('lb-1')).get('app-1')!.v4.tables[0]!.rules).toContain(fromLb(first));
  });
});

describe('sources and interfaces', () => {
  it('binds CIDR sources to no interface and to their own family only', () => {
    const cache = compile(load('custom-role')).get('cache-1')!;
    const v4 = rulesOf(cache.v4).filter((rule) => option(rule, '--dport') === '8443');
    const v6 = rulesOf(cache.v6).filter((rule) => option(rule, '--dport') === '8443');
    expect(v4.map((rule) => [option(rule, '-s'), option(rule, '-i')])).toEqual([['198.51.100.0/24', undefined]]);
    expect(v6.map((rule) => [option(rule, '-s'), option(rule, '-i')])).toEqual([['2001:db8:feed::/48', undefined]]);
  });

  it('expands "private" to every other fleet host over the private path', () => {
    const cache = compile(load('custom-role')).get('cache-1')!;
    const snmp = rulesOf(cache.v4).filter((rule) => option(rule, '-p') === 'udp');
    expect(snmp.map((rule) => option(rule, '-s'))).toEqual(['10.132.0.10/32', '10.132.0.11/32', '10.132.0.12/32', '10.132.0.13/32', '10.132.0.14/32', '10.132.0.15/32']);
    expect(new Set(snmp.map((rule) => option(rule, '-i')))).toEqual(new Set(['eth1']));
  });

  it('warns and binds no interface when an internet opening meets a host without a public interface', () => {
    const inv = load('seed-with-addresses', (json) => {
      const lb = json.hosts[1]!;
      lb['interfaces'] = {private: 'eth1'};
      lb['addresses'] = {private: ['10.132.0.11', 'fd00:132::11']};
    });
    const lb = compile(inv).get('haproxy-www')!;
    expect(tcpOpenings(lb.v4).filter((opening) => opening.startsWith('*@'))).toEqual(['*@*:443', '*@*:80']);
    expect(lb.warnings).toEqual([
      'lb accepts http,https from the internet, but the host has no public interface: the rule is bound to no interface',
    ]);
  });

  it('falls back to the public side for single-NIC hosts', () => {
    const compiled = compile(load('single-nic'));
    // db-1 has a private NIC, but web-1 and gate do not: their traffic arrives on db-1's public eth0.
    expect(tcpOpenings(compiled.get('db-1')?.v4)).toEqual(['198.51.100.20/32@eth0:22', '198.51.100.21/32@eth0:3306']);
    expect(tcpOpenings(compiled.get('web-1')?.v6)).toContain('2001:db8:51::20/128@ens3:22');
  });

  it('opens a bastion ssh port other than 22 to the internet, with a warning', () => {
    const gate = compile(load('single-nic')).get('gate')!;
    expect(tcpOpenings(gate.v4)).toEqual(['*@eth0:22', '*@eth0:2222']);
    expect(gate.warnings).toContain('bastion: also opening its ssh port 2222 to the internet (sshd listens there)');
  });

  it('uses each host own ssh port for SSH from the bastions', () => {
    const inv = load('seed-with-addresses');
    const facts = inventoryFacts(inv);
    facts.set('mysql-1', {...facts.get('mysql-1')!, sshPort: 2200});
    const mysql = compileFleet(inv, facts).find((host) => host.host === 'mysql-1')!;
    expect(tcpOpenings(mysql.v4)).toContain('10.132.0.10/32@eth1:2200');
    expect(tcpOpenings(mysql.v4)).not.toContain('10.132.0.10/32@eth1:22');
  });

  it('gives every host SSH from both bastions, and each bastion from the other', () => {
    const compiled = compile(load('two-bastions'));
    expect(tcpOpenings(compiled.get('mysql-2')?.v4).filter((opening) => opening.endsWith(':22'))).toEqual([
      '10.132.0.10/32@eth1:22',
      '10.132.0.16/32@eth1:22',
    ]);
    expect(tcpOpenings(compiled.get('tunnel-1')?.v4)).toEqual(['*@eth0:22', '10.132.0.16/32@eth1:22']);
  });
});

describe('options', () => {
  it('strictOutbound: OUTPUT DROP on public hosts with exactly the ports their peers open to them', () => {
    const compiled = compile(load('strict-outbound'));
    const lb = compiled.get('haproxy-www')!;
    expect(lb.v4.tables[0]?.chains.find((chain) => chain.name === 'OUTPUT')?.policy).toBe('DROP');
    const toFleet = rulesOf(lb.v4, 'OUTPUT')
      .filter((rule) => option(rule, '-d') !== undefined)
      .map((rule) => `${option(rule, '-d')}@${option(rule, '-o')}:${option(rule, '--dport') ?? option(rule, '--dports')}`);
    expect(toFleet).toEqual(['10.132.0.12/32@eth1:80,443', '10.132.0.13/32@eth1:80,443']);
    const bastionOut = rulesOf(compiled.get('tunnel-1')?.v6, 'OUTPUT')
      .filter((rule) => option(rule, '-d') !== undefined)
      .map((rule) => `${option(rule, '-d')}:${option(rule, '--dport')}`);
    expect(bastionOut).toEqual(['fd00:132::11/128:22', 'fd00:132::12/128:22', 'fd00:132::13/128:22', 'fd00:132::14/128:22', 'fd00:132::15/128:22']);
    const general = rulesOf(lb.v4, 'OUTPUT').map((rule) => option(rule, '--comment'));
    expect(general).toEqual(expect.arrayContaining(['loopback', 'replies', 'dns out', 'ntp out', 'http,https out']));
    expect(rulesOf(lb.v6, 'OUTPUT').filter((rule) => option(rule, '--hl-eq') === '255')).toHaveLength(4);
  });

  it('strictOutbound leaves OUTPUT open on hosts without a public interface', () => {
    const inv = load('strict-outbound', (json) => {
      const db = json.hosts[4]!;
      db['interfaces'] = {private: 'eth1'};
      db['addresses'] = {private: ['10.132.0.14', 'fd00:132::14']};
    });
    const mysql = compile(inv).get('mysql-1')!;
    expect(mysql.v4.tables[0]?.chains.find((chain) => chain.name === 'OUTPUT')?.policy).toBe('ACCEPT');
    expect(rulesOf(mysql.v4, 'OUTPUT')).toEqual([]);
  });

  it('trustPrivate: every protocol from every other fleet host on the private interface', () => {
    const mysql = compile(load('trust-private')).get('mysql-1')!;
    const trusted = rulesOf(mysql.v4).filter((rule) => option(rule, '-p') === undefined && option(rule, '-s') !== undefined);
    expect(trusted.map((rule) => `${option(rule, '-s')}@${option(rule, '-i')}`)).toEqual([
      '10.132.0.10/32@eth1',
      '10.132.0.11/32@eth1',
      '10.132.0.12/32@eth1',
      '10.132.0.13/32@eth1',
      '10.132.0.15/32@eth1',
    ]);
  });

  it('logDrops: a rate-limited IW-LOG-DROP chain as the last INPUT rule, never a chain named LOG', () => {
    const host = compile(load('log-drops')).get('wordpress-1')!;
    for (const ruleset of [host.v4, host.v6]) {
      const table = ruleset.tables[0]!;
      expect(table.chains.map((chain) => chain.name)).toEqual(['INPUT', 'FORWARD', 'OUTPUT', LOG_DROP_CHAIN]);
      expect(table.chains.find((chain) => chain.name === LOG_DROP_CHAIN)?.policy).toBeNull();
      expect(option(rulesOf(ruleset).at(-1)!, '-j')).toBe(LOG_DROP_CHAIN);
      const log = rulesOf(ruleset, LOG_DROP_CHAIN);
      expect(log.map((rule) => option(rule, '-j'))).toEqual(['LOG', 'DROP']);
      expect(option(log[0]!, '--limit')).toBe('10/min');
      expect(option(log[0]!, '--limit-burst')).toBe('20');
      expect(option(log[0]!, '--log-prefix')).toBe('isolate-wizard DROP ');
    }
  });
});

describe('ports', () => {
  it('merges overlapping and adjacent ranges', () => {
    expect(mergePortRanges([{first: 443, last: 443}, {first: 80, last: 80}, {first: 81, last: 90}, {first: 85, last: 100}])).toEqual([
      {first: 80, last: 100},
      {first: 443, last: 443},
    ]);
  });

  it('chunks multiport lists at 15 slots, a range counting two', () => {
    const singles = Array.from({length: 20}, (_, index) => ({first: 1000 + index * 2, last: 1000 + index * 2}));
    expect(chunkPorts(singles).map((chunk) => chunk.length)).toEqual([15, 5]);
    const ranges = Array.from({length: 8}, (_, index) => ({first: 2000 + index * 10, last: 2001 + index * 10}));
    expect(chunkPorts(ranges).map((chunk) => chunk.length)).toEqual([7, 1]);
  });

  it('chunking keeps every port, in order, within the slot limit (property)', () => {
    const range = fc
      .tuple(fc.integer({min: 1, max: 65535}), fc.integer({min: 0, max: 50}))
      .map(([first, width]) => ({first, last: Math.min(65535, first + width)}));
    fc.assert(
      fc.property(fc.array(range, {maxLength: 60}), (ranges) => {
        const merged = mergePortRanges(ranges);
        const chunks = chunkPorts(merged);
        expect(chunks.flat()).toEqual(merged);
        for (const chunk of chunks) {
          expect(chunk.length).toBeGreaterThan(0);
          expect(chunk.reduce((slots, r) => slots + (r.first === r.last ? 1 : 2), 0)).toBeLessThanOrEqual(MULTIPORT_SLOTS);
        }
        // Merging changes the rule count, never the set of ports.
        const covered = (list: readonly {first: number; last: number}[], port: number): boolean =>
          list.some((r) => r.first <= port && port <= r.last);
        for (const r of ranges) for (const port of [r.first, r.last]) expect(covered(merged, port)).toBe(true);
        for (let index = 1; index < merged.length; index += 1) expect(merged[index]!.first).toBeGreaterThan(merged[index - 1]!.last + 1);
      }),
    );
  });

  it('writes one rule per chunk and a single port without multiport', () => {
    const inv = validateInventory({
      roles: {many: {accept: [{ports: Array.from({length: 17}, (_, index) => 3000 + index * 2), from: '10.0.0.0/8'}]}},
      hosts: [{name: 'm-1', ssh: 'm-1', roles: ['many'], interfaces: {public: 'eth0'}, addresses: {public: ['192.0.2.1']}}],
    });
    const rules = rulesOf(compile(inv).get('m-1')?.v4).filter((rule) => option(rule, '-s') === '10.0.0.0/8');
    expect(rules).toHaveLength(2);
    expect(option(rules[0]!, '--dports')?.split(',')).toHaveLength(15);
    expect(rules[1]!.spec).toEqual(expect.arrayContaining(['-m', 'multiport', '--dports', '3030,3032']));
  });
});

describe('compile errors name the host', () => {
  it('refuses a host without facts', () => {
    const inv = load('seed-with-addresses');
    const facts = inventoryFacts(inv);
    facts.delete('mysql-2');
    expect(() => compileFleet(inv, facts)).toThrow(InputError);
    try {
      compileFleet(inv, facts);
    } catch (error) {
      expect((error as InputError).problems).toEqual([
        'mysql-2: no interfaces or addresses known (discover it, or give "interfaces" and "addresses" in the inventory)',
      ]);
    }
  });

  it('refuses discovered facts with no interface or a bad address', () => {
    const inv = parseInventoryText(readFileSync(join(fixtures, 'seed.json'), 'utf8'), 'seed.json');
    const facts = inventoryFacts(load('seed-with-addresses'));
    facts.set('wordpress-1', {interfaces: {}, addresses: {public: [], private: []}});
    facts.set('mysql-1', {interfaces: {private: 'eth1'}, addresses: {public: [], private: ['10.132.0.999']}});
    try {
      compileFleet(inv, facts);
      throw new Error('expected a refusal');
    } catch (error) {
      expect((error as InputError).problems).toEqual([
        'wordpress-1: neither a public nor a private interface is known',
        'mysql-1: "10.132.0.999" is not an address',
      ]);
    }
  });

  it('refuses a discovered interface name that iptables could misread', () => {
    const inv = load('seed-with-addresses');
    const facts = inventoryFacts(inv);
    facts.set('tunnel-1', {interfaces: {public: '-j ACCEPT', private: 'eth1'}, addresses: {public: [], private: ['10.132.0.10']}});
    try {
      compileFleet(inv, facts);
      throw new Error('expected a refusal');
    } catch (error) {
      expect((error as InputError).problems).toEqual(['tunnel-1: "-j ACCEPT" cannot be a public or private interface']);
    }
  });
});

describe('limits', () => {
  it('keeps every comment within the kernel limit, even with the longest names', () => {
    const long = (prefix: string): string => `${prefix}${'x'.repeat(63 - prefix.length)}`;
    const inv = validateInventory({
      roles: {
        [long('r')]: {accept: [{ports: Array.from({length: 4}, (_, index) => `${10000 + index * 100}-${10050 + index * 100}`), from: long('s')}]},
        [long('s')]: {},
      },
      hosts: [
        {name: long('a'), ssh: 'a.example.net', roles: ['bastion', long('s')], interfaces: {private: 'eth1'}, addresses: {private: ['10.0.0.1']}},
        {name: long('b'), ssh: 'b.example.net', roles: [long('r')], interfaces: {private: 'eth1'}, addresses: {private: ['10.0.0.2']}},
      ],
    });
    const comments = compile(inv).get(long('b'))!.v4.tables[0]!.rules.map((rule) => option(rule, '--comment') ?? '');
    // "role host -> role ports" would be ~300 characters here: it is cut, not refused by the kernel.
    expect(Math.max(...comments.map((text) => text.length))).toBe(MAX_COMMENT_LENGTH);
    expect(comments.some((text) => text.startsWith(`${long('s')} ${long('a')} -> ${long('r')} tcp`))).toBe(true);
  });
});

describe('fleetPath', () => {
  const dual = (n: number): {facts: HostFacts} => ({
    facts: {interfaces: {public: 'eth0', private: 'eth1'}, addresses: {public: [`203.0.113.${n}`], private: [`10.0.0.${n}`, `FD00::${n}`]}},
  });
  const single = (n: number): {facts: HostFacts} => ({facts: {interfaces: {public: 'ens3'}, addresses: {public: [`198.51.100.${n}`], private: []}}});

  it('takes the private side when both ends have one', () => {
    expect(fleetPath(dual(1), dual(2))).toEqual({
      side: 'private',
      fromInterface: 'eth1',
      toInterface: 'eth1',
      fromAddresses: ['10.0.0.1', 'fd00::1'],
      toAddresses: ['10.0.0.2', 'fd00::2'],
    });
  });

  it('falls back to the public side when either end lacks a private interface', () => {
    expect(fleetPath(single(1), dual(2))).toEqual({
      side: 'public',
      fromInterface: 'ens3',
      toInterface: 'eth0',
      fromAddresses: ['198.51.100.1'],
      toAddresses: ['203.0.113.2'],
    });
  });
});

describe('renderRuleset', () => {
  it('writes a header, the table, chains, quoted tokens and COMMIT with a trailing newline', () => {
    const text = renderRuleset({
      family: 6,
      tables: [
        {
          name: 'filter',
          chains: [{name: 'INPUT', policy: 'DROP'}, {name: 'X', policy: null}],
          rules: [{chain: 'INPUT', spec: ['-m', 'comment', '--comment', 'say "hi" \\ there', '-j', 'X']}],
        },
      ],
    });
    expect(text).toBe(
      '# isolate-wizard ip6tables-restore ruleset\n*filter\n:INPUT DROP [0:0]\n:X - [0:0]\n' +
        '-A INPUT -m comment --comment "say \\"hi\\" \\\\ there" -j X\nCOMMIT\n',
    );
  });
});
