import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';
import {LocalState} from '../../source/remote/local-state.js';

let configHome: string;
let savedXdg: string | undefined;

beforeEach(() => {
  configHome = mkdtempSync(join(tmpdir(), 'iw-xdg-'));
  savedXdg = process.env['XDG_CONFIG_HOME'];
  process.env['XDG_CONFIG_HOME'] = configHome;
});
afterEach(() => {
  if (savedXdg === undefined) delete process.env['XDG_CONFIG_HOME'];
  else process.env['XDG_CONFIG_HOME'] = savedXdg;
  rmSync(configHome, {recursive: true, force: true});
});

const record = {batch: '20261203T100000Z-abc', phase: 'pending', changedAt: 1};

describe('the settings directory', () => {
  it('is ~/.config/isolate-wizard without XDG_CONFIG_HOME (linux)', () => {
    const savedHome = process.env['HOME'];
    delete process.env['XDG_CONFIG_HOME'];
    process.env['HOME'] = configHome;
    try {
      expect(new LocalState().directory).toBe(join(configHome, '.config', 'isolate-wizard'));
    } finally {
      process.env['HOME'] = savedHome;
    }
  });

  it('is <config home>/isolate-wizard', () => {
    const state = new LocalState();
    state.setHost('mysql-1', record);
    expect(state.directory).toBe(join(configHome, 'isolate-wizard'));
    expect(JSON.parse(readFileSync(join(configHome, 'isolate-wizard', 'batches.json'), 'utf8')).hosts['mysql-1']).toEqual(record);
    expect(existsSync(join(configHome, 'isolate-wizard-nodejs'))).toBe(false);
  });

  it('takes over the old isolate-wizard-nodejs directory once, with every file in it', () => {
    const old = join(configHome, 'isolate-wizard-nodejs');
    mkdirSync(join(old, 'snapshots', 'b1'), {recursive: true});
    writeFileSync(join(old, 'batches.json'), JSON.stringify({hosts: {'mysql-1': record}}));
    writeFileSync(join(old, 'fleet.json'), '{"hosts":[]}');
    writeFileSync(join(old, 'snapshots', 'b1', 'mysql-1.v4'), '*filter\nCOMMIT\n');

    expect(new LocalState().host('mysql-1')).toEqual(record);
    const current = join(configHome, 'isolate-wizard');
    expect(readFileSync(join(current, 'fleet.json'), 'utf8')).toBe('{"hosts":[]}');
    expect(readFileSync(join(current, 'snapshots', 'b1', 'mysql-1.v4'), 'utf8')).toBe('*filter\nCOMMIT\n');
    expect(existsSync(old)).toBe(false);

    // An old directory appearing later (an older version run again) does not replace the current one.
    mkdirSync(old);
    writeFileSync(join(old, 'batches.json'), JSON.stringify({hosts: {}}));
    expect(new LocalState().host('mysql-1')).toEqual(record);
    expect(existsSync(join(old, 'batches.json'))).toBe(true);
  });
});
