// Live reachability in the lab: `verify` tries every planned flow from its real source (each
// server's own sshd opens the connection) and a sample of the closed ones, IPv4 and IPv6; and
// `apply --yes` rolls back when the network does not do what the plan says. Drops planted outside
// our rules: a firewalld-like nftables table inside one server's namespace (which apply's own
// preflight reads and refuses, so only verify meets it after the fact), and a drop on the lab's
// bridges (a "cloud firewall" no server can see: only the live probes find it).
import {appendFileSync, readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest';
import type {FlowResult} from '../../source/core/flows.js';
import {createLab, type Lab, type LabHost} from '../../source/lab/lab.js';
import {namespaceFor} from '../../source/lab/namespaces.js';
import {runChecked} from '../../source/lab/process.js';

const FIXTURE = path.join(import.meta.dirname, '..', '..', 'fixtures', 'inventories', 'seed-with-addresses.json');
const SEED = JSON.parse(readFileSync(FIXTURE, 'utf8')) as object;
const FLEET = ['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'];

/** A table another firewall manager owns (firewalld's name and priority): drops tcp/80 coming in. */
const FOREIGN_DROP = [
  'add table inet firewalld',
  'add chain inet firewalld filter_INPUT { type filter hook input priority filter + 10 ; policy accept ; }',
  'add rule inet firewalld filter_INPUT tcp dport 80 drop',
  '',
].join('\n');

/** On the lab's bridges (the switch namespace, never the machine's own): tcp/80 to wordpress-1 dropped in both families. */
const BRIDGE_DROP = [
  'add table bridge iw_cloud',
  'add chain bridge iw_cloud forward { type filter hook forward priority 0 ; policy accept ; }',
  'add rule bridge iw_cloud forward ip daddr 10.132.0.12 tcp dport 80 drop',
  'add rule bridge iw_cloud forward ip6 daddr fd00:132::12 tcp dport 80 drop',
  '',
].join('\n');

let lab: Lab;
let inventory: string;

function host(name: string): LabHost {
  const found = lab.hosts.get(name);
  if (!found) throw new Error(`no lab host ${name}`);
  return found;
}

/** Servers with no firewall at all (ours, in either backend, nor another's) and no agent state (inside their own namespaces only). */
async function resetFleet(): Promise<void> {
  await Promise.all(
    FLEET.map((name) =>
      host(name).exec(['sh', '-c', 'rm -rf /var/lib/isolate-wizard/*; nft delete table ip filter; nft delete table ip6 filter; nft delete table inet firewalld; nft delete table inet isolate_wizard; true']),
    ),
  );
}

async function verifyJson(): Promise<{code: number; flows: FlowResult[]; stdout: string}> {
  const result = await lab.runCli(['verify', '--inventory', inventory, '--format', 'json']);
  expect(result.stderr).toBe('');
  const parsed = JSON.parse(result.stdout) as {flows: FlowResult[]};
  return {code: result.code, flows: parsed.flows, stdout: result.stdout};
}

/** SIGHUP: sshd re-executes itself with its config re-read (same process); waits until it listens again. */
async function restartSshd(server: LabHost): Promise<void> {
  const listening = (): number => readFileSync(server.sshdLogPath, 'utf8').split('Server listening on :: port').length;
  const before = listening();
  process.kill(server.pids.sshd, 'SIGHUP');
  for (let waited = 0; listening() === before; waited += 20) {
    if (waited > 10_000) throw new Error(`${server.name}: sshd did not come back after SIGHUP`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const name = (result: FlowResult): string => `${result.flow.planSource} → ${result.flow.to} ${result.flow.address}:${result.flow.port} ${result.flow.expect} ${result.live}`;

beforeAll(async () => {
  lab = await createLab();
  inventory = lab.writeInventory(SEED, 'seed.json');
});

afterAll(async () => {
  await lab?.teardown();
});

beforeEach(async () => {
  await resetFleet();
});

describe('verify', () => {
  it('before the lockdown, the closed flows answer: reported, exit 5', async () => {
    const {code, flows} = await verifyJson();
    expect(code).toBe(6);
    const closed = flows.filter((result) => result.flow.expect === 'closed');
    expect(closed.length).toBeGreaterThan(0);
    // No firewall yet: every sampled closed port answers (a handshake or a refusal), both families.
    expect(closed.filter((result) => result.live !== 'open').map(name)).toEqual([]);
    expect(new Set(closed.map((result) => result.flow.family))).toEqual(new Set([4, 6]));
  });

  it('after apply --yes, the network matches the plan flow by flow, IPv4 and IPv6, tried from the real sources', async () => {
    const applied = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60']);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stderr).toMatch(/probes: \d+ flows tried: \d+ as planned, 0 differ from the plan, 0 untested/);

    const {code, flows} = await verifyJson();
    expect(flows.filter((result) => result.live === 'untested').map((result) => `${name(result)} ${result.detail}`)).toEqual([]);
    expect(flows.filter((result) => result.live !== (result.flow.expect === 'open' ? 'open' : 'dropped')).map(name)).toEqual([]);
    expect(code).toBe(0);
    for (const family of [4, 6]) {
      for (const expect_ of ['open', 'closed']) {
        expect(flows.some((result) => result.flow.family === family && result.flow.expect === expect_), `IPv${family} ${expect_}`).toBe(true);
      }
    }
    // From the real sources: the load balancer's own sshd reached its backends; the operator the internet's ports.
    const backend = flows.find((result) => result.flow.from === 'haproxy-www' && result.flow.address === 'fd00:132::12' && result.flow.port === 80);
    expect(backend?.triedFrom).toBe("haproxy-www's sshd");
    expect(backend?.live).toBe('open');
    expect(flows.find((result) => result.flow.from === 'operator' && result.flow.address === '203.0.113.14' && result.flow.port === 3306)?.live).toBe('dropped');

    const matrix = await lab.runCli(['verify', '--inventory', inventory, '--format', 'matrix']);
    expect(matrix.code).toBe(0);
    for (const line of matrix.stdout.split('\n')) expect([...line].length).toBeLessThanOrEqual(80);
    expect(matrix.stdout).toMatch(/^haproxy-www .*✓80,443 +✓80,443/m);
  });

  it('a drop by a firewall that is not ours, planted after the lockdown, is reported by verify, those flows only', async () => {
    const applied = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60']);
    expect(applied.code, applied.stderr).toBe(0);
    await host('wordpress-1').exec(['nft', '-f', '-'], {input: FOREIGN_DROP});
    const {code, flows} = await verifyJson();
    expect(code).toBe(6);
    // Exactly the flows to wordpress-1's port 80 differ, in both families; nothing else.
    expect(flows.filter((result) => result.live !== (result.flow.expect === 'open' ? 'open' : 'dropped')).map(name).sort()).toEqual([
      'haproxy-www → wordpress-1 10.132.0.12:80 open dropped',
      'haproxy-www → wordpress-1 fd00:132::12:80 open dropped',
    ]);
    const text = await lab.runCli(['verify', '--inventory', inventory]);
    expect(text.code).toBe(6);
    expect(text.stdout).toContain('✗ haproxy-www → wordpress-1 [fd00:132::12]:80  planned open, live dropped (no answer within 2 s)');
    expect(text.stdout).toMatch(/96 flows tried: 94 as planned, 2 differ from the plan, 0 untested/);
  });

  it('a drop no server can see (on the bridges): apply --yes rolls back and names the flows; --ignore-probes keeps', async () => {
    const switchNetns = namespaceFor(lab.id, 'switch');
    await runChecked('ip', ['netns', 'exec', switchNetns, 'nft', '-f', '-'], {input: BRIDGE_DROP});
    try {
      const applied = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60']);
      expect(applied.code, applied.stderr).toBe(4);
      expect(applied.stderr).toContain('haproxy-www → wordpress-1 10.132.0.12:80  planned open, live dropped');
      expect(applied.stderr).toContain('haproxy-www → wordpress-1 [fd00:132::12]:80  planned open, live dropped');
      expect(applied.stderr).toContain('every host was rolled back');
      expect(applied.stdout).not.toContain('kept');
      // Back to no firewall of ours: the database answers the internet again (as before the apply).
      expect(await lab.canConnect('operator', '203.0.113.14', 3306)).toBe(true);
      expect((await host('wordpress-1').exec(['sh', '-c', 'cat /var/lib/isolate-wizard/state'])).stdout).toContain('phase=rolledback');

      const kept = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--ignore-probes', '--timeout', '60']);
      expect(kept.code, kept.stderr).toBe(0);
      expect(kept.stderr).toContain('haproxy-www → wordpress-1 10.132.0.12:80  planned open, live dropped');
      for (const server of FLEET) expect(kept.stdout).toContain(`${server}: kept`);
      expect((await verifyJson()).code).toBe(6);
    } finally {
      await runChecked('ip', ['netns', 'exec', switchNetns, 'nft', 'delete', 'table', 'bridge', 'iw_cloud']);
    }
  });

  it('where sshd forbids forwarding, the fixed fallback command tries the flows from that server', async () => {
    const mysql2 = host('mysql-2');
    const config = path.join(path.dirname(mysql2.sshdLogPath), 'sshd_config');
    const original = readFileSync(config, 'utf8');
    const applied = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60']);
    expect(applied.code, applied.stderr).toBe(0);
    try {
      appendFileSync(config, 'AllowTcpForwarding no\n');
      await restartSshd(mysql2);
      const {code, flows} = await verifyJson();
      const fromMysql2 = flows.filter((result) => result.flow.from === 'mysql-2');
      expect(fromMysql2.length).toBeGreaterThan(0);
      expect(fromMysql2.every((result) => result.triedFrom === 'mysql-2 (fixed command)'), fromMysql2.map((result) => `${name(result)} ${result.triedFrom} ${result.detail}`).join('\n')).toBe(true);
      expect(new Set(fromMysql2.map((result) => result.live))).toEqual(new Set(['open', 'dropped']));
      expect(flows.filter((result) => result.live !== (result.flow.expect === 'open' ? 'open' : 'dropped')).map(name)).toEqual([]);
      expect(code).toBe(0);
    } finally {
      writeFileSync(config, original);
      await restartSshd(mysql2);
    }
  });
});
