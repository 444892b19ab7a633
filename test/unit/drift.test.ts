// Drift of the seed fleet's hosts: live rules against the confirmed ones, in plain words.
import {readFileSync} from 'node:fs';
import {describe, expect, it} from 'vitest';
import {describeDrift, fleetDrift, fleetSync, type LiveView} from '../../source/core/drift.js';
import {factsFromInventory, parseInventoryText} from '../../source/core/inventory.js';
import type {HostFacts, Ruleset} from '../../source/core/model.js';
import {parseNftJson} from '../../source/core/nft-ruleset.js';
import {toOwnChains, withOurs} from '../../source/core/own-chains.js';
import {buildPlan} from '../../source/core/plan.js';

const inventory = parseInventoryText(readFileSync(new URL('../../fixtures/inventories/seed-with-addresses.json', import.meta.url), 'utf8'), 'seed.json');
const plan = buildPlan(inventory, new Map<string, HostFacts>(inventory.hosts.map((host) => [host.name, factsFromInventory(host) as HostFacts])), undefined, {withAccess: false});

/** What the agent recorded at the confirmed load: our chains and jumps. */
function compiled(name: string): {v4: Ruleset; v6: Ruleset} {
  const host = plan.hosts.find((candidate) => candidate.name === name);
  if (!host) throw new Error(name);
  return {v4: toOwnChains(host.compiled.v4), v6: toOwnChains(host.compiled.v6)};
}

/** The live table of a host whose previous rules were open, with ours loaded. */
function loaded(name: string): {v4: Ruleset; v6: Ruleset} {
  const ours = compiled(name);
  return {v4: withOurs({family: 4, tables: []}, ours.v4), v6: withOurs({family: 6, tables: []}, ours.v6)};
}

/** The ruleset with rules put first in INPUT (and chains declared), as `iptables -I` would. */
function withInserted(ruleset: Ruleset, rules: readonly {chain: string; spec: string[]}[], chains: readonly string[] = []): Ruleset {
  const filter = ruleset.tables.find((table) => table.name === 'filter');
  if (!filter) throw new Error('no filter');
  return {
    family: ruleset.family,
    tables: [{...filter, chains: [...filter.chains, ...chains.map((name) => ({name, policy: null}))], rules: [...rules, ...filter.rules]}],
  };
}

function view(host: string, live: {v4: Ruleset; v6: Ruleset}, extra: Partial<LiveView> = {}): LiveView {
  return {host, confirmed: compiled(host), live, ...extra};
}

