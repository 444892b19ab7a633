// For random fleets, the access the evaluator reads from the COMPILED rules must equal the
// access the inventory asks for, computed here independently ("intent") from the inventory
// alone: role meanings, sources and paths are re-derived below, never taken from the compiler.
import fc from 'fast-check';
import {describe, expect, it} from 'vitest';
import {accessMatrix, INTERNET, INTERNET_ADDRESS, PRIVATE_TENANTS, tenantAddress, type AccessCell, type FleetHost} from '../../source/core/access.js';
import {compileFleet} from '../../source/core/compiler.js';
import {factsFromInventory, validateInventory, type Inventory} from '../../source/core/inventory.js';
import {networkContains, parseAddress, parseNetwork, formatAddress} from '../../source/core/ip.js';
import type {Family, HostFacts, PortRange, Protocol} from '../../source/core/model.js';

// ---------------------------------------------------------------------------
// Random inventories (raw JSON, validated like an operator's file)

const BUILT_IN = ['bastion', 'lb', 'app', 'db'] as const;
const CUSTOM = ['cache', 'queue'] as const;

type Side = 'public' | 'private';
type FamilyChoice = '4' | '6' | 'both';

const portSpec = fc.oneof(
  fc.constantFrom(22, 53, 80, 443, 3306, 5432, 6379, 2222),
  fc.integer({min: 1, max: 65535}),
  fc.tuple(fc.integer({min: 1, max: 65000}), fc.integer({min: 0, max: 300})).map(([first, width]) => `${first}-${Math.min(65535, first + width)}`),
);

function addressesFor(index: number, side: Side, families: FamilyChoice): string[] {
  const v4 = side === 'public' ? `203.0.113.${10 + index}` : `10.132.0.${10 + index}`;
  const v6 = side === 'public' ? `2001:db8:100::${10 + index}` : `fd00:132::${10 + index}`;
  return families === 'both' ? [v4, v6] : families === '4' ? [v4] : [v6];
}

const hostShape = fc.record({
  nics: fc.constantFrom('both', 'both', 'public', 'private'),
  publicFamilies: fc.constantFrom<FamilyChoice>('both', 'both', '4', '6'),
  privateFamilies: fc.constantFrom<FamilyChoice>('both', 'both', '4', '6'),
  roles: fc.subarray([...BUILT_IN, ...CUSTOM], {maxLength: 3}),
  sshPort: fc.constantFrom(undefined, undefined, 2222),
  allowCount: fc.integer({min: 0, max: 2}),
  allowSeeds: fc.array(fc.tuple(portSpec, fc.constantFrom<Protocol>('tcp', 'udp'), fc.nat(50)), {minLength: 2, maxLength: 2}),
});

const customRole = fc.record({
  accept: fc.array(fc.record({ports: fc.array(portSpec, {minLength: 1, maxLength: 3}), proto: fc.constantFrom<Protocol>('tcp', 'udp'), from: fc.nat(50)}), {maxLength: 2}),
  peers: fc.array(portSpec, {maxLength: 2}),
  peersProto: fc.constantFrom<Protocol>('tcp', 'udp'),
});

const fleetShape = fc.record({
  hosts: fc.array(hostShape, {minLength: 2, maxLength: 5}),
  custom: fc.tuple(customRole, customRole),
  appPeers: fc.array(portSpec, {maxLength: 2}),
  options: fc.record({strictOutbound: fc.boolean(), trustPrivate: fc.boolean(), logDrops: fc.boolean()}),
});

type FleetShape = typeof fleetShape extends fc.Arbitrary<infer T> ? T : never;

/** Turns a seed number into a `from` among every kind of source, including CIDRs that hold fleet or representative addresses. */
function pickSource(seed: number, hostNames: readonly string[]): string {
  const cidrs = ['10.132.0.0/24', '10.132.0.12/32', '198.18.0.0/15', '0.0.0.0/0', 'fd00:132::/64', '2001:db8::/32', 'fd00:132::11/128', '192.0.2.0/24'];
  const kinds = ['internet', 'private', ...BUILT_IN.filter((role) => role !== 'bastion'), ...CUSTOM, ...hostNames, ...cidrs];
  return kinds[seed % kinds.length] as string;
}

