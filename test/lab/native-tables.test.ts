// Another manager's nftables table on a server (firewalld's default zone, as Rocky 9 ships it,
// recorded in fixtures/nft): apply must not report a lockdown whose intended access that table
// breaks. Proved by real connections, IPv4 and IPv6, before and after.
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {createLab, type Lab, type LabHost} from '../../source/lab/lab.js';

const FIXTURES = path.join(import.meta.dirname, '..', '..', 'fixtures');
const SEED = JSON.parse(readFileSync(path.join(FIXTURES, 'inventories', 'seed-with-addresses.json'), 'utf8')) as object;
const FIREWALLD = readFileSync(path.join(FIXTURES, 'nft', 'firewalld-rocky9.nft'), 'utf8');
const FLEET = ['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'];

let lab: Lab;

function host(name: string): LabHost {
  const found = lab.hosts.get(name);
  if (!found) throw new Error(`no lab host ${name}`);
  return found;
}

/** Everything that filters on a server, as nft prints it, and the agent's state: what "nothing touched" compares. */
async function footprint(name: string): Promise<string> {
  const rules = await host(name).exec(['nft', 'list', 'ruleset']);
  const state = await host(name).exec(['sh', '-c', 'cat /var/lib/isolate-wizard/state 2>/dev/null || true']);
  return `${rules.stdout}\n${state.stdout}`;
}

beforeAll(async () => {
  lab = await createLab();
});

afterAll(async () => {
  await lab?.teardown();
});

describe('a server with firewalld', () => {
  it('refuses before touching any host, naming firewalld and the flows it would drop; applies once it is gone', async () => {
    const loaded = await host('wordpress-1').exec(['nft', '-f', '-'], {input: FIREWALLD});
    expect(loaded.code).toBe(0);
    const before = await Promise.all(FLEET.map(footprint));

    const inventory = lab.writeInventory(SEED, 'seed.json');
    const refused = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60']);
    expect(refused.code).toBe(3);
    const said = `${refused.stdout}${refused.stderr}`;
    expect(said).toContain('wordpress-1: firewalld (table inet firewalld) drops what the plan opens: tcp/80,443 from haproxy-www (IPv4, IPv6');
    expect(said).toContain('tcp/24007,24008,49152,49251 from wordpress-2');
    expect(said).not.toMatch(/wordpress-2: firewalld|mysql-1: firewalld/);
    expect(said).not.toContain('kept');
    expect(await Promise.all(FLEET.map(footprint))).toEqual(before);

    // What the refusal says is what the network does: firewalld drops the web port, lets ssh in.
    expect(await lab.canConnect('haproxy-www', '10.132.0.12', 80)).toBe(false);
    expect(await lab.canConnect('haproxy-www', 'fd00:132::12', 80)).toBe(false);
    expect(await lab.canConnect('tunnel-1', '10.132.0.12', 22)).toBe(true);

    // Once firewalld's table is gone, the same apply goes through and the access really holds.
    expect((await host('wordpress-1').exec(['nft', 'delete', 'table', 'inet', 'firewalld'])).code).toBe(0);
    const applied = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60']);
    expect(applied.code).toBe(0);
    expect(await lab.canConnect('haproxy-www', '10.132.0.12', 80)).toBe(true);
    expect(await lab.canConnect('haproxy-www', 'fd00:132::12', 443)).toBe(true);
    expect(await lab.canConnect('operator', '203.0.113.12', 80)).toBe(false);
  });

  it('says nothing about a table that drops none of the planned flows (Debian\'s stock empty chains)', async () => {
    const stock = readFileSync(path.join(FIXTURES, 'nft', 'debian-default.nft'), 'utf8');
    expect((await host('mysql-1').exec(['nft', '-f', '-'], {input: stock})).code).toBe(0);
    const inventory = lab.writeInventory(SEED, 'seed.json');
    const applied = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60']);
    expect(applied.stderr).not.toContain('drops what the plan opens');
    expect(applied.code).toBe(0);
    expect(await lab.canConnect('wordpress-1', '10.132.0.14', 3306)).toBe(true);
  });
});
