import {execFile} from 'node:child_process';
import {existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {Writable} from 'node:stream';
import {promisify} from 'node:util';
import {afterAll, describe, expect, it} from 'vitest';
import {formatAccess, summarizeAccess, type FleetHost} from '../../source/core/access.js';
import {main} from '../../source/cli.js';
import type {CliIo} from '../../source/commands/command.js';
import {factsFromInventory, parseInventoryText} from '../../source/core/inventory.js';
import {parseIptablesSave} from '../../source/core/iptables-save.js';
import {readFileSync} from 'node:fs';

const repo = path.resolve(new URL('../..', import.meta.url).pathname);
const SEED = 'fixtures/inventories/seed-with-addresses.json';
const emptyHome = mkdtempSync(path.join(tmpdir(), 'iw-h2-plan-'));
afterAll(() => rmSync(emptyHome, {recursive: true, force: true}));

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

async function run(args: string[], home = emptyHome): Promise<{code: number; stdout: string; stderr: string}> {
  const stdout = new Capture();
  const stderr = new Capture();
  const io: CliIo = {stdout, stderr, env: {HOME: home}, cwd: repo, isTTY: false};
  const code = await main(args, io);
  return {code, stdout: stdout.text, stderr: stderr.text};
}

/** A home whose ~/.ssh/config sends every seed host but tunnel-1 through tunnel-1. */
function homeWithProxyJump(): string {
  const home = path.join(emptyHome, 'with-config');
  mkdirSync(path.join(home, '.ssh'), {recursive: true});
  writeFileSync(
    path.join(home, '.ssh', 'config'),
    ['Host tunnel-1', '  HostName 203.0.113.10', '', 'Host haproxy-www wordpress-* mysql-*', '  ProxyJump tunnel-1', ''].join('\n'),
  );
  return home;
}

const SEED_HOSTS = ['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'];

// The seed tutorial's access needs, with its traps fixed: the lb reaches the apps on their
// destination ports, ssh only through tunnel-1, the same access over IPv6.
const SEED_ACCESS = readFileSync(path.join(import.meta.dirname, '..', '..', 'fixtures', 'seed-access.txt'), 'utf8').trimEnd().split('\n');

describe('isolate-wizard plan', () => {
  it('done-when: the printed rulesets, read back by the parser and evaluator, give the seed access table', async () => {
    const inventory = parseInventoryText(readFileSync(path.join(repo, SEED), 'utf8'), SEED);
    const fleet: FleetHost[] = [];
    for (const entry of inventory.hosts) {
      const printed = await Promise.all(
        (['4', '6'] as const).map((family) => run(['plan', '--inventory', SEED, '--host', entry.name, '--family', family, '--format', 'iptables'])),
      );
      for (const result of printed) expect(result.code).toBe(0);
      fleet.push({
        name: entry.name,
        facts: factsFromInventory(entry)!,
        compiled: {host: entry.name, warnings: [], v4: parseIptablesSave(printed[0]!.stdout, 4), v6: parseIptablesSave(printed[1]!.stdout, 6)},
      });
    }
    const entries = summarizeAccess(fleet);
    expect(formatAccess(entries)).toEqual(SEED_ACCESS);
    // Identical in both families: no "(IPv4 only)" anywhere, nothing the evaluator could not judge.
    expect(entries.every((entry) => entry.only === undefined && entry.uncertain.length === 0)).toBe(true);
  }, 60_000);

  it('--format iptables prints exactly one ruleset, nothing else', async () => {
    const result = await run(['plan', '--inventory', SEED, '--host', 'haproxy-www', '--family', '6', '--format', 'iptables']);
    expect(result.code).toBe(0);
    expect(result.stdout.startsWith('# isolate-wizard ip6tables-restore ruleset\n*filter\n')).toBe(true);
    expect(result.stdout.endsWith('COMMIT\n')).toBe(true);
    expect(result.stdout).not.toContain('==');
    const ruleset = parseIptablesSave(result.stdout, 6);
    expect(ruleset.tables.map((table) => table.name)).toEqual(['filter']);
    expect(result.stdout).toContain('-A IW-INPUT -i eth0 -p tcp -m multiport --dports 80,443');
    // Our chains only: no policy of a built-in chain, no rule of theirs.
    expect(result.stdout).not.toMatch(/^:(INPUT|FORWARD|OUTPUT) (ACCEPT|DROP)/m);
  });

  it('--backend nftables prints each host\'s nftables table; --format nft prints one table alone', async () => {
    const text = await run(['plan', '--inventory', SEED, '--backend', 'nftables'], homeWithProxyJump());
    expect(text.code).toBe(0);
    for (const host of SEED_HOSTS) expect(text.stdout).toContain(`== ${host} · nftables (nft -f) ==\ntable inet isolate_wizard {\n`);
    expect(text.stdout).not.toContain('iptables-restore) ==');
    for (const line of SEED_ACCESS) expect(text.stdout).toContain(`${line}\n`);
    const one = await run(['plan', '--inventory', SEED, '--host', 'mysql-1', '--format', 'nft']);
    expect(one.code).toBe(0);
    expect(one.stdout.startsWith('table inet isolate_wizard {\n')).toBe(true);
    // Alone, the table declares the address sets it matches; mysql-1 is a db peer, and never its own.
    expect(one.stdout).toMatch(/\tset app_v4 \{\n\t\ttype ipv4_addr\n\t\telements = \{ [0-9.]+, [0-9.]+ \}\n/);
    expect(one.stdout).toContain('iifname "eth1" ip saddr @app_v4 tcp dport 3306 ct state new accept comment "app * -> db mysql"');
    expect(one.stdout).toMatch(/iifname "eth1" ip saddr @db_v4 ip saddr != [0-9.]+ tcp dport 3306 ct state new accept/);
    expect(one.stdout).not.toContain('==');
    // In the whole plan, each set is written once, and the tables only name theirs.
    const sets = text.stdout.split('\n').filter((line) => line.startsWith('set app_v4 {'));
    expect(sets).toHaveLength(1);
    expect(text.stdout).not.toContain('\tset app_v4 {');
    const wrong = await run(['plan', '--inventory', SEED, '--backend', 'pf']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('--backend: "pf" is not one of iptables, nftables');
  });

  it('offline, says that other firewalls are checked at apply time, and what apply then does', async () => {
    const text = await run(['plan', '--inventory', SEED]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('== Other firewalls (firewalld, ufw, other nftables tables) ==\nnot read for every host (plan ran from the inventory\'s addresses): apply reads each server\'s other firewalls');
    expect(text.stdout).toContain('apply refuses (exit 3, nothing touched) while one drops a planned flow, unless you choose --other-firewall open or stop');
    const seed = JSON.parse(readFileSync(SEED, 'utf8')) as {options?: object};
    const file = path.join(emptyHome, 'seed-open.json');
    writeFileSync(file, JSON.stringify({...seed, options: {...seed.options, otherFirewall: 'open'}}));
    const chosen = await run(['plan', '--inventory', file]);
    expect(chosen.stdout).toContain('options.otherFirewall is "open": apply will open exactly those flows in that firewall too');
  });

  it("follows the inventory's options.backend without the flag; the flag wins over it", async () => {
    const seed = JSON.parse(readFileSync(SEED, 'utf8')) as {options?: object};
    const file = path.join(emptyHome, 'seed-nftables.json');
    writeFileSync(file, JSON.stringify({...seed, options: {...seed.options, backend: 'nftables'}}));
    const byOption = await run(['plan', '--inventory', file, '--host', 'mysql-1']);
    expect(byOption.code, byOption.stderr).toBe(0);
    expect(byOption.stdout).toContain('== mysql-1 · nftables (nft -f) ==\ntable inet isolate_wizard {\n');
    const byFlag = await run(['plan', '--inventory', file, '--host', 'mysql-1', '--backend', 'iptables']);
    expect(byFlag.stdout).toContain('== mysql-1 · IPv4 (iptables-restore) ==');
    expect(byFlag.stdout).not.toContain('table inet isolate_wizard');
    writeFileSync(file, JSON.stringify({...seed, options: {backend: 'pf'}}));
    const bad = await run(['plan', '--inventory', file]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/options\.backend/);
  });

  it('prints every host\'s rulesets, the access summary and the SSH check as text', async () => {
    const result = await run(['plan', '--inventory', SEED, '--backend', 'iptables'], homeWithProxyJump());
    expect(result.code).toBe(0);
    for (const host of SEED_HOSTS) {
      expect(result.stdout).toContain(`== ${host} · IPv4 (iptables-restore) ==`);
      expect(result.stdout).toContain(`== ${host} · IPv6 (ip6tables-restore) ==`);
    }
    expect(result.stdout).not.toContain('table inet isolate_wizard');
    expect(result.stdout).not.toContain('backend auto');
    for (const line of SEED_ACCESS) expect(result.stdout).toContain(`${line}\n`);
    expect(result.stdout).toContain('every host keeps the operator\'s SSH path');
    expect(result.stderr).toBe('');
  });

  it('by default (backend auto, nothing read live) prints the nftables tables and says each server decides at apply time', async () => {
    const result = await run(['plan', '--inventory', SEED], homeWithProxyJump());
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^\(backend auto: each server gets nftables where its nft can load a table like ours \(checked with nft -c\), else iptables; the server decides at apply time\)\n/);
    for (const host of SEED_HOSTS) expect(result.stdout).toContain(`== ${host} · nftables (nft -f) ==\ntable inet isolate_wizard {\n`);
    expect(result.stdout).not.toContain('iptables-restore) ==');
    for (const line of SEED_ACCESS) expect(result.stdout).toContain(`${line}\n`);
    const json = JSON.parse((await run(['plan', '--inventory', SEED, '--format', 'json'], homeWithProxyJump())).stdout) as {backendNote?: string; hosts: {backend: string; nft?: string}[]};
    expect(json.backendNote).toMatch(/decides at apply time/);
    expect(json.hosts.every((host) => host.backend === 'nftables' && host.nft?.startsWith('table inet isolate_wizard {'))).toBe(true);
  });

  it('warns on stderr (exit 0) when offline facts cannot show an SSH path survives', async () => {
    const result = await run(['plan', '--inventory', SEED]);
    expect(result.code).toBe(0);
    const lines = result.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatch(/^isolate-wizard: lockout: haproxy-www: a new SSH connection from the internet \(198\.18\.0\.1\) on eth0 to tcp\/22 would be dropped by the INPUT policy DROP \(assumed/);
  });

  it('--host and --family narrow the text output', async () => {
    const result = await run(['plan', '--inventory', SEED, '--host', 'mysql-2', '--family', '4', '--backend', 'iptables'], homeWithProxyJump());
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('== mysql-2 · IPv4 (iptables-restore) ==');
    expect(result.stdout).not.toContain('IPv6 (ip6tables-restore)');
    expect(result.stdout).not.toContain('== mysql-1 ·');
    expect(result.stdout).not.toContain('internet → haproxy-www');
    expect(result.stdout).toContain('wordpress-1, wordpress-2, mysql-1 → mysql-2 tcp/3306');
  });

  it('--format json gives hosts with both rulesets and structured rules, access and lockout', async () => {
    const result = await run(['plan', '--inventory', SEED, '--format', 'json'], homeWithProxyJump());
    expect(result.code).toBe(0);
    const json = JSON.parse(result.stdout) as {
      hosts: {name: string; warnings: string[]; v4: string; v6: string; rules: {v4: {family: number; tables: unknown[]}; v6: unknown}}[];
      access: {destination: string; sources: string[]; text: string}[];
      lockout: unknown[];
    };
    expect(json.hosts.map((host) => host.name)).toEqual(SEED_HOSTS);
    const tunnel = json.hosts[0]!;
    expect(parseIptablesSave(tunnel.v4, 4)).toEqual(tunnel.rules.v4);
    expect(tunnel.rules.v4.family).toBe(4);
    expect(json.access.map((entry) => entry.text)).toEqual(SEED_ACCESS);
    expect(json.lockout).toEqual([]);
  });

  it.each([
    [['--host', 'nope'], /^isolate-wizard: --host: no host "nope" in fixtures\/inventories\/seed-with-addresses\.json \(hosts: tunnel-1, /],
    [['--family', '5'], /^isolate-wizard: --family: "5" is not 4 or 6\n$/],
    [['--format', 'yaml'], /^isolate-wizard: --format: "yaml" is not one of text, iptables, nft, json, matrix\n$/],
    [['--format', 'iptables', '--host', 'tunnel-1'], /^isolate-wizard: --format iptables prints one ruleset: give --host NAME and --family 4 or 6\n$/],
  ])('refuses bad flags with one line and exit 2: %j', async (flags, message) => {
    const result = await run(['plan', '--inventory', SEED, ...flags]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stdout).toBe('');
  });

  it('--format matrix prints the access matrix in 80 columns, nothing else on stdout', async () => {
    const result = await run(['plan', '--inventory', SEED, '--format', 'matrix']);
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^from \\ to +tunnel-1 +haproxywww /);
    expect(result.stdout).toMatch(/^internet +22 +80,443 /m);
    for (const line of lines) expect([...line].length).toBeLessThanOrEqual(80);
  });

  it('reports a missing inventory file and a missing --inventory', async () => {
    const missing = await run(['plan', '--inventory', 'no/such.json']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe('isolate-wizard: --inventory: cannot read no/such.json (no such file)\n');
    const absent = await run(['plan']);
    expect(absent.code).toBe(2);
    expect(absent.stderr.split('\n')[0]).toBe('isolate-wizard: --inventory FILE is required');
  });

  it('runs from the built CLI (node bin/isolate-wizard.js, after npm run build)', async () => {
    // `npm test` builds first; a missing build is a failure, not a skip.
    expect(existsSync(path.join(repo, 'dist', 'commands', 'plan.js')), 'dist/ is missing: run npm run build').toBe(true);
    const {stdout} = await promisify(execFile)(
      process.execPath,
      ['bin/isolate-wizard.js', 'plan', '--inventory', SEED, '--host', 'tunnel-1', '--family', '4', '--format', 'iptables'],
      {cwd: repo, env: {...process.env, CI: 'false', HOME: emptyHome}},
    );
    const ruleset = parseIptablesSave(stdout, 4);
    const input = ruleset.tables[0]!.rules.filter((rule) => rule.chain === 'IW-INPUT').map((rule) => rule.spec.join(' '));
    expect(input).toContain('-i eth0 -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m comment --comment internet -> bastion ssh -j RETURN');
  }, 60_000);
});
