// `npm run bench`: wall times of the things an operator waits for. Not a test: it prints figures.
//   1. `apply --yes` on one host and on the six-host seed fleet, in the lab (real sshd, iptables,
//      the bastion hop), and their ratio (target: fleet <= 1.5 x one host);
//   2. compiling a generated 10,000-host inventory with addresses given (target: under 2 s), and
//      the same with the lockout check `plan` runs.
// Needs root (the lab). Each apply is run RUNS times; the median is printed.
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {performance} from 'node:perf_hooks';
import {compileFleet} from '../source/core/compiler.js';
import {factsFromInventory, parseInventoryText} from '../source/core/inventory.js';
import type {HostFacts} from '../source/core/model.js';
import {buildPlan} from '../source/commands/plan.js';
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
  }
  return times;
}

/** n hosts: 1 bastion, 1 lb, the rest split between app and db, every address given. */
function generatedInventory(count: number): string {
  const hosts = [];
  for (let index = 0; index < count; index += 1) {
    const role = index === 0 ? 'bastion' : index === 1 ? 'lb' : index % 3 === 0 ? 'db' : 'app';
    const a = Math.floor(index / 250);
    const b = (index % 250) + 1;
    hosts.push({
      name: `host-${index}`,
      ssh: index === 0 ? `root@198.51.100.1` : `root@10.${a}.0.${b}`,
      ...(index === 0 ? {} : {jump: 'host-0'}),
      roles: [role],
      interfaces: {public: 'eth0', private: 'eth1'},
      addresses: {public: [`100.${64 + a}.0.${b}`], private: [`10.${a}.0.${b}`, `fd00::${index.toString(16)}`]},
    });
  }
  return JSON.stringify({hosts});
}

function timePlan(count: number): {parse: number; compile: number; plan: number} {
  const text = generatedInventory(count);
  let start = performance.now();
  const inventory = parseInventoryText(text, 'generated');
  const facts = new Map<string, HostFacts>(inventory.hosts.map((host) => [host.name, factsFromInventory(host) as HostFacts]));
  const parse = performance.now() - start;
  start = performance.now();
  compileFleet(inventory, facts);
  const compile = performance.now() - start;
  start = performance.now();
  buildPlan(inventory, facts, undefined, {withAccess: false});
  return {parse, compile, plan: performance.now() - start};
}

/** Plan figures from small to 10,000 hosts; stops growing once a size takes over PLAN_BUDGET_MS. */
const PLAN_SIZES = [100, 1000, 10_000];
const PLAN_BUDGET_MS = 20_000;

async function main(): Promise<void> {
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

  for (const count of PLAN_SIZES) {
    const figures = timePlan(count);
    console.log(
      `${count.toLocaleString('en')}-host inventory: parse+validate ${seconds(figures.parse)}, compileFleet ${seconds(figures.compile)}, ` +
        `plan (compile + lockout check) ${seconds(figures.plan)}${count === 10_000 ? ' (target < 2 s)' : ''}`,
    );
    if (figures.plan > PLAN_BUDGET_MS && count !== PLAN_SIZES[PLAN_SIZES.length - 1]) {
      console.log(`stopped before larger sizes: ${count} hosts already take ${seconds(figures.plan)} (plan grows faster than linearly)`);
      break;
    }
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
});
