// Renders the wizard with fake services and drives it with keys, one tick between keys.

import {render} from 'ink-testing-library';
import {App} from '../../source/ui/app.js';
import {createFakeServices, type FakeOptions} from './fakes.js';

// Ink renders on its own schedule (outside React's act()); a few event-loop turns after
// each key let React commit and Ink write the frame. Waiting is counted in turns, never time.

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

export async function renderWizard(options: FakeOptions = {}, noColor = true) {
  const fake = createFakeServices(options);
  const exits: number[] = [];
  let instance!: ReturnType<typeof render>;
  instance = render(<App services={fake.services} prompts={fake.prompter} noColor={noColor} onExit={(code) => exits.push(code)} />);
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
  const frame = () => instance.lastFrame() ?? '';
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
  return {...fake, instance, press, type, frame, waitFor, exits};
}
