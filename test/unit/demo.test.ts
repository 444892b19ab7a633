// What `isolate-wizard demo` says where it cannot run (the lab test runs it for real as nobody and
// without sshd; another OS only here), its inventory against the fixture it copies, and --help.
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {Writable} from 'node:stream';
import {describe, expect, it} from 'vitest';
import {main} from '../../source/cli.js';
import type {CliIo} from '../../source/commands/command.js';
import {DEMO_HOSTS, DEMO_INVENTORY, demoRefusal} from '../../source/lab/demo.js';
import {DEFAULT_HOSTS} from '../../source/lab/lab.js';

describe('demo refusals', () => {
  it('another OS: one line naming it, whatever else is missing', () => {
    const line = demoRefusal({platform: 'darwin', isRoot: false, missingPackages: ['iproute2']});
    expect(line).toBe('demo needs Linux (network namespaces, iptables); this machine runs darwin');
  });

  it('Linux without root and programs: both needs in one line, with the install command', () => {
    const line = demoRefusal({platform: 'linux', isRoot: false, missingPackages: ['iproute2', 'nftables']})!;
    expect(line.split('\n')).toHaveLength(1);
    expect(line).toMatch(/^demo needs root, .*; and the Debian packages iproute2, nftables \(as root: apt-get update && apt-get install -y --no-install-recommends iproute2 nftables\)$/);
  });

  it('nothing to say on Linux as root with every program', () => {
    expect(demoRefusal({platform: 'linux', isRoot: true, missingPackages: []})).toBeUndefined();
  });
});

describe('the demo fleet', () => {
  it('is the tutorial inventory (fixtures/inventories/seed.json) on the lab seed fleet, its programs those that suggest each role', () => {
    const seed: unknown = JSON.parse(readFileSync(path.join(import.meta.dirname, '../../fixtures/inventories/seed.json'), 'utf8'));
    expect(DEMO_INVENTORY).toEqual(seed);
    expect(DEMO_HOSTS.map((host) => host.name)).toEqual(DEFAULT_HOSTS.map((host) => host.name));
    expect(DEMO_HOSTS.map((host) => host.listen?.program)).toEqual([undefined, 'haproxy', 'apache2', 'apache2', 'mysqld', 'mysqld']);
  });
});

describe('demo in --help', () => {
  it('is listed with its usage', async () => {
    let text = '';
    const stdout = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        text += chunk.toString();
        callback();
      },
    });
    const io: CliIo = {stdout, stderr: stdout, env: {}, cwd: '/', isTTY: false};
    expect(await main(['--help'], io)).toBe(0);
    expect(text).toMatch(/^ {2}demo {7}rehearse on this machine/m);
    text = '';
    expect(await main(['demo', '--help'], io)).toBe(0);
    expect(text).toContain('Usage: isolate-wizard demo [--up | --down | --keep]');
  });
});
