// Docker's published ports read from what Docker writes (27/28 with iptables, 29 with its own
// nftables tables; recorded in fixtures/docker from the real tools), what the plan says of them,
// and the chain that restricts them to the plan.
import {spawnSync} from 'node:child_process';
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, it} from 'vitest';
import {hostCandidate, nftTableOf, restrictRefusal} from '../../source/core/backend.js';
import {formatSections, interpretDocker} from '../../source/core/discovery/index.js';
import {describePublished, dockerFacts, publishedChainLines, publishedFromIptablesNat, publishedFromNft, publishedToRestrict, withPublishedRules, type DockerFacts} from '../../source/core/docker.js';
import {formatRule} from '../../source/core/iptables-save.js';
import {toOwnChains} from '../../source/core/own-chains.js';
import {renderRuleset} from '../../source/core/render.js';
import {factsFromInventory, parseInventoryText} from '../../source/core/inventory.js';
import type {HostFacts} from '../../source/core/model.js';
import {parseNftJson} from '../../source/core/nft-ruleset.js';
import {buildPlan} from '../../source/core/plan.js';
import {AGENT_SCRIPT} from '../../source/remote/agent-script.js';

const fixture = (name: string): string => readFileSync(path.join(import.meta.dirname, '..', '..', 'fixtures', name), 'utf8');
const short = (ports: ReturnType<typeof publishedFromNft>): string[] =>
  ports.map((port) => `${port.family} ${port.proto}/${port.ports.first}-${port.ports.last} ${port.hostAddress ?? '*'} -> ${port.containerAddress}:${port.containerPorts ? `${port.containerPorts.first}-${port.containerPorts.last}` : '='} via ${port.bridge ?? '?'}`);

