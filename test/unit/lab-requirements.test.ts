import {chmodSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {delimiter, join} from 'node:path';
import {afterEach, describe, expect, it} from 'vitest';
import {LAB_PACKAGES, missingLabPackages, requirementsLine} from '../../source/lab/requirements.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, {recursive: true, force: true});
});

/** A directory holding the named programs (executable unless listed in `notExecutable`). */
function fakeBin(programs: readonly string[], notExecutable: readonly string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), 'iw-fake-path-'));
  dirs.push(dir);
  for (const program of [...programs, ...notExecutable]) {
    writeFileSync(join(dir, program), '#!/bin/sh\n');
    chmodSync(join(dir, program), notExecutable.includes(program) ? 0o644 : 0o755);
  }
  return dir;
}

const everyProgram = Object.values(LAB_PACKAGES).flat();

describe('the lab requirements check', () => {
  it('names the Debian package of each missing program, once, in one line with the command that installs them', () => {
    // A machine with iproute2 and sudo, an iptables without its IPv6 half, sshd not executable.
    const searchPath = [
      fakeBin(['ip', 'ss', 'iptables', 'iptables-save', 'iptables-restore'], ['sshd']),
      fakeBin(['sudo', 'unshare', 'nsenter', 'flock', 'setsid', 'mount', 'openssl']),
    ].join(delimiter);
    const missing = missingLabPackages(searchPath);
    expect(missing).toEqual(['iptables', 'nftables', 'openssh-server', 'openssh-client']);
    const line = requirementsLine(missing, true)!;
    expect(line.split('\n')).toHaveLength(1);
    expect(line).toContain('iptables, nftables, openssh-server, openssh-client');
    expect(line).toContain('apt-get install -y --no-install-recommends iptables nftables openssh-server openssh-client');
  });

  it('finds programs in any directory of the PATH and asks nothing of a complete machine run as root', () => {
    const half = Math.floor(everyProgram.length / 2);
    const searchPath = ['', fakeBin(everyProgram.slice(0, half)), fakeBin(everyProgram.slice(half))].join(delimiter);
    expect(missingLabPackages(searchPath)).toEqual([]);
    expect(requirementsLine([], true)).toBeUndefined();
  });

  it('an empty PATH misses every package; not being root is said in the same line', () => {
    expect(missingLabPackages(fakeBin([]))).toEqual(Object.keys(LAB_PACKAGES));
    const line = requirementsLine(['sudo'], false)!;
    expect(line.split('\n')).toHaveLength(1);
    expect(line).toMatch(/sudo.*root/);
    expect(requirementsLine([], false)).toMatch(/need root/);
  });
});
