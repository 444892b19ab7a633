import {readFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, it} from 'vitest';
import {
  classifyInterfaces,
  DISCOVERY_SCRIPT,
  DiscoveryParseError,
  firewallFacts,
  formatSections,
  interpretDiscovery,
  isPrivateAddress,
  mixedBackendsRefusal,
  parseIpAddr,
  parseIpRoute,
  parseIptablesVersion,
  parseOsRelease,
  parseSections,
  parseSs,
  parseSshConnection,
  persistenceFacts,
  suggestRoles,
  type HostDiscovery,
} from '../../source/core/discovery/index.js';

const FIXTURES = path.join(import.meta.dirname, '..', '..', 'fixtures', 'discovery');

function discover(fixture: string): HostDiscovery {
  const dir = path.join(FIXTURES, fixture);
  return interpretDiscovery({
    host: fixture,
    route: 'root@test:22',
    scriptOutput: readFileSync(path.join(dir, 'output.txt'), 'utf8'),
    sshConnection: readFileSync(path.join(dir, 'ssh-connection.txt'), 'utf8'),
    sshPort: 22,
  });
}

const side = (discovery: HostDiscovery, name: string) => discovery.interfaces.find((item) => item.name === name)?.side;
const roles = (discovery: HostDiscovery) => discovery.suggestedRoles.map((role) => role.role);

describe('recorded servers', () => {
  it('Debian 12 (recorded in a lab namespace): eth0 public, eth1 private, v4 and v6', () => {
    const host = discover('debian-12');
    expect(host.facts).toEqual({
      interfaces: {public: 'eth0', private: 'eth1'},
      addresses: {public: ['203.0.113.14', '2001:db8:100::14'], private: ['10.132.0.14', 'fd00:132::14']},
      sshPort: 22,
    });
    expect(host.os).toMatchObject({id: 'debian', versionId: '12'});
    expect(host.firewall.backend).toBe('nf_tables');
    expect(host.firewall.iptablesSave).toContain('-A INPUT -i lo -j ACCEPT');
    expect(host.firewall.iptablesSave.endsWith('\n')).toBe(true);
    expect(host.listening).toContainEqual({proto: 'tcp', port: 3306, address: '0.0.0.0', program: 'python3'});
    expect(host.listening).toContainEqual({proto: 'tcp', port: 25, address: '127.0.0.1', program: 'python3'});
    expect(roles(host)).toEqual(['db']);
    expect(host.sshConnection).toEqual({clientAddress: '10.132.0.10', clientPort: 40522, serverAddress: '10.132.0.14', serverPort: 22});
    expect(host.ranAsRoot).toBe(true);
  });

  it('Ubuntu 24.04 with a /32 private address routed through a gateway; nginx suggests app', () => {
    const host = discover('ubuntu-24.04');
    expect(host.facts.interfaces).toEqual({public: 'eth0', private: 'enp7s0'});
    expect(host.facts.addresses.private).toEqual(['10.0.0.2']);
    expect(roles(host)).toEqual(['app']);
    expect(host.os.systemdPid1).toBe(true);
    expect(host.firewall.ufwActive).toBe(false);
    // systemd-resolved on 127.0.0.53%lo: the scope is stripped from the address
    expect(host.listening).toContainEqual({proto: 'udp', port: 53, address: '127.0.0.53', program: 'systemd-resolve'});
    expect(host.persistence.kind).toBe('none');
    expect(host.warnings.some((warning) => warning.includes('persistence'))).toBe(true);
  });

  it('Rocky 9: firewalld and its native nftables table are flagged; postgres suggests db', () => {
    const host = discover('rocky-9');
    expect(host.facts.interfaces).toEqual({public: 'ens3', private: 'ens4'});
    expect(host.firewall.firewalldActive).toBe(true);
    expect(host.firewall.nativeNftTables).toEqual(['inet firewalld']);
    expect(host.warnings.join('\n')).toMatch(/firewalld is running/);
    expect(roles(host)).toEqual(['db']);
    expect(host.os.prettyName).toBe('Rocky Linux 9.4 (Blue Onyx)');
  });

  it('our own nftables table (the nftables backend) is not flagged as another manager\'s', () => {
    const dir = path.join(FIXTURES, 'rocky-9');
    const output = readFileSync(path.join(dir, 'output.txt'), 'utf8').replace('table inet firewalld', 'table inet isolate_wizard\ntable inet firewalld');
    expect(output).toContain('table inet isolate_wizard');
    const host = interpretDiscovery({host: 'rocky-9', route: 'root@test:22', scriptOutput: output, sshConnection: readFileSync(path.join(dir, 'ssh-connection.txt'), 'utf8'), sshPort: 22});
    expect(host.firewall.nativeNftTables).toEqual(['inet firewalld']);
  });

  it('DigitalOcean droplet: the anchor 10.17.x on eth0 does not make eth0 private; haproxy suggests lb', () => {
    const host = discover('do-droplet');
    expect(host.facts.interfaces).toEqual({public: 'eth0', private: 'eth1'});
    expect(host.facts.addresses.public).toEqual(['159.89.10.11', '10.17.0.5', '2604:a880:400:d1::8f3:1001']);
    expect(host.facts.addresses.private).toEqual(['10.132.0.11']);
    expect(roles(host)).toEqual(['lb']);
    expect(host.persistence).toEqual({
      kind: 'netfilter-persistent',
      files: {v4: '/etc/iptables/rules.v4', v6: '/etc/iptables/rules.v6'},
      existing: ['/etc/iptables/rules.v4', '/etc/iptables/rules.v6'],
    });
    expect(host.warnings).toEqual([]);
  });

  it('Docker host: docker0 and compose bridges are never the private network; Docker and fail2ban are flagged', () => {
    const host = discover('docker-host');
    expect(host.facts.interfaces).toEqual({public: 'ens3', private: 'ens10'});
    expect(side(host, 'docker0')).toBe('ignore');
    expect(side(host, 'br-3f2a9c1d7e44')).toBe('ignore');
    expect(host.firewall).toMatchObject({docker: true, fail2ban: true, kubernetes: false});
    expect(host.warnings.join('\n')).toMatch(/Docker/);
    expect(host.warnings.join('\n')).toMatch(/fail2ban/);
    expect(host.firewall.iptablesSave).toContain('*nat');
  });

  it('single NIC: no private interface is a warning; a loopback-only MySQL suggests nothing but is flagged', () => {
    const host = discover('single-nic');
    expect(host.facts.interfaces).toEqual({public: 'ens18'});
    expect(host.facts.addresses.private).toEqual([]);
    expect(roles(host)).toEqual([]);
    expect(host.warnings.join('\n')).toMatch(/no private interface/);
    expect(host.warnings.join('\n')).toMatch(/mysqld listens on 127\.0\.0\.1:3306 only/);
    expect(host.firewall.backend).toBe('legacy');
  });

  it('NATed host: the default route on a private-only interface is flagged, not taken silently', () => {
    const host = discover('nat-host');
    expect(host.facts.interfaces).toEqual({public: 'ens5', private: 'ens6'});
    expect(host.interfaces.find((item) => item.name === 'ens5')?.note).toMatch(/NAT/);
    expect(host.warnings.join('\n')).toMatch(/only private addresses/);
  });
});

