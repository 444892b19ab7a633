// installAndBegin: the agent is installed and the batch begun in ONE round trip, the script and
// the owner line sharing stdin. Run for real with dash, in a network namespace of this test's own
// (begin snapshots iptables there), the agent's directory swapped for a temp dir.
import {spawnSync} from 'node:child_process';
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {AGENT_DIR, AGENT_SCRIPT} from '../../source/remote/agent-script.js';
import {installAndBegin, installBeginStage, LockHeldError} from '../../source/remote/apply-protocol.js';
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

describe.skipIf(!canUseNetns)('installAndBegin', {timeout: 60_000}, () => {
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

  it('installs the agent, locks with the owner from stdin and returns the snapshot, in one command', async () => {
    const host = localHost();
    const snapshot = await installAndBegin(host, 'b-first', 60, 'alice@desk pid=42');
    expect(host.commands).toHaveLength(1);
    expect(readFileSync(path.join(dir, 'agent.sh'), 'utf8')).toBe(AGENT_SCRIPT.endsWith('\n') ? AGENT_SCRIPT : `${AGENT_SCRIPT}\n`);
    expect(snapshot.v4).toContain('-A INPUT -i lo -j ACCEPT');
    expect(state()).toMatchObject({batch: 'b-first', phase: 'locked', owner: 'alice@desk pid=42'});
    // Neither the temp script nor the owner file is left behind.
    expect(readdirSync(dir).filter((name) => name.startsWith('owner.') || name.startsWith('agent.sh.'))).toEqual([]);
  });

  it('reports a held lock with its holder, and leaves the first batch as it was', async () => {
    const error = await installAndBegin(localHost(), 'b-second', 60, 'bob@laptop pid=7').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LockHeldError);
    expect((error as LockHeldError).holder).toBe('alice@desk pid=42');
    expect(state()).toMatchObject({batch: 'b-first', phase: 'locked'});
  });

  it('takes an owner line with shell syntax or a line break as text, never as a command', async () => {
    const unlock = (batch: string): number | null =>
      spawnSync('ip', ['netns', 'exec', NETNS, 'env', `IW_STATE_DIR_OVERRIDE=${dir}`, 'dash', path.join(dir, 'agent.sh'), 'unlock', batch]).status;
    expect(unlock('b-first')).toBe(0);
    const host = localHost();
    const snapshot = await installAndBegin(host, 'b-third', 60, 'eve $(touch pwned) `id`\nsecond line');
    expect(snapshot.v4).toContain('-A INPUT -i lo -j ACCEPT');
    expect(state()).toMatchObject({batch: 'b-third', phase: 'locked', owner: 'eve touch pwned id second line'});
    expect(readFileSync(path.join(dir, 'agent.sh'), 'utf8')).toBe(AGENT_SCRIPT.endsWith('\n') ? AGENT_SCRIPT : `${AGENT_SCRIPT}\n`);
    expect(existsSync(path.join(dir, 'pwned'))).toBe(false);
    expect(existsSync('pwned')).toBe(false);
    expect(unlock('b-third')).toBe(0);
  });

  it('installs, locks and stages the planned rules in one command; a rejected candidate comes back with the batch still locked', async () => {
    const unlock = (batch: string): number | null =>
      spawnSync('ip', ['netns', 'exec', NETNS, 'env', `IW_STATE_DIR_OVERRIDE=${dir}`, 'dash', path.join(dir, 'agent.sh'), 'unlock', batch]).status;
    const planned = {v4Text: '*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n', v6Text: '*filter\n:INPUT DROP [0:0]\nCOMMIT\n'};
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
