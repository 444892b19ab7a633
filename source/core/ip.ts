// Small pure helpers for IPv4/IPv6 addresses and prefixes, as bigints, so the evaluator can
// match `-s`/`-d` exactly (including iptables-save's dotted netmasks) without any I/O.

import type {Family} from './model.js';

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

function allOnes(family: Family): bigint {
  return (1n << BigInt(BITS[family])) - 1n;
}

function parseIpv4(text: string): bigint | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = (value << 8n) | BigInt(octet);
  }
  return value;
}

function parseIpv6(text: string): bigint | undefined {
  const zoneless = text.split('%')[0] ?? '';
  let head = zoneless;
  let tail = '';
  const doubleColon = zoneless.indexOf('::');
  if (doubleColon !== -1) {
    if (zoneless.indexOf('::', doubleColon + 1) !== -1) return undefined;
    head = zoneless.slice(0, doubleColon);
    tail = zoneless.slice(doubleColon + 2);
  }
  const toGroups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const groups: number[] = [];
    const pieces = part.split(':');
    for (const [index, piece] of pieces.entries()) {
      // An embedded IPv4 address may end the address (::ffff:192.0.2.1).
      if (index === pieces.length - 1 && piece.includes('.')) {
        const v4 = parseIpv4(piece);
        if (v4 === undefined) return undefined;
        groups.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(piece)) return undefined;
      groups.push(parseInt(piece, 16));
    }
    return groups;
  };
  const headGroups = toGroups(head);
  const tailGroups = toGroups(tail);
  if (!headGroups || !tailGroups) return undefined;
  const missing = 8 - headGroups.length - tailGroups.length;
  if (doubleColon === -1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...headGroups, ...Array<number>(doubleColon === -1 ? 0 : missing).fill(0), ...tailGroups];
  return groups.reduce((value, group) => (value << 16n) | BigInt(group), 0n);
}

/** Parses a plain address (no prefix). */
export function parseAddress(text: string): IpAddress | undefined {
  const v4 = parseIpv4(text);
  if (v4 !== undefined) return {family: 4, value: v4};
  if (!text.includes(':')) return undefined;
  const v6 = parseIpv6(text);
  return v6 === undefined ? undefined : {family: 6, value: v6};
}

function maskFromPrefix(family: Family, prefix: number): bigint {
  const bits = BITS[family];
  return prefix === 0 ? 0n : (allOnes(family) >> BigInt(bits - prefix)) << BigInt(bits - prefix);
}

/**
 * Parses `addr`, `addr/len` or `addr/netmask` (iptables-save prints a dotted or colon
 * netmask when it is not contiguous). A bare address is a single-host network.
 */
export function parseNetwork(text: string): IpNetwork | undefined {
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
  return {family: address.family, value: address.value & mask, mask};
}

export function networkContains(network: IpNetwork, address: IpAddress): boolean {
  return network.family === address.family && (address.value & network.mask) === network.value;
}

export function formatAddress(address: IpAddress): string {
  if (address.family === 4) {
    const octets = [24n, 16n, 8n, 0n].map((shift) => String((address.value >> shift) & 0xffn));
    return octets.join('.');
  }
  const groups = Array.from({length: 8}, (_, index) => Number((address.value >> BigInt(112 - 16 * index)) & 0xffffn));
  // RFC 5952: compress the longest run (of two or more) of zero groups.
  let bestStart = -1;
  let bestLength = 0;
  for (let start = 0; start < 8; ) {
    if (groups[start] !== 0) {
      start += 1;
      continue;
    }
    let end = start;
    while (end < 8 && groups[end] === 0) end += 1;
    if (end - start > bestLength && end - start >= 2) {
      bestStart = start;
      bestLength = end - start;
    }
    start = end;
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

export function familyOf(text: string): Family | undefined {
  return parseAddress(text)?.family;
}

export function sameAddress(a: string, b: string): boolean {
  const left = parseAddress(a);
  const right = parseAddress(b);
  return left !== undefined && right !== undefined && left.family === right.family && left.value === right.value;
}
