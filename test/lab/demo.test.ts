// `isolate-wizard demo` end to end, with the built CLI run as an operator would (from the machine's
// own namespace, as root): --up leaves the tutorial's fleet up, the headless commands lock it down
// with the HOME and inventory it printed, --down removes every namespace, process and file of it;
// the wizard started by `demo` takes the lab with it when it exits; and the refusals are one line.
// Run: npm run build && npx vitest run --project lab test/lab/demo.test.ts
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import pty from '@lydell/node-pty';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {DEMO_STATE_PATH} from '../../source/lab/demo.js';
import {CLI_ENTRY} from '../../source/lab/lab.js';
import {labNamespaces, namespacePids, processStartTime} from '../../source/lab/namespaces.js';
import {run, type ExecOutput} from '../../source/lab/process.js';

const FLEET = ['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'];

function demo(args: string[], options: {wrap?: string[]} = {}): Promise<ExecOutput> {
  const argv = [...(options.wrap ?? []), process.execPath, CLI_ENTRY, 'demo', ...args];
  return run(argv[0]!, argv.slice(1), {timeoutMs: 200_000, env: {...process.env, CI: 'false'}});
}

interface UpReport {
  id: string;
  home: string;
  inventory: string;
  operatorNetns: string;
}

/** Reads what `demo --up` printed: the paths a person would copy. */
function parseUp(stdout: string): UpReport {
  const home = /^HOME=(\S+)/m.exec(stdout)?.[1];
  const inventory = /^inventory: (\S+)/m.exec(stdout)?.[1];
  const operatorNetns = /ip netns exec (\S+) env HOME=/.exec(stdout)?.[1];
  const id = /^demo lab up: .*\((\w+): ip netns list\)$/m.exec(stdout)?.[1];
  if (!home || !inventory || !operatorNetns || !id) throw new Error(`demo --up printed no lab:\n${stdout}`);
  return {id, home, inventory, operatorNetns};
}

/** The CLI in the demo's operator namespace with its HOME, as the line `demo --up` printed says. */
function inLab(up: UpReport, args: string[]): Promise<ExecOutput> {
  return run('ip', ['netns', 'exec', up.operatorNetns, 'env', `HOME=${up.home}`, process.execPath, CLI_ENTRY, ...args], {
    timeoutMs: 150_000,
    env: {...process.env, CI: 'false'},
  });
}

async function connects(netns: string, address: string, port: number): Promise<boolean> {
  const output = await run('ip', ['netns', 'exec', netns, 'timeout', '2', 'bash', '-c', 'exec 3<>"/dev/tcp/$0/$1"', address, String(port)]);
  return output.code === 0;
}

/** The processes holding a demo lab on this machine. */
function demoHolders(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('demo-holder.js');
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Every process living in the lab's namespaces now (the servers' sshd, listeners, sessions). */
function labPids(id: string): number[] {
  return labNamespaces(id).flatMap((name) => namespacePids(name));
}

function expectGone(id: string, dir: string, pids: readonly number[]): void {
  expect(labNamespaces(id)).toEqual([]);
  expect(existsSync(dir)).toBe(false);
  expect(existsSync(DEMO_STATE_PATH)).toBe(false);
  expect(pids.filter((pid) => processStartTime(pid) !== undefined)).toEqual([]);
}

// The machine has one demo slot: one left by an earlier, interrupted run goes first.
beforeAll(async () => {
  await demo(['--down']);
});

afterAll(async () => {
  await demo(['--down']);
});

