// The nftables table (nft-compiler.ts) against the kernel, on the seed fleet's lab servers: the
// same real connections, IPv4 and IPv6, from the internet, the tenant and every fleet host to
// every server's addresses, first with the compiled iptables rulesets loaded (iptables-restore),
// then with empty iptables and our nft table (`nft -f`, no agent). Both must let through exactly
// the same connections.
import {spawn} from 'node:child_process';
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {compileFleet} from '../../source/core/compiler.js';
import {factsFromInventory, parseInventoryText} from '../../source/core/inventory.js';
import {compileNftTable, nftTableFamily, nftTableName} from '../../source/core/nft-compiler.js';
import {renderRuleset} from '../../source/core/render.js';
import {createLab, DEFAULT_HOSTS, type Lab, type LabHost} from '../../source/lab/lab.js';

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

/**
 * Tries every connection at once, one node process per source namespace (a loaded machine
 * starts processes slowly: one per try would time out for that alone), each try given 5 s.
 * Returns "from -> address:port" for every connection that completes.
 */
async function openConnections(): Promise<string[]> {
  const script = `
    const net = require('node:net');
    const tries = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
    Promise.all(tries.map((t) => new Promise((resolve) => {
      const socket = net.connect({host: t.address, port: t.port});
      const done = (word) => { socket.destroy(); resolve(word); };
      socket.setTimeout(5000, () => done(false));
      socket.once('connect', () => done(true));
      socket.once('error', () => done(false));
    }))).then((results) => process.stdout.write(JSON.stringify(results)));`;
  const list = attempts();
  const open: string[] = [];
  await Promise.all(
    FROM.map(async (from) => {
      const tries = list.filter((attempt) => attempt.from === from);
      const netns = from === 'operator' ? lab.operator.netns : from === 'tenant' ? lab.tenant.netns : host(from).netns;
      const child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', script], {stdio: ['pipe', 'pipe', 'inherit']});
      child.stdin.end(JSON.stringify(tries));
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      await new Promise<void>((resolve, reject) => child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`connections from ${from}: exit ${code}`)))));
      const results = JSON.parse(out) as boolean[];
      tries.forEach((attempt, index) => {
        if (results[index]) open.push(`${from} -> ${attempt.address.includes(':') ? `[${attempt.address}]` : attempt.address}:${attempt.port}`);
      });
    }),
  );
  return open.sort();
}

beforeAll(async () => {
  // nft on every server (the default lab hides it on mysql-2): each loads our table with it.
  lab = await createLab({hosts: DEFAULT_HOSTS.map((spec) => ({...spec, nft: true}))});
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
    const everything = await openConnections();
    // Without rules every server answers on every address (the lab connects at all).
    expect(everything).toContain('operator -> 203.0.113.12:80');
    expect(everything).toContain('mysql-1 -> [fd00:132::12]:80');

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
    expect(byIptables.length).toBeLessThan(everything.length / 2);

    expect(byNftables).toEqual(byIptables);
  }, 600_000);
});
