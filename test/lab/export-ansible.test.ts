// export --format ansible, end to end: the exported playbook run by Debian's ansible-playbook in
// the operator's namespace, through the bastion, with the operator's ssh config and known_hosts.
// The access it leaves equals what `apply --yes` leaves (real connections, IPv4 and IPv6), with
// either backend; a run whose confirm never comes rolls back by itself on the servers; a failing
// server rolls the batch back; a server with another tool's chains is refused before anything
// loads. With nftables our table replaces our iptables rules in the same batch and fail2ban's
// table (and a ban added meanwhile) is kept; auto picks the backend on each server.
import {spawnSync} from 'node:child_process';
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {performance} from 'node:perf_hooks';
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest';
import {createLab, DEFAULT_HOSTS, type Lab, type LabHost} from '../../source/lab/lab.js';
import {liveFilter} from './support/faults.js';
import {accessMatrix, agentState as agentStateOf, emptyAsNone, hideNft, iptablesRuleCount, labHost, ourNftTable, phaseOf as phaseOfHost, resetFleet, SEED_FLEET, waitFor} from './support/fleet.js';

const FIXTURE = path.join(import.meta.dirname, '..', '..', 'fixtures', 'inventories', 'seed-with-addresses.json');
const PARSED = JSON.parse(readFileSync(FIXTURE, 'utf8')) as {options?: object};
/** Pinned to the iptables backend: the playbook loads iptables rules, and apply's are compared with them. */
const SEED = {...PARSED, options: {...PARSED.options, backend: 'iptables'}};
const FLEET = SEED_FLEET;
const ANSIBLE = spawnSync('ansible-playbook', ['--version'], {encoding: 'utf8'});
const HAVE_ANSIBLE = ANSIBLE.status === 0;

/** fail2ban's nftables action makes a table of its own: a set of banned addresses, rejected on ssh. */
const FAIL2BAN_TABLE = `table inet f2b-table {
  set addr-set-sshd { type ipv4_addr; elements = { 192.0.2.7 } }
  chain f2b-chain {
    type filter hook input priority filter - 1; policy accept;
    tcp dport 22 ip saddr @addr-set-sshd reject
  }
}
`;

let lab: Lab;
/** The exports, by backend: iptables (the inventory's default), nftables, auto. */
const projects = {iptables: '', nftables: '', auto: ''};

const host = (name: string): LabHost => labHost(lab, name);
// '' for an empty table in either of the agent's forms (mysql-2 has no nft to delete one).
const filterOf = async (name: string, family: 4 | 6): Promise<string> => emptyAsNone(await liveFilter(host(name), family));
const phaseOf = (name: string): Promise<string> => phaseOfHost(host(name));
const agentState = (name: string): Promise<string> => agentStateOf(host(name));

async function fleetFilters(): Promise<Record<string, string>> {
  const entries = await Promise.all(FLEET.flatMap((name) => ([4, 6] as const).map(async (family) => [`${name} v${family}`, await filterOf(name, family)] as const)));
  return Object.fromEntries(entries);
}

/** How many ssh logins a server's sshd accepted so far. */
async function logins(name: string): Promise<number> {
  return readFileSync(host(name).sshdLogPath, 'utf8').split('\n').filter((line) => line.includes('Accepted publickey')).length;
}

/** The ban set of fail2ban's table on a server ('' when the table is gone). */
async function f2bBans(name: string): Promise<string> {
  return (await host(name).exec(['sh', '-c', 'nft list set inet f2b-table addr-set-sshd 2>/dev/null || true'])).stdout;
}

/** `cd DIR && ansible-playbook site.yml ARGS` in the operator's namespace, with the operator's HOME. */
async function playbook(args: string[] = [], project = projects.iptables): Promise<{code: number; stdout: string; stderr: string; seconds: number}> {
  const start = performance.now();
  const result = await lab.execOperator(['sh', '-c', 'cd "$1" && shift && exec ansible-playbook site.yml "$@"', 'sh', project, ...args], {
    timeoutMs: 400_000,
    env: {ANSIBLE_NOCOLOR: '1', ANSIBLE_FORCE_COLOR: '0'},
  });
  return {...result, seconds: (performance.now() - start) / 1000};
}

