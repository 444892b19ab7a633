// Discover: every server at once, a spinner each turning into its result — interfaces
// with their public/private side (changeable), listening services, warnings.

import {useState, type ReactElement} from 'react';
import {Text, useInput} from 'ink';
import Spinner from 'ink-spinner';
import {Frame, WindowedList, useBodyRows, useInputActive} from '../components.js';
import {useColor} from '../context.js';
import {useWizard} from '../app.js';
import {reducer} from '../state.js';
import type {InterfaceSide} from '../services.js';

const NEXT_SIDE: Record<InterfaceSide, InterfaceSide> = {public: 'private', private: 'ignore', ignore: 'public'};
/** Interfaces PgUp/PgDn move by (each host takes three or more rows). */
const PAGE = 8;

export function DiscoverScreen() {
  const {state, dispatch, actions} = useWizard();
  const active = useInputActive();
  const color = useColor();
  const [cursor, setCursor] = useState(0);

  // The hosts being discovered: the whole fleet for a lockdown, those without facts for a quick edit.
  const entries = state.draft.hosts.filter((host) => state.discovery[host.name] !== undefined).map((host) => ({host: host.name, entry: state.discovery[host.name]}));
  const finished = entries.every(({entry}) => entry?.phase === 'finished');
  const failed = entries.filter(({entry}) => entry?.phase === 'finished' && !entry.result.ok).map(({host}) => host);
  // Where ↑↓ stop: each interface (Space changes its side) and each failed host (so every one can be seen).
  const choosable = entries.flatMap(({host, entry}): {host: string; iface?: string; side?: InterfaceSide}[] => {
    if (entry?.phase !== 'finished') return [];
    return entry.result.ok ? entry.result.interfaces.map((iface) => ({host, iface: iface.name, side: iface.side})) : [{host}];
  });
  const at = Math.min(cursor, Math.max(0, choosable.length - 1));

  useInput(
    (input, key) => {
      if (key.upArrow) setCursor((value) => Math.max(0, Math.min(value, choosable.length - 1) - 1));
      else if (key.downArrow) setCursor((value) => Math.min(choosable.length - 1, value + 1));
      else if (key.pageUp) setCursor((value) => Math.max(0, Math.min(value, choosable.length - 1) - PAGE));
      else if (key.pageDown) setCursor((value) => Math.min(choosable.length - 1, value + PAGE));
      else if (key.home) setCursor(0);
      else if (key.end) setCursor(Math.max(0, choosable.length - 1));
      else if (input === ' ' && choosable[at]?.iface !== undefined) {
        const {host, iface, side = 'ignore'} = choosable[at];
        dispatch({type: 'set-side', host, iface, side: NEXT_SIDE[side]});
      } else if (input === 'r' && finished && failed.length > 0) void actions.discover(state.draft, failed);
      else if (key.return) {
        if (!finished) return dispatch({type: 'message', text: 'still discovering…'});
        if (failed.length > 0) return dispatch({type: 'message', text: `cannot continue: ${failed.join(', ')} failed (r retries; Esc, then remove it from the fleet)`});
        if (state.afterDiscover === 'roles') dispatch({type: 'go', screen: 'roles'});
        else {
          const next = reducer(state, {type: 'roles-done'});
          dispatch({type: 'roles-done'});
          dispatch({type: 'go', screen: 'preview'});
          void actions.preview(next.draft, next.scope);
        }
      }
    },
    {isActive: active},
  );

  const lines: {element: ReactElement; isCursor: boolean}[] = [];
  let choiceIndex = 0;
  // The rows of the host under the cursor, kept in view with it.
  let cursorBlock = {first: 0, last: 0};
  for (const {host, entry} of entries) {
    const blockStart = lines.length;
    if (!entry || entry.phase !== 'finished') {
      lines.push({
        isCursor: false,
        element: (
          <Text key={host}>
            <Text color={color('cyan')}>
              <Spinner type="dots" />
            </Text>{' '}
            <Text bold>{host}</Text> {entry?.phase === 'reading' ? 'reading interfaces, services, firewall…' : 'connecting…'}
          </Text>
        ),
      });
      continue;
    }
    const result = entry.result;
    if (!result.ok) {
      const isCursor = choiceIndex === at;
      choiceIndex += 1;
      if (isCursor) cursorBlock = {first: lines.length, last: lines.length};
      lines.push({
        isCursor,
        element: (
          <Text key={host} wrap="truncate-end">
            <Text color={color(isCursor ? 'cyan' : 'red')}>{isCursor ? '❯' : '✗'}</Text> <Text bold>{host}</Text> {result.error}
          </Text>
        ),
      });
      continue;
    }
    let hasCursor = false;
    lines.push({
      isCursor: false,
      element: (
        <Text key={host} wrap="truncate-end">
          <Text color={color('green')}>✓</Text> <Text bold>{host}</Text> <Text dimColor>{result.route}</Text>
        </Text>
      ),
    });
    for (const iface of result.interfaces) {
      const isCursor = choiceIndex === at;
      choiceIndex += 1;
      hasCursor ||= isCursor;
      lines.push({
        isCursor,
        element: (
          <Text key={`${host}/${iface.name}`} wrap="truncate-end">
            <Text color={isCursor ? color('cyan') : undefined}>{isCursor ? '  ❯ ' : '    '}</Text>
            {iface.name.padEnd(8)}
            <Text bold color={color(iface.side === 'public' ? 'yellow' : iface.side === 'private' ? 'green' : 'gray')}>
              {iface.side.padEnd(8)}
            </Text>
            {iface.addresses.join(', ')}
            {iface.note ? <Text color={color('yellow')}> ({iface.note})</Text> : null}
          </Text>
        ),
      });
    }
    // One entry per service (IPv4 and IPv6 sockets of the same program read as one).
    const services = [...new Set(result.listening.map((service) => `${service.proto}/${service.port}${service.program ? ` ${service.program}` : ''}`))];
    lines.push({
      isCursor: false,
      element: (
        <Text key={`${host}/listening`} wrap="truncate-end" dimColor>
          {'    listening: '}
          {services.length > 0 ? services.join(', ') : 'nothing'}
          {result.suggestedRoles.length > 0 ? `  → suggests ${result.suggestedRoles.join(', ')}` : ''}
        </Text>
      ),
    });
    for (const warning of result.warnings) {
      lines.push({
        isCursor: false,
        element: (
          <Text key={`${host}/w/${warning}`} wrap="truncate-end" color={color('yellow')}>
            {'    ⚠ '}
            {warning}
          </Text>
        ),
      });
    }
    if (hasCursor) cursorBlock = {first: blockStart, last: lines.length - 1};
  }
  const cursorLine = Math.max(0, lines.findIndex((line) => line.isCursor));
  const hints = [
    {key: '↑↓', label: 'interface'},
    {key: 'Space', label: 'public/private/ignore'},
    ...(failed.length > 0 ? [{key: 'r', label: 'retry failed'}] : []),
    {key: 'Enter', label: state.afterDiscover === 'roles' ? 'choose roles' : 'preview'},
    {key: 'Esc', label: 'back'},
  ];
  const height = useBodyRows(hints);

  const done = entries.filter(({entry}) => entry?.phase === 'finished').length;
  return (
    <Frame title={`discover (${done}/${entries.length})${failed.length > 0 ? ` · ${failed.length} failed` : ''}`} message={state.message} hints={hints}>
      <WindowedList items={lines} height={height} focus={{...cursorBlock, at: cursorLine}} renderItem={(line) => line.element} />
    </Frame>
  );
}
