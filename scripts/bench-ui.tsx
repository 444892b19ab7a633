// The wizard's screens with many servers, timed (not a test): how long a key takes to show on the
// fleet home of 500 servers while their status checks are still out, a clock tick with 500
// pending servers, and the apply of 500 servers reporting every step.
// Run: NODE_ENV=production npx tsx scripts/bench-ui.tsx   (fake services; no lab, no root)

import {performance} from 'node:perf_hooks';
import {cleanup, KEY, renderWizard} from '../test/ui/harness.js';
import {deferred, generatedFleet} from '../test/ui/fakes.js';
import type {ApplyProgress, HostState} from '../source/ui/services.js';

const SERVERS = 500;
const SIZE = {columns: 80, rows: 24};
const quantile = (values: number[], q: number) => [...values].sort((left, right) => left - right)[Math.floor(values.length * q)] ?? Number.NaN;
const median = (values: number[]) => quantile(values, 0.5);
const ms = (value: number) => `${value.toFixed(1)} ms`;

/** Milliseconds until the frame matches, polled every event-loop turn. */
async function until(frame: () => string, pattern: RegExp): Promise<number> {
  const start = performance.now();
  for (let turn = 0; turn < 100_000; turn += 1) {
    if (pattern.test(frame())) return performance.now() - start;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`never showed ${String(pattern)}`);
}

async function keyWhileChecking(): Promise<number[]> {
  const wizard = await renderWizard({fleet: generatedFleet(SERVERS), status: () => deferred<HostState>().promise}, true, SIZE);
  await wizard.waitFor('checking…');
  const times: number[] = [];
  for (let index = 1; index <= 200; index += 1) {
    wizard.instance.stdin.write(KEY.down);
    times.push(await until(wizard.frame, new RegExp(`❯ host-${String(index).padStart(3, '0')} `)));
  }
  cleanup();
  return times;
}

async function clockTicks(): Promise<number[]> {
  const states = Object.fromEntries(generatedFleet(SERVERS).hosts.map((host) => [host.name, {kind: 'pending', deadline: 1_000_000 + 600_000} as HostState]));
  const wizard = await renderWizard({fleet: generatedFleet(SERVERS), states}, true, SIZE);
  await wizard.waitFor('10:00 left');
  const times: number[] = [];
  for (let second = 1; second <= 30; second += 1) {
    const start = performance.now();
    wizard.clock.advance(1000);
    const left = 600 - second;
    await until(wizard.frame, new RegExp(`${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')} left`));
    times.push(performance.now() - start);
  }
  cleanup();
  return times;
}

async function applyProgress(): Promise<{total: number; frameLines: number}> {
  const wizard = await renderWizard(
    {
      fleet: generatedFleet(SERVERS),
      apply: async (hosts, deadlineSeconds, onProgress: (event: ApplyProgress) => void) => {
        // Eight at a time, like the engine: each host's six steps, one event-loop turn apart.
        for (let first = 0; first < hosts.length; first += 8) {
          for (const step of ['lock', 'snapshot', 'validate', 'watchdog', 'load', 'verify'] as const) {
            for (const host of hosts.slice(first, first + 8)) onProgress({host, step, status: 'done'});
            await new Promise((resolve) => setImmediate(resolve));
          }
        }
        return {kind: 'pending', batch: {id: 'b', hosts, deadline: 1_000_000 + deadlineSeconds * 1000, checks: []}};
      },
    },
    true,
    SIZE,
  );
  await wizard.waitFor('unmanaged');
  await wizard.press('l');
  await wizard.waitFor(`discover (${SERVERS}/${SERVERS})`, 100_000);
  await wizard.press(KEY.enter);
  await wizard.waitFor('roles (');
  await wizard.press(KEY.enter);
  await wizard.waitFor('Lockout check', 100_000);
  const start = performance.now();
  wizard.instance.stdin.write('a');
  await until(wizard.frame, /keep the new rules\?/);
  const total = performance.now() - start;
  const frameLines = wizard.frame().split('\n').length;
  cleanup();
  return {total, frameLines};
}

const keys = await keyWhileChecking();
console.log(`fleet home, ${SERVERS} servers all still being checked: ↓ to the new frame median ${ms(median(keys))}, p90 ${ms(quantile(keys, 0.9))}, max ${ms(Math.max(...keys))} (${keys.length} presses; target < 100 ms)`);
const ticks = await clockTicks();
console.log(`fleet home, ${SERVERS} servers pending: a clock tick to the new frame median ${ms(median(ticks))}, max ${ms(Math.max(...ticks))}`);
const apply = await applyProgress();
console.log(`apply of ${SERVERS} servers, 3000 step events: ${ms(apply.total)} from a to the countdown; ${apply.frameLines} lines written in all (each finished server printed once)`);
process.exit(0);
