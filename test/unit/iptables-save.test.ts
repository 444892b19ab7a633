import {readdirSync, readFileSync} from 'node:fs';
import fc from 'fast-check';
import {describe, expect, it} from 'vitest';
import {compileFleet} from '../../source/core/compiler.js';
import {factsFromInventory, parseInventoryText} from '../../source/core/inventory.js';
import {renderRuleset} from '../../source/core/render.js';
import {
  diffRulesets,
  formatRule,
  IptablesSaveError,
  parseIptablesSave,
  parseIptablesSaveWithNotices,
  rulesetsEqual,
  tokenizeRuleLine,
} from '../../source/core/iptables-save.js';
import type {Ruleset} from '../../source/core/model.js';

const fixture = (name: string): string => readFileSync(new URL(`../../fixtures/iptables-save/${name}`, import.meta.url), 'utf8');

function rulesOf(ruleset: Ruleset, table: string, chain: string): string[] {
  return (ruleset.tables.find((candidate) => candidate.name === table)?.rules ?? [])
    .filter((rule) => rule.chain === chain)
    .map(formatRule);
}

describe('parseIptablesSave on real outputs', () => {
  it('reads a Docker host: nat and filter, foreign chains, negations', () => {
    const ruleset = parseIptablesSave(fixture('docker.v4'), 4);
    expect(ruleset.tables.map((table) => table.name)).toEqual(['filter', 'nat']);
    const filter = ruleset.tables[0]!;
    expect(filter.chains).toEqual([
      {name: 'INPUT', policy: 'ACCEPT'},
      {name: 'FORWARD', policy: 'DROP'},
      {name: 'OUTPUT', policy: 'ACCEPT'},
      {name: 'DOCKER', policy: null},
      {name: 'DOCKER-ISOLATION-STAGE-1', policy: null},
      {name: 'DOCKER-ISOLATION-STAGE-2', policy: null},
      {name: 'DOCKER-USER', policy: null},
    ]);
    expect(filter.rules).toHaveLength(17);
    expect(filter.rules.find((rule) => rule.chain === 'DOCKER')?.spec).toEqual(
      ['-d', '172.17.0.2/32', '!', '-i', 'docker0', '-o', 'docker0', '-p', 'tcp', '-m', 'tcp', '--dport', '80', '-j', 'ACCEPT'],
    );
    expect(rulesOf(ruleset, 'nat', 'DOCKER')).toEqual([
      '-A DOCKER -i docker0 -j RETURN',
      '-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80',
    ]);
  });

  it('reads a fail2ban host and unquotes comments and log prefixes', () => {
    const ruleset = parseIptablesSave(fixture('fail2ban.v4'), 4);
    const input = ruleset.tables[0]!.rules.filter((rule) => rule.chain === 'INPUT');
    expect(input[0]!.spec).toEqual(['-p', 'tcp', '-m', 'multiport', '--dports', '22', '-j', 'f2b-sshd']);
    const logRule = input.find((rule) => rule.spec.includes('LOG'))!;
    expect(logRule.spec).toContain('log "all" drops');
    expect(logRule.spec).toContain('drop: ');
    expect(rulesOf(ruleset, 'filter', 'f2b-sshd')).toHaveLength(3);
  });

  it('ignores -c counters: the same rules with and without them', () => {
    const plain = parseIptablesSave(fixture('fail2ban.v4'), 4);
    const counted = parseIptablesSave(fixture('fail2ban-counters.v4'), 4);
    expect(counted).toEqual(plain);
    expect(rulesetsEqual(plain, counted)).toBe(true);
  });

  it('reads an empty output (no tables loaded) as an empty ruleset', () => {
    expect(fixture('empty.v4')).toBe('');
    expect(parseIptablesSave(fixture('empty.v4'), 4)).toEqual({family: 4, tables: []});
  });

  it('keeps iptables-nft-save warnings as notices and still reads the rules', () => {
    const parsed = parseIptablesSaveWithNotices(fixture('kube-nft-warning.v4'), 4);
    expect(parsed.notices).toEqual([
      {line: 1, text: 'Warning: iptables-legacy tables present, use iptables-legacy-save to see them', incomplete: false},
    ]);
    expect(rulesOf(parsed.ruleset, 'filter', 'KUBE-FIREWALL')[0]).toBe(
      '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
    );
  });

  it('refuses output that says nft holds rules it cannot show', () => {
    expect(() => parseIptablesSave(fixture('nft-incompatible.v4'), 4)).toThrow(/line 1: .*incompatible base-chains.*cannot show/);
    const lenient = parseIptablesSaveWithNotices(fixture('nft-incompatible.v4'), 4);
    expect(lenient.notices[0]?.incomplete).toBe(true);
  });

  it('unescapes what iptables-save escapes inside quotes (\\" \\\\ \\\')', () => {
    const ruleset = parseIptablesSave(fixture('quoting.v4'), 4);
    const [first, second] = ruleset.tables[0]!.rules;
    expect(first!.spec).toEqual(['-m', 'comment', '--comment', 'it\'s "quoted" \\ back', '-j', 'ACCEPT']);
    expect(second!.spec).toEqual(['-m', 'comment', '--comment', 'a.b', '-j', 'LOG', '--log-prefix', 'x y: ']);
  });

  it('reads ip6tables-save output of the compiled design as family 6', () => {
    const ruleset = parseIptablesSave(fixture('design-sample.v6'), 6);
    expect(ruleset.family).toBe(6);
    expect(rulesOf(ruleset, 'filter', 'IW-LOG-DROP')).toEqual([
      '-A IW-LOG-DROP -m limit --limit 5/min --limit-burst 10 -j LOG --log-prefix "isolate-wizard DROP "',
      '-A IW-LOG-DROP -j DROP',
    ]);
  });
});

