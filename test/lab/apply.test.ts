// apply / confirm / rollback / status end to end, against the seed fleet in the lab: real sshd,
// real iptables, the built CLI in the operator's namespace. One lab for the whole file; every
// test starts from servers with no firewall and no agent state (resetFleet).
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {spawn as spawnPty} from '@lydell/node-pty';
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest';
import {createLab, type Lab, type LabHost} from '../../source/lab/lab.js';
import {liveFilter} from './support/faults.js';
import {agentState as agentStateOf, emptyAsNone, iptablesRuleCount, labHost, ourNftTable, resetFleet, SEED_FLEET, waitFor} from './support/fleet.js';

const FIXTURE = path.join(import.meta.dirname, '..', '..', 'fixtures', 'inventories', 'seed-with-addresses.json');
const SEED = JSON.parse(readFileSync(FIXTURE, 'utf8')) as {hosts: {name: string; roles: string[]}[]; options?: object};
/** The seed fleet pinned to the iptables backend: the tests below that read iptables state are about that path. */
const ON_IPTABLES = {...SEED, options: {...SEED.options, backend: 'iptables'}};
const FLEET = SEED_FLEET;

let lab: Lab;

const host = (name: string): LabHost => labHost(lab, name);

const filterOf = (name: string, family: 4 | 6 = 4): Promise<string> => liveFilter(host(name), family);

/** A filter table, '' when it is empty in either of the agent's forms (see emptyAsNone). */
const emptyFilter = async (name: string, family: 4 | 6 = 4): Promise<string> => emptyAsNone(await filterOf(name, family));

const agentState = (name: string): Promise<string> => agentStateOf(host(name));

const expired = async (name: string): Promise<boolean> => (await agentState(name)).includes('phase=expired');

beforeAll(async () => {
  lab = await createLab();
});

afterAll(async () => {
  await lab?.teardown();
});

beforeEach(async () => {
  await resetFleet(lab);
});

