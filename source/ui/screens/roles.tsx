// Roles: pick roles per server (pre-selected from what it already has, or what is listening),
// and add custom openings. Enter previews.

import {useState, type ReactElement} from 'react';
import {Box, Text, useInput} from 'ink';
import TextInput from 'ink-text-input';
import {Frame, WindowedList, fit, useBodyRows, useClaimEscape, useInputActive} from '../components.js';
import {useColor, useTerminalSize, useUi} from '../context.js';
import {useWizard} from '../app.js';
import {describeAllow, listeningHosts, parseOpeningText, reducer} from '../state.js';

/** One row per server (and one for its custom openings), in a window of `height` rows. */
export function RolesGrid({hosts, height, onDone}: {hosts: readonly string[]; height: number; onDone: () => void}) {
  const {services} = useUi();
  const {state, dispatch} = useWizard();
  const active = useInputActive();
  const color = useColor();
  const {columns} = useTerminalSize();
  const roles = services.roleNames(state.draft);
  const [row, setRow] = useState(0);
  const [column, setColumn] = useState(0);
  const [custom, setCustom] = useState<string | undefined>(undefined);
  const host = hosts[Math.min(row, hosts.length - 1)];
  const hostEntry = state.draft.hosts.find((candidate) => candidate.name === host);
  const suggestion = services.peerPortSuggestions(state.draft, listeningHosts(state))[0];

  useInput(
    (input, key) => {
      if (key.upArrow) setRow((value) => Math.max(0, value - 1));
      else if (key.downArrow) setRow((value) => Math.min(hosts.length - 1, value + 1));
      else if (key.pageUp) setRow((value) => Math.max(0, value - Math.max(1, Math.floor(height / 2))));
      else if (key.pageDown) setRow((value) => Math.min(hosts.length - 1, value + Math.max(1, Math.floor(height / 2))));
      else if (key.home) setRow(0);
      else if (key.end) setRow(hosts.length - 1);
      else if (key.leftArrow) setColumn((value) => Math.max(0, value - 1));
      else if (key.rightArrow) setColumn((value) => Math.min(roles.length - 1, value + 1));
      else if (input === ' ' && host && roles[column]) dispatch({type: 'toggle-role', host, role: roles[column]});
      else if (input === 'c' && host) setCustom('');
      else if (input === 'x' && hostEntry && (hostEntry.allow?.length ?? 0) > 0) dispatch({type: 'set-allow', host: hostEntry.name, allow: (hostEntry.allow ?? []).slice(0, -1)});
      else if (input === 'p' && suggestion) {
        dispatch({type: 'set-role-peers', role: suggestion.role, peers: suggestion.peers});
        dispatch({type: 'message', text: `${suggestion.role} peers: ${suggestion.proto}/${suggestion.ports.join(',')} added, open between ${suggestion.hosts.join(', ')}`});
      } else if (key.return) onDone();
    },
    {isActive: active && custom === undefined},
  );
  useClaimEscape(custom !== undefined);
  useInput(
    (_input, key) => {
      if (key.escape) setCustom(undefined);
    },
    {isActive: active && custom !== undefined},
  );

  const nameWidth = Math.min(Math.max(8, Math.floor(columns * 0.3)), hosts.reduce((width, name) => Math.max(width, name.length + 1), 8));
  const lines: ReactElement[] = [];
  let focus = {first: 0, last: 0, at: 0};
  hosts.forEach((name, hostIndex) => {
    const chosen = state.roleChoices[name] ?? state.draft.hosts.find((candidate) => candidate.name === name)?.roles ?? [];
    const entry = state.discovery[name];
    const listening = entry?.phase === 'finished' && entry.result.ok ? entry.result.listening.map((service) => service.port) : [];
    const allows = state.draft.hosts.find((candidate) => candidate.name === name)?.allow ?? [];
    if (hostIndex === row) focus = {first: lines.length, last: lines.length + (allows.length > 0 ? 1 : 0), at: lines.length};
    lines.push(
      <Text key={name} wrap="truncate-end">
        <Text color={hostIndex === row ? color('cyan') : undefined}>{hostIndex === row ? '❯ ' : '  '}</Text>
        <Text bold>{fit(name, nameWidth, true)}</Text>
        {roles.map((role, roleIndex) => (
          <Text key={role} inverse={hostIndex === row && roleIndex === column}>
            {chosen.includes(role) ? '[x] ' : '[ ] '}
            {role}{' '}
          </Text>
        ))}
        <Text dimColor> {listening.length > 0 ? `listening ${[...new Set(listening)].join(',')}` : ''}</Text>
      </Text>,
    );
    if (allows.length > 0) {
      lines.push(
        <Text key={`${name}/allow`} dimColor wrap="truncate-end">
          {' '.repeat(nameWidth + 2)}+ {allows.map(describeAllow).join('; ')}
        </Text>,
      );
    }
  });

  return (
    <Box flexDirection="column">
      <WindowedList items={lines} height={Math.max(1, height - (custom !== undefined ? 2 : 0) - (suggestion ? 1 : 0))} focus={focus} renderItem={(line) => line} />
      {suggestion ? (
        <Text color={color('yellow')} wrap="truncate-end">
          suggested: {suggestion.hosts.join(', ')} ({suggestion.role}) listen on {suggestion.proto}/{suggestion.ports.join(',')}: p opens{' '}
          {suggestion.ports.length > 1 ? 'them' : 'it'} between {suggestion.role} servers
        </Text>
      ) : null}
      {custom !== undefined && host ? (
        <Box marginTop={1}>
          <Text>custom opening on {host}: </Text>
          <TextInput
            value={custom}
            onChange={setCustom}
            focus={active}
            placeholder="8443/tcp from internet"
            onSubmit={(value) => {
              const parsed = parseOpeningText(value);
              if ('problem' in parsed) return dispatch({type: 'message', text: `${host}: ${parsed.problem}`});
              dispatch({type: 'set-allow', host, allow: [...(hostEntry?.allow ?? []), parsed]});
              dispatch({type: 'message', text: undefined});
              setCustom(undefined);
            }}
          />
        </Box>
      ) : null}
    </Box>
  );
}

export function RolesScreen() {
  const {state, dispatch, actions} = useWizard();
  const hints = [
    {key: '↑↓', label: 'server'},
    {key: '←→', label: 'role'},
    {key: 'Space', label: 'toggle'},
    {key: 'c', label: 'custom port'},
    {key: 'x', label: 'drop last custom'},
    {key: 'Enter', label: 'preview'},
    {key: 'Esc', label: 'back'},
  ];
  const height = useBodyRows(hints);
  return (
    <Frame title={`roles (${state.scope.length} server${state.scope.length === 1 ? '' : 's'})`} message={state.message} hints={hints}>
      <RolesGrid
        hosts={state.scope}
        height={height}
        onDone={() => {
          const next = reducer(state, {type: 'roles-done'});
          dispatch({type: 'roles-done'});
          dispatch({type: 'go', screen: 'preview'});
          void actions.preview(next.draft, next.scope);
        }}
      />
    </Frame>
  );
}