describe('parseIptablesSave errors name the line', () => {
  const cases: [string, string, RegExp][] = [
    ['a rule outside a table', '-A INPUT -j ACCEPT\n', /line 1: .*outside a table/],
    ['a missing COMMIT', '*filter\n:INPUT ACCEPT [0:0]\n', /no COMMIT/],
    ['an undeclared chain', '*filter\n:INPUT ACCEPT [0:0]\n-A FOO -j ACCEPT\nCOMMIT\n', /line 3: .*chain FOO/],
    ['-N, which save never prints', '*filter\n-N FOO\nCOMMIT\n', /line 2: .*not save output/],
    ['an unknown policy', '*filter\n:INPUT MAYBE [0:0]\nCOMMIT\n', /line 2: .*unknown policy MAYBE/],
    ['an unclosed quote', '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m comment --comment "oops -j ACCEPT\nCOMMIT\n', /line 3: .*quoted/],
    ['a table opened twice without COMMIT', '*filter\n*nat\n', /line 2/],
    ['garbage', '*filter\nhello\nCOMMIT\n', /line 2: "hello"/],
  ];
  it.each(cases)('%s', (_label, text, message) => {
    expect(() => parseIptablesSave(text, 4)).toThrow(IptablesSaveError);
    expect(() => parseIptablesSave(text, 4)).toThrow(message);
  });
});

describe('tokenizeRuleLine', () => {
  it('splits on spaces and keeps quoted spaces', () => {
    expect(tokenizeRuleLine('-A INPUT  -m comment --comment "a b"  -j ACCEPT')).toEqual([
      '-A', 'INPUT', '-m', 'comment', '--comment', 'a b', '-j', 'ACCEPT',
    ]);
  });
  it('keeps an empty quoted token', () => {
    expect(tokenizeRuleLine('--log-prefix ""')).toEqual(['--log-prefix', '']);
  });
});