describe('sections', () => {
  it('round-trips section text and exit codes, and notes a section cut short', () => {
    const output = formatSections({a: 'one\ntwo', b: {text: '', rc: 127}});
    const sections = parseSections(`${output}@@iw-begin c@@\npartial`);
    expect(sections.get('a')).toEqual({text: 'one\ntwo', rc: 0});
    expect(sections.get('b')).toEqual({text: '', rc: 127});
    expect(sections.get('c')).toEqual({text: 'partial'});
  });

  it('the script prints every section the interpreter needs', () => {
    for (const name of ['uid', 'os-release', 'pid1', 'ip-addr', 'ip-route4', 'ip-route6', 'ss', 'iptables-version', 'iptables-save', 'ip6tables-save', 'legacy-tables', 'commands', 'files']) {
      expect(DISCOVERY_SCRIPT).toMatch(new RegExp(`^section ${name} `, 'm'));
    }
  });

  it('fails clearly when ip -j addr is missing or failed', () => {
    expect(() => interpretDiscovery({host: 'x', route: 'r', scriptOutput: formatSections({uid: '0'})})).toThrow(DiscoveryParseError);
    expect(() =>
      interpretDiscovery({host: 'x', route: 'r', scriptOutput: formatSections({'ip-addr': {text: '', rc: 1}, 'ip-route4': '[]'})}),
    ).toThrow(/failed on the server/);
    expect(() => parseIpAddr('Usage: ip addr')).toThrow(/not JSON/);
  });
});

