// IP address and CIDR parsing, pure (no node:net): core stays free of Node modules.
// Canonical text is what iptables-save / ip6tables-save print, so compiled rules
// compare equal to what a server reports back.
import type {IpAddress} from './ip.js';
import type {Family} from './model.js';
import {rememberedPerKey, type RememberedOr} from './remembered.js';

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

const DOT = 0x2e;
const COLON = 0x3a;

/**
 * Dotted-quad IPv4: four decimal octets 0-255, no leading zeros ("01" is refused: some
 * parsers read it as octal). Read character by character: every address of a fleet passes here.
 */
function parseIpv4Bytes(text: string, start = 0, end = text.length): number[] | undefined {
  // The four octets are packed into one number while reading, and the array is made once, at
  // its size: every reading keeps its bytes for the whole run (a pushed-to array keeps room for 17).
  let packed = 0;
  let octets = 0;
  let value = 0;
  let digits = 0;
  for (let index = start; index <= end; index += 1) {
    const code = index === end ? DOT : text.charCodeAt(index);
    if (code === DOT) {
      if (digits === 0 || octets === 4) return undefined;
      packed = packed * 256 + value;
      octets += 1;
      value = 0;
      digits = 0;
    } else if (code >= 0x30 && code <= 0x39) {
      if (digits > 0 && value === 0) return undefined; // a leading zero
      value = value * 10 + (code - 0x30);
      digits += 1;
      if (value > 255) return undefined;
    } else {
      return undefined;
    }
  }
  if (octets !== 4) return undefined;
  return [Math.floor(packed / 0x1000000), Math.floor(packed / 0x10000) % 256, Math.floor(packed / 0x100) % 256, packed % 256];
}

function hexDigit(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x66) return code - 0x61 + 10;
  if (code >= 0x41 && code <= 0x46) return code - 0x41 + 10;
  return -1;
}

/**
 * Writes the 16-bit words of `text[start, end)` (colon-separated groups of 1-4 hex digits;
 * the last group may be an embedded IPv4 address, two words) to `words` from index 0, and
 * answers how many; -1 when malformed or longer than an address (8 words).
 */
function parseWords(text: string, start: number, end: number, words: number[]): number {
  if (start === end) return 0;
  let count = 0;
  let groupStart = start;
  let word = 0;
  for (let index = start; index <= end; index += 1) {
    const code = index === end ? COLON : text.charCodeAt(index);
    if (code === DOT) {
      // An embedded IPv4 address may only close the address: no colon after it.
      for (let rest = index + 1; rest < end; rest += 1) if (text.charCodeAt(rest) === COLON) return -1;
      const v4 = parseIpv4Bytes(text, groupStart, end);
      if (!v4 || count > 6) return -1;
      words[count] = ((v4[0] ?? 0) << 8) | (v4[1] ?? 0);
      words[count + 1] = ((v4[2] ?? 0) << 8) | (v4[3] ?? 0);
      return count + 2;
    }
    if (code !== COLON) {
      const digit = hexDigit(code);
      // (A group of an embedded IPv4 address fails these too: decimal digits, at most three.)
      if (digit === -1 || index - groupStart >= 4) return -1;
      word = word * 16 + digit;
      continue;
    }
    if (index === groupStart || count === 8) return -1; // an empty group, or a ninth word
    words[count] = word;
    count += 1;
    word = 0;
    groupStart = index + 1;
  }
  return count;
}

// parseIpv6Bytes's words before and after "::": two lists reused by every reading (it is never
// re-entered), not two new ones each.
const HEAD_WORDS = [0, 0, 0, 0, 0, 0, 0, 0];
const TAIL_WORDS = [0, 0, 0, 0, 0, 0, 0, 0];

