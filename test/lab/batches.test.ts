// Batches end to end: who may act on a pending batch, `rollback --to` an earlier batch's rules
// (through the whole apply protocol, countdown included), and a host whose two iptables backends
// both hold rules. Real sshd, real iptables, the built CLI in the operator's namespace; access is
// proved by real connections, IPv4 and IPv6.
import {existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest';
import {createLab, type Lab, type LabHost} from '../../source/lab/lab.js';
import {agentState as agentStateOf, labHost, resetFleet, SEED_FLEET, waitFor} from './support/fleet.js';

const FIXTURE = path.join(import.meta.dirname, '..', '..', 'fixtures', 'inventories', 'seed-with-addresses.json');
const SEED = JSON.parse(readFileSync(FIXTURE, 'utf8')) as {hosts: {name: string; roles: string[]; allow?: object[]}[]; options?: object};
const FLEET = SEED_FLEET;
/** Batch B: A (the seed) plus ssh from the internet to the load balancer. */
const WITH_LB_SSH = {...SEED, hosts: SEED.hosts.map((entry) => (entry.name === 'haproxy-www' ? {...entry, allow: [{port: 22, from: 'internet'}]} : entry))};

let lab: Lab;

const host = (name: string): LabHost => labHost(lab, name);

const agentState = (name: string): Promise<string> => agentStateOf(host(name));

const stateValue = async (name: string, key: string): Promise<string | undefined> =>
  (await agentState(name))
    .split('\n')
    .filter((line) => line.startsWith(`${key}=`))
    .at(-1)
    ?.slice(key.length + 1);

/** The access that tells batch A from batch B apart, and what both keep, from the internet, v4 and v6. */
async function lbAccess(): Promise<{ssh: boolean[]; web: boolean[]}> {
  const [ssh4, ssh6, web4, web6] = await Promise.all([
    lab.canConnect('operator', '203.0.113.11', 22),
    lab.canConnect('operator', '2001:db8:100::11', 22),
    lab.canConnect('operator', '203.0.113.11', 80),
    lab.canConnect('operator', '2001:db8:100::11', 80),
  ]);
  return {ssh: [ssh4, ssh6], web: [web4, web6]};
}

/** The batch id the CLI reported ("... batch B to ..." / status). */
async function currentBatch(name: string): Promise<string> {
  const batch = await stateValue(name, 'batch');
  if (!batch) throw new Error(`${name} has no batch`);
  return batch;
}

beforeAll(async () => {
  lab = await createLab();
});

afterAll(async () => {
  await lab?.teardown();
});

beforeEach(async () => {
  await resetFleet(lab);
});

describe('rollback --to', () => {
  it('puts back the rules from before a confirmed batch, v4 and v6, and keeps the way back for that too', async () => {
    const a = lab.writeInventory(SEED, 'a.json');
    const b = lab.writeInventory(WITH_LB_SSH, 'b.json');
    expect((await lab.runCli(['apply', '--inventory', a, '--yes'])).code).toBe(0);
    expect(await lbAccess()).toEqual({ssh: [false, false], web: [true, true]});
    const applied = await lab.runCli(['apply', '--inventory', b, '--yes']);
    expect(applied.code, applied.stderr).toBe(0);
    expect(await lbAccess()).toEqual({ssh: [true, true], web: [true, true]});
    const batchB = await currentBatch('haproxy-www');

    const back = await lab.runCli(['rollback', '--to', batchB, '--inventory', b, '--yes']);
    expect(back.code, back.stderr).toBe(0);
    for (const name of FLEET) expect(back.stdout).toContain(`${name}: kept`);
    // The same protocol as apply: every step, a fresh-connection check, then confirmed.
    expect(back.stderr).toMatch(/haproxy-www\s+verify\s+done\s+new SSH session/);
    expect(await lbAccess()).toEqual({ssh: [false, false], web: [true, true]});
    for (const name of FLEET) expect(await stateValue(name, 'phase')).toBe('confirmed');
    // The rest of A's access is back too: the other tenant is still kept out, apps reach the databases.
    expect(await lab.canConnect('tenant', '10.132.0.14', 3306)).toBe(false);
    expect(await lab.canConnect('wordpress-1', 'fd00:132::14', 3306)).toBe(true);

    // The rollback was a batch of its own: its snapshot holds B's rules, so it can be undone too.
    const undoBatch = await currentBatch('haproxy-www');
    expect(undoBatch).not.toBe(batchB);
    const again = await lab.runCli(['rollback', '--to', undoBatch, '--inventory', b, '--host', 'haproxy-www', '--yes']);
    expect(again.code, again.stderr).toBe(0);
    expect(await lbAccess()).toEqual({ssh: [true, true], web: [true, true]});
  });

  it('left unconfirmed, goes back to the batch\'s own rules by itself at the deadline', async () => {
    const a = lab.writeInventory(SEED, 'a.json');
    const b = lab.writeInventory(WITH_LB_SSH, 'b.json');
    expect((await lab.runCli(['apply', '--inventory', a, '--yes'])).code).toBe(0);
    expect((await lab.runCli(['apply', '--inventory', b, '--yes'])).code).toBe(0);
    const batchB = await currentBatch('haproxy-www');

    const pending = await lab.runCli(['rollback', '--to', batchB, '--inventory', b, '--timeout', '8']);
    expect(pending.code, pending.stderr).toBe(0); // not a terminal: left pending, the confirm command printed
    expect(pending.stdout).toMatch(new RegExp(`put back the rules from before batch ${batchB} as batch [a-z0-9-]+ to`));
    expect(pending.stdout).toContain('isolate-wizard confirm --inventory');
    expect(await lbAccess()).toEqual({ssh: [false, false], web: [true, true]});

    const allExpired = async (): Promise<boolean> => (await Promise.all(FLEET.map(async (name) => (await stateValue(name, 'phase')) === 'expired'))).every(Boolean);
    expect(await waitFor(allExpired, 60_000)).toBe(true);
    expect(await lbAccess()).toEqual({ssh: [true, true], web: [true, true]});
  });

  it("refuses rules that would cut the operator's SSH path, once locked and before loading anything", async () => {
    // The iptables backend: the snapshot copy below holds iptables rules.
    const a = lab.writeInventory({...SEED, options: {...SEED.options, backend: 'iptables'}}, 'a.json');
    expect((await lab.runCli(['apply', '--inventory', a, '--host', 'tunnel-1', '--yes'])).code).toBe(0);
    const before = await currentBatch('tunnel-1');
    // A copy on this machine of a snapshot whose rules let nobody in by ssh (this machine's copy is
    // read first): the bastion would cut every path.
    const copy = path.join(lab.home, '.config', 'isolate-wizard', 'snapshots', '20200101-000000-cut000');
    mkdirSync(copy, {recursive: true});
    writeFileSync(path.join(copy, 'tunnel-1.v4'), '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:IW-INPUT - [0:0]\n-A INPUT -j IW-INPUT\n-A IW-INPUT -i lo -j ACCEPT\n-A IW-INPUT -j DROP\nCOMMIT\n');
    writeFileSync(path.join(copy, 'tunnel-1.v6'), '');
    const refused = await lab.runCli(['rollback', '--to', '20200101-000000-cut000', '--inventory', a, '--host', 'tunnel-1', '--yes']);
    expect(refused.code, refused.stderr).toBe(3);
    expect(refused.stderr).toMatch(/tunnel-1/);
    expect(refused.stderr).toContain('nothing was changed on any host');
    expect(await lab.canConnect('operator', '203.0.113.10', 22)).toBe(true);
    expect(await lab.canConnect('operator', '2001:db8:100::10', 22)).toBe(true);
    expect(await stateValue('tunnel-1', 'phase')).toBe('released');
    expect(await stateValue('tunnel-1', 'batch')).not.toBe(before);
  });

  it('refuses, changing nothing, when a host has no snapshot of that batch', async () => {
    const a = lab.writeInventory(SEED, 'a.json');
    expect((await lab.runCli(['apply', '--inventory', a, '--host', 'mysql-1', '--yes'])).code).toBe(0);
    const batch = await currentBatch('mysql-1');
    const refused = await lab.runCli(['rollback', '--to', batch, '--inventory', a, '--host', 'mysql-1', '--host', 'mysql-2']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain(`mysql-2: no snapshot of batch ${batch}`);
    expect(refused.stderr).not.toContain('mysql-1:');
    expect(await stateValue('mysql-1', 'batch')).toBe(batch);
    expect(await agentState('mysql-2')).toBe('');
  });
});

describe('a batch has an owner', () => {
  it('confirm from another machine is refused without --batch, naming the batch and its owner; with it, it confirms', async () => {
    const inventory = lab.writeInventory(SEED, 'seed.json');
    const applied = await lab.runCli(['apply', '--inventory', inventory, '--host', 'mysql-1', '--timeout', '60']);
    expect(applied.code, applied.stderr).toBe(0);
    const batch = await currentBatch('mysql-1');
    // Another machine: its own config directory, so no record of the batch.
    const elsewhere = {XDG_CONFIG_HOME: path.join(lab.dir, 'other-machine')};

    const status = await lab.runCli(['status', '--inventory', inventory, '--host', 'mysql-1', '--json'], {env: elsewhere});
    const [entry] = (JSON.parse(status.stdout) as {hosts: {batch: string; owner: string; startedHere: boolean}[]}).hosts;
    expect(entry?.batch).toBe(batch);
    expect(entry?.owner).toMatch(/^\S+@\S+ pid=\d+$/);
    expect(entry?.startedHere).toBe(false);
    const text = await lab.runCli(['status', '--inventory', inventory, '--host', 'mysql-1'], {env: elsewhere});
    expect(text.stdout).toContain(`PENDING batch ${batch}`);
    expect(text.stdout).toContain(`by ${entry?.owner}`);

    const refused = await lab.runCli(['confirm', '--inventory', inventory, '--host', 'mysql-1'], {env: elsewhere});
    expect(refused.code).toBe(3);
    expect(refused.stdout.trim()).toBe(`mysql-1: pending batch ${batch} by ${entry?.owner}; this machine has no record of it: pass --batch ${batch} to act on it`);
    const rollbackRefused = await lab.runCli(['rollback', '--inventory', inventory, '--host', 'mysql-1'], {env: elsewhere});
    expect(rollbackRefused.code).toBe(3);
    expect(await stateValue('mysql-1', 'phase')).toBe('loaded');

    // --batch without --host: the hosts of that batch, the others left as they are.
    const confirmed = await lab.runCli(['confirm', '--inventory', inventory, '--batch', batch], {env: elsewhere});
    expect(confirmed.code, confirmed.stderr).toBe(0);
    expect(confirmed.stdout).toContain('mysql-1: kept');
    expect(confirmed.stdout).toContain(`mysql-2: skipped — not part of batch ${batch}`);
    expect(await stateValue('mysql-1', 'phase')).toBe('confirmed');
    expect(await agentState('mysql-2')).toBe('');
  });
});

describe.skipIf(!existsSync('/usr/sbin/iptables-legacy'))('iptables-legacy rules next to nftables ones', () => {
  it('refuses the apply before touching any server, naming the host and why', async () => {
    await host('wordpress-1').exec(['iptables-legacy', '-A', 'INPUT', '-p', 'tcp', '--dport', '9', '-j', 'DROP']);
    try {
      const result = await lab.runCli(['apply', '--inventory', lab.writeInventory(SEED, 'seed.json'), '--yes']);
      expect(result.code).toBe(3);
      expect(result.stderr).toContain('wordpress-1: both iptables-legacy and nftables rules are loaded: packets pass both; remove one first');
      for (const name of FLEET) expect(await agentState(name)).toBe('');
    } finally {
      await host('wordpress-1').exec(['sh', '-c', 'iptables-legacy -F; iptables-legacy -X']);
    }
  });
});
