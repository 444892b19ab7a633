// Troubleshoot one server: its rules in words with their packet counters (refreshed live) and
// the recent dropped packets from the rate-limited drop log.

import {useEffect, useRef, useState} from 'react';
import {Text, useInput} from 'ink';
import {Frame, WindowedList, useBodyRows, useInputActive} from '../components.js';
import {useColor, useNow, useUi} from '../context.js';
import {useWizard} from '../app.js';
import type {CountersView, DropLogView} from '../services.js';

type View = 'v4' | 'v6' | 'drops';

const REFRESH_MS = 2000;

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message.split('\n').join('; ') : String(error);
}

export function TroubleshootScreen() {
  const {services} = useUi();
  const {state} = useWizard();
  const active = useInputActive();
  const color = useColor();
  const now = useNow();
  const host = state.selected ?? state.fleet.hosts[0]?.name ?? '';
  const [view, setView] = useState<View>('v4');
  const [counters, setCounters] = useState<CountersView | undefined>(undefined);
  const [drops, setDrops] = useState<DropLogView | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [lastRefresh, setLastRefresh] = useState<number | undefined>(undefined);
  const [paused, setPaused] = useState(false);
  const inFlight = useRef(false);

  const refresh = async () => {
    if (inFlight.current || host === '') return;
    inFlight.current = true;
    setLastRefresh(services.clock.now());
    try {
      const [nextCounters, nextDrops] = await Promise.all([services.counters(state.fleet, host), services.dropLog(state.fleet, host)]);
      setCounters(nextCounters);
      setDrops(nextDrops);
      setError(undefined);
    } catch (caught) {
      setError(`${host}: ${messageOf(caught)}`);
    } finally {
      inFlight.current = false;
    }
  };

  // Live: refresh whenever the clock says the last read is older than REFRESH_MS.
  useEffect(() => {
    if (paused) return;
    if (lastRefresh === undefined || now - lastRefresh >= REFRESH_MS) void refresh();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [now, paused]);

  let lines: readonly string[];
  if (view === 'drops') {
    const entries = drops?.lines ?? [];
    lines = drops ? [...(drops.note ? [drops.note] : []), ...(entries.length > 0 ? entries : drops.note ? [] : ['no dropped packets logged recently'])] : ['reading…'];
  } else {
    const text = counters?.[view];
    lines = text === undefined ? ['reading…'] : text.replace(/\n$/, '').split('\n');
  }
  const hints = [
    {key: '1', label: 'IPv4'},
    {key: '2', label: 'IPv6'},
    {key: '3', label: 'dropped packets'},
    {key: 'r', label: 'refresh'},
    {key: 'p', label: paused ? 'resume' : 'pause'},
    {key: '↑↓', label: 'scroll'},
    {key: 'Esc', label: 'back'},
  ];
  const height = useBodyRows(hints) - (error ? 1 : 0);

  useInput(
    (input) => {
      if (input === '1') setView('v4');
      else if (input === '2') setView('v6');
      else if (input === '3') setView('drops');
      else if (input === 'r') void refresh();
      else if (input === 'p') setPaused(!paused);
    },
    {isActive: active},
  );

  const title = `troubleshoot · ${host} · ${view === 'drops' ? `dropped packets${drops && drops.source !== 'none' ? ` (${drops.source})` : ''}` : `${view === 'v4' ? 'IPv4' : 'IPv6'} counters`}${paused ? ' · paused' : ''}`;
  return (
    <Frame
      title={title}
      message={error ?? state.message}
      hints={hints}
    >
      {error ? (
        <Text color={color('red')} wrap="truncate-end">
          {error}
        </Text>
      ) : null}
      <WindowedList
        items={lines}
        height={height}
        scroll={active}
        renderItem={(line, index) => (
          <Text key={index} wrap="truncate-end" color={view === 'drops' && line === drops?.note ? color('yellow') : undefined}>
            {line === '' ? ' ' : line}
          </Text>
        )}
      />
    </Frame>
  );
}
