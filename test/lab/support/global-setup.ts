// vitest globalSetup of the lab project: the machine is checked (and completed, as root) before
// any lab is built.
import {ensureLabRequirements} from '../../../source/lab/requirements.js';

export default function setup(): void {
  const stop = ensureLabRequirements();
  if (stop === undefined) return;
  // One line, no stack trace: what is missing and how to install it.
  process.stderr.write(`isolate-wizard ${stop}\n`);
  process.exit(1);
}
