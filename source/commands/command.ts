import type {ParseArgsConfig} from 'node:util';

/** What a command may touch of the outside world; tests pass their own. */
export interface CliIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  readonly isTTY: boolean;
}

export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** A command's code (its name, summary and usage are in ./index.ts, read without loading it). */
export interface Command {
  readonly options: NonNullable<ParseArgsConfig['options']>;
  run(values: OptionValues, positionals: string[], io: CliIo): Promise<number>;
}

/** Reads a string option that parseArgs already typed as a string. */
export function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

export function stringList(values: OptionValues, name: string): string[] {
  const value = values[name];
  if (Array.isArray(value)) return value.filter((item): item is string => typeof item === 'string');
  return typeof value === 'string' ? [value] : [];
}
