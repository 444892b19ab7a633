import {execFileSync} from 'node:child_process';
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {describe, expect, it} from 'vitest';
import {
  checkHostKey,
  fingerprintSha256,
  hashHostName,
  hostFieldMatches,
  keyTypeOfBlob,
  knownHostsLine,
  knownHostsName,
  knownKeyTypes,
  parseKnownHosts,
  preferredHostKeyAlgorithms,
  usesHashedNames,
} from '../../source/remote/known-hosts.js';

// Real keys made with ssh-keygen; fingerprints and hashed lines are what OpenSSH printed for them.
const K1 = 'AAAAC3NzaC1lZDI1NTE5AAAAIBP0DWkZKV0EUi4jqcbuIP8J7jxpv7fOzusXZl3P/NHF';
const K1_FP = 'SHA256:n+3EjzfC4t4Vv38jgGzFqhbj0TCmaxe3gFhRxNR6MUg';
const K2 = 'AAAAC3NzaC1lZDI1NTE5AAAAIAHT/GTO8YyMy6HpC5V8ak//5mMTBwHYsqCoN1JXJSqx';
const K2_FP = 'SHA256:8qSUF/ih4py0y3hlAdgrHKpbXBKX8E2NInHEj2GB0fc';
const K3 =
  'AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBABbzHiOYt2GP45goMXBdLuQ5xX60FOK540M71vR5e1XihU4ge3oI6MyEOzEws6VS7Nl0x20qydQhVfvktjTWnU=';
const K3_FP = 'SHA256:pXrmsBn2baO/XSmxCgvgx2yKgRijyEKxt6lVHIsrSxs';
// `ssh-keygen -H` of "10.132.0.14 <K1>" and "[10.132.0.15]:2222 <K2>".
const HASHED_14 = `|1|XtQDiCnOTWGadJcVwx7RpQ/ZxDo=|azpbbMAJuzFYu00gKGmut4AhuWo= ssh-ed25519 ${K1}`;
const HASHED_15_2222 = `|1|d2uuGJRlSJ0O2xqR6a1iM90ndGQ=|kzALivFC9PKe2LqPJOESWO0amfY= ssh-ed25519 ${K2}`;

const blob = (base64: string) => Buffer.from(base64, 'base64');

describe('fingerprints and key types', () => {
  it('prints SHA256 fingerprints exactly like ssh-keygen -l', () => {
    expect(fingerprintSha256(blob(K1))).toBe(K1_FP);
    expect(fingerprintSha256(blob(K2))).toBe(K2_FP);
    expect(fingerprintSha256(blob(K3))).toBe(K3_FP);
  });

  it('reads the key type from the blob', () => {
    expect(keyTypeOfBlob(blob(K1))).toBe('ssh-ed25519');
    expect(keyTypeOfBlob(blob(K3))).toBe('ecdsa-sha2-nistp256');
    expect(keyTypeOfBlob(Buffer.from([0, 0]))).toBe('unknown');
  });
});

describe('host names', () => {
  it('uses [host]:port only for ports other than 22', () => {
    expect(knownHostsName('10.132.0.14', 22)).toBe('10.132.0.14');
    expect(knownHostsName('10.132.0.14', 2222)).toBe('[10.132.0.14]:2222');
    expect(knownHostsName('fd00:132::14', 2222)).toBe('[fd00:132::14]:2222');
  });

  it('matches OpenSSH-hashed names (HMAC-SHA1) and nothing else', () => {
    expect(hostFieldMatches(HASHED_14.split(' ')[0]!, '10.132.0.14')).toBe(true);
    expect(hostFieldMatches(HASHED_14.split(' ')[0]!, '10.132.0.15')).toBe(false);
    expect(hostFieldMatches(HASHED_15_2222.split(' ')[0]!, '[10.132.0.15]:2222')).toBe(true);
    expect(hostFieldMatches(HASHED_15_2222.split(' ')[0]!, '10.132.0.15')).toBe(false);
  });

  it('matches comma lists, wildcards and negations, case-insensitively', () => {
    expect(hostFieldMatches('mysql-1,10.132.0.14', '10.132.0.14')).toBe(true);
    expect(hostFieldMatches('*.example.com,!bad.example.com', 'DB.example.com')).toBe(true);
    expect(hostFieldMatches('*.example.com,!bad.example.com', 'bad.example.com')).toBe(false);
    expect(hostFieldMatches('10.132.0.?', '10.132.0.14')).toBe(false);
    expect(hostFieldMatches('10.132.0.1?', '10.132.0.14')).toBe(true);
  });

  it('makes hashes OpenSSH itself accepts', () => {
    const home = mkdtempSync(path.join(tmpdir(), 'iw-kh-'));
    try {
      const file = path.join(home, 'known_hosts');
      writeFileSync(file, `${knownHostsLine('10.132.0.99', 2222, blob(K1), true)}\n`);
      const found = execFileSync('ssh-keygen', ['-F', '[10.132.0.99]:2222', '-f', file], {encoding: 'utf8'});
      expect(found).toContain(K1);
      expect(hashHostName('x', Buffer.alloc(20, 1))).toBe(hashHostName('x', Buffer.alloc(20, 1)));
    } finally {
      rmSync(home, {recursive: true, force: true});
    }
  });
});

