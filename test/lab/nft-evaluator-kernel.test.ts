// The nftables evaluator against the kernel: each recorded ruleset (fixtures/nft/*.nft) is loaded
// into a server namespace of this test's own, and every packet the unit tests reason about is sent
// for real from a client namespace (a TCP connection to a listening port). The evaluator's "pass"
// must be exactly the connections that complete. The root namespace is never touched.
import {execFileSync, spawn, spawnSync, type ChildProcess} from 'node:child_process';
import {readFileSync} from 'node:fs';
import {fileURLToPath} from 'node:url';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import type {Packet} from '../../source/core/evaluator.js';
import {evaluateNft} from '../../source/core/nft-evaluator.js';
import {parseNftJson} from '../../source/core/nft-ruleset.js';

const canUseNetns = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0 && spawnSync('nft', ['--version']).status === 0;
const SERVER = `iw-nftk-${process.pid}-srv`;
const CLIENT = `iw-nftk-${process.pid}-cli`;
const LISTENER = fileURLToPath(new URL('../../source/lab/listener.mjs', import.meta.url));
const PORTS = [22, 25, 80, 443, 3306, 8050, 8101, 9090];
const SERVER_ADDRESSES = ['10.132.0.10/24', '203.0.113.10/24', 'fd00:132::10/64', '2001:db8:100::10/64'];
const CLIENT_ADDRESSES = ['10.132.0.5/24', '203.0.113.5/24', '203.0.113.99/24', '203.0.113.98/24', 'fd00:132::5/64', '2001:db8:100::99/64', '2001:db8:100::98/64', '2001:db8:dead:1::7/48'];

let listener: ChildProcess | undefined;

function ip(...args: string[]): void {
  execFileSync('ip', args, {stdio: ['ignore', 'ignore', 'pipe']});
}

function inServer(argv: string[], input?: string): string {
  return execFileSync('ip', ['netns', 'exec', SERVER, ...argv], {encoding: 'utf8', ...(input === undefined ? {} : {input})});
}

/** Tries each connection from the client namespace at once: "open", or why not. */
function connectAll(tries: readonly {source: string; destination: string; port: number}[]): string[] {
  const script = `
    const net = require('node:net');
    const tries = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
    Promise.all(tries.map((t) => new Promise((resolve) => {
      const socket = net.connect({host: t.destination, port: t.port, localAddress: t.source});
      const done = (word) => { socket.destroy(); resolve(word); };
      socket.setTimeout(1500, () => done('silent'));
      socket.once('connect', () => done('open'));
      socket.once('error', (error) => done(error.code || 'error'));
    }))).then((words) => process.stdout.write(JSON.stringify(words)));`;
  const out = execFileSync('ip', ['netns', 'exec', CLIENT, process.execPath, '-e', script], {encoding: 'utf8', input: JSON.stringify(tries)});
  return JSON.parse(out) as string[];
}

function removeNamespaces(): void {
  for (const name of [SERVER, CLIENT]) spawnSync('ip', ['netns', 'del', name]);
}

describe.skipIf(!canUseNetns)('nftables evaluator agrees with the kernel', () => {
  beforeAll(async () => {
    ip('netns', 'add', SERVER);
    ip('netns', 'add', CLIENT);
    ip('-n', SERVER, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', CLIENT);
    for (const [ns, addresses] of [[SERVER, SERVER_ADDRESSES], [CLIENT, CLIENT_ADDRESSES]] as const) {
      for (const address of addresses) ip('-n', ns, 'addr', 'add', address, 'dev', ns === SERVER ? 'eth1' : 'eth0', ...(address.includes(':') ? ['nodad'] : []));
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('-n', ns, 'link', 'set', ns === SERVER ? 'eth1' : 'eth0', 'up');
    }
    ip('-n', SERVER, 'route', 'add', '2001:db8:dead::/48', 'dev', 'eth1');
    listener = spawn('ip', ['netns', 'exec', SERVER, process.execPath, LISTENER, 'server', PORTS.join(','), ''], {stdio: ['ignore', 'pipe', 'inherit']});
    await new Promise<void>((resolve, reject) => {
      listener?.stdout?.on('data', (chunk: Buffer) => (chunk.toString().includes('ready') ? resolve() : undefined));
      listener?.once('exit', (code) => reject(new Error(`listener exited ${code}`)));
    });
  }, 30_000);

  afterAll(() => {
    listener?.kill('SIGKILL');
    removeNamespaces();
  });

  const SOURCES = ['10.132.0.5', '203.0.113.5', '203.0.113.99', '203.0.113.98', 'fd00:132::5', '2001:db8:100::99', '2001:db8:100::98', '2001:db8:dead:1::7'];

  it.each(['firewalld-rocky9', 'fail2ban', 'debian-default', 'handwritten'])('%s: every evaluated TCP connection is what the kernel does', (name) => {
    const nftText = readFileSync(new URL(`../../fixtures/nft/${name}.nft`, import.meta.url), 'utf8');
    inServer(['nft', '-f', '-'], nftText);
    try {
      const ruleset = parseNftJson(inServer(['nft', '-j', 'list', 'ruleset']));
      const tries = SOURCES.flatMap((source) => {
        const destination = source.includes(':') ? (source.startsWith('fd00') ? 'fd00:132::10' : '2001:db8:100::10') : source.startsWith('10.') ? '10.132.0.10' : '203.0.113.10';
        return PORTS.map((port) => ({source, destination, port}));
      });
      const live = connectAll(tries);
      const disagreements: string[] = [];
      tries.forEach((attempt, index) => {
        const packet: Packet = {chain: 'INPUT', inInterface: 'eth1', source: attempt.source, destination: attempt.destination, protocol: 'tcp', sourcePort: 40000, destinationPort: attempt.port, state: 'NEW'};
        const decision = evaluateNft(ruleset, packet);
        const predicted = decision.outcome === 'pass' ? 'open' : 'closed';
        const actual = live[index] === 'open' ? 'open' : 'closed';
        // "may drop" is the evaluator's honest doubt: it must never be a connection that the evaluator called closed and that opened
        if (decision.outcome === 'may-drop') return;
        if (predicted !== actual) disagreements.push(`${attempt.source} → ${attempt.destination}:${attempt.port}: evaluator ${decision.outcome}, kernel ${live[index]}`);
      });
      expect(disagreements).toEqual([]);
      // the fixture really filters something (or, for Debian's stock file, nothing)
      expect(live.filter((word) => word !== 'open').length > 0).toBe(name !== 'debian-default');
    } finally {
      for (const table of JSON.parse(inServer(['nft', '-j', 'list', 'tables'])).nftables.filter((item: {table?: unknown}) => item.table)) {
        inServer(['nft', 'delete', 'table', table.table.family, table.table.name]);
      }
    }
  });
});
