// Every list of servers at 6, 40 and 500 servers, in an 80x24 and a 200x60 terminal: it fits,
// every server can be reached by moving the selection, the title and key hints stay, no line is
// wider than the terminal, and the position line says which rows show.

import {afterEach, describe, expect, it} from 'vitest';
import {cleanup, KEY, renderWizard, type TerminalSize} from './harness.js';
import {deferred, discovered, generatedFleet, type Deferred} from './fakes.js';
import type {ApplyOutcome, ApplyProgress, HostState} from '../../source/ui/services.js';

afterEach(() => cleanup());

const SIZES: readonly TerminalSize[] = [
  {columns: 80, rows: 24},
  {columns: 200, rows: 60},
];
const CASES = [6, 40, 500].flatMap((servers) => SIZES.map((size) => ({servers, ...size})));
const name = (index: number) => `host-${String(index).padStart(3, '0')}`;
const PAGE_DOWN = '\u001B[6~';
const END = '\u001B[F';

/** The frame fits the terminal: title first, hints last, no line wider than it. */
function expectFits(frame: string, size: TerminalSize, title: string, hint: string): string[] {
  const lines = frame.split('\n');
  expect(lines.length, frame).toBeLessThanOrEqual(size.rows - 1);
  expect(lines[0], frame).toContain(`isolate-wizard · ${title}`);
  expect(lines.slice(-3).join('\n'), frame).toContain(hint);
  for (const line of lines) expect(line.length, `${line}\n(in)\n${frame}`).toBeLessThanOrEqual(size.columns);
  return lines;
}

/** Host rows shown (by index), checked to be whole and consecutive, and the position line's numbers. */
function visibleRows(lines: readonly string[], total: number): {rows: number[]; selected: number | undefined} {
  const rows: number[] = [];
  let selected: number | undefined;
  for (const line of lines) {
    const match = /^(❯| ) host-(\d{3})\s/.exec(line);
    if (!match) continue;
    rows.push(Number(match[2]));
    if (match[1] === '❯') selected = Number(match[2]);
  }
  for (let index = 1; index < rows.length; index += 1) expect(rows[index], lines.join('\n')).toBe((rows[index - 1] ?? 0) + 1);
  const position = lines.map((line) => /([▲ ]) (\d+)–(\d+) of (\d+)( ▼)?/.exec(line)).find(Boolean);
  if (rows.length < total) {
    expect(position, lines.join('\n')).toBeTruthy();
    expect(Number(position?.[2])).toBe((rows[0] ?? 0) + 1);
    expect(Number(position?.[3])).toBe((rows.at(-1) ?? 0) + 1);
    expect(Number(position?.[4])).toBe(total);
    expect(position?.[1]).toBe(rows[0] === 0 ? ' ' : '▲');
    expect(position?.[5]).toBe(rows.at(-1) === total - 1 ? undefined : ' ▼');
  } else expect(position).toBeFalsy();
  return {rows, selected};
}

