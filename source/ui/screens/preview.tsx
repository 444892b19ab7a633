// Preview: per server the ruleset (v4/v6), the diff against what it has now, the access
// in plain words and as a matrix, and the lockout check. A lockout finding or a problem blocks the apply.
// Where another firewall (firewalld, ufw) drops planned flows: which, and the remedy to choose
// (o): refuse (the apply is refused), open them in it too, or stop it within the batch.

import {useMemo, useRef, useState} from 'react';
import {Text, useInput} from 'ink';
import Spinner from 'ink-spinner';
import {Frame, WindowedList, fit, scrollWindow, useBodyRows, useInputActive} from '../components.js';
import {useColor, useTerminalSize} from '../context.js';
import {useWizard} from '../app.js';
import {renderMatrix} from '../../core/matrix.js';
import type {HostPreview} from '../services.js';
import type {OtherFirewallRemedy} from '../../core/model.js';
import {REMEDY_WORDS} from '../../core/remedy.js';

/** The preview's remedy choices, in the order `o` steps through them (undefined: refuse). */
const REMEDIES: readonly (OtherFirewallRemedy | undefined)[] = [undefined, 'open', 'stop'];
const REMEDY_LABELS: Record<OtherFirewallRemedy, string> = {open: 'open those flows in it', stop: 'stop it for the batch'};

type View = 'diff' | 'v4' | 'v6' | 'access' | 'matrix';
const VIEWS: readonly View[] = ['diff', 'v4', 'v6', 'access', 'matrix'];
const VIEW_LABELS: Record<View, string> = {diff: 'diff', v4: 'IPv4 rules', v6: 'IPv6 rules', access: 'access', matrix: 'access matrix'};

/** One row of server tabs: as many as fit the width, the current one in view, and where it is. */
function ServerTabs({hosts, current}: {hosts: readonly HostPreview[]; current: number}) {
  const color = useColor();
  const {columns} = useTerminalSize();
  const followed = useRef(0);
  const tabWidth = Math.min(24, hosts.reduce((width, host) => Math.max(width, host.host.length + 3), 4));
  const position = `◀ ${current + 1} of ${hosts.length} ▶`;
  const fitting = Math.max(1, Math.floor(columns / tabWidth));
  const count = fitting >= hosts.length ? hosts.length : Math.max(1, Math.floor((columns - position.length - 1) / tabWidth));
  const start = scrollWindow(followed.current, hosts.length, count, current);
  followed.current = start;
  return (
    <Text wrap="truncate-end">
      {hosts.slice(start, start + count).map((host, index) => (
        <Text key={host.host} inverse={start + index === current} color={host.diff.length > 0 ? undefined : color('gray')}>
          {' '}
          {fit(`${host.host}${host.diff.length > 0 ? '*' : ''}`, tabWidth - 2, true)}{' '}
        </Text>
      ))}
      {count < hosts.length ? <Text dimColor> {position}</Text> : null}
    </Text>
  );
}

