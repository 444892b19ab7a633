// The fleet home in a real terminal: a pseudo-terminal (node-pty) at 80x24 read back through a
// headless xterm, with 40 servers. Every visible row is one whole host row (no wrapped halves, no
// skipped rows, the title and the hints in place), before and after walking to the last server.

import path from 'node:path';
import pty from '@lydell/node-pty';
import xterm from '@xterm/headless';
import {afterEach, describe, expect, it} from 'vitest';

const {Terminal} = xterm;
const COLUMNS = 80;
const ROWS = 24;

class FakeWizardTerminal {
  private readonly terminal = new Terminal({cols: COLUMNS, rows: ROWS, allowProposedApi: true});
  private readonly process: pty.IPty;
  exited: number | undefined;

  constructor(servers: number) {
    const script = path.resolve(import.meta.dirname, 'support/fake-wizard.tsx');
    this.process = pty.spawn(process.execPath, ['--import', 'tsx', script, String(servers)], {
      name: 'xterm-256color',
      cols: COLUMNS,
      rows: ROWS,
      cwd: path.resolve(import.meta.dirname, '../..'),
      env: {...process.env, CI: 'false', TERM: 'xterm-256color'},
    });
    this.process.onData((data) => this.terminal.write(data));
    this.process.onExit((event) => {
      this.exited = event.exitCode;
    });
  }

  rows(): string[] {
    const buffer = this.terminal.buffer.active;
    return Array.from({length: ROWS}, (_, row) => buffer.getLine(buffer.viewportY + row)?.translateToString(true) ?? '');
  }

  /** Waits for the text on screen: the screen is read every 50 ms, never assumed after a sleep. */
  async waitFor(pattern: RegExp, timeoutMs = 60_000): Promise<string[]> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const rows = this.rows();
      if (pattern.test(rows.join('\n'))) return rows;
      if (this.exited !== undefined) throw new Error(`exited (${this.exited}) before ${String(pattern)}:\n${rows.join('\n')}`);
      if (Date.now() > until) throw new Error(`never showed ${String(pattern)}:\n${rows.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  write(data: string): void {
    this.process.write(data);
  }

  kill(): void {
    if (this.exited === undefined) this.process.kill();
  }
}

/** The screen is the fleet frame: title on top, whole consecutive host rows, position, hints at the bottom. */
function expectWholeRows(rows: readonly string[], selected: number): number[] {
  const screen = rows.join('\n');
  expect(rows[0], screen).toMatch(/^isolate-wizard · fleet \(40 servers\)\s*$/);
  const hosts: number[] = [];
  let row = 1;
  for (; row < rows.length; row += 1) {
    const match = /^([❯ ]) host-(\d{3}) (\S+(?: via host-000)?) +(\S+) +(\S.*)$/.exec(rows[row] ?? '');
    if (!match) break;
    expect(match[1] === '❯', screen).toBe(Number(match[2]) === selected);
    expect(match[5], screen).toMatch(/^(unmanaged|locked down.*|checking…)$/);
    hosts.push(Number(match[2]));
  }
  expect(hosts.length, screen).toBeGreaterThan(10);
  hosts.forEach((host, index) => expect(host, screen).toBe((hosts[0] ?? 0) + index));
  expect(hosts, screen).toContain(selected);
  expect(rows[row], screen).toMatch(new RegExp(`^[▲ ] ${(hosts[0] ?? 0) + 1}–${(hosts.at(-1) ?? 0) + 1} of 40`));
  expect(screen).toMatch(/q quit/);
  return hosts;
}

let wizard: FakeWizardTerminal | undefined;
afterEach(() => wizard?.kill());

describe('the fleet home in a real 80x24 terminal', () => {
  it('shows 40 servers as whole rows and scrolls to the last one', {timeout: 180_000}, async () => {
    wizard = new FakeWizardTerminal(40);
    let rows = await wizard.waitFor(/host-001 .*locked down[\s\S]*q quit/);
    expect(expectWholeRows(rows, 0)[0]).toBe(0);
    // Raw mode starts with Ink's first frame; the first key waits for it to answer.
    for (let host = 1; host < 40; host += 1) {
      wizard.write('\u001B[B');
      rows = await wizard.waitFor(new RegExp(`❯ host-${String(host).padStart(3, '0')} `));
    }
    const hosts = expectWholeRows(rows, 39);
    expect(hosts.at(-1)).toBe(39);
    expect(hosts).not.toContain(0);
    wizard.write('q');
  });
});