describe('the fleet home', () => {
  it.each(CASES)('$servers servers at $columns×$rows: every server reachable, the frame always fits', async ({servers, columns, rows}) => {
    const size = {columns, rows};
    const states: Record<string, HostState> = {
      [name(1)]: {kind: 'locked', detail: 'since 2026-12-01 10:00 UTC'},
      // Selected on the walk: its long drift and its two extra key hints must fit too.
      [name(2)]: {kind: 'drifted', drift: 'drift: opens host-002 to the internet: tcp/3306 (IPv4 only, not confirmed); IPv4 rule added: -A INPUT -p tcp --dport 3306 -j ACCEPT', adopt: [{port: 3306, proto: 'tcp', from: 'internet'}]},
      [name(servers - 1)]: {kind: 'unreachable', reason: 'connection timed out after 10 s'},
    };
    const wizard = await renderWizard({fleet: generatedFleet(servers), states}, true, size);
    await wizard.waitFor('locked down');
    let lines = expectFits(wizard.frame(), size, `fleet (${servers} servers)`, 'q quit');
    let shown = visibleRows(lines, servers);
    expect(shown.rows[0]).toBe(0);
    expect(shown.selected).toBe(0);
    expect(lines.join('\n')).toMatch(/❯ host-000 +root@203\.0\.113\.0 +bastion +unmanaged/);
    // Walk to the last server (one row at a time, or a page at a time for 500), checking every frame.
    const step = servers > 100 ? PAGE_DOWN : KEY.down;
    for (let presses = 0; shown.selected !== servers - 1 && presses < servers; presses += 1) {
      await wizard.press(step);
      lines = expectFits(wizard.frame(), size, 'fleet', 'q quit');
      const next = visibleRows(lines, servers);
      expect(next.selected, lines.join('\n')).toBeGreaterThan(shown.selected ?? -1);
      shown = next;
    }
    expect(shown.selected).toBe(servers - 1);
    expect(shown.rows.at(-1)).toBe(servers - 1);
    expect(lines.join('\n')).toMatch(/❯ host-\d{3} .*unreachable: connection timed out/);
    if (shown.rows.length < servers) expect(shown.rows).not.toContain(0);
    // ↓ on the last server wraps to the first.
    await wizard.press(KEY.down);
    shown = visibleRows(expectFits(wizard.frame(), size, 'fleet', 'q quit'), servers);
    expect([shown.selected, shown.rows[0]]).toEqual([0, 0]);
  });

  it('follows a resize: 40 servers from 200×60 to 80×24 and back, the selection in view', async () => {
    const wizard = await renderWizard({fleet: generatedFleet(40)}, true, {columns: 200, rows: 60});
    await wizard.waitFor('unmanaged');
    await wizard.press(...Array.from({length: 30}, () => KEY.down));
    let shown = visibleRows(expectFits(wizard.frame(), {columns: 200, rows: 60}, 'fleet', 'q quit'), 40);
    expect(shown.rows).toHaveLength(40);
    await wizard.resize(80, 24);
    shown = visibleRows(expectFits(wizard.frame(), {columns: 80, rows: 24}, 'fleet', 'q quit'), 40);
    expect(shown.selected).toBe(30);
    expect(shown.rows.length).toBeLessThan(40);
    await wizard.resize(80, 12);
    shown = visibleRows(expectFits(wizard.frame(), {columns: 80, rows: 12}, 'fleet', 'q quit'), 40);
    expect(shown.selected).toBe(30);
    await wizard.resize(200, 60);
    expect(visibleRows(expectFits(wizard.frame(), {columns: 200, rows: 60}, 'fleet', 'q quit'), 40).rows).toHaveLength(40);
  });

  it('stays responsive while 500 status checks are still out: a key moves the selection before any answers', async () => {
    const answers = new Map<string, Deferred<HostState>>();
    const wizard = await renderWizard(
      {
        fleet: generatedFleet(500),
        status: (host) => {
          const answer = deferred<HostState>();
          answers.set(host, answer);
          return answer.promise;
        },
      },
      true,
      {columns: 80, rows: 24},
    );
    await wizard.waitFor('checking…');
    expect(answers.size).toBe(500);
    await wizard.press(KEY.down, KEY.down);
    expect(wizard.frame()).toMatch(/❯ host-002 .*checking…/);
    // Answers show as they come, host by host.
    answers.get(name(1))?.resolve({kind: 'locked'});
    expect(await wizard.waitFor(/host-001 .*locked down/)).toMatch(/host-003 .*checking…/);
    for (const answer of answers.values()) answer.resolve({kind: 'unmanaged'});
    expect(await wizard.waitFor(/host-003 .*unmanaged/)).toMatch(/host-001 .*locked down/);
  });
});

