import {readFileSync} from 'node:fs';
import {describe, expect, it} from 'vitest';
import {describeDecidedBy, evaluate, portCutPoints, type Packet} from '../../source/core/evaluator.js';
import {parseIptablesSave} from '../../source/core/iptables-save.js';
import {formatAddress, networkContains, parseAddress, parseNetwork} from '../../source/core/ip.js';
import type {Family, Ruleset} from '../../source/core/model.js';

const fixture = (name: string, family: Family): Ruleset =>
  parseIptablesSave(readFileSync(new URL(`../../fixtures/iptables-save/${name}`, import.meta.url), 'utf8'), family);

/** A filter table from rule lines; policies default to INPUT DROP, FORWARD DROP, OUTPUT ACCEPT. */
function filter(rules: string[], options: {family?: Family; chains?: string[]; input?: string; output?: string} = {}): Ruleset {
  const text = [
    '*filter',
    `:INPUT ${options.input ?? 'DROP'} [0:0]`,
    ':FORWARD DROP [0:0]',
    `:OUTPUT ${options.output ?? 'ACCEPT'} [0:0]`,
    ...(options.chains ?? []).map((chain) => `:${chain} - [0:0]`),
    ...rules,
    'COMMIT',
  ].join('\n');
  return parseIptablesSave(text, options.family ?? 4);
}

const newTcp = (overrides: Partial<Packet> = {}): Packet => ({
  chain: 'INPUT',
  inInterface: 'eth0',
  source: '198.18.0.1',
  destination: '203.0.113.10',
  protocol: 'tcp',
  sourcePort: 50000,
  destinationPort: 80,
  state: 'NEW',
  ...overrides,
});

