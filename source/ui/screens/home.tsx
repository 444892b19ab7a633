// Fleet home: the saved servers with their state, and every action from here.

import {useState} from 'react';
import {Text, useInput} from 'ink';
import {Frame, WindowedList, fit, formatClock, useBodyRows, useInputActive} from '../components.js';
import {useColor, useNow, useTerminalSize} from '../context.js';
import {useWizard} from '../app.js';
import type {FleetAllow, FleetDoc, FleetHost, HostState} from '../services.js';
import {describeAllow, reducer, type Confirming, type WizardState} from '../state.js';

export function describeState(state: HostState | undefined, now: number): string {
  switch (state?.kind) {
    case undefined:
    case 'unknown':
      return 'checking…';
    case 'unmanaged':
      return 'unmanaged';
    case 'locked':
      return state.detail ? `locked down (${state.detail})` : 'locked down';
    case 'drifted':
      return `DRIFTED — ${state.drift}`;
    case 'unchecked':
      return `confirmed; live rules not checked: ${state.reason}`;
    case 'pending':
      return `pending, ${formatClock((state.deadline - now) / 1000)} left`;
    case 'unreachable':
      return `unreachable: ${state.reason}`;
  }
}

function stateColor(state: HostState | undefined): string | undefined {
  if (state?.kind === 'locked') return 'green';
  if (state?.kind === 'pending') return 'yellow';
  if (state?.kind === 'unreachable' || state?.kind === 'drifted') return 'red';
  if (state?.kind === 'unchecked') return 'yellow';
  return undefined;
}

/** The last change kept on the fleet: the newest confirmed batch (ids sort by time) and its hosts. */
export function lastChange(state: WizardState): {batch: string; hosts: string[]} | undefined {
  const confirmed = state.fleet.hosts.flatMap((host) => {
    const hostState = state.hostStates.get(host.name);
    return hostState?.kind === 'locked' && hostState.batch !== undefined ? [{host: host.name, batch: hostState.batch}] : [];
  });
  const batch = confirmed.map((entry) => entry.batch).sort().at(-1);
  return batch === undefined ? undefined : {batch, hosts: confirmed.filter((entry) => entry.batch === batch).map((entry) => entry.host)};
}

/** The fleet with `allow` added to one host's openings. */
function withAllow(fleet: FleetDoc, host: string, allow: readonly FleetAllow[]): FleetDoc {
  return {...fleet, hosts: fleet.hosts.map((entry) => (entry.name === host ? {...entry, allow: [...(entry.allow ?? []), ...allow]} : entry))};
}

const count = (hosts: readonly string[]): string => `${hosts.length} host${hosts.length === 1 ? '' : 's'}`;

function question(confirming: Confirming): string {
  if (confirming.kind === 'adopt') {
    const lines = confirming.allow.map((allow) => `+ allow ${describeAllow(allow)}`).join(', ');
    return `adopt into ${confirming.host}'s plan: ${lines} (IPv4 and IPv6; preview and countdown follow)? y/N`;
  }
  if (confirming.kind === 'undo') {
    return `undo batch ${confirming.batch} (${count(confirming.hosts)}: earlier rules back, countdown follows)? y/N`;
  }
  // The owner first: the line is cut at the terminal's width.
  return `${confirming.owner} began batch ${confirming.batch.id} (${count(confirming.batch.hosts)}), not this machine: act on it? y/N`;
}

const widest = (texts: readonly string[], floor: number) => texts.reduce((width, text) => Math.max(width, text.length), floor);
const sshText = (host: FleetHost) => `${host.ssh}${host.jump ? ` via ${host.jump}` : ''}`;
const rolesText = (host: FleetHost) => (host.roles.length > 0 ? host.roles.join(',') : '-');

/**
 * Column widths of the host rows for a terminal `columns` wide: name and roles as wide as their
 * widest entry up to a share of the width, the ssh destination in what is left (none when too
 * narrow), the state in the rest. Cells are cut with …, never wrapped.
 */
export function hostColumns(hosts: readonly FleetHost[], columns: number): {name: number; ssh: number; roles: number} {
  const name = Math.min(widest(hosts.map((host) => host.name), 4), Math.max(8, Math.floor(columns * 0.3)));
  const roles = Math.min(widest(hosts.map(rolesText), 5), Math.max(5, Math.floor(columns * 0.2)));
  const left = columns - 2 - name - 1 - roles - 1 - 16;
  const ssh = left >= 9 ? Math.min(widest(hosts.map(sshText), 3), 32, left - 1) : 0;
  return {name, ssh, roles};
}

