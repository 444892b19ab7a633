import {createRequire} from 'node:module';
import {parseArgs} from 'node:util';
import {COMMANDS, type CommandEntry} from './commands/index.js';
import type {CliIo} from './commands/command.js';
import {exitCodeFor, InputError, UsageError} from './core/errors.js';

const require = createRequire(import.meta.url);
const {version} = require('../package.json') as {version: string};

function usage(): string {
  const lines = [
    'Usage: isolate-wizard [command] [options]',
    '',
    'With no command, in a terminal: the interactive wizard.',
    '',
    'Commands:',
    ...COMMANDS.map((command) => `  ${command.name.padEnd(10)} ${command.summary}`),
    '',
    'Options:',
    '  -h, --help     show this help (or a command\'s: isolate-wizard COMMAND --help)',
    '  -v, --version  print the version',
  ];
  return lines.join('\n') + '\n';
}

function commandUsage(command: CommandEntry): string {
  return `Usage: isolate-wizard ${command.name} ${command.usage}\n\n${command.summary}\n`;
}

export function defaultIo(): CliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    isTTY: Boolean(process.stdin.isTTY && process.stdout.isTTY),
  };
}

/** Runs the CLI and returns the exit code; never throws for expected failures. */
export async function main(argv: readonly string[], io: CliIo = defaultIo()): Promise<number> {
  const [first, ...rest] = argv;
  try {
    if (first === undefined) return await runWizard(io);
    if (first === '--help' || first === '-h' || first === 'help') {
      io.stdout.write(usage());
      return 0;
    }
    if (first === '--version' || first === '-v') {
      io.stdout.write(`${version}\n`);
      return 0;
    }
    const command = COMMANDS.find((candidate) => candidate.name === first);
    if (!command) throw new UsageError(`unknown command or option: ${first}`);
    if (rest.includes('--help') || rest.includes('-h')) {
      io.stdout.write(commandUsage(command));
      return 0;
    }
    const code = await command.load();
    let parsed;
    try {
      parsed = parseArgs({args: [...rest], options: code.options, allowPositionals: false, strict: true});
    } catch (error) {
      throw new UsageError(error instanceof Error ? error.message : String(error));
    }
    return await code.run(parsed.values, parsed.positionals, io);
  } catch (error) {
    return report(error, io, first);
  }
}

function report(error: unknown, io: CliIo, commandName: string | undefined): number {
  if (error instanceof UsageError) {
    const command = COMMANDS.find((candidate) => candidate.name === commandName);
    io.stderr.write(`isolate-wizard: ${error.message}\n\n${command ? commandUsage(command) : usage()}`);
  } else if (error instanceof InputError) {
    for (const problem of error.problems) io.stderr.write(`isolate-wizard: ${problem}\n`);
  } else {
    io.stderr.write(`isolate-wizard: ${error instanceof Error ? error.message : String(error)}\n`);
  }
  return exitCodeFor(error);
}

async function runWizard(io: CliIo): Promise<number> {
  // Ink's own raw-mode failure on a non-TTY exits 0; refuse before Ink starts.
  if (!io.isTTY) {
    io.stderr.write(
      'isolate-wizard: the wizard needs an interactive terminal. For scripts use the headless commands: ' +
        'plan, discover, apply, confirm, rollback, status, export (isolate-wizard --help).\n',
    );
    return 2;
  }
  const {startWizard} = await import('./ui/start.js');
  return startWizard(io);
}