function inventoryJson(shape: FleetShape): unknown {
  const names = shape.hosts.map((_host, index) => `h${index}`);
  return {
    options: shape.options,
    roles: {
      app: {peers: shape.appPeers},
      ...Object.fromEntries(
        CUSTOM.map((name, index) => {
          const role = shape.custom[index]!;
          return [name, {
            accept: role.accept.map((opening) => ({ports: opening.ports, proto: opening.proto, from: pickSource(opening.from, names)})),
            peers: role.peers,
            peersProto: role.peersProto,
          }];
        }),
      ),
    },
    hosts: shape.hosts.map((host, index) => {
      const sides: Side[] = host.nics === 'both' ? ['public', 'private'] : [host.nics as Side];
      return {
        name: names[index],
        ssh: host.sshPort === undefined ? names[index] : `${names[index]}:${host.sshPort}`,
        roles: host.roles,
        allow: host.allowSeeds.slice(0, host.allowCount).map(([port, proto, from]) => ({port, proto, from: pickSource(from, names)})),
        interfaces: Object.fromEntries(sides.map((side) => [side, side === 'public' ? 'eth0' : 'ens4'])),
        addresses: Object.fromEntries(sides.map((side) => [side, addressesFor(index, side, side === 'public' ? host.publicFamilies : host.privateFamilies)])),
      };
    }),
  };
}

// ---------------------------------------------------------------------------
// The intent model: what the inventory asks for, from the inventory alone

interface Want {
  readonly proto?: Protocol; // undefined: every protocol
  readonly ports?: readonly PortRange[]; // undefined: every port
}

const ALL: PortRange = {first: 1, last: 65535};
const GENERIC_OUT: Record<Protocol, readonly PortRange[]> = {
  tcp: [{first: 53, last: 53}, {first: 80, last: 80}, {first: 443, last: 443}],
  udp: [{first: 53, last: 53}, {first: 123, last: 123}],
};

/** Role definitions as the documentation states them (built-ins) merged with the inventory's. */
function roleDefinitions(inv: Inventory): Map<string, {accept: {ports: readonly PortRange[]; proto: Protocol; from: string}[]; peers: readonly PortRange[]; peersProto: Protocol}> {
  const single = (port: number): PortRange => ({first: port, last: port});
  const documented = {
    bastion: {accept: [{ports: [single(22)], proto: 'tcp' as Protocol, from: 'internet'}], peers: [], peersProto: 'tcp' as Protocol},
    lb: {accept: [{ports: [single(80), single(443)], proto: 'tcp' as Protocol, from: 'internet'}], peers: [], peersProto: 'tcp' as Protocol},
    app: {accept: [{ports: [single(80), single(443)], proto: 'tcp' as Protocol, from: 'lb'}], peers: [], peersProto: 'tcp' as Protocol},
    db: {accept: [{ports: [single(3306)], proto: 'tcp' as Protocol, from: 'app'}], peers: [single(3306)], peersProto: 'tcp' as Protocol},
  };
  const roles = new Map<string, {accept: {ports: readonly PortRange[]; proto: Protocol; from: string}[]; peers: readonly PortRange[]; peersProto: Protocol}>();
  for (const name of new Set([...Object.keys(documented), ...Object.keys(inv.roles)])) {
    const base = documented[name as keyof typeof documented] ?? {accept: [], peers: [], peersProto: 'tcp' as Protocol};
    const override = inv.roles[name] ?? {};
    roles.set(name, {accept: [...(override.accept ?? base.accept)], peers: override.peers ?? base.peers, peersProto: override.peersProto ?? base.peersProto});
  }
  return roles;
}

