// Reading the repository's fixtures from unit tests.
import {readFileSync} from 'node:fs';
import type {FleetHost} from '../../../source/core/access.js';
import {factsFromInventory, parseInventoryText} from '../../../source/core/inventory.js';
import {parseIptablesSave} from '../../../source/core/iptables-save.js';

/** A file under fixtures/, as text. */
export const readFixture = (path: string): string => readFileSync(new URL(`../../../fixtures/${path}`, import.meta.url), 'utf8');

/** The fleet of a fixture inventory with its golden compiled rulesets (fixtures/golden/NAME). */
export function goldenFleet(name: string): FleetHost[] {
  const inventory = parseInventoryText(readFixture(`inventories/${name}.json`), name);
  return inventory.hosts.map((entry) => ({
    name: entry.name,
    facts: factsFromInventory(entry)!,
    compiled: {
      host: entry.name,
      warnings: [],
      v4: parseIptablesSave(readFixture(`golden/${name}/${entry.name}.v4`), 4),
      v6: parseIptablesSave(readFixture(`golden/${name}/${entry.name}.v6`), 6),
    },
  }));
}