describe('classification edge cases', () => {
  const link = (name: string, ...addresses: string[]) =>
    parseIpAddr(
      JSON.stringify([
        {
          ifname: name,
          flags: ['UP'],
          addr_info: addresses.map((cidr) => {
            const [local, prefix] = cidr.split('/');
            return {family: local!.includes(':') ? 'inet6' : 'inet', local, prefixlen: Number(prefix), scope: 'global'};
          }),
        },
      ]),
    )[0]!;
  const route = (dev: string) => parseIpRoute(JSON.stringify([{dst: 'default', gateway: '192.0.2.1', dev}]));

  it('two candidate private interfaces: one is chosen and both are flagged', () => {
    const result = classifyInterfaces([link('eth0', '198.51.100.2/24'), link('eth1', '10.0.0.2/24'), link('eth2', '192.168.5.2/24')], route('eth0'), []);
    expect(result.facts.interfaces).toEqual({public: 'eth0', private: 'eth1'});
    expect(result.warnings.join('\n')).toMatch(/several candidate private interfaces \(eth1, eth2\)/);
    expect(result.interfaces.find((item) => item.name === 'eth2')?.note).toMatch(/candidate/);
  });

  it('no default route: public addresses still mark the public side, with a warning', () => {
    const result = classifyInterfaces([link('eth0', '198.51.100.2/24'), link('eth1', '10.0.0.2/24')], [], []);
    expect(result.facts.interfaces).toEqual({public: 'eth0', private: 'eth1'});
    expect(result.warnings.join('\n')).toMatch(/no default route/);
  });

  it('IPv6-only default route still marks the public interface; ULA is private', () => {
    const v6default = parseIpRoute(JSON.stringify([{dst: 'default', gateway: 'fe80::1', dev: 'eth0'}]));
    const result = classifyInterfaces([link('eth0', '2001:db8::5/64'), link('eth1', 'fd00:132::5/64')], [], v6default);
    expect(result.facts.interfaces).toEqual({public: 'eth0', private: 'eth1'});
    expect(result.interfaces[0]?.defaultRoute).toEqual({v4: false, v6: true});
  });

  it('knows the private ranges', () => {
    for (const address of ['10.1.2.3', '172.16.0.1', '172.31.255.1', '192.168.1.1', '100.64.0.1', '100.127.0.1', 'fd00:132::1', 'fc00::1']) {
      expect(isPrivateAddress(address), address).toBe(true);
    }
    for (const address of ['172.32.0.1', '100.128.0.1', '8.8.8.8', '203.0.113.10', '2001:db8::1', 'fe80::1']) {
      expect(isPrivateAddress(address), address).toBe(false);
    }
  });
});

