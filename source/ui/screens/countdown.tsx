// Countdown: a large timer to the deadline, the checks already done (M: the access matrix,
// each cell marked by its live result), K keeps, R (or Ctrl+C) rolls back now. At zero the servers have rolled back by themselves; we reconnect and show it.

import {useEffect, useMemo, useRef, useState} from 'react';
import {Box, Text, useInput} from 'ink';
import Spinner from 'ink-spinner';
import {BigTimer, Frame, WindowedList, useBodyRows, useInputActive} from '../components.js';
import {useColor, useNow, useTerminalSize} from '../context.js';
import {renderMatrix} from '../../core/matrix.js';
import {useWizard} from '../app.js';

/** Words on lines of at most `width` columns (a word longer than a line is cut where the line ends). */
function wrapWords(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && [...line].length + 1 + [...word].length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  return [...lines, line];
}

/** The flows tried live before the countdown: the summary (wrapped: a sample's is long), and in red each one that differs from the plan. */
function LiveCheck({check, summary}: {readonly check: {readonly differing: readonly string[]}; readonly summary: readonly string[]}) {
  const color = useColor();
  const shown = check.differing.slice(0, LIVE_LINES);
  return (
    <Box flexDirection="column" marginTop={1}>
      {summary.map((line, index) => (
        <Text key={`summary ${index}`} color={color(check.differing.length === 0 ? 'green' : 'red')} wrap="truncate-end">
          {line}
        </Text>
      ))}
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
  const [showMatrix, setShowMatrix] = useState(false);
  const {columns} = useTerminalSize();
  const liveMatrix = batch?.liveCheck?.matrix;
  const matrixLines = useMemo(() => (liveMatrix ? renderMatrix(liveMatrix, {columns}) : []), [liveMatrix, columns]);

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
      } else if ((input === 'm' || input === 'M') && liveMatrix) setShowMatrix((value) => !value);
    },
    {isActive: active},
  );

  const hints = working
    ? []
    : [
        {key: 'K', label: 'keep'},
        {key: 'R', label: 'roll back now'},
        {key: 'Ctrl+C', label: 'roll back now'},
        ...(liveMatrix ? [{key: 'M', label: showMatrix ? 'checks' : 'matrix'}] : []),
        {key: '↑↓', label: 'scroll'},
      ];
  // Failed checks first: they are what the operator must see before keeping.
  const checks = [...(batch?.checks ?? [])].sort((left, right) => Number(left.ok) - Number(right.ok));
  const passed = checks.filter((check) => check.ok).length;
  // The timer (4 rows), the two lines under it, the summary and the working line take the rest.
  const liveSummary = batch?.liveCheck ? wrapWords(`live check: ${batch.liveCheck.summary}`, columns) : [];
  const liveRows = batch?.liveCheck ? 1 + liveSummary.length + Math.min(LIVE_LINES + 1, batch.liveCheck.differing.length) : 0; // margin, summary, lines
  const height = useBodyRows(hints) - 7 - (working ? 1 : 0) - liveRows;

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
      {showMatrix ? (
        <WindowedList
          items={matrixLines}
          height={Math.max(1, height)}
          scroll={active && !working}
          renderItem={(line, index) => (
            <Text key={index} wrap="truncate-end">
              {line === '' ? ' ' : line}
            </Text>
          )}
        />
      ) : (
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
      )}
      {batch?.liveCheck ? <LiveCheck check={batch.liveCheck} summary={liveSummary} /> : null}
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
