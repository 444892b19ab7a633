// Port-set views (source/core/port-sets.ts) answer "at which ports does this chain accept a
// packet from this peer" without walking the rules port by port. The evaluator is the
// reference: for random rulesets (negations, user chains, RETURN, goto, multiport, states,
// interfaces, conditions the views cannot judge) every defined view must agree with it at
// every port that matters, and a view must only exist where the evaluator has nothing to note.
import fc from 'fast-check';
import {describe, expect, it} from 'vitest';
import {evaluate, type Packet} from '../../source/core/evaluator.js';
import type {Chain, Rule, Ruleset} from '../../source/core/model.js';
import {parseIptablesSave} from '../../source/core/iptables-save.js';
import {
  acceptedPorts,
  acceptsAt,
  ALL_PORTS,
  chainView,
  intersectPorts,
  portSetToRanges,
  subtractPorts,
  unionPorts,
  viewsDefined,
  type ChainView,
  type PortSet,
  type ViewKind,
} from '../../source/core/port-sets.js';

// ---------------------------------------------------------------------------
// Port-set arithmetic against plain sets of numbers (on a small port space)

const SMALL = 40;
const smallSet = fc
  .array(fc.tuple(fc.integer({min: 1, max: SMALL}), fc.integer({min: 0, max: 6})), {maxLength: 5})
  .map((pairs) => pairs.reduce<PortSet>((set, [first, width]) => unionPorts(set, [first, Math.min(SMALL, first + width)]), []));

function members(set: PortSet): Set<number> {
  const out = new Set<number>();
  for (const {first, last} of portSetToRanges(set)) for (let port = first; port <= last; port += 1) out.add(port);
  return out;
}

function wellFormed(set: PortSet): boolean {
  for (let index = 0; index < set.length; index += 2) {
    if ((set[index] as number) > (set[index + 1] as number)) return false;
    if (index > 0 && (set[index] as number) <= (set[index - 1] as number) + 1) return false; // sorted, not touching
  }
  return set.length % 2 === 0;
}

describe('port sets', () => {
  it('intersect, subtract and union equal the set operations, and stay sorted and merged', () => {
    fc.assert(
      fc.property(smallSet, smallSet, (a, b) => {
        const [left, right] = [members(a), members(b)];
        const expect_ = (set: PortSet, want: (port: number) => boolean): void => {
          expect(wellFormed(set)).toBe(true);
          for (let port = 1; port <= SMALL; port += 1) expect(members(set).has(port)).toBe(want(port));
        };
        expect_(intersectPorts(a, b), (port) => left.has(port) && right.has(port));
        expect_(subtractPorts(a, b), (port) => left.has(port) && !right.has(port));
        expect_(unionPorts(a, b), (port) => left.has(port) || right.has(port));
      }),
      {numRuns: 300},
    );
  });

  it('treats the whole port space as 1-65535', () => {
    expect(subtractPorts(ALL_PORTS, [1, 21, 23, 65535])).toEqual([22, 22]);
    expect(portSetToRanges(unionPorts([1, 100], [101, 65535]))).toEqual([{first: 1, last: 65535}]);
  });
});

// ---------------------------------------------------------------------------
// Random rulesets

const NETWORKS = ['10.0.0.1/32', '10.0.0.2/32', '10.0.0.0/24', '10.0.1.5/32', '0.0.0.0/0', '10.0.0.0/255.255.0.255'];
const INTERFACES = ['eth0', 'eth1', 'eth+', 'lo'];
const PORT_TEXT = ['22', '80', '443', '1000:2000', ':1023', '1024:', '50000', '79:81'];
const PORT_LISTS = ['22,80,443', '80:90,443', '50000', '1:1023,8080'];
const USER_CHAINS = ['ALPHA', 'BETA'];

const maybeNot = fc.boolean().map((negate) => (negate ? ['!'] : []));
const optional = (part: fc.Arbitrary<string[]>): fc.Arbitrary<string[]> => fc.oneof(fc.constant([] as string[]), part);