describe('evaluate on the compiled design (real ip(6)tables-save output)', () => {
  const v4 = fixture('design-sample.v4', 4);
  const v6 = fixture('design-sample.v6', 6);

  it('accepts ssh from the bastion on the private interface, naming the rule and its comment', () => {
    const decision = evaluate(v4, newTcp({inInterface: 'eth1', source: '10.132.0.10', destination: '10.132.0.11', destinationPort: 22}));
    expect(decision.verdict).toBe('ACCEPT');
    expect(decision.decidedBy).toMatchObject({kind: 'rule', chain: 'INPUT', index: 7, comment: 'ssh from bastion tunnel-1'});
    expect(decision.uncertain).toEqual([]);
  });

  it('drops ssh from another private address, or from the bastion on the public interface', () => {
    for (const packet of [
      newTcp({inInterface: 'eth1', source: '10.132.0.11', destinationPort: 22}),
      newTcp({inInterface: 'eth0', source: '10.132.0.10', destinationPort: 22}),
    ]) {
      const decision = evaluate(v4, packet);
      expect(decision.verdict).toBe('DROP');
      expect(decision.decidedBy).toEqual({kind: 'policy', chain: 'INPUT', policy: 'DROP'});
      expect(describeDecidedBy(decision.decidedBy)).toBe('the INPUT policy DROP');
    }
  });

  it('matches multiport --dports exactly: 80 and 443 from the internet, not 81 or 8080', () => {
    const verdicts = [79, 80, 81, 443, 444, 8080].map((port) => evaluate(v4, newTcp({destinationPort: port})).verdict);
    expect(verdicts).toEqual(['DROP', 'ACCEPT', 'DROP', 'ACCEPT', 'DROP', 'DROP']);
    expect(evaluate(v4, newTcp({protocol: 'udp', destinationPort: 80})).verdict).toBe('DROP');
  });

  it('follows conntrack: replies accepted, INVALID dropped by its rule', () => {
    expect(evaluate(v4, newTcp({destinationPort: 9999, state: 'ESTABLISHED'})).decidedBy).toMatchObject({comment: 'replies'});
    const invalid = evaluate(v4, newTcp({destinationPort: 80, state: 'INVALID'}));
    expect(invalid.verdict).toBe('DROP');
    expect(invalid.decidedBy).toMatchObject({kind: 'rule', index: 2});
  });

  it('matches ICMP types with and without a code, and assumes rate limits have room', () => {
    const icmp = (icmpType: number, icmpCode?: number): Packet =>
      newTcp({protocol: 'icmp', icmpType, ...(icmpCode === undefined ? {} : {icmpCode}), destinationPort: undefined, sourcePort: undefined});
    expect(evaluate(v4, icmp(8)).verdict).toBe('ACCEPT');
    expect(evaluate(v4, icmp(3, 4)).decidedBy).toMatchObject({index: 3});
    expect(evaluate(v4, icmp(11)).verdict).toBe('ACCEPT');
    expect(evaluate(v4, icmp(5)).verdict).toBe('DROP');
  });

  it('applies a negated source and a port range', () => {
    const dns = (source: string, port: number): Packet =>
      newTcp({protocol: 'udp', inInterface: 'eth1', source, sourcePort: 53, destinationPort: port});
    expect(evaluate(v4, dns('8.8.8.8', 5000)).verdict).toBe('ACCEPT');
    expect(evaluate(v4, dns('8.8.8.8', 1023)).verdict).toBe('DROP');
    expect(evaluate(v4, dns('10.132.9.9', 5000)).verdict).toBe('DROP');
  });

  it('understands the non-contiguous netmask iptables-save prints', () => {
    expect(evaluate(v4, newTcp({source: '10.132.7.0', destinationPort: 1})).verdict).toBe('ACCEPT');
    expect(evaluate(v4, newTcp({source: '10.132.7.1', destinationPort: 1})).verdict).toBe('DROP');
  });

  it('keeps neighbour discovery only at hop limit 255, and drops the rest through IW-LOG-DROP', () => {
    const ns = (hopLimit: number): Packet => ({
      chain: 'INPUT', inInterface: 'eth1', source: 'fe80::1', destination: 'fd00:132::11',
      protocol: 'ipv6-icmp', icmpType: 135, hopLimit, state: 'NEW',
    });
    expect(evaluate(v6, ns(255)).verdict).toBe('ACCEPT');
    const forged = evaluate(v6, ns(64));
    expect(forged.verdict).toBe('DROP');
    expect(forged.decidedBy).toMatchObject({kind: 'rule', chain: 'IW-LOG-DROP', index: 1});
    expect(forged.trail.map((step) => `${step.chain}#${step.index}`)).toEqual(['INPUT#15', 'IW-LOG-DROP#0']);
  });

  it('marks an ND packet without a hop limit as uncertain instead of accepting it', () => {
    const decision = evaluate(v6, {
      chain: 'INPUT', inInterface: 'eth1', source: 'fe80::1', destination: 'fd00:132::11',
      protocol: 'ipv6-icmp', icmpType: 135, state: 'NEW',
    });
    expect(decision.verdict).toBe('DROP');
    expect(decision.uncertain[0]?.reason).toMatch(/hop limit/);
  });

  it('matches IPv6 sources by /128 and a glusterfs range by multiport a:b', () => {
    const from = (source: string, port: number): Packet =>
      newTcp({inInterface: 'eth1', source, destination: 'fd00:132::11', destinationPort: port});
    expect(evaluate(v6, from('fd00:132::12', 49251)).verdict).toBe('ACCEPT');
    expect(evaluate(v6, from('fd00:132::12', 49252)).verdict).toBe('DROP');
    expect(evaluate(v6, from('fd00:132:0:0::12', 24008)).verdict).toBe('ACCEPT');
    expect(evaluate(v6, from('fd00:132::13', 24008)).verdict).toBe('DROP');
  });

  it('refuses a packet of the wrong family', () => {
    expect(() => evaluate(v6, newTcp())).toThrow(/not an IPv6 address/);
  });
});