export function HomeScreen() {
  const {state, dispatch, actions} = useWizard();
  const active = useInputActive();
  const color = useColor();
  const {columns} = useTerminalSize();
  const hosts = state.fleet.hosts;
  // The clock redraws the home only while a countdown is showing (and then only the visible rows).
  const now = useNow([...state.hostStates.values()].some((hostState) => hostState.kind === 'pending'));
  const index = Math.max(0, hosts.findIndex((host) => host.name === state.selected));
  const selected = hosts[index];
  const [confirmRemove, setConfirmRemove] = useState<string | undefined>(undefined);

  const undoable = lastChange(state);

  /** The preview of `draft` (default: the saved plan) on one host, then the apply and countdown. */
  const reapply = (host: string, draft?: FleetDoc): void => {
    const action = {type: 'start-reapply', host, ...(draft === undefined ? {} : {draft})} as const;
    const started = reducer(state, action);
    dispatch(action);
    if (started.screen === 'discover') void actions.discover(started.draft, Object.keys(started.discovery));
    else void actions.preview(started.draft, started.scope);
  };

  useInput(
    (input, key) => {
      if (state.confirming) {
        const asked = state.confirming;
        const yes = input === 'y';
        dispatch({type: 'confirm-answer', yes});
        if (yes && asked.kind === 'undo') void actions.undo(asked.batch, asked.hosts);
        if (yes && asked.kind === 'adopt') reapply(asked.host, withAllow(state.fleet, asked.host, asked.allow));
        return;
      }
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
      else if (key.pageUp) dispatch({type: 'select-move', delta: -Math.max(1, listRows - 2)});
      else if (key.pageDown) dispatch({type: 'select-move', delta: Math.max(1, listRows - 2)});
      else if (key.home) dispatch({type: 'select-move', delta: -hosts.length});
      else if (key.end) dispatch({type: 'select-move', delta: hosts.length});
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
        dispatch({
          type: 'resume-batch',
          batch: {id: batchId, hosts: hostsInBatch.map((host) => host.name), deadline: hostState.deadline, checks: [], ...(hostState.owner === undefined ? {} : {owner: hostState.owner})},
          ...(hostState.startedHere === undefined ? {} : {startedHere: hostState.startedHere}),
        });
      } else if (input === 'f' && selected) {
        if (state.hostStates.get(selected.name)?.kind !== 'drifted') return dispatch({type: 'message', text: `${selected.name} has not drifted`});
        reapply(selected.name);
      } else if (input === 'm' && selected) {
        const hostState = state.hostStates.get(selected.name);
        if (hostState?.kind !== 'drifted') return dispatch({type: 'message', text: `${selected.name} has not drifted`});
        if (!hostState.adopt) return dispatch({type: 'message', text: `${selected.name}: its drift is not only ports opened; it cannot be adopted as an allow (f re-applies the plan)`});
        dispatch({type: 'ask-adopt', host: selected.name, allow: hostState.adopt});
      } else if (input === 'u' && undoable) dispatch({type: 'ask-undo', batch: undoable.batch, hosts: undoable.hosts});
      else if (input === 'q') actions.exit();
    },
    {isActive: active},
  );

  const selectedState = state.hostStates.get(selected?.name ?? '');
  const hints = state.confirming
    ? [{key: 'y', label: 'yes'}, {key: 'any other key', label: 'no, change nothing'}]
    : confirmRemove
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
        ...(state.hostStates.get(selected?.name ?? '')?.kind === 'drifted' ? [{key: 'f', label: 'drifted: re-apply the plan (countdown follows)'}] : []),
        ...(selectedState?.kind === 'drifted' && selectedState.adopt ? [{key: 'm', label: 'adopt the live change into the plan'}] : []),
        ...(undoable ? [{key: 'u', label: 'undo last change'}] : []),
        {key: 'q', label: 'quit'},
      ];
  const listRows = useBodyRows(hints);

  const widths = hostColumns(hosts, columns);
  return (
    <Frame title={`fleet (${hosts.length} server${hosts.length === 1 ? '' : 's'})`} hints={hints} message={state.confirming ? question(state.confirming) : state.message}>
      {hosts.length === 0 ? (
        <Text>No servers yet. Press a to add one (ssh destination), A to add several from ~/.ssh/config, or i to import an inventory file.</Text>
      ) : (
        <WindowedList
          items={hosts}
          height={listRows}
          focus={index}
          renderItem={(host) => {
            const hostState = state.hostStates.get(host.name);
            const isSelected = host.name === selected?.name;
            return (
              <Text key={host.name} wrap="truncate-end">
                <Text color={isSelected ? color('cyan') : undefined}>{isSelected ? '❯ ' : '  '}</Text>
                <Text bold={isSelected}>{fit(host.name, widths.name, true)}</Text>{' '}
                {widths.ssh > 0 ? `${fit(sshText(host), widths.ssh, true)} ` : ''}
                <Text dimColor>{fit(rolesText(host), widths.roles, true)}</Text>{' '}
                <Text color={color(stateColor(hostState))}>{describeState(hostState, now)}</Text>
              </Text>
            );
          }}
        />
      )}
    </Frame>
  );
}
