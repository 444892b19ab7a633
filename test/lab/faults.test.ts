// The fault matrix (issue 11): one test per fault injected for real into a lab server — a
// wrapper first on the agent's PATH, the xtables lock held, a full state directory, a simulated
// reboot, other software's chains, ufw, a killed watchdog — each asserting afterwards every
// host's live filter rules (IPv4 and IPv6, read with the real iptables-save through `ip netns
// exec`), the CLI's exit code and what the operator is told; "back on the previous rules" is also
// proved by real connections. The CLI runs as the operator runs it (lab.runCli).
//
// The fleet: the bastion, one app server and one database (plus the other tenant). Every host
// starts each test on the same previous rules of its own (an open host that keeps the other
// tenant out), so "unchanged" and "back" mean something, and a lock-down is told apart by
// connections: the internet reaches wordpress-1:80 and mysql-1:3306 before, not after.
import {existsSync, readFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest';
import {AGENT_SCRIPT} from '../../source/remote/agent-script.js';
import {createLab, DEFAULT_HOSTS, type ExecOutput, type Lab, type LabHost} from '../../source/lab/lab.js';
import {
  addForeignChains,
  agentPids,
  fakeReboot,
  fillUp,
  flakyRestoreLog,
  foreignLines,
  freeUp,
  holdXtablesLock,
  installFailing,
  installFlakyRestore,
  installPersistenceStandIn,
  installUfwStandIn,
  killWatchdog,
  liveFilter,
  liveTables,
  mountSmallTmpfs,
  releaseRestore,
  removeUfwStandIn,
  removeWrappers,
  resetLegacyTables,
  setFilterRules,
  STATE_DIR,
  undoFakeReboots,
  unmountTmpfs,
  useLegacyIptables,
} from './support/faults.js';
import {namespacePids} from '../../source/lab/namespaces.js';

const FLEET = ['tunnel-1', 'wordpress-1', 'mysql-1'] as const;
type HostName = (typeof FLEET)[number];
/** The port each server serves to the world before the lock-down (and not after). */
const SERVICE_PORT: Record<HostName, number> = {'tunnel-1': 22, 'wordpress-1': 80, 'mysql-1': 3306};

const FIXTURE = path.join(import.meta.dirname, '..', '..', 'fixtures', 'inventories', 'seed-with-addresses.json');
const SEED = JSON.parse(readFileSync(FIXTURE, 'utf8')) as {roles: object; hosts: {name: string}[]; options?: object};
/** Pinned to the iptables backend: every fault here is injected into the iptables path and read back from the filter tables. */
const INVENTORY = {...SEED, options: {...SEED.options, backend: 'iptables'}, hosts: SEED.hosts.filter((entry) => (FLEET as readonly string[]).includes(entry.name))};

const TENANT_V4 = '10.132.0.99';
const TENANT_V6 = 'fd00:132::99';
/** What every host has before each test: everything open, but the other tenant kept out, and one rule of the admin's own. */
const PREVIOUS_RULES = {
  v4: `*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -s ${TENANT_V4}/32 -j DROP\n-A INPUT -p tcp -m tcp --dport 8081 -j REJECT --reject-with tcp-reset\nCOMMIT\n`,
  v6: `*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -s ${TENANT_V6}/128 -j DROP\n-A INPUT -p tcp -m tcp --dport 8081 -j REJECT --reject-with tcp-reset\nCOMMIT\n`,
};
/** Those rules as liveFilter reads them back (set in beforeAll). */
let previous = {v4: '', v6: ''};

let lab: Lab;
let inventory = '';

function host(name: string): LabHost {
  const found = lab.hosts.get(name);
  if (!found) throw new Error(`no lab host ${name}`);
  return found;
}

const cli = (args: string[]): Promise<ExecOutput> => lab.runCli([args[0] as string, '--inventory', inventory, ...args.slice(1)]);
const told = (result: ExecOutput): string => `${result.stdout}\n${result.stderr}`;

async function rulesOf(name: string): Promise<{v4: string; v6: string}> {
  const [v4, v6] = await Promise.all([liveFilter(host(name), 4), liveFilter(host(name), 6)]);
  return {v4, v6};
}

/** Every host in `names` (default: the fleet) is exactly on its previous rules, both families. */
async function expectPreviousRules(names: readonly string[] = FLEET): Promise<void> {
  for (const name of names) expect(await rulesOf(name), `${name}'s rules`).toEqual(previous);
}

/**
 * Real connections show the previous rules' access on `name`: the internet reaches its service
 * port (v4 and v6, which a lock-down closes, but for the bastion's ssh), the other tenant does not.
 */
async function expectPreviousAccess(name: HostName): Promise<void> {
  const target = host(name);
  const port = SERVICE_PORT[name];
  const probes: [string, string, boolean][] = [
    ['operator', target.publicV4 as string, true],
    ['operator', target.publicV6 as string, true],
    ['tenant', target.privateV4 as string, false],
    ['tenant', target.privateV6 as string, false],
  ];
  const outcomes = await Promise.all(probes.map(([from, address]) => lab.canConnect(from, address, port)));
  const wrong = probes.filter((probe, index) => outcomes[index] !== probe[2]).map(([from, address, want]) => `${from} -> ${address}:${port} should ${want ? '' : 'not '}connect`);
  expect(wrong, `${name}: the access of before`).toEqual([]);
}

interface HostStatusJson {
  host: string;
  pending?: boolean;
  phase?: string;
  error?: string;
}

async function statusJson(): Promise<Map<string, HostStatusJson>> {
  const result = await cli(['status', '--json']);
  expect(result.code, told(result)).toBe(0);
  const parsed = JSON.parse(result.stdout) as {hosts: HostStatusJson[]};
  return new Map(parsed.hosts.map((entry) => [entry.host, entry]));
}

/** No host holds a pending batch: nothing left locked. */
async function expectNothingPending(): Promise<void> {
  const status = await statusJson();
  for (const name of FLEET) expect(status.get(name)?.pending ?? false, `${name} pending`).toBe(false);
}

async function waitFor(check: () => Promise<boolean>, limitMs: number): Promise<boolean> {
  const start = Date.now();
  while (Date.now() - start < limitMs) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  return check();
}

/** An iptables program of this server's is running (while the xtables lock is held: waiting for it). */
function iptablesWaiting(server: LabHost): boolean {
  return namespacePids(server.netns).some((pid) => {
    try {
      const program = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '';
      return /^(ip6?tables|xtables)/.test(program.split('/').at(-1) ?? '');
    } catch {
      return false;
    }
  });
}

async function fileExists(name: string, file: string): Promise<boolean> {
  return (await host(name).exec(['test', '-e', file])).code === 0;
}

/** The seconds a stale lock waits past its deadline before it counts as stale (the agent's STALE_GRACE). */
function staleGraceSeconds(): number {
  const match = /^STALE_GRACE=(\d+)$/m.exec(AGENT_SCRIPT);
  if (!match) throw new Error('the agent script has no STALE_GRACE');
  return Number(match[1]);
}

/** Each server back to its previous rules and no agent state, every fault undone. */
async function resetServer(name: string): Promise<void> {
  const server = host(name);
  killWatchdog(server);
  await undoFakeReboots(server);
  await unmountTmpfs(server, STATE_DIR);
  await removeWrappers(server);
  await removeUfwStandIn(server);
  await resetLegacyTables(server);
  await server.exec(['sh', '-c', `rm -rf ${STATE_DIR}/* /etc/iptables/* /etc/isolate-wizard /etc/systemd/system/isolate-wizard-iptables.service /etc/systemd/system/multi-user.target.wants/isolate-wizard-iptables.service /run/iw-fault /run/xtables.lock`]);
  await setFilterRules(server, PREVIOUS_RULES);
}

beforeAll(async () => {
  lab = await createLab({hosts: DEFAULT_HOSTS.filter((spec) => (FLEET as readonly string[]).includes(spec.name))});
  inventory = lab.writeInventory(INVENTORY, 'faults.json');
  await setFilterRules(host('mysql-1'), PREVIOUS_RULES);
  previous = await rulesOf('mysql-1');
});

afterAll(async () => {
  await lab?.teardown();
});

beforeEach(async () => {
  await Promise.all(FLEET.map(resetServer));
});

describe('the fault matrix', () => {
  it('a restore that fails after a failed load: "could not restore: act now" (exit 5), never "restored"; the watchdog retries until the host is back', {timeout: 240_000}, async () => {
    const db = host('mysql-1');
    // The first family loads, the second's load fails, and restoring the first fails until released.
    await installFlakyRestore(db);
    const result = await cli(['apply', '--host', 'mysql-1', '--yes', '--timeout', '5']);
    expect(result.code, told(result)).toBe(5);
    expect(told(result)).toMatch(/mysql-1\b.*could not restore: act now/);
    expect(told(result)).not.toMatch(/\brestored\b|already rolled back|every host was rolled back|: kept/);

    // Neither the candidate nor the previous rules: the family loaded first is locked down, the other is as before.
    const first = (await db.exec(['cat', '/run/iw-fault/first'])).stdout.trim() === 'ip6tables-restore' ? 'v6' : 'v4';
    const other = first === 'v4' ? 'v6' : 'v4';
    const during = await rulesOf('mysql-1');
    expect(during[first]).toContain('-A INPUT -j IW-INPUT');
    expect(during[other]).toEqual(previous[other]);
    // The batch is still pending and a watchdog still guards it; status says so loudly.
    expect((await statusJson()).get('mysql-1')?.pending).toBe(true);
    const status = await cli(['status']);
    expect(status.stdout).toMatch(/mysql-1: .*could not restore: act now/i);
    expect(agentPids(db).length, 'a watchdog process').toBeGreaterThan(0);
    await expectPreviousRules(['tunnel-1', 'wordpress-1']);

    // The fault clears; the server's own retry puts it back, exactly.
    await releaseRestore(db);
    const back = await waitFor(async () => {
      const rules = await rulesOf('mysql-1');
      return rules.v4 === previous.v4 && rules.v6 === previous.v6 && (await statusJson()).get('mysql-1')?.pending === false;
    }, 180_000);
    expect(back, `mysql-1 back on its previous rules; restore calls:\n${await flakyRestoreLog(db)}`).toBe(true);
    const calls = await flakyRestoreLog(db);
    expect(calls).toMatch(/restore held/);
    expect(calls.trim().split('\n').at(-1)).toMatch(/passed$/);
    await expectPreviousRules();
    await expectPreviousAccess('mysql-1');
  });

  it('iptables-save failing at begin on one host: exit 1 with a line naming it; nothing changed on any host, no lock left', async () => {
    await installFailing(host('wordpress-1'), 'iptables-save');
    const result = await cli(['apply', '--yes', '--timeout', '30']);
    expect(result.code, told(result)).toBe(1);
    expect(result.stderr).toMatch(/wordpress-1: .*(iptables-save|snapshot)/i);
    expect(result.stderr).toContain('nothing was changed on any host');
    expect(result.stdout).not.toMatch(/: kept/);
    await expectPreviousRules();
    await expectNothingPending();
    await expectPreviousAccess('wordpress-1');
  });

  it('the state directory full: at begin nothing changes anywhere; after load, confirm is refused, never a false "confirmed"', {timeout: 180_000}, async () => {
    // At begin: room for the agent's own copy and not a page more, so the snapshot is what fails.
    const wp = host('wordpress-1');
    await mountSmallTmpfs(wp, STATE_DIR, 1 << 20);
    await fillUp(wp, STATE_DIR, Buffer.byteLength(AGENT_SCRIPT));
    const begun = await cli(['apply', '--yes', '--timeout', '30']);
    expect(begun.code, told(begun)).toBe(1);
    expect(begun.stderr).toMatch(/wordpress-1: .*(no space|cannot write|could not write|write failed|disk|full)/i);
    expect(begun.stderr).toContain('nothing was changed on any host');
    await expectPreviousRules();
    await expectNothingPending();
    await unmountTmpfs(wp, STATE_DIR);

    // After load, before confirm: the batch loads with room to spare, then the disk fills up.
    const db = host('mysql-1');
    await installPersistenceStandIn(db);
    await mountSmallTmpfs(db, STATE_DIR, 1 << 20);
    const applied = await cli(['apply', '--host', 'mysql-1', '--timeout', '120']);
    expect(applied.code, told(applied)).toBe(0);
    const loaded = await rulesOf('mysql-1');
    expect(loaded.v4).toContain('-A INPUT -j IW-INPUT');
    await fillUp(db, STATE_DIR, 0);
    const confirmed = await cli(['confirm', '--host', 'mysql-1']);
    expect(confirmed.code, told(confirmed)).toBe(1);
    expect(confirmed.stdout).toMatch(/mysql-1: FAILED/);
    expect(confirmed.stdout).not.toMatch(/mysql-1: kept/);
    expect(told(confirmed)).toMatch(/no space|cannot write|could not write|write failed|disk|full/i);
    // Nothing persisted, nothing changed: still the loaded rules, still pending.
    expect(await fileExists('mysql-1', '/etc/iptables/rules.v4')).toBe(false);
    expect(await fileExists('mysql-1', '/etc/iptables/rules.v6')).toBe(false);
    expect(await fileExists('mysql-1', '/etc/isolate-wizard/isolate-wizard.v4')).toBe(false);
    expect(await rulesOf('mysql-1')).toEqual(loaded);
    expect((await statusJson()).get('mysql-1')?.pending).toBe(true);

    // Room again: the way back still works.
    await freeUp(db, STATE_DIR);
    const rolled = await cli(['rollback', '--host', 'mysql-1']);
    expect(rolled.code, told(rolled)).toBe(0);
    await expectPreviousRules();
    await expectPreviousAccess('mysql-1');
  });

  it('the state directory full during the countdown: rollback still puts the previous rules back (the way back needs no free space)', {timeout: 180_000}, async () => {
    const db = host('mysql-1');
    await mountSmallTmpfs(db, STATE_DIR, 1 << 20);
    const applied = await cli(['apply', '--host', 'mysql-1', '--timeout', '120']);
    expect(applied.code, told(applied)).toBe(0);
    expect((await rulesOf('mysql-1')).v4).toContain('-A INPUT -j IW-INPUT');
    await fillUp(db, STATE_DIR, 0);
    // The disk fills up (logs, a core dump) while the new rules are live; they must go back anyway.
    const rolled = await cli(['rollback', '--host', 'mysql-1']);
    expect(await rulesOf('mysql-1'), told(rolled)).toEqual(previous);
    await expectPreviousAccess('mysql-1');
    // Back: it may say the state could not be written, never that it could not restore.
    expect(told(rolled)).not.toMatch(/could not restore/);
    await expectPreviousRules(['tunnel-1', 'wordpress-1']);

    // Room again: the batch ends, nothing left pending.
    await freeUp(db, STATE_DIR);
    const again = await cli(['rollback', '--host', 'mysql-1']);
    expect(again.code, told(again)).toBe(0);
    await expectPreviousRules();
    await expectNothingPending();
  });

  it('a reboot during the countdown: confirm refuses, naming the reboot, persists nothing and changes nothing', async () => {
    for (const name of FLEET) await installPersistenceStandIn(host(name));
    const applied = await cli(['apply', '--timeout', '120']);
    expect(applied.code, told(applied)).toBe(0);
    const candidate = await rulesOf('tunnel-1');
    expect(candidate.v4).toContain('-A INPUT -j IW-INPUT');
    // Each comes back differently: mysql-1 with its old rules (a boot-time loader), wordpress-1
    // with none at all, tunnel-1 with the very rules loaded before the reboot (only its boot id tells).
    await fakeReboot(host('mysql-1'), PREVIOUS_RULES);
    await fakeReboot(host('wordpress-1'), 'none');
    await fakeReboot(host('tunnel-1'), {v4: `${candidate.v4}\n`, v6: `${candidate.v6}\n`});
    expect(await rulesOf('tunnel-1')).toEqual(candidate);

    const result = await cli(['confirm']);
    expect(result.code, told(result)).not.toBe(0);
    expect(result.code).not.toBe(2);
    for (const name of FLEET) expect(told(result)).toMatch(new RegExp(`${name}: .*reboot`, 'i'));
    expect(result.stdout).not.toMatch(/: kept/);
    for (const name of FLEET) {
      expect(await fileExists(name, '/etc/iptables/rules.v4'), `${name} rules.v4`).toBe(false);
      expect(await fileExists(name, '/etc/iptables/rules.v6'), `${name} rules.v6`).toBe(false);
      expect(await fileExists(name, '/etc/isolate-wizard/isolate-wizard.v4'), `${name} our boot file`).toBe(false);
    }
    // Changed nothing: each host still on what the reboot left.
    await expectPreviousRules(['mysql-1']);
    expect(await rulesOf('wordpress-1')).toEqual({v4: '', v6: ''});
    expect(await rulesOf('tunnel-1')).toEqual(candidate);
    await expectPreviousAccess('mysql-1');
  });

  it('a fail2ban ban and a Docker chain added during the countdown survive the expiry, a rollback and a confirm; our boot file gets none of them, rules.v4 is never written', {timeout: 240_000}, async () => {
    const db = host('mysql-1');
    const wp = host('wordpress-1');
    // fail2ban bans wordpress-1 from mysql-1's ssh (v4 and v6); Docker publishes a container.
    const chains = {banV4: wp.privateV4 as string, banV6: wp.privateV6 as string};
    const added = foreignLines(chains);
    // Compared whole: the agent never writes a policy or a rule of others (--noflush, our chains only).
    const runtimeOwnsForward = (line: string): boolean => line === line;
    const withForeign = (rules: string, lines: string[]): string[] => [...new Set([...rules.split('\n'), ...lines])].sort();
    const lines = (rules: string): string[] => rules.split('\n').sort();
    const expectBackWithForeign = async (): Promise<void> => {
      const rules = await rulesOf('mysql-1');
      expect(lines(rules.v4).filter(runtimeOwnsForward)).toEqual(withForeign(previous.v4, added.v4).filter(runtimeOwnsForward));
      expect(lines(rules.v6)).toEqual(withForeign(previous.v6, added.v6));
      await expectPreviousAccess('mysql-1');
      // The ban holds for real, v4 and v6; the rest of the private net still gets in.
      expect(await lab.canConnect('wordpress-1', db.privateV4 as string, 22)).toBe(false);
      expect(await lab.canConnect('wordpress-1', db.privateV6 as string, 22)).toBe(false);
      expect(await lab.canConnect('wordpress-1', db.privateV4 as string, 3306)).toBe(true);
      expect(await lab.canConnect('tunnel-1', db.privateV6 as string, 22)).toBe(true);
      await expectPreviousRules(['tunnel-1', 'wordpress-1']);
    };

    // 1. The server's own expiry.
    const applied = await cli(['apply', '--host', 'mysql-1', '--timeout', '12']);
    expect(applied.code, told(applied)).toBe(0);
    await addForeignChains(db, chains);
    expect((await rulesOf('mysql-1')).v4, 'still the candidate when the chains were added').toContain('-A INPUT -j IW-INPUT');
    expect(await waitFor(async () => (await statusJson()).get('mysql-1')?.pending === false, 90_000)).toBe(true);
    await expectBackWithForeign();

    // 2. A manual rollback.
    await resetServer('mysql-1');
    const pending = await cli(['apply', '--host', 'mysql-1', '--timeout', '120']);
    expect(pending.code, told(pending)).toBe(0);
    await addForeignChains(db, chains);
    const rolled = await cli(['rollback', '--host', 'mysql-1']);
    expect(rolled.code, told(rolled)).toBe(0);
    expect(rolled.stdout).toMatch(/mysql-1: rolled back/);
    await expectBackWithForeign();

    // 3. A confirm, with a boot-time loader: live keeps the ban and the chain, the boot files only our rules.
    await resetServer('mysql-1');
    await installPersistenceStandIn(db);
    const toKeep = await cli(['apply', '--host', 'mysql-1', '--timeout', '120']);
    expect(toKeep.code, told(toKeep)).toBe(0);
    const candidate = await rulesOf('mysql-1');
    await addForeignChains(db, chains);
    const kept = await cli(['confirm', '--host', 'mysql-1']);
    expect(kept.code, told(kept)).toBe(0);
    expect(kept.stdout).toContain('mysql-1: kept');
    const live = await rulesOf('mysql-1');
    expect(lines(live.v4).filter(runtimeOwnsForward)).toEqual(withForeign(candidate.v4, added.v4).filter(runtimeOwnsForward));
    expect(lines(live.v6)).toEqual(withForeign(candidate.v6, added.v6));
    expect(await lab.canConnect('wordpress-1', db.privateV4 as string, 22)).toBe(false);
    expect(await lab.canConnect('tunnel-1', db.privateV4 as string, 22)).toBe(true);
    const bootV4 = (await db.exec(['cat', '/etc/isolate-wizard/isolate-wizard.v4'])).stdout;
    const bootV6 = (await db.exec(['cat', '/etc/isolate-wizard/isolate-wizard.v6'])).stdout;
    for (const [boot, family] of [[bootV4, 'v4'], [bootV6, 'v6']] as const) {
      expect(boot, `isolate-wizard.${family}`).toContain('-A INPUT -j IW-INPUT');
      expect(boot, `isolate-wizard.${family}`).not.toMatch(/f2b-|DOCKER|docker0|:INPUT (ACCEPT|DROP)/);
    }
    expect(await fileExists('mysql-1', '/etc/iptables/rules.v4')).toBe(false);
    await expectPreviousRules(['tunnel-1', 'wordpress-1']);
  });

  it('ufw installed: apply --yes --install-persistence needs no loader (our own files and unit keep ours): nothing installed, ufw and rules.v4 untouched', async () => {
    const db = host('mysql-1');
    await installUfwStandIn(db);
    const result = await cli(['apply', '--host', 'mysql-1', '--yes', '--install-persistence', '--timeout', '30']);
    expect(result.code, told(result)).toBe(0);
    const apt = (await db.exec(['sh', '-c', 'cat /var/log/iw-fake-apt 2>/dev/null; true'])).stdout;
    expect(apt).not.toMatch(/install/);
    expect(await fileExists('mysql-1', '/usr/local/sbin/netfilter-persistent')).toBe(false);
    expect(await fileExists('mysql-1', '/usr/local/sbin/ufw')).toBe(true);
    expect(await fileExists('mysql-1', '/etc/iptables/rules.v4')).toBe(false);
    expect(await fileExists('mysql-1', '/etc/iptables/rules.v6')).toBe(false);
    expect(await fileExists('mysql-1', '/etc/isolate-wizard/isolate-wizard.v4')).toBe(true);
    await expectPreviousRules(['tunnel-1', 'wordpress-1']);
    const live = await rulesOf('mysql-1');
    expect(live.v4).toContain('-A INPUT -j IW-INPUT');
    expect(live.v6).toContain('-A INPUT -j IW-INPUT');
    expect((await statusJson()).get('mysql-1')).toMatchObject({pending: false, phase: 'confirmed'});
  });

  it('a rule another tool inserts at the top of INPUT during the countdown survives the rollback untouched, in place', {timeout: 180_000}, async () => {
    const db = host('mysql-1');
    const pending = await cli(['apply', '--host', 'mysql-1', '--timeout', '120']);
    expect(pending.code, told(pending)).toBe(0);
    await db.exec(['iptables', '-I', 'INPUT', '1', '-s', '203.0.113.77', '-p', 'tcp', '--dport', '3306', '-j', 'ACCEPT']);
    await db.exec(['ip6tables', '-I', 'INPUT', '1', '-s', '2001:db8::77', '-j', 'DROP']);
    const during = await rulesOf('mysql-1');
    expect(during.v4.split('\n').filter((line) => line.startsWith('-A INPUT ')).slice(0, 2)).toEqual([
      '-A INPUT -s 203.0.113.77/32 -p tcp -m tcp --dport 3306 -j ACCEPT',
      '-A INPUT -j IW-INPUT',
    ]);
    const rolled = await cli(['rollback', '--host', 'mysql-1']);
    expect(rolled.code, told(rolled)).toBe(0);
    const after = await rulesOf('mysql-1');
    // Exactly the previous rules with the inserted one first, where the tool put it.
    const first = (text: string, rule: string): string => text.replace(/^(-A INPUT )/m, `${rule}\n$1`);
    expect(after.v4).toBe(first(previous.v4, '-A INPUT -s 203.0.113.77/32 -p tcp -m tcp --dport 3306 -j ACCEPT'));
    expect(after.v6).toBe(first(previous.v6, '-A INPUT -s 2001:db8::77/128 -j DROP'));
    await expectPreviousAccess('mysql-1');
  });

  it('status on a stale batch (watchdog killed, deadline passed) changes nothing and says stale; an explicit rollback restores it', {timeout: 180_000}, async () => {
    const db = host('mysql-1');
    const applied = await cli(['apply', '--host', 'mysql-1', '--timeout', '8']);
    expect(applied.code, told(applied)).toBe(0);
    expect(killWatchdog(db).length, 'watchdog processes killed').toBeGreaterThan(0);
    expect((await rulesOf('mysql-1')).v4, 'killed before its deadline').toContain('-A INPUT -j IW-INPUT');
    // Past the deadline and the grace after it, with no watchdog left to act.
    await new Promise((resolve) => setTimeout(resolve, (8 + staleGraceSeconds() + 3) * 1000));
    const before = {v4: await liveTables(db, 4), v6: await liveTables(db, 6)};
    expect(before.v4).toContain('-A INPUT -j IW-INPUT');

    const status = await cli(['status']);
    expect(status.code, told(status)).toBe(0);
    expect(status.stdout).toMatch(/mysql-1: .*stale/i);
    expect({v4: await liveTables(db, 4), v6: await liveTables(db, 6)}).toEqual(before);
    const again = await cli(['status', '--json']);
    expect({v4: await liveTables(db, 4), v6: await liveTables(db, 6)}).toEqual(before);
    expect(again.stdout).toMatch(/stale/i);

    const rolled = await cli(['rollback', '--host', 'mysql-1']);
    expect(rolled.code, told(rolled)).toBe(0);
    expect(rolled.stdout).toMatch(/mysql-1: rolled back/);
    await expectPreviousRules();
    await expectNothingPending();
    await expectPreviousAccess('mysql-1');
  });

  // Last: the legacy tables it leaves in mysql-1's network namespace (empty) stay until the lab goes.
  it('the xtables lock held (iptables-legacy): the agent waits for it and succeeds, or fails truthfully', async (context) => {
    if (!existsSync('/usr/sbin/xtables-legacy-multi')) {
      context.skip('iptables-legacy is not installed on this machine (Debian: apt-get install iptables); the nf_tables backend takes no xtables lock');
    }
    const db = host('mysql-1');
    expect(await useLegacyIptables(db)).toBe(true);
    // The same previous rules, in the legacy tables; none left in nf_tables (no mixed backends).
    await setFilterRules(db, 'none');
    expect((await db.exec(['/usr/sbin/iptables-legacy-restore'], {input: PREVIOUS_RULES.v4})).code).toBe(0);
    expect((await db.exec(['/usr/sbin/ip6tables-legacy-restore'], {input: PREVIOUS_RULES.v6})).code).toBe(0);
    const before = {v4: await liveFilter(db, 4, {legacy: true}), v6: await liveFilter(db, 6, {legacy: true})};
    expect(before).toEqual(previous);

    const lock = await holdXtablesLock(db);
    let result: ExecOutput | undefined;
    let sawWaiting = false;
    try {
      const running = cli(['apply', '--host', 'mysql-1', '--yes', '--timeout', '30']).then((output) => (result = output));
      // Let go once an iptables program of the agent's is seen waiting for the lock (or the apply gave up).
      sawWaiting = await waitFor(async () => result !== undefined || iptablesWaiting(db), 60_000);
      sawWaiting &&= result === undefined;
      await lock.release();
      await running;
    } finally {
      await lock.release();
    }
    if (result === undefined) throw new Error('apply did not finish');
    const after = {v4: await liveFilter(db, 4, {legacy: true}), v6: await liveFilter(db, 6, {legacy: true})};
    if (result.code === 0) {
      expect(sawWaiting, 'an iptables program waited for the xtables lock').toBe(true);
      expect(result.stdout).toContain('mysql-1: kept');
      expect(after.v4).toContain('-A INPUT -j IW-INPUT');
      expect(after.v6).toContain('-A INPUT -j IW-INPUT');
      expect(await lab.canConnect('operator', db.publicV4 as string, 3306)).toBe(false);
      expect(await lab.canConnect('tunnel-1', db.privateV6 as string, 22)).toBe(true);
    } else {
      // Failing is allowed only truthfully: the lock named (not "rules rejected": they were not),
      // the host as it was, nothing pending.
      expect(told(result)).toMatch(/mysql-1\b.*xtables lock/);
      expect(told(result)).not.toMatch(/rejected/);
      expect(after).toEqual(previous);
      await expectNothingPending();
    }
    // Nothing went to the nf_tables backend.
    expect(await rulesOf('mysql-1')).toEqual({v4: '', v6: ''});
    await expectPreviousRules(['tunnel-1', 'wordpress-1']);
  });
});
