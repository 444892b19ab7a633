// Every golden case's compiled rulesets load with iptables-restore / ip6tables-restore into a
// fresh network namespace, and iptables-save prints back exactly the rules we sent: the
// canonical form the apply layer relies on to check "what is loaded is what we sent".
import {execFileSync, spawn, type ChildProcess} from 'node:child_process';
import {readdirSync, readFileSync} from 'node:fs';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {compileFleet} from '../../source/core/compiler.js';
import {factsFromInventory, parseInventoryText} from '../../source/core/inventory.js';
import type {HostFacts, Ruleset} from '../../source/core/model.js';
import {renderRuleset} from '../../source/core/render.js';

const inventories = join(import.meta.dirname, '..', '..', 'fixtures', 'inventories');
const namespacePrefix = `iw-h1-${process.pid}-`;
const created = new Set<string>();
let counter = 0;

function run(command: string, args: readonly string[], input?: string): string {
  return execFileSync(command, args, {input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe']});
}

function deleteNamespace(name: string): void {
  try {
    run('ip', ['netns', 'del', name]);
  } catch {
    // already gone
  }
  created.delete(name);
}

/** Loads the text in a brand-new namespace and returns what *-save prints, then deletes the namespace. */
function roundTrip(ruleset: Ruleset, text: string): string {
  const name = `${namespacePrefix}${counter++}`;
  run('ip', ['netns', 'add', name]);
  created.add(name);
  try {
    const family = ruleset.family === 4 ? 'iptables' : 'ip6tables';
    run('ip', ['netns', 'exec', name, `${family}-restore`], text);
    return run('ip', ['netns', 'exec', name, `${family}-save`, '-t', 'filter']);
  } finally {
    deleteNamespace(name);
  }
}

/** Comments (#) dropped, counters zeroed: what remains must match line for line. */
function significant(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => line.replace(/\[\d+:\d+\]$/, '[0:0]'));
}

afterAll(() => {
  for (const name of [...created]) deleteNamespace(name);
});

const cases = readdirSync(inventories)
  .filter((file) => file.endsWith('.json') && file !== 'seed.json')
  .sort();

for (const file of cases) {
  describe(file, () => {
    const inv = parseInventoryText(readFileSync(join(inventories, file), 'utf8'), file);
    const facts = new Map<string, HostFacts>();
    for (const host of inv.hosts) {
      const hostFacts = factsFromInventory(host);
      if (hostFacts) facts.set(host.name, hostFacts);
    }
    for (const compiled of compileFleet(inv, facts)) {
      for (const ruleset of [compiled.v4, compiled.v6]) {
        it(`${compiled.host} IPv${ruleset.family} loads and saves back identically`, () => {
          const text = renderRuleset(ruleset);
          expect(significant(roundTrip(ruleset, text))).toEqual(significant(text));
        });
      }
    }
  });
}

// Beyond the text: wordpress-1's real rulesets, loaded in a namespace wired to a "peer"
// namespace that holds the lb's, the bastion's and mysql-1's private addresses. The lb
// reaches port 80 (destination port, the seed's trap), over IPv6 too (which needs neighbour
// discovery through the firewall); mysql-1 does not; SSH passes only from the bastion.
describe('wordpress-1 rulesets filter real traffic', () => {
  const app = `${namespacePrefix}app`;
  const peer = `${namespacePrefix}peer`;
  let server: ChildProcess | undefined;

  const probeScript = `
    const [host, port, localAddress] = process.argv.slice(1);
    const socket = require('node:net').connect({host, port: Number(port), localAddress});
    const done = (result) => { console.log(result); process.exit(0); };
    socket.setTimeout(2000, () => done('timeout'));
    socket.on('connect', () => done('connected'));
    socket.on('error', (error) => done(error.code === 'ECONNREFUSED' ? 'refused' : error.code));
  `;
  const probe = (host: string, port: number, from: string): string =>
    run('ip', ['netns', 'exec', peer, process.execPath, '-e', probeScript, host, String(port), from]).trim();

  beforeAll(async () => {
    for (const name of [app, peer]) {
      run('ip', ['netns', 'add', name]);
      created.add(name);
      run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    }
    // Both ends are created inside the namespaces: the root namespace is never touched.
    run('ip', ['-n', app, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'eth1', 'netns', peer]);
    run('ip', ['-n', app, 'addr', 'add', '10.132.0.12/24', 'dev', 'eth1']);
    run('ip', ['-n', app, '-6', 'addr', 'add', 'fd00:132::12/64', 'dev', 'eth1', 'nodad']);
    for (const address of ['10.132.0.10/24', '10.132.0.11/24', '10.132.0.14/24']) {
      run('ip', ['-n', peer, 'addr', 'add', address, 'dev', 'eth1']);
    }
    for (const address of ['fd00:132::10/64', 'fd00:132::11/64', 'fd00:132::14/64']) {
      run('ip', ['-n', peer, '-6', 'addr', 'add', address, 'dev', 'eth1', 'nodad']);
    }
    run('ip', ['-n', app, 'link', 'set', 'eth1', 'up']);
    run('ip', ['-n', peer, 'link', 'set', 'eth1', 'up']);

    const file = 'seed-with-addresses.json';
    const inv = parseInventoryText(readFileSync(join(inventories, file), 'utf8'), file);
    const facts = new Map<string, HostFacts>(inv.hosts.map((host) => [host.name, factsFromInventory(host)!]));
    const wordpress = compileFleet(inv, facts).find((host) => host.host === 'wordpress-1')!;
    run('ip', ['netns', 'exec', app, 'iptables-restore'], renderRuleset(wordpress.v4));
    run('ip', ['netns', 'exec', app, 'ip6tables-restore'], renderRuleset(wordpress.v6));

    server = spawn('ip', ['netns', 'exec', app, process.execPath, '-e',
      "require('node:net').createServer((s) => s.end()).listen(80, '::', () => console.log('listening'))"], {stdio: ['ignore', 'pipe', 'inherit']});
    await new Promise<void>((resolve, reject) => {
      server?.stdout?.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('listening')) resolve();
      });
      server?.on('exit', (code) => reject(new Error(`test server exited (${code})`)));
    });
  });

  afterAll(() => {
    server?.kill();
    deleteNamespace(app);
    deleteNamespace(peer);
  });

  it('the lb reaches tcp/80 over IPv4 and IPv6', () => {
    expect(probe('10.132.0.12', 80, '10.132.0.11')).toBe('connected');
    expect(probe('fd00:132::12', 80, 'fd00:132::11')).toBe('connected');
  });

  it('mysql-1 does not reach tcp/80, in either family', () => {
    expect(probe('10.132.0.12', 80, '10.132.0.14')).toBe('timeout');
    expect(probe('fd00:132::12', 80, 'fd00:132::14')).toBe('timeout');
  });

  it('ssh passes the firewall from the bastion only (refused = reached the host, nothing listens)', () => {
    expect(probe('10.132.0.12', 22, '10.132.0.10')).toBe('refused');
    expect(probe('fd00:132::12', 22, 'fd00:132::10')).toBe('refused');
    expect(probe('10.132.0.12', 22, '10.132.0.11')).toBe('timeout');
  });
});