const ruleSpec = fc
  .tuple(
    optional(fc.tuple(maybeNot, fc.constantFrom(...NETWORKS)).map(([not, net]) => [...not, '-s', net])),
    optional(fc.tuple(maybeNot, fc.constantFrom(...NETWORKS)).map(([not, net]) => [...not, '-d', net])),
    optional(fc.tuple(maybeNot, fc.constantFrom(...INTERFACES)).map(([not, name]) => [...not, '-i', name])),
    optional(fc.tuple(maybeNot, fc.constantFrom(...INTERFACES)).map(([not, name]) => [...not, '-o', name])),
    optional(fc.tuple(maybeNot, fc.constantFrom('tcp', 'udp', 'icmp', 'all', '6', '17')).map(([not, name]) => [...not, '-p', name])),
    optional(
      fc.oneof(
        fc.tuple(fc.constantFrom('tcp', 'udp'), maybeNot, fc.constantFrom('--dport', '--sport'), fc.constantFrom(...PORT_TEXT)).map(([module, not, option, value]) => ['-m', module, ...not, option, value]),
        fc.tuple(maybeNot, fc.constantFrom('--dports', '--sports', '--ports'), fc.constantFrom(...PORT_LISTS)).map(([not, option, value]) => ['-m', 'multiport', ...not, option, value]),
        fc.tuple(maybeNot, fc.constantFrom('NEW', 'ESTABLISHED', 'RELATED,ESTABLISHED', 'INVALID', 'NEW,ESTABLISHED')).map(([not, states]) => ['-m', 'conntrack', ...not, '--ctstate', states]),
        fc.constantFrom<string[]>(['-m', 'icmp', '--icmp-type', '8'], ['-m', 'icmp', '--icmp-type', 'any'], ['-m', 'hl', '--hl-eq', '255'], ['-m', 'recent', '--rcheck'], ['-f'], ['!', '-f']),
      ),
    ),
    optional(fc.constant(['-m', 'comment', '--comment', 'a note'])),
    fc.oneof(
      fc.constantFrom<string[]>(['-j', 'ACCEPT'], ['-j', 'DROP'], ['-j', 'REJECT'], ['-j', 'RETURN'], ['-j', 'LOG'], []),
      fc.tuple(fc.constantFrom('-j', '-g'), fc.constantFrom(...USER_CHAINS, 'MISSING')).map(([option, chain]) => [option, chain]),
    ),
  )
  .map((parts) => parts.flat());

const ruleset = fc
  .record({
    policies: fc.tuple(fc.constantFrom('ACCEPT', 'DROP'), fc.constantFrom('ACCEPT', 'DROP')),
    input: fc.array(ruleSpec, {maxLength: 7}),
    output: fc.array(ruleSpec, {maxLength: 4}),
    alpha: fc.array(ruleSpec, {maxLength: 4}),
    beta: fc.array(ruleSpec, {maxLength: 3}),
  })
  .map(({policies, input, output, alpha, beta}): Ruleset => {
    const chains: Chain[] = [
      {name: 'INPUT', policy: policies[0]},
      {name: 'FORWARD', policy: 'DROP'},
      {name: 'OUTPUT', policy: policies[1]},
      {name: 'ALPHA', policy: null},
      {name: 'BETA', policy: null},
    ];
    const rules: Rule[] = [
      ...input.map((spec) => ({chain: 'INPUT', spec})),
      ...output.map((spec) => ({chain: 'OUTPUT', spec})),
      ...alpha.map((spec) => ({chain: 'ALPHA', spec})),
      ...beta.map((spec) => ({chain: 'BETA', spec})),
    ];
    return {family: 4, tables: [{name: 'filter', chains, rules}]};
  });

/** One spec object for every table of the sharing test (the compiler shares specs the same way). */
const SHARED_SPEC: readonly string[] = ['-d', '10.0.0.0/24', '-p', 'tcp', '-m', 'tcp', '--dport', '443', '-j', 'ACCEPT'];

const KINDS: readonly ViewKind[] = ['request-in', 'session-in', 'reply-out', 'request-out', 'reply-in'];
const EPHEMERAL = 50000;
/** Every boundary of the generated port texts, and a port on each side. */
const PORTS = [1, 21, 22, 23, 79, 80, 81, 82, 90, 91, 442, 443, 444, 999, 1000, 1023, 1024, 2000, 2001, 8080, 49999, 50000, 50001, 65535];

/** The packet a view kind stands for, at one port of the varying field. */
function packetOf(kind: ViewKind, protocol: 'tcp' | 'udp', iface: string | undefined, own: string, peer: string, port: number): Packet {
  const inbound = kind === 'request-in' || kind === 'session-in' || kind === 'reply-in';
  const varyingSource = kind === 'reply-out' || kind === 'reply-in';
  return {
    chain: inbound ? 'INPUT' : 'OUTPUT',
    protocol,
    state: kind === 'request-in' || kind === 'request-out' ? 'NEW' : 'ESTABLISHED',
    source: inbound ? peer : own,
    destination: inbound ? own : peer,
    sourcePort: varyingSource ? port : EPHEMERAL,
    destinationPort: varyingSource ? EPHEMERAL : port,
    ...(iface === undefined ? {} : inbound ? {inInterface: iface} : {outInterface: iface}),
  };
}

