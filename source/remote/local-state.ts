// The operator-side record of batches: which batch each host is in, its deadline, and a copy of
// every snapshot (the server keeps its own; this copy survives a server disk being wiped and lets
// `status` / `confirm` on this machine find the batch). Stored in the `conf` package's directory
// (~/.config/isolate-wizard on Linux), next to the wizard's own settings.
import {mkdirSync, readdirSync, rmSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import Conf from 'conf';
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

const KEEP_LOCAL_BATCHES = 10;

export class LocalState {
  private readonly store: Conf<StoreShape>;

  constructor(options: LocalStateOptions = {}) {
    this.store = new Conf<StoreShape>({...storeOptions<StoreShape>('batches', options.directory), defaults: {hosts: {}}});
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

  /** Keeps the server's snapshot of `host` for `batch` as <dir>/snapshots/<batch>/<host>.v4|v6. */
  saveSnapshot(batch: string, host: string, snapshot: {v4: string; v6: string}): string {
    const directory = path.join(this.directory, 'snapshots', batch);
    mkdirSync(directory, {recursive: true, mode: 0o700});
    // The inventory name is the file name: keep it to a safe character set.
    const safeHost = host.replace(/[^A-Za-z0-9._-]/g, '_');
    writeFileSync(path.join(directory, `${safeHost}.v4`), snapshot.v4, {mode: 0o600});
    writeFileSync(path.join(directory, `${safeHost}.v6`), snapshot.v6, {mode: 0o600});
    this.pruneSnapshots();
    return directory;
  }

  private pruneSnapshots(): void {
    const root = path.join(this.directory, 'snapshots');
    const batches = readdirSync(root).sort(); // batch ids start with a UTC timestamp
    for (const old of batches.slice(0, Math.max(0, batches.length - KEEP_LOCAL_BATCHES))) {
      rmSync(path.join(root, old), {recursive: true, force: true});
    }
  }
}