function parseIpv6Bytes(text: string): number[] | undefined {
  // At most one "::" (":::" has an empty group on one side, and is refused there too).
  const gap = text.indexOf('::');
  if (gap !== -1 && text.indexOf('::', gap + 1) !== -1) return undefined;
  const head = HEAD_WORDS;
  const tail = TAIL_WORDS;
  const headLength = parseWords(text, 0, gap === -1 ? text.length : gap, head);
  if (headLength === -1) return undefined;
  const tailLength = gap === -1 ? 0 : parseWords(text, gap + 2, text.length, tail);
  if (tailLength === -1) return undefined;
  if (gap !== -1 ? headLength + tailLength > 7 : headLength !== 8) return undefined;
  // The "::" gap is zeros already: the head's words go first, the tail's last.
  const bytes = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // a literal: a packed array
  for (let index = 0; index < headLength; index += 1) {
    bytes[2 * index] = (head[index] ?? 0) >> 8;
    bytes[2 * index + 1] = (head[index] ?? 0) & 0xff;
  }
  for (let index = 0, at = 8 - tailLength; index < tailLength; index += 1, at += 1) {
    bytes[2 * at] = (tail[index] ?? 0) >> 8;
    bytes[2 * at + 1] = (tail[index] ?? 0) & 0xff;
  }
  return bytes;
}

/**
 * Everything read from one spelling of an address, in one cache entry: its bytes, its canonical
 * spelling, and once asked, its `-s`/`-d` text (hostCidrText) and ip.ts's numeric form.
 */
export interface AddressReading extends ParsedAddress {
  readonly canonical: string;
  /** hostCidrText's answer, once asked. */
  hostCidr?: string;
  /** ip.ts's numeric form, once asked (kept here so one spelling costs one cache entry). */
  numeric?: IpAddress;
}

// A large fleet reads the same few addresses many times over (validation, compiler, access,
// lockout): each spelling is read once, and the reading shared. Its types are read-only; it is
// not frozen (Object.freeze would cost about as much as the read itself).
/** The reading of a plain address (no prefix), IPv4 or IPv6; undefined when it is not one. */
export const readAddress: (text: string) => AddressReading | undefined = rememberedPerKey(readUncached);

/** A plain address (no prefix), IPv4 or IPv6. */
export function parseAddress(text: string): ParsedAddress | undefined {
  return readAddress(text);
}

function readUncached(text: string, rememberedOr: RememberedOr<AddressReading>): AddressReading | undefined {
  const v4 = parseIpv4Bytes(text);
  // IPv4 is only read in its canonical spelling (decimal, no leading zeros): it is its own.
  if (v4) return newReading(4, v4, text);
  const v6 = text.includes(':') ? parseIpv6Bytes(text) : undefined;
  if (!v6) return undefined;
  const canonical = formatIpv6(v6);
  if (canonical === text) return newReading(6, v6, text);
  // Another spelling of an IPv6 address shares the canonical spelling's reading, remembered under
  // that spelling too (the inventory keeps the canonical one, and every later step reads that).
  return rememberedOr(canonical, () => newReading(6, v6, canonical));
}

/** All fields present from the start: every reading has one shape, and no property store added later. */
function newReading(family: Family, bytes: readonly number[], canonical: string): AddressReading {
  return {family, bytes, canonical, hostCidr: undefined, numeric: undefined};
}

export function addressFamily(text: string): Family | undefined {
  return parseAddress(text)?.family;
}

/** formatIpv6's words: one list reused (it is never re-entered). */
const FORMAT_WORDS = [0, 0, 0, 0, 0, 0, 0, 0];

/** Formats IPv6 like glibc's inet_ntop (RFC 5952 compression, embedded IPv4 for mapped/compatible forms). */
function formatIpv6(bytes: readonly number[]): string {
  const words = FORMAT_WORDS;
  for (let index = 0; index < 8; index += 1) words[index] = ((bytes[2 * index] ?? 0) << 8) | (bytes[2 * index + 1] ?? 0);
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
  return readAddress(text)?.canonical;
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
  const reading = readAddress(text);
  return reading && hostCidrOf(reading);
}

/** hostCidrText of an address already read. */
export function hostCidrOf(reading: AddressReading): string {
  reading.hostCidr ??= `${reading.canonical}/${reading.family === 4 ? 32 : 128}`;
  return reading.hostCidr;
}