/** The view's answer for `peer` equals the evaluator's verdict at each port, and the evaluator notes nothing. */
function expectEvaluatorAgrees(rules: Ruleset, view: ChainView, kind: ViewKind, protocol: 'tcp' | 'udp', iface: string | undefined, own: string, peer: string, ports: readonly number[] = PORTS): void {
  const open = acceptedPorts(view, peer);
  for (const port of ports) {
    const decision = evaluate(rules, packetOf(kind, protocol, iface, own, peer, port));
    expect(decision.uncertain).toEqual([]);
    expect(acceptsAt(view, peer, port)).toBe(decision.verdict === 'ACCEPT');
    expect(portSetToRanges(open).some((range) => port >= range.first && port <= range.last)).toBe(decision.verdict === 'ACCEPT');
  }
}

describe('port-set views', () => {
  it('agree with the evaluator at every port for random rulesets, and exist only where it notes nothing', () => {
    let defined = 0;
    let checked = 0;
    fc.assert(
      fc.property(
        ruleset,
        fc.constantFrom(...KINDS),
        fc.constantFrom<'tcp' | 'udp'>('tcp', 'udp'),
        fc.constantFrom(undefined, 'eth0', 'eth1', 'lo'),
        fc.constantFrom('10.0.0.1', '10.0.0.9', '10.0.1.5'),
        fc.constantFrom('10.0.0.1', '10.0.0.2', '10.0.0.77', '10.0.1.5', '192.0.2.1'),
        (rules, kind, protocol, iface, own, peer) => {
          checked += 1;
          const view = chainView(rules, kind, protocol, iface, own, EPHEMERAL);
          if (viewsDefined(rules, protocol)) expect(view).toBeDefined();
          if (!view) return;
          defined += 1;
          expectEvaluatorAgrees(rules, view, kind, protocol, iface, own, peer);
        },
      ),
      {numRuns: 700},
    );
    // The comparison means something only if most random rulesets are read.
    expect(defined).toBeGreaterThan(checked / 3);
  }, 60_000);

  it('sees the tutorial trap: an app that accepts --sport 80 from the balancer refuses its connections', () => {
    const parsed = parseIptablesSave(
      ['*filter', ':INPUT DROP [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]',
        '-A INPUT -s 10.0.0.2/32 -i eth1 -p tcp -m tcp --sport 80 -j ACCEPT', 'COMMIT', ''].join('\n'),
      4,
    );
    const view = chainView(parsed, 'request-in', 'tcp', 'eth1', '10.0.0.5', EPHEMERAL);
    expect(view && acceptedPorts(view, '10.0.0.2')).toEqual([]);
    // Its replies, though, are the packets that rule lets in.
    const replies = chainView(parsed, 'reply-in', 'tcp', 'eth1', '10.0.0.5', EPHEMERAL);
    expect(replies && portSetToRanges(acceptedPorts(replies, '10.0.0.2'))).toEqual([{first: 80, last: 80}]);
  });

  it('follows user chains: RETURN goes back, goto does not, and what the chain leaves falls to the policy', () => {
    const table = {
      family: 4 as const,
      tables: [{
        name: 'filter',
        chains: [{name: 'INPUT', policy: 'ACCEPT'}, {name: 'FORWARD', policy: 'DROP'}, {name: 'OUTPUT', policy: 'ACCEPT'}, {name: 'GUARD', policy: null}],
        rules: [
          {chain: 'INPUT', spec: ['-p', 'tcp', '-m', 'multiport', '--dports', '1:1023', '-j', 'GUARD']},
          {chain: 'INPUT', spec: ['-p', 'tcp', '-m', 'tcp', '--dport', '25', '-j', 'DROP']},
          {chain: 'GUARD', spec: ['-s', '10.0.0.0/24', '-j', 'RETURN']},
          {chain: 'GUARD', spec: ['-p', 'tcp', '-m', 'tcp', '--dport', '22', '-j', 'ACCEPT']},
          {chain: 'GUARD', spec: ['-j', 'DROP']},
        ],
      }],
    };
    const view = chainView(table, 'request-in', 'tcp', 'eth0', '10.0.9.9', EPHEMERAL);
    expect(view).toBeDefined();
    // From inside 10.0.0.0/24: GUARD returns, port 25 is dropped after it, the policy accepts the rest.
    expect(portSetToRanges(acceptedPorts(view!, '10.0.0.7'))).toEqual([{first: 1, last: 24}, {first: 26, last: 65535}]);
    // From outside: GUARD accepts 22 and drops the other low ports.
    expect(portSetToRanges(acceptedPorts(view!, '192.0.2.1'))).toEqual([{first: 22, last: 22}, {first: 1024, last: 65535}]);
  });

  it('gives up (undefined) where the evaluator would have something to note', () => {
    const withHopLimit: Ruleset = {
      family: 6,
      tables: [{name: 'filter', chains: [{name: 'INPUT', policy: 'DROP'}], rules: [{chain: 'INPUT', spec: ['-m', 'hl', '--hl-eq', '255', '-j', 'ACCEPT']}]}],
    };
    expect(chainView(withHopLimit, 'request-in', 'tcp', 'eth0', 'fd00::1', EPHEMERAL)).toBeUndefined();
    expect(evaluate(withHopLimit, packetOf('request-in', 'tcp', 'eth0', 'fd00::1', 'fd00::2', 22)).uncertain).not.toEqual([]);
    // The same condition behind an ICMPv6 requirement never meets a TCP packet: readable.
    const ndp: Ruleset = {
      family: 6,
      tables: [{name: 'filter', chains: [{name: 'INPUT', policy: 'DROP'}], rules: [{chain: 'INPUT', spec: ['-p', 'ipv6-icmp', '-m', 'icmp6', '--icmpv6-type', '135', '-m', 'hl', '--hl-eq', '255', '-j', 'ACCEPT']}]}],
    };
    const view = chainView(ndp, 'request-in', 'tcp', 'eth0', 'fd00::1', EPHEMERAL);
    expect(view && acceptedPorts(view, 'fd00::2')).toEqual([]);
  });

  it('shares a view between hosts only where the rules cannot tell their own addresses apart', () => {
    const table = (): Ruleset => ({
      family: 4,
      tables: [{
        name: 'filter',
        chains: [{name: 'INPUT', policy: 'DROP'}, {name: 'FORWARD', policy: 'DROP'}, {name: 'OUTPUT', policy: 'ACCEPT'}],
        rules: [{chain: 'INPUT', spec: SHARED_SPEC}],
      }],
    });
    const [first, second] = [table(), table()];
    // The rule opens 443 to addresses in 10.0.0.0/24 only: a host inside and one outside differ.
    const inside = chainView(first, 'request-in', 'tcp', 'eth0', '10.0.0.5', EPHEMERAL);
    const outside = chainView(second, 'request-in', 'tcp', 'eth0', '10.9.0.5', EPHEMERAL);
    expect(inside && portSetToRanges(acceptedPorts(inside, '192.0.2.1'))).toEqual([{first: 443, last: 443}]);
    expect(outside && acceptedPorts(outside, '192.0.2.1')).toEqual([]);
    // Two hosts on the same side of every such network share one view.
    expect(chainView(second, 'request-in', 'tcp', 'eth0', '10.0.0.6', EPHEMERAL)).toBe(inside);
    // UDP: the rule never admits it, so the address does not matter.
    expect(chainView(first, 'request-in', 'udp', 'eth0', '10.0.0.5', EPHEMERAL)).toBe(chainView(second, 'request-in', 'udp', 'eth0', '10.9.0.5', EPHEMERAL));
  });

  it('reads tables that differ only in INPUT\'s single source addresses as one, renamed, and still agrees with the evaluator', () => {
    // A rule of the shared shape: its -s is a place filled per table (a single address), a fixed
    // network or negated address (the same in every table), or absent.
    const source = fc.oneof(
      fc.integer({min: 0, max: 3}).map((place) => ({place})),
      fc.constantFrom<string[]>(['-s', '10.0.0.0/24'], ['!', '-s', '10.0.0.2/32'], ['-s', '0.0.0.0/0'], []).map((fixed) => ({fixed})),
    );
    const plainTarget = fc.constantFrom<string[]>(['-j', 'ACCEPT'], ['-j', 'DROP'], ['-j', 'RETURN'], ['-j', 'LOG']);
    const shapedRule = fc.tuple(source, ruleSpec.filter((spec) => !spec.some((token) => token === '-s' || token === '-j' || token === '-g')), plainTarget);
    const fill = fc.constantFrom('10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.1.5', '192.0.2.7');
    const shapes = fc.record({
      policy: fc.constantFrom('ACCEPT', 'DROP'),
      input: fc.array(shapedRule, {minLength: 1, maxLength: 6}),
      output: fc.array(ruleSpec.filter((spec) => !spec.some((token) => token === '-g' || USER_CHAINS.includes(token) || token === 'MISSING')), {maxLength: 2}),
      // Three tables of the shape: each fills the four places (maybe repeating an address).
      fills: fc.array(fc.array(fill, {minLength: 4, maxLength: 4}), {minLength: 3, maxLength: 3}),
    });
    let renamed = 0;
    let checked = 0;
    fc.assert(
      fc.property(
        shapes,
        fc.constantFrom(...KINDS),
        fc.constantFrom<'tcp' | 'udp'>('tcp', 'udp'),
        fc.constantFrom(undefined, 'eth0', 'eth1'),
        ({policy, input, output, fills}, kind, protocol, iface) => {
          const tables = fills.map((places, tableIndex): Ruleset => ({
            family: 4,
            tables: [{
              name: 'filter',
              chains: [{name: 'INPUT', policy}, {name: 'FORWARD', policy: 'DROP'}, {name: 'OUTPUT', policy: 'ACCEPT'}],
              rules: [
                ...input.map(([from, rest, target], ruleIndex) => ({
                  chain: 'INPUT',
                  // (Comments differ per table, as the compiler's name the hosts.)
                  spec: [...('place' in from ? ['-s', `${places[from.place]}/32`] : from.fixed), ...rest, '-m', 'comment', '--comment', `t${tableIndex} r${ruleIndex}`, ...target],
                })),
                ...output.map((spec) => ({chain: 'OUTPUT', spec})),
              ],
            }],
          }));
          for (const rules of tables) {
            const view = chainView(rules, kind, protocol, iface, '10.0.0.9', EPHEMERAL);
            if (!view) continue;
            if ('renamed' in view) renamed += 1;
            // Every address any of the tables names, and one none does.
            for (const peer of ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.1.5', '192.0.2.7', '10.0.0.77']) {
              checked += 1;
              expectEvaluatorAgrees(rules, view, kind, protocol, iface, '10.0.0.9', peer);
            }
          }
        },
      ),
      {numRuns: 400},
    );
    // The comparison means something only if renamed views were asked often.
    expect(renamed).toBeGreaterThan(100);
    expect(checked).toBeGreaterThan(1000);
  }, 60_000);

  it('renames many peers (a database whitelisting dozens of app servers) as exactly as a few', () => {
    // Twenty-four open peers per table: past the size where places are found by a scan.
    const table = (peers: readonly string[]): Ruleset => ({
      family: 6,
      tables: [{
        name: 'filter',
        chains: [{name: 'INPUT', policy: 'DROP'}, {name: 'FORWARD', policy: 'DROP'}, {name: 'OUTPUT', policy: 'ACCEPT'}],
        rules: peers.map((peer, place) => ({chain: 'INPUT', spec: ['-s', `${peer}/128`, '-p', 'tcp', '-m', 'tcp', '--dport', String(1000 + (place % 5)), '-j', 'ACCEPT']})),
      }],
    });
    const address = (network: number, host: number): string => `fd00:0:0:${network.toString(16)}::${host.toString(16)}`;
    const places = Array.from({length: 24}, (_, place) => place);
    // The first table; one renamed onto it (some of its peers at other places, the rest new).
    const first = places.map((place) => address(1, place + 1));
    const moved = places.map((place) => (place % 3 === 0 ? address(1, 24 - place) : address(2, place + 1)));
    // One peer at two places, where the first has two: read on its own; then one renamed onto it.
    const repeated = moved.map((peer, place) => (place === 23 ? (moved[22] as string) : peer));
    const repeatedElsewhere = repeated.map((peer) => peer.replace('fd00:0:0:2::', 'fd00:0:0:4::'));
    const asked = [...first, ...moved, ...repeatedElsewhere, address(9, 9)];
    for (const [peers, renamed] of [[first, false], [moved, true], [repeated, false], [repeatedElsewhere, true]] as const) {
      const rules = table(peers);
      const view = chainView(rules, 'request-in', 'tcp', 'eth1', 'fd00::9', EPHEMERAL);
      expect(view && 'renamed' in view).toBe(renamed);
      for (const peer of asked) expectEvaluatorAgrees(rules, view!, 'request-in', 'tcp', 'eth1', 'fd00::9', peer, [999, 1000, 1001, 1002, 1003, 1004, 1005]);
    }
  });

  it('lets everything through when there is no filter table', () => {
    const empty: Ruleset = {family: 4, tables: []};
    const view = chainView(empty, 'request-in', 'udp', 'eth0', '10.0.0.1', EPHEMERAL);
    expect(view && acceptedPorts(view, '10.0.0.2')).toEqual(ALL_PORTS);
  });
});
