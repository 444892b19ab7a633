// Does a live nftables table give the access of the iptables rules it was compiled from? The
// client asks this of our table after every load on the nftables backend: the compiled iptables
// rulesets are the plan (the access summary and the lockout check read them), so the live table
// must decide every packet as they do. Pure: the live table comes from `nft -j list table`.
//
// Packets are sampled by class rather than enumerated: every address the plan or the table
// names (a set missing one member must show) and one no one names, one port per interval on
// which every rule decides alike (the plan's cut points and the table's ports), each protocol,
// NEW and ESTABLISHED, each interface named plus one none names.
import {evaluate, portCutPoints, type BuiltInChain, type ConnectionState, type Packet, type PacketProtocol} from './evaluator.js';
import {cidrContains, formatAddress, parseAddress, parseCidr, type Cidr} from './addresses.js';
import type {Family, Ruleset} from './model.js';
import {evaluateNft} from './nft-evaluator.js';
import type {NftRuleset, NftTable} from './nft-ruleset.js';

export const OUR_NFT_TABLE = {family: 'inet', name: 'isolate_wizard'} as const;

const OUTSIDE: Readonly<Record<Family, string>> = {4: '198.51.100.254', 6: '2001:db8:ffff::fe'};
const UNNAMED_INTERFACE = 'iw-none0';
const CHAINS: readonly BuiltInChain[] = ['INPUT', 'OUTPUT', 'FORWARD'];
const STATES: readonly ConnectionState[] = ['NEW', 'ESTABLISHED'];
/** A cap on packets per host and family: a table needing more is reported, never assumed equal. */
const MAX_PACKETS = 200_000;

interface Named {
  readonly addresses: string[];
  readonly networks: Cidr[];
  readonly interfaces: Set<string>;
}

function namedIn(ruleset: Ruleset): Named {
  const named: Named = {addresses: [], networks: [], interfaces: new Set()};
  const table = ruleset.tables.find((candidate) => candidate.name === 'filter');
  for (const rule of table?.rules ?? []) {
    rule.spec.forEach((token, index) => {
      const value = rule.spec[index + 1];
      if (value === undefined) return;
      if (token === '-s' || token === '-d' || token === '--source' || token === '--destination') {
        const cidr = parseCidr(value);
        if (!cidr) return;
        named.networks.push(cidr);
        named.addresses.push(formatAddress({family: cidr.family, bytes: cidr.bytes}));
      }
      if (token === '-i' || token === '-o' || token === '--in-interface' || token === '--out-interface') named.interfaces.add(value.replace(/\+$/, ''));
    });
  }
  return named;
}

/**
 * One address per distinct answer to "which of the named networks hold it?", plus the outside
 * one. Host networks (/32, /128) are looked up by text: thousands of peers stay linear.
 */
function addressClasses(named: Named, family: Family): string[] {
  const full = family === 4 ? 32 : 128;
  const networks = named.networks.filter((network) => network.family === family);
  const wide = networks.filter((network) => network.prefix < full);
  const hosts = new Set(networks.filter((network) => network.prefix === full).map((network) => formatAddress({family, bytes: network.bytes})));
  const classes = new Map<string, string>();
  for (const address of [OUTSIDE[family], ...named.addresses]) {
    const parsed = parseAddress(address);
    if (parsed?.family !== family) continue;
    // A host network names exactly one address: that address is its own class.
    const signature = hosts.has(address) ? `=${address}` : wide.map((cidr) => (cidrContains(cidr, parsed) ? '1' : '0')).join('');
    if (!classes.has(signature)) classes.set(signature, address);
  }
  return [...classes.values()];
}

/**
 * What our live table names: addresses and networks (saddr/daddr, their sets), ports (dport,
 * sport, their sets and ranges: each value and the one after) and interface names. Sampling
 * them too catches an accept the plan never had (an extra port, an extra source).
 */
