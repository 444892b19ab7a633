import {afterEach, describe, expect, it} from 'vitest';
import {cleanup, KEY, renderWizard} from './harness.js';
import {defaultPreview, deferred, discovered, SEED_FLEET, type Deferred} from './fakes.js';
import {buildMatrix, renderMatrix} from '../../source/core/matrix.js';
import type {ApplyOutcome, ApplyProgress, DiscoveredHost} from '../../source/ui/services.js';

afterEach(() => cleanup());

describe('add a server', () => {
  it('offers ~/.ssh/config aliases, Tab takes one, the name follows the destination', async () => {
    const wizard = await renderWizard({suggestions: ['tunnel-1', 'mysql-1', 'mysql-2']});
    await wizard.press('a');
    await wizard.type('my');
    let frame = await wizard.waitFor('from ~/.ssh/config');
    expect(frame).toContain('mysql-1');
    expect(frame).not.toContain('tunnel-1');
    await wizard.press(KEY.down, KEY.tab, KEY.enter); // mysql-2
    await wizard.type('tunnel-1');
    await wizard.press(KEY.enter, KEY.enter);
    frame = await wizard.waitFor('mysql-2 added');
    expect(wizard.stored().fleet.hosts).toEqual([{name: 'mysql-2', ssh: 'mysql-2', jump: 'tunnel-1', roles: []}]);
    expect(frame).toContain('mysql-2');
  });

  it('refuses an invalid name with the problem on one line and saves nothing', async () => {
    const wizard = await renderWizard();
    await wizard.press('a');
    await wizard.type('deploy@10.0.0.5:2222');
    await wizard.press(KEY.enter, KEY.enter);
    expect(wizard.frame()).toContain('10.0.0.5'); // name derived from the destination
    await wizard.type(';x');
    await wizard.press(KEY.enter);
    await wizard.waitFor('has characters outside');
    expect(wizard.calls.saved).toHaveLength(0);
  });
});