describe('evaluate on foreign rulesets', () => {
  it('fail2ban: a banned address is rejected in f2b-sshd, others RETURN and get in', () => {
    const ruleset = fixture('fail2ban.v4', 4);
    const banned = evaluate(ruleset, newTcp({source: '203.0.113.7', destinationPort: 22}));
    expect(banned.verdict).toBe('REJECT');
    expect(banned.decidedBy).toMatchObject({chain: 'f2b-sshd', index: 0});
    expect(evaluate(ruleset, newTcp({source: '198.51.100.77', destinationPort: 22})).verdict).toBe('REJECT');
    const allowed = evaluate(ruleset, newTcp({source: '192.0.2.1', destinationPort: 22}));
    expect(allowed.verdict).toBe('ACCEPT');
    expect(allowed.decidedBy).toMatchObject({chain: 'INPUT', index: 4});
    // LOG does not decide: the final REJECT does.
    const other = evaluate(ruleset, newTcp({source: '192.0.2.1', destinationPort: 25}));
    expect(other.verdict).toBe('REJECT');
    expect(other.trail.map((step) => step.spec.includes('LOG'))).toContain(true);
  });

  it('fail2ban: `! -i eth0` with a source net and an implicit udp module', () => {
    const ruleset = fixture('fail2ban.v4', 4);
    const dns = (inInterface: string): Packet =>
      newTcp({protocol: 'udp', inInterface, source: '192.168.10.5', destinationPort: 53});
    expect(evaluate(ruleset, dns('eth1')).verdict).toBe('ACCEPT');
    expect(evaluate(ruleset, dns('eth0')).verdict).toBe('REJECT');
  });

  it('Docker: forwarded traffic goes through DOCKER-USER, isolation and DOCKER', () => {
    const ruleset = fixture('docker.v4', 4);
    const forward = (port: number): Packet => ({
      chain: 'FORWARD', inInterface: 'eth0', outInterface: 'docker0', source: '198.18.0.1', destination: '172.17.0.2',
      protocol: 'tcp', sourcePort: 50000, destinationPort: port, state: 'NEW',
    });
    const web = evaluate(ruleset, forward(80));
    expect(web.verdict).toBe('ACCEPT');
    expect(web.decidedBy).toMatchObject({chain: 'DOCKER', index: 0});
    expect(web.trail.map((step) => step.chain)).toEqual(['FORWARD', 'FORWARD', 'FORWARD']);
    expect(evaluate(ruleset, forward(81)).decidedBy).toEqual({kind: 'policy', chain: 'FORWARD', policy: 'DROP'});
  });

  it('Kubernetes: a negated ctstate list with DNAT', () => {
    const ruleset = fixture('kube-nft-warning.v4', 4);
    const local = newTcp({source: '192.0.2.1', destination: '127.0.0.1', destinationPort: 10250});
    expect(evaluate(ruleset, local).decidedBy).toMatchObject({chain: 'KUBE-FIREWALL'});
    expect(evaluate(ruleset, {...local, destination: '203.0.113.10'}).decidedBy).toMatchObject({comment: 'kubelet api'});
  });
});