describe('small parsers', () => {
  it('ss: IPv6 brackets, scope suffixes, UDP, and only LISTEN for TCP', () => {
    const services = parseSs(
      [
        'tcp   LISTEN 0 4096 [::ffff:127.0.0.1]:8080 *:* users:(("java",pid=5,fd=1))',
        'tcp   LISTEN 0 4096 [fe80::1%eth0]:53 [::]:* users:(("dnsmasq",pid=6,fd=2))',
        'tcp   ESTAB  0 0 10.0.0.2:22 10.0.0.9:5555 users:(("sshd",pid=7,fd=3))',
        'udp   UNCONN 0 0 0.0.0.0:51820 0.0.0.0:*',
      ].join('\n'),
    );
    expect(services).toEqual([
      {proto: 'tcp', port: 53, address: 'fe80::1', program: 'dnsmasq'},
      {proto: 'tcp', port: 8080, address: '::ffff:127.0.0.1', program: 'java'},
      {proto: 'udp', port: 51820, address: '0.0.0.0'},
    ]);
  });

  it('roles: 3306 -> db, haproxy -> lb, apache -> app, sshd alone -> nothing', () => {
    expect(suggestRoles([{proto: 'tcp', port: 22, address: '0.0.0.0', program: 'sshd'}]).suggestions).toEqual([]);
    const web = suggestRoles([
      {proto: 'tcp', port: 443, address: '::', program: 'apache2'},
      {proto: 'tcp', port: 3306, address: '10.132.0.14', program: 'mariadbd'},
    ]).suggestions.map((role) => role.role);
    expect(web.sort()).toEqual(['app', 'db']);
    expect(suggestRoles([{proto: 'tcp', port: 80, address: '0.0.0.0', program: 'haproxy'}]).suggestions[0]?.role).toBe('lb');
  });

  it('iptables -V: nf_tables, legacy, and old versions without a suffix', () => {
    expect(parseIptablesVersion('iptables v1.8.9 (nf_tables)')).toEqual({version: '1.8.9', backend: 'nf_tables'});
    expect(parseIptablesVersion('iptables v1.8.7 (legacy)')).toEqual({version: '1.8.7', backend: 'legacy'});
    expect(parseIptablesVersion('iptables v1.6.1')).toEqual({version: '1.6.1', backend: 'legacy'});
    expect(parseIptablesVersion('sh: iptables: not found')).toEqual({backend: 'unknown'});
  });

  it('firewall: mixed backends, Kubernetes and active ufw are flagged', () => {
    const base = {iptablesVersion: 'iptables v1.8.9 (nf_tables)', iptablesSave: '', ip6tablesSave: '', legacyTables: '', interfaceNames: [], commands: ''};
    expect(firewallFacts({...base, legacyTables: 'filter\n'}).facts.mixedBackends).toBe(true);
    expect(firewallFacts({...base, iptablesSave: '# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n'}).facts.mixedBackends).toBe(true);
    expect(firewallFacts(base).facts.mixedBackends).toBe(false);
    const legacy = {...base, iptablesVersion: 'iptables v1.8.7 (legacy)', legacyTables: 'filter'};
    expect(firewallFacts({...legacy, nftIptablesTables: '*filter'}).facts.mixedBackends).toBe(true);
    expect(firewallFacts({...legacy, nftIptablesTables: ''}).facts.mixedBackends).toBe(false);
    const kube = firewallFacts({...base, iptablesSave: '*filter\n:KUBE-FIREWALL - [0:0]\nCOMMIT\n'});
    expect(kube.facts.kubernetes).toBe(true);
    expect(kube.warnings.join()).toMatch(/Kubernetes/);
    expect(firewallFacts({...base, ufwStatus: 'Status: active\n\nTo Action From'}).facts.ufwActive).toBe(true);
  });

  it('persistence: iptables-services on RHEL-likes', () => {
    const result = persistenceFacts('systemctl /usr/bin/systemctl', '/usr/libexec/iptables/iptables.init\n/etc/sysconfig/iptables');
    expect(result.facts).toEqual({
      kind: 'iptables-services',
      files: {v4: '/etc/sysconfig/iptables', v6: '/etc/sysconfig/ip6tables'},
      existing: ['/etc/sysconfig/iptables'],
    });
  });

  it('os-release quoting and SSH_CONNECTION', () => {
    expect(parseOsRelease('ID="rocky"\nNAME=\'Alpine\'\nX="a \\"b\\""')).toEqual({ID: 'rocky', NAME: 'Alpine', X: 'a "b"'});
    expect(parseSshConnection('2001:db8::1 50000 2001:db8::2 22\n')).toEqual({
      clientAddress: '2001:db8::1',
      clientPort: 50000,
      serverAddress: '2001:db8::2',
      serverPort: 22,
    });
    expect(parseSshConnection('\n')).toBeUndefined();
  });
});

describe('both iptables backends (recorded in a network namespace with iptables 1.8.9)', () => {
  const probe = (name: string) => readFileSync(path.join(FIXTURES, 'mixed-backends', name), 'utf8');

  it('refuses a host where iptables-legacy holds rules next to iptables-nft, saying why', () => {
    expect(mixedBackendsRefusal(probe('backends.txt'))).toBe('both iptables-legacy and nftables rules are loaded: packets pass both; remove one first');
  });

  it('lets a host through whose legacy table is only listed (flushed: it lets everything through)', () => {
    expect(mixedBackendsRefusal(probe('legacy-flushed.txt'))).toBeUndefined();
  });

  it('discovery warns for the same host (the probe is part of its script)', () => {
    for (const line of probe('backends.txt').split('\n').filter((line) => line.startsWith('@@iw-begin '))) {
      expect(DISCOVERY_SCRIPT).toMatch(new RegExp(`section ${line.slice('@@iw-begin '.length, -2)} `));
    }
  });
});
