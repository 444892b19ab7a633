// The operator-side record of batches: which batch each host is in, its deadline, and a copy of
// every snapshot (the server keeps its own; this copy survives a server disk being wiped and lets
// `status` / `confirm` on this machine find the batch). Stored in the `conf` package's directory
// (~/.config/isolate-wizard on Linux), next to the wizard's own settings. Everything there
// is the operator's alone (rules, addresses, who changed what): files 0600, directories 0700,
// whatever the umask.
import {chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import Conf, {type Options as ConfOptions} from 'conf';
import {storeOptions} from './settings-directory.js';

export interface HostRecord {
  readonly batch: string;
  /** pending | confirmed | rolledback | expired | failed */
  readonly phase: string;
  /** Epoch ms on this machine's clock; an estimate (the server counts on its own). */
  readonly deadline?: number;
  readonly changedAt: number;
}

interface StoreShape extends Record<string, unknown> {
  hosts: Record<string, HostRecord>;
}

export interface LocalStateOptions {
  /** Another directory (tests); default: conf's per-user config directory. */
  readonly directory?: string;
}

/** Snapshot copies kept per host: the last this many batches that host was in. */
export const KEEP_LOCAL_BATCHES_PER_HOST = 10;

const PRIVATE_FILE = 0o600;
const PRIVATE_DIRECTORY = 0o700;

/**
 * A `conf` store readable by the operator only: its file is written 0600 (conf's default is 0666
 * less the umask) and its directory made 0700, also when an older version created them wider.
 */
export function openPrivateStore<T extends Record<string, unknown>>(options: ConfOptions<T>): Conf<T> {
  if (options.cwd !== undefined) makePrivateDirectory(options.cwd);
  const store = new Conf<T>({...options, configFileMode: PRIVATE_FILE});
  makePrivateDirectory(path.dirname(store.path));
  if (existsSync(store.path)) chmodSync(store.path, PRIVATE_FILE);
  return store;
}

function makePrivateDirectory(directory: string): void {
  mkdirSync(directory, {recursive: true, mode: PRIVATE_DIRECTORY});
  chmodSync(directory, PRIVATE_DIRECTORY);
}

export class LocalState {
  private readonly store: Conf<StoreShape>;

  constructor(options: LocalStateOptions = {}) {
    this.store = openPrivateStore<StoreShape>({...storeOptions<StoreShape>('batches', options.directory), defaults: {hosts: {}}});
  }

  /** The directory holding the store and the snapshot copies. */
  get directory(): string {
    return path.dirname(this.store.path);
  }

  host(name: string): HostRecord | undefined {
    return this.store.get('hosts')[name];
  }

  setHost(name: string, record: HostRecord): void {
    this.store.set('hosts', {...this.store.get('hosts'), [name]: record});
  }

  /** Keeps the server's snapshot of `host` for `batch` as <dir>/snapshots/<batch>/<host>.v4|v6|nft. */
  saveSnapshot(batch: string, host: string, snapshot: {v4: string; v6: string; nft?: string}): string {
    const root = path.join(this.directory, 'snapshots');
    const directory = path.join(root, batch);
    makePrivateDirectory(root);
    makePrivateDirectory(directory);
    const safeHost = snapshotFileName(host);
    for (const part of ['v4', 'v6', 'nft'] as const) {
      const file = path.join(directory, `${safeHost}.${part}`);
      writeFileSync(file, snapshot[part] ?? '', {mode: PRIVATE_FILE});
      chmodSync(file, PRIVATE_FILE); // an existing file keeps its mode through writeFileSync
    }
    this.pruneSnapshots(safeHost);
    return directory;
  }

  /** The copy saveSnapshot kept of `host`'s rules before `batch`, or undefined when there is none. */
  snapshot(batch: string, host: string): {v4: string; v6: string; nft?: string} | undefined {
    const directory = path.join(this.directory, 'snapshots', batch);
    const safeHost = snapshotFileName(host);
    let families: {v4: string; v6: string};
    try {
      families = {v4: readFileSync(path.join(directory, `${safeHost}.v4`), 'utf8'), v6: readFileSync(path.join(directory, `${safeHost}.v6`), 'utf8')};
    } catch {
      return undefined;
    }
    // Copies kept before the nftables backend have no .nft: what our table was is not known then.
    try {
      return {...families, nft: readFileSync(path.join(directory, `${safeHost}.nft`), 'utf8')};
    } catch {
      return families;
    }
  }

  /** Keeps the last KEEP_LOCAL_BATCHES_PER_HOST copies of this host; a batch left with no host goes. */
  private pruneSnapshots(safeHost: string): void {
    const root = path.join(this.directory, 'snapshots');
    const batches = readdirSync(root)
      .filter((batch) => existsSync(path.join(root, batch, `${safeHost}.v4`)) || existsSync(path.join(root, batch, `${safeHost}.v6`)))
      .sort(); // batch ids start with a UTC timestamp
    for (const old of batches.slice(0, Math.max(0, batches.length - KEEP_LOCAL_BATCHES_PER_HOST))) {
      const directory = path.join(root, old);
      for (const part of ['v4', 'v6', 'nft']) rmSync(path.join(directory, `${safeHost}.${part}`), {force: true});
      if (readdirSync(directory).length === 0) rmdirSync(directory);
    }
  }
}

/** The inventory name is the file name: kept to a safe character set. */
export function snapshotFileName(host: string): string {
  return host.replace(/[^A-Za-z0-9._-]/g, '_');
}
