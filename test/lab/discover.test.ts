// `isolate-wizard discover` against the tutorial fleet in the lab, through the bastion, as the
// operator runs it. Run: npm run build && npx vitest run --project lab test/lab/discover.test.ts
import {existsSync, readFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import type {HostDiscovery} from '../../source/core/discovery/index.js';
import {createConnector, HEADLESS_PROMPTER} from '../../source/remote/connection.js';
import {discoverFleet, type FleetDiscoveryResult} from '../../source/remote/discovery.js';
import {createLab, DEFAULT_HOSTS, type Lab} from '../../source/lab/lab.js';

const seedInventory = JSON.parse(
  readFileSync(path.join(import.meta.dirname, '..', '..', 'fixtures', 'inventories', 'seed.json'), 'utf8'),
) as object;

describe('discover over the seed fleet', () => {
  let lab: Lab;

  beforeAll(async () => {
    lab = await createLab();
  });

  afterAll(async () => {
    await lab?.teardown();
  });

  it('reports every host: eth0 public and eth1 private, IPv4 and IPv6, listening services, through the bastion', async () => {
    const inventory = lab.writeInventory(seedInventory);
    const started = Date.now();
    const result = await lab.runCli(['discover', '--inventory', inventory, '--json']);
    const wallMs = Date.now() - started;
    console.info(`discover --json over the ${lab.hosts.size}-host lab fleet: ${wallMs} ms wall time (CLI start included)`);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const {hosts} = JSON.parse(result.stdout) as {hosts: FleetDiscoveryResult[]};
    expect(hosts.map((host) => host.host)).toEqual(DEFAULT_HOSTS.map((spec) => spec.name));
    for (const entry of hosts) {
      if (!entry.ok) throw new Error(entry.error);
      const discovery: HostDiscovery = entry.discovery;
      const server = lab.hosts.get(entry.host)!;
      expect(discovery.facts, entry.host).toEqual({
        interfaces: {public: 'eth0', private: 'eth1'},
        addresses: {public: [server.publicV4, server.publicV6], private: [server.privateV4, server.privateV6]},
        sshPort: 22,
      });
      expect(discovery.ranAsRoot).toBe(true);
      const tcpPorts = [...new Set(discovery.listening.filter((service) => service.proto === 'tcp').map((service) => service.port))];
      const spec = DEFAULT_HOSTS.find((candidate) => candidate.name === entry.host)!;
      expect(tcpPorts.sort((a, b) => a - b), entry.host).toEqual([22, ...(spec.listen?.tcp ?? [])].sort((a, b) => a - b));
      expect(discovery.firewall.backend).toBe('nf_tables');
      // What backend auto gives it: mysql-2 has no nft; the others' nft takes a table like ours (nft -c, for real).
      expect(discovery.firewall.nftUsable, entry.host).toBe(entry.host !== 'mysql-2');
      if (entry.host === 'mysql-2') expect(discovery.firewall.nftProblem).toBe('nft is not installed');
      if (entry.host === 'tunnel-1') {
        expect(discovery.route).toBe(`root@${server.publicV4}:22`);
        expect(discovery.suggestedRoles.map((role) => role.role)).toEqual(['bastion']);
        expect(discovery.sshConnection?.clientAddress).toBe(lab.operator.v4);
      } else {
        expect(discovery.route).toBe(`root@${server.privateV4}:22 via tunnel-1`);
        // seen from the server, our session comes from the bastion's private address
        expect(discovery.sshConnection).toMatchObject({clientAddress: lab.hosts.get('tunnel-1')!.privateV4, serverAddress: server.privateV4, serverPort: 22});
      }
      if (entry.host.startsWith('mysql-')) expect(discovery.suggestedRoles.map((role) => role.role)).toContain('db');
      if (entry.host.startsWith('wordpress-') || entry.host === 'haproxy-www') {
        expect(discovery.suggestedRoles.map((role) => role.role)).toContain('app');
      }
    }
  });

  it('in-process, the same discovery takes one connection per host plus the shared bastion', async () => {
    const connector = createConnector({home: lab.home, env: {}, prompter: HEADLESS_PROMPTER, dial: (host, port) => lab.dial(host, port)});
    const targets = DEFAULT_HOSTS.map((spec) => ({name: spec.name, ssh: spec.name}));
    const logins = (name: string) => (readFileSync(lab.hosts.get(name)!.sshdLogPath, 'utf8').match(/Accepted publickey/g) ?? []).length;
    const before = new Map(targets.map((target) => [target.name, logins(target.name)]));
    try {
      const started = Date.now();
      const results = await discoverFleet(connector, targets);
      console.info(`discoverFleet in-process over ${targets.length} hosts: ${Date.now() - started} ms (no CLI start-up)`);
      expect(results.every((entry) => entry.ok)).toBe(true);
    } finally {
      await connector.closeAll();
    }
    // One login per server: tunnel-1 as a target and as everybody's jump host is the same connection.
    for (const target of targets) expect(logins(target.name) - before.get(target.name)!, target.name).toBe(1);
  });

  it('plan discovers the facts the inventory leaves out, and prints what the written facts give', async () => {
    const discovered = await lab.runCli(['plan', '--inventory', lab.writeInventory(seedInventory), '--host', 'mysql-1', '--family', '6', '--format', 'iptables']);
    expect(discovered.code, discovered.stderr).toBe(0);
    const written = JSON.parse(
      readFileSync(path.join(import.meta.dirname, '..', '..', 'fixtures', 'inventories', 'seed-with-addresses.json'), 'utf8'),
    ) as {hosts: {name: string; interfaces: object; addresses: object}[]};
    // The lab's servers have the fixture's interface names and address plan, so the two agree.
    const offline = await lab.runCli(['plan', '--inventory', lab.writeInventory(written, 'written.json'), '--host', 'mysql-1', '--family', '6', '--format', 'iptables']);
    expect(offline.code, offline.stderr).toBe(0);
    expect(discovered.stdout).toContain('-A IW-INPUT -s fd00:132::12/128 -i eth1 -p tcp -m tcp --dport 3306');
    expect(discovered.stdout).toBe(offline.stdout);
  });

  it('plan under backend auto shows, for each discovered host, what auto will choose there: iptables on mysql-2 (no nft)', async () => {
    const result = await lab.runCli(['plan', '--inventory', lab.writeInventory(seedInventory), '--host', 'mysql-1']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('== mysql-1 · nftables (nft -f) ==');
    expect(result.stdout).toMatch(/as discovery found it\)/);
    const other = await lab.runCli(['plan', '--inventory', lab.writeInventory(seedInventory), '--host', 'mysql-2']);
    expect(other.code, other.stderr).toBe(0);
    expect(other.stdout).toContain('== mysql-2 · IPv4 (iptables-restore) ==');
    expect(other.stdout).not.toContain('table inet isolate_wizard');
  });

  it('prints a readable table and discovers only the hosts asked for', async () => {
    const inventory = lab.writeInventory(seedInventory);
    const result = await lab.runCli(['discover', '--inventory', inventory, '--host', 'mysql-1', '--host', 'haproxy-www']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^haproxy-www {2}root@10\.132\.0\.11:22 via tunnel-1/m);
    expect(result.stdout).toMatch(/^ {4}eth0 {2}public {3}203\.0\.113\.14\/24 2001:db8:100::14\/64/m);
    expect(result.stdout).toMatch(/^ {4}eth1 {2}private {2}10\.132\.0\.14\/24 fd00:132::14\/64/m);
    expect(result.stdout).toContain('tcp/3306');
    expect(result.stdout).toContain('  backend auto: nftables (nft takes a table like ours)');
    expect(result.stdout).not.toContain('wordpress-1');
  });

  it('an unknown --host is bad input: exit 2, nothing contacted', async () => {
    const inventory = lab.writeInventory(seedInventory);
    const result = await lab.runCli(['discover', '--inventory', inventory, '--host', 'nope']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--host: no host "nope"');
  });

  it('a host that fails does not stop the others, and its error says what to do', async () => {
    const inventory = lab.writeInventory({
      hosts: [
        {name: 'tunnel-1', ssh: 'tunnel-1', roles: ['bastion']},
        {name: 'mysql-1', ssh: 'mysql-1', roles: ['db']},
        {name: 'ghost', ssh: 'root@10.132.0.77', jump: 'tunnel-1', roles: ['app']},
      ],
    });
    const result = await lab.runCli(['discover', '--inventory', inventory, '--json']);
    expect(result.code).toBe(1);
    const {hosts} = JSON.parse(result.stdout) as {hosts: FleetDiscoveryResult[]};
    expect(hosts.map((host) => [host.host, host.ok])).toEqual([
      ['tunnel-1', true],
      ['mysql-1', true],
      ['ghost', false],
    ]);
    expect(result.stderr).toMatch(/^isolate-wizard: ghost: the jump host tunnel-1 could not open a tunnel to 10\.132\.0\.77:22/m);
  });

  it('hostile names and destinations never reach a shell on any server', async () => {
    const marker = `/tmp/iw-pwned-${lab.id}`;
    const inventory = lab.writeInventory({
      hosts: [
        {name: 'evil-1', ssh: `mysql-1;touch ${marker}`, roles: ['db']},
        {name: 'evil-2', ssh: `$(touch ${marker})`, roles: ['db']},
        {name: 'evil-3', ssh: `root@10.132.0.14`, jump: `tunnel-1;touch ${marker}`, roles: ['db']},
        {name: 'evil-4', ssh: `\`touch ${marker}\``, roles: ['db']},
      ],
    });
    // The inventory check refuses them before anything is contacted...
    const result = await lab.runCli(['discover', '--inventory', inventory]);
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(4);
    // ...and past that check, the SSH layer carries such names as data only: drive it directly.
    const hostile = [
      {name: `mysql-1;touch ${marker}`, ssh: 'mysql-1'},
      {name: `$(touch ${marker})`, ssh: 'haproxy-www'},
      {name: `\`touch ${marker}\``, ssh: 'root@10.132.0.12', jump: 'tunnel-1'},
      {name: 'dest-1', ssh: `$(touch ${marker})`},
    ];
    const connector = createConnector({home: lab.home, env: {}, prompter: HEADLESS_PROMPTER, dial: (host, port) => lab.dial(host, port)});
    try {
      const results = await discoverFleet(connector, hostile);
      expect(results.map((entry) => entry.ok)).toEqual([true, true, true, false]);
    } finally {
      await connector.closeAll();
    }
    for (const server of [...lab.hosts.values(), lab.tenant]) {
      const check = await server.exec(['test', '-e', marker]);
      expect(check.code, `${marker} on ${server.name}`).not.toBe(0);
    }
    expect(existsSync(marker)).toBe(false);
  });
});
