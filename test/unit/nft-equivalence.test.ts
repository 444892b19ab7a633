// The check the client runs on our live nftables table after a load: same decisions as the
// planned iptables rules, packet class by packet class. The live side is real: each table is
// loaded by the real nft in a network namespace of the test's own and read back with `nft -j`.
import {execFileSync, spawnSync} from 'node:child_process';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {parseIptablesSave} from '../../source/core/iptables-save.js';
import {nftAccessDifferences} from '../../source/core/nft-equivalence.js';
import {parseNftJson, type NftRuleset} from '../../source/core/nft-ruleset.js';

const NETNS = `iw-nfteq-${process.pid}`;

function live(table: string): NftRuleset {
  execFileSync('ip', ['netns', 'exec', NETNS, 'nft', '-f', '-'], {input: `table inet isolate_wizard\ndelete table inet isolate_wizard\n${table}`});
  return parseNftJson(execFileSync('ip', ['netns', 'exec', NETNS, 'nft', '-j', 'list', 'ruleset'], {encoding: 'utf8'}));
}

const PLAN_V4 = parseIptablesSave(
  [
    '*filter',
    ':INPUT DROP [0:0]',
    ':FORWARD DROP [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    '-A INPUT -i lo -j ACCEPT',
    '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-A INPUT -s 10.132.0.11/32 -i eth1 -p tcp -m tcp --dport 3306 -j ACCEPT',
    '-A INPUT -s 10.132.0.12/32 -i eth1 -p tcp -m tcp --dport 3306 -j ACCEPT',
    '-A INPUT -s 10.132.0.3/32 -p tcp -m tcp --dport 22 -j ACCEPT',
    'COMMIT',
    '',
  ].join('\n'),
  4,
);
const PLAN_V6 = parseIptablesSave(
  ['*filter', ':INPUT DROP [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]', '-A INPUT -i lo -j ACCEPT', '-A INPUT -s fd00:132::11/128 -i eth1 -p tcp -m tcp --dport 3306 -j ACCEPT', 'COMMIT', ''].join('\n'),
  6,
);

const table = (mysqlPort: number, extra = ''): string => `table inet isolate_wizard {
  set db_clients_v4 { type ipv4_addr; elements = { 10.132.0.11, 10.132.0.12 } }
  chain input {
    type filter hook input priority filter; policy drop;
    iifname "lo" accept
    meta nfproto ipv4 ct state established,related accept
    iifname "eth1" ip saddr @db_clients_v4 tcp dport ${mysqlPort} accept
    ip saddr 10.132.0.3 tcp dport 22 accept
    iifname "eth1" ip6 saddr fd00:132::11 tcp dport ${mysqlPort} accept
    ${extra}
  }
  chain forward { type filter hook forward priority filter; policy drop; }
  chain output { type filter hook output priority filter; policy accept; }
}
`;

