// installBeginStage: the agent is installed, the batch begun and the planned rules tested in ONE
// round trip (the agent's text in the command, the owner line and the rules on stdin). Run for
// real with dash, in a network namespace of this test's own (begin snapshots iptables there), the
// agent's directory swapped for a temp dir.
import {spawnSync} from 'node:child_process';
import {appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {AGENT_DIR, AGENT_SCRIPT} from '../../source/remote/agent-script.js';
import {installBeginStage, LockHeldError} from '../../source/remote/apply-protocol.js';
import type {ExecOptions, ExecResult, RemoteHost} from '../../source/remote/types.js';

const canUseNetns = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0;
const NETNS = `iw-h8-begin-${process.pid}`;
let dir = '';

/** A host whose commands run here, in the namespace, with the agent's directory moved to `dir`. */
function localHost(): RemoteHost & {commands: string[]} {
  const commands: string[] = [];
  return {
    name: 'web-1',
    route: 'local',
    commands,
    async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
      commands.push(command);
      const local = command.replaceAll(AGENT_DIR, dir);
      const result = spawnSync('ip', ['netns', 'exec', NETNS, 'env', `IW_STATE_DIR_OVERRIDE=${dir}`, 'dash', '-c', local], {
        input: options.stdin ?? '',
        encoding: 'utf8',
        timeout: 30_000,
      });
      return {code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr};
    },
    async close() {},
  };
}

function state(): Record<string, string> {
  const lines = readFileSync(path.join(dir, 'state'), 'utf8').split('\n').filter((line) => line.includes('='));
  return Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
}

describe.skipIf(!canUseNetns)('installBeginStage', {timeout: 60_000}, () => {
  beforeAll(() => {
    spawnSync('ip', ['netns', 'del', NETNS]);
    expect(spawnSync('ip', ['netns', 'add', NETNS]).status).toBe(0);
    spawnSync('ip', ['netns', 'exec', NETNS, 'iptables-restore'], {input: '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n'});
    dir = mkdtempSync(path.join(tmpdir(), 'iw-h8-begin-'));
  });
  afterAll(() => {
    // Release the lock (cancels the watchdog: it sees its token gone and exits).
    if (dir && existsSync(path.join(dir, 'agent.sh'))) {
      spawnSync('ip', ['netns', 'exec', NETNS, 'env', `IW_STATE_DIR_OVERRIDE=${dir}`, 'dash', path.join(dir, 'agent.sh'), 'unlock', 'b-first']);
    }
    spawnSync('ip', ['netns', 'del', NETNS]);
    if (dir) rmSync(dir, {recursive: true, force: true});
  });

  // Our chains, as prepareRules sends them.
  const planned = {
    v4Text: '*filter\n:INPUT - [0:0]\n:IW-INPUT - [0:0]\n-A INPUT -j IW-INPUT\n-A IW-INPUT -i lo -j ACCEPT\n-A IW-INPUT -j DROP\nCOMMIT\n',
    v6Text: '*filter\n:INPUT - [0:0]\n:IW-INPUT - [0:0]\n-A INPUT -j IW-INPUT\n-A IW-INPUT -j DROP\nCOMMIT\n',
    nftText: '',
  };
  const unlock = (batch: string): number | null =>
    spawnSync('ip', ['netns', 'exec', NETNS, 'env', `IW_STATE_DIR_OVERRIDE=${dir}`, 'dash', path.join(dir, 'agent.sh'), 'unlock', batch]).status;

  it('installs the agent, locks with the owner and returns the snapshot, in one command, leaving no temp file', async () => {
    const host = localHost();
    const began = await installBeginStage(host, 'b-first', 60, planned, 'alice@desk pid=42');
    expect(host.commands).toHaveLength(1);
    expect(began.snapshot.v4).toContain('-A INPUT -i lo -j ACCEPT');
    expect(state()).toMatchObject({batch: 'b-first', phase: 'staged', owner: 'alice@desk pid=42'});
    expect(readdirSync(dir).filter((name) => name.startsWith('owner.') || name.startsWith('agent.sh.'))).toEqual([]);
  });

  it('reports a held lock with its holder, and leaves the first batch as it was, with the agent it began with', async () => {
    // Stand for an older agent: the pending batch must finish with it (and with its watchdog).
    const installed = path.join(dir, 'agent.sh');
    appendFileSync(installed, '# the agent that began b-first\n');
    const before = readFileSync(installed, 'utf8');
    const error = await installBeginStage(localHost(), 'b-second', 60, planned, 'bob@laptop pid=7').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LockHeldError);
    expect((error as LockHeldError).holder).toBe('alice@desk pid=42');
    expect(state()).toMatchObject({batch: 'b-first', phase: 'staged'});
    expect(readFileSync(installed, 'utf8')).toBe(before);
    expect(readdirSync(dir).filter((name) => name.startsWith('agent.sh.'))).toEqual([]);
  });

  it('takes an owner line with shell syntax or a line break as text, never as a command', async () => {
    expect(unlock('b-first')).toBe(0);
    const began = await installBeginStage(localHost(), 'b-third', 60, planned, 'eve $(touch pwned) `id`\nsecond line');
    expect(began.snapshot.v4).toContain('-A INPUT -i lo -j ACCEPT');
    expect(state()).toMatchObject({batch: 'b-third', phase: 'staged', owner: 'eve touch pwned id second line'});
    expect(existsSync(path.join(dir, 'pwned'))).toBe(false);
    expect(existsSync('pwned')).toBe(false);
    expect(unlock('b-third')).toBe(0);
  });

  it('stages the planned rules with the lock; a rejected candidate comes back with the batch still locked', async () => {
    const host = localHost();
    const began = await installBeginStage(host, 'b-four', 60, planned, 'carol $(touch pwned) pid=5');
    expect(host.commands).toHaveLength(1);
    expect(began.rejected).toBeUndefined();
    expect(began.snapshot.v4).toContain('-A INPUT -i lo -j ACCEPT');
    // The agent's text travels inside the command: installed exactly (this test's host moves its directory).
    expect(readFileSync(path.join(dir, 'agent.sh'), 'utf8')).toBe(AGENT_SCRIPT.replaceAll(AGENT_DIR, dir));
    expect(state()).toMatchObject({batch: 'b-four', phase: 'staged', owner: 'carol touch pwned pid=5'});
    expect(readFileSync(path.join(dir, 'backups', 'b-four.cand.v4'), 'utf8')).toBe(planned.v4Text);
    expect(existsSync(path.join(dir, 'pwned'))).toBe(false);
    expect(unlock('b-four')).toBe(0);

    const bad = {...planned, v4Text: planned.v4Text.replace('-i lo', '--no-such-option lo')};
    const rejected = await installBeginStage(localHost(), 'b-five', 60, bad, 'carol pid=5');
    expect(rejected.rejected).toContain('IPv4 candidate rejected');
    expect(rejected.snapshot.v4).toContain('-A INPUT -i lo -j ACCEPT');
    expect(state()).toMatchObject({batch: 'b-five', phase: 'locked'});
    expect(unlock('b-five')).toBe(0);
  });
});
