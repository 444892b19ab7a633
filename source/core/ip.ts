// Addresses and prefixes as bigints, so the evaluator can match `-s`/`-d` exactly (including
// iptables-save's dotted netmasks) and do address arithmetic. Parsing and spelling come from
// addresses.ts, so the whole core reads and writes addresses one way.

import {formatAddress as formatBytes, readAddress} from './addresses.js';
import type {Family} from './model.js';
import {rememberedPerKey} from './remembered.js';

export interface IpAddress {
  readonly family: Family;
  readonly value: bigint;
}

/** A network: `value` has the host bits cleared; `mask` has the network bits set. */
export interface IpNetwork {
  readonly family: Family;
  readonly value: bigint;
  readonly mask: bigint;
}

const BITS: Record<Family, number> = {4: 32, 6: 128};

const ALL_ONES: Record<Family, bigint> = {4: (1n << 32n) - 1n, 6: (1n << 128n) - 1n};

function allOnes(family: Family): bigint {
  return ALL_ONES[family];
}

const WORD_SHIFTS = [96n, 64n, 32n, 0n];

/** The address as a number, built from 32-bit pieces (four bigint steps for IPv6, not sixteen). */
function toValue(bytes: readonly number[]): bigint {
  if (bytes.length === 4) return BigInt((((bytes[0] ?? 0) << 24) | ((bytes[1] ?? 0) << 16) | ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0)) >>> 0);
  // Zero words (the "::" of most IPv6 addresses) add nothing: skipped, each bigint step allocates.
  let value = 0n;
  for (let index = 0; index < bytes.length; index += 4) {
    const word = (((bytes[index] ?? 0) << 24) | ((bytes[index + 1] ?? 0) << 16) | ((bytes[index + 2] ?? 0) << 8) | (bytes[index + 3] ?? 0)) >>> 0;
    if (word !== 0) value |= BigInt(word) << (WORD_SHIFTS[index >> 2] ?? 0n);
  }
  return value;
}

// A large fleet reads the same addresses many times over (compiler, access, lockout): each
// spelling is read once, and its numeric form kept with the reading (addresses.ts). Spellings
// with a zone (fe80::1%eth0) are remembered on their own. Results are shared: read-only by type,
// not frozen (freezing costs about as much as the read).

/** Parses a plain address (no prefix); the spelling rules live in addresses.ts. */
export function parseAddress(text: string): IpAddress | undefined {
  if (text.includes('%')) return parseZoned(text);
  const reading = readAddress(text);
  if (!reading) return undefined;
  reading.numeric ??= {family: reading.family, value: toValue(reading.bytes)};
  return reading.numeric;
}

const parseZoned = rememberedPerKey((text) => parseAddress(text.split('%')[0] ?? ''));

/** The mask of each prefix length, made once (bigints are values: shared safely). */
const MASKS: Record<Family, bigint[]> = {4: [], 6: []};

function maskFromPrefix(family: Family, prefix: number): bigint {
  const bits = BITS[family];
  return (MASKS[family][prefix] ??= prefix === 0 ? 0n : (allOnes(family) >> BigInt(bits - prefix)) << BigInt(bits - prefix));
}

/**
 * Parses `addr`, `addr/len` or `addr/netmask` (iptables-save prints a dotted or colon
 * netmask when it is not contiguous). A bare address is a single-host network. The `-s`/`-d`
 * spellings recur across a fleet's rulesets: each is read once.
 */
export const parseNetwork: (text: string) => IpNetwork | undefined = rememberedPerKey(parseNetworkUncached);

function parseNetworkUncached(text: string): IpNetwork | undefined {
  const slash = text.indexOf('/');
  const address = parseAddress(slash === -1 ? text : text.slice(0, slash));
  if (!address) return undefined;
  let mask = allOnes(address.family);
  if (slash !== -1) {
    const suffix = text.slice(slash + 1);
    if (/^\d{1,3}$/.test(suffix)) {
      const prefix = Number(suffix);
      if (prefix > BITS[address.family]) return undefined;
      mask = maskFromPrefix(address.family, prefix);
    } else {
      const netmask = parseAddress(suffix);
      if (!netmask || netmask.family !== address.family) return undefined;
      mask = netmask.value;
    }
  }
  // A host network (/32, /128, the usual -s/-d) keeps the address's own number.
  return {family: address.family, value: mask === allOnes(address.family) ? address.value : address.value & mask, mask};
}

/**
 * A map key for an address value within its family. (Not the bigint itself: V8 hashes a bigint
 * by its low 64 bits, and a fleet's IPv6 addresses often differ only above them.)
 */
export function valueKey(address: {readonly family: Family; readonly value: bigint}): number | string {
  return address.family === 4 ? Number(address.value) : address.value.toString(16);
}

/** A network of one address (a /32 or /128): what most rule addresses are. */
export function isHostNetwork(network: IpNetwork): boolean {
  return network.mask === ALL_ONES[network.family];
}

export function networkContains(network: IpNetwork, address: IpAddress): boolean {
  if (network.family !== address.family) return false;
  // A host network is an equality test: no masked copy of the address to allocate.
  if (isHostNetwork(network)) return address.value === network.value;
  return (address.value & network.mask) === network.value;
}

export function formatAddress(address: IpAddress): string {
  // Taken apart in 32-bit words (one bigint step per word, not one per byte).
  const words = address.family === 4 ? [Number(address.value)] : WORD_SHIFTS.map((shift) => Number(BigInt.asUintN(32, address.value >> shift)));
  const bytes: number[] = [];
  for (const word of words) bytes.push(word >>> 24, (word >>> 16) & 0xff, (word >>> 8) & 0xff, word & 0xff);
  return formatBytes({family: address.family, bytes});
}

export function familyOf(text: string): Family | undefined {
  return parseAddress(text)?.family;
}

export function sameAddress(a: string, b: string): boolean {
  const left = parseAddress(a);
  const right = parseAddress(b);
  return left !== undefined && right !== undefined && left.family === right.family && left.value === right.value;
}
