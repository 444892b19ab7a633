import {afterEach, describe, expect, it} from 'vitest';
import {cleanup, KEY, renderWizard} from './harness.js';
import {MANAGED_FLEET, SEED_FLEET} from './fakes.js';

afterEach(() => cleanup());

describe('quick edit', () => {
  it('closes a port in three keys from the fleet home to the diff', async () => {
    const wizard = await renderWizard({fleet: MANAGED_FLEET});
    await wizard.press(KEY.down); // select haproxy-www
    await wizard.press('e', 'c', KEY.enter); // e: edit, c: close a port, Enter: its first opening
    const frame = await wizard.waitFor('preview · haproxy-www · diff');
    expect(wizard.calls.preview).toHaveLength(1);
    const edited = wizard.calls.preview[0]!;
    expect(edited.hosts).toEqual(['haproxy-www']);
    expect(edited.fleet.hosts.find((host) => host.name === 'haproxy-www')?.allow).toEqual([]);
    expect(frame).toContain('+ roles lb');
    expect(wizard.calls.discover).toHaveLength(0); // facts were known: no rediscovery
  });

  it('opens a port typed as PORT/proto from SOURCE, then applies only that server', async () => {
    const wizard = await renderWizard({fleet: MANAGED_FLEET});
    await wizard.press(KEY.down, KEY.down, 'e', 'o');
    await wizard.type('3307/tcp from 10.8.0.0/24');
    await wizard.press(KEY.enter);
    await wizard.waitFor('preview · mysql-1 · diff');
    const host = wizard.calls.preview[0]!.fleet.hosts.find((candidate) => candidate.name === 'mysql-1');
    expect(host?.allow).toEqual([{port: 3307, proto: 'tcp', from: '10.8.0.0/24'}]);
    await wizard.press('a');
    await wizard.waitFor('keep the new rules?');
    expect(wizard.calls.apply[0]?.hosts).toEqual(['mysql-1']);
    await wizard.press('k');
    await wizard.waitFor('kept');
    expect(wizard.stored().fleet.hosts.find((candidate) => candidate.name === 'mysql-1')?.allow).toEqual([{port: 3307, proto: 'tcp', from: '10.8.0.0/24'}]);
  });

  it('allows a source as SOURCE PORT and changes roles', async () => {
    const wizard = await renderWizard({fleet: MANAGED_FLEET});
    await wizard.press('e', 'a');
    await wizard.type('app 8080');
    await wizard.press(KEY.enter);
    await wizard.waitFor('preview · tunnel-1');
    expect(wizard.calls.preview[0]!.fleet.hosts[0]?.allow).toEqual([{port: 8080, proto: 'tcp', from: 'app'}]);
    await wizard.press(KEY.escape);
    expect(wizard.frame()).toContain('quick edit · tunnel-1');
    await wizard.press('r', KEY.right, KEY.right, KEY.right, KEY.space, KEY.enter); // app bastion db [lb]
    await wizard.waitFor('preview · tunnel-1');
    expect(wizard.calls.preview.at(-1)!.fleet.hosts[0]?.roles).toEqual(['bastion', 'lb']);
  });

  it('a server never discovered goes through discovery first', async () => {
    const wizard = await renderWizard({fleet: SEED_FLEET});
    await wizard.press('e', 'o');
    await wizard.type('8443');
    await wizard.press(KEY.enter);
    await wizard.waitFor('discover (3/3)');
    await wizard.press(KEY.enter);
    await wizard.waitFor('preview · tunnel-1');
    const fleet = wizard.calls.preview[0]!.fleet;
    expect(fleet.hosts.every((host) => host.interfaces?.private === 'eth1')).toBe(true);
    expect(fleet.hosts[0]?.allow).toEqual([{port: 8443, proto: 'tcp', from: 'internet'}]);
  });

  it('Esc inside a field returns to the menu, not to the fleet', async () => {
    const wizard = await renderWizard({fleet: MANAGED_FLEET});
    await wizard.press('e', 'o');
    expect(wizard.frame()).toContain('open port:');
    await wizard.press(KEY.escape);
    expect(wizard.frame()).toContain('close a port');
    await wizard.press(KEY.escape);
    expect(wizard.frame()).toContain('isolate-wizard · fleet');
  });
});

