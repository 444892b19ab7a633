// How a try is judged, and the fallback's fixed command: sshd's answers to a direct-tcpip
// request, the script run for real on this machine's loopback, and what probeFlows sends.
import {execFileSync} from 'node:child_process';
import {createServer} from 'node:net';
import {describe, expect, it} from 'vitest';
import {flowsToTry, summarizeResults, type Flow} from '../../source/core/flows.js';
import {judgeOpenFailure} from '../../source/remote/connection.js';
import {FALLBACK_SCRIPT, probeFlows, probePlan, TRY_ALL_UP_TO} from '../../source/remote/probe.js';
import {planOf, sizedInventory} from './support/sized-fleet.js';
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

describe('probeFlows: how many at once', () => {
  it('the flows planned open and those planned closed each keep to their own bound, side by side; results in the flows\' order', async () => {
    const inFlight = {open: 0, closed: 0};
    const most = {open: 0, closed: 0};
    const flows: Flow[] = Array.from({length: 30}, (_, index) => ({...FLOW('app', `10.0.0.${index + 1}`, 80), expect: index % 3 === 0 ? 'open' : 'closed'}));
    const expectOf = new Map(flows.map((flow) => [flow.address, flow.expect]));
    const connector = fakeConnector(() => ({outcome: 'untested', detail: 'unused'}), []);
    const slow: Connector = {
      ...connector,
      async connect(target) {
        const remote = await connector.connect(target);
        return {
          ...remote,
          openTcp: async (address) => {
            const kind = expectOf.get(address) as 'open' | 'closed';
            inFlight[kind] += 1;
            most[kind] = Math.max(most[kind], inFlight[kind]);
            await new Promise((resolve) => setTimeout(resolve, 5));
            inFlight[kind] -= 1;
            return {outcome: kind === 'open' ? 'open' : 'dropped', detail: address};
          },
        };
      },
    };
    const results = await probeFlows({connector: slow, targets: new Map([['app', {name: 'app', ssh: 'app'}]]), flows, concurrency: 2, closedConcurrency: 7});
    expect(most).toEqual({open: 2, closed: 7});
    expect(results.map((result) => result.detail)).toEqual(flows.map((flow) => flow.address));
  });
});

/** A connector whose every try answers as planned, counting the tries. */
function asPlannedConnector(tried: Flow[]): Connector {
  return {
    async connect(target) {
      return {
        name: target.name,
        route: 'fake',
        exec: async () => ({code: 0, stdout: '', stderr: ''}),
        openTcp: async (address, port) => {
          tried.push({from: target.name, address, port} as Flow);
          return {outcome: 'open', detail: 'handshake completed'};
        },
        close: async () => undefined,
      };
    },
    closeAll: async () => undefined,
  };
}

describe('probePlan', () => {
  // No public side: the operator's own tries would connect for real from here.
  const inventory = sizedInventory(40, {privateOnly: true});
  const plan = planOf(inventory);
  const targets = inventory.hosts.map((host) => ({name: host.name, ssh: host.ssh}));
  const everyHost = new Set(inventory.hosts.map((host) => host.name));

  it('on 40 servers tries a sample and says of how many; every host is tried as a source and as a destination', async () => {
    const planned = flowsToTry(plan.hosts, plan.access, {destinationsOnly: true});
    const tried: Flow[] = [];
    const check = await probePlan(plan, asPlannedConnector(tried), targets, everyHost, {destinationsOnly: true, operatorAddresses: []});
    expect(check.planned).toBe(planned.length);
    expect(check.results.length).toBeLessThan(planned.length / 4);
    expect(check.results.every((result) => result.flow.from !== 'operator')).toBe(true);
    expect(new Set(check.results.map((result) => result.flow.to))).toEqual(everyHost);
    expect(new Set(check.results.map((result) => result.flow.from))).toEqual(everyHost);
    expect(tried.length).toBe(check.results.length);
    expect(summarizeResults(check)).toMatch(new RegExp(`^${check.results.length} of ${planned.length} flows tried \\(a sample, every host covered\\): `));
  }, 60_000);

  it('all: every flow of the plan', async () => {
    const tried: Flow[] = [];
    const check = await probePlan(plan, asPlannedConnector(tried), targets, new Set(['db-39']), {destinationsOnly: true, all: true});
    expect(check.results.length).toBe(check.planned);
    expect(summarizeResults(check)).toMatch(new RegExp(`^${check.planned} flows tried: `));
  }, 60_000);

  it('a few flows (up to TRY_ALL_UP_TO) are all tried', async () => {
    const small = planOf(sizedInventory(6, {privateOnly: true}));
    const selected = new Set(small.hosts.map((host) => host.name));
    const planned = flowsToTry(small.hosts, small.access, {destinationsOnly: true});
    expect(planned.length).toBeLessThanOrEqual(TRY_ALL_UP_TO);
    const check = await probePlan(small, asPlannedConnector([]), small.inventory.hosts.map((host) => ({name: host.name, ssh: host.ssh})), selected, {destinationsOnly: true});
    expect(check.results.map((result) => result.flow)).toEqual(planned);
  }, 60_000);
});
