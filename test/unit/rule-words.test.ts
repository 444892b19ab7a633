import {readFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, it} from 'vitest';
import {factsFromInventory, parseInventoryText} from '../../source/core/inventory.js';
import {buildPlan} from '../../source/core/plan.js';
import {toOwnChains, withOurs} from '../../source/core/own-chains.js';
import {renderRuleset} from '../../source/core/render.js';
import {describeLiveRules, droppedPacketInWords, ruleInWords} from '../../source/core/rule-words.js';

const fixtures = path.join(import.meta.dirname, '..', '..', 'fixtures');
const inventory = parseInventoryText(readFileSync(path.join(fixtures, 'inventories', 'seed-with-addresses.json'), 'utf8'), 'seed');
const plan = buildPlan(inventory, new Map(inventory.hosts.map((host) => [host.name, factsFromInventory(host)!])), new Map(), {withAccess: false});
const compiled = (name: string) => plan.hosts.find((host) => host.name === name)!.compiled;
const names = new Map<string, string>();
for (const host of inventory.hosts) for (const address of [...(host.addresses?.public ?? []), ...(host.addresses?.private ?? [])]) names.set(address, host.name);

/** What `iptables-save -c` prints on wordpress-1 once our rules are loaded, fail2ban's chain and a hand-made rule beside them. */
function liveWordpress(): string {
  const counters = new Map([
    ['lb haproxy-www -> app http,https', 1204],
    ['ssh from bastion tunnel-1', 17],
  ]);
  const ours = renderRuleset(withOurs({family: 4, tables: []}, toOwnChains(compiled('wordpress-1').v4)))
    .split('\n')
    .map((line) => {
      if (!line.startsWith('-A')) return line;
      if (line === '-A IW-INPUT -j DROP') return `[87:5220] ${line}`;
      const comment = /--comment (?:"([^"]*)"|(\S+))/.exec(line);
      return `[${counters.get(comment?.[1] ?? comment?.[2] ?? '') ?? 0}:0] ${line}`;
    })
    .join('\n');
  return ours.replace(
    'COMMIT',
    [
      ':f2b-sshd - [0:0]',
      '[3:180] -A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd',
      '[5:300] -A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT',
      '[3:180] -A f2b-sshd -s 198.51.100.7/32 -j REJECT --reject-with icmp-port-unreachable',
      '[0:0] -A f2b-sshd -j RETURN',
      'COMMIT',
    ].join('\n'),
  );
}

describe('the live rules in words', () => {
  it('says our rules in plain words with their packets, fleet hosts by name, and marks the others as theirs', () => {
    const lines = describeLiveRules(liveWordpress(), {ours: compiled('wordpress-1').v4, names});
    // Ours is our chain, entered from INPUT, ending with its drop.
    expect(lines).toContain('  to IW-INPUT: everything — 0 packets');
    expect(lines.slice(lines.indexOf('IW-INPUT'))).toContain('  drop everything — 87 packets');
    expect(lines).toContain('  tcp/80,443 from haproxy-www in eth1 — 1,204 packets');
    expect(lines).toContain('  tcp/22 from tunnel-1 in eth1 — 17 packets');
    expect(lines).toContain('  tcp/24007-24008,49152-49251 from wordpress-2 in eth1 — 0 packets');
    expect(lines).toContain('  replies — 0 packets');
    expect(lines).toContain('  drop invalid packets — 0 packets');
    expect(lines).toContain('  icmp echo-request — 0 packets');
    // Others' rules: fail2ban's jump and chain, and a rule nobody in the fleet wrote.
    expect(lines).toContain('  theirs (fail2ban): to f2b-sshd: tcp/22 — 3 packets');
    expect(lines).toContain('  theirs: tcp/8080 — 5 packets');
    expect(lines).toContain("f2b-sshd (fail2ban's)");
    expect(lines).toContain('  theirs (fail2ban): reject everything from 198.51.100.7 — 3 packets');
    expect(lines.filter((line) => line.startsWith('  theirs'))).toHaveLength(4);
  });

  it('without the fleet\'s rules (facts unknown) claims none as ours', () => {
    const lines = describeLiveRules(liveWordpress(), {names});
    expect(lines.filter((line) => line.startsWith('  ') && !line.startsWith('  theirs'))).toEqual([]);
  });

  it('another host\'s rules are not this host\'s: wordpress-1\'s live rules against mysql-1\'s compiled ones', () => {
    const lines = describeLiveRules(liveWordpress(), {ours: compiled('mysql-1').v4, names});
    expect(lines).toContain('  theirs: tcp/80,443 from haproxy-www in eth1 — 1,204 packets');
  });

  it('reads IPv6 and negations, and states a server without a filter table', () => {
    expect(ruleInWords(['-s', 'fd00:132::11/128', '!', '-i', 'eth0', '-p', 'tcp', '-m', 'tcp', '--dport', '443', '-j', 'DROP'], new Map([['fd00:132::11', 'haproxy-www']]))).toBe(
      'drop tcp/443 from haproxy-www in not eth0',
    );
    expect(describeLiveRules('*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n', {names})).toEqual(['no filter table: nothing is filtered on this server']);
  });
});

describe('dropped packets in words', () => {
  it('names fleet hosts and keeps an unknown sender as its address', () => {
    const line = '2026-12-03T10:01:02+0000 mysql-1 kernel: isolate-wizard DROP IN=eth1 OUT= MAC=aa:bb SRC=10.132.0.99 DST=10.132.0.14 LEN=60 TOS=0x00 PROTO=TCP SPT=40000 DPT=3306 WINDOW=64240 SYN';
    expect(droppedPacketInWords(line, names)).toBe('2026-12-03T10:01:02+0000 dropped tcp/3306 from 10.132.0.99 to mysql-1 in eth1');
    expect(droppedPacketInWords('[ 5.0] isolate-wizard DROP IN=eth0 SRC=203.0.113.11 DST=203.0.113.14 PROTO=ICMP TYPE=8', names)).toBe('[ 5.0] dropped icmp from haproxy-www to mysql-1 in eth0');
    expect(droppedPacketInWords('something else', names)).toBe('something else');
  });
});
