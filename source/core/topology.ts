// Which interface and addresses carry traffic between two fleet hosts. Shared by the
// compiler and the evaluator so both agree on the path a packet takes.
import {canonicalAddress} from './addresses.js';
import type {HostFacts} from './model.js';

export interface FleetPath {
  /** The sender's interface (for OUTPUT rules), when known. */
  readonly fromInterface?: string;
  /** The receiver's interface (for INPUT rules), when known. */
  readonly toInterface?: string;
  readonly side: 'private' | 'public';
  /** Canonical plain addresses the sender uses on that side (IPv4 and IPv6 mixed). */
  readonly fromAddresses: readonly string[];
  /** Canonical plain addresses the receiver has on that side. */
  readonly toAddresses: readonly string[];
}

/** A host's addresses in their canonical spelling: spelled out once per list, not once per peer (large fleets pair every host with many). */
const canonicalLists = new WeakMap<readonly string[], readonly string[]>();

export function canonicalList(addresses: readonly string[]): readonly string[] {
  let list = canonicalLists.get(addresses);
  if (!list) {
    // (A list spelled canonically already, as an inventory's are, is its own.)
    list = addresses.every((address) => canonicalAddress(address) === address)
      ? addresses
      : addresses.map((address) => canonicalAddress(address) ?? address);
    canonicalLists.set(addresses, list);
  }
  return list;
}

/** The side of fleetPath, without spelling out its addresses. */
export function fleetSide(from: {readonly facts: HostFacts}, to: {readonly facts: HostFacts}): 'private' | 'public' {
  return from.facts.interfaces.private !== undefined && to.facts.interfaces.private !== undefined ? 'private' : 'public';
}

/**
 * Fleet traffic goes over the private network when both hosts have a private interface;
 * otherwise (a single-NIC host on either end) it falls back to the public side. When the
 * two share no side at all, the path has no addresses on one end and carries nothing.
 */
export function fleetPath(from: {readonly facts: HostFacts}, to: {readonly facts: HostFacts}): FleetPath {
  const side = fleetSide(from, to);
  const fromInterface = from.facts.interfaces[side];
  const toInterface = to.facts.interfaces[side];
  return {
    side,
    ...(fromInterface === undefined ? {} : {fromInterface}),
    ...(toInterface === undefined ? {} : {toInterface}),
    fromAddresses: canonicalList(from.facts.addresses[side]),
    toAddresses: canonicalList(to.facts.addresses[side]),
  };
}