interface Arrival {
  readonly source: string; // INTERNET, PRIVATE_TENANTS or a host name
  readonly address: string;
  readonly side: Side;
  readonly fleetSender?: string;
}

/** Which side fleet traffic uses: private when both ends have a private interface. */
function intendedSide(from: HostFacts, to: HostFacts): Side {
  return from.interfaces.private !== undefined && to.interfaces.private !== undefined ? 'private' : 'public';
}

function ofFamily(addresses: readonly string[], family: Family): string | undefined {
  return addresses.find((address) => parseAddress(address)?.family === family);
}

function unionRanges(ranges: readonly PortRange[]): PortRange[] {
  const merged: PortRange[] = [];
  for (const range of [...ranges].sort((a, b) => a.first - b.first)) {
    const last = merged[merged.length - 1];
    if (last && range.first <= last.last + 1) merged[merged.length - 1] = {first: last.first, last: Math.max(last.last, range.last)};
    else merged.push({...range});
  }
  return merged;
}

function intersectRanges(a: readonly PortRange[], b: readonly PortRange[]): PortRange[] {
  return unionRanges(a.flatMap((left) => b.flatMap((right) => {
    const first = Math.max(left.first, right.first);
    const last = Math.min(left.last, right.last);
    return first <= last ? [{first, last}] : [];
  })));
}

function intendedAccess(inv: Inventory): Map<string, PortRange[]> {
  const roles = roleDefinitions(inv);
  const facts = new Map(inv.hosts.map((host) => [host.name, factsFromInventory(host)!]));
  const sshPort = (name: string): number => {
    const match = /:(\d+)$/.exec(inv.hosts.find((host) => host.name === name)!.ssh);
    return match ? Number(match[1]) : 22;
  };
  const hasRole = (name: string, role: string): boolean => inv.hosts.find((host) => host.name === name)!.roles.includes(role);
  const taken = new Set(inv.hosts.flatMap((host) => [...(host.addresses?.public ?? []), ...(host.addresses?.private ?? [])]).map((text) => formatAddress(parseAddress(text)!)));
  const result = new Map<string, PortRange[]>();

  for (const destination of inv.hosts) {
    const to = facts.get(destination.name)!;
    for (const family of [4, 6] as const) {
      const arrivals: Arrival[] = [];
      const publicAddress = ofFamily(to.addresses.public, family);
      if (to.interfaces.public !== undefined && publicAddress) arrivals.push({source: INTERNET, address: INTERNET_ADDRESS[family], side: 'public'});
      for (const sender of inv.hosts) {
        if (sender === destination) continue;
        const from = facts.get(sender.name)!;
        const side = intendedSide(from, to);
        const fromAddress = ofFamily(from.addresses[side], family);
        if (to.interfaces[side] === undefined || from.interfaces[side] === undefined) continue;
        if (!fromAddress || !ofFamily(to.addresses[side], family)) continue;
        arrivals.push({source: sender.name, address: fromAddress, side, fleetSender: sender.name});
      }
      const privateAddress = ofFamily(to.addresses.private, family);
      if (to.interfaces.private !== undefined && privateAddress) {
        arrivals.push({source: PRIVATE_TENANTS, address: tenantAddress(privateAddress, taken)!, side: 'private'});
      }

      for (const arrival of arrivals) {
        // Wants granted to this arrival: by name (the sender's OUTPUT mirrors these), or by address/interface.
        const named: Want[] = [];
        const byAddress: Want[] = [];
        const sender = arrival.fleetSender;
        const matchesFrom = (from: string): 'named' | 'address' | undefined => {
          if (from === 'internet') return to.interfaces.public === undefined || arrival.side === 'public' ? 'address' : undefined;
          if (from === 'private') return sender ? 'named' : undefined;
          if (roles.has(from)) return sender && hasRole(sender, from) ? 'named' : undefined;
          if (inv.hosts.some((host) => host.name === from)) return sender === from ? 'named' : undefined;
          const network = parseNetwork(from)!;
          return networkContains(network, parseAddress(arrival.address)!) ? 'address' : undefined;
        };
        const grant = (from: string, want: Want): void => {
          const how = matchesFrom(from);
          if (how === 'named') named.push(want);
          if (how === 'address') byAddress.push(want);
        };
        if (sender && hasRole(sender, 'bastion')) named.push({proto: 'tcp', ports: [{first: sshPort(destination.name), last: sshPort(destination.name)}]});
        if (sender && inv.options.trustPrivate) named.push({});
        for (const roleName of destination.roles) {
          const role = roles.get(roleName)!;
          for (const opening of role.accept) grant(opening.from, {proto: opening.proto, ports: opening.ports});
          // A bastion stays reachable from the internet on the port its sshd listens on.
          if (roleName === 'bastion') grant('internet', {proto: 'tcp', ports: [{first: sshPort(destination.name), last: sshPort(destination.name)}]});
          if (sender && hasRole(sender, roleName) && role.peers.length > 0) named.push({proto: role.peersProto, ports: role.peers});
        }
        for (const allow of destination.allow) grant(allow.from, {proto: allow.proto, ports: allow.ports});

        const senderStrict = sender !== undefined && inv.options.strictOutbound && facts.get(sender)!.interfaces.public !== undefined;
        for (const protocol of ['tcp', 'udp'] as const) {
          const portsOf = (wants: readonly Want[]): PortRange[] =>
            unionRanges(wants.filter((want) => want.proto === undefined || want.proto === protocol).flatMap((want) => want.ports ?? [ALL]));
          const viaName = portsOf(named);
          const viaAddress = portsOf(byAddress);
          // A strict-outbound sender only lets out what is granted to it by name, plus DNS/NTP/HTTP(S).
          const ports = senderStrict ? unionRanges([...viaName, ...intersectRanges(viaAddress, GENERIC_OUT[protocol])]) : unionRanges([...viaName, ...viaAddress]);
          result.set(`${arrival.source}|${destination.name}|${family}|${protocol}`, ports);
        }
      }
    }
  }
  return result;
}

