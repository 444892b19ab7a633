// Drift of the seed fleet's hosts: live rules against the confirmed ones, in plain words.
import {readFileSync} from 'node:fs';
import {describe, expect, it} from 'vitest';
import {describeDrift, fleetDrift, fleetSync, type LiveView} from '../../source/core/drift.js';
import {factsFromInventory, parseInventoryText} from '../../source/core/inventory.js';
import type {HostFacts, Ruleset} from '../../source/core/model.js';
import {parseNftJson} from '../../source/core/nft-ruleset.js';
import {buildPlan} from '../../source/core/plan.js';

const inventory = parseInventoryText(readFileSync(new URL('../../fixtures/inventories/seed-with-addresses.json', import.meta.url), 'utf8'), 'seed.json');
const plan = buildPlan(inventory, new Map<string, HostFacts>(inventory.hosts.map((host) => [host.name, factsFromInventory(host) as HostFacts])), undefined, {withAccess: false});

function compiled(name: string): {v4: Ruleset; v6: Ruleset} {
  const host = plan.hosts.find((candidate) => candidate.name === name);
  if (!host) throw new Error(name);
  return {v4: host.compiled.v4, v6: host.compiled.v6};
}

/** The ruleset with rules put first in INPUT (and chains declared), as `iptables -I` would. */
function withInserted(ruleset: Ruleset, rules: readonly {chain: string; spec: string[]}[], chains: readonly string[] = []): Ruleset {
  const filter = ruleset.tables[0];
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
  it('a clean fleet is in sync, and others changing their own chains (a fail2ban ban) is not drift', () => {
    const mysql = compiled('mysql-1');
    const banned = withInserted(mysql.v4, [{chain: 'INPUT', spec: ['-p', 'tcp', '-m', 'multiport', '--dports', '22', '-j', 'f2b-sshd']}, {chain: 'f2b-sshd', spec: ['-s', '203.0.113.99/32', '-j', 'REJECT']}], ['f2b-sshd']);
    const drift = fleetDrift(plan.hosts, [view('mysql-1', {v4: banned, v6: mysql.v6}), view('mysql-2', compiled('mysql-2'))]);
    expect(drift).toEqual([
      {host: 'mysql-1', drifted: false, changes: [], effects: []},
      {host: 'mysql-2', drifted: false, changes: [], effects: []},
    ]);
    // Docker started after the load: FORWARD is the runtime's now (its jumps and rules), as confirm sees it.
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

  it('a rule added by hand is named with its effect: the database opened to the internet', () => {
    const mysql = compiled('mysql-1');
    const opened = withInserted(mysql.v4, [{chain: 'INPUT', spec: ['-p', 'tcp', '-m', 'tcp', '--dport', '3306', '-j', 'ACCEPT']}]);
    const [drift] = fleetDrift(plan.hosts, [view('mysql-1', {v4: opened, v6: mysql.v6})]);
    expect(drift?.drifted).toBe(true);
    expect(drift?.changes).toContain('IPv4 rule added: -A INPUT -p tcp --dport 3306 -j ACCEPT');
    expect(drift?.effects).toContain('opens mysql-1 to the internet: tcp/3306 (IPv4 only, not confirmed)');
    expect(drift?.effects.some((line) => line.includes('no longer'))).toBe(false);
    // Only added, only gained: the plan can adopt it as an allow.
    expect(drift?.adoptable).toEqual([{from: 'internet', protocol: 'tcp', ports: [{first: 3306, last: 3306}]}]);
  });

  it('a flushed table and a deleted rule: what is gone, and who lost or gained access', () => {
    const web = compiled('wordpress-1');
    const flushed: Ruleset = {family: 4, tables: []};
    const [gone] = fleetDrift(plan.hosts, [view('wordpress-1', {v4: flushed, v6: web.v6})]);
    expect(gone?.changes).toEqual(['IPv4: our rules are gone (the table was flushed, or the server rebooted without loading them)']);
    expect(gone?.effects).toContain('opens wordpress-1 to the internet: tcp/all (IPv4 only, not confirmed)');
    expect(gone?.adoptable).toBeUndefined(); // a flush is not an opening to adopt

    const filter = web.v4.tables[0];
    if (!filter) throw new Error('no filter');
    const withoutLb: Ruleset = {family: 4, tables: [{...filter, rules: filter.rules.filter((rule) => !rule.spec.includes('10.132.0.11/32'))}]};
    const [lost] = fleetDrift(plan.hosts, [view('wordpress-1', {v4: withoutLb, v6: web.v6})]);
    expect(lost?.changes.every((line) => line.startsWith('IPv4 rule removed: -A INPUT'))).toBe(true);
    expect(lost?.effects).toContain('wordpress-1 no longer accepts tcp/80,443 from haproxy-www (IPv4 only)');
    expect(lost?.adoptable).toBeUndefined();
  });

  it("another manager's table that drops planned flows is drift, named with the flows", () => {
    const firewalld = parseNftJson(readFileSync(new URL('../../fixtures/nft/firewalld-rocky9.json', import.meta.url), 'utf8'));
    const [drift] = fleetDrift(plan.hosts, [view('wordpress-2', compiled('wordpress-2'), {native: firewalld})]);
    expect(drift?.drifted).toBe(true);
    expect(drift?.changes[0]).toMatch(/^firewalld \(table inet firewalld\) drops what the plan opens: tcp\/80,443 from haproxy-www/);
  });

  it('status per host: pending, unmanaged, unknown when the rules could not be read (never in sync), in sync, drifted in words', () => {
    const mysql = compiled('mysql-1');
    const opened = withInserted(mysql.v4, [{chain: 'INPUT', spec: ['-p', 'tcp', '-m', 'tcp', '--dport', '3306', '-j', 'ACCEPT']}]);
    const sync = fleetSync(plan.hosts, [
      {host: 'tunnel-1', managed: true, pending: true},
      {host: 'haproxy-www', managed: false, pending: false},
      {host: 'wordpress-1', managed: true, pending: false},
      {host: 'wordpress-2', managed: true, pending: false, viewError: 'cannot read the live rules'},
      {host: 'mysql-1', managed: true, pending: false, view: view('mysql-1', {v4: opened, v6: mysql.v6})},
      {host: 'mysql-2', managed: true, pending: false, view: view('mysql-2', compiled('mysql-2'))},
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
      'drift: opens mysql-1 to the internet: tcp/3306 (IPv4 only, not confirmed); IPv4 rule added: -A INPUT -p tcp --dport 3306 -j ACCEPT',
    );
  });
});
