// Drift in `status`: after the seed fleet is locked down and confirmed, changes made on the
// servers behind the tool's back — a rule added by hand, our rules flushed, another manager's
// nftables table — are each flagged on that host, in words with their effect, the others in
// sync; a pending batch and a host the tool does not manage are said to be so. Real sshd, real
// iptables and nft in the lab's namespaces, the built CLI in the operator's.
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {createLab, type Lab, type LabHost} from '../../source/lab/lab.js';

const FIXTURE = path.join(import.meta.dirname, '..', '..', 'fixtures', 'inventories', 'seed-with-addresses.json');
const FLEET = ['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'];
/** What a firewalld-like manager adds: its own table, dropping web traffic before anything else sees it. */
const FIREWALLD_LIKE = 'table inet firewalld {\n  chain filter_INPUT {\n    type filter hook input priority filter + 10; policy accept;\n    tcp dport 80 drop\n  }\n}\n';

let lab: Lab;
let inventory = '';

function host(name: string): LabHost {
  const found = lab.hosts.get(name);
  if (!found) throw new Error(`no lab host ${name}`);
  return found;
}

async function run(name: string, argv: string[], input?: string): Promise<void> {
  const result = await host(name).exec(argv, input === undefined ? {} : {input});
  if (result.code !== 0) throw new Error(`${name}: ${argv.join(' ')}: ${result.stderr}`);
}

interface StatusJson {
  hosts: {host: string; sync?: string | null; drift?: {changes: string[]; effects: string[]}; confirmedBatch?: string}[];
}

async function status(): Promise<{code: number; stdout: string; stderr: string; lines: Map<string, string>; json: StatusJson; jsonCode: number}> {
  const text = await lab.runCli(['status', '--inventory', inventory]);
  const json = await lab.runCli(['status', '--inventory', inventory, '--json']);
  const lines = new Map(text.stdout.split('\n').flatMap((line) => {
    const name = FLEET.find((candidate) => line.startsWith(`${candidate}: `));
    return name ? [[name, line] as const] : [];
  }));
  return {code: text.code, stdout: text.stdout, stderr: text.stderr, lines, json: JSON.parse(json.stdout) as StatusJson, jsonCode: json.code};
}

const syncOf = (json: StatusJson, name: string): string | null | undefined => json.hosts.find((entry) => entry.host === name)?.sync;

beforeAll(async () => {
  lab = await createLab();
  // The iptables backend: the drift made below is made with iptables (our table's drift: nft-backend.test.ts).
  const seed = JSON.parse(readFileSync(FIXTURE, 'utf8')) as {options?: object};
  inventory = lab.writeInventory({...seed, options: {...seed.options, backend: 'iptables'}});
  const applied = await lab.runCli(['apply', '--inventory', inventory, '--yes']);
  if (applied.code !== 0) throw new Error(`apply --yes failed: ${applied.stdout}\n${applied.stderr}`);
}, 240_000);

afterAll(async () => {
  await lab?.teardown();
});

