// The built wizard in a real terminal for lab tests: the CLI under a pseudo-terminal (node-pty) in the
// lab's operator namespace, its screen read back through a headless xterm (80x24 unless told).
import path from 'node:path';
import pty from '@lydell/node-pty';
import xterm from '@xterm/headless';
import type {Lab} from '../../../source/lab/lab.js';

const {Terminal} = xterm;

export const KEYS = {enter: '\r', escape: '\u001B', left: '\u001B[D', right: '\u001B[C', down: '\u001B[B', up: '\u001B[A', home: '\u001B[H'} as const;

export class WizardTerminal {
  readonly columns: number;
  readonly rows: number;
  private readonly terminal: InstanceType<typeof Terminal>;
  private readonly process: pty.IPty;
  private exited: {exitCode: number} | undefined;

  constructor(lab: Lab, size: {columns: number; rows: number} = {columns: 80, rows: 24}) {
    this.columns = size.columns;
    this.rows = size.rows;
    this.terminal = new Terminal({cols: size.columns, rows: size.rows, scrollback: 5000, allowProposedApi: true});
    const command = lab.operatorCommand([process.execPath, path.resolve(import.meta.dirname, '../../../bin/isolate-wizard.js')], {
      CI: 'false',
      TERM: 'xterm-256color',
    });
    this.process = pty.spawn(command.file, command.args, {name: 'xterm-256color', cols: size.columns, rows: size.rows, cwd: command.cwd, env: command.env});
    this.process.onData((data) => this.terminal.write(data));
    this.process.onExit((event) => {
      this.exited = event;
    });
  }

  /** The visible screen, one string per row (trailing blanks cut). */
  screenRows(): string[] {
    const buffer = this.terminal.buffer.active;
    return Array.from({length: this.rows}, (_, row) => buffer.getLine(buffer.viewportY + row)?.translateToString(true) ?? '');
  }

  /** The visible screen as one string. */
  screen(): string {
    return this.screenRows().join('\n');
  }

  /** Rows of the screen that continue the row above: a line written longer than the terminal is wide. */
  wrappedRows(): number[] {
    const buffer = this.terminal.buffer.active;
    return Array.from({length: this.rows}, (_, row) => row).filter((row) => buffer.getLine(buffer.viewportY + row)?.isWrapped === true);
  }

  /** Every line the terminal holds: what scrolled off the top (e.g. lines printed once) and the screen. */
  allLines(): string[] {
    const buffer = this.terminal.buffer.active;
    return Array.from({length: buffer.length}, (_, row) => buffer.getLine(row)?.translateToString(true) ?? '');
  }

  /** Waits until the screen shows `text`: read every 100 ms, never assumed after a sleep. */
  async waitFor(text: string | RegExp, timeoutMs = 60_000): Promise<string> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const screen = this.screen();
      if (typeof text === 'string' ? screen.includes(text) : text.test(screen)) return screen;
      if (this.exited) throw new Error(`the wizard exited (${this.exited.exitCode}) before showing ${String(text)}:\n${screen}`);
      if (Date.now() > until) throw new Error(`the wizard never showed ${String(text)}; screen:\n${screen}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Ink turns on raw mode just after its first frame; keys typed before that are lost. */
  async settle(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }

  async press(...keys: string[]): Promise<void> {
    for (const key of keys) {
      this.process.write(key);
      // A person types one key at a time; Ink reads each as its own event (and the machine is shared).
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** Text arrives as one chunk, like a paste (ink-text-input reads it as one edit). */
  async type(text: string): Promise<void> {
    await this.press(text);
  }

  async waitForExit(timeoutMs = 15_000): Promise<number> {
    const until = Date.now() + timeoutMs;
    while (!this.exited) {
      if (Date.now() > until) throw new Error(`the wizard did not exit; screen:\n${this.screen()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return this.exited.exitCode;
  }

  kill(): void {
    if (!this.exited) this.process.kill();
  }
}