describe('reading published ports', () => {
  it('reads Docker 28\'s DNAT rules in the nat DOCKER chain, IPv4 and IPv6, host-bound and port ranges included', () => {
    expect(short(publishedFromIptablesNat(fixture('docker/docker28-nat.v4'), 4))).toEqual([
      '4 tcp/5432-5432 127.0.0.1 -> 172.17.0.3:5432-5432 via docker0',
      '4 tcp/8080-8080 * -> 172.17.0.2:80-80 via docker0',
      '4 udp/5353-5353 * -> 172.17.0.2:53-53 via docker0',
      '4 tcp/9000-9002 * -> 172.18.0.2:9000-9002 via br-5f1c0e4a9b2d',
      '4 tcp/8443-8443 203.0.113.20 -> 172.18.0.2:443-443 via br-5f1c0e4a9b2d',
    ]);
    expect(short(publishedFromIptablesNat(fixture('docker/docker28-nat.v6'), 6))).toEqual([
      '6 tcp/8080-8080 * -> fd00:d0c::2:80-80 via docker0',
      '6 udp/5353-5353 * -> fd00:d0c::2:53-53 via docker0',
    ]);
  });

  it('reads Docker 27\'s (a RETURN for the bridge first, counters in the save) and a whole save with the filter table', () => {
    expect(short(publishedFromIptablesNat(fixture('docker/docker27-nat.v4'), 4))).toEqual([
      '4 tcp/80-80 * -> 172.17.0.2:80-80 via docker0',
      '4 tcp/3000-3000 10.132.0.12 -> 172.17.0.3:3000-3000 via docker0',
    ]);
    // Docker's filter chains DOCKER (ACCEPT rules, no DNAT) are not published ports.
    expect(publishedFromIptablesNat(fixture('docker/docker28-filter.v4'), 4)).toEqual([]);
  });

  it('reads Docker 29\'s nftables tables (ip and ip6 docker-bridges) as nft -j prints them', () => {
    expect(short(publishedFromNft(parseNftJson(fixture('docker/docker29.json'))))).toEqual([
      '4 tcp/8080-8080 * -> 172.17.0.2:80-80 via docker0',
      '4 tcp/5432-5432 127.0.0.1 -> 172.17.0.3:5432-5432 via docker0',
      '4 udp/5353-5353 * -> 172.17.0.2:53-53 via docker0',
      '4 tcp/9000-9002 * -> 172.17.0.4:9000-9002 via docker0',
      '6 tcp/8080-8080 * -> fd00:d0c::2:80-80 via docker0',
    ]);
  });

  it('says "no Docker" only when neither its nat chain nor its tables are there', () => {
    expect(dockerFacts({nat4: '', nat6: '', nft: parseNftJson(fixture('nft/firewalld-rocky9.json'))})).toBeUndefined();
    expect(dockerFacts({nat4: fixture('iptables-save/fail2ban.v4'), nat6: ''})).toBeUndefined();
    // Docker with nothing published is still Docker (its FORWARD is still its own).
    const bare = '*nat\n:PREROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A DOCKER -i docker0 -j RETURN\nCOMMIT\n';
    expect(dockerFacts({nat4: bare, nat6: ''})).toEqual({published: []});
  });

  it('reads the script\'s sections, and says when they cannot be read rather than "no Docker"', () => {
    const output = formatSections({'nat-save4': fixture('docker/docker27-nat.v4'), 'nat-save6': '', 'nft-json': '{"nftables": []}'});
    expect(interpretDocker(output).docker?.published).toHaveLength(2);
    const broken = interpretDocker(formatSections({'nat-save4': '*nat\n:DOCKER - [0:0]\n-A DOCKER -j RETURN', 'nat-save6': ''}));
    expect(broken.docker).toBeUndefined();
    expect(broken.warnings[0]).toMatch(/^Docker's published ports could not be read: /);
  });
});

/** The seed fleet with wordpress-1 a Docker host publishing 8080 (v4, v6) and 9000-9002 (v4); haproxy-www may reach 8080. */
function seedWithDocker(restrict: boolean, options: Record<string, boolean> = {}) {
  const raw = JSON.parse(fixture('inventories/seed-with-addresses.json')) as {hosts: {name: string; allow?: unknown[]}[]};
  for (const host of raw.hosts) if (host.name === 'wordpress-1') host.allow = [{port: 8080, from: 'haproxy-www'}];
  const inventory = parseInventoryText(JSON.stringify({...raw, options: {...options, restrictPublished: restrict}}), 'seed.json');
  const docker: DockerFacts = {
    published: [
      ...publishedFromIptablesNat(fixture('docker/docker28-nat.v4'), 4).filter((port) => port.ports.first === 8080 || port.ports.first === 9000 || port.hostAddress === '127.0.0.1'),
      ...publishedFromIptablesNat(fixture('docker/docker28-nat.v6'), 6).filter((port) => port.proto === 'tcp'),
    ],
  };
  const facts = new Map<string, HostFacts>();
  for (const host of inventory.hosts) {
    const written = factsFromInventory(host) as HostFacts;
    facts.set(host.name, host.name === 'wordpress-1' ? {...written, docker} : written);
  }
  return buildPlan(inventory, facts);
}

describe('the plan on a Docker host', () => {
  it('leaves FORWARD to Docker there (and only there)', () => {
    const plan = seedWithDocker(false);
    const forward = (name: string, family: 'v4' | 'v6') => plan.hosts.find((host) => host.name === name)?.compiled[family].tables[0]?.chains.find((chain) => chain.name === 'FORWARD')?.policy;
    expect(forward('wordpress-1', 'v4')).toBe('ACCEPT');
    expect(forward('wordpress-1', 'v6')).toBe('ACCEPT');
    expect(forward('wordpress-2', 'v4')).toBe('DROP');
  });

  it('says who reaches each published port: anyone unrestricted; restricted, the plan\'s sources for that port or nobody', () => {
    const unrestricted = seedWithDocker(false);
    const host = unrestricted.hosts.find((candidate) => candidate.name === 'wordpress-1');
    expect(host).toBeDefined();
    expect(describePublished(host!, unrestricted.hosts, false)).toEqual([
      'wordpress-1 tcp/5432 on 127.0.0.1 (IPv4) → container 172.17.0.3:5432: this host only (bound to 127.0.0.1)',
      'wordpress-1 tcp/8080 (IPv4) → container 172.17.0.2:80: reachable from anywhere that routes to this host (Docker\'s rules, not ours, filter it; restrictPublished limits it to the plan)',
      'wordpress-1 tcp/9000-9002 (IPv4) → container 172.18.0.2:9000-9002: reachable from anywhere that routes to this host (Docker\'s rules, not ours, filter it; restrictPublished limits it to the plan)',
      'wordpress-1 tcp/8080 (IPv6) → container [fd00:d0c::2]:80: reachable from anywhere that routes to this host (Docker\'s rules, not ours, filter it; restrictPublished limits it to the plan)',
    ]);
    const restricted = describePublished(host!, unrestricted.hosts, true);
    expect(restricted[1]).toBe('wordpress-1 tcp/8080 (IPv4) → container 172.17.0.2:80: reachable from haproxy-www only (restricted to the plan)');
    expect(restricted[2]).toBe('wordpress-1 tcp/9000-9002 (IPv4) → container 172.18.0.2:9000-9002: reachable from nobody: the plan grants no one that port (restricted to the plan)');
    expect(restricted[3]).toBe('wordpress-1 tcp/8080 (IPv6) → container [fd00:d0c::2]:80: reachable from haproxy-www only (restricted to the plan)');
    // A host without Docker says nothing.
    expect(describePublished(unrestricted.hosts.find((candidate) => candidate.name === 'wordpress-2')!, unrestricted.hosts, true)).toEqual([]);
  });

  it('restricts each published port to the grants for it on the host, drops the rest, and leaves loopback-bound ports alone', () => {
    const plan = seedWithDocker(true);
    const host = plan.hosts.find((candidate) => candidate.name === 'wordpress-1')!;
    const published = publishedToRestrict(host.facts, true);
    expect(published?.map((port) => port.ports.first)).toEqual([8080, 9000, 8080]);
    expect(publishedToRestrict(host.facts, false)).toBeUndefined();
    const haproxy = plan.hosts.find((candidate) => candidate.name === 'haproxy-www')!.facts.addresses.private;
    expect(publishedChainLines(published!, host.compiled)).toEqual([
      'type filter hook forward priority filter; policy accept;',
      'ct state established,related accept',
      `ct status dnat meta nfproto ipv4 meta l4proto tcp ct original proto-dst 8080 iifname "eth1" ip saddr { ${haproxy[0]} } accept`,
      'ct status dnat meta nfproto ipv4 meta l4proto tcp ct original proto-dst 8080 drop comment "published port: not in the plan\'s grants"',
      'ct status dnat meta nfproto ipv4 meta l4proto tcp ct original proto-dst 9000-9002 drop comment "published port: not in the plan\'s grants"',
      `ct status dnat meta nfproto ipv6 meta l4proto tcp ct original proto-dst 8080 iifname "eth1" ip6 saddr { ${haproxy[1]} } accept`,
      'ct status dnat meta nfproto ipv6 meta l4proto tcp ct original proto-dst 8080 drop comment "published port: not in the plan\'s grants"',
    ]);
  });

  it('lets trustPrivate\'s peers (every port over the private network) through to every published port', () => {
    const plan = seedWithDocker(true, {trustPrivate: true});
    const host = plan.hosts.find((candidate) => candidate.name === 'wordpress-1')!;
    const lines = publishedChainLines(publishedToRestrict(host.facts, true)!, host.compiled);
    const ranged = lines.find((line) => line.includes('proto-dst 9000-9002') && line.endsWith('accept'));
    const others = plan.hosts.filter((other) => other.name !== 'wordpress-1').map((other) => other.facts.addresses.private[0]);
    for (const address of others) expect(ranged, address).toContain(address);
    expect(describePublished(host, plan.hosts, true)[2]).toMatch(/tcp\/9000-9002 .*: reachable from haproxy-www, mysql-1, mysql-2, tunnel-1, wordpress-2 only/);
  });

  it('puts the chain in our table, which the agent\'s ownership check still takes as ours alone', () => {
    const plan = seedWithDocker(true);
    const host = plan.hosts.find((candidate) => candidate.name === 'wordpress-1')!;
    const text = nftTableOf(host.compiled, publishedToRestrict(host.facts, true));
    expect(text).toMatch(/\n\tchain published \{\n\t\ttype filter hook forward priority filter; policy accept;\n/);
    expect(text.trimEnd().endsWith('}\n}')).toBe(true);
    expect(nftTableOf(host.compiled)).not.toContain('chain published');
    const program = /^nft_ours_awk='([\s\S]*?)'$/m.exec(AGENT_SCRIPT)?.[1] ?? '';
    expect(spawnSync('awk', [program], {input: text}).status).toBe(0);
  });

  it('on iptables: IW-PUBLISHED, entered from DOCKER-USER, lets the grants\' sources reach each port (its original port, after DNAT) and drops the rest', () => {
    const plan = seedWithDocker(true);
    const host = plan.hosts.find((candidate) => candidate.name === 'wordpress-1')!;
    const published = publishedToRestrict(host.facts, true)!;
    const [haproxy4, haproxy6] = plan.hosts.find((candidate) => candidate.name === 'haproxy-www')!.facts.addresses.private;
    const ours = (ruleset: Parameters<typeof toOwnChains>[0]): string[] =>
      (toOwnChains(ruleset).tables[0]?.rules ?? []).map((rule) => formatRule(rule)).filter((line) => line.includes('PUBLISHED'));
    const match = (port: string): string => `-p tcp -m conntrack --ctstate DNAT -m conntrack --ctstate NEW --ctorigdstport ${port}`;
    expect(ours(withPublishedRules(host.compiled.v4, published))).toEqual([
      '-A DOCKER-USER -j IW-PUBLISHED',
      `-A IW-PUBLISHED -s ${haproxy4} -i eth1 ${match('8080')} -j RETURN`,
      `-A IW-PUBLISHED ${match('8080')} -j DROP`,
      `-A IW-PUBLISHED ${match('9000:9002')} -j DROP`,
    ]);
    expect(ours(withPublishedRules(host.compiled.v6, published))).toEqual([
      '-A DOCKER-USER -j IW-PUBLISHED',
      `-A IW-PUBLISHED -s ${haproxy6} -i eth1 ${match('8080')} -j RETURN`,
      `-A IW-PUBLISHED ${match('8080')} -j DROP`,
    ]);
    // The candidate of an iptables host carries it; unrestricted, or a family without published ports, nothing of it.
    const candidate = hostCandidate(host.compiled, 'iptables', published);
    expect(renderRuleset(toOwnChains(candidate.v4))).toContain('-A DOCKER-USER -j IW-PUBLISHED');
    expect(hostCandidate(host.compiled, 'iptables').v4).toBe(host.compiled.v4);
    expect(withPublishedRules(host.compiled.v6, published.filter((port) => port.family === 4))).toBe(host.compiled.v6);
    expect(hostCandidate(host.compiled, 'nftables', published).v4.tables[0]?.rules).toEqual([]);
  });

  it('on iptables, a port published on a host address only is matched on that address too', () => {
    const plan = seedWithDocker(true);
    const host = plan.hosts.find((candidate) => candidate.name === 'wordpress-1')!;
    const bound = publishedFromIptablesNat(fixture('docker/docker28-nat.v4'), 4).filter((port) => port.ports.first === 8443);
    expect(bound[0]?.hostAddress).toBe('203.0.113.20');
    const lines = (toOwnChains(withPublishedRules(host.compiled.v4, bound)).tables[0]?.rules ?? []).map((rule) => formatRule(rule));
    expect(lines).toContain('-A IW-PUBLISHED -p tcp -m conntrack --ctstate DNAT -m conntrack --ctstate NEW --ctorigdst 203.0.113.20 --ctorigdstport 8443 -j DROP');
  });

  it('reads which families have DOCKER-USER, and refuses iptables hosts whose published family lacks it (naming the host)', () => {
    const nat = fixture('docker/docker28-nat.v4');
    const facts = dockerFacts({nat4: nat, nat6: '', filterChains: {v4: ':INPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n', v6: ':INPUT ACCEPT [0:0]\n:DOCKER-USERS - [0:0]\n'}});
    expect(facts?.userChain).toEqual([4]);
    const v4 = facts!.published.filter((port) => port.ports.first === 8080);
    const v6 = publishedFromIptablesNat(fixture('docker/docker28-nat.v6'), 6);
    expect(restrictRefusal('web-1', 'iptables', v4, facts, '--backend nftables')).toBeUndefined();
    expect(restrictRefusal('web-1', 'iptables', [...v4, ...v6], facts, '--backend nftables')).toBe(
      'web-1: restricting published container ports on the iptables backend needs Docker\'s DOCKER-USER chain, which the IPv6 filter table lacks (Docker not running, or Docker 29 on nftables: --backend nftables); nothing was changed',
    );
    expect(restrictRefusal('web-1', 'iptables', v4, {published: v4}, 'x')).toMatch(/^web-1: .*IPv4 filter table lacks/);
    expect(restrictRefusal('web-1', 'nftables', v4, {published: v4}, 'x')).toBeUndefined();
    expect(restrictRefusal('web-1', 'iptables', undefined, undefined, 'x')).toBeUndefined();
    // The discovery sections: a host's filter chains give the families.
    const sections = formatSections({'nat-save4': nat, 'nat-save6': '', 'filter-chains4': ':DOCKER-USER - [0:0]', 'filter-chains6': ':DOCKER-USER - [0:0]'});
    expect(interpretDocker(sections).docker?.userChain).toEqual([4, 6]);
  });
});
