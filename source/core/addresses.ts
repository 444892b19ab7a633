// IP address and CIDR parsing, pure (no node:net): core stays free of Node modules.
// Canonical text is what iptables-save / ip6tables-save print, so compiled rules
// compare equal to what a server reports back.
import type {Family} from './model.js';

export interface ParsedAddress {
  readonly family: Family;
  /** 4 bytes for IPv4, 16 for IPv6. */
  readonly bytes: readonly number[];
}

export interface Cidr {
  readonly family: Family;
  readonly bytes: readonly number[];
  readonly prefix: number;
  /** Canonical text with prefix, e.g. 10.0.0.0/8, fd00::/64, 10.1.2.3/32, ::/0. */
  readonly text: string;
}

const IPV4_OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

function parseIpv4Bytes(text: string): number[] | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const bytes: number[] = [];
  for (const part of parts) {
    if (!IPV4_OCTET.test(part)) return undefined;
    bytes.push(Number(part));
  }
  return bytes;
}

function parseIpv6Bytes(text: string): number[] | undefined {
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parseGroups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const groups = part.split(':');
    const words: number[] = [];
    for (const [index, group] of groups.entries()) {
      // An embedded IPv4 address may only close the address.
      if (group.includes('.')) {
        if (index !== groups.length - 1) return undefined;
        const v4 = parseIpv4Bytes(group);
        if (!v4) return undefined;
        words.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
        continue;
      }
      if (!/^[0-9A-Fa-f]{1,4}$/.test(group)) return undefined;
      words.push(parseInt(group, 16));
    }
    return words;
  };
  const head = parseGroups(halves[0] ?? '');
  const tail = halves.length === 2 ? parseGroups(halves[1] ?? '') : [];
  if (!head || !tail) return undefined;
  let words: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return undefined;
    words = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    if (head.length !== 8) return undefined;
    words = head;
  }
  return words.flatMap((word) => [word >> 8, word & 0xff]);
}

// A large fleet reads the same few addresses many times over (validation, compiler, access,
// lockout): each spelling is parsed once. Results are frozen, so sharing them is safe.
const PARSE_CACHE_LIMIT = 200_000;
const parsedCache = new Map<string, ParsedAddress | null>();
const canonicalCache = new Map<string, string | null>();

/** A plain address (no prefix), IPv4 or IPv6. */
export function parseAddress(text: string): ParsedAddress | undefined {
  let parsed = parsedCache.get(text);
  if (parsed === undefined) {
    parsed = parseUncached(text) ?? null;
    if (parsedCache.size >= PARSE_CACHE_LIMIT) parsedCache.clear();
    parsedCache.set(text, parsed);
  }
  return parsed ?? undefined;
}

function parseUncached(text: string): ParsedAddress | undefined {
  const v4 = parseIpv4Bytes(text);
  if (v4) return Object.freeze({family: 4, bytes: Object.freeze(v4)});
  const v6 = text.includes(':') ? parseIpv6Bytes(text) : undefined;
  if (v6) return Object.freeze({family: 6, bytes: Object.freeze(v6)});
  return undefined;
}

export function addressFamily(text: string): Family | undefined {
  return parseAddress(text)?.family;
}

/** Formats IPv6 like glibc's inet_ntop (RFC 5952 compression, embedded IPv4 for mapped/compatible forms). */
function formatIpv6(bytes: readonly number[]): string {
  const words: number[] = [];
  for (let index = 0; index < 16; index += 2) words.push(((bytes[index] ?? 0) << 8) | (bytes[index + 1] ?? 0));
  // Longest run of zero words (length >= 2), the first one on a tie.
  let bestBase = -1;
  let bestLength = 0;
  for (let index = 0; index < 8; ) {
    if (words[index] !== 0) {
      index += 1;
      continue;
    }
    let end = index;
    while (end < 8 && words[end] === 0) end += 1;
    if (end - index > bestLength) {
      bestBase = index;
      bestLength = end - index;
    }
    index = end;
  }
  if (bestLength < 2) bestBase = -1;
  const embedsIpv4 =
    bestBase === 0 &&
    (bestLength === 6 || (bestLength === 7 && words[7] !== 0x0001) || (bestLength === 5 && words[5] === 0xffff));
  let text = '';
  for (let index = 0; index < 8; index += 1) {
    if (bestBase !== -1 && index >= bestBase && index < bestBase + bestLength) {
      if (index === bestBase) text += ':';
      continue;
    }
    if (index !== 0) text += ':';
    if (index === 6 && embedsIpv4) {
      text += bytes.slice(12, 16).join('.');
      break;
    }
    text += (words[index] ?? 0).toString(16);
  }
  if (bestBase !== -1 && bestBase + bestLength === 8) text += ':';
  return text;
}

