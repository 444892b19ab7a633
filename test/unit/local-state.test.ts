// The operator's local record: private files whatever the umask, snapshot copies kept per host.
import {chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';
import {KEEP_LOCAL_BATCHES_PER_HOST, LocalState, openPrivateStore} from '../../source/remote/local-state.js';

let directory: string;
let umask: number;
beforeEach(() => {
  directory = path.join(mkdtempSync(path.join(tmpdir(), 'iw-local-')), 'config');
  umask = process.umask(0); // the widest: nothing may rely on the umask to be private
});
afterEach(() => {
  process.umask(umask);
  rmSync(path.dirname(directory), {recursive: true, force: true});
});

const modeOf = (file: string) => statSync(file).mode & 0o777;
const batchId = (index: number) => `20261203-10${String(index).padStart(4, '0')}-abcdef`;
const snapshot = {v4: '*filter\nCOMMIT\n', v6: '*filter\nCOMMIT\n'};

describe('LocalState files', () => {
  it('creates the store 0600, its directory and the snapshot copies 0700/0600 under umask 0', () => {
    const state = new LocalState({directory});
    state.setHost('mysql-1', {batch: batchId(1), phase: 'pending', changedAt: 1});
    const saved = state.saveSnapshot(batchId(1), 'mysql-1', snapshot);
    expect(modeOf(directory)).toBe(0o700);
    const files = readdirSync(directory);
    expect(files).toContain('batches.json');
    expect(modeOf(path.join(directory, 'batches.json'))).toBe(0o600);
    expect(modeOf(path.join(directory, 'snapshots'))).toBe(0o700);
    expect(modeOf(saved)).toBe(0o700);
    expect(modeOf(path.join(saved, 'mysql-1.v4'))).toBe(0o600);
    expect(modeOf(path.join(saved, 'mysql-1.v6'))).toBe(0o600);
    expect(modeOf(path.join(saved, 'mysql-1.nft'))).toBe(0o600);
    // still 0600 after conf rewrites the file
    state.setHost('mysql-1', {batch: batchId(1), phase: 'confirmed', changedAt: 2});
    expect(modeOf(path.join(directory, 'batches.json'))).toBe(0o600);
  });

  it('makes files an older version left readable private again', () => {
    mkdirSync(directory, {recursive: true, mode: 0o755});
    writeFileSync(path.join(directory, 'fleet.json'), '{}\n', {mode: 0o666});
    chmodSync(path.join(directory, 'fleet.json'), 0o666);
    const store = openPrivateStore<Record<string, unknown>>({projectName: 'isolate-wizard', configName: 'fleet', cwd: directory});
    expect(modeOf(directory)).toBe(0o700);
    expect(modeOf(store.path)).toBe(0o600);
  });
});

describe('LocalState snapshot copies', () => {
  it('keeps the last ten batches of EACH host, not ten batches fleet-wide', () => {
    const state = new LocalState({directory});
    // web-1 is in every batch; db-1 only in the first two (a quiet host must not lose its history).
    for (let index = 1; index <= 14; index++) {
      state.saveSnapshot(batchId(index), 'web-1', snapshot);
      if (index <= 2) state.saveSnapshot(batchId(index), 'db-1', snapshot);
    }
    const root = path.join(directory, 'snapshots');
    const holding = (host: string) => readdirSync(root).filter((batch) => existsSync(path.join(root, batch, `${host}.v4`))).sort();
    expect(holding('web-1')).toEqual(Array.from({length: KEEP_LOCAL_BATCHES_PER_HOST}, (_, index) => batchId(index + 5)));
    expect(holding('db-1')).toEqual([batchId(1), batchId(2)]);
    // batches 3 and 4 held web-1 only: gone with it
    expect(readdirSync(root).sort()).toEqual([batchId(1), batchId(2), ...holding('web-1')]);
    expect(readdirSync(path.join(root, batchId(1)))).toEqual(['db-1.nft', 'db-1.v4', 'db-1.v6']);
  });
});
