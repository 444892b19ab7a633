// What another manager's nftables table drops of what the plan opens (the seed fleet, with
// rulesets recorded from a real `nft -j list ruleset`).
import {readFileSync} from 'node:fs';
import {describe, expect, it} from 'vitest';
import {factsFromInventory, parseInventoryText} from '../../source/core/inventory.js';
import {formatNativeDrops, nativeDrops, ufwPart} from '../../source/core/native-drops.js';
import {parseIptablesSave} from '../../source/core/iptables-save.js';
import {parseOtherFirewall, remedySteps} from '../../source/core/remedy.js';
import {checkOtherFirewalls} from '../../source/remote/native-tables.js';
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
    expect(formatNativeDrops(drops)[0]).toMatch(/^mysql-1: unknown manager \(table inet admin\) drops what the plan opens: .*tcp\/3306 from wordpress-1 \(IPv4, IPv6, may drop; the drop policy of input \(may drop: a rule that may accept \(limit/);
  });
});

// ufw as Ubuntu makes it (`ufw default deny incoming`, `ufw allow OpenSSH`), plus one rule the
// operator added for the load balancer's port 80. IPv4 only.
const UFW_V4 = `*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ufw-after-input - [0:0]
:ufw-after-logging-input - [0:0]
:ufw-before-input - [0:0]
:ufw-before-logging-input - [0:0]
:ufw-logging-deny - [0:0]
:ufw-reject-input - [0:0]
:ufw-track-input - [0:0]
:ufw-user-input - [0:0]
-A INPUT -j ufw-before-logging-input
-A INPUT -j ufw-before-input
-A INPUT -j ufw-after-input
-A INPUT -j ufw-after-logging-input
-A INPUT -j ufw-reject-input
-A INPUT -j ufw-track-input
-A ufw-after-logging-input -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[UFW BLOCK] "
-A ufw-before-input -i lo -j ACCEPT
-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A ufw-before-input -m conntrack --ctstate INVALID -j ufw-logging-deny
-A ufw-before-input -m conntrack --ctstate INVALID -j DROP
-A ufw-before-input -j ufw-user-input
-A ufw-logging-deny -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix "[UFW BLOCK] "
-A ufw-user-input -p tcp -m tcp --dport 22 -j ACCEPT
-A ufw-user-input -s 10.132.0.11/32 -p tcp -m tcp --dport 80 -j ACCEPT
COMMIT
`;

describe('ufw against the plan', () => {
  const plan = seedPlan();
  const ufw = new Map([['wordpress-1', {v4: parseIptablesSave(UFW_V4, 4)}]]);

  it("names ufw and its default policy for what its chains do not allow; what they allow is not named", () => {
    const drops = nativeDrops(plan.hosts, plan.access, new Map(), ufw);
    expect(drops.length).toBeGreaterThan(0);
    expect(drops.every((drop) => drop.manager === 'ufw' && drop.family === 4 && drop.destination === 'wordpress-1')).toBe(true);
    const flows = drops.map((drop) => `${drop.protocol}/${drop.port} from ${drop.source}`);
    expect(flows).toContain('tcp/443 from haproxy-www');
    expect(flows).not.toContain('tcp/80 from haproxy-www'); // ufw allows it
    expect(flows.some((flow) => flow.startsWith('tcp/22 '))).toBe(false); // OpenSSH allowed
    expect(formatNativeDrops(drops)[0]).toMatch(/^wordpress-1: ufw \(iptables chains ufw-\*\/ufw6-\*\) drops what the plan opens: tcp\/443 from haproxy-www \(IPv4; the DROP policy of INPUT \(ufw's default\)\)/);
  });

  it('an iptables filter table without ufw in INPUT is not ufw (inactive, or none)', () => {
    const inactive = UFW_V4.replace(/^-A INPUT .*\n/gm, '').replace(':INPUT DROP', ':INPUT ACCEPT');
    expect(ufwPart(parseIptablesSave(inactive, 4))).toBeUndefined();
    expect(nativeDrops(plan.hosts, plan.access, new Map(), new Map([['wordpress-1', {v4: parseIptablesSave(inactive, 4)}]]))).toEqual([]);
  });
});

describe('the remedy for another firewall', () => {
  const plan = seedPlan();
  const firewalld = nativeDrops(plan.hosts, plan.access, new Map([['wordpress-1', recorded('firewalld-rocky9')]]));

  it('open: one step per dropped flow, per source address and family, a range whole', () => {
    const steps = remedySteps(firewalld, 'open');
    expect(steps).toContain('open firewalld 4 10.132.0.11 tcp 80 80');
    expect(steps).toContain('open firewalld 6 fd00:132::11 tcp 443 443');
    expect(steps).toContain('open firewalld 4 10.132.0.13 tcp 49152 49251');
    expect(steps.filter((step) => step.includes(' 49152 '))).toHaveLength(2); // IPv4 and IPv6, not one per port tried
    expect(new Set(steps).size).toBe(steps.length);
  });

  it('stop: one step per manager', () => {
    expect(remedySteps(firewalld, 'stop')).toEqual(['stop firewalld']);
  });

  it('apply refuses without a choice, names the choices, and never remedies an unknown manager', () => {
    const read = {rulesets: new Map([['wordpress-1', recorded('firewalld-rocky9')]])};
    const refused = checkOtherFirewalls(plan.hosts, read, new Set(['wordpress-1']), plan.access);
    expect(refused.refusals.at(-1)).toMatch(/--other-firewall open .*--other-firewall stop/);
    expect(refused.remedies.size).toBe(0);
    const chosen = checkOtherFirewalls(plan.hosts, read, new Set(['wordpress-1']), plan.access, 'open');
    expect(chosen.refusals).toEqual([]);
    expect(chosen.remedies.get('wordpress-1')).toEqual(remedySteps(firewalld, 'open'));
    // out of scope: not judged
    expect(checkOtherFirewalls(plan.hosts, read, new Set(['mysql-1']), plan.access).refusals).toEqual([]);
    const unknown = {rulesets: new Map([['wordpress-1', parseNftJson(JSON.stringify(recordedJson('firewalld-rocky9')).replaceAll('"firewalld"', '"admin"'))]])};
    const stuck = checkOtherFirewalls(plan.hosts, unknown, new Set(['wordpress-1']), plan.access, 'stop');
    expect(stuck.refusals[0]).toMatch(/^wordpress-1: unknown manager \(table inet admin\) drops/);
    expect(stuck.refusals.at(-1)).toContain('changes firewalld and ufw only');
    expect(stuck.remedies.size).toBe(0);
  });

  it('--other-firewall takes open or stop, nothing else', () => {
    expect(parseOtherFirewall('open')).toBe('open');
    expect(parseOtherFirewall(undefined)).toBeUndefined();
    expect(() => parseOtherFirewall('disable')).toThrow(/--other-firewall: "disable" is not one of open, stop/);
  });
});

function recordedJson(name: string): unknown {
  return JSON.parse(readFileSync(new URL(`../../fixtures/nft/${name}.json`, import.meta.url), 'utf8'));
}