export function formatAddress(address: ParsedAddress): string {
  return address.family === 4 ? address.bytes.join('.') : formatIpv6(address.bytes);
}

/** The canonical spelling of a plain address, or undefined when it is not one. */
export function canonicalAddress(text: string): string | undefined {
  let canonical = canonicalCache.get(text);
  if (canonical === undefined) {
    const parsed = parseAddress(text);
    canonical = parsed ? formatAddress(parsed) : null;
    if (canonicalCache.size >= PARSE_CACHE_LIMIT) canonicalCache.clear();
    canonicalCache.set(text, canonical);
  }
  return canonical ?? undefined;
}

export type CidrResult =
  | {readonly ok: true; readonly cidr: Cidr}
  | {readonly ok: false; readonly reason: string};

/**
 * Parses "address" or "address/prefix". Refuses host bits beyond the prefix (10.0.0.5/8):
 * iptables would silently widen it, and a firewall should not guess what was meant.
 */
export function parseCidrDetailed(text: string): CidrResult {
  const slash = text.indexOf('/');
  const addressText = slash === -1 ? text : text.slice(0, slash);
  const address = parseAddress(addressText);
  if (!address) return {ok: false, reason: 'is not an IPv4/IPv6 address or CIDR'};
  const maxPrefix = address.family === 4 ? 32 : 128;
  let prefix = maxPrefix;
  if (slash !== -1) {
    const prefixText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > maxPrefix) {
      return {ok: false, reason: `has a bad prefix length (0-${maxPrefix})`};
    }
    prefix = Number(prefixText);
  }
  const masked = address.bytes.map((byte, index) => {
    const bitsKept = Math.max(0, Math.min(8, prefix - index * 8));
    return byte & ((0xff << (8 - bitsKept)) & 0xff);
  });
  if (masked.some((byte, index) => byte !== address.bytes[index])) {
    const network = formatAddress({family: address.family, bytes: masked});
    return {ok: false, reason: `has host bits set (did you mean ${network}/${prefix}?)`};
  }
  const canonical = formatAddress(address);
  return {ok: true, cidr: {family: address.family, bytes: masked, prefix, text: `${canonical}/${prefix}`}};
}

export function parseCidr(text: string): Cidr | undefined {
  const result = parseCidrDetailed(text);
  return result.ok ? result.cidr : undefined;
}

/** True when the address lies inside the CIDR (same family). */
export function cidrContains(cidr: Cidr, address: ParsedAddress): boolean {
  if (cidr.family !== address.family) return false;
  for (let bit = 0; bit < cidr.prefix; bit += 1) {
    const byteIndex = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    if (((cidr.bytes[byteIndex] ?? 0) & mask) !== ((address.bytes[byteIndex] ?? 0) & mask)) return false;
  }
  return true;
}

const PRIVATE_RANGES = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', 'fc00::/7']
  .map((text) => parseCidr(text))
  .filter((cidr): cidr is Cidr => cidr !== undefined);

/** RFC 1918, carrier-grade NAT (RFC 6598) and IPv6 unique-local addresses. */
export function isPrivateAddress(text: string): boolean {
  const address = parseAddress(text);
  return address !== undefined && PRIVATE_RANGES.some((range) => cidrContains(range, address));
}

/** The iptables `-s`/`-d` argument for a single address: canonical, with /32 or /128. */
export function hostCidrText(text: string): string | undefined {
  const address = parseAddress(text);
  if (!address) return undefined;
  return `${formatAddress(address)}/${address.family === 4 ? 32 : 128}`;
}