describe('our live nftables table against the planned iptables rules', () => {
  beforeAll(() => {
    spawnSync('ip', ['netns', 'del', NETNS]);
    execFileSync('ip', ['netns', 'add', NETNS]);
  });
  afterAll(() => {
    spawnSync('ip', ['netns', 'del', NETNS]);
  });

  it('finds no difference where the table decides as the plan, sets and all', () => {
    expect(nftAccessDifferences({v4: PLAN_V4, v6: PLAN_V6}, live(table(3306)))).toEqual([]);
  });

  it('names the packets a wrong port, a missing family or an extra accept decide otherwise', () => {
    const wrongPort = nftAccessDifferences({v4: PLAN_V4, v6: PLAN_V6}, live(table(3307)));
    expect(wrongPort.length).toBeGreaterThan(0);
    expect(wrongPort[0]).toMatch(/IPv4 INPUT NEW tcp\/3306 .*10\.132\.0\.1[12] -> .*: planned pass, live drop/);
    // The ESTABLISHED accept is IPv4 only in the table: IPv6 replies are dropped.
    const v6 = nftAccessDifferences({v4: PLAN_V4, v6: parseIptablesSave(PLAN_V6Text('-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT'), 6)}, live(table(3306)));
    expect(v6.some((line) => /^IPv6 INPUT ESTABLISHED .*planned pass, live drop/.test(line))).toBe(true);
    const extra = nftAccessDifferences({v4: PLAN_V4, v6: PLAN_V6}, live(table(3306, 'tcp dport 8080 accept')));
    expect(extra.some((line) => /tcp\/8080 .*planned drop, live pass/.test(line))).toBe(true);
  });

  it('counts what it cannot read in our table as a difference, never as the same', () => {
    const odd = nftAccessDifferences({v4: PLAN_V4, v6: PLAN_V6}, live(table(3306, 'meta mark 0x1 accept')));
    expect(odd.length).toBeGreaterThan(0);
    expect(odd[0]).toMatch(/live may-drop/);
  });

  it('says so when our table is not there at all', () => {
    execFileSync('ip', ['netns', 'exec', NETNS, 'nft', '-f', '-'], {input: 'table inet isolate_wizard\ndelete table inet isolate_wizard\n'});
    const empty = parseNftJson(execFileSync('ip', ['netns', 'exec', NETNS, 'nft', '-j', 'list', 'ruleset'], {encoding: 'utf8'}));
    expect(nftAccessDifferences({v4: PLAN_V4, v6: PLAN_V6}, empty)).toEqual(['no table inet isolate_wizard']);
  });

  it('samples every peer the plan names: one left out of a set of 300 is caught', () => {
    const peers = Array.from({length: 300}, (_, index) => `10.200.${index >> 8}.${index & 255}`);
    const plan = parseIptablesSave(['*filter', ':INPUT DROP [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]', ...peers.map((peer) => `-A INPUT -s ${peer}/32 -p tcp -m tcp --dport 5432 -j ACCEPT`), 'COMMIT', ''].join('\n'), 4);
    const none6 = parseIptablesSave(['*filter', ':INPUT DROP [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]', 'COMMIT', ''].join('\n'), 6);
    const withPeers = (members: string[]): string => `table inet isolate_wizard {
  set db_v4 { type ipv4_addr; elements = { ${members.join(', ')} } }
  chain input { type filter hook input priority filter; policy drop; ip saddr @db_v4 tcp dport 5432 accept; }
  chain forward { type filter hook forward priority filter; policy drop; }
  chain output { type filter hook output priority filter; policy accept; }
}
`;
    expect(nftAccessDifferences({v4: plan, v6: none6}, live(withPeers(peers)))).toEqual([]);
    const missing = nftAccessDifferences({v4: plan, v6: none6}, live(withPeers(peers.filter((peer) => peer !== '10.200.1.7'))));
    expect(missing).toEqual([expect.stringMatching(/^IPv4 INPUT NEW tcp\/5432 from port 40000 10\.200\.1\.7 -> .*planned pass, live drop$/), expect.stringMatching(/10\.200\.1\.7/)]);
  });

  it('reports a plan with too many packet classes to compare, never takes it as the same', () => {
    // 300 peers, each on a port of its own: ~2 million sampled packets, past the cap.
    const peers = Array.from({length: 300}, (_, index) => `10.201.${index >> 8}.${index & 255}`);
    const rules = peers.map((peer, index) => `-A INPUT -s ${peer}/32 -p tcp -m tcp --dport ${10_000 + index} -j ACCEPT`);
    const plan = parseIptablesSave(['*filter', ':INPUT DROP [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]', ...rules, 'COMMIT', ''].join('\n'), 4);
    const [answer, ...more] = nftAccessDifferences({v4: plan, v6: PLAN_V6}, live(table(3306)));
    expect(more).toEqual([]);
    const count = Number(/^IPv4: too many packet classes to compare \((\d+)\)$/.exec(answer ?? '')?.[1]);
    expect(count).toBeGreaterThan(200_000);
  });
});

function PLAN_V6Text(extra: string): string {
  return ['*filter', ':INPUT DROP [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]', '-A INPUT -i lo -j ACCEPT', extra, '-A INPUT -s fd00:132::11/128 -i eth1 -p tcp -m tcp --dport 3306 -j ACCEPT', 'COMMIT', ''].join('\n');
}