describe('diffRulesets / rulesetsEqual', () => {
  const base = parseIptablesSave(
    [
      '*filter',
      ':INPUT DROP [0:0]',
      ':FORWARD DROP [0:0]',
      ':OUTPUT ACCEPT [0:0]',
      '-A INPUT -i lo -j ACCEPT',
      '-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT',
      'COMMIT',
      '',
    ].join('\n'),
    4,
  );

  it('ignores the order of tables and chain declarations, and counters', () => {
    const reordered = parseIptablesSave(
      '*filter\n:OUTPUT ACCEPT [9:99]\n:INPUT DROP [1:2]\n:FORWARD DROP [0:0]\n[3:4] -A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n',
      4,
    );
    expect(rulesetsEqual(base, reordered)).toBe(true);
    expect(diffRulesets(base, reordered)).toEqual([]);
  });

  it('reports policy changes, added and removed rules and chains, in rule order', () => {
    const after = parseIptablesSave(
      [
        '*filter',
        ':INPUT ACCEPT [0:0]',
        ':FORWARD DROP [0:0]',
        ':OUTPUT ACCEPT [0:0]',
        ':IW-LOG-DROP - [0:0]',
        '-A INPUT -i lo -j ACCEPT',
        '-A INPUT -m comment --comment "web in" -p tcp -m tcp --dport 80 -j ACCEPT',
        '-A INPUT -j IW-LOG-DROP',
        '-A IW-LOG-DROP -j DROP',
        'COMMIT',
      ].join('\n'),
      4,
    );
    expect(diffRulesets(base, after)).toEqual([
      'filter: INPUT policy DROP -> ACCEPT',
      'filter: + -A INPUT -m comment --comment "web in" -p tcp -m tcp --dport 80 -j ACCEPT',
      'filter: + -A INPUT -j IW-LOG-DROP',
      'filter: - -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT',
      'filter: chain IW-LOG-DROP added',
      'filter: + -A IW-LOG-DROP -j DROP',
    ]);
    expect(rulesetsEqual(base, after)).toBe(false);
  });

  it('sees a swap of two rules (order decides in iptables)', () => {
    const swapped = parseIptablesSave(
      '*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n',
      4,
    );
    expect(rulesetsEqual(base, swapped)).toBe(false);
    expect(diffRulesets(base, swapped)).toHaveLength(2);
  });

  it('reports a whole table added or removed', () => {
    const docker = parseIptablesSave(fixture('docker.v4'), 4);
    const lines = diffRulesets(docker, {family: 4, tables: docker.tables.filter((table) => table.name !== 'nat')});
    expect(lines[0]).toBe('nat: table removed');
    expect(lines).toContain('nat: - -A DOCKER -i docker0 -j RETURN');
  });
});

describe('round trip with the renderer', () => {
  it('parse(render(x)) deep-equals x for every compiled fixture fleet', () => {
    const inventories = readdirSync(new URL('../../fixtures/inventories/', import.meta.url)).filter((name) => name.endsWith('.json'));
    let checked = 0;
    for (const name of inventories) {
      const inventory = parseInventoryText(readFileSync(new URL(`../../fixtures/inventories/${name}`, import.meta.url), 'utf8'), name);
      const facts = new Map(inventory.hosts.flatMap((host) => {
        const hostFacts = factsFromInventory(host);
        return hostFacts ? [[host.name, hostFacts] as const] : [];
      }));
      if (facts.size !== inventory.hosts.length) continue; // needs discovery
      for (const host of compileFleet(inventory, facts)) {
        for (const ruleset of [host.v4, host.v6]) {
          expect(parseIptablesSave(renderRuleset(ruleset), ruleset.family)).toEqual(ruleset);
          checked += 1;
        }
      }
    }
    expect(checked).toBeGreaterThan(20);
  });

  it('keeps any token through render and parse (quotes, backslashes, spaces, apostrophes)', () => {
    const token = fc.string({unit: fc.constantFrom('a', 'Z', '9', ' ', '"', '\\', "'", '-', ':', '/', '.', '!', '#', '\t'), maxLength: 12});
    fc.assert(
      fc.property(fc.array(fc.oneof(token, fc.constantFrom('-j', 'ACCEPT', '!', '-s', '10.0.0.0/8')), {maxLength: 8}), (spec) => {
        // A comment may hold anything; the tokens must survive the trip exactly.
        const rule = {chain: 'INPUT', spec: ['-m', 'comment', '--comment', ...spec, '-j', 'ACCEPT']};
        const ruleset: Ruleset = {family: 4, tables: [{name: 'filter', chains: [{name: 'INPUT', policy: 'DROP'}], rules: [rule]}]};
        const text = renderRuleset(ruleset);
        // iptables-restore cannot carry a tab or an empty unquoted token either; the renderer quotes both.
        expect(parseIptablesSave(text, 4)).toEqual(ruleset);
        expect(tokenizeRuleLine(formatRule(rule)).slice(2)).toEqual(rule.spec);
      }),
      {numRuns: 300},
    );
  });
});
