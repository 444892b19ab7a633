import {Writable} from 'node:stream';
import {describe, expect, it} from 'vitest';
import {printOutcomes, stderrProgress} from '../../source/commands/apply.js';
import type {CliIo} from '../../source/commands/command.js';
import type {HostSync} from '../../source/core/drift.js';
import {alignedRows, COMPACT_ABOVE, compactDiscovery, compactOutcomes, compactStatus, summaryLine} from '../../source/commands/fleet-output.js';
import type {HostDiscovery} from '../../source/core/discovery/index.js';
import type {AgentStatus} from '../../source/remote/apply-protocol.js';
import type {HostOutcome} from '../../source/remote/fleet-apply.js';

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

function capture(): {io: CliIo; stdout: Capture; stderr: Capture} {
  const stdout = new Capture();
  const stderr = new Capture();
  return {io: {stdout, stderr, env: {}, cwd: '/', isTTY: false}, stdout, stderr};
}

const name = (index: number) => `host-${String(index).padStart(3, '0')}`;
const outcomes = (count: number, failed: readonly number[] = []): HostOutcome[] =>
  Array.from({length: count}, (_, index) =>
    failed.includes(index) ? {host: name(index), ok: false, detail: 'connection refused by 10.132.0.9:22'} : {host: name(index), ok: true, detail: 'confirmed; persisted in /etc/iptables/rules.v4, rules.v6'},
  );

describe('summaryLine and alignedRows', () => {
  it('counts outcomes in the order first seen', () => {
    expect(summaryLine(['kept', 'kept', 'FAILED', 'kept'])).toBe('4 hosts: 3 kept, 1 FAILED');
    expect(summaryLine(['pending'])).toBe('1 host: 1 pending');
  });

  it('aligns every column but the last', () => {
    expect(alignedRows([['a', 'kept', 'x'], ['host-10', 'FAILED', 'why']])).toEqual(['a        kept    x', 'host-10  FAILED  why']);
  });
});

describe('outcomes of apply --yes, confirm and rollback', () => {
  it('a small fleet keeps the full line per host', () => {
    const {io, stdout} = capture();
    expect(printOutcomes(io, 'kept', outcomes(6, [2]))).toBe(1);
    expect(stdout.text.split('\n')[2]).toBe('host-002: FAILED — connection refused by 10.132.0.9:22');
    expect(stdout.text).not.toMatch(/hosts:/);
  });

  it(`past ${COMPACT_ABOVE} hosts: one aligned line per host and the counts at the end`, () => {
    const {io, stdout} = capture();
    expect(printOutcomes(io, 'kept', outcomes(40, [7, 31]))).toBe(1);
    const lines = stdout.text.trimEnd().split('\n');
    expect(lines).toHaveLength(41);
    expect(lines[0]).toBe('host-000  kept    confirmed; persisted in /etc/iptables/rules.v4, rules.v6');
    expect(lines[7]).toBe('host-007  FAILED  connection refused by 10.132.0.9:22');
    expect(lines[40]).toBe('40 hosts: 38 kept, 2 FAILED');
  });

  it('a confirm after the deadline is counted as already rolled back, not as kept', () => {
    const lines = compactOutcomes('kept', [...outcomes(21), {host: 'late', ok: false, expired: true, detail: 'deadline passed'}]);
    expect(lines.at(-1)).toBe('22 hosts: 21 kept, 1 already rolled back');
  });

  it('progress on stderr: every step for a small fleet, only failures for a large one', () => {
    const small = capture();
    const large = capture();
    for (const [io, hosts] of [[small.io, 6], [large.io, 40]] as const) {
      const progress = stderrProgress(io, hosts);
      progress({host: 'host-001', step: 'load', status: 'running'});
      progress({host: 'host-001', step: 'load', status: 'done'});
      progress({host: 'host-002', step: 'verify', status: 'failed', detail: 'new SSH session refused'});
    }
    expect(small.stderr.text.trimEnd().split('\n')).toHaveLength(2);
    expect(large.stderr.text).toBe('host-002       verify    failed  new SSH session refused\n');
  });
});