describe('lock down the fleet', () => {
  it('discovers every server at once: spinners, then results, asking an unknown host key', async () => {
    const pending: Record<string, Deferred<DiscoveredHost>> = {'tunnel-1': deferred(), 'haproxy-www': deferred(), 'mysql-1': deferred()};
    let answer: boolean | undefined;
    const wizard = await renderWizard({
      fleet: SEED_FLEET,
      discover: async (host, prompter) => {
        if (host === 'mysql-1') answer = await prompter.confirmHostKey('mysql-1', 'ssh-ed25519', 'SHA256:abcDEF123');
        return pending[host]!.promise;
      },
    });
    await wizard.press('l');
    let frame = await wizard.waitFor('Unknown host key for mysql-1');
    expect(frame).toContain('SHA256:abcDEF123');
    await wizard.press('y');
    expect(answer).toBe(true);
    frame = await wizard.waitFor('discover (0/3)');
    expect(frame).toMatch(/tunnel-1 reading/);
    pending['tunnel-1']!.resolve(discovered('tunnel-1', 10, [22], []));
    frame = await wizard.waitFor('discover (1/3)');
    expect(frame).toContain('✓ tunnel-1');
    expect(frame).toMatch(/haproxy-www reading/);
    pending['haproxy-www']!.resolve(discovered('haproxy-www', 11, [22, 80, 443], ['lb'], ['ufw is active: it would fight these rules']));
    pending['mysql-1']!.resolve({host: 'mysql-1', ok: false, error: 'connection refused by 10.132.0.14:22'});
    frame = await wizard.waitFor('discover (3/3)');
    expect(frame).toMatch(/eth0\s+public\s+203\.0\.113\.11/);
    expect(frame).toContain('ufw is active');
    expect(frame).toContain('✗ mysql-1 connection refused');
    await wizard.press(KEY.enter);
    expect(wizard.frame()).toContain('cannot continue: mysql-1 failed');
  });

  it('Ctrl+C while a host key question is showing quits (nothing has changed yet) and refuses the key', async () => {
    let answer: boolean | undefined;
    const wizard = await renderWizard({
      fleet: SEED_FLEET,
      discover: async (host, prompter) => {
        if (host === 'mysql-1') answer = await prompter.confirmHostKey('mysql-1', 'ssh-ed25519', 'SHA256:abc');
        return discovered(host, 14, [22], []);
      },
    });
    await wizard.press('l');
    await wizard.waitFor('Unknown host key for mysql-1');
    await wizard.press(KEY.ctrlC);
    expect(wizard.exits).toEqual([0]);
    expect(answer).toBe(false);
  });

  it('lets the operator change an interface side; the change reaches the preview', async () => {
    const wizard = await renderWizard({fleet: {hosts: [SEED_FLEET.hosts[0]!]}});
    await wizard.press('l');
    await wizard.waitFor('discover (1/1)');
    await wizard.press(KEY.space); // eth0 public -> private (eth1 gives way)
    const frame = wizard.frame();
    expect(frame).toMatch(/eth0\s+private/);
    expect(frame).toMatch(/eth1\s+ignore/);
    await wizard.press(KEY.enter, KEY.enter);
    await wizard.waitFor('preview');
    expect(wizard.calls.preview[0]?.fleet.hosts[0]).toMatchObject({
      interfaces: {private: 'eth0'},
      addresses: {public: [], private: ['203.0.113.10', '2001:db8:100::10']},
    });
  });

  it('pre-selects roles from what is listening; Esc goes back without losing choices', async () => {
    const wizard = await renderWizard({fleet: SEED_FLEET});
    await wizard.press('l');
    await wizard.waitFor('discover (3/3)');
    await wizard.press(KEY.enter);
    let frame = await wizard.waitFor('roles');
    expect(frame).toMatch(/haproxy-www.*\[ \] db \[x\] lb/);
    expect(frame).toMatch(/mysql-1.*\[x\] db \[ \] lb/);
    expect(frame).toMatch(/tunnel-1.*\[ \] app \[ \] bastion/);
    // tunnel-1 is the first row: → to "bastion", Space.
    await wizard.press(KEY.right, KEY.space);
    expect(wizard.frame()).toMatch(/tunnel-1.*\[x\] bastion/);
    await wizard.press(KEY.escape);
    expect(wizard.frame()).toContain('discover (3/3)');
    await wizard.press(KEY.enter);
    frame = wizard.frame();
    expect(frame).toMatch(/tunnel-1.*\[x\] bastion/);
    // A custom opening on tunnel-1.
    await wizard.press('c');
    await wizard.type('51820/udp from internet');
    await wizard.press(KEY.enter);
    expect(wizard.frame()).toContain('udp/51820 from internet');
    await wizard.press(KEY.enter);
    await wizard.waitFor('Lockout check');
    const previewed = wizard.calls.preview[0]!.fleet.hosts;
    expect(previewed.map((host) => [host.name, host.roles])).toEqual([
      ['tunnel-1', ['bastion']],
      ['haproxy-www', ['lb']],
      ['mysql-1', ['db']],
    ]);
    expect(previewed[0]?.allow).toEqual([{port: 51820, proto: 'udp', from: 'internet'}]);
    expect(wizard.stored().fleet).toEqual(SEED_FLEET); // nothing saved before it is kept
  });

  it('rejects a malformed custom port naming the host', async () => {
    const wizard = await renderWizard({fleet: SEED_FLEET});
    await wizard.press('l');
    await wizard.waitFor('discover (3/3)');
    await wizard.press(KEY.enter, 'c');
    await wizard.type('70000');
    await wizard.press(KEY.enter);
    expect(wizard.frame()).toContain('tunnel-1: port: 70000 is outside 1-65535');
  });
});

