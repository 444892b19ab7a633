import {describe, expect, it} from 'vitest';
import type {FleetHost} from '../../source/core/access.js';
import {parseInventoryText} from '../../source/core/inventory.js';
import {parseIptablesSave} from '../../source/core/iptables-save.js';
import {checkLockout, formatLockout, operatorPaths, type OperatorPath} from '../../source/core/lockout.js';
import type {Ruleset} from '../../source/core/model.js';
import {goldenFleet, readFixture} from './support/fixtures.js';



/** Replaces one host's IPv4 rules (built from lines after the policies). */
function withV4(fleet: FleetHost[], name: string, rules: string[], output = 'ACCEPT'): FleetHost[] {
  const v4: Ruleset = parseIptablesSave(
    ['*filter', ':INPUT DROP [0:0]', ':FORWARD DROP [0:0]', `:OUTPUT ${output} [0:0]`, ...rules, 'COMMIT'].join('\n'),
    4,
  );
  return fleet.map((host) => (host.name === name ? {...host, compiled: {...host.compiled, v4}} : host));
}

const OPERATOR = '198.51.100.7';
const seedPaths: OperatorPath[] = [
  {host: 'tunnel-1', port: 22, via: {kind: 'direct', source: OPERATOR}},
  ...['haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'].map(
    (host): OperatorPath => ({host, port: 22, via: {kind: 'jump', jumpHost: 'tunnel-1'}}),
  ),
];