describe('status tells drift from the confirmed rules', {timeout: 120_000}, () => {
  it('a fleet as confirmed is in sync everywhere: exit 0', async () => {
    const result = await status();
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.jsonCode).toBe(0);
    for (const name of FLEET) {
      expect(result.lines.get(name)).toMatch(/: in sync/);
      expect(result.lines.get(name)).not.toContain('drift');
      expect(syncOf(result.json, name)).toBe('in sync');
    }
  });

  it('a rule added by hand above our jump (the database opened to everyone): drifted, in words with its effect, exit 6; the others in sync', async () => {
    await run('mysql-1', ['iptables', '-I', 'INPUT', '-p', 'tcp', '--dport', '3306', '-j', 'ACCEPT']);
    try {
      // It really is open: the tool says what the network does.
      expect(await lab.canConnect('operator', '203.0.113.14', 3306)).toBe(true);
      const result = await status();
      expect(result.code, result.stdout + result.stderr).toBe(6);
      expect(result.jsonCode).toBe(6);
      const line = result.lines.get('mysql-1') ?? '';
      expect(line).toContain('DRIFTED — drift: opens mysql-1 to the internet: tcp/3306 (IPv4 only, not confirmed)');
      // Not ours (our chains are as confirmed), but it decides before them.
      expect(line).toContain("IPv4 others' rule before our chain: -A INPUT -p tcp -m tcp --dport 3306 -j ACCEPT");
      expect(line).not.toContain('in sync');
      const entry = result.json.hosts.find((candidate) => candidate.host === 'mysql-1');
      expect(entry?.sync).toBe('drifted');
      expect(entry?.drift?.effects).toContain('opens mysql-1 to the internet: tcp/3306 (IPv4 only, not confirmed)');
      for (const name of FLEET.filter((candidate) => candidate !== 'mysql-1')) expect(syncOf(result.json, name)).toBe('in sync');
    } finally {
      await run('mysql-1', ['iptables', '-D', 'INPUT', '-p', 'tcp', '--dport', '3306', '-j', 'ACCEPT']);
    }
    expect((await status()).code).toBe(0);
  });

  it('our rules flushed (IPv6): drifted, "our chains are gone", the host open to the internet', async () => {
    const saved = await host('mysql-2').exec(['ip6tables-save', '-t', 'filter']);
    await run('mysql-2', ['sh', '-c', 'ip6tables -P INPUT ACCEPT && ip6tables -P FORWARD ACCEPT && ip6tables -P OUTPUT ACCEPT && ip6tables -F && ip6tables -X']);
    try {
      const result = await status();
      expect(result.code, result.stdout + result.stderr).toBe(6);
      const line = result.lines.get('mysql-2') ?? '';
      expect(line).toContain('drift: ');
      expect(line).toContain('IPv6: our chains are gone');
      expect(line).toContain('opens mysql-2 to the internet: tcp/all (IPv6 only, not confirmed)');
      expect(syncOf(result.json, 'mysql-1')).toBe('in sync');
    } finally {
      await run('mysql-2', ['ip6tables-restore'], saved.stdout);
    }
    expect((await status()).code).toBe(0);
  });

  it('a rule deleted by hand (the load balancer to wordpress-2, IPv4): drifted, who lost access', async () => {
    const saved = await host('wordpress-2').exec(['iptables-save', '-t', 'filter']);
    // `iptables -S IW-INPUT` starts with the chain's -N line: rule N is line N + 1.
    await run('wordpress-2', ['sh', '-c', 'n=$(iptables -S IW-INPUT | grep -n -- "-s 10.132.0.11/32" | head -n 1 | cut -d: -f1) && [ -n "$n" ] && iptables -D IW-INPUT $((n - 1))']);
    try {
      expect(await lab.canConnect('haproxy-www', '10.132.0.13', 80)).toBe(false);
      expect(await lab.canConnect('haproxy-www', 'fd00:132::13', 80)).toBe(true);
      const result = await status();
      expect(result.code, result.stdout + result.stderr).toBe(6);
      const line = result.lines.get('wordpress-2') ?? '';
      expect(line).toMatch(/DRIFTED — drift: wordpress-2 no longer accepts tcp\/80,443 from haproxy-www \(IPv4 only\); IPv4 rule removed: -A IW-INPUT -s 10\.132\.0\.11\/32 /);
      expect(result.json.hosts.find((entry) => entry.host === 'wordpress-2')?.drift?.effects).toEqual(['wordpress-2 no longer accepts tcp/80,443 from haproxy-www (IPv4 only)']);
      expect(syncOf(result.json, 'wordpress-1')).toBe('in sync');
    } finally {
      await run('wordpress-2', ['iptables-restore'], saved.stdout);
    }
    expect((await status()).code).toBe(0);
  });

  it("another manager's table dropping planned flows (a firewalld-like inet table on wordpress-1): drifted, naming the flows", async () => {
    await run('wordpress-1', ['nft', '-f', '-'], FIREWALLD_LIKE);
    try {
      expect(await lab.canConnect('haproxy-www', '10.132.0.12', 80)).toBe(false);
      const result = await status();
      expect(result.code, result.stdout + result.stderr).toBe(6);
      const line = result.lines.get('wordpress-1') ?? '';
      expect(line).toMatch(/DRIFTED — drift: .*firewalld \(table inet firewalld\) drops what the plan opens: tcp\/80 from haproxy-www/);
      expect(syncOf(result.json, 'wordpress-1')).toBe('drifted');
      expect(syncOf(result.json, 'wordpress-2')).toBe('in sync');
    } finally {
      await run('wordpress-1', ['nft', 'delete', 'table', 'inet', 'firewalld']);
    }
  });

  it('a pending batch is pending, a host the tool does not manage is unmanaged; neither is in sync', async () => {
    const pending = await lab.runCli(['apply', '--inventory', inventory, '--host', 'mysql-2', '--timeout', '60']);
    expect(pending.code, pending.stderr).toBe(0); // no terminal: left pending
    const kept = await host('haproxy-www').exec(['sh', '-c', 'mkdir -p /tmp/iw-kept && mv /var/lib/isolate-wizard/* /tmp/iw-kept/']);
    expect(kept.code, kept.stderr).toBe(0);
    try {
      const result = await status();
      expect(result.code, result.stdout + result.stderr).toBe(0);
      expect(result.lines.get('mysql-2')).toMatch(/^mysql-2: PENDING batch /);
      expect(syncOf(result.json, 'mysql-2')).toBe('pending');
      expect(result.lines.get('haproxy-www')).toBe('haproxy-www: unmanaged (not managed by isolate-wizard)');
      expect(syncOf(result.json, 'haproxy-www')).toBe('unmanaged');
      expect(syncOf(result.json, 'mysql-1')).toBe('in sync');
    } finally {
      await host('haproxy-www').exec(['sh', '-c', 'mv /tmp/iw-kept/* /var/lib/isolate-wizard/']);
      await lab.runCli(['rollback', '--inventory', inventory, '--host', 'mysql-2']);
    }
    const after = await status();
    expect(after.code, after.stdout).toBe(0);
    expect(syncOf(after.json, 'mysql-2')).toBe('in sync'); // rolled back: the confirmed rules are back
  });
});