function namedInNft(table: NftTable): Named & {ports: number[]} {
  const named = {addresses: [] as string[], networks: [] as Cidr[], interfaces: new Set<string>(), ports: [] as number[]};
  const values = (right: unknown, into: (value: unknown) => void): void => {
    if (typeof right === 'string' && right.startsWith('@')) {
      for (const element of table.sets.get(right.slice(1))?.elements ?? []) values(element, into);
    } else if (Array.isArray(right)) for (const item of right) values(item, into);
    else if (isRecord(right) && 'set' in right) values(right['set'], into);
    else if (isRecord(right) && 'elem' in right && isRecord(right['elem'])) values(right['elem']['val'], into);
    else if (isRecord(right) && 'range' in right && Array.isArray(right['range'])) for (const end of right['range']) values(end, into);
    else into(right);
  };
  const address = (value: unknown): void => {
    const text = isRecord(value) && isRecord(value['prefix']) ? `${String(value['prefix']['addr'])}/${String(value['prefix']['len'])}` : typeof value === 'string' ? value : '';
    const cidr = text.includes('/') ? parseCidr(text) : parseCidr(`${text}/${text.includes(':') ? 128 : 32}`);
    if (!cidr) return;
    named.networks.push(cidr);
    named.addresses.push(formatAddress({family: cidr.family, bytes: cidr.bytes}));
  };
  const port = (value: unknown): void => {
    if (typeof value === 'number' && value >= 1 && value <= 65535) named.ports.push(value, value + 1);
  };
  for (const chain of table.chains.values()) {
    for (const rule of chain.rules) {
      for (const statement of rule.statements) {
        const match = statement['match'];
        if (!isRecord(match) || !isRecord(match['left'])) continue;
        const left = match['left'];
        const key = isRecord(left['meta']) ? String(left['meta']['key']) : isRecord(left['payload']) ? String(left['payload']['field']) : '';
        if (key === 'saddr' || key === 'daddr') values(match['right'], address);
        else if (key === 'dport' || key === 'sport') values(match['right'], port);
        else if (key === 'iifname' || key === 'oifname') values(match['right'], (value) => typeof value === 'string' && named.interfaces.add(value.replace(/\*$/, '')));
      }
    }
  }
  return named;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function protocols(family: Family): {protocol: PacketProtocol; ports: 'tcp' | 'udp' | undefined; icmpTypes: number[]}[] {
  return [
    {protocol: 'tcp', ports: 'tcp', icmpTypes: []},
    {protocol: 'udp', ports: 'udp', icmpTypes: []},
    family === 4
      ? {protocol: 'icmp', ports: undefined, icmpTypes: [0, 3, 8, 11, 12, 13]}
      : {protocol: 'ipv6-icmp', ports: undefined, icmpTypes: [1, 2, 3, 4, 128, 129, 133, 134, 135, 136, 137]},
  ];
}

/**
 * The sampled packets of one family for a host whose planned rules are `ruleset`: how many, and
 * each in turn. Visited one at a time, never held all at once (a host of a large fleet has
 * ~100,000 of them, and holding them cost more than judging them).
 */
function sampleSpace(ruleset: Ruleset, live: NftTable): {count: number; forEach(visit: (packet: Packet) => boolean): void} {
  const family = ruleset.family;
  const named = namedIn(ruleset);
  const fromLive = namedInNft(live);
  named.addresses.push(...fromLive.addresses);
  named.networks.push(...fromLive.networks);
  for (const name of fromLive.interfaces) named.interfaces.add(name);
  const addresses = addressClasses(named, family);
  const local = family === 4 ? '192.0.2.1' : '2001:db8::1';
  const interfaces = [...named.interfaces, UNNAMED_INTERFACE];
  const kinds = protocols(family).map(({protocol, ports, icmpTypes}) => ({
    protocol,
    ports: ports ? [...new Set([...portCutPoints(ruleset, ports), ...fromLive.ports])].filter((port) => port <= 65535).sort((a, b) => a - b) : undefined,
    icmpTypes,
    hopLimits: family === 6 && protocol === 'ipv6-icmp' ? [64, 255] : [64],
  }));
  const perPeer = STATES.length * interfaces.length;
  const count = CHAINS.length * kinds.reduce((sum, kind) => sum + addresses.length * perPeer * kind.hopLimits.length * (kind.ports ? 2 * kind.ports.length : kind.icmpTypes.length), 0);
  return {
    count,
    forEach(visit) {
      for (const chain of CHAINS) {
        for (const {protocol, ports, icmpTypes, hopLimits} of kinds) {
          for (const peer of addresses) {
            const source = chain === 'OUTPUT' ? local : peer;
            const destination = chain === 'OUTPUT' ? peer : chain === 'INPUT' ? local : OUTSIDE[family] === peer ? local : OUTSIDE[family];
            for (const state of STATES) {
              for (const iface of interfaces) {
                const inInterface = chain === 'OUTPUT' ? undefined : iface;
                const outInterface = chain === 'INPUT' ? undefined : iface;
                // One shape for every packet (the evaluators read an absent field as undefined), in the order sampled before.
                const packet = (hopLimit: number, sourcePort: number | undefined, destinationPort: number | undefined, icmpType: number | undefined): Packet => ({
                  chain, inInterface, outInterface, source, destination, protocol, state, hopLimit, sourcePort, destinationPort, icmpType, icmpCode: icmpType === undefined ? undefined : 0,
                });
                if (ports) {
                  for (const port of ports) {
                    for (const hopLimit of hopLimits) if (!visit(packet(hopLimit, 40000, port, undefined)) || !visit(packet(hopLimit, port, 40000, undefined))) return;
                  }
                } else {
                  for (const hopLimit of hopLimits) for (const icmpType of icmpTypes) if (!visit(packet(hopLimit, undefined, undefined, icmpType))) return;
                }
              }
            }
          }
        }
      }
    },
  };
}

function describePacket(packet: Packet): string {
  const what = packet.destinationPort !== undefined ? `${packet.protocol}/${packet.destinationPort} from port ${packet.sourcePort}` : `${packet.protocol} type ${packet.icmpType}`;
  const via = packet.inInterface ? ` in ${packet.inInterface}` : packet.outInterface ? ` out ${packet.outInterface}` : '';
  return `${packet.chain} ${packet.state} ${what} ${packet.source} -> ${packet.destination}${via}`;
}

const isOurs = (table: NftTable): boolean => table.family === OUR_NFT_TABLE.family && table.name === OUR_NFT_TABLE.name;

/**
 * Packets our live table decides otherwise than the planned iptables rules, in words (empty =
 * same access). A packet the evaluator cannot read in our table counts as a difference: our
 * own table must be fully understood.
 */
export function nftAccessDifferences(expected: {readonly v4: Ruleset; readonly v6: Ruleset}, live: NftRuleset, limit = 5): string[] {
  const ours = live.tables.find(isOurs);
  if (!ours) return [`no table ${OUR_NFT_TABLE.family} ${OUR_NFT_TABLE.name}`];
  const problems: string[] = [];
  for (const ruleset of [expected.v4, expected.v6]) {
    const packets = sampleSpace(ruleset, ours);
    if (packets.count > MAX_PACKETS) return [`IPv${ruleset.family}: too many packet classes to compare (${packets.count})`];
    packets.forEach((packet) => {
      const planned = evaluate(ruleset, packet);
      const wanted = planned.verdict === 'ACCEPT' && planned.uncertain.length === 0 ? 'pass' : planned.verdict === 'ACCEPT' ? 'unknown' : 'drop';
      if (wanted === 'unknown') return true; // the plan itself is not read exactly there: nothing to hold the table to
      const got = evaluateNft(live, packet, {tables: isOurs});
      if (got.outcome === wanted) return true;
      const why = got.outcome === 'may-drop' ? ` (unread: ${got.reason ?? 'a statement'})` : '';
      problems.push(`IPv${ruleset.family} ${describePacket(packet)}: planned ${wanted}, live ${got.outcome}${why}`);
      return problems.length < limit;
    });
    if (problems.length >= limit) return problems;
  }
  return problems;
}
