// Live reachability: each flow tried for real from its real source. From a server, its own sshd
// opens the connection (a direct-tcpip channel: no command runs); where sshd forbids that, one
// fixed script reads "address port" lines on stdin. From the operator's machine, a plain connect.
// A completed handshake or a refusal proves the packet passed every firewall; silence, a drop.
import net from 'node:net';
import {performance} from 'node:perf_hooks';
import {canonicalAddress} from '../core/addresses.js';
import {hostKinds, sampleFlows} from '../core/flow-sample.js';
import {flowsToTry, OPERATOR, type Flow, type FlowOptions, type FlowResult, type LiveCheck} from '../core/flows.js';
import type {Plan} from '../core/plan.js';
import {mapLimit} from './fleet-apply.js';
import type {Connector, HostTarget, RemoteHost, TcpTry} from './types.js';

/** About 2 s per try: a SYN that gets no answer in that time on a private network was dropped. */
export const TRY_TIMEOUT_MS = 2000;
/** Tries at once of flows planned open: each opens a channel through its source's sshd. */
export const TRY_CONCURRENCY = 64;
/**
 * Tries at once of flows planned closed: each waits out TRY_TIMEOUT_MS (on a server, an idle
 * channel), so the closed samples of a large fleet (four per host) take about one timeout.
 */
export const CLOSED_TRY_CONCURRENCY = 256;
/** Past this many flows the plan's flows are sampled (source/core/flow-sample.ts), every host still covered. */
export const TRY_ALL_UP_TO = 200;

/**
 * The fallback when sshd refuses direct-tcpip: a constant, fed "address port" lines on stdin,
 * every value checked again here (digits, hex, dots and colons only) and passed to bash as
 * arguments, never as code. Prints "address port status message" per line.
 */
export const FALLBACK_SCRIPT = [
  "command -v bash >/dev/null 2>&1 || { echo 'missing bash'; exit 0; }",
  "command -v timeout >/dev/null 2>&1 || { echo 'missing timeout'; exit 0; }",
  'while read -r address port; do',
  "  case $address in ''|*[!0-9a-fA-F.:]*) continue ;; esac",
  "  case $port in ''|*[!0-9]*) continue ;; esac",
  '  (',
  "    message=$(timeout 2 bash -c 'exec 3<>\"/dev/tcp/$0/$1\"' \"$address\" \"$port\" 2>&1)",
  '    status=$?',
  '    message=$(printf %s "$message" | tr "\\n" " ")',
  '    printf "%s %s %s %s\\n" "$address" "$port" "$status" "$message"',
  '  ) &',
  'done',
  'wait',
].join('\n');

export interface ProbeOptions {
  readonly connector: Connector;
  /** Every fleet host a flow may start from, by inventory name. */
  readonly targets: ReadonlyMap<string, HostTarget>;
  readonly flows: readonly Flow[];
  readonly timeoutMs?: number;
  /** Tries at once of flows planned open (default TRY_CONCURRENCY). */
  readonly concurrency?: number;
  /** Tries at once of flows planned closed (default CLOSED_TRY_CONCURRENCY). */
  readonly closedConcurrency?: number;
}

