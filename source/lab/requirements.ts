// What the lab needs from the machine, checked once before any lab test starts (vitest's globalSetup
// for the lab project) and before `isolate-wizard demo` builds one: a missing program would otherwise
// fail deep inside a server's start-up. For the tests, as root with apt-get, the missing Debian
// packages are installed (as .ci/run used to); otherwise the run stops with one line naming them and
// the command that installs them.
import {spawnSync} from 'node:child_process';
import {accessSync, constants} from 'node:fs';
import {delimiter, join} from 'node:path';

/** Every program the lab and its servers run, by the Debian package that provides it. */
export const LAB_PACKAGES: Readonly<Record<string, readonly string[]>> = {
  iproute2: ['ip', 'ss'],
  iptables: ['iptables', 'iptables-save', 'iptables-restore', 'ip6tables', 'ip6tables-save', 'ip6tables-restore'],
  nftables: ['nft'],
  'openssh-server': ['sshd'],
  'openssh-client': ['ssh', 'ssh-keygen'],
  sudo: ['sudo'],
  openssl: ['openssl'],
  'util-linux': ['unshare', 'nsenter', 'flock', 'setsid'],
  mount: ['mount'],
};

/** Where the lab's servers find their programs (sshd is in sbin, which a user's PATH may lack). */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The packages (in LAB_PACKAGES' order) of which some program is on none of `searchPath`'s directories. */
export function missingLabPackages(searchPath: string): string[] {
  const dirs = searchPath.split(delimiter).filter(Boolean);
  const found = (program: string): boolean => dirs.some((dir) => isExecutable(join(dir, program)));
  return Object.entries(LAB_PACKAGES)
    .filter(([, programs]) => !programs.every(found))
    .map(([name]) => name);
}

export function installCommand(packages: readonly string[]): string {
  return `apt-get update && apt-get install -y --no-install-recommends ${packages.join(' ')}`;
}

/** The one line a run stops with when the lab cannot start (no stack trace follows it). */
export function requirementsLine(missing: readonly string[], isRoot: boolean): string | undefined {
  const needs: string[] = [];
  if (missing.length > 0) needs.push(`the Debian packages ${missing.join(', ')} (as root: ${installCommand(missing)})`);
  if (!isRoot) needs.push('root (network namespaces, sshd): run the tests as root');
  return needs.length === 0 ? undefined : `lab tests need ${needs.join('; and ')}`;
}

function tryInstall(packages: readonly string[]): boolean {
  const env = {...process.env, DEBIAN_FRONTEND: 'noninteractive'};
  const apt = (args: string[]): boolean => spawnSync('apt-get', args, {env, stdio: ['ignore', 'ignore', 'inherit']}).status === 0;
  return apt(['update', '-qq']) && apt(['install', '-y', '-qq', '--no-install-recommends', ...packages]);
}

/** Installs what is missing when it can (root with apt-get); returns the line to stop with, if any. */
export function ensureLabRequirements(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const searchPath = [env['PATH'] ?? '', SYSTEM_PATH].join(delimiter);
  const isRoot = process.getuid?.() === 0;
  let missing = missingLabPackages(searchPath);
  if (missing.length > 0 && isRoot && isExecutable('/usr/bin/apt-get')) {
    process.stderr.write(`lab: installing ${missing.join(', ')} with apt-get\n`);
    if (tryInstall(missing)) missing = missingLabPackages(searchPath);
  }
  return requirementsLine(missing, isRoot);
}
