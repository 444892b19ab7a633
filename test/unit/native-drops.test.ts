// What another manager's nftables table drops of what the plan opens (the seed fleet, with
// rulesets recorded from a real `nft -j list ruleset`).
import {readFileSync} from 'node:fs';
import {describe, expect, it} from 'vitest';
import {factsFromInventory, parseInventoryText} from '../../source/core/inventory.js';
import {formatNativeDrops, nativeDrops} from '../../source/core/native-drops.js';
import {parseNftJson, type NftRuleset} from '../../source/core/nft-ruleset.js';
import {buildPlan} from '../../source/core/plan.js';
import type {HostFacts} from '../../source/core/model.js';

function seedPlan() {
  const file = new URL('../../fixtures/inventories/seed-with-addresses.json', import.meta.url);
  const inventory = parseInventoryText(readFileSync(file, 'utf8'), 'seed-with-addresses.json');
  const facts = new Map<string, HostFacts>(inventory.hosts.map((host) => [host.name, factsFromInventory(host) as HostFacts]));
  return buildPlan(inventory, facts);
}

function recorded(name: string): NftRuleset {
  return parseNftJson(readFileSync(new URL(`../../fixtures/nft/${name}.json`, import.meta.url), 'utf8'));
}

describe('native tables against the plan', () => {
  const plan = seedPlan();

  it("names the flows firewalld's default zone would drop on wordpress-1, and only those", () => {
    const drops = nativeDrops(plan.hosts, plan.access, new Map([['wordpress-1', recorded('firewalld-rocky9')]]));
    const flows = new Set(drops.map((drop) => `${drop.protocol}/${drop.port} from ${drop.source} IPv${drop.family}`));
    for (const flow of ['tcp/80 from haproxy-www IPv4', 'tcp/443 from haproxy-www IPv6', 'tcp/24007 from wordpress-2 IPv4', 'tcp/49251 from wordpress-2 IPv6']) {
      expect(flows).toContain(flow);
    }
    // firewalld accepts ssh: the bastion's path is not in the list
    expect([...flows].some((flow) => flow.startsWith('tcp/22 '))).toBe(false);
    expect(drops.every((drop) => drop.destination === 'wordpress-1' && drop.table === 'inet firewalld')).toBe(true);
    const lines = formatNativeDrops(drops);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^wordpress-1: firewalld \(table inet firewalld\) drops what the plan opens: tcp\/80,443 from haproxy-www \(IPv4, IPv6; rule 8 of filter_INPUT\); tcp\/24007,24008,49152,49251 from wordpress-2 \(IPv4, IPv6; rule 8 of filter_INPUT\)$/);
  });

  it("finds nothing to say about Debian's stock table, or a host without native tables", () => {
    expect(nativeDrops(plan.hosts, plan.access, new Map([['mysql-1', recorded('debian-default')]]))).toEqual([]);
    expect(nativeDrops(plan.hosts, plan.access, new Map())).toEqual([]);
  });

  it('a may-drop is reported as such, never as open', () => {
    const limited = parseNftJson(
      JSON.stringify({
        nftables: [
          {table: {family: 'inet', name: 'admin'}},
          {chain: {family: 'inet', table: 'admin', name: 'input', type: 'filter', hook: 'input', prio: 0, policy: 'drop'}},
          {rule: {family: 'inet', table: 'admin', chain: 'input', expr: [{limit: {rate: 5, per: 'second'}}, {accept: null}]}},
        ],
      }),
    );
    const drops = nativeDrops(plan.hosts, plan.access, new Map([['mysql-1', limited]]));
    expect(drops.length).toBeGreaterThan(0);
    expect(drops.every((drop) => drop.outcome === 'may-drop')).toBe(true);
    expect(formatNativeDrops(drops)[0]).toMatch(/^mysql-1: table inet admin drops what the plan opens: .*tcp\/3306 from wordpress-1 \(IPv4, IPv6, may drop; the drop policy of input \(may drop: a rule that may accept \(limit/);
  });
});