/** Tries every flow once; never rejects (a host that cannot be reached leaves its flows untested). */
export async function probeFlows(options: ProbeOptions): Promise<FlowResult[]> {
  const timeoutMs = options.timeoutMs ?? TRY_TIMEOUT_MS;
  const remotes = new Map<string, Promise<RemoteHost>>();
  const remoteOf = (name: string): Promise<RemoteHost> => {
    let remote = remotes.get(name);
    if (!remote) {
      const target = options.targets.get(name);
      remote = target ? options.connector.connect(target) : Promise.reject(new Error(`${name} is not in the inventory`));
      remote.catch(() => undefined);
      remotes.set(name, remote);
    }
    return remote;
  };
  // Connections first, all at once: a try never holds a slot while a handshake runs.
  for (const flow of options.flows) if (flow.from !== OPERATOR) void remoteOf(flow.from);

  type Tried = FlowResult & {prohibited?: boolean};
  const tryOne = async (flow: Flow): Promise<Tried> => {
    if (flow.from === OPERATOR) return {flow, ...(await connectFromHere(flow.address, flow.port, timeoutMs)), triedFrom: 'this machine'};
    let remote: RemoteHost;
    try {
      remote = await remoteOf(flow.from);
    } catch (error) {
      return {flow, live: 'untested', detail: `cannot reach ${flow.from}: ${messageOf(error)}`, triedFrom: flow.from};
    }
    if (!remote.openTcp) return {flow, live: 'untested', detail: 'this connection cannot open TCP channels', triedFrom: flow.from, prohibited: true};
    const tried = await remote.openTcp(flow.address, flow.port, timeoutMs);
    return {flow, live: tried.outcome, detail: tried.detail, triedFrom: `${flow.from}'s sshd`, ...(/sshd refuses/.test(tried.detail) ? {prohibited: true} : {})};
  };
  // Two queues side by side: the flows expected to answer (each costs its source's sshd a
  // channel), and those expected to be dropped (each only waits out the timeout).
  const settled: Awaited<ReturnType<typeof mapLimit<number, Tried>>> = [];
  await Promise.all(
    (['open', 'closed'] as const).map(async (expect) => {
      const indexes = options.flows.flatMap((flow, index) => (flow.expect === expect ? [index] : []));
      const limit = expect === 'open' ? (options.concurrency ?? TRY_CONCURRENCY) : (options.closedConcurrency ?? CLOSED_TRY_CONCURRENCY);
      const done = await mapLimit(indexes, limit, (index) => tryOne(options.flows[index] as Flow));
      indexes.forEach((index, position) => (settled[index] = done[position] as (typeof done)[number]));
    }),
  );
  const results = settled.map((result, index): Tried =>
    result.ok ? result.value : {flow: options.flows[index] as Flow, live: 'untested', detail: messageOf(result.error), triedFrom: '?'},
  );

  // sshd forbids forwarding on some hosts: their flows again, through the fixed script.
  const refusedBy = new Map<string, number[]>();
  results.forEach((result, index) => {
    if (!result.prohibited) return;
    const list = refusedBy.get(result.flow.from);
    if (list) list.push(index);
    else refusedBy.set(result.flow.from, [index]);
  });
  await Promise.all(
    [...refusedBy].map(async ([name, indexes]) => {
      const flows = indexes.map((index) => (results[index] as FlowResult).flow);
      const answers = await tryWithScript(await remoteOf(name), flows, timeoutMs).catch((error: unknown) => flows.map((): TcpTry => ({outcome: 'untested', detail: `fallback failed: ${messageOf(error)}`})));
      indexes.forEach((index, position) => {
        const before = results[index] as FlowResult;
        const answer = answers[position] as TcpTry;
        results[index] = answer.outcome === 'untested'
          ? {...before, prohibited: false, detail: `${before.detail}; ${answer.detail}`}
          : {flow: before.flow, live: answer.outcome, detail: answer.detail, triedFrom: `${name} (fixed command)`};
      });
    }),
  );
  return results.map(({prohibited: _prohibited, ...result}) => result);
}

/**
 * The flows of the plan that concern `selected`, tried from their real sources: every one when
 * they are few (TRY_ALL_UP_TO) or `all`, else a sample that still covers every host. `destinationsOnly`:
 * the flows to them only (an apply to some hosts judges what it loaded, not other hosts' rules).
 */
