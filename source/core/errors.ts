// Errors that the CLI turns into a one-line message and an exit code, never a stack trace.

/** Wrong command line: usage on stderr, exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Bad input (inventory, flags' values): one line per problem, exit 2, nothing contacted. */
export class InputError extends Error {
  override readonly name = 'InputError';
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
  }
}

/** A refusal on purpose (lockout, changed host key, lock held): exit 3. */
export class RefusedError extends Error {
  override readonly name = 'RefusedError';
}

/** A host could not be reached or a step failed on it: exit 1. */
export class HostError extends Error {
  override readonly name = 'HostError';
  constructor(
    readonly host: string,
    message: string,
  ) {
    super(`${host}: ${message}`);
  }
}

/** CLI exit codes (README "Exit codes"); 5: a host's previous rules could not be restored: act now. */
export const EXIT = {ok: 0, failed: 1, usage: 2, refused: 3, rolledBack: 4, restoreFailed: 5} as const;

export function exitCodeFor(error: unknown): number {
  if (error instanceof UsageError || error instanceof InputError) return EXIT.usage;
  if (error instanceof RefusedError) return EXIT.refused;
  return EXIT.failed;
}
