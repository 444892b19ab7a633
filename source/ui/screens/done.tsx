// Done: what was kept (backups, reboot survival), or what was rolled back and verified.

import type {ReactElement} from 'react';
import {Text, useInput} from 'ink';
import {Frame, WindowedList, useBodyRows, useInputActive} from '../components.js';
import {useColor} from '../context.js';
import {useWizard} from '../app.js';
import {rebootWarning} from '../state.js';

export function DoneScreen() {
  const {state, dispatch, actions} = useWizard();
  const active = useInputActive();
  const color = useColor();
  const outcome = state.outcome;
  // Kept rules that a reboot would lose: offer to install the boot-time loader.
  const notPersistent = outcome?.kind === 'kept' && outcome.result.kept.some((host) => !host.persistent);

  useInput(
    (input, key) => {
      if (key.return || input === 'h') {
        dispatch({type: 'home'});
        void actions.refreshStatus();
      } else if (input === 'p' && notPersistent) void actions.installPersistence();
      else if (input === 'q') actions.exit();
    },
    {isActive: active},
  );

  const hints = [
    ...(notPersistent ? [{key: 'p', label: 'make them survive a reboot (installs iptables-persistent / iptables-services)'}] : []),
    {key: 'Enter', label: 'fleet home'},
    {key: 'q', label: 'quit'},
  ];
  const height = useBodyRows(hints) - 1;
  const problem = (text: string, index: number) => (
    <Text key={`problem/${index}`} color={color('red')} wrap="truncate-end">
      ✗ {text}
    </Text>
  );
  if (!outcome) return <Frame title="done" hints={hints}>{null}</Frame>;

  let title: string;
  let summary: string;
  let lines: ReactElement[];
  if (outcome.kind === 'kept') {
    const kept = outcome.result.kept;
    const live = kept.filter((host) => !host.persistent).length;
    title = 'kept';
    summary = `${kept.length} server${kept.length === 1 ? '' : 's'} kept the new rules · ${kept.length - live} survive a reboot · ${live} live only${outcome.result.problems.length > 0 ? ` · ${outcome.result.problems.length} problem${outcome.result.problems.length === 1 ? '' : 's'}` : ''}`;
    lines = [
      ...outcome.result.problems.map(problem),
      // The reboot warning once for all servers (rebootWarning), not on every line.
      ...(rebootWarning(outcome.result) ? [<Text key="/boot" color={color('yellow')} wrap="truncate-end">⚠ {rebootWarning(outcome.result)}</Text>] : []),
      ...kept.map((host) => (
        <Text key={host.host} wrap="truncate-end">
          <Text color={color('green')}>✓</Text> <Text bold>{host.host}</Text> keeps the new rules
          {host.persistent ? `; survives a reboot${host.note ? ` (${host.note})` : ''}` : ''}
          {host.backup ? `; previous rules in ${host.backup}` : ''}
        </Text>
      )),
    ];
  } else if (outcome.kind === 'refused') {
    title = 'refused — nothing was changed';
    summary = `${outcome.reasons.length} reason${outcome.reasons.length === 1 ? '' : 's'}`;
    lines = outcome.reasons.map(problem);
  } else {
    title = outcome.why === 'expired' ? 'deadline passed — rolled back' : outcome.why === 'operator' ? 'rolled back' : 'apply failed — rolled back';
    const restored = outcome.hosts.filter((host) => host.restored).length;
    summary =
      outcome.hosts.length > 0
        ? `${restored} of ${outcome.hosts.length} servers verified back on their previous rules${restored === outcome.hosts.length ? '' : `, ${outcome.hosts.length - restored} NOT verified`}`
        : ' ';
    // Servers not verified first: they need the operator.
    const hosts = [...outcome.hosts].sort((left, right) => Number(left.restored) - Number(right.restored));
    lines = [
      ...(outcome.reasons ?? []).map(problem),
      ...hosts.map((host) => (
        <Text key={host.host} wrap="truncate-end">
          <Text color={color(host.restored ? 'green' : 'red')}>{host.restored ? '✓' : '✗'}</Text> <Text bold>{host.host}</Text>{' '}
          {host.restored ? 'back on its previous rules' : 'NOT verified'}: {host.detail}
        </Text>
      )),
    ];
  }
  return (
    <Frame title={title} message={state.message} hints={hints}>
      <Text bold wrap="truncate-end">
        {summary}
      </Text>
      <WindowedList items={lines} height={Math.max(1, height)} scroll={active} renderItem={(line) => line} />
    </Frame>
  );
}
