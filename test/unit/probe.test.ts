// How a try is judged, and the fallback's fixed command: sshd's answers to a direct-tcpip
// request, the script run for real on this machine's loopback, and what probeFlows sends.
import {execFileSync} from 'node:child_process';
import {createServer} from 'node:net';
import {describe, expect, it} from 'vitest';
import type {Flow} from '../../source/core/flows.js';
import {judgeOpenFailure} from '../../source/remote/connection.js';
import {FALLBACK_SCRIPT, probeFlows} from '../../source/remote/probe.js';
import type {Connector, ExecOptions, ExecResult, RemoteHost, TcpTry} from '../../source/remote/types.js';

const failure = (description: string, reason: number): Error & {reason: number} =>
  Object.assign(new Error(`(SSH) Channel open failure: ${description}`), {reason});

describe('judgeOpenFailure (sshd could not open the channel)', () => {
  it('a refusal means the packet passed every firewall; a rejection or a timeout, that it did not', () => {
    expect(judgeOpenFailure(failure('Connection refused', 2)).outcome).toBe('open');
    expect(judgeOpenFailure(failure('No route to host', 2)).outcome).toBe('dropped');
    expect(judgeOpenFailure(failure('Connection timed out', 2)).outcome).toBe('dropped');
  });
  it('forwarding forbidden or another failure: untested, with the reason', () => {
    const prohibited = judgeOpenFailure(failure('open failed', 1));
    expect(prohibited.outcome).toBe('untested');
    expect(prohibited.detail).toMatch(/sshd refuses/);
    expect(judgeOpenFailure(failure('Network is unreachable', 2)).outcome).toBe('untested');
  });
});

function runScript(input: string): string {
  return execFileSync('sh', ['-c', FALLBACK_SCRIPT], {input, encoding: 'utf8'});
}

describe('the fallback script', () => {
  it('reports a handshake and a refusal on this machine\'s loopback', async () => {
    const server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as {port: number}).port;
    try {
      const output = runScript(`127.0.0.1 ${port}\n127.0.0.1 1\n`);
      expect(output).toMatch(new RegExp(`^127\\.0\\.0\\.1 ${port} 0 `, 'm'));
      expect(output).toMatch(/^127\.0\.0\.1 1 1 .*refused/im);
    } finally {
      server.close();
    }
  });

  it('skips any line that is not a plain address and port (data is never code)', () => {
    const output = runScript('127.0.0.1;id 22\n$(id) 22\n127.0.0.1 2$(id)\n');
    expect(output).toBe('');
  });
});

const FLOW = (from: string, address: string, port: number): Flow => ({from, planSource: from, to: 'db', address, family: 4, port, expect: 'closed'});

function fakeConnector(tries: (address: string, port: number) => TcpTry, commands: {command: string; stdin: string}[]): Connector {
  return {
    async connect(target) {
      const remote: RemoteHost = {
        name: target.name,
        route: 'fake',
        async exec(command: string, options?: ExecOptions): Promise<ExecResult> {
          const stdin = String(options?.stdin ?? '');
          commands.push({command, stdin});
          const stdout = stdin.split('\n').filter(Boolean).map((line) => `${line} 124 `).join('\n');
          return {code: 0, stdout: `${stdout}\n`, stderr: ''};
        },
        openTcp: async (address, port) => tries(address, port),
        close: async () => undefined,
      };
      return remote;
    },
    closeAll: async () => undefined,
  };
}

describe('probeFlows', () => {
  it('tries each flow over its source\'s sshd; where sshd forbids it, sends the fixed script with the flows on stdin', async () => {
    const commands: {command: string; stdin: string}[] = [];
    const connector = fakeConnector(
      (address) => (address === '10.0.0.2' ? {outcome: 'untested', detail: 'sshd refuses to open connections (open failed)'} : {outcome: 'open', detail: 'handshake completed'}),
      commands,
    );
    const results = await probeFlows({
      connector,
      targets: new Map([['app', {name: 'app', ssh: 'app'}]]),
      flows: [FLOW('app', '10.0.0.1', 80), FLOW('app', '10.0.0.2', 3306), FLOW('app', '10.0.0.2', 22)],
    });
    expect(results.map((result) => [result.live, result.triedFrom])).toEqual([
      ['open', "app's sshd"],
      ['dropped', 'app (fixed command)'],
      ['dropped', 'app (fixed command)'],
    ]);
    expect(commands).toEqual([{command: FALLBACK_SCRIPT, stdin: '10.0.0.2 3306\n10.0.0.2 22\n'}]);
  });

  it('never sends an address that is not a plain canonical address: those flows stay untested', async () => {
    const commands: {command: string; stdin: string}[] = [];
    const connector = fakeConnector(() => ({outcome: 'untested', detail: 'sshd refuses to open connections (open failed)'}), commands);
    const results = await probeFlows({connector, targets: new Map([['app', {name: 'app', ssh: 'app'}]]), flows: [FLOW('app', '10.0.0.2;id', 22)]});
    expect(commands).toEqual([]);
    expect(results[0]?.live).toBe('untested');
  });

  it('a source it cannot reach leaves its flows untested, with the reason', async () => {
    const results = await probeFlows({connector: fakeConnector(() => ({outcome: 'open', detail: ''}), []), targets: new Map(), flows: [FLOW('ghost', '10.0.0.1', 80)]});
    expect(results[0]?.live).toBe('untested');
    expect(results[0]?.detail).toMatch(/ghost is not in the inventory/);
  });
});
