// Renders the wizard with fake services at a given terminal size and drives it with keys,
// one tick between keys.

import {EventEmitter} from 'node:events';
import {render, type Instance} from 'ink';
import {App} from '../../source/ui/app.js';
import {createFakeServices, type FakeOptions} from './fakes.js';

// Ink renders on its own schedule (outside React's act()); a few event-loop turns after
// each key let React commit and Ink write the frame. Waiting is counted in turns, never time.

/** A terminal's output side as Ink sees it: a size (changed by `resize`) and the frames written. */
class TestStdout extends EventEmitter {
  readonly frames: string[] = [];
  constructor(
    public columns: number,
    public rows: number,
  ) {
    super();
  }
  write = (frame: string) => {
    this.frames.push(frame);
    return true;
  };
  lastFrame = () => this.frames.at(-1);
  resize(columns: number, rows: number): void {
    this.columns = columns;
    this.rows = rows;
    this.emit('resize');
  }
}

class TestStdin extends EventEmitter {
  isTTY = true;
  private data: string | null = null;
  write = (data: string) => {
    this.data = data;
    this.emit('readable');
    this.emit('data', data);
  };
  read = () => {
    const {data} = this;
    this.data = null;
    return data;
  };
  setEncoding() {}
  setRawMode() {}
  resume() {}
  pause() {}
  ref() {}
  unref() {}
}

const instances: Instance[] = [];

export function cleanup(): void {
  for (const instance of instances.splice(0)) {
    instance.unmount();
    instance.cleanup();
  }
}

export interface TerminalSize {
  readonly columns: number;
  readonly rows: number;
}

export const KEY = {
  enter: '\r',
  escape: '\u001B',
  up: '\u001B[A',
  down: '\u001B[B',
  right: '\u001B[C',
  left: '\u001B[D',
  tab: '\t',
  space: ' ',
  ctrlC: '\u0003',
} as const;

export async function tick(times = 3): Promise<void> {
  for (let index = 0; index < times; index += 1) {
    await new Promise((resolve) => setImmediate(resolve));
  }
}

export async function renderWizard(options: FakeOptions = {}, noColor = true, size: TerminalSize = {columns: 100, rows: 24}) {
  const fake = createFakeServices(options);
  const exits: number[] = [];
  const stdout = new TestStdout(size.columns, size.rows);
  const stdin = new TestStdin();
  const inkInstance = render(<App services={fake.services} prompts={fake.prompter} noColor={noColor} onExit={(code) => exits.push(code)} />, {
    stdout: stdout as unknown as NodeJS.WriteStream,
    stderr: new TestStdout(size.columns, size.rows) as unknown as NodeJS.WriteStream,
    stdin: stdin as unknown as NodeJS.ReadStream,
    debug: true,
    exitOnCtrlC: false,
    patchConsole: false,
  });
  instances.push(inkInstance);
  const instance = {stdin, stdout, lastFrame: stdout.lastFrame, frames: stdout.frames};
  await tick();
  const press = async (...keys: string[]) => {
    for (const key of keys) {
      instance.stdin.write(key);
      await tick();
    }
  };
  const type = async (text: string) => {
    for (const char of text) await press(char);
  };
  /** Everything written: what Static printed once, then the live frame. */
  const frame = () => instance.lastFrame() ?? '';
  /** A full-height screen without what Static printed above it: the last `rows - 1` lines. */
  const screen = () => frame().split('\n').slice(-(stdout.rows - 1)).join('\n');
  const resize = async (columns: number, rows: number) => {
    stdout.resize(columns, rows);
    await tick();
  };
  /** Waits (in ticks, never wall time) until the frame contains the text. */
  const waitFor = async (text: string | RegExp, maxTicks = 50) => {
    for (let index = 0; index < maxTicks; index += 1) {
      const current = frame();
      if (typeof text === 'string' ? current.includes(text) : text.test(current)) {
        await tick(); // let the screen's effects (clock subscriptions) run before the test acts
        return current;
      }
      await tick(1);
    }
    throw new Error(`never showed ${String(text)}; last frame:\n${frame()}`);
  };
  return {...fake, instance, press, type, frame, screen, resize, waitFor, exits};
}