export function PreviewScreen() {
  const {state, dispatch, actions} = useWizard();
  const active = useInputActive();
  const color = useColor();
  const [view, setView] = useState<View>('diff');
  const [hostIndex, setHostIndex] = useState(0);
  const preview = state.preview;
  const hosts = preview?.hosts ?? [];
  const current = hosts[Math.min(hostIndex, Math.max(0, hosts.length - 1))];
  const blocked = preview !== undefined && (preview.lockout.length > 0 || preview.problems.length > 0);
  const {columns} = useTerminalSize();
  // Fitted to the terminal's width: blocks of destinations one under the other, then the legend.
  const matrixLines = useMemo(() => (preview?.matrix ? renderMatrix(preview.matrix, {columns}) : ['(no access to show)']), [preview?.matrix, columns]);

  let lines: readonly string[] = [];
  if (preview && current) {
    if (view === 'diff') lines = current.diff.length > 0 ? current.diff : ['(no change: the server already has exactly these rules)'];
    else if (view === 'v4') lines = current.rulesV4.replace(/\n$/, '').split('\n');
    else if (view === 'v6') lines = current.rulesV6.replace(/\n$/, '').split('\n');
    else if (view === 'matrix') lines = matrixLines;
    else lines = preview.access;
  } else if (preview && view === 'access') lines = preview.access;
  else if (preview && view === 'matrix') lines = matrixLines;

  const others = preview?.otherFirewalls ?? [];
  const remedy = state.draft.options?.otherFirewall;
  const hints = [
    {key: '←→', label: 'server'},
    ...(others.length > 0 ? [{key: 'o', label: 'other firewall'}] : []),
    {key: '1-5/Tab', label: 'diff·v4·v6·access·matrix'},
    {key: '↑↓', label: 'scroll'},
    ...(blocked ? [] : [{key: 'a', label: `apply (${state.settings.deadlineSeconds} s to keep)`}]),
    {key: 'Esc', label: 'back'},
  ];
  // Problems, the lockout check, warnings and the server tabs above the window; it takes the rest.
  const problemLines = Math.min(4, preview?.problems.length ?? 0);
  const lockoutLines = preview && preview.lockout.length > 0 ? 1 + Math.min(3, preview.lockout.length) : preview?.problems.length === 0 ? 1 : 0;
  const otherLines = others.length > 0 ? Math.min(2, others.length) + 1 : 0;
  const headerLines = problemLines + lockoutLines + otherLines + Math.min(2, current?.warnings.length ?? 0) + 1;
  const height = useBodyRows(hints) - headerLines;

  useInput(
    (input, key) => {
      if (key.leftArrow || key.rightArrow) {
        if (hosts.length > 0) setHostIndex((value) => (value + (key.rightArrow ? 1 : hosts.length - 1)) % hosts.length);
      } else if (['1', '2', '3', '4', '5'].includes(input)) setView(VIEWS[Number(input) - 1] ?? 'diff');
      else if (key.tab) setView(VIEWS[(VIEWS.indexOf(view) + 1) % VIEWS.length] ?? 'diff');
      else if (input === 'o' && others.length > 0) {
        const next = REMEDIES[(REMEDIES.indexOf(remedy) + 1) % REMEDIES.length];
        dispatch({type: 'set-other-firewall', remedy: next});
        dispatch({type: 'message', text: next === undefined ? 'other firewall: the apply will be refused while it drops planned flows' : `other firewall: ${REMEDY_WORDS[next]}`});
      }
      else if (input === 'a') {
        if (!preview) return dispatch({type: 'message', text: 'the preview is not ready yet'});
        if (blocked) return dispatch({type: 'message', text: 'apply is blocked: fix what the preview reports first (Esc goes back)'});
        void actions.apply(state.draft, state.scope);
      }
    },
    {isActive: active},
  );

  if (!preview) {
    return (
      <Frame title="preview" message={state.message} hints={[{key: 'Esc', label: 'back'}]}>
        <Text>
          <Text color={color('cyan')}>
            <Spinner type="dots" />
          </Text>{' '}
          compiling the rules and reading what the servers have now…
        </Text>
      </Frame>
    );
  }

  return (
    <Frame
      title={`preview · ${current?.host ?? 'fleet'} · ${VIEW_LABELS[view]}`}
      message={state.message}
      hints={hints}
    >
      {preview.problems.slice(0, 4).map((problem) => (
        <Text key={`p/${problem}`} color={color('red')} wrap="truncate-end">
          ✗ {problem}
        </Text>
      ))}
      {preview.lockout.length > 0 ? (
        <>
          <Text color={color('red')} bold wrap="truncate-end">
            ✗ Lockout check: this plan would cut your SSH path — apply is blocked
          </Text>
          {preview.lockout.slice(0, 3).map((finding) => (
            <Text key={`l/${finding}`} color={color('red')} wrap="truncate-end">
              {'  '}
              {finding}
            </Text>
          ))}
        </>
      ) : preview.problems.length === 0 ? (
        <Text color={color('green')} wrap="truncate-end">
          ✓ Lockout check: your SSH path to every server survives
        </Text>
      ) : null}
      {others.slice(0, 2).map((line) => (
        <Text key={`o/${line}`} color={color('yellow')} wrap="truncate-end">
          ⚠ {line}
        </Text>
      ))}
      {others.length > 0 ? (
        <Text wrap="truncate-end">
          {'  '}other firewall ({others.length > 2 ? `${others.length} servers/firewalls, ` : ''}o to change):{' '}
          {REMEDIES.map((choice) => {
            const label = choice === undefined ? 'refuse the apply' : REMEDY_LABELS[choice];
            return choice === remedy ? (
              <Text key={label} bold inverse>
                {' '}
                {label}{' '}
              </Text>
            ) : (
              <Text key={label} dimColor>
                {' '}
                {label}{' '}
              </Text>
            );
          })}
        </Text>
      ) : null}
      {(current?.warnings ?? []).slice(0, 2).map((warning) => (
        <Text key={`w/${warning}`} color={color('yellow')} wrap="truncate-end">
          ⚠ {warning}
        </Text>
      ))}
      {hosts.length > 0 ? <ServerTabs hosts={hosts} current={Math.min(hostIndex, hosts.length - 1)} /> : <Text> </Text>}
      <WindowedList
        items={lines}
        height={height}
        scroll={active}
        renderItem={(line, index) => (
          <Text key={index} wrap="truncate-end" color={view === 'diff' ? color(line.startsWith('+') ? 'green' : line.startsWith('-') ? 'red' : undefined) : undefined}>
            {line === '' ? ' ' : line}
          </Text>
        )}
      />
    </Frame>
  );
}