describe('troubleshoot', () => {
  it('shows counters refreshed live and the drop log statement', async () => {
    const wizard = await renderWizard({fleet: MANAGED_FLEET});
    await wizard.press('t');
    let frame = await wizard.waitFor('policy DROP 1 packets');
    expect(frame).toContain('troubleshoot · tunnel-1 · IPv4 counters');
    wizard.clock.advance(1000);
    await wizard.waitFor(/.*/);
    expect(wizard.calls.counters).toHaveLength(1); // not yet: refreshes every 2 s
    wizard.clock.advance(1000);
    frame = await wizard.waitFor('policy DROP 2 packets');
    expect(wizard.calls.counters).toHaveLength(2);
    await wizard.press('3');
    frame = wizard.frame();
    expect(frame).toContain('drop logging is off for this fleet');
    await wizard.press('p');
    wizard.clock.advance(10_000);
    await wizard.waitFor('paused');
    expect(wizard.calls.counters).toHaveLength(2);
  });

  it('lists recent dropped packets with their source', async () => {
    const wizard = await renderWizard({
      fleet: MANAGED_FLEET,
      dropLog: async () => ({
        source: 'journalctl',
        // In words by the services (core/rule-words.ts, unit-tested there).
        lines: ['2026-11-24T01:02:03+0000 dropped tcp/3306 from 198.51.100.7 to mysql-1 in eth0'],
      }),
    });
    await wizard.press(KEY.down, KEY.down, 't', '3');
    const frame = await wizard.waitFor('2026-11-24T01:02:03+0000 dropped tcp/3306 from 198.51.100.7 to mysql-1 in eth0');
    expect(frame).toContain('troubleshoot · mysql-1 · dropped packets (journalctl)');
  });

  it('names the host when it cannot be reached', async () => {
    const wizard = await renderWizard({
      fleet: MANAGED_FLEET,
      counters: async () => {
        throw new Error('connect ETIMEDOUT 203.0.113.10:22');
      },
    });
    await wizard.press('t');
    expect(await wizard.waitFor('tunnel-1: connect ETIMEDOUT')).toContain('tunnel-1: connect ETIMEDOUT');
  });
});

describe('settings and terminal', () => {
  it('toggles options and the deadline, saved at once and used by the apply', async () => {
    const wizard = await renderWizard({fleet: MANAGED_FLEET});
    await wizard.press('s', KEY.right, KEY.right, KEY.down, KEY.space, KEY.down, KEY.space, KEY.down, KEY.space);
    const frame = wizard.frame();
    expect(frame).toMatch(/default deadline\s+90 s/);
    expect(frame).toMatch(/where the rules live\s+own nftables table/);
    expect(frame).toMatch(/strict outbound \(public hosts\)\s+on/);
    expect(frame).toMatch(/log dropped packets \(rate-limited\)\s+on/);
    expect(frame).toMatch(/IPv6\s+isolated the same way as IPv4/);
    expect(wizard.stored().fleet.options).toEqual({backend: 'nftables', strictOutbound: true, logDrops: true});
    expect(wizard.stored().settings.deadlineSeconds).toBe(90);
    await wizard.press(KEY.escape, 'e', 'c', KEY.enter);
    await wizard.waitFor('preview');
    await wizard.press('a');
    await wizard.waitFor('keep the new rules?');
    expect(wizard.calls.apply[0]?.deadlineSeconds).toBe(90);
    expect(wizard.frame()).toContain('1:30 left');
  });

  it('fits 80x24 and follows a resize', async () => {
    const wizard = await renderWizard({fleet: MANAGED_FLEET});
    await wizard.resize(80, 24);
    await wizard.press('r');
    let frame = wizard.frame();
    expect(frame.split('\n').length).toBeLessThanOrEqual(23);
    for (const line of frame.split('\n')) expect(line.length).toBeLessThanOrEqual(80);
    expect(frame).toContain('q quit'); // hints stay visible
    await wizard.resize(80, 12);
    await wizard.press('r');
    frame = wizard.frame();
    expect(frame.split('\n').length).toBeLessThanOrEqual(11);
    expect(frame).toContain('q quit');
  });
});

describe('keys faster than renders', () => {
  it('every deadline press counts even when the saves have not re-rendered yet', async () => {
    const wizard = await renderWizard({fleet: MANAGED_FLEET, settings: {deadlineSeconds: 120}});
    await wizard.press('s');
    wizard.instance.stdin.write('\u001B[D');
    wizard.instance.stdin.write('\u001B[D');
    wizard.instance.stdin.write('\u001B[D');
    expect(await wizard.waitFor(/default deadline\s+75 s/)).toBeTruthy();
    expect(wizard.stored().settings.deadlineSeconds).toBe(75);
  });
});

describe('arrows faster than renders', () => {
  it('each ↓ on the fleet home moves one server', async () => {
    const wizard = await renderWizard({fleet: MANAGED_FLEET});
    wizard.instance.stdin.write('\u001B[B');
    wizard.instance.stdin.write('\u001B[B');
    expect(await wizard.waitFor(/❯ mysql-1/)).toMatch(/❯ mysql-1/);
  });
});
