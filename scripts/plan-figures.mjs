// One cold run of the plan pipeline on an inventory file, in this fresh process, on the built
// code (dist/, what `npx isolate-wizard` runs): prints its figures as one JSON line.
// Used by scripts/bench.ts, which starts it once per run: caches warmed by an earlier run in the
// same process (parsed addresses, shared rule specs, port-set views) would flatter later runs.
import {readFileSync} from 'node:fs';
import {performance} from 'node:perf_hooks';
import {factsFromInventory, parseInventoryText} from '../dist/core/inventory.js';
import {buildPlan} from '../dist/core/plan.js';

const [file, withAccess = 'access'] = process.argv.slice(2);
const text = readFileSync(file, 'utf8');
let start = performance.now();
const inventory = parseInventoryText(text, file);
const facts = new Map(inventory.hosts.map((host) => [host.name, factsFromInventory(host)]));
const parse = performance.now() - start;
start = performance.now();
const plan = buildPlan(inventory, facts, undefined, {withAccess: withAccess === 'access'});
const build = performance.now() - start;
process.stdout.write(`${JSON.stringify({parse, plan: build, hosts: plan.hosts.length, accessLines: plan.access.length})}\n`);
