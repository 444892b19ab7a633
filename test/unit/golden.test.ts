// Golden files: every compiled ruleset of every fixture inventory, byte for byte.
// Regenerate with: UPDATE_GOLDEN=1 npx vitest run test/unit/golden.test.ts (then READ the diff).
import {existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {describe, expect, it} from 'vitest';
import {compileFleet} from '../../source/core/compiler.js';
import {factsFromInventory, parseInventoryText, type Inventory} from '../../source/core/inventory.js';
import type {HostFacts} from '../../source/core/model.js';
import {renderRuleset} from '../../source/core/render.js';

const root = join(import.meta.dirname, '..', '..', 'fixtures');
const update = process.env['UPDATE_GOLDEN'] === '1';

function load(name: string): Inventory {
  const file = join(root, 'inventories', `${name}.json`);
  return parseInventoryText(readFileSync(file, 'utf8'), file);
}

function inventoryFacts(inv: Inventory): Map<string, HostFacts> {
  const facts = new Map<string, HostFacts>();
  for (const host of inv.hosts) {
    const hostFacts = factsFromInventory(host);
    if (hostFacts) facts.set(host.name, hostFacts);
  }
  return facts;
}

/** Every fixture inventory that carries its own facts is a golden case. */
const cases = readdirSync(join(root, 'inventories'))
  .filter((file) => file.endsWith('.json'))
  .map((file) => file.slice(0, -'.json'.length))
  .filter((name) => name !== 'seed')
  .sort();

function expectedFiles(name: string): Map<string, string> {
  const inv = load(name);
  const files = new Map<string, string>();
  const warnings: string[] = [];
  for (const compiled of compileFleet(inv, inventoryFacts(inv))) {
    files.set(`${compiled.host}.v4`, renderRuleset(compiled.v4));
    files.set(`${compiled.host}.v6`, renderRuleset(compiled.v6));
    for (const warning of compiled.warnings) warnings.push(`${compiled.host}: ${warning}`);
  }
  files.set('warnings.txt', warnings.map((line) => `${line}\n`).join(''));
  return files;
}

describe('golden rulesets', () => {
  it('covers the cases the project promises', () => {
    expect(cases).toEqual(
      expect.arrayContaining([
        'custom-role',
        'log-drops',
        'seed-with-addresses',
        'single-nic',
        'strict-outbound',
        'trust-private',
        'two-bastions',
      ]),
    );
  });

  for (const name of cases) {
    it(`${name}: compiled output equals fixtures/golden/${name}`, () => {
      const directory = join(root, 'golden', name);
      const files = expectedFiles(name);
      if (update) {
        rmSync(directory, {recursive: true, force: true});
        mkdirSync(directory, {recursive: true});
        for (const [file, text] of files) writeFileSync(join(directory, file), text);
      }
      expect(existsSync(directory), `missing ${directory}; run with UPDATE_GOLDEN=1`).toBe(true);
      expect(readdirSync(directory).sort()).toEqual([...files.keys()].sort());
      for (const [file, text] of files) {
        expect(text, `${name}/${file}`).toBe(readFileSync(join(directory, file), 'utf8'));
      }
    });
  }

  it('seed.json (the exact example, without facts) means the seed fleet: given the seed facts it compiles to the seed goldens', () => {
    const seed = load('seed');
    const withAddresses = load('seed-with-addresses');
    expect(seed.hosts.map((host) => [host.name, host.ssh, host.roles])).toEqual(
      withAddresses.hosts.map((host) => [host.name, host.ssh, host.roles]),
    );
    expect(seed.hosts.every((host) => factsFromInventory(host) === undefined)).toBe(true);
    const compiled = compileFleet(seed, inventoryFacts(withAddresses));
    for (const host of compiled) {
      const directory = join(root, 'golden', 'seed-with-addresses');
      expect(renderRuleset(host.v4)).toBe(readFileSync(join(directory, `${host.host}.v4`), 'utf8'));
      expect(renderRuleset(host.v6)).toBe(readFileSync(join(directory, `${host.host}.v6`), 'utf8'));
    }
  });
});
