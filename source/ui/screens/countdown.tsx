// Countdown: a large timer to the deadline, the checks already done, K keeps, R (or Ctrl+C)
// rolls back now. At zero the servers have rolled back by themselves; we reconnect and show it.

import {useEffect, useRef, useState} from 'react';
import {Text, useInput} from 'ink';
import Spinner from 'ink-spinner';
import {BigTimer, Frame, WindowedList, useBodyRows, useInputActive} from '../components.js';
import {useColor, useNow} from '../context.js';
import {useWizard} from '../app.js';

export function CountdownScreen() {
  const {state, actions} = useWizard();
  const active = useInputActive();
  const color = useColor();
  const now = useNow();
  const [working, setWorking] = useState<string | undefined>(undefined);
  const expiredHandled = useRef(false);
  const batch = state.batch;
  const secondsLeft = batch ? (batch.deadline - now) / 1000 : 0;
  const expired = batch !== undefined && secondsLeft <= 0;

  useEffect(() => {
    if (!expired || expiredHandled.current || working) return;
    expiredHandled.current = true;
    setWorking('deadline passed: the servers are restoring their previous rules; reconnecting to check…');
    void actions.deadlinePassed();
  }, [expired, working, actions]);

  useInput(
    (input) => {
      if (working || expired) return;
      if (input === 'k' || input === 'K') {
        setWorking('keeping: confirming over fresh connections and saving the rules…');
        void actions.keep();
      } else if (input === 'r' || input === 'R') {
        setWorking('rolling back now…');
        void actions.rollbackNow();
      }
    },
    {isActive: active},
  );

  const hints = working ? [] : [{key: 'K', label: 'keep'}, {key: 'R', label: 'roll back now'}, {key: 'Ctrl+C', label: 'roll back now'}, {key: '↑↓', label: 'scroll'}];
  // Failed checks first: they are what the operator must see before keeping.
  const checks = [...(batch?.checks ?? [])].sort((left, right) => Number(left.ok) - Number(right.ok));
  const passed = checks.filter((check) => check.ok).length;
  // The timer (4 rows), the two lines under it, the summary and the working line take the rest.
  const height = useBodyRows(hints) - 7 - (working ? 1 : 0);

  return (
    <Frame title="keep the new rules?" message={state.message} hints={hints}>
      <BigTimer seconds={secondsLeft} />
      <Text wrap="truncate-end">Without K, each server restores its previous rules by itself at the deadline,</Text>
      <Text wrap="truncate-end">even if this program or your link dies.</Text>
      {checks.length > 0 ? (
        <Text color={color(passed === checks.length ? 'green' : 'red')} wrap="truncate-end">
          {passed === checks.length ? '✓' : '✗'} {passed} of {checks.length} checks passed
          {passed === checks.length ? '' : `, ${checks.length - passed} failed`}
        </Text>
      ) : (
        <Text> </Text>
      )}
      <WindowedList
        items={checks}
        height={Math.max(1, height)}
        scroll={active && !working}
        renderItem={(check, index) => (
          <Text key={index} color={color(check.ok ? 'green' : 'red')} wrap="truncate-end">
            {check.ok ? '✓' : '✗'} {check.label}
          </Text>
        )}
      />
      {working ? (
        <Text wrap="truncate-end">
          <Text color={color('cyan')}>
            <Spinner type="dots" />
          </Text>{' '}
          {working}
        </Text>
      ) : null}
    </Frame>
  );
}
