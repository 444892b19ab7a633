// `isolate-wizard demo`: rehearse on a lab of this machine's own (the tutorial's fleet in network
// namespaces, as the lab tests use) before touching a server. Without options: build the lab, start
// the wizard against it (HOME with the lab's ssh config and keys), and remove the lab when the
// wizard exits (`--keep` keeps it). `--up` builds it and leaves it up for the headless commands;
// `--down` removes it.
import {spawn} from 'node:child_process';
import {delimiter} from 'node:path';
import {EXIT, RefusedError, UsageError} from '../core/errors.js';
import {demoCliCommand, demoRefusal, removeDemoLab, runningDemoLab, startDemoLab, type DemoLab} from '../lab/demo.js';
import {missingLabPackages, SYSTEM_PATH} from '../lab/requirements.js';
import type {CliIo, Command} from './command.js';

function describe(lab: DemoLab): string {
  const shell = (argv: readonly string[]): string => argv.join(' ');
  const command = demoCliCommand(lab, ['discover', '--inventory', lab.inventory]);
  return [
    `demo lab up: ${lab.servers.join(', ')} and another tenant's server, each in its own network namespace (${lab.id}: ip netns list)`,
    `HOME=${lab.home}   (.ssh/config with ProxyJump via tunnel-1, known_hosts, the key)`,
    `inventory: ${lab.inventory}`,
    `a command against it: ip netns exec ${lab.operatorNetns} env HOME=${lab.home} ${shell(command.args.slice(2))}`,
    'the wizard against it: isolate-wizard demo   remove it: isolate-wizard demo --down',
  ].join('\n');
}

function tearDown(io: CliIo): number {
  const {lab, left, stoppedBuild} = removeDemoLab();
  if (!lab) {
    io.stdout.write(stoppedBuild ? 'stopped the demo lab being built (its process removes what it had made)\n' : 'no demo lab is up\n');
    return EXIT.ok;
  }
  if (left.length > 0) {
    io.stderr.write(`isolate-wizard: demo lab ${lab.id} not fully removed: ${left.join(', ')} remain\n`);
    return EXIT.failed;
  }
  io.stdout.write(`demo lab ${lab.id} removed: its namespaces, processes and ${lab.dir}\n`);
  return EXIT.ok;
}

/** The wizard in the lab's operator namespace, on this terminal; resolves with its exit code. */
function runWizard(lab: DemoLab): Promise<number> {
  const command = demoCliCommand(lab);
  // The terminal's Ctrl+C and hang-up go to the wizard too; this process waits for it to end and
  // then removes the lab, instead of dying first and leaving it up.
  const ignore = (): void => {};
  const signals = ['SIGINT', 'SIGHUP', 'SIGTERM'] as const;
  for (const signal of signals) process.on(signal, ignore);
  return new Promise<number>((resolve) => {
    const wizard = spawn(command.file, command.args, {stdio: 'inherit', env: command.env, cwd: command.cwd});
    wizard.once('error', () => resolve(EXIT.failed));
    wizard.once('exit', (code) => resolve(code ?? EXIT.failed));
  }).finally(() => {
    for (const signal of signals) process.off(signal, ignore);
  });
}

export const demoCommand: Command = {
  options: {
    up: {type: 'boolean'},
    down: {type: 'boolean'},
    keep: {type: 'boolean'},
  },
  async run(values, _positionals, io) {
    const up = values['up'] === true;
    const down = values['down'] === true;
    const keep = values['keep'] === true;
    if ([up, down, keep].filter(Boolean).length > 1) throw new UsageError('use one of --up, --down, --keep');
    const refusal = demoRefusal({
      platform: process.platform,
      isRoot: process.getuid?.() === 0,
      // --down needs only `ip`, which removing the lab would not get without.
      missingPackages: down ? [] : missingLabPackages([io.env['PATH'] ?? '', SYSTEM_PATH].join(delimiter)),
    });
    if (refusal) throw new RefusedError(refusal);
    if (down) return tearDown(io);

    const running = runningDemoLab();
    if (up) {
      const lab = running ?? (await startDemoLab());
      io.stdout.write(`${running ? 'already up\n' : ''}${describe(lab)}\n`);
      return EXIT.ok;
    }
    if (!io.isTTY) {
      // Before anything is built, in one line, as the wizard's own refusal.
      io.stderr.write('isolate-wizard: demo starts the wizard, which needs an interactive terminal; demo --up builds the lab for the headless commands\n');
      return EXIT.usage;
    }
    // A lab kept up (--up, --keep) is used as it is and left up; one built here goes with the wizard.
    const lab = running ?? (await startDemoLab());
    io.stdout.write(
      `${describe(lab)}\n\nStarting the wizard as HOME=${lab.home}: A adds the servers of ~/.ssh/config, i imports ${lab.inventory}.\n` +
        (running || keep ? 'The lab stays up when the wizard exits.\n' : 'Exiting the wizard removes the lab (demo --keep keeps it).\n'),
    );
    const code = await runWizard(lab);
    if (running || keep) {
      io.stdout.write(`demo lab ${lab.id} is still up: isolate-wizard demo --down removes it\n`);
      return code;
    }
    const removed = tearDown(io);
    return code === EXIT.ok ? removed : code;
  },
};
