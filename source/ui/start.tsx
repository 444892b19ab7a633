import type {CliIo} from '../commands/command.js';

// Placeholder until the wizard issue lands.
export async function startWizard(io: CliIo): Promise<number> {
  io.stderr.write('isolate-wizard: the interactive wizard is not available in this build yet\n');
  return 1;
}
