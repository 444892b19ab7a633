// The real services' offline parts: the saved fleet, import/export, validation, ssh config
// suggestions, and the preview (compile + access + lockout) with facts given in the fleet.

import {mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';
import {InputError} from '../../source/core/errors.js';
import {PromptQueue} from '../../source/ui/prompts.js';
import {createServer, type Socket} from 'node:net';
import {createRealServices, DROP_LOG_SCRIPT, parseDropLog, sshConfigAliases, STATUS_CONCURRENCY, TROUBLESHOOT_COMMANDS} from '../../source/ui/real-services.js';
import type {FleetDoc} from '../../source/ui/services.js';

const fixture = (name: string) => path.resolve(import.meta.dirname, '../../fixtures/inventories', name);

let home: string;
let configDirectory: string;

beforeEach(() => {
  home = mkdtempSync(path.join(tmpdir(), 'iw-ui-home-'));
  configDirectory = path.join(home, 'conf');
  mkdirSync(path.join(home, '.ssh'), {recursive: true});
  // Port 1 on loopback: every connection is refused at once (no server is ever reached here).
  writeFileSync(
    path.join(home, '.ssh', 'config'),
    ['Host tunnel-1', '  HostName 127.0.0.1', '  Port 1', '', 'Host haproxy-www wordpress-? mysql-*', '  ProxyJump tunnel-1', '', 'Host *', '  User root', ''].join('\n'),
  );
});
afterEach(() => rmSync(home, {recursive: true, force: true}));

function services() {
  return createRealServices({home, env: {HOME: home}, prompter: new PromptQueue(), configDirectory});
}

describe('the saved fleet', () => {
  it('starts empty, then keeps what was saved (inventory format + the deadline)', async () => {
    const first = services();
    expect(await first.loadFleet()).toEqual({fleet: {hosts: []}, settings: {deadlineSeconds: 120}});
    const fleet: FleetDoc = {hosts: [{name: 'db', ssh: 'root@10.0.0.5', roles: ['db']}], options: {logDrops: true}};
    await first.saveFleet(fleet, {deadlineSeconds: 45});
    expect(await services().loadFleet()).toEqual({fleet, settings: {deadlineSeconds: 45}});
  });

  it('imports a valid inventory file and exports it back as the same JSON', async () => {
    const real = services();
    const fleet = await real.importFleet(fixture('seed.json'));
    expect(fleet.hosts.map((host) => host.name)).toEqual(['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2']);
    const out = path.join(home, 'out.json');
    await real.exportFleet(fleet, out);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual(JSON.parse(readFileSync(fixture('seed.json'), 'utf8')));
  });

  it('refuses a bad inventory with one line per problem, naming the field', async () => {
    const bad = path.join(home, 'bad.json');
    writeFileSync(bad, JSON.stringify({hosts: [{name: 'a', ssh: 'a', roles: ['dbx']}]}));
    const error = await services().importFleet(bad).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).problems[0]).toMatch(/^hosts\[0\]\.roles\[0\]: unknown role "dbx"/);
    await expect(services().importFleet(path.join(home, 'missing.json'))).rejects.toThrow(/missing\.json: cannot read the inventory \(ENOENT\)/);
  });

  it('validates an edited fleet (an empty one is allowed while building it)', async () => {
    const real = services();
    expect(await real.validateFleet({hosts: []})).toEqual([]);
    const problems = await real.validateFleet({hosts: [{name: 'bad name', ssh: 'x', roles: []}, {name: 'b', ssh: 'x', roles: []}]});
    expect(problems).toContainEqual(expect.stringMatching(/^hosts\[0\]\.name: "bad name"/));
    expect(problems).toContainEqual(expect.stringMatching(/^hosts\[1\]\.ssh: "x" is the same destination as hosts\[0\]/));
  });
});

describe('peer port suggestions', () => {
  it('read the fleet\'s own role peers: a port already opened between app servers is not suggested again', () => {
    const listening = [{proto: 'tcp' as const, port: 24007}];
    const hosts = [{name: 'wordpress-1', roles: ['app'], listening}, {name: 'wordpress-2', roles: ['app'], listening}];
    const fleet: FleetDoc = {hosts: [{name: 'wordpress-1', ssh: 'wordpress-1', roles: []}, {name: 'wordpress-2', ssh: 'wordpress-2', roles: []}]};
    expect(services().peerPortSuggestions(fleet, hosts).map((suggestion) => suggestion.peers)).toEqual([['24007']]);
    expect(services().peerPortSuggestions({...fleet, roles: {app: {peers: ['24000-24010']}}}, hosts)).toEqual([]);
  });
});

describe('ssh config suggestions', () => {
  it('offers Host aliases without patterns', async () => {
    expect(await services().sshHostSuggestions()).toEqual(['tunnel-1', 'haproxy-www']);
    expect(sshConfigAliases('Host a b\n  HostName x\nHost !c *.d e?\nMatch host f\n')).toEqual(['a', 'b']);
  });
});