async function toPreview(options: Parameters<typeof renderWizard>[0] = {}, size?: Parameters<typeof renderWizard>[2]) {
  const wizard = await renderWizard({fleet: SEED_FLEET, ...options}, true, size);
  await wizard.press('l');
  await wizard.waitFor('discover (3/3)');
  await wizard.press(KEY.enter);
  await wizard.waitFor('roles');
  await wizard.press(KEY.enter);
  await wizard.waitFor(/Lockout check|✗/);
  return wizard;
}

describe('preview', () => {
  it('shows the diff first, then rules, access; ←→ switches servers', async () => {
    const wizard = await toPreview();
    let frame = wizard.frame();
    expect(frame).toContain('preview · tunnel-1 · diff');
    expect(frame).toContain('+ :INPUT DROP');
    expect(frame).toContain('✓ Lockout check');
    await wizard.press(KEY.right);
    expect(wizard.frame()).toContain('preview · haproxy-www · diff');
    expect(wizard.frame()).toContain('+ roles lb');
    await wizard.press('2');
    expect(wizard.frame()).toContain('haproxy-www roles lb');
    await wizard.press('4');
    frame = wizard.frame();
    expect(frame).toContain('internet → haproxy-www tcp/80,443');
  });

  it.each([
    {columns: 80, rows: 24},
    {columns: 200, rows: 60},
  ])('5 shows the access matrix, fitted to a $columns-column terminal', async (size) => {
    const names = ['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'];
    const web = {first: 80, last: 80};
    const mysql = {first: 3306, last: 3306};
    const access = [
      {destination: 'haproxy-www', sources: ['internet'], tcp: [web, {first: 443, last: 443}], udp: [], uncertain: []},
      ...['wordpress-1', 'wordpress-2'].map((destination) => ({destination, sources: ['haproxy-www'], tcp: [web], udp: [], uncertain: []})),
      ...['mysql-1', 'mysql-2'].map((destination) => ({destination, sources: ['wordpress-1', 'wordpress-2'], tcp: [mysql], udp: [], uncertain: []})),
    ];
    const wizard = await toPreview({preview: async (fleet, hosts) => ({...defaultPreview(fleet, hosts), matrix: buildMatrix(names, access)})}, size);
    await wizard.press('5');
    const frame = wizard.frame();
    expect(frame).toContain('access matrix');
    expect(frame).toMatch(/3306/);
    for (const line of frame.split('\n')) expect([...line].length).toBeLessThanOrEqual(size.columns);
    const expected = renderMatrix(buildMatrix(names, access), {columns: size.columns});
    // What is drawn is the matrix rendered for this width, from its first line.
    expect(frame).toContain(expected[0]?.trimEnd() ?? '');
  });

  it('a lockout finding blocks the apply', async () => {
    const wizard = await toPreview({
      preview: async (fleet, hosts) => ({
        hosts: hosts.map((host) => ({host, rulesV4: '', rulesV6: '', diff: ['+ x'], warnings: []})),
        access: [],
        lockout: ['mysql-1: a new SSH connection from tunnel-1 (10.132.0.10) on eth1 to tcp/22 would be dropped by the INPUT policy DROP'],
        problems: [],
      }),
    });
    const frame = wizard.frame();
    expect(frame).toContain('would cut your SSH path');
    expect(frame).toContain('mysql-1: a new SSH connection from tunnel-1');
    expect(frame).not.toContain('a apply');
    await wizard.press('a');
    expect(wizard.frame()).toContain('apply is blocked');
    expect(wizard.calls.apply).toHaveLength(0);
  });

  it('names what another firewall drops and offers the remedy (o): the apply gets the choice', async () => {
    const drops = 'wordpress-1: firewalld (table inet firewalld) drops what the plan opens: tcp/80,443 from haproxy-www (IPv4, IPv6; rule 8 of filter_INPUT)';
    const wizard = await toPreview({preview: async (fleet, hosts) => ({...defaultPreview(fleet, hosts), otherFirewalls: [drops]})});
    let frame = wizard.frame();
    expect(frame).toContain('⚠ wordpress-1: firewalld (table inet firewalld) drops');
    expect(frame).toContain('o to change');
    await wizard.press('o');
    frame = await wizard.waitFor('other firewall: open exactly those flows');
    await wizard.press('o');
    await wizard.waitFor('other firewall: stop that firewall');
    await wizard.press('o', 'o'); // back to refuse, then open
    await wizard.waitFor('other firewall: open exactly those flows');
    await wizard.press('a');
    await wizard.waitFor('keep the new rules?');
    expect(wizard.calls.apply[0]?.fleet.options?.otherFirewall).toBe('open');
  });

  it('says nothing of other firewalls where none drops a planned flow', async () => {
    const wizard = await toPreview();
    expect(wizard.frame()).not.toContain('other firewall');
  });

  it('scrolls long rules in a window sized to the terminal', async () => {
    const long = Array.from({length: 60}, (_, index) => `-A INPUT rule-${index}`).join('\n');
    const wizard = await toPreview({
      preview: async (_fleet, hosts) => ({hosts: hosts.map((host) => ({host, rulesV4: long, rulesV6: '', diff: [], warnings: []})), access: [], lockout: [], problems: []}),
    });
    await wizard.press('2');
    let frame = wizard.frame();
    expect(frame).toContain('rule-0');
    expect(frame).not.toContain('rule-40');
    expect(frame.split('\n').length).toBeLessThanOrEqual(23);
    await wizard.press('\u001B[6~'); // PgDn
    frame = wizard.frame();
    expect(frame).not.toContain('rule-0\n');
    expect(frame).toMatch(/▲ \d+–\d+ of 60 ▼/);
  });
});