describe('drift', () => {
  it('our nftables table (the nftables backend) against its listing at the confirmed load: a rule removed, the table gone, a table nobody confirmed', () => {
    const table = 'table inet isolate_wizard {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\ttcp dport 22 accept\n\t\ttcp dport 3306 accept\n\t}\n}\n';
    const same = fleetDrift(plan.hosts, [view('mysql-1', loaded('mysql-1'), {ourTable: {confirmed: table, live: table.replace(/\t/g, '  ')}})]);
    expect(same[0]).toMatchObject({drifted: false, changes: []});
    const removed = fleetDrift(plan.hosts, [view('mysql-1', loaded('mysql-1'), {ourTable: {confirmed: table, live: table.replace('\t\ttcp dport 3306 accept\n', '')}})]);
    expect(removed[0]).toMatchObject({drifted: true, changes: ['nftables rule removed: tcp dport 3306 accept']});
    expect(removed[0]?.adoptable).toBeUndefined();
    const gone = fleetDrift(plan.hosts, [view('mysql-1', loaded('mysql-1'), {ourTable: {confirmed: table, live: ''}})]);
    expect(gone[0]?.changes[0]).toMatch(/^nftables: our table inet isolate_wizard is gone/);
    const appeared = fleetDrift(plan.hosts, [view('mysql-1', loaded('mysql-1'), {ourTable: {confirmed: '', live: table}})]);
    expect(appeared[0]).toMatchObject({drifted: true});
  });

  it('a clean fleet is in sync, and others changing their own chains (a fail2ban ban) is not drift', () => {
    const mysql = loaded('mysql-1');
    const banned = withInserted(mysql.v4, [{chain: 'INPUT', spec: ['-p', 'tcp', '-m', 'multiport', '--dports', '22', '-j', 'f2b-sshd']}, {chain: 'f2b-sshd', spec: ['-s', '203.0.113.99/32', '-j', 'REJECT']}], ['f2b-sshd']);
    const drift = fleetDrift(plan.hosts, [view('mysql-1', {v4: banned, v6: mysql.v6}), view('mysql-2', loaded('mysql-2'))]);
    expect(drift).toEqual([
      {host: 'mysql-1', drifted: false, changes: [], effects: []},
      {host: 'mysql-2', drifted: false, changes: [], effects: []},
    ]);
    // Docker started after the load, its jumps put first in FORWARD: others' rules, not ours.
    const docker = withInserted(
      mysql.v4,
      [
        {chain: 'FORWARD', spec: ['-j', 'DOCKER-USER']},
        {chain: 'FORWARD', spec: ['-o', 'docker0', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']},
        {chain: 'FORWARD', spec: ['-o', 'docker0', '-j', 'DOCKER']},
        {chain: 'DOCKER-USER', spec: ['-j', 'RETURN']},
      ],
      ['DOCKER', 'DOCKER-USER'],
    );
    expect(fleetDrift(plan.hosts, [view('mysql-1', {v4: docker, v6: mysql.v6})])[0]?.drifted).toBe(false);
  });

  it('a rule added by hand to our chain is named with its effect: the database opened to the internet', () => {
    const mysql = loaded('mysql-1');
    const opened = withInserted(mysql.v4, [{chain: 'IW-INPUT', spec: ['-p', 'tcp', '-m', 'tcp', '--dport', '3306', '-j', 'ACCEPT']}]);
    const [drift] = fleetDrift(plan.hosts, [view('mysql-1', {v4: opened, v6: mysql.v6})]);
    expect(drift?.drifted).toBe(true);
    expect(drift?.changes).toContain('IPv4 rule added: -A IW-INPUT -p tcp --dport 3306 -j ACCEPT');
    expect(drift?.effects).toContain('opens mysql-1 to the internet: tcp/3306 (IPv4 only, not confirmed)');
    expect(drift?.effects.some((line) => line.includes('no longer'))).toBe(false);
    // Only added, only gained: the plan can adopt it as an allow.
    expect(drift?.adoptable).toEqual([{from: 'internet', protocol: 'tcp', ports: [{first: 3306, last: 3306}]}]);
  });

  it('others\' ACCEPT inserted above our jump decides first: shown with its effect, though our chains are unchanged', () => {
    const mysql = loaded('mysql-1');
    const above = withInserted(mysql.v4, [{chain: 'INPUT', spec: ['-p', 'tcp', '-m', 'tcp', '--dport', '3306', '-j', 'ACCEPT']}]);
    const [drift] = fleetDrift(plan.hosts, [view('mysql-1', {v4: above, v6: mysql.v6})]);
    expect(drift?.drifted).toBe(true);
    expect(drift?.changes).toEqual(["IPv4 others' rule before our chain: -A INPUT -p tcp -m tcp --dport 3306 -j ACCEPT"]);
    expect(drift?.effects).toContain('opens mysql-1 to the internet: tcp/3306 (IPv4 only, not confirmed)');
    // The same rule after our jump decides nothing (our chain ends with its drop): no drift.
    const filter = mysql.v4.tables.find((table) => table.name === 'filter');
    if (!filter) throw new Error('no filter');
    const after: Ruleset = {family: 4, tables: [{...filter, rules: [...filter.rules, {chain: 'INPUT', spec: ['-p', 'tcp', '-m', 'tcp', '--dport', '3306', '-j', 'ACCEPT']}]}]};
    expect(fleetDrift(plan.hosts, [view('mysql-1', {v4: after, v6: mysql.v6})])[0]?.drifted).toBe(false);
  });

  it('a flushed table and a deleted rule: what is gone, and who lost or gained access', () => {
    const web = loaded('wordpress-1');
    const flushed: Ruleset = {family: 4, tables: []};
    const [gone] = fleetDrift(plan.hosts, [view('wordpress-1', {v4: flushed, v6: web.v6})]);
    expect(gone?.changes).toEqual(['IPv4: our chains are gone (the table was flushed, or the server rebooted without loading them)']);
    expect(gone?.effects).toContain('opens wordpress-1 to the internet: tcp/all (IPv4 only, not confirmed)');
    expect(gone?.adoptable).toBeUndefined(); // a flush is not an opening to adopt

    const filter = web.v4.tables.find((table) => table.name === 'filter');
    if (!filter) throw new Error('no filter');
    const withoutLb: Ruleset = {family: 4, tables: [{...filter, rules: filter.rules.filter((rule) => !rule.spec.includes('10.132.0.11/32'))}]};
    const [lost] = fleetDrift(plan.hosts, [view('wordpress-1', {v4: withoutLb, v6: web.v6})]);
    expect(lost?.changes.length).toBeGreaterThan(0);
    expect(lost?.changes.every((line) => line.startsWith('IPv4 rule removed: -A IW-INPUT'))).toBe(true);
    expect(lost?.effects).toContain('wordpress-1 no longer accepts tcp/80,443 from haproxy-www (IPv4 only)');
    expect(lost?.adoptable).toBeUndefined();
  });

  it("another manager's table that drops planned flows is drift, named with the flows", () => {
    const firewalld = parseNftJson(readFileSync(new URL('../../fixtures/nft/firewalld-rocky9.json', import.meta.url), 'utf8'));
    const [drift] = fleetDrift(plan.hosts, [view('wordpress-2', loaded('wordpress-2'), {native: firewalld})]);
    expect(drift?.drifted).toBe(true);
    expect(drift?.changes[0]).toMatch(/^firewalld \(table inet firewalld\) drops what the plan opens: tcp\/80,443 from haproxy-www/);
  });

  it('status per host: pending, unmanaged, unknown when the rules could not be read (never in sync), in sync, drifted in words', () => {
    const mysql = loaded('mysql-1');
    const opened = withInserted(mysql.v4, [{chain: 'IW-INPUT', spec: ['-p', 'tcp', '-m', 'tcp', '--dport', '3306', '-j', 'ACCEPT']}]);
    const sync = fleetSync(plan.hosts, [
      {host: 'tunnel-1', managed: true, pending: true},
      {host: 'haproxy-www', managed: false, pending: false},
      {host: 'wordpress-1', managed: true, pending: false},
      {host: 'wordpress-2', managed: true, pending: false, viewError: 'cannot read the live rules'},
      {host: 'mysql-1', managed: true, pending: false, view: view('mysql-1', {v4: opened, v6: mysql.v6})},
      {host: 'mysql-2', managed: true, pending: false, view: view('mysql-2', loaded('mysql-2'))},
    ]);
    expect(sync.map((entry) => [entry.host, entry.state])).toEqual([
      ['tunnel-1', 'pending'],
      ['haproxy-www', 'unmanaged'],
      ['wordpress-1', 'unmanaged'],
      ['wordpress-2', undefined],
      ['mysql-1', 'drifted'],
      ['mysql-2', 'in sync'],
    ]);
    expect(sync[3]?.reason).toBe('cannot read the live rules');
    expect(describeDrift(sync[4] as (typeof sync)[number])).toBe(
      'drift: opens mysql-1 to the internet: tcp/3306 (IPv4 only, not confirmed); IPv4 rule added: -A IW-INPUT -p tcp --dport 3306 -j ACCEPT',
    );
  });
});
