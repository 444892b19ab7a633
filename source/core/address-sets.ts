// Named sets of fleet host addresses, shared by the rules of every host that admits (or, with
// strict outbound, reaches) the same group of hosts: "every db admits every app server" is one
// set of the app servers' addresses and one rule per database, not one rule per pair.
//
// A grouped rule reads as ipset's match, `-m set --match-set NAME src` (`dst` in OUTPUT); its
// set is found from the rule's spec (setOfSpec), never by name alone, so two compilations in one
// process (the wizard recompiles on every edit) cannot read each other's sets.
import {parseNetwork, valueKey, type IpAddress} from './ip.js';
import type {Family} from './model.js';

export interface AddressSet {
  readonly name: string;
  /** Who the addresses are, for people: a role's name, or "fleet". */
  readonly label: string;
  readonly family: Family;
  /** Host CIDRs (`10.0.0.1/32`), each once, in the members' order. */
  readonly elements: readonly string[];
  /** The fleet hosts holding these addresses, in inventory order (a host may hold several, or share one). */
  readonly members: readonly string[];
  has(address: IpAddress): boolean;
}

export function addressSet(name: string, label: string, family: Family, elements: readonly string[], members: readonly string[]): AddressSet {
  let keys: Set<number | string> | undefined;
  return {
    name,
    label,
    family,
    elements,
    members,
    has(address) {
      if (address.family !== family) return false;
      if (!keys) {
        keys = new Set();
        for (const element of elements) {
          const network = parseNetwork(element);
          if (network) keys.add(valueKey(network));
        }
      }
      return keys.has(valueKey(address));
    },
  };
}

const setsOfSpecs = new WeakMap<readonly string[], AddressSet>();

/** The set a grouped rule's `--match-set` names (undefined: not a grouped rule of ours, e.g. one read from a server). */
export function setOfSpec(spec: readonly string[]): AddressSet | undefined {
  return setsOfSpecs.get(spec);
}

/** A grouped rule's spec, tied to its set: `-m set --match-set NAME src|dst` then `rest`. */
export function setSpec(set: AddressSet, direction: 'src' | 'dst', before: readonly string[], rest: readonly string[]): readonly string[] {
  const spec = [...before, '-m', 'set', '--match-set', set.name, direction, ...rest];
  setsOfSpecs.set(spec, set);
  return spec;
}