describe('checkLockout', () => {
  it('finds nothing when every host keeps ssh from the bastion and the bastion from the operator', () => {
    expect(checkLockout(goldenFleet('seed-with-addresses'), seedPaths)).toEqual([]);
    expect(checkLockout(goldenFleet('strict-outbound'), seedPaths)).toEqual([]);
  });

  it('names the host, the jump host, its address, the interface and the deciding policy', () => {
    const fleet = withV4(goldenFleet('seed-with-addresses'), 'wordpress-1', [
      '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    ]);
    const findings = checkLockout(fleet, seedPaths);
    expect(findings).toEqual([
      {
        host: 'wordpress-1',
        severity: 'error',
        assumed: false,
        message: 'wordpress-1: a new SSH connection from tunnel-1 (10.132.0.10) on eth1 to tcp/22 would be dropped by the INPUT policy DROP',
      },
    ]);
  });

  it('sees a jump host whose OUTPUT does not let ssh out', () => {
    const fleet = withV4(
      goldenFleet('seed-with-addresses'),
      'tunnel-1',
      [
        '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
        '-A INPUT -i eth0 -p tcp -m tcp --dport 22 -j ACCEPT',
        '-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
        '-A OUTPUT -d 10.132.0.14/32 -p tcp -m tcp --dport 22 -j ACCEPT',
      ],
      'DROP',
    );
    const findings = checkLockout(fleet, seedPaths);
    expect(findings.map((finding) => finding.host)).toEqual(['haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-2']);
    expect(findings[0]?.message).toBe(
      'haproxy-www: tunnel-1 could not open a new SSH connection to 10.132.0.11 tcp/22: its OUTPUT would have it dropped by the OUTPUT policy DROP on tunnel-1',
    );
  });

  it('warns that the open session would be cut when replies are not accepted', () => {
    const fleet = withV4(goldenFleet('seed-with-addresses'), 'tunnel-1', ['-A INPUT -i eth0 -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT']);
    const messages = checkLockout(fleet, [seedPaths[0]!]).map((finding) => finding.message);
    expect(messages).toEqual([
      'tunnel-1: the open SSH session from your address (198.51.100.7) on eth0 would be cut: dropped by the INPUT policy DROP',
    ]);
  });

  it('checks the port sshd really listens on', () => {
    const findings = checkLockout(goldenFleet('seed-with-addresses'), [{host: 'tunnel-1', port: 2222, via: {kind: 'direct', source: OPERATOR}}]);
    expect(findings[0]?.message).toMatch(/^tunnel-1: a new SSH connection from your address \(198\.51\.100\.7\) on eth0 to tcp\/2222 would be dropped/);
  });

  it('assumes an internet address when the operator\'s is unknown, and says so', () => {
    const findings = checkLockout(goldenFleet('seed-with-addresses'), [{host: 'mysql-1', port: 22, via: {kind: 'direct'}}]);
    expect(findings[0]).toMatchObject({host: 'mysql-1', severity: 'error', assumed: true});
    expect(findings[0]?.message).toContain('from the internet (198.18.0.1) on eth0 to tcp/22 would be dropped by the INPUT policy DROP (assumed:');
    expect(checkLockout(goldenFleet('seed-with-addresses'), [{host: 'tunnel-1', port: 22, via: {kind: 'direct'}}])).toEqual([]);
  });

  it('uses the interface holding the address ssh connects to', () => {
    // tunnel-1 accepts ssh from the internet on eth0 only; reaching it on its private address fails.
    const findings = checkLockout(goldenFleet('seed-with-addresses'), [
      {host: 'tunnel-1', port: 22, address: '10.132.0.10', via: {kind: 'direct', source: '10.132.0.99'}},
    ]);
    expect(findings[0]?.message).toMatch(/from your address \(10\.132\.0\.99\) on eth1 to tcp\/22 would be dropped/);
  });

  it('checks IPv6 paths with the IPv6 rules', () => {
    const findings = checkLockout(goldenFleet('seed-with-addresses'), [
      {host: 'tunnel-1', port: 22, via: {kind: 'direct', source: '2001:db8:ffff::7'}},
      {host: 'wordpress-1', port: 22, via: {kind: 'direct', source: '2001:db8:ffff::7'}},
    ]);
    expect(findings.map((finding) => finding.host)).toEqual(['wordpress-1']);
    expect(findings[0]?.message).toContain('(2001:db8:ffff::7) on eth0');
  });

  it('checks no path for a host whose ssh config this tool does not follow, and says why', () => {
    const inv = parseInventoryText(readFixture('inventories/seed-with-addresses.json'), 'seed');
    const paths = operatorPaths(inv, new Map([['mysql-1', {unusable: 'ProxyCommand "nc %h %p" is not supported: use ProxyJump'}]]));
    expect(paths.find((path) => path.host === 'mysql-1')?.via).toEqual({kind: 'unusable', reason: 'ProxyCommand "nc %h %p" is not supported: use ProxyJump'});
    const findings = checkLockout(goldenFleet('seed-with-addresses'), paths.filter((path) => path.host === 'mysql-1'));
    expect(formatLockout(findings)).toEqual(['warning: mysql-1: the path cannot be checked: ProxyCommand "nc %h %p" is not supported: use ProxyJump']);
  });

  it('warns when the jump host is not part of the plan', () => {
    const findings = checkLockout(goldenFleet('seed-with-addresses'), [{host: 'mysql-1', port: 22, via: {kind: 'jump', jumpHost: 'elsewhere'}}]);
    expect(findings).toEqual([
      {host: 'mysql-1', severity: 'warning', assumed: false, message: 'mysql-1: its jump host elsewhere is not in this plan, so the path through it cannot be checked'},
    ]);
    expect(formatLockout(findings)).toEqual(['warning: mysql-1: its jump host elsewhere is not in this plan, so the path through it cannot be checked']);
  });

  it('works for single-NIC hosts reached through a bastion over the public side', () => {
    const fleet = goldenFleet('single-nic');
    const inventory = parseInventoryText(readFixture('inventories/single-nic.json'), 'single-nic');
    const paths = operatorPaths(inventory, new Map([['gate', {source: OPERATOR}]]));
    expect(checkLockout(fleet, paths)).toEqual([]);
  });
});

describe('operatorPaths', () => {
  const inventory = parseInventoryText(readFixture('inventories/single-nic.json'), 'single-nic');

  it('reads jumps and ports from the inventory', () => {
    expect(operatorPaths(inventory)).toEqual([
      {host: 'gate', port: 2222, address: '198.51.100.20', via: {kind: 'direct'}},
      {host: 'web-1', port: 22, via: {kind: 'jump', jumpHost: 'gate'}},
      {host: 'db-1', port: 22, via: {kind: 'jump', jumpHost: 'gate'}},
    ]);
  });

  it('prefers what the ssh layer resolved: ProxyJump, port, operator address', () => {
    const resolved = new Map([
      ['gate', {source: '192.0.2.50', port: 2222}],
      ['web-1', {port: 2200, address: '198.51.100.21'}],
      ['db-1', {proxyJump: 'web-1'}],
    ]);
    expect(operatorPaths(inventory, resolved)).toEqual([
      {host: 'gate', port: 2222, address: '198.51.100.20', via: {kind: 'direct', source: '192.0.2.50'}},
      {host: 'web-1', port: 2200, address: '198.51.100.21', via: {kind: 'jump', jumpHost: 'gate'}},
      {host: 'db-1', port: 22, via: {kind: 'jump', jumpHost: 'web-1'}},
    ]);
  });

  it('treats a ProxyJump outside the fleet as a direct path from an unknown address', () => {
    const paths = operatorPaths(inventory, new Map([['db-1', {proxyJump: 'jump.example.org'}]]));
    expect(paths[2]).toEqual({host: 'db-1', port: 22, via: {kind: 'direct'}});
  });
});