describe('preview (facts given, servers unreachable)', () => {
  it('compiles the seed fleet, derives the access, checks the operator path', async () => {
    const real = services();
    const seed = JSON.parse(readFileSync(fixture('seed-with-addresses.json'), 'utf8')) as FleetDoc;
    // The ssh config says tunnel-1's sshd is on port 1: the bastion role opens 22 only.
    const closed = await real.preview(seed, ['tunnel-1']);
    expect(closed.lockout).toEqual([expect.stringMatching(/^tunnel-1: a new SSH connection from the internet .* to tcp\/1 would be dropped/)]);
    // A change to mysql-1 alone is not blocked by what tunnel-1's own rules would do: they are not applied.
    expect((await real.preview(seed, ['mysql-1'])).lockout).toEqual([]);
    const fleet = {...seed, hosts: seed.hosts.map((host) => (host.name === 'tunnel-1' ? {...host, allow: [{port: 1, from: 'internet'}]} : host))};
    const preview = await real.preview(fleet, ['haproxy-www', 'mysql-1']);
    expect(preview.problems).toEqual([]);
    expect(preview.lockout).toEqual([]);
    expect(preview.hosts.map((host) => host.host)).toEqual(['haproxy-www', 'mysql-1']);
    expect(preview.hosts[1]?.rulesV4).toContain('-A INPUT -j IW-INPUT');
    expect(preview.hosts[1]?.rulesV4).toContain('--dport 3306');
    expect(preview.hosts[1]?.rulesV6).toContain('ipv6-icmp');
    // The servers cannot be reached: said plainly instead of an empty diff.
    expect(preview.hosts[0]?.diff[0]).toMatch(/^\(cannot read the current rules: /);
    expect(preview.access.join('\n')).toMatch(/internet → haproxy-www tcp\/80,443/);
    expect(preview.access.join('\n')).not.toMatch(/internet → mysql/);
    await real.close();
  });

  it('a plan that closes the bastion\'s SSH blocks with a lockout finding', async () => {
    const real = services();
    const fleet = JSON.parse(readFileSync(fixture('seed-with-addresses.json'), 'utf8')) as FleetDoc;
    const withoutBastion = {...fleet, hosts: fleet.hosts.map((host) => (host.name === 'tunnel-1' ? {...host, roles: []} : host))};
    const preview = await real.preview(withoutBastion, ['tunnel-1']);
    expect(preview.lockout.length).toBeGreaterThan(0);
    expect(preview.lockout.join('\n')).toMatch(/tunnel-1/);
    const outcome = await real.apply(withoutBastion, ['tunnel-1'], 30, () => undefined);
    expect(outcome.kind).toBe('refused');
    await real.close();
  });

  it('says which hosts lack facts', async () => {
    const real = services();
    const fleet = JSON.parse(readFileSync(fixture('seed.json'), 'utf8')) as FleetDoc;
    const preview = await real.preview(fleet, ['mysql-1']);
    expect(preview.problems[0]).toMatch(/^tunnel-1: interfaces and addresses are not known yet/);
    expect(preview.problems).toHaveLength(6);
  });
});

describe('status of the fleet home', () => {
  it('reports each host as it answers (here: every connection refused), the whole map at the end', async () => {
    const real = services();
    const fleet: FleetDoc = {hosts: Array.from({length: 40}, (_, index) => ({name: `h-${index}`, ssh: `root@127.0.0.1:1`, roles: []}))};
    const heard: string[] = [];
    const states = await real.status(fleet, (host, state) => {
      expect(state.kind).toBe('unreachable');
      heard.push(host);
    });
    expect(heard.sort()).toEqual(fleet.hosts.map((host) => host.name).sort());
    expect([...states.values()].every((state) => state.kind === 'unreachable')).toBe(true);
    expect(states.size).toBe(40);
    await real.close();
  });
});

describe('status of a large fleet', () => {
  it('checks a few servers at a time, never all at once, and hears from every one', async () => {
    // A loopback "sshd" that holds each connection 100 ms without a word, then hangs up.
    let open = 0;
    let most = 0;
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      open += 1;
      most = Math.max(most, open);
      socket.on('close', () => {
        open -= 1;
        sockets.delete(socket);
      });
      socket.on('error', () => undefined);
      setTimeout(() => socket.destroy(), 100);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as {port: number}).port;
    try {
      const real = services();
      const fleet: FleetDoc = {hosts: Array.from({length: 60}, (_, index) => ({name: `h-${index}`, ssh: `u${index}@127.0.0.1:${port}`, roles: []}))}; // one user each: one connection each
      const heard = new Set<string>();
      const states = await real.status(fleet, (host) => heard.add(host));
      expect(heard.size).toBe(60);
      expect([...states.values()].every((state) => state.kind === 'unreachable')).toBe(true);
      expect(most).toBeGreaterThan(1);
      expect(most).toBeLessThanOrEqual(STATUS_CONCURRENCY);
      await real.close();
    } finally {
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  });
});

describe('troubleshoot commands', () => {
  it('are constants; the drop log is read by a fixed script on stdin', () => {
    expect(TROUBLESHOOT_COMMANDS).toEqual({countersV4: 'iptables-save -c -t filter', countersV6: 'ip6tables-save -c -t filter', dropLog: 'sh -s'});
    expect(DROP_LOG_SCRIPT).toContain("grep 'isolate-wizard DROP '");
  });

  it('parses the drop log output and states when logging is off or unreadable', () => {
    expect(parseDropLog('@logging on\n@source dmesg\n[1.0] isolate-wizard DROP IN=eth0 SRC=1.2.3.4\n')).toEqual({
      source: 'dmesg',
      lines: ['[1.0] isolate-wizard DROP IN=eth0 SRC=1.2.3.4'],
    });
    expect(parseDropLog('@logging off\n@source journalctl\n').note).toMatch(/drop logging is off on this server/);
    expect(parseDropLog('@logging on\n@source none\n')).toMatchObject({source: 'none', note: expect.stringMatching(/cannot be read/)});
  });
});