describe('apply and countdown', () => {
  it('ticks each step per server, then counts down; K keeps and shows backups and reboot survival', async () => {
    const gate = deferred<void>();
    const wizard = await toPreview({
      apply: async (hosts, deadlineSeconds, onProgress: (event: ApplyProgress) => void): Promise<ApplyOutcome> => {
        for (const host of hosts) {
          onProgress({host, step: 'lock', status: 'done'});
          onProgress({host, step: 'snapshot', status: 'running'});
        }
        await gate.promise;
        for (const host of hosts) for (const step of ['snapshot', 'validate', 'watchdog', 'load', 'verify'] as const) onProgress({host, step, status: 'done'});
        return {kind: 'pending', batch: {id: 'b-9', hosts, deadline: 1_000_000 + deadlineSeconds * 1000, checks: [{label: 'new SSH session to mysql-1 through tunnel-1', ok: true}]}};
      },
    });
    await wizard.press('a');
    let frame = await wizard.waitFor('✓ lock');
    expect(frame).toMatch(/mysql-1\s+✓ lock\s+\S+ snapshot\s+· validate/);
    gate.resolve();
    frame = await wizard.waitFor('keep the new rules?');
    expect(frame).toContain('1:00 left');
    expect(frame).toContain('✓ new SSH session to mysql-1 through tunnel-1');
    wizard.clock.advance(15_000);
    expect(await wizard.waitFor('0:45 left')).toContain('0:45 left');
    await wizard.press('K');
    frame = await wizard.waitFor('isolate-wizard · kept');
    expect(frame).toMatch(/tunnel-1 keeps the new rules; survives a reboot; previous rules in \/var\/lib\/isolate-wizard\/backup/);
    // Said once for the fleet, not per server.
    expect(frame.match(/will NOT survive a reboot/g)).toHaveLength(1);
    expect(frame).toMatch(/live only, will NOT survive a reboot: mysql-1 \(no iptables-persistent/);
    expect(wizard.calls.keep).toHaveLength(1);
    // The rules of mysql-1 would not survive a reboot: p installs the loader there, only there.
    expect(frame).toContain('make them survive a reboot');
    await wizard.press('p');
    frame = await wizard.waitFor('3 survive a reboot');
    expect(wizard.calls.installPersistence).toEqual([['mysql-1']]);
    expect(frame).not.toContain('will NOT survive a reboot');
    expect(frame).not.toContain('make them survive a reboot');
    expect(wizard.calls.rollback).toHaveLength(0);
    // Kept: the fleet with its roles is saved.
    expect(wizard.stored().fleet.hosts.map((host) => host.roles)).toEqual([[], ['lb'], ['db']]);
    await wizard.press(KEY.enter);
    expect(wizard.frame()).toContain('isolate-wizard · fleet');
  });

  it('R rolls back now and shows each server verified on its previous rules', async () => {
    const wizard = await toPreview();
    await wizard.press('a');
    await wizard.waitFor('keep the new rules?');
    await wizard.press('r');
    const frame = await wizard.waitFor('rolled back');
    expect(frame).toMatch(/✓ mysql-1 back on its previous rules: rules equal the snapshot/);
    expect(wizard.calls.rollback).toHaveLength(1);
    expect(wizard.calls.keep).toHaveLength(0);
    expect(wizard.stored().fleet).toEqual(SEED_FLEET);
  });

  it('Ctrl+C during the countdown rolls back instead of quitting', async () => {
    const wizard = await toPreview();
    await wizard.press('a');
    await wizard.waitFor('keep the new rules?');
    await wizard.press(KEY.ctrlC);
    await wizard.waitFor('rolled back');
    expect(wizard.calls.rollback).toHaveLength(1);
    expect(wizard.exits).toEqual([]);
  });

  it('Ctrl+C while the apply is still running rolls back as soon as the batch exists', async () => {
    const gate = deferred<void>();
    const wizard = await toPreview({
      apply: async (hosts) => {
        await gate.promise;
        return {kind: 'pending', batch: {id: 'b-2', hosts, deadline: 1_060_000, checks: []}};
      },
    });
    await wizard.press('a', KEY.ctrlC);
    expect(wizard.calls.rollback).toHaveLength(0);
    gate.resolve();
    await wizard.waitFor('rolled back');
    expect(wizard.calls.rollback.map((batch) => batch.id)).toEqual(['b-2']);
  });

  it('shows the live check on the countdown, each flow that differs from the plan listed', async () => {
    const differing = ['✗ haproxy-www → wordpress-1 10.132.0.12:80  planned open, live dropped (no answer within 2 s) — from haproxy-www\'s sshd'];
    const wizard = await toPreview({
      apply: async (hosts) => ({
        kind: 'pending',
        batch: {id: 'b-3', hosts, deadline: 1_060_000, checks: [], liveCheck: {summary: '96 flows tried: 95 as planned, 1 differ from the plan, 0 untested', differing}},
      }),
    });
    await wizard.press('a');
    const frame = await wizard.waitFor('keep the new rules?');
    expect(frame).toContain('live check: 96 flows tried: 95 as planned, 1 differ');
    expect(frame).toContain('✗ haproxy-www → wordpress-1 10.132.0.12:80');
  });

  it('a sampled live check\'s long summary is wrapped at 80 columns, whole: the sample and the verdict both show, the timer and hints stay', async () => {
    const summary = '644 of 3968 flows tried (a sample, every host covered): 643 as planned, 1 differ from the plan, 0 untested';
    const differing = ['✗ haproxy-www → wordpress-1 10.132.0.12:80  planned open, live dropped (no answer within 2 s) — from haproxy-www\'s sshd'];
    const wizard = await toPreview(
      {apply: async (hosts) => ({kind: 'pending', batch: {id: 'b-5', hosts, deadline: 1_060_000, checks: [{host: 'haproxy-www', label: 'live rules match', ok: true}], liveCheck: {summary, differing}}})},
      {columns: 80, rows: 24},
    );
    await wizard.press('a');
    await wizard.waitFor('keep the new rules?');
    const lines = wizard.screen().split('\n');
    expect(lines.length).toBeLessThanOrEqual(23);
    for (const line of lines) expect([...line].length).toBeLessThanOrEqual(80);
    expect(lines[0]).toContain('isolate-wizard · keep the new rules?');
    expect(lines.slice(-2).join('\n')).toContain('roll back now');
    const text = lines.map((line) => line.trim()).join(' ');
    expect(text).toContain(`live check: ${summary}`);
    expect(text).toContain('✗ haproxy-www → wordpress-1 10.132.0.12:80');
  });

  it('M on the countdown shows the access matrix marked by the live results, and back', async () => {
    const names = ['haproxy-www', 'wordpress-1'];
    const access = [{destination: 'wordpress-1', sources: ['haproxy-www'], tcp: [{first: 80, last: 80}], udp: [], uncertain: []}];
    const flow = {from: 'haproxy-www', planSource: 'haproxy-www', to: 'wordpress-1', address: '10.132.0.12', family: 4 as const, port: 80, expect: 'open' as const};
    const matrix = buildMatrix(names, access, [{flow, live: 'dropped', detail: 'no answer within 2 s', triedFrom: "haproxy-www's sshd"}]);
    const wizard = await toPreview({
      apply: async (hosts) => ({
        kind: 'pending',
        batch: {id: 'b-4', hosts, deadline: 1_060_000, checks: [{host: 'haproxy-www', label: 'new SSH session; live rules match', ok: true}], liveCheck: {summary: '1 flow tried: 1 differs', differing: [], matrix}},
      }),
    });
    await wizard.press('a');
    let frame = await wizard.waitFor('keep the new rules?');
    expect(frame).toContain('M matrix');
    expect(frame).toContain('live rules match');
    await wizard.press('m');
    frame = wizard.frame();
    expect(frame).not.toContain('live rules match');
    expect(frame).toContain('✗80');
    await wizard.press('m');
    expect(wizard.frame()).toContain('live rules match');
  });

  it('Esc does not leave the countdown', async () => {
    const wizard = await toPreview();
    await wizard.press('a');
    await wizard.waitFor('keep the new rules?');
    await wizard.press(KEY.escape);
    expect(wizard.frame()).toContain('keep the new rules?');
  });

  it('when the timer reaches zero it reconnects and shows the verified rollback', async () => {
    const wizard = await toPreview();
    await wizard.press('a');
    await wizard.waitFor('keep the new rules?');
    wizard.clock.advance(59_000);
    await wizard.waitFor('0:01 left');
    expect(wizard.calls.verifyExpired).toHaveLength(0);
    wizard.clock.advance(1_000);
    const frame = await wizard.waitFor('deadline passed — rolled back');
    expect(frame).toMatch(/✓ haproxy-www back on its previous rules: the watchdog restored the snapshot/);
    expect(wizard.calls.verifyExpired).toHaveLength(1);
    expect(wizard.calls.keep).toHaveLength(0);
    await wizard.press('K');
    expect(wizard.calls.keep).toHaveLength(0);
  });

  it('a refused apply says nothing was changed', async () => {
    const wizard = await toPreview({apply: async () => ({kind: 'refused', reasons: ['mysql-1: locked by alice@laptop (pid 42) since 01:02']})});
    await wizard.press('a');
    const frame = await wizard.waitFor('refused — nothing was changed');
    expect(frame).toContain('mysql-1: locked by alice@laptop');
  });

  it('a failed step shows on its server and the outcome says rolled back', async () => {
    const wizard = await toPreview({
      apply: async (hosts, _seconds, onProgress) => {
        onProgress({host: 'mysql-1', step: 'validate', status: 'failed', detail: 'iptables-restore --test: line 7 failed'});
        return {kind: 'failed', reasons: ['mysql-1: validate failed; every host rolled back'], rolledBack: true};
      },
    });
    await wizard.press('a');
    const frame = await wizard.waitFor('apply failed — rolled back');
    expect(frame).toContain('mysql-1: validate failed; every host rolled back');
  });
});