describe('checkHostKey', () => {
  const file = [
    '# comment',
    `tunnel-1,203.0.113.10 ssh-ed25519 ${K2}`,
    `10.132.0.11 ssh-ed25519 ${K1}`,
    `10.132.0.11 ecdsa-sha2-nistp256 ${K3}`,
    HASHED_14,
    HASHED_15_2222,
    `@cert-authority *.example.com ssh-ed25519 ${K1}`,
    `@revoked * ecdsa-sha2-nistp256 ${K3}`,
    'garbage',
    '',
  ].join('\n');

  it('knows a plain entry, also in a comma list, and a hashed one', () => {
    expect(checkHostKey(file, '10.132.0.11', 22, blob(K1))).toEqual({kind: 'known'});
    expect(checkHostKey(file, '203.0.113.10', 22, blob(K2))).toEqual({kind: 'known'});
    expect(checkHostKey(file, '10.132.0.14', 22, blob(K1))).toEqual({kind: 'known'});
    expect(checkHostKey(file, '10.132.0.15', 2222, blob(K2))).toEqual({kind: 'known'});
  });

  it('reports a different key of the same type for that name as changed, with the old fingerprint', () => {
    const status = checkHostKey(file, '10.132.0.14', 22, blob(K2));
    expect(status).toEqual({kind: 'changed', expectedFingerprints: [K1_FP], lines: [5]});
  });

  it('refuses a key of a type the host is not known by like a changed key, naming the known types', () => {
    // 10.132.0.14 is known by ssh-ed25519 only (hashed); it now offers an ecdsa key (not revoked here).
    const notRevoked = file.replace(/^@revoked .*$/m, '');
    expect(checkHostKey(notRevoked, '10.132.0.14', 22, blob(K3))).toEqual({kind: 'other-type', knownTypes: ['ssh-ed25519'], lines: [5]});
    expect(checkHostKey(notRevoked, 'tunnel-1', 22, blob(K3))).toEqual({kind: 'other-type', knownTypes: ['ssh-ed25519'], lines: [2]});
    // known by ed25519 AND ecdsa: a different ed25519 key is changed, not other-type
    expect(checkHostKey(file, '10.132.0.11', 22, blob(K2))).toMatchObject({kind: 'changed'});
  });

  it('lists the known key types of a name and port, ignoring revoked and CA lines', () => {
    expect(knownKeyTypes(file, '10.132.0.11', 22)).toEqual(['ssh-ed25519', 'ecdsa-sha2-nistp256']);
    expect(knownKeyTypes(file, '10.132.0.15', 2222)).toEqual(['ssh-ed25519']);
    expect(knownKeyTypes(file, '10.132.0.15', 22)).toEqual([]);
    expect(knownKeyTypes(file, 'db.example.com', 22)).toEqual([]);
  });

  it('offers the known key types first, the rest after in ssh2 order', () => {
    const all = preferredHostKeyAlgorithms([]);
    expect(all[0]).toBe('ssh-ed25519');
    expect(preferredHostKeyAlgorithms(['ssh-rsa'])).toEqual([
      'rsa-sha2-512',
      'rsa-sha2-256',
      'ssh-rsa',
      'ssh-ed25519',
      'ecdsa-sha2-nistp256',
      'ecdsa-sha2-nistp384',
      'ecdsa-sha2-nistp521',
    ]);
    expect(preferredHostKeyAlgorithms(['ecdsa-sha2-nistp384', 'ssh-ed25519']).slice(0, 2)).toEqual(['ssh-ed25519', 'ecdsa-sha2-nistp384']);
    expect([...preferredHostKeyAlgorithms(['ssh-rsa'])].sort()).toEqual([...all].sort());
  });

  it('does not confuse ports: [host]:2222 and host are different names', () => {
    expect(checkHostKey(file, '10.132.0.15', 22, blob(K2))).toEqual({kind: 'unknown'});
    expect(checkHostKey(file, '10.132.0.14', 2222, blob(K2))).toEqual({kind: 'unknown'});
  });

  it('treats an unknown name as unknown, and ignores @cert-authority lines', () => {
    expect(checkHostKey(file, '10.132.0.16', 22, blob(K1))).toEqual({kind: 'unknown'});
    expect(checkHostKey(file, 'db.example.com', 22, blob(K1))).toEqual({kind: 'unknown'});
  });

  it('refuses a revoked key even where it is otherwise known', () => {
    expect(checkHostKey(file, '10.132.0.11', 22, blob(K3))).toEqual({kind: 'revoked'});
  });

  it('parses markers and skips malformed lines', () => {
    const entries = parseKnownHosts(file);
    expect(entries).toHaveLength(7);
    expect(entries.filter((entry) => entry.marker === 'revoked')).toHaveLength(1);
  });

  it('keeps hashing when the file is hashed', () => {
    expect(usesHashedNames(`${HASHED_14}\n${HASHED_15_2222}\n`)).toBe(true);
    expect(usesHashedNames(file)).toBe(false);
    expect(usesHashedNames('')).toBe(false);
    const line = knownHostsLine('10.132.0.20', 22, blob(K1), true);
    expect(line).toMatch(/^\|1\|/);
    expect(checkHostKey(line, '10.132.0.20', 22, blob(K1))).toEqual({kind: 'known'});
    expect(knownHostsLine('10.132.0.20', 2200, blob(K1))).toBe(`[10.132.0.20]:2200 ssh-ed25519 ${K1}`);
  });
});
