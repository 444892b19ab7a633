// Starts the Ink wizard in the operator's terminal (the CLI has already checked it is a TTY).

import {homedir} from 'node:os';
import {render} from 'ink';
import type {CliIo} from '../commands/command.js';
import {App} from './app.js';
import {lazyServices} from './lazy-services.js';
import {PromptQueue} from './prompts.js';

export async function startWizard(io: CliIo): Promise<number> {
  const prompts = new PromptQueue();
  // Loaded once the first frame is drawn (below): start-up shows the fleet home first.
  const services = lazyServices(prompts, async () =>
    (await import('./real-services.js')).createRealServices({home: io.env['HOME'] || homedir(), env: io.env, prompter: prompts}),
  );
  const noColor = io.env['NO_COLOR'] !== undefined && io.env['NO_COLOR'] !== '';
  let exitCode = 0;
  // Ctrl+C is ours: during apply and countdown it means "roll back now", never "leave it half done".
  const instance = render(<App services={services} prompts={prompts} noColor={noColor} onExit={(code) => (exitCode = code)} />, {
    exitOnCtrlC: false,
    patchConsole: true,
  });
  try {
    await instance.waitUntilExit();
  } finally {
    // Close the SSH connections, but never let a connection still opening hold the terminal.
    await Promise.race([services.close(), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
    setTimeout(() => process.exit(exitCode), 3000).unref();
  }
  return exitCode;
}
