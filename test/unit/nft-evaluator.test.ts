// The nftables evaluator on rulesets recorded from a real `nft -j list ruleset` (fixtures/nft: each
// .nft file was loaded into a network namespace and its JSON saved next to it).
import {readFileSync} from 'node:fs';
import {describe, expect, it} from 'vitest';
import type {Packet} from '../../source/core/evaluator.js';
import {evaluateNft} from '../../source/core/nft-evaluator.js';
import {parseNftJson, type NftRuleset} from '../../source/core/nft-ruleset.js';

function recorded(name: string): NftRuleset {
  return parseNftJson(readFileSync(new URL(`../../fixtures/nft/${name}.json`, import.meta.url), 'utf8'));
}

function together(...names: string[]): NftRuleset {
  return {tables: names.flatMap((name) => recorded(name).tables)};
}

function tcp(source: string, destination: string, port: number, extra: Partial<Packet> = {}): Packet {
  return {chain: 'INPUT', inInterface: 'eth1', source, destination, protocol: 'tcp', sourcePort: 40000, destinationPort: port, state: 'NEW', ...extra};
}

describe('nftables evaluator', () => {
  const firewalld = recorded('firewalld-rocky9');

  it("reads firewalld's public zone: ssh and cockpit pass, the web ports are rejected by filter_INPUT", () => {
    expect(evaluateNft(firewalld, tcp('10.132.0.3', '10.132.0.10', 22)).outcome).toBe('pass');
    expect(evaluateNft(firewalld, tcp('10.132.0.3', '10.132.0.10', 9090)).outcome).toBe('pass');
    const web = evaluateNft(firewalld, tcp('10.132.0.3', '10.132.0.10', 80));
    expect(web.outcome).toBe('drop');
    expect(web.by).toMatchObject({table: 'inet firewalld', chain: 'filter_INPUT', index: 7});
    const web6 = evaluateNft(firewalld, tcp('fd00:132::3', 'fd00:132::10', 443));
    expect(web6.outcome).toBe('drop');
  });

  it('follows ct state vmaps, interface names and l4proto sets', () => {
    expect(evaluateNft(firewalld, tcp('10.132.0.3', '10.132.0.10', 80, {state: 'ESTABLISHED'})).outcome).toBe('pass');
    expect(evaluateNft(firewalld, tcp('10.132.0.3', '10.132.0.10', 80, {state: 'INVALID'})).by).toMatchObject({index: 0});
    expect(evaluateNft(firewalld, tcp('127.0.0.1', '127.0.0.1', 80, {inInterface: 'lo'})).outcome).toBe('pass');
    const ping: Packet = {chain: 'INPUT', inInterface: 'eth0', source: '203.0.113.5', destination: '203.0.113.10', protocol: 'icmp', icmpType: 8, state: 'NEW'};
    expect(evaluateNft(firewalld, ping).outcome).toBe('pass');
    const dhcp: Packet = {chain: 'INPUT', inInterface: 'eth0', source: 'fe80::1', destination: 'fe80::2', protocol: 'udp', sourcePort: 547, destinationPort: 546, state: 'NEW'};
    expect(evaluateNft(firewalld, dhcp).outcome).toBe('pass');
    expect(evaluateNft(firewalld, {...dhcp, destination: '2001:db8:100::2'}).outcome).toBe('drop');
  });

  it("reads fail2ban's named sets, plain and interval, per family", () => {
    const f2b = recorded('fail2ban');
    expect(evaluateNft(f2b, tcp('203.0.113.99', '203.0.113.10', 22)).outcome).toBe('drop');
    expect(evaluateNft(f2b, tcp('203.0.113.98', '203.0.113.10', 22)).outcome).toBe('pass');
    expect(evaluateNft(f2b, tcp('203.0.113.99', '203.0.113.10', 80)).outcome).toBe('pass');
    expect(evaluateNft(f2b, tcp('2001:db8:dead:1::7', '2001:db8:100::10', 22)).outcome).toBe('drop');
    expect(evaluateNft(f2b, tcp('2001:db8:100::99', '2001:db8:100::10', 22)).outcome).toBe('drop');
    expect(evaluateNft(f2b, tcp('2001:db8:100::98', '2001:db8:100::10', 22)).outcome).toBe('pass');
  });

  it('a drop in any base chain is final: an accept elsewhere does not undo it', () => {
    const both = together('fail2ban', 'firewalld-rocky9');
    // firewalld accepts ssh, fail2ban (priority filter - 1) still rejects the banned address
    const banned = evaluateNft(both, tcp('203.0.113.99', '203.0.113.10', 22, {inInterface: 'eth0'}));
    expect(banned).toMatchObject({outcome: 'drop', by: {table: 'inet f2b-table', chain: 'f2b-chain'}});
    expect(evaluateNft(both, tcp('203.0.113.98', '203.0.113.10', 22, {inInterface: 'eth0'})).outcome).toBe('pass');
  });

  it("passes everything through Debian's stock empty chains", () => {
    const debian = recorded('debian-default');
    expect(evaluateNft(debian, tcp('203.0.113.5', '203.0.113.10', 3306)).outcome).toBe('pass');
    expect(evaluateNft(debian, tcp('2001:db8:100::5', '2001:db8:100::10', 3306)).outcome).toBe('pass');
  });

  it('walks jumps, returns, prefixes, port sets with ranges and the policy; ip tables see IPv4 only', () => {
    const rules = recorded('handwritten');
    expect(evaluateNft(rules, tcp('10.132.0.5', '10.132.0.10', 3306)).outcome).toBe('pass');
    expect(evaluateNft(rules, tcp('10.132.0.5', '10.132.0.10', 8050)).outcome).toBe('pass');
    expect(evaluateNft(rules, tcp('10.132.0.5', '10.132.0.10', 8101)).by).toMatchObject({table: 'ip legacy_admin', chain: 'in', policy: 'drop'});
    expect(evaluateNft(rules, tcp('203.0.113.5', '10.132.0.10', 3306)).outcome).toBe('drop');
    // tcp/80 jumps to "web": accepted from the private net, returned (then the policy) from elsewhere
    expect(evaluateNft(rules, tcp('10.132.0.5', '10.132.0.10', 80)).outcome).toBe('pass');
    expect(evaluateNft(rules, tcp('203.0.113.5', '10.132.0.10', 80)).outcome).toBe('drop');
    const dns: Packet = {chain: 'INPUT', source: '203.0.113.5', destination: '10.132.0.10', protocol: 'udp', sourcePort: 5353, destinationPort: 53, state: 'NEW'};
    expect(evaluateNft(rules, dns).outcome).toBe('pass');
    // IPv6: only the ip6 table applies
    expect(evaluateNft(rules, tcp('fd00:132::5', 'fd00:132::10', 3306)).outcome).toBe('drop');
    expect(evaluateNft(rules, tcp('fd00:132::5', 'fd00:132::10', 22)).outcome).toBe('pass');
    expect(evaluateNft(rules, tcp('2001:db8::5', 'fd00:132::10', 25)).outcome).toBe('drop');
  });

  it('never assumes open what it cannot read: an accept behind a rate limit makes the policy drop a may-drop, a drop behind an unknown match may drop', () => {
    const rules = recorded('handwritten');
    // the kernel lets the first connections through: the policy's drop is only a "may drop"
    const limited = evaluateNft(rules, tcp('203.0.113.5', '10.132.0.10', 443));
    expect(limited).toMatchObject({outcome: 'may-drop', by: {table: 'ip legacy_admin', chain: 'in', policy: 'drop'}});
    expect(limited.reason).toMatch(/^a rule that may accept \(limit/);
    expect(limited.unread.map((entry) => entry.what)).toContain('limit (depends on traffic)');

    const marked = parseNftJson(
      JSON.stringify({
        nftables: [
          {table: {family: 'inet', name: 'x'}},
          {chain: {family: 'inet', table: 'x', name: 'in', type: 'filter', hook: 'input', prio: 0, policy: 'accept'}},
          {rule: {family: 'inet', table: 'x', chain: 'in', handle: 4, expr: [{match: {op: '==', left: {meta: {key: 'mark'}}, right: 1}}, {drop: null}]}},
          {rule: {family: 'inet', table: 'x', chain: 'in', handle: 5, expr: [{match: {op: '==', left: {payload: {protocol: 'tcp', field: 'dport'}}, right: 22}}, {jump: {target: 'maybe'}}]}},
          {chain: {family: 'inet', table: 'x', name: 'maybe'}},
          {rule: {family: 'inet', table: 'x', chain: 'maybe', expr: [{match: {op: '==', left: {payload: {protocol: 'tcp', field: 'dport'}}, right: 22}}, {drop: null}]}},
        ],
      }),
    );
    const may = evaluateNft(marked, tcp('10.0.0.1', '10.0.0.2', 80));
    expect(may).toMatchObject({outcome: 'may-drop', by: {chain: 'in', handle: 4}, reason: 'meta mark'});
    expect(evaluateNft(marked, tcp('10.0.0.1', '10.0.0.2', 22)).outcome).toBe('drop');
  });

  it("leaves iptables-nft's own tables to the iptables evaluator", () => {
    const iptablesNft = parseNftJson(
      JSON.stringify({
        nftables: [
          {table: {family: 'ip', name: 'filter'}},
          {chain: {family: 'ip', table: 'filter', name: 'INPUT', type: 'filter', hook: 'input', prio: 0, policy: 'drop'}},
        ],
      }),
    );
    expect(evaluateNft(iptablesNft, tcp('10.0.0.1', '10.0.0.2', 22)).outcome).toBe('pass');
  });

  it('refuses output that is not nft -j', () => {
    expect(() => parseNftJson('table inet x {}')).toThrow(/not JSON/);
    expect(() => parseNftJson('{"tables": []}')).toThrow(/no "nftables" list/);
  });
});
