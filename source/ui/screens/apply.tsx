// Apply: per server, each step ticking — lock, snapshot, validate, watchdog armed, loaded, verified.

import {Box, Text} from 'ink';
import Spinner from 'ink-spinner';
import {Frame} from '../components.js';
import {useColor} from '../context.js';
import {useWizard} from '../app.js';
import {APPLY_STEPS, type ApplyStep} from '../services.js';

const STEP_LABELS: Record<ApplyStep, string> = {
  lock: 'lock',
  snapshot: 'snapshot',
  validate: 'validate',
  watchdog: 'watchdog armed',
  load: 'loaded',
  verify: 'verified',
};

export function ApplyScreen() {
  const {state} = useWizard();
  const color = useColor();
  return (
    <Frame title="apply" message={state.message} hints={[{key: 'Ctrl+C', label: 'roll back now'}]}>
      {state.scope.map((host) => {
        const steps = state.applySteps[host] ?? {};
        const failed = APPLY_STEPS.map((step) => steps[step]).find((entry) => entry?.status === 'failed');
        return (
          <Box key={host} flexDirection="column">
            <Box>
              <Box width={14}>
                <Text bold>{host}</Text>
              </Box>
              {APPLY_STEPS.map((step) => {
                const entry = steps[step];
                const status = entry?.status ?? 'waiting';
                return (
                  <Box key={step} marginRight={1}>
                    {status === 'running' ? (
                      <Text color={color('cyan')}>
                        <Spinner type="dots" />
                      </Text>
                    ) : (
                      <Text color={color(status === 'done' ? 'green' : status === 'failed' ? 'red' : 'gray')}>
                        {status === 'done' ? '✓' : status === 'failed' ? '✗' : status === 'skipped' ? '-' : '·'}
                      </Text>
                    )}
                    <Text dimColor={status === 'waiting'}> {STEP_LABELS[step]}</Text>
                  </Box>
                );
              })}
            </Box>
            {failed?.detail ? (
              <Text color={color('red')} wrap="truncate-end">
                {'              '}
                {failed.detail}
              </Text>
            ) : null}
          </Box>
        );
      })}
    </Frame>
  );
}
