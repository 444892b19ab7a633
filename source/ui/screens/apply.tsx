// Apply: a summary line (done / running / failed) and the servers at work with each step ticking —
// lock, snapshot, validate, watchdog armed, loaded, verified. Each finished server is printed once
// above the screens (the App's Static, `state.printed`), so hundreds of servers never repaint.

import {Text} from 'ink';
import Spinner from 'ink-spinner';
import {Frame, WindowedList, fit, useBodyRows} from '../components.js';
import {useColor, useTerminalSize} from '../context.js';
import {useWizard} from '../app.js';
import type {WizardState} from '../state.js';
import {APPLY_STEPS, type ApplyStep} from '../services.js';

const STEP_LABELS: Record<ApplyStep, string> = {
  lock: 'lock',
  snapshot: 'snapshot',
  validate: 'validate',
  watchdog: 'watchdog armed',
  load: 'loaded',
  verify: 'verified',
};

/** Servers at work shown at once; the others are counted in the summary. */
const LIVE_ROWS = 8;

type Steps = WizardState['applySteps'][string] | undefined;

function failedStep(steps: Steps) {
  const step = APPLY_STEPS.find((candidate) => steps?.[candidate]?.status === 'failed');
  return step === undefined ? undefined : {step, detail: steps?.[step]?.detail};
}

/** One server on one line: its name and each step's mark. */
export function HostSteps({host, steps, nameWidth, live}: {host: string; steps: Steps; nameWidth?: number; live: boolean}) {
  const color = useColor();
  const {columns} = useTerminalSize();
  const width = nameWidth ?? Math.min(Math.max(8, Math.floor(columns * 0.25)), host.length + 1);
  const failed = failedStep(steps);
  return (
    <Text wrap="truncate-end">
      <Text bold>{fit(host, width, true)}</Text>
      {APPLY_STEPS.map((step) => {
        const status = steps?.[step]?.status ?? 'waiting';
        return (
          <Text key={step}>
            {' '}
            {status === 'running' && live ? (
              <Text color={color('cyan')}>
                <Spinner type="dots" />
              </Text>
            ) : (
              <Text color={color(status === 'done' ? 'green' : status === 'failed' ? 'red' : 'gray')}>
                {status === 'done' ? '✓' : status === 'failed' ? '✗' : status === 'skipped' ? '-' : status === 'running' ? '…' : '·'}
              </Text>
            )}
            <Text dimColor={status === 'waiting'}> {STEP_LABELS[step]}</Text>
          </Text>
        );
      })}
      {failed?.detail ? <Text color={color('red')}> {failed.detail}</Text> : null}
    </Text>
  );
}

export function ApplyScreen() {
  const {state} = useWizard();
  const {columns} = useTerminalSize();
  const hints = [{key: 'Ctrl+C', label: 'roll back now'}];
  const bodyRows = useBodyRows(hints);
  const nameWidth = Math.min(Math.max(8, Math.floor(columns * 0.25)), state.scope.reduce((width, host) => Math.max(width, host.length + 1), 8));
  const finished = new Set(state.applyFinished);
  const failed = state.applyFinished.filter((host) => failedStep(state.applySteps[host]) !== undefined).length;
  const started = (host: string) => Object.keys(state.applySteps[host] ?? {}).length > 0;
  const running = state.scope.filter((host) => !finished.has(host) && started(host));
  const waiting = state.scope.length - finished.size - running.length;
  const done = state.applyFinished.length - failed;

  return (
    <Frame title={`apply (${state.scope.length} server${state.scope.length === 1 ? '' : 's'})`} message={state.message} hints={hints} compact>
        <Text wrap="truncate-end">
          {done} done · {running.length} running · {failed} failed · {waiting} waiting
        </Text>
        <WindowedList
          items={running}
          height={Math.max(1, Math.min(LIVE_ROWS, bodyRows - 1))}
          renderItem={(host) => <HostSteps key={host} host={host} steps={state.applySteps[host]} nameWidth={nameWidth} live />}
        />
      </Frame>
  );
}