describe('demo --up, the commands against it, demo --down', () => {
  let up: UpReport;
  let holderPid: number;

  it('builds the fleet and prints its HOME and inventory, then exits leaving it up', async () => {
    // Two at once build one lab: the other is refused, or finds it up.
    const both = await Promise.all([demo(['--up']), demo(['--up'])]);
    const result = both.find((run) => run.code === 0 && !run.stdout.startsWith('already up')) ?? both[0]!;
    const other = both.find((run) => run !== result)!;
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    up = parseUp(result.stdout);
    if (other.code === 0) expect(parseUp(other.stdout).id).toBe(up.id);
    else expect(other.stderr).toBe('isolate-wizard: the demo lab could not be built: another demo lab is up or being built (isolate-wizard demo --down removes it)\n');
    expect(demoHolders()).toHaveLength(1);
    for (const name of FLEET) expect(result.stdout).toContain(name);
    // Up after the command is gone: every server and the tenant in a namespace, the holder alive.
    const namespaces = labNamespaces(up.id);
    for (const name of [...FLEET, 'tenant', 'operator', 'switch']) expect(namespaces).toContain(`iwlab-${up.id}-${name}`);
    holderPid = (JSON.parse(readFileSync(DEMO_STATE_PATH, 'utf8')) as {holder: {pid: number}}).holder.pid;
    expect(processStartTime(holderPid)).toBeDefined();
    expect(readFileSync(path.join(up.home, '.ssh', 'config'), 'utf8')).toMatch(/ProxyJump tunnel-1/);
    expect(readFileSync(path.join(up.home, '.ssh', 'known_hosts'), 'utf8')).not.toBe('');

    // A second --up uses the same lab.
    const again = await demo(['--up']);
    expect(again.code).toBe(0);
    expect(parseUp(again.stdout).id).toBe(up.id);
  });

  it('is a fleet the headless commands discover, lock down and verify with that HOME and inventory', async () => {
    const discovered = await inLab(up, ['discover', '--inventory', up.inventory]);
    expect(discovered.code).toBe(0);
    // The listeners are named as the tutorial's programs: each role is suggested.
    expect(discovered.stdout).toMatch(/haproxy-www[\s\S]*?suggested roles: lb/);
    expect(discovered.stdout).toMatch(/mysql-1[\s\S]*?suggested roles: db/);

    // Before: the database answers from the internet (no firewall yet).
    expect(await connects(up.operatorNetns, '203.0.113.14', 3306)).toBe(true);
    const applied = await inLab(up, ['apply', '--inventory', up.inventory, '--yes', '--timeout', '60']);
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
    for (const name of FLEET) expect(applied.stdout).toContain(`${name}: kept`);
    const verified = await inLab(up, ['verify', '--inventory', up.inventory]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    // After, tried for real from the internet, IPv4 and IPv6: the web still answers, the database not.
    expect(await connects(up.operatorNetns, '203.0.113.11', 80)).toBe(true);
    expect(await connects(up.operatorNetns, '2001:db8:100::11', 80)).toBe(true);
    expect(await connects(up.operatorNetns, '203.0.113.14', 3306)).toBe(false);
    expect(await connects(up.operatorNetns, '2001:db8:100::14', 3306)).toBe(false);
  });

  it('demo --down removes its namespaces, processes and files, and says so', async () => {
    const pids = [holderPid, ...labPids(up.id)];
    expect(pids.length).toBeGreaterThan(FLEET.length); // every sshd at least
    const dir = path.dirname(up.home);
    const result = await demo(['--down']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`demo lab ${up.id} removed`);
    expectGone(up.id, dir, pids);
    const again = await demo(['--down']);
    expect(again.stdout).toBe('no demo lab is up\n');
    expect(again.code).toBe(0);
  });
});

/** `demo ARGS` in a terminal (100x30): its output so far, and quitting the wizard with `q`. */
class DemoTerminal {
  output = '';
  exitCode: number | undefined;
  private readonly terminal: pty.IPty;

  constructor(args: string[]) {
    this.terminal = pty.spawn(process.execPath, [CLI_ENTRY, 'demo', ...args], {
      name: 'xterm-256color',
      cols: 100,
      rows: 30,
      cwd: '/',
      env: {...process.env, CI: 'false', TERM: 'xterm-256color'} as Record<string, string>,
    });
    this.terminal.onData((data) => {
      this.output += data;
    });
    this.terminal.onExit((event) => {
      this.exitCode = event.exitCode;
    });
  }

  /** Waits for the wizard's empty fleet home; returns the lab the banner above it names. */
  async wizardShown(): Promise<UpReport> {
    const until = Date.now() + 150_000;
    while (!this.output.includes('No servers yet')) {
      if (this.exitCode !== undefined || Date.now() > until) throw new Error(`the wizard never showed its home:\n${this.output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return parseUp(this.output.replaceAll('\r', ''));
  }

  async quit(): Promise<number | undefined> {
    await new Promise((resolve) => setTimeout(resolve, 1000)); // Ink turns on raw mode after its first frame
    this.terminal.write('q');
    const until = Date.now() + 60_000;
    while (this.exitCode === undefined && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 100));
    return this.exitCode;
  }

  async close(): Promise<void> {
    if (this.exitCode !== undefined) return;
    this.terminal.kill();
    await demo(['--down']);
  }
}

describe('demo with the wizard', () => {
  it('starts the wizard with the prepared HOME, and removes the lab when the wizard exits', async () => {
    const wizard = new DemoTerminal([]);
    try {
      const up = await wizard.wizardShown();
      // The wizard runs with the lab's HOME: its settings directory is made there (once its services load).
      const settings = path.join(up.home, '.config', 'isolate-wizard');
      for (let tries = 0; tries < 100 && !existsSync(settings); tries++) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(existsSync(settings)).toBe(true);
      const pids = labPids(up.id);
      expect(pids.length).toBeGreaterThan(FLEET.length);
      expect(await wizard.quit()).toBe(0);
      expect(wizard.output).toContain(`demo lab ${up.id} removed`);
      expectGone(up.id, path.dirname(up.home), pids);
    } finally {
      await wizard.close();
    }
  });

  it('--keep leaves the lab up after the wizard; demo then uses that lab and leaves it up too', async () => {
    const first = new DemoTerminal(['--keep']);
    let second: DemoTerminal | undefined;
    try {
      const up = await first.wizardShown();
      expect(await first.quit()).toBe(0);
      expect(first.output).toContain(`demo lab ${up.id} is still up: isolate-wizard demo --down removes it`);
      expect(labNamespaces(up.id)).toContain(`iwlab-${up.id}-mysql-1`);
      expect(labPids(up.id).length).toBeGreaterThan(FLEET.length);

      second = new DemoTerminal([]);
      expect((await second.wizardShown()).id).toBe(up.id);
      expect(await second.quit()).toBe(0);
      expect(second.output).toContain(`demo lab ${up.id} is still up`);
      expect(labNamespaces(up.id)).toContain(`iwlab-${up.id}-mysql-1`);
      expect((await demo(['--down'])).code).toBe(0);
      expect(labNamespaces(up.id)).toEqual([]);
    } finally {
      await first.close();
      await second?.close();
    }
  });
});

describe('demo refuses in one line where it cannot run', () => {
  /** The refusal is one line, exit 3, and nothing was built. */
  function expectRefusal(result: ExecOutput, words: RegExp): void {
    expect(result.code).toBe(3);
    expect(result.stdout).toBe('');
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(words);
    expect(existsSync(DEMO_STATE_PATH)).toBe(false);
  }

  it('without root (run as nobody)', async () => {
    const result = await demo(['--up'], {wrap: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups']});
    expectRefusal(result, /^isolate-wizard: demo needs root/);
  });

  it('without sshd (hidden in a mount namespace of its own), naming the package and how to install it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'iw-demo-'));
    try {
      const notAProgram = path.join(dir, 'sshd');
      writeFileSync(notAProgram, '', {mode: 0o644});
      // The bind mount lives in that namespace only: the machine's sshd is untouched.
      const hide = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" /usr/sbin/sshd && exec "$@"', notAProgram];
      const result = await demo(['--up'], {wrap: hide});
      expectRefusal(result, /^isolate-wizard: demo needs the Debian packages openssh-server \(as root: apt-get .* openssh-server\)/);
    } finally {
      rmSync(dir, {recursive: true, force: true});
    }
  });

  it('the wizard without a terminal, before building anything (exit 2)', async () => {
    const result = await demo([]);
    expect(result.code).toBe(2);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/needs an interactive terminal/);
    expect(existsSync(DEMO_STATE_PATH)).toBe(false);
  });
});
