// `npm run bench`: wall times of the things an operator waits for. Not a test: it prints figures.
//   1. `apply --yes` on one host and on the six-host seed fleet, then `verify` on the fleet, in the lab (real sshd, iptables,
//      the bastion hop), and their ratio (target: fleet <= 1.5 x one host);
//   2. `plan` on a generated 10,000-host inventory of small clusters with addresses given:
//      parse, buildPlan without and with the access summary (target: under 2 s), each run cold in
//      a fresh process on the built code, then the whole `isolate-wizard plan` command; and
//      the old all-to-all shape (quadratic by nature; no target).
// The lab part needs root. Each figure is run RUNS (apply: APPLY_RUNS) times; the median is printed.
// Where the machine has cgroup v1's cpuacct, the apply figures also say how much CPU each side
// used (the client, the bastion, the other servers): load elsewhere on the machine does not count.
//   3. start-up: `--version` against `node -e 0` (target <= 2.5 x), and the wizard's first frame
//      under a pseudo-terminal against a bare Ink app rendering one line (target <= 1.3 x); runs
//      alternate, STARTUP_RUNS of each, medians compared.
// BENCH_ONLY=plan runs part 2 alone (no lab); BENCH_ONLY=apply runs part 1 alone; BENCH_ONLY=startup
// part 3 alone (no lab).
// BENCH_ONLY=nft (no lab): compileNftTable for every host of the clustered 10,000-host inventory and
// of the 1,000-host all-to-all one (time, bytes and rule lines, against the iptables texts').
// BENCH_ONLY=flat10k (no lab): `isolate-wizard plan` on the flat 10,000-host fleet (built-in roles,
// every db admits every app server and every other db), per backend: wall time, output bytes, peak RSS.
// BENCH_ONLY=apply40 (not part of the default run: a lab of 40 servers): `apply --yes` on 40
// servers through the bastion against the six-host fleet in the same lab (target: within 3x), with
// the machine's load average, and, where ansible-playbook is installed (and BENCH_ANSIBLE is not 0),
// the exported playbook on both. BENCH_PAIRS sets the number of pairs (default 5); BENCH_BEFORE
// times another build in the same pairs.
import {spawnSync} from 'node:child_process';
import {closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {availableParallelism, loadavg, tmpdir} from 'node:os';
import path from 'node:path';
import {performance} from 'node:perf_hooks';
import pty from '@lydell/node-pty';
import {createLab, type Lab} from '../source/lab/lab.js';
import {FORTY_LAB, FORTY_NAMES, fortyInventory} from '../test/lab/support/forty-servers.js';

const RUNS = 3;
/** apply --yes pairs (one host, then the fleet); its medians move more from run to run than plan's. */
const APPLY_RUNS = Number(process.env['BENCH_PAIRS'] ?? 5);
const FLEET = ['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'];
const seedPath = path.join(import.meta.dirname, '..', 'fixtures', 'inventories', 'seed-with-addresses.json');
const CLI_ENTRY = path.join(import.meta.dirname, '..', 'bin', 'isolate-wizard.js');
/**
 * BENCH_BEFORE (apply40): the entry of another build (a copy of bin/ and dist/ made before a
 * change), timed in turn with this one in every pair, so both see the same load.
 */
const BEFORE_ENTRY = process.env['BENCH_BEFORE'];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

async function resetFleet(lab: Lab, names: readonly string[] = FLEET): Promise<void> {
  await Promise.all(
    names.map((name) =>
      lab.hosts.get(name)?.exec(['sh', '-c', 'rm -rf /var/lib/isolate-wizard/*; nft delete table ip filter; nft delete table ip6 filter; true']),
    ),
  );
}

const CPUACCT = '/sys/fs/cgroup/cpuacct';
const CPU_SIDES = ['client', 'bastion', 'servers'] as const;
type CpuSide = (typeof CPU_SIDES)[number];

/**
 * CPU time per side of a run, from cgroup v1 cpuacct groups made for the bench (each server's sshd
 * is moved in, and everything it starts follows; the CLI puts itself in). Undefined without cpuacct.
 */
function cpuAccounting(lab: Lab): {read(): Record<CpuSide, number>; wrap(argv: string[]): string[]; remove(): void} | undefined {
  if (!existsSync(path.join(CPUACCT, 'cpuacct.usage'))) return undefined;
  const group = (side: CpuSide): string => path.join(CPUACCT, `iw-bench-${process.pid}-${side}`);
  try {
    for (const side of CPU_SIDES) mkdirSync(group(side));
    for (const [name, host] of lab.hosts) writeFileSync(path.join(group(name === 'tunnel-1' ? 'bastion' : 'servers'), 'tasks'), String(host.pids.sshd));
  } catch {
    return undefined;
  }
  return {
    read: () => Object.fromEntries(CPU_SIDES.map((side) => [side, Number(readFileSync(path.join(group(side), 'cpuacct.usage'), 'utf8')) / 1e6])) as Record<CpuSide, number>,
    // The CLI joins the client group before it starts ($$ is the shell that then becomes node).
    wrap: (argv) => ['sh', '-c', `echo $$ > ${path.join(group('client'), 'tasks')} && exec "$@"`, 'sh', ...argv],
    // A group can go once its processes are gone (after the lab's teardown).
    remove: () => {
      for (const side of CPU_SIDES) {
        try {
          rmdirSync(group(side));
        } catch {
          // still in use: the next boot clears it
        }
      }
    },
  };
}

type Accounting = ReturnType<typeof cpuAccounting>;

interface ApplyRun {
  wall: number;
  cpu?: Record<CpuSide, number>;
}

/** One timed `apply --yes` on freshly reset servers. */
async function timeApplyOnce(lab: Lab, accounting: Accounting, inventory: string, hosts: string[], showTiming: boolean, reset: readonly string[] = FLEET, entry = CLI_ENTRY): Promise<ApplyRun> {
  await resetFleet(lab, reset);
  const argv = [process.execPath, entry, 'apply', '--inventory', inventory, '--yes', '--timeout', '120', ...hosts.flatMap((host) => ['--host', host])];
  const before = accounting?.read();
  const start = performance.now();
  // execOperator is what runCli uses (operator namespace, lab HOME, CI=false), here with the accounting wrapper.
  // A hung run ends here; under load the 40 took over 100 s before the nftables check was made cheap.
  const result = await lab.execOperator(accounting ? accounting.wrap(argv) : argv, {timeoutMs: 300_000});
  const wall = performance.now() - start;
  const after = accounting?.read();
  if (result.code !== 0) throw new Error(`apply ${hosts.join(',') || path.basename(inventory)} (${entry}) failed (${result.code}): ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  // IW_TIMING=1 reaches the CLI through the environment: show where the last run's time went.
  if (showTiming) console.log(`--- ${hosts.join(',') || path.basename(inventory)}: ${seconds(wall)}\n${result.stderr.trim()}`);
  if (!before || !after) return {wall};
  return {wall, cpu: Object.fromEntries(CPU_SIDES.map((side) => [side, after[side] - before[side]])) as Record<CpuSide, number>};
}

/** `CPU: client 0.71 s, bastion 0.07 s, servers 0.13 s (total 0.91 s)`, medians per side. */
function cpuLine(runs: readonly ApplyRun[]): string {
  const measured = runs.flatMap((run) => (run.cpu ? [run.cpu] : []));
  if (measured.length === 0) return '';
  const per = CPU_SIDES.map((side) => `${side} ${seconds(median(measured.map((cpu) => cpu[side])))}`);
  const total = median(measured.map((cpu) => CPU_SIDES.reduce((sum, side) => sum + cpu[side], 0)));
  return `; CPU used (median): ${per.join(', ')}, total ${seconds(total)}`;
}

/**
 * One host and the fleet, alternately (APPLY_RUNS pairs): this shared machine's speed drifts,
 * and both figures of the ratio should see the same drift.
 */
async function timeApplyPairs(lab: Lab, accounting: Accounting, inventory: string, one: string[]): Promise<{one: ApplyRun[]; fleet: ApplyRun[]}> {
  const runs = {one: [] as ApplyRun[], fleet: [] as ApplyRun[]};
  for (let run = 0; run < APPLY_RUNS; run += 1) {
    const last = process.env['IW_TIMING'] === '1' && run === APPLY_RUNS - 1;
    runs.one.push(await timeApplyOnce(lab, accounting, inventory, one, last));
    runs.fleet.push(await timeApplyOnce(lab, accounting, inventory, [], last));
  }
  return runs;
}

/** `verify` on the fleet as the last apply left it: the command's wall time and the tries' own (its summary line). */
async function timeVerify(lab: Lab, inventory: string): Promise<{wall: number[]; tries: number[]}> {
  const times = {wall: [] as number[], tries: [] as number[]};
  for (let run = 0; run < APPLY_RUNS; run += 1) {
    const start = performance.now();
    const result = await lab.execOperator([process.execPath, CLI_ENTRY, 'verify', '--inventory', inventory], {timeoutMs: 100_000});
    times.wall.push(performance.now() - start);
    const tries = /\(in (\d+\.\d) s\)\s*$/.exec(result.stdout);
    if (result.code !== 0 || !tries) throw new Error(`verify failed (${result.code}): ${result.stdout.trim().split('\n').slice(-3).join(' | ')}`);
    times.tries.push(Number(tries[1]) * 1000);
  }
  return times;
}

/** Public IPv4 in 198.19.0.0/16 (benchmark space, not private; 198.18.0.1 is the internet representative). */
function benchPublicV4(index: number): string {
  return `198.19.${Math.floor(index / 250)}.${(index % 250) + 1}`;
}

/**
 * The old all-to-all shape: 1 bastion, 1 lb, the rest split between the built-in app and db
 * roles, so every db host whitelists every app host (rules grow with hosts², kept as a figure).
 */
function allToAllInventory(count: number): string {
  const hosts = [];
  for (let index = 0; index < count; index += 1) {
    const role = index === 0 ? 'bastion' : index === 1 ? 'lb' : index % 3 === 0 ? 'db' : 'app';
    const a = Math.floor(index / 250);
    const b = (index % 250) + 1;
    hosts.push({
      name: `host-${index}`,
      ssh: index === 0 ? `root@${benchPublicV4(index)}` : `root@10.${a}.0.${b}`,
      ...(index === 0 ? {} : {jump: 'host-0'}),
      roles: [role],
      interfaces: {public: 'eth0', private: 'eth1'},
      addresses: {public: [benchPublicV4(index), `2001:db8:1::${(index + 1).toString(16)}`], private: [`10.${a}.0.${b}`, `fd00::${(index + 1).toString(16)}`]},
    });
  }
  return JSON.stringify({hosts});
}

/** Hosts per cluster: 1 lb, 6 app, 3 db. */
const CLUSTER_SHAPE = ['lb', 'app', 'app', 'app', 'app', 'app', 'app', 'db', 'db', 'db'] as const;

/**
 * A realistic large fleet: 2 bastions for all, then clusters of ~10 hosts, each with its own
 * roles (`lb-cN` from the internet, `app-cN` 80/443 from `lb-cN`, `db-cN` 3306 from `app-cN`
 * with peers 3306). Each cluster has its own private /24 and /64; every address is given.
 */
function clusteredInventory(count: number): string {
  const roles: Record<string, object> = {};
  const hosts: object[] = [];
  const host = (index: number, name: string, role: string, privateV4: string, privateV6: string, jump?: string): void => {
    hosts.push({
      name,
      ssh: jump === undefined ? `root@${benchPublicV4(index)}` : `root@${privateV4}`,
      ...(jump === undefined ? {} : {jump}),
      roles: [role],
      interfaces: {public: 'eth0', private: 'eth1'},
      addresses: {public: [benchPublicV4(index), `2001:db8:1::${(index + 1).toString(16)}`], private: [privateV4, privateV6]},
    });
  };
  host(0, 'bastion-1', 'bastion', '10.255.255.1', 'fd00:0:0:ffff::1');
  host(1, 'bastion-2', 'bastion', '10.255.255.2', 'fd00:0:0:ffff::2');
  for (let index = 2; index < count; index += 1) {
    const cluster = Math.floor((index - 2) / CLUSTER_SHAPE.length);
    const position = (index - 2) % CLUSTER_SHAPE.length;
    const kind = CLUSTER_SHAPE[position] as (typeof CLUSTER_SHAPE)[number];
    if (position === 0) {
      roles[`lb-c${cluster}`] = {accept: [{ports: [80, 443], from: 'internet'}]};
      roles[`app-c${cluster}`] = {accept: [{ports: [80, 443], from: `lb-c${cluster}`}]};
      roles[`db-c${cluster}`] = {accept: [{ports: [3306], from: `app-c${cluster}`}], peers: [3306]};
    }
    const privateV4 = `10.${Math.floor(cluster / 256)}.${cluster % 256}.${position + 1}`;
    const privateV6 = `fd00:0:0:${cluster.toString(16)}::${position + 1}`;
    host(index, `c${cluster}-${kind}-${position}`, `${kind}-c${cluster}`, privateV4, privateV6, index % 2 === 0 ? 'bastion-1' : 'bastion-2');
  }
  return JSON.stringify({roles, hosts});
}

/** The flat fleet's shape: bastions, load balancers, app servers, the rest databases (built-in roles). */
const FLAT_SHAPE = {bastion: 10, lb: 50, app: 4000} as const;

/**
 * The flat fleet written the plain way (issue 12): built-in roles only, so every db admits every
 * app server and every other db, every app every lb, every host every bastion. Every host has a
 * public and a private interface with IPv4 and IPv6 addresses. `count` hosts: the shape's
 * bastions, lbs and app servers (scaled down below 10,000), the rest databases.
 */
function flatInventory(count: number): string {
  const scale = Math.min(1, count / 10_000);
  const bastions = Math.max(1, Math.round(FLAT_SHAPE.bastion * scale));
  const lbs = Math.max(1, Math.round(FLAT_SHAPE.lb * scale));
  const apps = Math.max(1, Math.round(FLAT_SHAPE.app * scale));
  const hosts: object[] = [];
  for (let index = 0; index < count; index += 1) {
    const role = index < bastions ? 'bastion' : index < bastions + lbs ? 'lb' : index < bastions + lbs + apps ? 'app' : 'db';
    const privateV4 = `10.${Math.floor(index / 65536)}.${Math.floor(index / 256) % 256}.${index % 256}`;
    hosts.push({
      name: `${role}-${index}`,
      ssh: role === 'bastion' ? `root@${benchPublicV4(index)}` : `root@${privateV4}`,
      ...(role === 'bastion' ? {} : {jump: `bastion-${index % bastions}`}),
      roles: [role],
      interfaces: {public: 'eth0', private: 'eth1'},
      addresses: {public: [benchPublicV4(index), `2001:db8:1::${(index + 1).toString(16)}`], private: [privateV4, `fd00::${(index + 1).toString(16)}`]},
    });
  }
  return JSON.stringify({hosts});
}

interface CommandFigures {
  wall: number;
  /** Bytes written to stdout. */
  bytes: number;
  /** Peak resident set, bytes (GNU time's "Maximum resident set size"). */
  maxRss: number;
  /** CPU time, user + system, ms: steadier than the wall time on a shared machine. */
  cpu: number;
  /** Exit status, or the reason it did not finish. */
  status: string;
}

/** `isolate-wizard plan` on an inventory, as an operator runs it (stdout to a file), under GNU time. */
function timeFlatPlan(file: string, backend: string, timeoutMs: number): CommandFigures {
  const out = `${file}.out`;
  const timeLog = `${file}.time`;
  const fd = openSync(out, 'w');
  const start = performance.now();
  const child = spawnSync('/usr/bin/time', ['-v', '-o', timeLog, process.execPath, CLI_ENTRY, 'plan', '--inventory', file, '--backend', backend], {
    stdio: ['ignore', fd, 'pipe'],
    env: {...process.env, CI: 'false'},
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
  });
  const wall = performance.now() - start;
  closeSync(fd);
  const log = existsSync(timeLog) ? readFileSync(timeLog, 'utf8') : '';
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(log);
  const cpu = ['User', 'System'].reduce((sum, kind) => sum + Number(new RegExp(`${kind} time \\(seconds\\): ([\\d.]+)`).exec(log)?.[1] ?? Number.NaN) * 1000, 0);
  const status = child.error ? `did not finish in ${seconds(timeoutMs)}` : child.status === 0 ? 'ok' : `exit ${child.status}: ${child.stderr.toString().trim().split('\n').slice(-1)[0] ?? ''}`;
  const figures = {wall, bytes: statSync(out).size, maxRss: rss ? Number(rss[1]) * 1024 : Number.NaN, cpu, status};
  rmSync(out, {force: true});
  rmSync(timeLog, {force: true});
  return figures;
}

/**
 * The flat 10,000-host fleet (issue 12, point 8): `plan` end to end on each backend (targets on
 * nftables: under 2 s, output under 60 MB, peak memory under 1 GB). FLAT_HOSTS overrides the size
 * (smaller fleets show how the figures grow); FLAT_TIMEOUT (seconds, default 120) bounds each run.
 */
function flatBench(): void {
  const count = Number(process.env['FLAT_HOSTS'] ?? 10_000);
  const timeoutMs = Number(process.env['FLAT_TIMEOUT'] ?? 120) * 1000;
  const dir = mkdtempSync(path.join(tmpdir(), 'iw-bench-'));
  try {
    const file = path.join(dir, 'flat.json');
    writeFileSync(file, flatInventory(count));
    console.log(`machine load before: ${readFileSync('/proc/loadavg', 'utf8').trim()} (${availableParallelism()} CPUs)`);
    for (const backend of ['nftables', 'iptables']) {
      const runs = Array.from({length: backend === 'nftables' ? RUNS : 1}, () => timeFlatPlan(file, backend, timeoutMs));
      const ok = runs.filter((run) => run.status === 'ok');
      const figures = ok.length > 0 ? ok : runs;
      console.log(
        `${count.toLocaleString('en')}-host flat fleet, isolate-wizard plan --backend ${backend} (cold; ${runs.length === 1 ? 'one run' : `median of ${runs.length}`}): ` +
          `${seconds(median(figures.map((run) => run.wall)))} (runs ${runs.map((run) => seconds(run.wall)).join(', ')}), CPU ${seconds(median(figures.map((run) => run.cpu)))}, ` +
          `output ${(median(figures.map((run) => run.bytes)) / 1e6).toFixed(1)} MB, peak RSS ${(median(figures.map((run) => run.maxRss)) / 1e6).toFixed(0)} MB` +
          `${backend === 'nftables' ? ' (targets: < 2 s, < 60 MB, < 1 GB)' : ''}; ${runs.map((run) => run.status).join(', ')}`,
      );
    }
    console.log(`machine load after: ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
}

interface PlanFigures {
  /** Read and validate the inventory. */
  parse: number;
  /** buildPlan: compile, SSH path check and (with access) the access summary. */
  plan: number;
}

/** One cold run in a fresh process (scripts/plan-figures.mjs) on the built code. */
function timePlan(file: string, withAccess: boolean): PlanFigures {
  const child = spawnSync(process.execPath, [path.join(import.meta.dirname, 'plan-figures.mjs'), file, withAccess ? 'access' : 'no-access'], {encoding: 'utf8', maxBuffer: 1 << 20});
  if (child.status !== 0) throw new Error(`plan-figures failed: ${child.stderr.trim()}`);
  return JSON.parse(child.stdout) as PlanFigures;
}

/** The whole command as an operator runs it: node start, parse, plan, rendering 20,000 rulesets to /dev/null. */
function timePlanCommand(file: string): number {
  const start = performance.now();
  const child = spawnSync(process.execPath, [CLI_ENTRY, 'plan', '--inventory', file], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {...process.env, CI: 'false'},
  });
  if (child.status !== 0) throw new Error(`isolate-wizard plan failed (${child.status}): ${child.stderr.toString().trim().split('\n').slice(-2).join(' | ')}`);
  return performance.now() - start;
}

/** Medians over RUNS cold runs, each figure on its own. */
function medianPlan(file: string, withAccess: boolean): PlanFigures & {runs: PlanFigures[]} {
  const runs = Array.from({length: RUNS}, () => timePlan(file, withAccess));
  return {parse: median(runs.map((figures) => figures.parse)), plan: median(runs.map((figures) => figures.plan)), runs};
}

/** The plan figures: the clustered 10,000-host fleet (target), then the old quadratic shape. */
function planBench(): void {
  const dir = mkdtempSync(path.join(tmpdir(), 'iw-bench-'));
  try {
    const clusteredFile = path.join(dir, 'clustered.json');
    writeFileSync(clusteredFile, clusteredInventory(CLUSTERED_HOSTS));
    const withoutAccess = medianPlan(clusteredFile, false);
    const clustered = medianPlan(clusteredFile, true);
    const total = median(clustered.runs.map((figures) => figures.parse + figures.plan));
    console.log(
      `${CLUSTERED_HOSTS.toLocaleString('en')}-host clustered inventory (cold, fresh process per run, median of ${RUNS}): ` +
        `parse+validate ${seconds(clustered.parse)}, plan without access ${seconds(withoutAccess.plan)}, ` +
        `plan with access ${seconds(clustered.plan)}, parse + plan with access ${seconds(total)} (target < 2 s; runs ${clustered.runs.map((run) => seconds(run.parse + run.plan)).join(', ')})`,
    );
    const command = Array.from({length: RUNS}, () => timePlanCommand(clusteredFile));
    console.log(`isolate-wizard plan on it, end to end (node start to ~40 MB of rulesets and access written to /dev/null): median ${seconds(median(command))} of ${command.map(seconds).join(', ')}`);
    // The access summary of the all-to-all shape walks hosts² pairs through rulesets of ~hosts
    // rules each, so it is timed on a smaller fleet.
    for (const [count, withAccess] of ALL_TO_ALL) {
      const file = path.join(dir, `all-to-all-${count}.json`);
      writeFileSync(file, allToAllInventory(count));
      const quadratic = medianPlan(file, withAccess);
      console.log(
        `${count.toLocaleString('en')}-host all-to-all inventory (every db whitelists every app; grows with hosts², no target, median of ${RUNS}): ` +
          `parse+validate ${seconds(quadratic.parse)}, plan ${withAccess ? 'with' : 'without'} access ${seconds(quadratic.plan)}`,
      );
    }
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
}

interface NftFigures {
  hosts: number;
  /** compileNftTable over every host, ms. */
  nft: number;
  nftBytes: number;
  nftRules: number;
  iptablesBytes: number;
  iptablesRules: number;
}

/** The nftables tables of the clustered 10,000-host fleet and of the 1,000-host all-to-all one, each run cold in a fresh process. */
function nftBench(): void {
  const dir = mkdtempSync(path.join(tmpdir(), 'iw-bench-'));
  try {
    for (const [label, text] of [
      [`${CLUSTERED_HOSTS.toLocaleString('en')}-host clustered`, clusteredInventory(CLUSTERED_HOSTS)],
      ['1,000-host all-to-all', allToAllInventory(1000)],
    ] as const) {
      const file = path.join(dir, 'inventory.json');
      writeFileSync(file, text);
      const runs = Array.from({length: RUNS}, () => {
        const child = spawnSync(process.execPath, [path.join(import.meta.dirname, 'nft-figures.mjs'), file], {encoding: 'utf8', maxBuffer: 1 << 20});
        if (child.status !== 0) throw new Error(`nft-figures failed: ${child.stderr.trim()}`);
        return JSON.parse(child.stdout) as NftFigures;
      });
      const first = runs[0] as NftFigures;
      const megabytes = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;
      console.log(
        `${label} inventory, compileNftTable for all ${first.hosts.toLocaleString('en')} hosts (cold, median of ${RUNS}): ${seconds(median(runs.map((run) => run.nft)))} ` +
          `(runs ${runs.map((run) => seconds(run.nft)).join(', ')}); nft tables ${megabytes(first.nftBytes)}, ${first.nftRules.toLocaleString('en')} rule lines; ` +
          `iptables texts (v4 + v6) ${megabytes(first.iptablesBytes)}, ${first.iptablesRules.toLocaleString('en')} rules`,
      );
    }
  } finally {
    rmSync(dir, {recursive: true, force: true});
  }
}

const CLUSTERED_HOSTS = 10_000;
/** All-to-all sizes, and whether to time the access summary there too. */
const ALL_TO_ALL: readonly (readonly [number, boolean])[] = [
  [1000, false],
  [200, true],
];

const STARTUP_RUNS = 15;
const REPO = path.join(import.meta.dirname, '..');
/** One line from Ink, as small as an Ink app gets: what the wizard's first frame is compared with. */
const BARE_INK = "import {createElement} from 'react'; import {render, Text} from 'ink'; render(createElement(Text, null, 'first frame'));";

/** Wall time of a process run to its end, in ms. */
function timeRun(argv: readonly string[]): number {
  const started = performance.now();
  const result = spawnSync(argv[0]!, argv.slice(1), {cwd: REPO, stdio: 'ignore'});
  if (result.status !== 0) throw new Error(`${argv.join(' ')} exited ${result.status}`);
  return performance.now() - started;
}

/** CPU time (user + system) a live process has used so far, in ms, from /proc (clock ticks of 10 ms). */
function cpuSoFar(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/**
 * Wall and CPU time until `text` is on a 100x30 pseudo-terminal, in ms; then the program is killed.
 * CPU time is the steadier figure on a shared machine: other load adds to the wall time only.
 */
function timeFirstFrame(argv: readonly string[], text: string, env: Record<string, string>): Promise<{wall: number; cpu: number}> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = pty.spawn(argv[0]!, argv.slice(1), {name: 'xterm-256color', cols: 100, rows: 30, cwd: REPO, env});
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${argv.join(' ')}: no "${text}" in 20 s:\n${output}`));
    }, 20_000);
    child.onData((data) => {
      output += data;
      if (!output.includes(text)) return;
      const wall = performance.now() - started;
      const cpu = cpuSoFar(child.pid);
      clearTimeout(timer);
      child.onExit(() => resolve({wall, cpu}));
      child.kill('SIGKILL');
    });
  });
}

async function startupBench(): Promise<void> {
  const home = mkdtempSync(path.join(tmpdir(), 'iw-bench-home-'));
  const env: Record<string, string> = {PATH: process.env['PATH'] ?? '', HOME: home, TERM: 'xterm-256color', CI: 'false'};
  const times = {bare: [] as number[], version: [] as number[], ink: [] as {wall: number; cpu: number}[], wizard: [] as {wall: number; cpu: number}[]};
  try {
    for (let run = 0; run < STARTUP_RUNS; run += 1) {
      times.bare.push(timeRun([process.execPath, '-e', '0']));
      times.version.push(timeRun([process.execPath, CLI_ENTRY, '--version']));
      times.ink.push(await timeFirstFrame([process.execPath, '--input-type=module', '-e', BARE_INK], 'first frame', env));
      times.wizard.push(await timeFirstFrame([process.execPath, CLI_ENTRY], 'isolate-wizard · fleet', env));
    }
  } finally {
    rmSync(home, {recursive: true, force: true});
  }
  const ms = (values: number[]): string => `${median(values).toFixed(0)} ms (${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)})`;
  const ratio = (a: number[], b: number[]): string => (median(a) / median(b)).toFixed(2);
  const lowest = (a: number[], b: number[]): string => (Math.min(...a) / Math.min(...b)).toFixed(2);
  const wall = (runs: {wall: number}[]): number[] => runs.map((run) => run.wall);
  const cpu = (runs: {cpu: number}[]): number[] => runs.map((run) => run.cpu);
  console.log(`start-up, medians (lowest–highest) of ${STARTUP_RUNS} alternating runs:`);
  console.log(
    `  node -e 0: ${ms(times.bare)}; isolate-wizard --version: ${ms(times.version)}; ` +
      `ratio ${ratio(times.version, times.bare)}, of the fastest runs ${lowest(times.version, times.bare)} (target <= 2.5)`,
  );
  console.log(
    `  first frame, wall: bare Ink app ${ms(wall(times.ink))}, the wizard's fleet home ${ms(wall(times.wizard))}, ` +
      `ratio ${ratio(wall(times.wizard), wall(times.ink))}, of the fastest runs ${lowest(wall(times.wizard), wall(times.ink))} (target <= 1.3)`,
  );
  console.log(
    `  first frame, CPU: bare Ink app ${ms(cpu(times.ink))}, the wizard's fleet home ${ms(cpu(times.wizard))}, ` +
      `ratio ${ratio(cpu(times.wizard), cpu(times.ink))}`,
  );
}