describe('evaluate: semantics', () => {
  it('an unknown match never matches and is recorded; the walk goes on', () => {
    const ruleset = filter(['-A INPUT -m set --match-set blocklist src -j DROP', '-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT']);
    const decision = evaluate(ruleset, newTcp());
    expect(decision.verdict).toBe('ACCEPT');
    expect(decision.uncertain).toHaveLength(1);
    expect(decision.uncertain[0]).toMatchObject({chain: 'INPUT', index: 0});
    expect(decision.uncertain[0]?.reason).toContain('-m set --match-set blocklist src');
  });

  it('an unknown match behind a failing known match is not uncertain', () => {
    const ruleset = filter(['-A INPUT -p udp -m addrtype --dst-type LOCAL -j ACCEPT']);
    expect(evaluate(ruleset, newTcp()).uncertain).toEqual([]);
  });

  it('an unknown option of a known module (--tcp-flags) is uncertain', () => {
    const ruleset = filter(['-A INPUT -p tcp -m tcp ! --tcp-flags FIN,SYN,RST,ACK SYN -j DROP'], {input: 'ACCEPT'});
    const decision = evaluate(ruleset, newTcp());
    expect(decision.verdict).toBe('ACCEPT');
    expect(decision.uncertain[0]?.reason).toContain('--tcp-flags FIN,SYN,RST,ACK SYN');
  });

  it('goto returns to the caller of the current chain; jump returns to the next rule', () => {
    const rules = (mode: '-g' | '-j'): Ruleset =>
      filter([`-A INPUT -p tcp ${mode} EMPTY`, '-A INPUT -j ACCEPT'], {chains: ['EMPTY']});
    expect(evaluate(rules('-j'), newTcp()).verdict).toBe('ACCEPT');
    expect(evaluate(rules('-g'), newTcp()).decidedBy).toEqual({kind: 'policy', chain: 'INPUT', policy: 'DROP'});
  });

  it('RETURN in a user chain continues after the jump; RETURN in a built-in chain applies the policy', () => {
    const ruleset = filter(
      ['-A INPUT -j CHECK', '-A INPUT -p tcp -j RETURN', '-A INPUT -j ACCEPT', '-A CHECK -s 198.18.0.0/15 -j RETURN', '-A CHECK -j REJECT'],
      {chains: ['CHECK']},
    );
    expect(evaluate(ruleset, newTcp()).decidedBy).toEqual({kind: 'policy', chain: 'INPUT', policy: 'DROP'});
    expect(evaluate(ruleset, newTcp({protocol: 'udp'})).verdict).toBe('ACCEPT');
    expect(evaluate(ruleset, newTcp({source: '192.0.2.1'})).verdict).toBe('REJECT');
  });

  it('interface wildcards and negations', () => {
    const ruleset = filter(['-A OUTPUT -o eth+ -j ACCEPT', '-A OUTPUT ! -o wg0 -j REJECT'], {output: 'DROP'});
    const out = (outInterface: string): string =>
      evaluate(ruleset, {chain: 'OUTPUT', outInterface, source: '10.0.0.1', destination: '10.0.0.2', protocol: 'udp', sourcePort: 1, destinationPort: 2, state: 'NEW'}).verdict;
    expect([out('eth0'), out('eth1.100'), out('ens3'), out('wg0')]).toEqual(['ACCEPT', 'ACCEPT', 'REJECT', 'DROP']);
  });

  it('protocol numbers, `all`, negated protocol and negated ports', () => {
    const ruleset = filter(['-A INPUT ! -p 6 -j REJECT', '-A INPUT -p all -m multiport ! --dports 22,80:90 -j ACCEPT']);
    expect(evaluate(ruleset, newTcp({protocol: 'udp'})).verdict).toBe('REJECT');
    expect(evaluate(ruleset, newTcp({destinationPort: 85})).verdict).toBe('DROP');
    expect(evaluate(ruleset, newTcp({destinationPort: 91})).verdict).toBe('ACCEPT');
  });

  it('-m state --state and --ports (either port)', () => {
    const ruleset = filter(['-A INPUT -m state --state NEW -p tcp -m multiport --ports 5000 -j ACCEPT']);
    expect(evaluate(ruleset, newTcp({sourcePort: 5000, destinationPort: 1})).verdict).toBe('ACCEPT');
    expect(evaluate(ruleset, newTcp({destinationPort: 5000})).verdict).toBe('ACCEPT');
    expect(evaluate(ruleset, newTcp({destinationPort: 5000, state: 'RELATED'})).verdict).toBe('DROP');
  });

  it('ICMP by name and `any`; an ICMP match never matches another protocol', () => {
    const ruleset = filter(['-A INPUT -p icmp -m icmp --icmp-type echo-request -j ACCEPT', '-A INPUT -p icmp -m icmp --icmp-type fragmentation-needed -j REJECT']);
    const icmp = (icmpType: number, icmpCode?: number): Packet =>
      ({chain: 'INPUT', inInterface: 'eth0', source: '192.0.2.1', destination: '192.0.2.2', protocol: 'icmp', icmpType, ...(icmpCode === undefined ? {} : {icmpCode}), state: 'NEW'});
    expect(evaluate(ruleset, icmp(8)).verdict).toBe('ACCEPT');
    expect(evaluate(ruleset, icmp(3, 4)).verdict).toBe('REJECT');
    expect(evaluate(ruleset, icmp(3, 1)).verdict).toBe('DROP');
    expect(evaluate(filter(['-A INPUT -m icmp --icmp-type any -j ACCEPT']), newTcp()).verdict).toBe('DROP');
  });

  it('a jump to a chain that does not exist is uncertain and the walk continues', () => {
    const decision = evaluate(filter(['-A INPUT -j NFQUEUE --queue-num 1', '-A INPUT -j ACCEPT']), newTcp());
    expect(decision.verdict).toBe('ACCEPT');
    expect(decision.uncertain[0]?.reason).toMatch(/NFQUEUE is not a chain/);
  });

  it('no filter table means everything is accepted, and says so', () => {
    const decision = evaluate({family: 4, tables: []}, newTcp());
    expect(decision.verdict).toBe('ACCEPT');
    expect(describeDecidedBy(decision.decidedBy)).toBe('the INPUT policy ACCEPT (no filter table)');
  });

  it('describes a deciding rule with its number, comment and text', () => {
    const ruleset = filter(['-A INPUT -i lo -j ACCEPT', '-A INPUT -p tcp -m comment --comment "no web" -j DROP']);
    expect(describeDecidedBy(evaluate(ruleset, newTcp()).decidedBy)).toBe(
      'rule 2 of INPUT "no web" (-A INPUT -p tcp -m comment --comment "no web" -j DROP)',
    );
  });
});

