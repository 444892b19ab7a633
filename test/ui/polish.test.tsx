import {afterEach, describe, expect, it} from 'vitest';
import {cleanup} from 'ink-testing-library';
import {KEY, renderWizard} from './harness.js';
import {deferred, discovered, MANAGED_FLEET} from './fakes.js';
import type {HostState} from '../../source/ui/services.js';

afterEach(() => cleanup());

describe('the fleet home after a quick edit is kept', () => {
  it('shows the servers\' new "locked down (since …)", and an older status read finishing late does not put the old one back', async () => {
    const before = new Map<string, HostState>(MANAGED_FLEET.hosts.map((host) => [host.name, {kind: 'locked', detail: 'since 2026-12-03 10:00:05 UTC'}]));
    const after = new Map<string, HostState>([...before, ['mysql-1', {kind: 'locked', detail: 'since 2026-12-03 10:07:42 UTC'}]]);
    const slowRead = deferred<ReadonlyMap<string, HostState>>();
    let kept = false;
    const wizard = await renderWizard({
      fleet: MANAGED_FLEET,
      // Read 2 (the r below) answers late, with what the servers said before the edit.
      statusReads: async (_fleet, call) => (call === 2 ? slowRead.promise : kept ? after : before),
      keep: async (batch) => {
        kept = true;
        return {kept: batch.hosts.map((host) => ({host, persistent: true})), problems: []};
      },
    });
    await wizard.waitFor('10:00:05');
    await wizard.press('r', KEY.down, KEY.down, 'e', 'o');
    await wizard.type('3307');
    await wizard.press(KEY.enter);
    await wizard.waitFor('preview · mysql-1 · diff');
    await wizard.press('a');
    await wizard.waitFor('keep the new rules?');
    await wizard.press('k');
    await wizard.waitFor('kept');
    await wizard.press(KEY.enter);
    await wizard.waitFor(/mysql-1.*locked down \(since 2026-12-03 10:07:42 UTC\)/);
    slowRead.resolve(before);
    await wizard.press(KEY.down); // a few turns for the late answer to land
    const frame = wizard.frame();
    expect(frame).toMatch(/mysql-1.*locked down \(since 2026-12-03 10:07:42 UTC\)/);
    expect(frame).toMatch(/tunnel-1.*locked down \(since 2026-12-03 10:00:05 UTC\)/);
  });
});

describe('adding servers', () => {
  it('reads a newly added server\'s state at once (not "checking…" until r)', async () => {
    const wizard = await renderWizard({states: {'mysql-2': {kind: 'locked', detail: 'since 2026-12-03 10:00 UTC'}}});
    await wizard.press('a');
    await wizard.type('mysql-2');
    await wizard.press(KEY.enter, KEY.enter, KEY.enter);
    const frame = await wizard.waitFor('mysql-2 added');
    await wizard.waitFor('locked down');
    expect(wizard.frame()).toMatch(/mysql-2.*locked down \(since 2026-12-03 10:00 UTC\)/);
    expect(frame).not.toContain('checking…');
  });

  it('adds several hosts of ~/.ssh/config at once, or all of them, and reads their state', async () => {
    const wizard = await renderWizard({
      fleet: {hosts: [{name: 'tunnel-1', ssh: 'tunnel-1', roles: []}]},
      suggestions: ['tunnel-1', 'haproxy-www', 'wordpress-1', 'mysql-1'],
    });
    await wizard.press('A');
    let frame = await wizard.waitFor('add servers from ~/.ssh/config');
    expect(frame).not.toContain('[ ] tunnel-1'); // in the fleet already
    await wizard.press(KEY.space, KEY.down, KEY.down, KEY.space); // haproxy-www, mysql-1
    expect(wizard.frame()).toMatch(/\[x\] haproxy-www[\s\S]*\[ \] wordpress-1[\s\S]*\[x\] mysql-1/);
    await wizard.press(KEY.enter);
    frame = await wizard.waitFor('haproxy-www, mysql-1 added');
    await wizard.waitFor(/mysql-1.*unmanaged/);
    expect(wizard.stored().fleet.hosts).toEqual([
      {name: 'tunnel-1', ssh: 'tunnel-1', roles: []},
      {name: 'haproxy-www', ssh: 'haproxy-www', roles: []},
      {name: 'mysql-1', ssh: 'mysql-1', roles: []},
    ]);
    // a: all that are left.
    await wizard.press('A');
    await wizard.waitFor('[ ] wordpress-1');
    await wizard.press('a', KEY.enter);
    await wizard.waitFor('wordpress-1 added');
    expect(wizard.stored().fleet.hosts.map((host) => host.name)).toEqual(['tunnel-1', 'haproxy-www', 'mysql-1', 'wordpress-1']);
  });
});

describe('roles', () => {
  it('suggests the app role\'s peer port both app servers listen on, and p writes it into the fleet', async () => {
    const fleet = {hosts: [{name: 'wordpress-1', ssh: 'wordpress-1', roles: []}, {name: 'wordpress-2', ssh: 'wordpress-2', roles: []}]};
    const wizard = await renderWizard({
      fleet,
      discover: async (name) => discovered(name, name === 'wordpress-1' ? 12 : 13, [22, 80, 443, 24007], ['app']),
    });
    await wizard.press('l');
    await wizard.waitFor('discover (2/2)');
    await wizard.press(KEY.enter);
    let frame = await wizard.waitFor('suggested:');
    expect(frame).toMatch(/wordpress-1, wordpress-2 \(app\) listen on tcp\/24007: p opens it between app servers/);
    await wizard.press('p');
    frame = await wizard.waitFor('app peers: tcp/24007 added');
    expect(frame).not.toContain('suggested:');
    await wizard.press(KEY.enter);
    await wizard.waitFor('preview');
    expect(wizard.calls.preview[0]!.fleet.roles).toEqual({app: {peers: ['24007']}});
  });
});
