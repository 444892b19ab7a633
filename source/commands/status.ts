import type {Command} from './command.js';

// Placeholder until its issue lands: refuses clearly instead of pretending.
export const statusCommand: Command = {
  name: 'status',
  summary: '(not available yet)',
  usage: '',
  options: {},
  async run(_values, _positionals, io) {
    io.stderr.write('isolate-wizard: status is not available in this build yet\n');
    return 1;
  },
};
