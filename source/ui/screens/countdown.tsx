// Countdown: a large timer to the deadline, the checks already done, K keeps, R (or Ctrl+C)
// rolls back now. At zero the servers have rolled back by themselves; we reconnect and show it.

import {useEffect, useRef, useState} from 'react';
import {Box, Text, useInput} from 'ink';
import Spinner from 'ink-spinner';
import {BigTimer, Frame, useInputActive} from '../components.js';
import {useColor, useNow} from '../context.js';
import {useWizard} from '../app.js';

/** The flows tried live before the countdown: the summary, and in red each one that differs from the plan. */
function LiveCheck({check}: {readonly check: {readonly summary: string; readonly differing: readonly string[]}}) {
  const color = useColor();
  const shown = check.differing.slice(0, LIVE_LINES);
  return (
    <Box flexDirection="column" marginTop={1}>
      <Text color={color(check.differing.length === 0 ? 'green' : 'red')} wrap="truncate-end">
        live check: {check.summary}
      </Text>
      {shown.map((line) => (
        <Text key={line} color={color('red')} wrap="truncate-end">
          {line}
        </Text>
      ))}
      {check.differing.length > shown.length ? <Text color={color('red')}>… and {check.differing.length - shown.length} more</Text> : null}
    </Box>
  );
}

/** Differing flows listed on the countdown screen (the rest are counted). */
const LIVE_LINES = 6;

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

  return (
    <Frame
      title="keep the new rules?"
      message={state.message}
      hints={working ? [] : [{key: 'K', label: 'keep'}, {key: 'R', label: 'roll back now'}, {key: 'Ctrl+C', label: 'roll back now'}]}
    >
      <BigTimer seconds={secondsLeft} />
      <Text>
        Without K, every server goes back to its previous rules by itself at the deadline — even if this program or your
        link dies.
      </Text>
      <Box flexDirection="column" marginTop={1}>
        {(batch?.checks ?? []).map((check) => (
          <Text key={check.label} color={color(check.ok ? 'green' : 'red')} wrap="truncate-end">
            {check.ok ? '✓' : '✗'} {check.label}
          </Text>
        ))}
      </Box>
      {batch?.liveCheck ? <LiveCheck check={batch.liveCheck} /> : null}
      {working ? (
        <Text>
          <Text color={color('cyan')}>
            <Spinner type="dots" />
          </Text>{' '}
          {working}
        </Text>
      ) : null}
    </Frame>
  );
}
