// Docker's published ports in the lab: wordpress-1 is made a Docker host as Docker 28 makes one
// with iptables (a docker0 bridge, a "container" network namespace behind it listening on 80, the
// nat table's DOCKER chain DNATing 8080 to it, the filter table's DOCKER* chains, IPv4 and IPv6).
// Published ports go through the forward hook, never input: by real connections, the plan's
// words hold — unrestricted, anyone who routes to the host reaches 8080; with restrictPublished
// only the plan's sources for 8080 do, on nftables (a chain of our table) and on iptables (our
// IW-PUBLISHED, entered from Docker's DOCKER-USER, which outlives Docker re-inserting its FORWARD
// jumps); a rollback gives the earlier reachability back; Docker's chains are never touched.
import {spawn, type ChildProcess} from 'node:child_process';
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest';
import {createLab, DEFAULT_HOSTS, type Lab} from '../../source/lab/lab.js';
import {run, runChecked} from '../../source/lab/process.js';
import {labHost, ourNftTable, resetFleet, waitFor} from './support/fleet.js';

const FIXTURE = path.join(import.meta.dirname, '..', '..', 'fixtures', 'inventories', 'seed-with-addresses.json');

const DOCKER_V4 = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-BRIDGE - [0:0]
:DOCKER-CT - [0:0]
:DOCKER-FORWARD - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-FORWARD
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER ! -i docker0 -o docker0 -j DROP
-A DOCKER-BRIDGE -o docker0 -j DOCKER
-A DOCKER-CT -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A DOCKER-FORWARD -j DOCKER-CT
-A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1
-A DOCKER-FORWARD -j DOCKER-BRIDGE
-A DOCKER-FORWARD -i docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-USER -j RETURN
COMMIT
`;
const DOCKER_V6 = DOCKER_V4.replace('127.0.0.0/8', '::1/128')
  .replace('172.17.0.0/16', 'fd00:d0c::/64')
  .replace('172.17.0.2:80', '[fd00:d0c::2]:80')
  .replace('172.17.0.2/32', 'fd00:d0c::2/128');

/** What Docker 29's nftables backend writes for the same container (moby's nftablesdoc), both families. */
const DOCKER_29 = ['ip', 'ip6']
  .map((family) => {
    const [ip, container] = family === 'ip' ? ['ip', '172.17.0.2'] : ['ip6', 'fd00:d0c::2'];
    const target = family === 'ip' ? `${container}:80` : `[${container}]:80`;
    return `table ${family} docker-bridges {
	map filter-forward-in-jumps {
		type ifname : verdict
		elements = { "docker0" : jump filter-forward-in__docker0 }
	}
	map filter-forward-out-jumps {
		type ifname : verdict
		elements = { "docker0" : jump filter-forward-out__docker0 }
	}
	chain filter-FORWARD {
		type filter hook forward priority filter; policy accept;
		oifname vmap @filter-forward-in-jumps
		iifname vmap @filter-forward-out-jumps
	}
	chain nat-PREROUTING {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local counter jump nat-prerouting-and-output
	}
	chain nat-prerouting-and-output {
		iifname != "docker0" tcp dport 8080 counter dnat to ${target} comment "DNAT"
	}
	chain filter-forward-in__docker0 {
		ct state established,related counter accept
		iifname "docker0" counter accept comment "ICC"
		${ip} daddr ${container} tcp dport 80 counter accept
		counter drop comment "UNPUBLISHED PORT DROP"
	}
	chain filter-forward-out__docker0 {
		ct state established,related counter accept
		counter accept comment "OUTGOING"
	}
}
`;
  })
  .join('');

let lab: Lab;
let containerNetns: string;
let listener: ChildProcess | undefined;
let inventoryFile: string;

const DOCKER_HOST = 'wordpress-1';

/** Docker's tables on the host (nat and filter, both families), without the save's comment lines. */
async function dockerRules(): Promise<string> {
  const host = labHost(lab, DOCKER_HOST);
  const saved = await host.exec(['sh', '-c', 'iptables-save -t nat; iptables-save -t filter; ip6tables-save -t nat; ip6tables-save -t filter']);
  return saved.stdout.replace(/^#.*\n/gm, '').replace(/\[\d+:\d+\]/g, '');
}

/** Docker's tables without what is ours (our IW- chains, our jumps into them). */
async function dockerRulesWithoutOurs(): Promise<string> {
  return (await dockerRules()).split('\n').filter((line) => !line.includes('IW-')).join('\n');
}

/** Who reaches the published port 8080 on the Docker host, by real connections, IPv4 and IPv6. */
async function reach8080(): Promise<string[]> {
  const host = labHost(lab, DOCKER_HOST);
  const probes: [string, string][] = [
    ['operator', host.publicV4 as string],
    ['operator', host.publicV6 as string],
    ['tenant', host.privateV4 as string],
    ['tenant', host.privateV6 as string],
    ['haproxy-www', host.privateV4 as string],
    ['haproxy-www', host.privateV6 as string],
    ['mysql-1', host.privateV4 as string],
  ];
  const outcomes = await Promise.all(probes.map(([from, address]) => lab.canConnect(from, address, 8080)));
  return probes.filter((_, index) => outcomes[index]).map(([from, address]) => `${from} -> ${address}`);
}

describe('Docker published ports', () => {
  beforeAll(async () => {
    // nft on every server (the default lab hides it on mysql-2): the restriction is written for nftables.
    lab = await createLab({hosts: DEFAULT_HOSTS.map((spec) => ({...spec, nft: true}))});
    const seed = JSON.parse(readFileSync(FIXTURE, 'utf8')) as {hosts: Record<string, unknown>[]};
    // The Docker host is discovered (plan reads its published ports); haproxy-www may reach its 8080.
    const hosts = seed.hosts.map((entry) => {
      if (entry['name'] !== DOCKER_HOST) return entry;
      const {addresses: _addresses, interfaces: _interfaces, ...rest} = entry;
      return {...rest, allow: [{port: 8080, from: 'haproxy-www'}]};
    });
    inventoryFile = lab.writeInventory({options: {backend: 'nftables'}, hosts}, 'docker.json');

    // A "container": its own network namespace behind docker0 on the Docker host, listening on 80.
    const host = labHost(lab, DOCKER_HOST);
    containerNetns = `iwlab-${lab.id}-ctr`;
    await runChecked('ip', ['netns', 'add', containerNetns]);
    await runChecked('ip', ['-n', host.netns, 'link', 'add', 'vethd0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', containerNetns]);
    const setHost = [
      'ip link add docker0 type bridge',
      'ip addr add 172.17.0.1/16 dev docker0',
      'ip -6 addr add fd00:d0c::1/64 dev docker0 nodad',
      'ip link set vethd0 master docker0 up',
      'ip link set docker0 up',
      'echo 1 > /proc/sys/net/ipv4/ip_forward',
      'echo 1 > /proc/sys/net/ipv6/conf/all/forwarding',
    ].join(' && ');
    const made = await host.exec(['sh', '-c', setHost]);
    expect(made.code, made.stderr).toBe(0);
    const setContainer = [
      'ip link set lo up',
      'ip addr add 172.17.0.2/16 dev eth0',
      'ip -6 addr add fd00:d0c::2/64 dev eth0 nodad',
      'ip link set eth0 up',
      'ip route add default via 172.17.0.1',
      'ip -6 route add default via fd00:d0c::1',
    ];
    for (const command of setContainer) await runChecked('ip', ['netns', 'exec', containerNetns, 'sh', '-c', command]);
    listener = spawn('ip', ['netns', 'exec', containerNetns, process.execPath, '-e', "require('net').createServer((s) => { s.on('error', () => {}); s.end('container\\n'); }).listen(80, '::')"], {stdio: 'ignore'});
    expect(await waitFor(async () => (await run('ip', ['netns', 'exec', containerNetns, 'ss', '-Htln', 'sport = :80'])).stdout.includes(':80'), 10_000)).toBe(true);
  }, 120_000);

  afterAll(async () => {
    listener?.kill();
    if (containerNetns) await run('ip', ['netns', 'delete', containerNetns]);
    await lab?.teardown();
  });

  beforeEach(async () => {
    await resetFleet(lab);
    // resetFleet deletes the iptables filter tables: Docker's chains come back as Docker left them.
    const host = labHost(lab, DOCKER_HOST);
    const v4 = await host.exec(['iptables-restore', '-w'], {input: DOCKER_V4});
    expect(v4.code, v4.stderr).toBe(0);
    const v6 = await host.exec(['ip6tables-restore', '-w'], {input: DOCKER_V6});
    expect(v6.code, v6.stderr).toBe(0);
  }, 60_000);

  it('unrestricted: plan says anyone who routes to the host reaches the published port, and so it is after apply', async () => {
    const before = await reach8080();
    expect(before).toHaveLength(7);

    const discovered = await lab.runCli(['discover', '--inventory', inventoryFile, '--host', DOCKER_HOST]);
    expect(discovered.code, discovered.stderr).toBe(0);
    expect(discovered.stdout).toContain('Docker published ports: tcp/8080 (IPv4) → container 172.17.0.2:80, tcp/8080 (IPv6) → container [fd00:d0c::2]:80');

    const plan = await lab.runCli(['plan', '--inventory', inventoryFile]);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('wordpress-1 tcp/8080 (IPv4) → container 172.17.0.2:80: reachable from anywhere that routes to this host');
    expect(plan.stdout).toContain('wordpress-1 tcp/8080 (IPv6) → container [fd00:d0c::2]:80: reachable from anywhere that routes to this host');

    const docker = await dockerRules();
    const applied = await lab.runCli(['apply', '--inventory', inventoryFile, '--yes', '--timeout', '60']);
    expect(applied.code, applied.stderr + applied.stdout).toBe(0);
    // Our table holds no restriction, and its forward chain leaves forwarding to Docker.
    const table = await ourNftTable(labHost(lab, DOCKER_HOST));
    expect(table).toMatch(/chain forward \{\s+type filter hook forward priority filter; policy accept;/);
    expect(table).not.toContain('chain published');
    // Input is locked (the container's port is not the host's): 80 is no longer open to the internet.
    expect(await lab.canConnect('operator', labHost(lab, DOCKER_HOST).publicV4 as string, 80)).toBe(false);
    expect(await reach8080()).toEqual(before);
    expect(await dockerRules()).toEqual(docker);
  }, 300_000);

  it('restricted: only the plan\'s sources for the port reach it; a rollback gives the earlier reachability back', async () => {
    const before = await reach8080();
    expect(before).toHaveLength(7);

    const plan = await lab.runCli(['plan', '--inventory', inventoryFile, '--restrict-published']);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('wordpress-1 tcp/8080 (IPv4) → container 172.17.0.2:80: reachable from haproxy-www only (restricted to the plan)');
    expect(plan.stdout).toContain('wordpress-1 tcp/8080 (IPv6) → container [fd00:d0c::2]:80: reachable from haproxy-www only (restricted to the plan)');
    expect(plan.stdout).toContain('chain published {');

    const docker = await dockerRules();
    const applied = await lab.runCli(['apply', '--inventory', inventoryFile, '--restrict-published', '--timeout', '120'], {input: 'n\n'});
    expect(applied.code, applied.stderr + applied.stdout).toBe(0);
    const host = labHost(lab, DOCKER_HOST);
    expect(await ourNftTable(host)).toContain('ct original proto-dst 8080');
    expect((await reach8080()).sort()).toEqual([`haproxy-www -> ${host.privateV4}`, `haproxy-www -> ${host.privateV6}`].sort());
    expect(await dockerRules()).toEqual(docker);

    const rolled = await lab.runCli(['rollback', '--inventory', inventoryFile, '--host', DOCKER_HOST]);
    expect(rolled.code, rolled.stderr + rolled.stdout).toBe(0);
    expect(await ourNftTable(host)).toBe('');
    expect(await reach8080()).toEqual(before);
    expect(await dockerRules()).toEqual(docker);
  }, 300_000);

  it('with Docker 29\'s own nftables tables instead: read from them, and restricted the same way', async () => {
    const host = labHost(lab, DOCKER_HOST);
    const switched = await host.exec(['sh', '-c', 'for t in "ip nat" "ip6 nat" "ip filter" "ip6 filter"; do nft delete table $t 2>/dev/null; done; nft -f -'], {input: DOCKER_29});
    expect(switched.code, switched.stderr).toBe(0);
    const theirs = async (): Promise<string> => (await host.exec(['sh', '-c', 'nft -s list table ip docker-bridges; nft -s list table ip6 docker-bridges'])).stdout;
    const docker = await theirs();
    try {
      expect(await reach8080()).toHaveLength(7);
      const plan = await lab.runCli(['plan', '--inventory', inventoryFile, '--restrict-published']);
      expect(plan.code, plan.stderr).toBe(0);
      expect(plan.stdout).toContain('wordpress-1 tcp/8080 (IPv4) → container 172.17.0.2:80: reachable from haproxy-www only (restricted to the plan)');
      expect(plan.stdout).toContain('wordpress-1 tcp/8080 (IPv6) → container [fd00:d0c::2]:80: reachable from haproxy-www only (restricted to the plan)');

      const applied = await lab.runCli(['apply', '--inventory', inventoryFile, '--restrict-published', '--yes', '--timeout', '60']);
      expect(applied.code, applied.stderr + applied.stdout).toBe(0);
      expect((await reach8080()).sort()).toEqual([`haproxy-www -> ${host.privateV4}`, `haproxy-www -> ${host.privateV6}`].sort());
      expect(await theirs()).toEqual(docker);
    } finally {
      await host.exec(['sh', '-c', 'nft delete table ip docker-bridges; nft delete table ip6 docker-bridges; true']);
    }
  }, 300_000);

  it('on the iptables backend: IW-PUBLISHED from DOCKER-USER lets only the plan\'s sources through, outlives a Docker restart, and a rollback gives everything back', async () => {
    const host = labHost(lab, DOCKER_HOST);
    const before = await reach8080();
    expect(before).toHaveLength(7);

    const plan = await lab.runCli(['plan', '--inventory', inventoryFile, '--backend', 'iptables', '--restrict-published']);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('wordpress-1 tcp/8080 (IPv4) → container 172.17.0.2:80: reachable from haproxy-www only (restricted to the plan)');
    expect(plan.stdout).toContain('-A DOCKER-USER -j IW-PUBLISHED');
    expect(plan.stdout).not.toContain('chain published {');
    const printed = await lab.runCli(['plan', '--inventory', inventoryFile, '--backend', 'iptables', '--restrict-published', '--host', DOCKER_HOST, '--family', '6', '--format', 'iptables']);
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout).toMatch(/^-A IW-PUBLISHED -s \S+ -i eth1 -p tcp -m conntrack --ctstate DNAT -m conntrack --ctstate NEW --ctorigdstport 8080 -j RETURN$/m);
    const json = await lab.runCli(['plan', '--inventory', inventoryFile, '--backend', 'iptables', '--restrict-published', '--host', DOCKER_HOST, '--format', 'json']);
    expect(json.code, json.stderr).toBe(0);
    expect(json.stdout).toContain('-A DOCKER-USER -j IW-PUBLISHED');

    const docker = await dockerRules();
    const applied = await lab.runCli(['apply', '--inventory', inventoryFile, '--backend', 'iptables', '--restrict-published', '--timeout', '120'], {input: 'n\n'});
    expect(applied.code, applied.stderr + applied.stdout).toBe(0);
    expect(await ourNftTable(host)).toBe('');
    const allowed = [`haproxy-www -> ${host.privateV4}`, `haproxy-www -> ${host.privateV6}`].sort();
    expect((await reach8080()).sort()).toEqual(allowed);
    // Ours is first in DOCKER-USER; Docker's rules are all there, where they were.
    const live = await dockerRules();
    for (const family of ['', '6']) {
      const userChain = (await host.exec([`ip${family}tables`, '-w', '-S', 'DOCKER-USER'])).stdout.trim().split('\n');
      expect(userChain, `IPv${family || '4'}`).toEqual(['-N DOCKER-USER', '-A DOCKER-USER -j IW-PUBLISHED', '-A DOCKER-USER -j RETURN']);
    }
    expect(await dockerRulesWithoutOurs()).toEqual(docker);
    expect(live).toContain('-A FORWARD -j IW-FORWARD');

    // Docker restarts: it puts its jumps back at the top of FORWARD, above ours; DOCKER-USER keeps its rules.
    const restart = ['DOCKER-FORWARD', 'DOCKER-USER'].map((chain) => `iptables -w -D FORWARD -j ${chain} && iptables -w -I FORWARD 1 -j ${chain} && ip6tables -w -D FORWARD -j ${chain} && ip6tables -w -I FORWARD 1 -j ${chain}`).join(' && ');
    const restarted = await host.exec(['sh', '-c', restart]);
    expect(restarted.code, restarted.stderr).toBe(0);
    expect((await host.exec(['iptables', '-w', '-S', 'FORWARD'])).stdout).toMatch(/-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-FORWARD\n-A FORWARD -j IW-FORWARD/);
    expect((await reach8080()).sort()).toEqual(allowed);

    const rolled = await lab.runCli(['rollback', '--inventory', inventoryFile, '--host', DOCKER_HOST]);
    expect(rolled.code, rolled.stderr + rolled.stdout).toBe(0);
    expect(await dockerRules()).toEqual(docker);
    expect(await reach8080()).toEqual(before);
  }, 300_000);

  it('on the iptables backend, a host whose IPv6 filter table has no DOCKER-USER is refused by name, nothing changed', async () => {
    const host = labHost(lab, DOCKER_HOST);
    const removed = await host.exec(['sh', '-c', 'ip6tables -w -D FORWARD -j DOCKER-USER && ip6tables -w -F DOCKER-USER && ip6tables -w -X DOCKER-USER']);
    expect(removed.code, removed.stderr).toBe(0);
    const docker = await dockerRules();
    const applied = await lab.runCli(['apply', '--inventory', inventoryFile, '--backend', 'iptables', '--restrict-published', '--yes', '--timeout', '60']);
    expect(applied.code, applied.stderr + applied.stdout).toBe(3);
    expect(applied.stderr).toContain("wordpress-1: restricting published container ports on the iptables backend needs Docker's DOCKER-USER chain, which the IPv6 filter table lacks");
    expect(await dockerRules()).toEqual(docker);
  }, 300_000);
});
