// `npm run bench`: wall times of the things an operator waits for. Not a test: it prints figures.
//   1. `apply --yes` on one host and on the six-host seed fleet, in the lab (real sshd, iptables,
//      the bastion hop), and their ratio (target: fleet <= 1.5 x one host);
//   2. `plan` on a generated 10,000-host inventory of small clusters with addresses given:
//      parse, compile, buildPlan without and with the access summary (target: under 2 s), and
//      the old all-to-all shape at 1,000 hosts (quadratic by nature; no target).
// The lab part needs root. Each figure is run RUNS times; the median is printed.
// BENCH_ONLY=plan runs part 2 alone (no lab); BENCH_ONLY=apply runs part 1 alone.
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {performance} from 'node:perf_hooks';
import {compileFleet} from '../source/core/compiler.js';
import {factsFromInventory, parseInventoryText} from '../source/core/inventory.js';
import type {HostFacts} from '../source/core/model.js';
import {buildPlan} from '../source/core/plan.js';
import {createLab, type Lab} from '../test/lab/lab.js';

const RUNS = 3;
const FLEET = ['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'];
const seedPath = path.join(import.meta.dirname, '..', 'fixtures', 'inventories', 'seed-with-addresses.json');

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

async function resetFleet(lab: Lab): Promise<void> {
  await Promise.all(
    FLEET.map((name) =>
      lab.hosts.get(name)?.exec(['sh', '-c', 'rm -rf /var/lib/isolate-wizard/*; nft delete table ip filter; nft delete table ip6 filter; true']),
    ),
  );
}

async function timeApply(lab: Lab, inventory: string, hosts: string[]): Promise<number[]> {
  const times: number[] = [];
  for (let run = 0; run < RUNS; run += 1) {
    await resetFleet(lab);
    const start = performance.now();
    const result = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '120', ...hosts.flatMap((host) => ['--host', host])]);
    const elapsed = performance.now() - start;
    if (result.code !== 0) throw new Error(`apply ${hosts.join(',') || 'fleet'} failed (${result.code}): ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    times.push(elapsed);
    // IW_TIMING=1 reaches the CLI through the environment: show where the last run's time went.
    if (process.env['IW_TIMING'] === '1' && run === RUNS - 1) {
      console.log(`--- ${hosts.join(',') || 'fleet'}: ${seconds(elapsed)}\n${result.stderr.trim()}`);
    }
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

interface PlanFigures {
  parse: number;
  compile: number;
  plan: number;
  planWithAccess?: number;
}

/** One run: parse+validate, compileFleet, buildPlan without and (optionally) with the access summary. */
function timePlan(text: string, withAccess: boolean): PlanFigures {
  let start = performance.now();
  const inventory = parseInventoryText(text, 'generated');
  const facts = new Map<string, HostFacts>(inventory.hosts.map((host) => [host.name, factsFromInventory(host) as HostFacts]));
  const parse = performance.now() - start;
  start = performance.now();
  compileFleet(inventory, facts);
  const compile = performance.now() - start;
  start = performance.now();
  buildPlan(inventory, facts, undefined, {withAccess: false});
  const plan = performance.now() - start;
  if (!withAccess) return {parse, compile, plan};
  start = performance.now();
  buildPlan(inventory, facts, undefined, {withAccess: true});
  return {parse, compile, plan, planWithAccess: performance.now() - start};
}

/** Medians over RUNS runs, each figure on its own. */
function medianPlan(text: string, withAccess: boolean): PlanFigures & {runs: PlanFigures[]} {
  const runs = Array.from({length: RUNS}, () => timePlan(text, withAccess));
  const of = (pick: (figures: PlanFigures) => number | undefined): number => median(runs.map((figures) => pick(figures) ?? Number.NaN));
  return {
    parse: of((figures) => figures.parse),
    compile: of((figures) => figures.compile),
    plan: of((figures) => figures.plan),
    ...(withAccess ? {planWithAccess: of((figures) => figures.planWithAccess)} : {}),
    runs,
  };
}

/** The plan figures: the clustered 10,000-host fleet (target), then the old quadratic shape at 1,000 hosts. */
function planBench(): void {
  const clustered = medianPlan(clusteredInventory(CLUSTERED_HOSTS), true);
  console.log(
    `${CLUSTERED_HOSTS.toLocaleString('en')}-host clustered inventory (median of ${RUNS}): parse+validate ${seconds(clustered.parse)}, ` +
      `compileFleet ${seconds(clustered.compile)}, plan without access ${seconds(clustered.plan)}, ` +
      `plan with access ${seconds(clustered.planWithAccess ?? Number.NaN)} (target < 2 s; runs ${clustered.runs.map((run) => seconds(run.planWithAccess ?? Number.NaN)).join(', ')})`,
  );
  // The access summary of the all-to-all shape walks hosts² pairs through rulesets of ~hosts
  // rules each (cubic), so it is timed on a smaller fleet.
  for (const [count, withAccess] of ALL_TO_ALL) {
    const quadratic = medianPlan(allToAllInventory(count), withAccess);
    console.log(
      `${count.toLocaleString('en')}-host all-to-all inventory (every db whitelists every app; grows with hosts², no target, median of ${RUNS}): ` +
        `parse+validate ${seconds(quadratic.parse)}, compileFleet ${seconds(quadratic.compile)}, plan without access ${seconds(quadratic.plan)}` +
        (quadratic.planWithAccess === undefined ? '' : `, plan with access ${seconds(quadratic.planWithAccess)}`),
    );
  }
}

const CLUSTERED_HOSTS = 10_000;
/** All-to-all sizes, and whether to time the access summary there too. */
const ALL_TO_ALL: readonly (readonly [number, boolean])[] = [
  [1000, false],
  [200, true],
];

async function main(): Promise<void> {
  // BENCH_ONLY=plan: the plan figures only (no lab, no root needed).
  if (process.env['BENCH_ONLY'] === 'plan') {
    planBench();
    return;
  }
  const lab = await createLab();
  try {
    const seed = lab.writeInventory(JSON.parse(readFileSync(seedPath, 'utf8')) as object, 'seed.json');
    const one = await timeApply(lab, seed, ['wordpress-1']);
    const fleet = await timeApply(lab, seed, []);
    const ratio = median(fleet) / median(one);
    console.log(`apply --yes, one host (wordpress-1, through the bastion): median ${seconds(median(one))} of ${one.map(seconds).join(', ')}`);
    console.log(`apply --yes, six-host seed fleet: median ${seconds(median(fleet))} of ${fleet.map(seconds).join(', ')}`);
    console.log(`fleet / one host: ${ratio.toFixed(2)} (target <= 1.5)`);
  } finally {
    await lab.teardown();
  }

  // BENCH_ONLY=apply: the lab figures only.
  if (process.env['BENCH_ONLY'] === 'apply') return;
  planBench();
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
});
