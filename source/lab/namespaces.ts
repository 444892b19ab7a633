// Naming, ownership and removal of lab network namespaces. Several labs (other engineers' test
// runs) live at once on this machine: a lab only ever removes its own namespaces, or those of a lab
// whose creating process is gone (a crashed run).
import {existsSync, readdirSync, readFileSync, rmSync, statSync} from 'node:fs';
import {join} from 'node:path';
import {runSync} from './process.js';

/** Every lab dir is LAB_BASE/iwlab-<id>; every lab namespace is iwlab-<id>-<role or host name>. */
export const LAB_BASE = '/var/tmp';
export const LAB_PREFIX = 'iwlab-';
const ID_PATTERN = /^iwlab-([a-z0-9]{6})(?:-|$)/;
/** A dir without an owner file is a lab being created; only this old is it abandoned. */
const UNOWNED_GRACE_MS = 10 * 60_000;

export function labDirFor(id: string): string {
  return join(LAB_BASE, `${LAB_PREFIX}${id}`);
}

export function namespaceFor(id: string, suffix: string): string {
  return `${LAB_PREFIX}${id}-${suffix}`;
}

export interface Owner {
  pid: number;
  /** /proc/<pid>/stat start time, so a recycled pid is not mistaken for the owner. */
  startTime: string;
}

export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at field 3; start time is field 22.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

export function currentOwner(): Owner {
  return {pid: process.pid, startTime: processStartTime(process.pid) ?? ''};
}

function ownerAlive(owner: Owner): boolean {
  return processStartTime(owner.pid) === owner.startTime;
}

export function listNamespaces(): string[] {
  const output = runSync('ip', ['netns', 'list']);
  // Lines look like "name" or "name (id: 3)".
  return output.stdout
    .split('\n')
    .map((line) => line.trim().split(' ')[0] ?? '')
    .filter(Boolean);
}

export function labNamespaces(id: string): string[] {
  return listNamespaces().filter((name) => name.startsWith(`${LAB_PREFIX}${id}-`));
}

/** Pids of the processes whose network namespace is `netns` (zombies hold none, so they are not listed). */
export function namespacePids(netns: string): number[] {
  const output = runSync('ip', ['netns', 'pids', netns]);
  return output.stdout
    .split('\n')
    .map((line) => Number(line.trim()))
    .filter((pid) => Number.isInteger(pid) && pid > 0);
}

function isGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** SIGKILL the given processes and wait (up to 5 s) until they are dead. Returns those still alive. */
export function killAndWait(pids: readonly number[]): number[] {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + 5_000;
  let alive = pids.filter((pid) => !isGone(pid));
  while (alive.length > 0 && Date.now() < deadline) {
    sleepSync(20);
    alive = alive.filter((pid) => !isGone(pid));
  }
  return alive;
}

/**
 * Kills every process inside the namespaces, deletes the veth pairs of the switch namespace
 * (so their peers vanish now, not when the kernel gets round to freeing the namespace),
 * then deletes the namespaces. Synchronous, so it also works from a process `exit` handler.
 */
export function removeNamespaces(namespaces: readonly string[], switchNamespace?: string): void {
  const existing = new Set(listNamespaces());
  const present = namespaces.filter((name) => existing.has(name));
  // Kill until no process is left: a dying shell may have just forked.
  for (let round = 0; round < 5; round++) {
    const pids = present.flatMap((name) => namespacePids(name));
    if (pids.length === 0) break;
    killAndWait(pids);
  }
  if (switchNamespace && existing.has(switchNamespace)) {
    const links = runSync('ip', ['-n', switchNamespace, '-o', 'link', 'show', 'type', 'veth']);
    const names = links.stdout
      .split('\n')
      .map((line) => /^\d+:\s+([^@:\s]+)/.exec(line)?.[1])
      .filter((name): name is string => Boolean(name));
    if (names.length > 0) {
      runSync('ip', ['-n', switchNamespace, '-force', '-batch', '-'], names.map((name) => `link del ${name}\n`).join(''));
    }
  }
  if (present.length > 0) {
    runSync('ip', ['-force', '-batch', '-'], present.map((name) => `netns del ${name}\n`).join(''));
  }
}

function readOwner(dir: string): Owner | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, 'owner.json'), 'utf8')) as Owner;
  } catch {
    return undefined;
  }
}

/** Is the lab with this id abandoned: its creator gone, or never finished creating it long ago? */
function abandoned(id: string): boolean {
  const dir = labDirFor(id);
  if (!existsSync(dir)) return true; // namespaces are made after the dir and deleted before it
  const owner = readOwner(dir);
  if (owner) return !ownerAlive(owner);
  try {
    return Date.now() - statSync(dir).mtimeMs > UNOWNED_GRACE_MS;
  } catch {
    return true;
  }
}

/** Removes what crashed labs left behind: their processes, namespaces and dirs. Never a live lab's. */
export function sweepAbandonedLabs(): string[] {
  const ids = new Set<string>();
  for (const name of listNamespaces()) {
    const id = ID_PATTERN.exec(name)?.[1];
    if (id) ids.add(id);
  }
  for (const entry of readdirSync(LAB_BASE)) {
    const id = ID_PATTERN.exec(entry)?.[1];
    if (id && entry === `${LAB_PREFIX}${id}`) ids.add(id);
  }
  const swept: string[] = [];
  for (const id of ids) {
    if (!abandoned(id)) continue;
    removeNamespaces(labNamespaces(id), namespaceFor(id, 'switch'));
    rmSync(labDirFor(id), {recursive: true, force: true});
    swept.push(id);
  }
  return swept;
}
