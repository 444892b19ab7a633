// Done: what was kept (backups, reboot survival), or what was rolled back and verified.

import {Text, useInput} from 'ink';
import {Frame, useInputActive} from '../components.js';
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
  if (!outcome) return <Frame title="done" hints={hints}>{null}</Frame>;

  if (outcome.kind === 'kept') {
    const warning = rebootWarning(outcome.result);
    return (
      <Frame title="kept" message={state.message} hints={hints}>
        {outcome.result.kept.map((host) => (
          <Text key={host.host}>
            <Text color={color('green')}>✓</Text> <Text bold>{host.host}</Text> keeps the new rules
            {host.backup ? `; previous rules in ${host.backup}` : ''}
            {host.persistent ? `; survives a reboot${host.note ? ` (${host.note})` : ''}` : ''}
          </Text>
        ))}
        {warning ? <Text color={color('yellow')}>⚠ {warning}</Text> : null}
        {outcome.result.problems.map((problem) => (
          <Text key={problem} color={color('red')}>
            ✗ {problem}
          </Text>
        ))}
      </Frame>
    );
  }

  if (outcome.kind === 'refused') {
    return (
      <Frame title="refused — nothing was changed" message={state.message} hints={hints}>
        {outcome.reasons.map((reason) => (
          <Text key={reason} color={color('red')}>
            ✗ {reason}
          </Text>
        ))}
      </Frame>
    );
  }

  const title =
    outcome.why === 'expired' ? 'deadline passed — rolled back' : outcome.why === 'operator' ? 'rolled back' : 'apply failed — rolled back';
  return (
    <Frame title={title} message={state.message} hints={hints}>
      {(outcome.reasons ?? []).map((reason) => (
        <Text key={reason} color={color('red')}>
          ✗ {reason}
        </Text>
      ))}
      {outcome.hosts.map((host) => (
        <Text key={host.host}>
          <Text color={color(host.restored ? 'green' : 'red')}>{host.restored ? '✓' : '✗'}</Text> <Text bold>{host.host}</Text>{' '}
          {host.restored ? 'back on its previous rules' : 'NOT verified'}: {host.detail}
        </Text>
      ))}
    </Frame>
  );
}
