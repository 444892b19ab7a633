// One cold run of the nftables compiler on an inventory file, in this fresh process, on the built
// code: compileFleet (not timed here), then compileNftTable for every host (timed), with the bytes
// of the tables and, to compare, of the iptables-restore texts. Prints one JSON line.
// Used by scripts/bench.ts (BENCH_ONLY=nft).
import {readFileSync} from 'node:fs';
import {performance} from 'node:perf_hooks';
import {compileFleet} from '../dist/core/compiler.js';
import {factsFromInventory, parseInventoryText} from '../dist/core/inventory.js';
import {compileNftTable} from '../dist/core/nft-compiler.js';
import {renderRuleset} from '../dist/core/render.js';

const [file] = process.argv.slice(2);
const inventory = parseInventoryText(readFileSync(file, 'utf8'), file);
const facts = new Map(inventory.hosts.map((host) => [host.name, factsFromInventory(host)]));
const compiled = compileFleet(inventory, facts);
const start = performance.now();
let nftBytes = 0;
let nftRules = 0;
for (const host of compiled) {
  const text = compileNftTable(host);
  nftBytes += Buffer.byteLength(text);
  for (const line of text.split('\n')) if (line.startsWith('\t\t') && !/^\t\t(type|flags|elements) /.test(line)) nftRules += 1;
}
const nft = performance.now() - start;
let iptablesBytes = 0;
let iptablesRules = 0;
for (const host of compiled) {
  for (const ruleset of [host.v4, host.v6]) {
    iptablesBytes += Buffer.byteLength(renderRuleset(ruleset));
    iptablesRules += ruleset.tables.reduce((sum, table) => sum + table.rules.length, 0);
  }
}
process.stdout.write(`${JSON.stringify({hosts: compiled.length, nft, nftBytes, nftRules, iptablesBytes, iptablesRules})}\n`);
