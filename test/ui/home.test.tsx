import {afterEach, describe, expect, it} from 'vitest';
import {cleanup, KEY, renderWizard} from './harness.js';
import {MANAGED_FLEET, SEED_FLEET} from './fakes.js';

afterEach(() => cleanup());

describe('fleet home', () => {
  it('lists the saved servers with their state', async () => {
    const wizard = await renderWizard({
      fleet: MANAGED_FLEET,
      states: {
        'tunnel-1': {kind: 'locked'},
        'haproxy-www': {kind: 'pending', deadline: 1_000_000 + 42_000},
        'mysql-1': {kind: 'unreachable', reason: 'connection timed out'},
      },
    });
    const frame = await wizard.waitFor('unreachable');
    expect(frame).toMatch(/tunnel-1.*locked down/);
    expect(frame).toMatch(/haproxy-www.*pending, 0:42 left/);
    expect(frame).toMatch(/mysql-1.*unreachable: connection timed out/);
    wizard.clock.advance(2000);
    expect(await wizard.waitFor('0:40 left')).toMatch(/haproxy-www.*pending, 0:40 left/);
  });

  it('resumes a change left pending by an earlier run: p opens its countdown, K keeps it', async () => {
    const deadline = 1_000_000 + 50_000;
    const wizard = await renderWizard({
      fleet: MANAGED_FLEET,
      states: {
        'tunnel-1': {kind: 'locked'},
        'haproxy-www': {kind: 'pending', deadline, batch: 'b-old'},
        'mysql-1': {kind: 'pending', deadline, batch: 'b-old'},
      },
    });
    await wizard.waitFor('pending, 0:50 left');
    await wizard.press('p');
    expect(wizard.frame()).toContain('tunnel-1 has no pending change');
    await wizard.press(KEY.down, 'p');
    expect(await wizard.waitFor('keep the new rules?')).toContain('0:50 left');
    await wizard.press('K');
    await wizard.waitFor('isolate-wizard · kept');
    expect(wizard.calls.keep.map((batch) => [batch.id, batch.hosts])).toEqual([['b-old', ['haproxy-www', 'mysql-1']]]);
  });

  it("asks before acting on someone else's pending batch, showing its owner; n changes nothing", async () => {
    const deadline = 1_000_000 + 50_000;
    const pending = {kind: 'pending' as const, deadline, batch: 'b-alice', owner: 'alice@laptop pid=42', startedHere: false};
    const wizard = await renderWizard({fleet: MANAGED_FLEET, states: {'tunnel-1': {kind: 'locked'}, 'haproxy-www': pending, 'mysql-1': pending}});
    await wizard.waitFor('pending, 0:50 left');
    await wizard.press(KEY.down, 'p');
    const asked = wizard.frame();
    expect(asked).toContain('alice@laptop pid=42 began batch b-alice (2 hosts), not this machine: act on it? y/N');
    expect(asked).not.toContain('keep the new rules?');
    await wizard.press('n');
    expect(wizard.frame()).not.toContain('alice@laptop');
    expect(wizard.frame()).not.toContain('keep the new rules?');
    await wizard.press('p', 'y');
    await wizard.waitFor('keep the new rules?');
    await wizard.press('R');
    await wizard.waitFor('isolate-wizard · rolled back');
    expect(wizard.calls.rollback.map((batch) => [batch.id, batch.hosts])).toEqual([['b-alice', ['haproxy-www', 'mysql-1']]]);
    expect(wizard.calls.keep).toEqual([]);
  });

  it('undoes the last change after y: the rules from before the newest confirmed batch, through the apply screens and a countdown', async () => {
    const wizard = await renderWizard({
      fleet: MANAGED_FLEET,
      states: {
        'tunnel-1': {kind: 'locked', batch: '20261203-090000-aaaaaa'},
        'haproxy-www': {kind: 'locked', batch: '20261203-100000-bbbbbb'},
        'mysql-1': {kind: 'locked', batch: '20261203-100000-bbbbbb'},
      },
    });
    await wizard.waitFor('u undo last change');
    await wizard.press('u');
    expect(wizard.frame()).toContain('undo batch 20261203-100000-bbbbbb (2 hosts: earlier rules back, countdown follows)? y/N');
    await wizard.press('x');
    expect(wizard.calls.undo).toEqual([]);
    await wizard.press('u', 'y');
    await wizard.waitFor('keep the new rules?');
    expect(wizard.calls.undo).toEqual([{batch: '20261203-100000-bbbbbb', hosts: ['haproxy-www', 'mysql-1'], deadlineSeconds: 60}]);
    await wizard.press('K');
    await wizard.waitFor('isolate-wizard · kept');
    expect(wizard.calls.keep.map((batch) => batch.id)).toEqual(['b-undo']);
    // The saved fleet is unchanged by an undo.
    expect(wizard.stored().fleet).toEqual(MANAGED_FLEET);
  });

  it('a drifted server is never "locked down": the drift in words on its line, and f re-applies the saved plan to it with the countdown', async () => {
    const drift = 'drift: opens mysql-1 to the internet: tcp/3306 (IPv4 only, not confirmed); IPv4 rule added: -A INPUT -p tcp --dport 3306 -j ACCEPT';
    const wizard = await renderWizard({
      fleet: MANAGED_FLEET,
      states: {
        'tunnel-1': {kind: 'locked', detail: 'since 2026-12-03 10:00:05 UTC'},
        'haproxy-www': {kind: 'unchecked', reason: 'cannot read the live rules'},
        'mysql-1': {kind: 'drifted', drift, batch: '20261203-100000-bbbbbb'},
      },
    }, true, {columns: 160, rows: 24});
    const frame = await wizard.waitFor('DRIFTED');
    const row = (name: string): string => frame.split('\n').find((line) => line.includes(` ${name} `)) ?? '';
    expect(row('mysql-1')).toContain('DRIFTED — drift: opens mysql-1 to the internet: tcp/3306');
    expect(row('mysql-1')).not.toContain('locked down');
    expect(row('haproxy-www')).toContain('live rules not checked: cannot read the live rules');
    expect(row('haproxy-www')).not.toContain('locked down');
    expect(row('tunnel-1')).toContain('locked down');
    // f only where a host drifted.
    await wizard.press('f');
    expect(wizard.frame()).toContain('tunnel-1 has not drifted');
    expect(wizard.calls.preview).toHaveLength(0);
    await wizard.press(KEY.down, KEY.down);
    expect(wizard.frame()).toContain('f drifted: re-apply the plan');
    await wizard.press('f');
    await wizard.waitFor('preview · mysql-1');
    expect(wizard.calls.preview).toEqual([{fleet: MANAGED_FLEET, hosts: ['mysql-1']}]);
    await wizard.press('a');
    await wizard.waitFor('keep the new rules?');
    expect(wizard.calls.apply.map((call) => [call.hosts, call.fleet])).toEqual([[['mysql-1'], MANAGED_FLEET]]);
  });

  it('adopts a drift that only opened ports into the plan: the allow shown as a diff and asked first, then the preview, the countdown, and kept into the saved fleet', async () => {
    const wizard = await renderWizard({
      fleet: MANAGED_FLEET,
      states: {
        'tunnel-1': {kind: 'drifted', drift: 'drift: IPv4: our rules are gone (the table was flushed, or the server rebooted without loading them)'},
        'mysql-1': {kind: 'drifted', drift: 'drift: opens mysql-1 to the internet: tcp/3306 (IPv4 only, not confirmed)', adopt: [{port: 3306, proto: 'tcp', from: 'internet'}]},
      },
    }, true, {columns: 160, rows: 24});
    await wizard.waitFor(/mysql-1.*DRIFTED/);
    await wizard.press('m'); // tunnel-1: a flush is not an opening
    expect(wizard.frame()).toContain('tunnel-1: its drift is not only ports opened; it cannot be adopted');
    expect(wizard.frame()).not.toContain('m adopt');
    await wizard.press(KEY.down, KEY.down);
    expect(wizard.frame()).toContain('m adopt the live change into the plan');
    await wizard.press('m');
    expect(wizard.frame()).toContain("adopt into mysql-1's plan: + allow tcp/3306 from internet (IPv4 and IPv6; preview and countdown follow)? y/N");
    await wizard.press('n');
    expect(wizard.calls.preview).toEqual([]);
    await wizard.press('m', 'y');
    await wizard.waitFor('preview · mysql-1');
    const adopted = wizard.calls.preview[0]!;
    expect(adopted.hosts).toEqual(['mysql-1']);
    expect(adopted.fleet.hosts.find((host) => host.name === 'mysql-1')?.allow).toEqual([{port: 3306, proto: 'tcp', from: 'internet'}]);
    expect(wizard.stored().fleet).toEqual(MANAGED_FLEET); // nothing saved before it is kept
    await wizard.press('a');
    await wizard.waitFor('keep the new rules?');
    await wizard.press('K');
    await wizard.waitFor('kept');
    expect(wizard.stored().fleet.hosts.find((host) => host.name === 'mysql-1')?.allow).toEqual([{port: 3306, proto: 'tcp', from: 'internet'}]);
  });

  it('says how to start when the fleet is empty, and keeps key hints visible', async () => {
    const wizard = await renderWizard();
    const frame = wizard.frame();
    expect(frame).toContain('No servers yet');
    expect(frame).toContain('a add');
    expect(frame).toContain('q quit');
  });

  it('removes a server only after y, and saves the fleet', async () => {
    const wizard = await renderWizard({fleet: SEED_FLEET});
    await wizard.press(KEY.down, 'd');
    expect(wizard.frame()).toContain('remove haproxy-www from the fleet');
    await wizard.press('n');
    expect(wizard.calls.saved).toHaveLength(0);
    await wizard.press('d', 'y');
    await wizard.waitFor('haproxy-www removed');
    expect(wizard.stored().fleet.hosts.map((host) => host.name)).toEqual(['tunnel-1', 'mysql-1']);
  });

  it('imports an inventory file and exports the fleet', async () => {
    const wizard = await renderWizard();
    await wizard.press('i');
    await wizard.type('seed.json');
    await wizard.press(KEY.enter);
    await wizard.waitFor('imported 3 servers from seed.json');
    expect(wizard.calls.imported).toEqual(['seed.json']);
    expect(await wizard.waitFor(/mysql-1.*unmanaged/)).toMatch(/haproxy-www.*unmanaged/); // states of the imported fleet
    await wizard.press('x', KEY.enter);
    await wizard.waitFor('exported the fleet to inventory.json');
    expect(wizard.calls.exported[0]?.fleet.hosts).toHaveLength(3);
  });

  it('shows an import error on one line and keeps the fleet', async () => {
    const {InputError} = await import('../../source/core/errors.js');
    const wizard = await renderWizard({
      fleet: SEED_FLEET,
      importFleet: async () => {
        throw new InputError(['hosts[2].roles[0]: unknown role "dbx" (known: app, bastion, db, lb)']);
      },
    });
    await wizard.press('i');
    await wizard.type('bad.json');
    await wizard.press(KEY.enter);
    await wizard.waitFor('unknown role "dbx"');
    expect(wizard.calls.saved).toHaveLength(0);
  });

  it('q exits with code 0 and answers no to any question still waiting', async () => {
    const wizard = await renderWizard({fleet: SEED_FLEET});
    const pending = wizard.prompter.askSecret('mysql-1', 'sudo password for deploy:');
    await wizard.waitFor('sudo password for deploy');
    await wizard.press(KEY.escape); // skip the question
    expect(await pending).toBeUndefined();
    await wizard.press('q');
    expect(wizard.exits).toEqual([0]);
  });
});