/** One `ansible-playbook site.yml` of an exported project, on freshly reset servers. */
async function timePlaybookOnce(lab: Lab, project: string, reset: readonly string[]): Promise<number> {
  await resetFleet(lab, reset);
  const start = performance.now();
  const result = await lab.execOperator(['sh', '-c', 'cd "$1" && exec ansible-playbook site.yml', 'sh', project], {timeoutMs: 900_000, env: {ANSIBLE_NOCOLOR: '1'}});
  const wall = performance.now() - start;
  if (result.code !== 0) throw new Error(`ansible-playbook in ${project} failed (${result.code}): ${result.stdout.trim().split('\n').slice(-12).join(' | ')}`);
  return wall;
}

/** apply --yes on 40 servers against the six-host fleet, alternately, in one lab; then the exported playbook on both. */
async function apply40Bench(): Promise<void> {
  const lab = await createLab(FORTY_LAB);
  const accounting = cpuAccounting(lab);
  try {
    const seed = lab.writeInventory(JSON.parse(readFileSync(seedPath, 'utf8')) as object, 'seed.json');
    const forty = lab.writeInventory(fortyInventory(lab), 'forty.json');
    const runs = {six: [] as ApplyRun[], forty: [] as ApplyRun[]};
    // The machine is shared: its load says how far the wall times can be compared with other runs'.
    const loadBefore = loadavg().map((load) => load.toFixed(1)).join(' ');
    const before = {six: [] as ApplyRun[], forty: [] as ApplyRun[]};
    for (let run = 0; run < APPLY_RUNS; run += 1) {
      const last = process.env['IW_TIMING'] === '1' && run === APPLY_RUNS - 1;
      runs.six.push(await timeApplyOnce(lab, accounting, seed, [], last, FORTY_NAMES));
      runs.forty.push(await timeApplyOnce(lab, accounting, forty, [], last, FORTY_NAMES));
      if (BEFORE_ENTRY === undefined) continue;
      // The other build may fail where this one does not (the code before the cheap nftables check
      // let verifying handshakes time out under load): say so and go on.
      for (const [list, inventory] of [[before.six, seed], [before.forty, forty]] as const) {
        try {
          list.push(await timeApplyOnce(lab, accounting, inventory, [], false, FORTY_NAMES, BEFORE_ENTRY));
        } catch (error) {
          console.log(`BENCH_BEFORE, ${path.basename(inventory)}: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
    }
    if (BEFORE_ENTRY !== undefined) {
      const walls = (list: ApplyRun[]) => list.map((run) => run.wall);
      console.log(`BENCH_BEFORE (${BEFORE_ENTRY}), in the same pairs: six median ${seconds(median(walls(before.six)))} of ${walls(before.six).map(seconds).join(', ')}${cpuLine(before.six)}`);
      console.log(`BENCH_BEFORE: 40 median ${seconds(median(walls(before.forty)))} of ${walls(before.forty).map(seconds).join(', ')}${cpuLine(before.forty)}; 40 / six ${(median(walls(before.forty)) / median(walls(before.six))).toFixed(2)}`);
    }
    const six = runs.six.map((run) => run.wall);
    const fortyWalls = runs.forty.map((run) => run.wall);
    console.log(`apply --yes, six-host seed fleet (in the 40-server lab): median ${seconds(median(six))} of ${six.map(seconds).join(', ')}${cpuLine(runs.six)}`);
    console.log(`apply --yes, 40 servers through the bastion: median ${seconds(median(fortyWalls))} of ${fortyWalls.map(seconds).join(', ')}${cpuLine(runs.forty)}`);
    console.log(
      `40 servers / six: ${(median(fortyWalls) / median(six)).toFixed(2)} (target <= 3; per pair: ${six.map((time, index) => ((fortyWalls[index] ?? Number.NaN) / time).toFixed(2)).join(', ')}); ` +
        `load average ${loadBefore} before, ${loadavg().map((load) => load.toFixed(1)).join(' ')} after`,
    );
    if (process.env['BENCH_ANSIBLE'] === '0') {
      console.log('ansible-playbook: not timed (BENCH_ANSIBLE=0)');
      return;
    }
    if (spawnSync('ansible-playbook', ['--version']).status !== 0) {
      console.log('ansible-playbook: not installed, the exported playbook is not timed');
      return;
    }
    for (const [label, inventory] of [['six-host seed fleet', seed], ['40 servers', forty]] as const) {
      const project = path.join(lab.dir, `ansible-${path.basename(inventory, '.json')}`);
      const exported = await lab.execOperator([process.execPath, CLI_ENTRY, 'export', '--format', 'ansible', '--out', project, '--inventory', inventory]);
      if (exported.code !== 0) throw new Error(`export failed: ${exported.stderr.trim()}`);
      // Once each: tens of seconds to minutes per run.
      console.log(`ansible-playbook site.yml (export --format ansible), ${label}: ${seconds(await timePlaybookOnce(lab, project, FORTY_NAMES))}`);
    }
  } finally {
    await lab.teardown();
    accounting?.remove();
  }
}

async function main(): Promise<void> {
  // BENCH_ONLY=plan: the plan figures only (no lab, no root needed); BENCH_ONLY=startup likewise.
  if (process.env['BENCH_ONLY'] === 'plan') {
    planBench();
    return;
  }
  if (process.env['BENCH_ONLY'] === 'flat10k') {
    flatBench();
    return;
  }
  if (process.env['BENCH_ONLY'] === 'nft') {
    nftBench();
    return;
  }
  if (process.env['BENCH_ONLY'] === 'startup') {
    await startupBench();
    return;
  }
  if (process.env['BENCH_ONLY'] === 'apply40') {
    await apply40Bench();
    return;
  }
  const lab = await createLab();
  const accounting = cpuAccounting(lab);
  try {
    const seed = lab.writeInventory(JSON.parse(readFileSync(seedPath, 'utf8')) as object, 'seed.json');
    const runs = await timeApplyPairs(lab, accounting, seed, ['wordpress-1']);
    const one = runs.one.map((run) => run.wall);
    const fleet = runs.fleet.map((run) => run.wall);
    const ratio = median(fleet) / median(one);
    console.log(`apply --yes, one host (wordpress-1, through the bastion): median ${seconds(median(one))} of ${one.map(seconds).join(', ')}${cpuLine(runs.one)}`);
    console.log(`apply --yes, six-host seed fleet: median ${seconds(median(fleet))} of ${fleet.map(seconds).join(', ')}${cpuLine(runs.fleet)}`);
    console.log(`fleet / one host: ${ratio.toFixed(2)} (target <= 1.5; per pair: ${one.map((time, index) => ((fleet[index] ?? Number.NaN) / time).toFixed(2)).join(', ')})`);
    const verify = await timeVerify(lab, seed);
    console.log(`verify, six-host seed fleet (locked down): median ${seconds(median(verify.wall))} of ${verify.wall.map(seconds).join(', ')}; the tries alone ${seconds(median(verify.tries))} (target < 5 s)`);
  } finally {
    await lab.teardown();
    accounting?.remove();
  }

  // BENCH_ONLY=apply: the lab figures only.
  if (process.env['BENCH_ONLY'] === 'apply') return;
  planBench();
  await startupBench();
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
});