describe('apply on the seed fleet', () => {
  it('locks the fleet down with --yes (backend auto: nftables, iptables on mysql-2 which has no nft) and the resulting access is the intended one, v4 and v6', async () => {
    const inventory = lab.writeInventory(SEED, 'seed.json');
    const result = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60']);
    expect(result.stderr).not.toMatch(/failed/);
    expect(result.code).toBe(0);
    for (const name of FLEET) expect(result.stdout).toContain(`${name}: kept`);
    // Each server got the backend auto chose for it: our table where nft is, our chains on mysql-2.
    for (const name of FLEET.filter((other) => other !== 'mysql-2')) {
      expect(await ourNftTable(host(name)), name).toMatch(/^table inet isolate_wizard \{/);
      expect(await iptablesRuleCount(host(name)), name).toBe(0);
    }
    expect(await ourNftTable(host('mysql-2'))).toBe('');
    expect(await filterOf('mysql-2', 4)).toContain('-A INPUT -j IW-INPUT');
    expect(await filterOf('mysql-2', 6)).toContain('-A INPUT -j IW-INPUT');
    // Our own files and unit keep ours for boot, whatever loader the distribution has (none in the lab).
    expect(result.stdout).toMatch(/mysql-2: kept .*saved for boot \(\/etc\/isolate-wizard\/isolate-wizard\.v4, \.v6, loaded by isolate-wizard-iptables\.service\)/);

    const probes: [string, string, number, boolean][] = [
      // the internet reaches the load balancer's web ports, nothing behind it
      ['operator', '203.0.113.11', 80, true],
      ['operator', '2001:db8:100::11', 80, true],
      ['operator', '203.0.113.12', 80, false],
      ['operator', '2001:db8:100::12', 80, false],
      ['operator', '203.0.113.14', 3306, false],
      ['operator', '2001:db8:100::14', 3306, false],
      // ssh from the internet only to the bastion
      ['operator', '203.0.113.10', 22, true],
      ['operator', '203.0.113.12', 22, false],
      // the lb reaches its backends on port 80 (destination port, not the tutorial's --sport)
      ['haproxy-www', '10.132.0.12', 80, true],
      ['haproxy-www', '10.132.0.13', 80, true],
      ['haproxy-www', 'fd00:132::12', 80, true],
      ['haproxy-www', '10.132.0.14', 3306, false],
      // apps reach the databases; the bastion reaches everyone's ssh
      ['wordpress-1', '10.132.0.14', 3306, true],
      ['wordpress-2', 'fd00:132::15', 3306, true],
      ['tunnel-1', '10.132.0.14', 22, true],
      // the other tenant on the shared private network reaches nothing
      ['tenant', '10.132.0.12', 80, false],
      ['tenant', '10.132.0.14', 3306, false],
      ['tenant', 'fd00:132::14', 3306, false],
      ['tenant', '10.132.0.11', 22, false],
      // mysql-2, on iptables, next to the rest on nftables: the apps in, the others out
      ['wordpress-1', '10.132.0.15', 3306, true],
      ['wordpress-1', 'fd00:132::15', 3306, true],
      ['haproxy-www', '10.132.0.15', 3306, false],
      ['haproxy-www', 'fd00:132::15', 3306, false],
      ['tenant', '10.132.0.15', 3306, false],
      ['tenant', 'fd00:132::15', 3306, false],
      ['operator', '203.0.113.15', 3306, false],
      ['operator', '2001:db8:100::15', 22, false],
      ['tunnel-1', 'fd00:132::15', 22, true],
      // and mysql-2's own replication peer on nftables
      ['mysql-2', '10.132.0.14', 3306, true],
      ['mysql-2', 'fd00:132::14', 3306, true],
    ];
    // A few at a time. Each try has 2 s, which a loaded machine can spend starting it: a connection
    // that should open is tried up to three times (a drop never opens, so this hides no drop).
    const tryProbe = async ([from, address, port, want]: [string, string, number, boolean]): Promise<boolean> => {
      for (let attempt = 0; attempt < (want ? 3 : 1); attempt += 1) if (await lab.canConnect(from, address, port)) return true;
      return false;
    };
    const outcomes: boolean[] = [];
    for (let index = 0; index < probes.length; index += 4) outcomes.push(...(await Promise.all(probes.slice(index, index + 4).map(tryProbe))));
    const wrong = probes.filter((probe, index) => outcomes[index] !== probe[3]).map(([from, address, port, want]) => `${from} -> ${address}:${port} should ${want ? '' : 'not '}connect`);
    expect(wrong).toEqual([]);

    // The operator still gets in everywhere, through the bastion, with a brand-new ssh.
    const ssh = await lab.execOperator(['ssh', '-F', lab.sshConfigPath, 'mysql-2', 'true']);
    expect(ssh.code).toBe(0);

    const status = await lab.runCli(['status', '--inventory', inventory, '--json']);
    expect(status.code).toBe(0);
    const parsed = JSON.parse(status.stdout) as {hosts: {host: string; phase: string; pending: boolean; backups: number}[]};
    expect(parsed.hosts.map((entry) => [entry.host, entry.phase, entry.pending])).toEqual(FLEET.map((name) => [name, 'confirmed', false]));
  }, 300_000);

  it('without confirmation, every server rolls back by itself to its exact snapshot, and a late confirm says so', async () => {
    // wordpress-1 starts with rules of its own; the rest have no tables at all.
    await host('wordpress-1').exec(['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '8080', '-j', 'ACCEPT']);
    const before = await filterOf('wordpress-1');
    const inventory = lab.writeInventory(ON_IPTABLES, 'seed.json');
    // Long enough for `status` to see the batch pending on a busy machine.
    const applied = await lab.runCli(['apply', '--inventory', inventory, '--timeout', '20']);
    expect(applied.code).toBe(0); // not a terminal: left pending, with the command to confirm
    expect(applied.stdout).toContain('isolate-wizard confirm --inventory');
    expect(await filterOf('wordpress-1')).not.toEqual(before);

    const pending = await lab.runCli(['status', '--inventory', inventory]);
    expect(pending.stdout).toMatch(/wordpress-1: PENDING batch [a-z0-9-]+ \(loaded\), rolls back in \d+ s/);

    expect(await waitFor(async () => (await Promise.all(FLEET.map(expired))).every(Boolean), 60_000)).toBe(true);
    expect(await filterOf('wordpress-1')).toEqual(before);
    for (const name of FLEET.filter((candidate) => candidate !== 'wordpress-1')) {
      expect(await emptyFilter(name, 4), name).toBe('');
      expect(await emptyFilter(name, 6), name).toBe('');
    }
    const late = await lab.runCli(['confirm', '--inventory', inventory]);
    expect(late.code).toBe(4);
    expect(late.stdout).toMatch(/already rolled back/);
    expect(await filterOf('wordpress-1')).toEqual(before);
  });

  it('refuses a plan that cuts the operator\'s SSH path, before touching any host', async () => {
    // The bastion without its bastion role: nothing lets ssh in from the internet any more.
    const cut = {...SEED, hosts: SEED.hosts.map((entry) => (entry.name === 'tunnel-1' ? {...entry, roles: ['db']} : entry))};
    const inventory = lab.writeInventory(cut, 'cut.json');
    const result = await lab.runCli(['apply', '--inventory', inventory, '--yes']);
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/tunnel-1/);
    for (const name of FLEET) {
      expect(await filterOf(name)).toBe('');
      expect(await agentState(name)).toBe('');
    }
  });

  it('keeps Docker-like and fail2ban-like chains through apply and rollback', async () => {
    const wp = host('wordpress-1');
    const setup = [
      'iptables -N DOCKER && iptables -N DOCKER-USER && iptables -N f2b-sshd',
      'iptables -A DOCKER-USER -j RETURN',
      'iptables -A FORWARD -j DOCKER-USER && iptables -A FORWARD -o docker0 -j DOCKER',
      'iptables -A f2b-sshd -s 198.51.100.7/32 -j REJECT && iptables -A f2b-sshd -j RETURN',
      'iptables -I INPUT -p tcp -m multiport --dports 22 -j f2b-sshd',
      'iptables -t nat -N DOCKER && iptables -t nat -A DOCKER -i docker0 -j RETURN',
    ].join(' && ');
    expect((await wp.exec(['sh', '-c', setup])).code).toBe(0);
    const before = await filterOf('wordpress-1');
    const natBefore = (await wp.exec(['iptables-save', '-t', 'nat'])).stdout.replace(/^#.*\n/gm, '');
    const inventory = lab.writeInventory(ON_IPTABLES, 'seed.json');

    const applied = await lab.runCli(['apply', '--inventory', inventory, '--host', 'wordpress-1', '--timeout', '60']);
    expect(applied.code).toBe(0);
    const during = await filterOf('wordpress-1');
    expect(during).toContain(':f2b-sshd -');
    expect(during).toContain('-A f2b-sshd -s 198.51.100.7/32 -j REJECT');
    // Ours first (one jump), theirs after it exactly as they were.
    expect(during.split('\n').filter((line) => line.startsWith('-A INPUT'))).toEqual(['-A INPUT -j IW-INPUT', '-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd']);
    expect(during).toContain('-A FORWARD -o docker0 -j DOCKER');
    expect(during).toContain(':INPUT ACCEPT');
    expect((await wp.exec(['iptables-save', '-t', 'nat'])).stdout.replace(/^#.*\n/gm, '')).toEqual(natBefore);

    const rolled = await lab.runCli(['rollback', '--inventory', inventory, '--host', 'wordpress-1']);
    expect(rolled.code, rolled.stdout + rolled.stderr).toBe(0);
    expect(await filterOf('wordpress-1')).toEqual(before);
    expect((await wp.exec(['iptables-save', '-t', 'nat'])).stdout.replace(/^#.*\n/gm, '')).toEqual(natBefore);
  });

  it('a fail2ban ban holds for an address ours admits: our chain returns what it accepts, and the rest of INPUT still decides', async () => {
    const wp = host('wordpress-1');
    // fail2ban has banned the load balancer's IPv4 address from the web ports (its jump after ours).
    const lb = host('haproxy-www').privateV4 as string;
    const ban = [
      'iptables -N f2b-http',
      `iptables -A f2b-http -s ${lb}/32 -j REJECT`,
      'iptables -A f2b-http -j RETURN',
      'iptables -A INPUT -p tcp -m multiport --dports 80,443 -j f2b-http',
    ].join(' && ');
    expect((await wp.exec(['sh', '-c', ban])).code).toBe(0);
    const inventory = lab.writeInventory(ON_IPTABLES, 'seed.json');
    const result = await lab.runCli(['apply', '--inventory', inventory, '--host', 'wordpress-1', '--timeout', '60']);
    expect(result.code, result.stderr).toBe(0);
    const during = await filterOf('wordpress-1');
    expect(during.split('\n').filter((line) => line.startsWith('-A INPUT'))).toEqual(['-A INPUT -j IW-INPUT', '-A INPUT -p tcp -m multiport --dports 80,443 -j f2b-http']);
    // Ours admits the load balancer on port 80 in both families; the ban still refuses its IPv4 address.
    expect(await lab.canConnect('haproxy-www', wp.privateV4 as string, 80)).toBe(false);
    expect(await lab.canConnect('haproxy-www', wp.privateV6 as string, 80)).toBe(true);
    expect(await lab.canConnect('tunnel-1', wp.privateV4 as string, 22)).toBe(true);
    const rolled = await lab.runCli(['rollback', '--inventory', inventory, '--host', 'wordpress-1']);
    expect(rolled.code).toBe(0);
    expect(await filterOf('wordpress-1')).toContain(`-A f2b-http -s ${lb}/32 -j REJECT`);
  });

  it('refuses a second apply to a host while the first is pending, naming who holds it', async () => {
    const inventory = lab.writeInventory(ON_IPTABLES, 'seed.json');
    const [first, second] = await Promise.all([
      lab.runCli(['apply', '--inventory', inventory, '--host', 'mysql-1', '--timeout', '60']),
      lab.runCli(['apply', '--inventory', inventory, '--host', 'mysql-1', '--timeout', '60']),
    ]);
    const codes = [first.code, second.code].sort();
    expect(codes, `${first.stderr}\n${second.stderr}`).toEqual([0, 3]);
    const refused = first.code === 3 ? first : second;
    expect(refused.stderr).toMatch(/mysql-1: locked by \S+@\S+ pid=\d+ since \d{4}-/);
    const rolled = await lab.runCli(['rollback', '--inventory', inventory, '--host', 'mysql-1']);
    expect(rolled.code).toBe(0);
    expect(await filterOf('mysql-1')).toBe('');
  });

  it('changes nobody when one host rejects its rules (a server lacking a module)', async () => {
    // ip6tables-restore on mysql-2 behaves as on a kernel without conntrack: --test fails.
    const fake = '#!/bin/sh\nfor a; do [ "$a" = --test ] && { echo "ip6tables-restore: Couldn\'t load match \\`conntrack\'" >&2; exit 1; }; done\nexec /usr/sbin/ip6tables-restore "$@"\n';
    expect((await host('mysql-2').exec(['sh', '-c', 'cat > /usr/local/sbin/ip6tables-restore && chmod 755 /usr/local/sbin/ip6tables-restore'], {input: fake})).code).toBe(0);
    const inventory = lab.writeInventory(ON_IPTABLES, 'seed.json');
    const result = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/mysql-2: .*rejected/);
    expect(result.stderr).toContain('nothing was changed on any host');
    for (const name of FLEET) {
      expect(await filterOf(name, 4)).toBe('');
      expect(await filterOf(name, 6)).toBe('');
      expect(await agentState(name)).toMatch(/phase=released/);
    }
  });

  it('rolls back on the server when the client is SIGKILLed during the countdown', async () => {
    const inventory = lab.writeInventory(ON_IPTABLES, 'seed.json');
    // A real terminal, so apply asks "keep?" and counts down; then the client dies without a word.
    const pty = spawnPty('nsenter', [`--net=/run/netns/${lab.operator.netns}`, '--', process.execPath, path.join(import.meta.dirname, '..', '..', 'bin', 'isolate-wizard.js'), 'apply', '--inventory', inventory, '--host', 'wordpress-2', '--timeout', '6'], {
      name: 'xterm',
      cols: 120,
      rows: 30,
      cwd: lab.dir,
      env: {...process.env, HOME: lab.home, CI: 'false'} as Record<string, string>,
    });
    let screen = '';
    pty.onData((data) => {
      screen += data;
    });
    expect(await waitFor(async () => screen.includes('keep the new rules?'), 60_000)).toBe(true);
    expect(await filterOf('wordpress-2')).toContain('-A INPUT -j IW-INPUT');
    process.kill(pty.pid, 'SIGKILL');
    expect(await waitFor(() => expired('wordpress-2'), 30_000)).toBe(true);
    expect(await filterOf('wordpress-2')).toBe('');
  });

  it('rolls back on the server when its link goes down during the countdown', async () => {
    const inventory = lab.writeInventory(ON_IPTABLES, 'seed.json');
    const applied = await lab.runCli(['apply', '--inventory', inventory, '--host', 'mysql-2', '--timeout', '5']);
    expect(applied.code).toBe(0);
    expect(await filterOf('mysql-2')).toContain('-A INPUT -j IW-INPUT');
    await lab.setLinkDown('mysql-2', 'both', true);
    try {
      expect(await waitFor(() => expired('mysql-2'), 30_000)).toBe(true);
      expect(await emptyFilter('mysql-2')).toBe('');
    } finally {
      await lab.setLinkDown('mysql-2', 'both', false);
    }
    // Back on the network: a confirm now changes nothing and says why.
    const late = await lab.runCli(['confirm', '--inventory', inventory, '--host', 'mysql-2']);
    expect(late.code).toBe(4);
    expect(await emptyFilter('mysql-2')).toBe('');
  });

  it('reports bad input on one line, without contacting anyone', async () => {
    const inventory = lab.writeInventory(ON_IPTABLES, 'seed.json');
    const badTimeout = await lab.runCli(['apply', '--inventory', inventory, '--timeout', '5s']);
    expect(badTimeout.code).toBe(2);
    expect(badTimeout.stderr.trim().split('\n')).toHaveLength(1);
    expect(badTimeout.stderr).toContain('--timeout');
    const badHost = await lab.runCli(['apply', '--inventory', inventory, '--host', 'nope']);
    expect(badHost.code).toBe(2);
    expect(badHost.stderr).toContain('--host: no host "nope"');
    for (const name of FLEET) expect(await agentState(name)).toBe('');
  });
});

describe('persistence on confirm', () => {
  it('writes our own boot files and unit, never the distribution\'s files; the boot op loads ours over what the loader put back', async () => {
    const lb = host('haproxy-www');
    // netfilter-persistent "installed" (its command on PATH) and a rules.v4 the admin wrote with a nat table.
    const admins = '*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT\nCOMMIT\n';
    const setup = 'printf "#!/bin/sh\\nexit 0\\n" > /usr/local/sbin/netfilter-persistent && chmod 755 /usr/local/sbin/netfilter-persistent && cat > /etc/iptables/rules.v4';
    expect((await lb.exec(['sh', '-c', setup], {input: admins})).code).toBe(0);
    const inventory = lab.writeInventory(ON_IPTABLES, 'seed.json');
    const result = await lab.runCli(['apply', '--inventory', inventory, '--host', 'haproxy-www', '--yes', '--timeout', '60']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('saved for boot (/etc/isolate-wizard/isolate-wizard.v4, .v6, loaded by isolate-wizard-iptables.service)');
    expect((await lb.exec(['cat', '/etc/iptables/rules.v4'])).stdout).toBe(admins);
    expect((await lb.exec(['test', '-e', '/etc/iptables/rules.v4.iw-orig'])).code).not.toBe(0);
    const v4 = (await lb.exec(['cat', '/etc/isolate-wizard/isolate-wizard.v4'])).stdout;
    const v6 = (await lb.exec(['cat', '/etc/isolate-wizard/isolate-wizard.v6'])).stdout;
    expect(v4).toContain('-A INPUT -j IW-INPUT');
    expect(v6).toContain('-A INPUT -j IW-INPUT');
    expect(v4).not.toMatch(/^:INPUT (ACCEPT|DROP)|8080/m);
    // What was saved is ours as live.
    const ours = (text: string): string[] => text.split('\n').filter((line) => /^(-A (IW-|(INPUT|FORWARD|OUTPUT) -j IW-)|:IW-)/.test(line)).map((line) => line.replace(/ \[\d+:\d+\]$/, ''));
    const live = await filterOf('haproxy-www');
    expect(ours(v4)).toEqual(ours(live));
    // The loader restarted (rules.v4 replaces the whole filter table): the boot op puts ours back in front.
    expect((await lb.exec(['iptables-restore', '/etc/iptables/rules.v4'])).code).toBe(0);
    expect(await filterOf('haproxy-www')).not.toContain('IW-');
    expect((await lb.exec(['sh', '/var/lib/isolate-wizard/agent.sh', 'boot'])).code).toBe(0);
    const back = await filterOf('haproxy-www');
    expect(ours(back)).toEqual(ours(live));
    expect(back.split('\n').filter((line) => line.startsWith('-A INPUT'))).toEqual(['-A INPUT -j IW-INPUT', '-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT']);
  });
});