/** From the home to the roles of a lockdown of `servers`, at `size`. */
async function lockdown(servers: number, size: TerminalSize, options: Parameters<typeof renderWizard>[0] = {}) {
  const fleet = generatedFleet(servers);
  const wizard = await renderWizard({fleet, discover: async (host) => discovered(host, 20, [22, 80, 443], ['app']), ...options}, true, size);
  await wizard.waitFor('unmanaged');
  await wizard.press('l');
  await wizard.waitFor(`discover (${servers}/${servers})`);
  return wizard;
}

describe('a lockdown of 40 servers at 80×24', () => {
  const size = {columns: 80, rows: 24};

  it('discover: every interface of every server reachable with ↓', async () => {
    const wizard = await lockdown(40, size);
    let frame = wizard.frame();
    expectFits(frame, size, 'discover (40/40)', 'Esc back');
    expect(frame).toMatch(/^✓ host-000 /m);
    expect(frame).toMatch(/ 1–\d+ of \d+ ▼/);
    for (let press = 0; press < 79; press += 1) {
      await wizard.press(KEY.down);
      expectFits(wizard.frame(), size, 'discover', 'Esc back');
    }
    frame = wizard.frame();
    expect(frame).toMatch(/^✓ host-039 /m); // the last server's header, with its selected interface
    expect(frame).toMatch(/❯ eth1 +private/);
    expect(frame).not.toMatch(/host-000 /);
    expect(frame).toMatch(/▲ \d+–(\d+) of \1$/m);
  });

  it('roles, preview tabs, apply progress, countdown checks and the kept list all fit and scroll', async () => {
    const gate = deferred<void>();
    const checks = Array.from({length: 40}, (_, index) => ({label: `new SSH session to ${name(index)} through host-000`, ok: index !== 17}));
    const wizard = await lockdown(40, size, {
      apply: async (hosts, deadlineSeconds, onProgress: (event: ApplyProgress) => void): Promise<ApplyOutcome> => {
        // Ten servers finished, eight at work, the rest waiting.
        for (const host of hosts.slice(0, 10)) for (const step of ['lock', 'snapshot', 'validate', 'watchdog', 'load', 'verify'] as const) onProgress({host, step, status: 'done'});
        for (const host of hosts.slice(10, 18)) {
          onProgress({host, step: 'lock', status: 'done'});
          onProgress({host, step: 'snapshot', status: 'running'});
        }
        await gate.promise;
        for (const host of hosts.slice(10)) for (const step of ['lock', 'snapshot', 'validate', 'watchdog', 'load', 'verify'] as const) onProgress({host, step, status: 'done'});
        return {kind: 'pending', batch: {id: 'b-40', hosts, deadline: 1_000_000 + deadlineSeconds * 1000, checks}};
      },
    });
    await wizard.press(KEY.enter);
    let frame = await wizard.waitFor('roles (40 servers)');
    expectFits(frame, size, 'roles', 'Esc back');
    for (let press = 0; press < 39; press += 1) await wizard.press(KEY.down);
    frame = expectFits(wizard.frame(), size, 'roles', 'Esc back').join('\n');
    expect(frame).toMatch(/❯ host-039 +\[ \] app \[ \] bastion \[x\] db/);
    expect(frame).not.toMatch(/host-000/);
    expect(frame).toMatch(/▲ \d+–40 of 40/);

    await wizard.press(KEY.enter);
    frame = await wizard.waitFor('Lockout check');
    expectFits(frame, size, 'preview · host-000 · diff', 'Esc back');
    expect(frame).toMatch(/◀ 1 of 40 ▶/);
    for (let press = 0; press < 39; press += 1) await wizard.press(KEY.right);
    frame = expectFits(wizard.frame(), size, 'preview · host-039 · diff', 'Esc back').join('\n');
    expect(frame).toMatch(/host-039\*/);
    expect(frame).not.toMatch(/host-000\*/);
    expect(frame).toMatch(/◀ 40 of 40 ▶/);

    await wizard.press('a');
    frame = await wizard.waitFor('10 done · 8 running · 0 failed · 22 waiting');
    // The finished ten are printed once above; the live area is the summary and the servers at work.
    const live = wizard.frame().split('\n');
    expect(live.filter((line) => /^host-00\d .*✓ verified/.test(line))).toHaveLength(10);
    const liveArea = live.slice(live.findIndex((line) => line.startsWith('isolate-wizard · apply')));
    expect(liveArea.length).toBeLessThanOrEqual(14);
    expect(liveArea.filter((line) => /^host-0(1[0-7]) +✓ lock/.test(line))).toHaveLength(8);
    for (const line of live) expect(line.length).toBeLessThanOrEqual(80);
    gate.resolve();
    frame = await wizard.waitFor('keep the new rules?');
    // Each finished server was printed exactly once, however often the screen redrew.
    for (const index of [0, 9, 10, 39]) expect(frame.split('\n').filter((line) => line.startsWith(`${name(index)} `))).toHaveLength(1);
    const countdown = expectFits(wizard.screen(), size, 'keep the new rules?', 'roll back now').join('\n');
    expect(countdown).toContain('✗ 39 of 40 checks passed, 1 failed');
    expect(countdown).toMatch(/✗ new SSH session to host-017/); // the failed check first
    for (let press = 0; press < 40; press += 1) await wizard.press(KEY.down);
    expect(expectFits(wizard.screen(), size, 'keep the new rules?', 'roll back now').join('\n')).toMatch(/✓ new SSH session to host-039 .*\n.*▲ \d+–40 of 40/);

    await wizard.press('K');
    await wizard.waitFor('isolate-wizard · kept');
    frame = expectFits(wizard.screen(), size, 'kept', 'fleet home').join('\n');
    expect(frame).toContain('40 servers kept the new rules · 40 survive a reboot · 0 live only');
    await wizard.press(END);
    frame = expectFits(wizard.screen(), size, 'kept', 'fleet home').join('\n');
    expect(frame).toMatch(/✓ host-039 keeps the new rules/);
    expect(frame).toMatch(/▲ \d+–40 of 40/);
  });
});