describe('portCutPoints', () => {
  it('cuts at every destination-port boundary for the protocol', () => {
    const ruleset = filter([
      '-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT',
      '-A INPUT -p tcp -m multiport --dports 80,443,8000:8100 -j ACCEPT',
      '-A INPUT -p udp -m udp --dport 53 -j ACCEPT',
      '-A INPUT -p tcp -m tcp --sport 99 -j ACCEPT',
    ]);
    expect(portCutPoints(ruleset, 'tcp')).toEqual([1, 22, 23, 80, 81, 443, 444, 8000, 8101, 65536]);
    expect(portCutPoints(ruleset, 'udp')).toEqual([1, 53, 54, 80, 81, 443, 444, 8000, 8101, 65536]);
  });
});

describe('address helpers (source/core/ip.ts)', () => {
  it('parses prefixes, dotted and colon netmasks, and refuses nonsense', () => {
    const contains = (network: string, address: string): boolean => networkContains(parseNetwork(network)!, parseAddress(address)!);
    expect(contains('0.0.0.0/0', '192.0.2.1')).toBe(true);
    expect(contains('::/0', '192.0.2.1')).toBe(false);
    expect(contains('10.0.0.0/255.0.0.0', '10.200.1.1')).toBe(true);
    expect(contains('fd00::/ffff:ff00::', 'fd00:12::1')).toBe(true);
    expect(contains('fd00::/ffff:ff00::', 'fd00:1200::1')).toBe(false);
    expect(contains('::ffff:192.0.2.0/120', '::ffff:192.0.2.77')).toBe(true);
    expect(contains('2001:db8::1', '2001:db8:0:0:0:0:0:1')).toBe(true);
    for (const bad of ['10.0.0.256', '10.0.0.0/33', '1::2::3', 'fd00::/129', 'eth0', '10.0.0.0/ffff::']) {
      expect(parseNetwork(bad), bad).toBeUndefined();
    }
  });

  it('formats IPv6 the RFC 5952 way', () => {
    expect(formatAddress(parseAddress('2001:0db8:0000:0000:0001:0000:0000:0001')!)).toBe('2001:db8::1:0:0:1');
    expect(formatAddress(parseAddress('fd00:132:0:0:0:0:0:12')!)).toBe('fd00:132::12');
    expect(formatAddress(parseAddress('::')!)).toBe('::');
  });
});