export async function probePlan(
  plan: Plan,
  connector: Connector,
  targets: readonly HostTarget[],
  selected: ReadonlySet<string>,
  options: Pick<FlowOptions, 'destinationsOnly' | 'operatorAddresses'> & {readonly all?: boolean} = {},
): Promise<LiveCheck> {
  const {all: tryAll, ...flowOptions} = options;
  const everyHost = selected.size === plan.hosts.length;
  const planned = flowsToTry(plan.hosts, plan.access, {...flowOptions, ...(everyHost ? {} : {hosts: selected})});
  const flows = tryAll === true || planned.length <= TRY_ALL_UP_TO ? planned : sampleFlows(planned, hostKinds(plan.inventory.hosts));
  const started = performance.now();
  const results = await probeFlows({connector, targets: new Map(targets.map((target) => [target.name, target])), flows});
  // IW_TIMING=1 (as connection.ts's lines): where an apply's time goes.
  if (process.env['IW_TIMING'] === '1') process.stderr.write(`[timing] ${started.toFixed(0).padStart(6)}..${performance.now().toFixed(0).padStart(6)} ms probes: ${flows.length} of ${planned.length} flows\n`);
  return {results, planned: planned.length};
}

/** The operator's own try (it plays the internet): a plain TCP connect. */
export function connectFromHere(address: string, port: number, timeoutMs: number): Promise<Omit<FlowResult, 'flow' | 'triedFrom'>> {
  return new Promise((resolvePromise) => {
    const socket = net.connect({host: address, port});
    let settled = false;
    const finish = (live: FlowResult['live'], detail: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolvePromise({live, detail});
    };
    const timer = setTimeout(() => finish('dropped', `no answer within ${timeoutMs / 1000} s`), timeoutMs);
    socket.once('connect', () => finish('open', 'handshake completed'));
    socket.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED' || error.code === 'ECONNRESET') finish('open', 'refused (no listener; the firewalls let it through)');
      else if (error.code === 'EHOSTUNREACH' || error.code === 'ETIMEDOUT') finish('dropped', `rejected (${error.code})`);
      else finish('untested', `this machine cannot try it (${error.code ?? error.message})`);
    });
  });
}

/** The fallback: every flow from one host through FALLBACK_SCRIPT, values checked before sending. */
async function tryWithScript(remote: RemoteHost, flows: readonly Flow[], timeoutMs: number): Promise<TcpTry[]> {
  const lines: string[] = [];
  for (const flow of flows) {
    if (canonicalAddress(flow.address) !== flow.address || !Number.isInteger(flow.port) || flow.port < 1 || flow.port > 65535) {
      throw new Error(`refusing to send ${flow.address} port ${flow.port}: not a plain address and port`);
    }
    lines.push(`${flow.address} ${flow.port}\n`);
  }
  const result = await remote.exec(FALLBACK_SCRIPT, {stdin: lines.join(''), timeoutMs: timeoutMs + 8000});
  const missing = /^missing (\S+)/m.exec(result.stdout);
  if (missing) return flows.map(() => ({outcome: 'untested', detail: `no ${missing[1]} on the server for the fallback`}));
  const answers = new Map<string, TcpTry>();
  for (const line of result.stdout.split('\n')) {
    const match = /^(\S+) (\d+) (\d+) ?(.*)$/.exec(line);
    if (!match) continue;
    const [, address, port, status, message = ''] = match;
    answers.set(`${address} ${port}`, judgeScriptAnswer(Number(status), message));
  }
  return flows.map((flow) => answers.get(`${flow.address} ${flow.port}`) ?? {outcome: 'untested', detail: 'the fallback gave no answer'});
}

function judgeScriptAnswer(status: number, message: string): TcpTry {
  if (status === 0) return {outcome: 'open', detail: 'handshake completed'};
  if (status === 124) return {outcome: 'dropped', detail: 'no answer within 2 s'};
  if (/refused/i.test(message)) return {outcome: 'open', detail: 'refused (no listener; the firewalls let it through)'};
  if (/no route to host/i.test(message)) return {outcome: 'dropped', detail: 'rejected (no route to host)'};
  return {outcome: 'untested', detail: message.trim() || `exit ${status}`};
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