function observedAccess(cells: readonly AccessCell[]): Map<string, PortRange[]> {
  return new Map(cells.map((cell) => [`${cell.source}|${cell.destination}|${cell.family}|${cell.protocol}`, [...cell.ports]]));
}

// ---------------------------------------------------------------------------

describe('property: compiled rules give exactly the access the inventory asks for', () => {
  it('holds for random fleets (roles, custom roles, peers, 1-2 NICs, v4/v6, allows, options)', () => {
    let compiledFleets = 0;
    fc.assert(
      fc.property(fleetShape, (shape) => {
        let inventory: Inventory;
        try {
          inventory = validateInventory(inventoryJson(shape));
        } catch {
          return; // a combination the validator refuses (e.g. a role accepting from itself); not this property's concern
        }
        const facts = new Map(inventory.hosts.map((host) => [host.name, factsFromInventory(host)!]));
        const compiled = compileFleet(inventory, facts);
        compiledFleets += 1;
        const fleet: FleetHost[] = compiled.map((host) => ({name: host.host, facts: facts.get(host.host)!, compiled: host}));
        const cells = accessMatrix(fleet);
        expect(cells.flatMap((cell) => cell.uncertain)).toEqual([]);
        const observed = observedAccess(cells);
        const intended = intendedAccess(inventory);
        expect(new Map([...observed].filter(([, ports]) => ports.length > 0))).toEqual(
          new Map([...intended].filter(([, ports]) => ports.length > 0)),
        );
      }),
      {numRuns: 100},
    );
    // Most generated inventories must be valid, or the property proves little.
    expect(compiledFleets).toBeGreaterThan(60);
    // ~3 s alone; the generous limit is for a loaded machine (no timing is asserted).
  }, 120_000);
});