describe('status of a large fleet', () => {
  const status = (fields: Partial<AgentStatus>): AgentStatus => ({managed: true, pending: false, backups: 1, persistence: 'netfilter-persistent', ...fields}) as AgentStatus;
  it('one line per host by state, and the counts', () => {
    const lines = compactStatus([
      {host: 'db-1', status: status({batch: 'b-1', phase: 'confirmed', lastChange: new Date('2026-12-01T10:00:00Z')})},
      {host: 'app-1', status: status({batch: 'b-2', phase: 'loaded', pending: true, secondsLeft: 42})},
      {host: 'lb-1', status: status({managed: false})},
      {host: 'app-2', error: 'connection timed out'},
      {host: 'db-2', status: status({batch: 'b-1', phase: 'confirmed', persistence: 'none'})},
    ]);
    expect(lines).toEqual([
      'db-1   confirmed    batch b-1 since 2026-12-01 10:00 UTC',
      'app-1  PENDING      batch b-2 (loaded), rolls back in 42 s unless confirmed',
      'lb-1   not managed',
      'app-2  unreachable  connection timed out',
      'db-2   confirmed    batch b-1; no boot-time loader',
      '5 hosts: 2 confirmed, 1 PENDING, 1 not managed, 1 unreachable',
    ]);
  });

  it('with drift: in sync, DRIFTED with its words, drift unknown with why, counted', () => {
    const confirmed = status({batch: 'b-1', phase: 'confirmed'});
    const syncs = new Map<string, HostSync>([
      ['db-1', {host: 'db-1', state: 'in sync', changes: [], effects: []}],
      ['db-2', {host: 'db-2', state: 'drifted', changes: ['IPv4 rule added: -A INPUT -p tcp --dport 3306 -j ACCEPT'], effects: ['opens db-2 to the internet: tcp/3306 (IPv4 only, not confirmed)']}],
      ['db-3', {host: 'db-3', changes: [], effects: [], reason: 'cannot read the live rules'}],
    ]);
    const lines = compactStatus([{host: 'db-1', status: confirmed}, {host: 'db-2', status: confirmed}, {host: 'db-3', status: confirmed}], syncs);
    expect(lines).toEqual([
      'db-1  in sync        batch b-1 confirmed',
      'db-2  DRIFTED        drift: opens db-2 to the internet: tcp/3306 (IPv4 only, not confirmed); IPv4 rule added: -A INPUT -p tcp --dport 3306 -j ACCEPT',
      'db-3  drift unknown  cannot read the live rules',
      '3 hosts: 1 in sync, 1 DRIFTED, 1 drift unknown',
    ]);
  });
});

describe('discover of a large fleet', () => {
  const discovery = (host: string, warnings: string[] = []): HostDiscovery =>
    ({
      host,
      route: `root@${host}:22`,
      interfaces: [
        {name: 'eth0', side: 'public', cidrs: ['203.0.113.11/24', '2001:db8:100::11/64']},
        {name: 'eth1', side: 'private', cidrs: ['10.132.0.11/24']},
      ],
      listening: [
        {proto: 'tcp', port: 22},
        {proto: 'tcp', port: 80},
        {proto: 'tcp', port: 80},
        {proto: 'udp', port: 51820},
      ],
      suggestedRoles: [{role: 'lb', reason: 'listens on 80'}],
      warnings,
    }) as unknown as HostDiscovery;

  it('one line per host with its sides, ports and suggested roles; failures and warnings counted', () => {
    const lines = compactDiscovery([
      {host: 'lb-1', ok: true, discovery: discovery('lb-1', ['ufw is active'])},
      {host: 'db-1', ok: false, error: 'db-1: connection refused', refused: false},
    ]);
    expect(lines).toEqual([
      'lb-1  discovered  public eth0 203.0.113.11; private eth1 10.132.0.11; listening 22,80,udp/51820; suggests lb; 1 warning',
      'db-1  FAILED      db-1: connection refused',
      '2 hosts: 1 discovered, 1 FAILED; 1 with warnings (--json, or --host NAME, shows them)',
    ]);
  });
});
