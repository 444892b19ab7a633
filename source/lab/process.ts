// Running commands for the lab: asynchronously with input and a time limit, or synchronously
// (for the process `exit` handler, where nothing asynchronous runs any more).
import {spawn, spawnSync} from 'node:child_process';
import {constants} from 'node:os';

export interface ExecOutput {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** A process killed by a signal reports 128 + the signal's number, as a shell does. */
function exitCode(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
}

export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<ExecOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd ?? '/',
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timedOut = false;
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, options.timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const output = {
        code: exitCode(code, signal),
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      };
      if (timedOut) {
        reject(
          new Error(
            `${[command, ...args].join(' ')} timed out after ${options.timeoutMs} ms\n` +
              `stdout: ${output.stdout}\nstderr: ${output.stderr}`,
          ),
        );
      } else {
        resolve(output);
      }
    });
    // A command that does not read its input closes the pipe early; that is not an error.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** Like `run`, but throws unless the command exits 0. */
export async function runChecked(command: string, args: readonly string[], options: RunOptions = {}): Promise<ExecOutput> {
  const output = await run(command, args, options);
  if (output.code !== 0) {
    throw new Error(`${[command, ...args].join(' ')} exited ${output.code}: ${output.stderr.trim() || output.stdout.trim()}`);
  }
  return output;
}

export function runSync(command: string, args: readonly string[], input?: string): ExecOutput {
  const result = spawnSync(command, args, {input: input ?? '', encoding: 'utf8', timeout: 10_000});
  return {code: exitCode(result.status, result.signal), stdout: result.stdout ?? '', stderr: result.stderr ?? ''};
}