describe.skipIf(!HAVE_ANSIBLE)('export --format ansible, run by ansible-playbook', () => {
  beforeAll(async () => {
    // nft on every server (the default lab hides it on mysql-2): the auto test hides it itself.
    lab = await createLab({hosts: DEFAULT_HOSTS.map((spec) => ({...spec, nft: true}))});
    const inventory = lab.writeInventory(SEED, 'seed.json');
    for (const backend of ['iptables', 'nftables', 'auto'] as const) {
      projects[backend] = path.join(lab.dir, `ansible-${backend}`);
      // The iptables one as the inventory has it (no backend named: iptables).
      const flag = backend === 'iptables' ? [] : ['--backend', backend];
      const exported = await lab.runCli(['export', '--format', 'ansible', '--out', projects[backend], '--inventory', inventory, '--timeout', '120', ...flag]);
      expect(exported.code, exported.stderr).toBe(0);
    }
  });

  afterAll(async () => {
    await lab?.teardown();
  });

  beforeEach(async () => {
    await resetFleet(lab);
  }, 400_000);

  it('leaves the same rules and the same access as apply --yes, IPv4 and IPv6, and keeps them', async () => {
    const inventory = lab.writeInventory(SEED, 'seed.json');
    const applied = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60']);
    expect(applied.code, applied.stderr).toBe(0);
    const applyRules = await fleetFilters();
    const applyAccess = await accessMatrix(lab);
    // The matrix can fail: apply's access is the locked-down one, not everything open.
    expect(applyAccess).toContain('operator -> 203.0.113.11:80');
    expect(applyAccess).toContain('operator -> 2001:db8:100::11:80');
    expect(applyAccess).toContain('wordpress-1 -> fd00:132::14:3306');
    expect(applyAccess).not.toContain('operator -> 203.0.113.12:80');
    expect(applyAccess).not.toContain('tenant -> 10.132.0.14:3306');
    expect(applyAccess).not.toContain('tenant -> fd00:132::14:3306');

    await resetFleet(lab);
    expect(await accessMatrix(lab)).not.toEqual(applyAccess);
    const loginsBefore = await Promise.all(FLEET.map(logins));
    const run = await playbook();
    console.log(`ansible-playbook site.yml on the six-host fleet: ${run.seconds.toFixed(1)} s`);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    // Each server was logged in to again after its load (the check's new connection), not only
    // through the one connection (ControlPersist) that loaded its rules.
    const loginsAfter = await Promise.all(FLEET.map(logins));
    expect(FLEET.filter((_, index) => (loginsAfter[index] as number) - (loginsBefore[index] as number) < 2)).toEqual([]);
    expect(run.stdout).toMatch(/kept batch \d{8}-\d{6}-[0-9a-f]{6}/);
    // Kept for boot by our own files and unit, whatever loader the distribution has (none in the lab).
    expect(run.stdout).not.toContain('will not survive a reboot');
    for (const name of FLEET) expect((await host(name).exec(['test', '-s', '/etc/isolate-wizard/isolate-wizard.v4'])).code, name).toBe(0);

    expect(await fleetFilters()).toEqual(applyRules);
    expect(await accessMatrix(lab)).toEqual(applyAccess);
    for (const name of FLEET) expect(await phaseOf(name)).toBe('confirmed');
    // The operator still gets in, through the bastion, with a brand-new ssh; the tool reads the state.
    expect((await lab.execOperator(['ssh', '-F', lab.sshConfigPath, 'mysql-2', 'true'])).code).toBe(0);
    const status = await lab.runCli(['status', '--inventory', inventory, '--json']);
    const parsed = JSON.parse(status.stdout) as {hosts: {host: string; phase: string; pending: boolean}[]};
    expect(parsed.hosts.map((entry) => [entry.host, entry.phase, entry.pending])).toEqual(FLEET.map((name) => [name, 'confirmed', false]));
  }, 400_000);

  it('rolls back by itself on every server when the confirm never comes', async () => {
    await host('wordpress-1').exec(['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '8080', '-j', 'ACCEPT']);
    const before = await fleetFilters();
    const run = await playbook(['-e', 'iw_confirm=false', '-e', 'iw_timeout=60']);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toMatch(/left pending/);
    // Loaded and left to the servers' watchdogs: the playbook is gone, nobody will confirm.
    for (const name of FLEET) expect(await phaseOf(name)).toBe('loaded');
    expect(await filterOf('mysql-1', 6)).not.toBe('');
    const expired = await waitFor(async () => (await Promise.all(FLEET.map(phaseOf))).every((phase) => phase === 'expired'), 150_000);
    const states = await Promise.all(FLEET.map(async (name) => `${name}:\n${await agentState(name)}${(await host(name).exec(['sh', '-c', 'tail -5 /var/lib/isolate-wizard/log 2>/dev/null || true; ps -eo pid,ppid,stat,args | grep -e fire -e agent | grep -v grep; ls -la /var/lib/isolate-wizard; cat /proc/locks'])).stdout}`));
    expect(expired, states.join('\n')).toBe(true);
    expect(await fleetFilters()).toEqual(before);
  }, 400_000);

  it('rolls the whole batch back at once when one server fails to load', async () => {
    // mysql-2's ip6tables-restore passes --test but fails the real load.
    const fake = '#!/bin/sh\nfor a; do [ "$a" = --test ] && exec /usr/sbin/ip6tables-restore "$@"; done\necho "ip6tables-restore: injected failure" >&2\nexit 1\n';
    expect((await host('mysql-2').exec(['sh', '-c', 'cat > /usr/local/sbin/ip6tables-restore && chmod 755 /usr/local/sbin/ip6tables-restore'], {input: fake})).code).toBe(0);
    const run = await playbook();
    expect(run.code).not.toBe(0);
    expect(run.stdout).toMatch(/batch \S+ stopped: mysql-2: IPv6 load failed \(ip6tables-restore: injected failure\)[\s\S]*?the previous rules were restored and verified; Rolled back now: haproxy-www, wordpress-1, wordpress-2, mysql-1\./);
    for (const name of FLEET) {
      expect(await filterOf(name, 4)).toBe('');
      expect(await filterOf(name, 6)).toBe('');
    }
    // The bastion never began: the run stopped before its play.
    expect(await phaseOf('tunnel-1')).toBe('');
    for (const name of ['haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1']) expect(await phaseOf(name)).toBe('rolledback');
  }, 400_000);

  it("rolls the rest of the batch back at once when a server's new rules cut its login, and that server by itself", async () => {
    // wordpress-1's iptables-restore loads the rules, then a rule dropping ssh (a bad rule of the
    // kind the SSH path check exists for); its rollback empties the table without it.
    const fake = '#!/bin/sh\nfor a; do [ "$a" = --test ] && exec /usr/sbin/iptables-restore "$@"; done\n/usr/sbin/iptables-restore "$@" || exit $?\nexec /usr/sbin/iptables -I INPUT -p tcp --dport 22 -j DROP\n';
    expect((await host('wordpress-1').exec(['sh', '-c', 'cat > /usr/local/sbin/iptables-restore && chmod 755 /usr/local/sbin/iptables-restore'], {input: fake})).code).toBe(0);
    const run = await playbook(['-e', 'iw_timeout=240']);
    expect(run.code).not.toBe(0);
    expect(run.stdout, run.stdout.slice(-4000)).toMatch(/stopped: wordpress-1: no new login/);
    expect(run.stdout).toMatch(/Not reached \(they roll back by themselves at the deadline\): wordpress-1\./);
    const others = FLEET.filter((name) => name !== 'wordpress-1');
    for (const name of others) {
      expect(await phaseOf(name)).toBe('rolledback');
      expect(await filterOf(name, 4)).toBe('');
      expect(await filterOf(name, 6)).toBe('');
    }
    expect(await phaseOf('wordpress-1')).toBe('loaded');
    expect(await waitFor(async () => (await phaseOf('wordpress-1')) === 'expired', 250_000)).toBe(true);
    // Nothing of ours is left; the DROP the broken loader inserted beside ours is not ours to remove.
    expect(await filterOf('wordpress-1', 4)).not.toContain('IW-');
    expect(await filterOf('wordpress-1', 4)).toContain('-A INPUT -p tcp -m tcp --dport 22 -j DROP');
    expect(await filterOf('wordpress-1', 6)).toBe('');
  }, 400_000);

  it('loads beside another tool\'s chains and keeps them as they are (only ours is written, --noflush)', async () => {
    await host('wordpress-2').exec(['sh', '-c', 'iptables -N f2b-sshd && iptables -A f2b-sshd -s 192.0.2.7 -j REJECT && iptables -A INPUT -p tcp --dport 22 -j f2b-sshd']);
    const run = await playbook();
    expect(run.code, run.stdout).toBe(0);
    const live = await filterOf('wordpress-2', 4);
    expect(live).toContain('-A f2b-sshd -s 192.0.2.7/32 -j REJECT');
    expect(live.split('\n').filter((line) => line.startsWith('-A INPUT'))).toEqual(['-A INPUT -j IW-INPUT', '-A INPUT -p tcp -m tcp --dport 22 -j f2b-sshd']);
  }, 400_000);

  it('refuses a server where another manager keeps an nftables table of its own, before anything loads', async () => {
    await host('mysql-1').exec(['nft', '-f', '-'], {input: 'table inet firewalld {\n  chain filter_INPUT {\n    type filter hook input priority filter + 10; policy accept;\n  }\n}\n'});
    const run = await playbook();
    expect(run.code).not.toBe(0);
    expect(run.stdout).toMatch(/mysql-1: its nftables ruleset holds tables another manager owns \(inet firewalld\)/);
    for (const name of FLEET) {
      expect(await filterOf(name, 4)).toBe('');
      expect((await host(name).exec(['sh', '-c', 'cat /var/lib/isolate-wizard/log 2>/dev/null || true'])).stdout).not.toMatch(/ loaded /);
    }
    await host('mysql-1').exec(['nft', 'delete', 'table', 'inet', 'firewalld']);
  }, 400_000);

  it("nftables: leaves the access of apply --backend nftables from our table alone, our iptables rules gone in the same batch, fail2ban's table and ban kept", async () => {
    const inventory = lab.writeInventory(SEED, 'seed.json');
    const applied = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60', '--backend', 'nftables']);
    expect(applied.code, applied.stderr).toBe(0);
    const applyAccess = await accessMatrix(lab);
    // The matrix can fail: apply's access is the locked-down one, not everything open.
    expect(applyAccess).toContain('operator -> 2001:db8:100::11:80');
    expect(applyAccess).toContain('wordpress-1 -> fd00:132::14:3306');
    expect(applyAccess).not.toContain('operator -> 203.0.113.12:80');
    expect(applyAccess).not.toContain('tenant -> fd00:132::14:3306');

    // From the iptables backend's rules (a host changing backend), with fail2ban's table on a server and on the bastion.
    await resetFleet(lab);
    const before = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60']);
    expect(before.code, before.stderr).toBe(0);
    expect(await iptablesRuleCount(host('mysql-1'))).toBeGreaterThan(0);
    for (const name of ['wordpress-1', 'tunnel-1']) expect((await host(name).exec(['nft', '-f', '-'], {input: FAIL2BAN_TABLE})).code).toBe(0);
    try {
      const run = await playbook([], projects.nftables);
      console.log(`ansible-playbook site.yml (nftables) on the six-host fleet: ${run.seconds.toFixed(1)} s`);
      expect(run.code, `${run.stdout}\n${run.stderr}`.slice(-6000)).toBe(0);
      expect(run.stdout).toMatch(/kept batch \d{8}-\d{6}-[0-9a-f]{6}; saved for boot \(\/etc\/isolate-wizard\/isolate-wizard\.nft/);
      for (const name of FLEET) {
        expect(await ourNftTable(host(name)), name).toMatch(/^table inet isolate_wizard \{/);
        expect(await iptablesRuleCount(host(name)), name).toBe(0);
        expect(await phaseOf(name), name).toBe('confirmed');
      }
      expect(await accessMatrix(lab)).toEqual(applyAccess);
      for (const name of ['wordpress-1', 'tunnel-1']) expect(await f2bBans(name), name).toContain('192.0.2.7');
      // The tool reads the batch as its own: in sync with what was confirmed.
      const status = await lab.runCli(['status', '--inventory', inventory]);
      expect(status.code, `${status.stdout}\n${status.stderr}`).toBe(0);
    } finally {
      for (const name of ['wordpress-1', 'tunnel-1']) await host(name).exec(['sh', '-c', 'nft delete table inet f2b-table 2>/dev/null; true']);
    }
  }, 600_000);

  it("nftables: a run whose confirm never comes rolls back by itself: our table gone, our iptables rules back, fail2ban's bans kept", async () => {
    const inventory = lab.writeInventory(SEED, 'seed.json');
    const earlier = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60']);
    expect(earlier.code, earlier.stderr).toBe(0);
    expect((await host('wordpress-1').exec(['nft', '-f', '-'], {input: FAIL2BAN_TABLE})).code).toBe(0);
    try {
      const before = await fleetFilters();
      // A deadline the whole run fits in on a busy machine: the servers must still be loaded after it.
      const run = await playbook(['-e', 'iw_confirm=false', '-e', 'iw_timeout=120'], projects.nftables);
      expect(run.code, `${run.stdout}\n${run.stderr}`.slice(-6000)).toBe(0);
      expect(run.stdout).toMatch(/left pending/);
      for (const name of FLEET) {
        expect(await phaseOf(name), name).toBe('loaded');
        expect(await ourNftTable(host(name)), name).not.toBe('');
        expect(await iptablesRuleCount(host(name)), name).toBe(0);
      }
      // A ban during the countdown: the rollback touches our table only.
      expect((await host('wordpress-1').exec(['nft', 'add', 'element', 'inet', 'f2b-table', 'addr-set-sshd', '{ 192.0.2.99 }'])).code).toBe(0);
      const expired = await waitFor(async () => (await Promise.all(FLEET.map(phaseOf))).every((phase) => phase === 'expired'), 240_000);
      expect(expired, (await Promise.all(FLEET.map(async (name) => `${name}: ${await phaseOf(name)}`))).join(', ')).toBe(true);
      for (const name of FLEET) expect(await ourNftTable(host(name)), name).toBe('');
      expect(await fleetFilters()).toEqual(before);
      expect(await f2bBans('wordpress-1')).toMatch(/192\.0\.2\.7, 192\.0\.2\.99|192\.0\.2\.99, 192\.0\.2\.7/);
    } finally {
      await host('wordpress-1').exec(['sh', '-c', 'nft delete table inet f2b-table 2>/dev/null; true']);
    }
  }, 600_000);

  it('auto: nftables where nft is installed and iptables where it is not, chosen on each server; nftables alone refuses that server before anything loads', async () => {
    const mysql = host('mysql-2');
    // nft removed from mysql-2's /usr/sbin, in its own mount namespace (as in nft-backend.test.ts).
    const showNft = await hideNft(mysql);
    try {
      expect((await mysql.exec(['sh', '-c', 'command -v nft || echo none'])).stdout.trim()).toBe('none');
      const refused = await playbook([], projects.nftables);
      expect(refused.code).not.toBe(0);
      expect(refused.stdout).toMatch(/mysql-2: the nftables backend needs nft, which is not installed there/);
      for (const name of FLEET) {
        expect(await ourNftTable(host(name)), name).toBe('');
        expect((await host(name).exec(['sh', '-c', 'cat /var/lib/isolate-wizard/log 2>/dev/null || true'])).stdout, name).not.toMatch(/ loaded /);
      }

      const run = await playbook([], projects.auto);
      expect(run.code, `${run.stdout}\n${run.stderr}`.slice(-6000)).toBe(0);
      expect(await ourNftTable(mysql)).toBe('');
      expect(await iptablesRuleCount(mysql)).toBeGreaterThan(0);
      for (const name of FLEET.filter((other) => other !== 'mysql-2')) {
        expect(await ourNftTable(host(name)), name).toMatch(/^table inet isolate_wizard \{/);
        expect(await iptablesRuleCount(host(name)), name).toBe(0);
      }
      for (const name of FLEET) expect(await phaseOf(name), name).toBe('confirmed');
      // Each backend enforces the plan: the database's clients in, the tenant out, IPv4 and IPv6.
      expect(await lab.canConnect('wordpress-1', '10.132.0.15', 3306)).toBe(true);
      expect(await lab.canConnect('tenant', '10.132.0.15', 3306)).toBe(false);
      expect(await lab.canConnect('wordpress-1', 'fd00:132::15', 3306)).toBe(true);
      expect(await lab.canConnect('tenant', 'fd00:132::15', 3306)).toBe(false);
      expect(await lab.canConnect('wordpress-1', 'fd00:132::14', 3306)).toBe(true);
      expect(await lab.canConnect('tenant', 'fd00:132::14', 3306)).toBe(false);
    } finally {
      await showNft();
    }
  }, 600_000);
});

describe.skipIf(HAVE_ANSIBLE)('export --format ansible, run by ansible-playbook', () => {
  it.skip('needs ansible-playbook (Debian: apt-get install ansible-core): not installed here', () => undefined);
});