describe('500 servers at 80×24', () => {
  it('discover, roles and preview stay within the terminal', async () => {
    const size = {columns: 80, rows: 24};
    const wizard = await lockdown(500, size);
    expectFits(wizard.frame(), size, 'discover (500/500)', 'Esc back');
    await wizard.press(KEY.enter);
    expectFits(await wizard.waitFor('roles (500 servers)'), size, 'roles', 'Esc back');
    await wizard.press(PAGE_DOWN, PAGE_DOWN);
    const roles = expectFits(wizard.frame(), size, 'roles', 'Esc back').join('\n');
    expect(roles).toMatch(/❯ host-0[1-9]\d /);
    expect(roles).not.toMatch(/host-000/);
    await wizard.press(KEY.enter);
    const frame = expectFits(await wizard.waitFor('Lockout check'), size, 'preview', 'Esc back').join('\n');
    expect(frame).toMatch(/◀ 1 of 500 ▶/);
  });
});

const HOME = '\u001B[H';
const STEPS = ['lock', 'snapshot', 'validate', 'watchdog', 'load', 'verify'] as const;

describe.each(CASES)('a lockdown of $servers servers at $columns×$rows', ({servers, columns, rows}) => {
  it('discover, roles, every preview view, apply progress, countdown and kept list: each fits, End reaches the last server', async () => {
    const size = {columns, rows};
    const last = name(servers - 1);
    const gate = deferred<void>();
    const half = Math.floor(servers / 2);
    const wizard = await lockdown(servers, size, {
      apply: async (hosts, deadlineSeconds, onProgress: (event: ApplyProgress) => void): Promise<ApplyOutcome> => {
        for (const host of hosts.slice(0, half)) for (const step of STEPS) onProgress({host, step, status: 'done'});
        for (const host of hosts.slice(half, half + 3)) onProgress({host, step: 'lock', status: 'running'});
        await gate.promise;
        for (const host of hosts.slice(half)) for (const step of STEPS) onProgress({host, step, status: 'done'});
        const checks = hosts.map((host) => ({label: `new SSH session to ${host} through host-000`, ok: true}));
        const liveCheck = {summary: `${servers * 4} of ${servers * servers} flows tried (a sample, every host covered): ${servers * 4} as planned, 0 differ from the plan, 0 untested`, differing: []};
        return {kind: 'pending', batch: {id: 'b-sizes', hosts, deadline: 1_000_000 + deadlineSeconds * 1000, checks, liveCheck}};
      },
    });
    expectFits(wizard.frame(), size, `discover (${servers}/${servers})`, 'Esc back');
    await wizard.press(END);
    let frame = expectFits(wizard.frame(), size, 'discover', 'Esc back').join('\n');
    expect(frame).toMatch(new RegExp(`^✓ ${last} `, 'm'));
    expect(frame).toMatch(/❯ eth1 +private/);
    await wizard.press(HOME);
    expect(expectFits(wizard.frame(), size, 'discover', 'Esc back').join('\n')).toMatch(/^✓ host-000 /m);

    await wizard.press(KEY.enter);
    expectFits(await wizard.waitFor(`roles (${servers} servers)`), size, 'roles', 'Esc back');
    await wizard.press(END);
    frame = expectFits(wizard.frame(), size, 'roles', 'Esc back').join('\n');
    expect(frame).toMatch(new RegExp(`❯ ${last} `));
    await wizard.press(HOME);
    expect(expectFits(wizard.frame(), size, 'roles', 'Esc back').join('\n')).toMatch(/❯ host-000 /);

    await wizard.press(KEY.enter);
    await wizard.waitFor('Lockout check');
    for (const [key, label] of [['1', 'diff'], ['2', 'IPv4 rules'], ['3', 'IPv6 rules'], ['4', 'access'], ['5', 'access matrix']] as const) {
      await wizard.press(key);
      expectFits(wizard.frame(), size, `preview · host-000 · ${label}`, 'Esc back');
      await wizard.press(END);
      expectFits(wizard.frame(), size, `preview · host-000 · ${label}`, 'Esc back');
    }

    await wizard.press('a');
    await wizard.waitFor(`${half} done · 3 running · 0 failed · ${servers - half - 3} waiting`);
    // The live area under what was printed once: the title, the summary, the servers at work, the hints.
    const live = wizard.frame().split('\n');
    const liveArea = live.slice(live.findIndex((line) => line.startsWith('isolate-wizard · apply')));
    expect(liveArea.length, liveArea.join('\n')).toBeLessThanOrEqual(Math.min(rows - 1, 14));
    for (const line of live) expect(line.length).toBeLessThanOrEqual(columns);
    gate.resolve();
    await wizard.waitFor('keep the new rules?');
    frame = expectFits(wizard.screen(), size, 'keep the new rules?', 'roll back now').join('\n');
    expect(frame).toContain(`✓ ${servers} of ${servers} checks passed`);
    expect(frame.split('\n').map((line) => line.trim()).join(' ')).toContain('(a sample, every host covered)');
    await wizard.press(END);
    expect(expectFits(wizard.screen(), size, 'keep the new rules?', 'roll back now').join('\n')).toContain(`✓ new SSH session to ${last} `);

    await wizard.press('K');
    await wizard.waitFor('isolate-wizard · kept');
    expectFits(wizard.screen(), size, 'kept', 'fleet home');
    await wizard.press(END);
    expect(expectFits(wizard.screen(), size, 'kept', 'fleet home').join('\n')).toMatch(new RegExp(`✓ ${last} keeps the new rules`));
  });
});
