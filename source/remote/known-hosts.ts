// known_hosts lookups the way OpenSSH does them: plain and hashed (|1|salt|hash, HMAC-SHA1) names,
// `[host]:port` for ports other than 22, comma lists, wildcards and negations, `@revoked` lines.
// `@cert-authority` lines are ignored (we never accept host certificates).
import {createHash, createHmac, randomBytes} from 'node:crypto';
import type {ServerHostKeyAlgorithm} from 'ssh2';

export interface KnownHostEntry {
  readonly marker?: 'revoked' | 'cert-authority';
  /** The host field as written: a comma list of patterns, or one |1|salt|hash. */
  readonly hosts: string;
  readonly keyType: string;
  /** The base64 key blob. */
  readonly key: string;
  readonly line: number;
}

export type HostKeyStatus =
  | {readonly kind: 'known'}
  | {readonly kind: 'unknown'}
  /** A known entry for this name with a different key of the same type. */
  | {readonly kind: 'changed'; readonly expectedFingerprints: readonly string[]; readonly lines: readonly number[]}
  /**
   * Known by other key types only: refused like a changed key (OpenSSH says "key type changed"),
   * never "unknown", so accept-new cannot trust a key the operator never saw for a known host.
   */
  | {readonly kind: 'other-type'; readonly knownTypes: readonly string[]; readonly lines: readonly number[]}
  | {readonly kind: 'revoked'};

/** The name known_hosts stores: `host` for port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** The key type inside an SSH wire-format public key blob (its first string). */
export function keyTypeOfBlob(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const length = blob.readUInt32BE(0);
  if (length > blob.length - 4 || length > 64) return 'unknown';
  return blob.subarray(4, 4 + length).toString('latin1');
}

/** OpenSSH's fingerprint: `SHA256:` + base64 of the blob's SHA-256, without padding. */
export function fingerprintSha256(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

export function parseKnownHosts(text: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (fields[0]?.startsWith('@')) {
      const name = fields.shift()!.slice(1);
      if (name !== 'revoked' && name !== 'cert-authority') return; // unknown marker: skip like OpenSSH
      marker = name;
    }
    const [hosts, keyType, key] = fields;
    if (!hosts || !keyType || !key) return;
    entries.push({...(marker ? {marker} : {}), hosts, keyType, key, line: index + 1});
  });
  return entries;
}

/** Does an entry's host field name `name` (already in `[host]:port` form when needed)? */
export function hostFieldMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith('|1|')) {
    const [, , salt, hash] = hosts.split('|');
    if (!salt || !hash) return false;
    const computed = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
    return computed === hash;
  }
  let matched = false;
  for (const pattern of hosts.split(',')) {
    const negated = pattern.startsWith('!');
    const body = negated ? pattern.slice(1) : pattern;
    if (wildcardMatch(body.toLowerCase(), name.toLowerCase())) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

function wildcardMatch(pattern: string, text: string): boolean {
  const regex = new RegExp(
    '^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$',
  );
  return regex.test(text);
}

/**
 * Checks a server's key against known_hosts text for the logical host name (HostKeyAlias or the
 * config's HostName, never a jump's forwarded address) and port.
 */
export function checkHostKey(text: string, host: string, port: number, blob: Buffer): HostKeyStatus {
  const name = knownHostsName(host, port);
  const keyType = keyTypeOfBlob(blob);
  const key = blob.toString('base64');
  const entries = parseKnownHosts(text).filter((entry) => hostFieldMatches(entry.hosts, name));
  if (entries.some((entry) => entry.marker === 'revoked' && entry.key === key)) return {kind: 'revoked'};
  const plain = entries.filter((entry) => entry.marker === undefined);
  if (plain.some((entry) => entry.keyType === keyType && entry.key === key)) return {kind: 'known'};
  const sameType = plain.filter((entry) => entry.keyType === keyType);
  if (sameType.length > 0) {
    return {
      kind: 'changed',
      expectedFingerprints: sameType.map((entry) => fingerprintSha256(Buffer.from(entry.key, 'base64'))),
      lines: sameType.map((entry) => entry.line),
    };
  }
  if (plain.length > 0) {
    return {kind: 'other-type', knownTypes: [...new Set(plain.map((entry) => entry.keyType))], lines: plain.map((entry) => entry.line)};
  }
  return {kind: 'unknown'};
}

/** The key types known_hosts holds for this name and port (revoked and CA lines aside), in file order. */
export function knownKeyTypes(text: string, host: string, port: number): string[] {
  const name = knownHostsName(host, port);
  const types = parseKnownHosts(text)
    .filter((entry) => entry.marker === undefined && hostFieldMatches(entry.hosts, name))
    .map((entry) => entry.keyType);
  return [...new Set(types)];
}

/** ssh2's default host key algorithms, in its order of preference. */
const DEFAULT_HOST_KEY_ALGORITHMS: readonly ServerHostKeyAlgorithm[] = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
];

/** The signature algorithms that prove a key of this known_hosts type. */
function algorithmsForKeyType(keyType: string): string[] {
  return keyType === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [keyType];
}

/**
 * The host key algorithms to offer, those of the known key types first (as OpenSSH orders them),
 * so a server with several host keys shows the one we know instead of looking unknown.
 */
export function preferredHostKeyAlgorithms(knownTypes: readonly string[]): ServerHostKeyAlgorithm[] {
  const known = new Set<string>(knownTypes.flatMap(algorithmsForKeyType));
  return [
    ...DEFAULT_HOST_KEY_ALGORITHMS.filter((algorithm) => known.has(algorithm)),
    ...DEFAULT_HOST_KEY_ALGORITHMS.filter((algorithm) => !known.has(algorithm)),
  ];
}

/** A line to append, like OpenSSH's accept-new (hashed when the file already uses hashed names). */
export function knownHostsLine(host: string, port: number, blob: Buffer, hashed = false): string {
  const name = knownHostsName(host, port);
  const field = hashed ? hashHostName(name) : name;
  return `${field} ${keyTypeOfBlob(blob)} ${blob.toString('base64')}`;
}

export function hashHostName(name: string, salt: Buffer = randomBytes(20)): string {
  const hash = createHmac('sha1', salt).update(name).digest('base64');
  return `|1|${salt.toString('base64')}|${hash}`;
}

/** True when the file's entries are hashed (then new entries are hashed too, like HashKnownHosts). */
export function usesHashedNames(text: string): boolean {
  const entries = parseKnownHosts(text);
  return entries.length > 0 && entries.every((entry) => entry.hosts.startsWith('|1|'));
}
