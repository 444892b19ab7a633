// The nftables table (nft-compiler.ts) against the kernel, on the seed fleet's lab servers: the
// same real connections, IPv4 and IPv6, from the internet, the tenant and every fleet host to
// every server's addresses, first with the compiled iptables rulesets loaded (iptables-restore),
// then with empty iptables and our nft table (`nft -f`, no agent). Both must let through exactly
// the same connections.
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {compileFleet} from '../../source/core/compiler.js';
import {factsFromInventory, parseInventoryText} from '../../source/core/inventory.js';
import {compileNftTable, nftTableFamily, nftTableName} from '../../source/core/nft-compiler.js';
import {renderRuleset} from '../../source/core/render.js';
import {createLab, DEFAULT_HOSTS, type Lab, type LabHost} from './lab.js';

const FILE = path.join(import.meta.dirname, '..', '..', 'fixtures', 'inventories', 'seed-with-addresses.json');
const FLEET = DEFAULT_HOSTS.map((spec) => spec.name);
const FROM = ['operator', 'tenant', ...FLEET];
const EMPTY_IPTABLES = '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n';

let lab: Lab;

function host(name: string): LabHost {
  const found = lab.hosts.get(name);
  if (!found) throw new Error(`no lab host ${name}`);
  return found;
}

async function checked(name: string, argv: string[], input?: string): Promise<void> {
  const result = await host(name).exec(argv, input === undefined ? {} : {input});
  if (result.code !== 0) throw new Error(`${name}: ${argv.join(' ')} failed (${result.code}): ${result.stderr}`);
}

/** Every (from, address, port) worth trying: sshd's port and each server's listening ports, on each of its addresses. */
function attempts(): {from: string; address: string; port: number}[] {
  const list: {from: string; address: string; port: number}[] = [];
  for (const spec of DEFAULT_HOSTS) {
    const server = host(spec.name);
    const addresses = [server.publicV4, server.publicV6, server.privateV4, server.privateV6].filter((address): address is string => address !== undefined);
    for (const from of FROM) {
      if (from === spec.name) continue;
      for (const address of addresses) for (const port of [server.sshPort, ...(spec.listen?.tcp ?? [])]) list.push({from, address, port});
    }
  }
  return list;
}

/** "from -> address:port" for every connection that completes (tried a few dozen at a time). */
async function openConnections(): Promise<string[]> {
  const list = attempts();
  const open: string[] = [];
  for (let index = 0; index < list.length; index += 40) {
    const batch = list.slice(index, index + 40);
    const results = await Promise.all(batch.map((attempt) => lab.canConnect(attempt.from, attempt.address, attempt.port)));
    batch.forEach((attempt, at) => {
      if (results[at]) open.push(`${attempt.from} -> ${attempt.address.includes(':') ? `[${attempt.address}]` : attempt.address}:${attempt.port}`);
    });
  }
  return open.sort();
}

beforeAll(async () => {
  lab = await createLab();
}, 300_000);

afterAll(async () => {
  await lab?.teardown();
});

describe('the nftables table on the seed fleet', () => {
  it('lets through exactly the connections the iptables rulesets do, IPv4 and IPv6', async () => {
    const inventory = parseInventoryText(readFileSync(FILE, 'utf8'), FILE);
    const facts = new Map(inventory.hosts.map((entry) => [entry.name, factsFromInventory(entry)!]));
    const compiled = compileFleet(inventory, facts);

    for (const name of FLEET) await checked(name, ['nft', 'list', 'ruleset']); // nft is there
    const everything = (await openConnections()).length;

    for (const rulesets of compiled) {
      await checked(rulesets.host, ['iptables-restore'], renderRuleset(rulesets.v4));
      await checked(rulesets.host, ['ip6tables-restore'], renderRuleset(rulesets.v6));
    }
    const byIptables = await openConnections();

    for (const rulesets of compiled) {
      await checked(rulesets.host, ['iptables-restore'], EMPTY_IPTABLES);
      await checked(rulesets.host, ['ip6tables-restore'], EMPTY_IPTABLES);
      // The agent's transaction: declare, delete, define, in one `nft -f`.
      const table = `${nftTableFamily} ${nftTableName}`;
      await checked(rulesets.host, ['nft', '-f', '-'], `table ${table}\ndelete table ${table}\n${compileNftTable(rulesets)}`);
    }
    const byNftables = await openConnections();

    // The rules do filter (and the lab really connects): some connections pass, many do not.
    expect(byIptables).toContain('haproxy-www -> 10.132.0.12:80');
    expect(byIptables).toContain('haproxy-www -> [fd00:132::12]:443');
    expect(byIptables).toContain('wordpress-1 -> [fd00:132::14]:3306');
    expect(byIptables).not.toContain('operator -> 203.0.113.12:80');
    expect(byIptables.length).toBeGreaterThan(10);
    expect(byIptables.length).toBeLessThan(everything / 2);

    expect(byNftables).toEqual(byIptables);
  }, 600_000);
});
