// Fleet home: the saved servers with their state, and every action from here.

import {useState} from 'react';
import {Box, Text, useInput} from 'ink';
import {Frame, formatClock, useInputActive} from '../components.js';
import {useColor, useNow} from '../context.js';
import {useWizard} from '../app.js';
import type {HostState} from '../services.js';

export function describeState(state: HostState | undefined, now: number): string {
  switch (state?.kind) {
    case undefined:
    case 'unknown':
      return 'checking…';
    case 'unmanaged':
      return 'unmanaged';
    case 'locked':
      return state.detail ? `locked down (${state.detail})` : 'locked down';
    case 'pending':
      return `pending, ${formatClock((state.deadline - now) / 1000)} left`;
    case 'unreachable':
      return `unreachable: ${state.reason}`;
  }
}

function stateColor(state: HostState | undefined): string | undefined {
  if (state?.kind === 'locked') return 'green';
  if (state?.kind === 'pending') return 'yellow';
  if (state?.kind === 'unreachable') return 'red';
  return undefined;
}

export function HomeScreen() {
  const {state, dispatch, actions} = useWizard();
  const active = useInputActive();
  const color = useColor();
  const now = useNow();
  const hosts = state.fleet.hosts;
  const index = Math.max(0, hosts.findIndex((host) => host.name === state.selected));
  const selected = hosts[index];
  const [confirmRemove, setConfirmRemove] = useState<string | undefined>(undefined);

  useInput(
    (input, key) => {
      if (confirmRemove) {
        if (input === 'y') {
          const fleet = {...state.fleet, hosts: hosts.filter((host) => host.name !== confirmRemove)};
          void actions.saveFleet(fleet).then((saved) => saved && dispatch({type: 'message', text: `${confirmRemove} removed from the fleet (nothing changed on it)`}));
        }
        setConfirmRemove(undefined);
        return;
      }
      if (key.upArrow) dispatch({type: 'select-move', delta: -1});
      else if (key.downArrow) dispatch({type: 'select-move', delta: 1});
      else if (input === 'a') dispatch({type: 'go', screen: 'add-server'});
      else if (input === 'A') dispatch({type: 'go', screen: 'add-from-config'});
      else if (input === 'd' && selected) setConfirmRemove(selected.name);
      else if (input === 'l') {
        if (hosts.length === 0) return dispatch({type: 'message', text: 'add a server first (a), or import an inventory (i)'});
        dispatch({type: 'start-lockdown'});
        void actions.discover(state.fleet, hosts.map((host) => host.name));
      } else if (input === 'e' && selected) {
        dispatch({type: 'select', host: selected.name});
        dispatch({type: 'start-quick-edit', host: selected.name, draft: state.fleet});
      } else if (input === 't' && selected) dispatch({type: 'go', screen: 'troubleshoot'});
      else if (input === 's') dispatch({type: 'go', screen: 'settings'});
      else if (input === 'i') dispatch({type: 'go', screen: 'import'});
      else if (input === 'x') dispatch({type: 'go', screen: 'export'});
      else if (input === 'r') void actions.refreshStatus();
      else if (input === 'p' && selected) {
        const hostState = state.hostStates.get(selected.name);
        if (hostState?.kind !== 'pending' || hostState.batch === undefined) return dispatch({type: 'message', text: `${selected.name} has no pending change`});
        const batchId = hostState.batch;
        const hostsInBatch = hosts.filter((host) => {
          const other = state.hostStates.get(host.name);
          return other?.kind === 'pending' && other.batch === batchId;
        });
        dispatch({type: 'resume-batch', batch: {id: batchId, hosts: hostsInBatch.map((host) => host.name), deadline: hostState.deadline, checks: []}});
      }
      else if (input === 'q') actions.exit();
    },
    {isActive: active},
  );

  const hints = confirmRemove
    ? [{key: 'y', label: `remove ${confirmRemove} from the fleet`}, {key: 'any other key', label: 'keep it'}]
    : [
        {key: '↑↓', label: 'select'},
        {key: 'a', label: 'add'},
        {key: 'A', label: 'add from ~/.ssh/config'},
        {key: 'd', label: 'remove'},
        {key: 'l', label: 'lock down the fleet'},
        {key: 'e', label: 'quick edit'},
        {key: 't', label: 'troubleshoot'},
        {key: 's', label: 'settings'},
        {key: 'i/x', label: 'import/export'},
        {key: 'r', label: 'refresh'},
        ...(state.hostStates.get(selected?.name ?? '')?.kind === 'pending' ? [{key: 'p', label: 'pending change: keep or roll back'}] : []),
        {key: 'q', label: 'quit'},
      ];

  return (
    <Frame title="fleet" hints={hints} message={state.message}>
      {hosts.length === 0 ? (
        <Text>No servers yet. Press a to add one (ssh destination), A to add several from ~/.ssh/config, or i to import an inventory file.</Text>
      ) : (
        hosts.map((host) => {
          const hostState = state.hostStates.get(host.name);
          const isSelected = host.name === selected?.name;
          return (
            <Box key={host.name}>
              <Box width={2} flexShrink={0}>
                <Text color={isSelected ? color('cyan') : undefined}>{isSelected ? '❯' : ' '}</Text>
              </Box>
              <Box width={16} flexShrink={0}>
                <Text bold={isSelected}>{host.name}</Text>
              </Box>
              <Box width={24} flexShrink={0}>
                <Text wrap="truncate-end">
                  {host.ssh}
                  {host.jump ? ` via ${host.jump}` : ''}
                </Text>
              </Box>
              <Box width={14} flexShrink={0}>
                <Text dimColor wrap="truncate-end">
                  {host.roles.length > 0 ? host.roles.join(',') : '-'}
                </Text>
              </Box>
              <Text color={color(stateColor(hostState))} wrap="truncate-end">
                {describeState(hostState, now)}
              </Text>
            </Box>
          );
        })
      )}
    </Frame>
  );
}
