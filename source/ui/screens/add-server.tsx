// Add a server: its ssh destination (with ~/.ssh/config Host suggestions), an optional
// jump host, and its name in the fleet. Nothing is contacted here.

import {useEffect, useState} from 'react';
import {Box, Text, useInput} from 'ink';
import TextInput from 'ink-text-input';
import {Frame, useInputActive} from '../components.js';
import {useColor, useUi} from '../context.js';
import {useWizard} from '../app.js';
import {nameFromDestination} from '../state.js';

type Field = 'ssh' | 'jump' | 'name';

export function AddServerScreen() {
  const {services} = useUi();
  const {state, dispatch, actions} = useWizard();
  const active = useInputActive();
  const color = useColor();
  const [field, setField] = useState<Field>('ssh');
  const [ssh, setSsh] = useState('');
  const [jump, setJump] = useState('');
  const [name, setName] = useState('');
  const [suggestions, setSuggestions] = useState<readonly string[]>([]);
  const [highlight, setHighlight] = useState(0);

  useEffect(() => {
    let cancelled = false;
    services.sshHostSuggestions().then(
      (hosts) => {
        if (!cancelled) setSuggestions(hosts);
      },
      () => undefined,
    );
    return () => {
      cancelled = true;
    };
  }, [services]);

  const taken = new Set(state.fleet.hosts.map((host) => host.ssh));
  const matching = suggestions.filter((alias) => alias.toLowerCase().startsWith(ssh.toLowerCase()) && !taken.has(alias)).slice(0, 8);
  const jumpChoices = [...state.fleet.hosts.map((host) => host.name), ...suggestions].filter((choice, index, all) => all.indexOf(choice) === index);
  const matchingJumps = jumpChoices.filter((choice) => jump !== '' && choice.toLowerCase().startsWith(jump.toLowerCase())).slice(0, 8);
  const list = field === 'ssh' ? matching : field === 'jump' ? matchingJumps : [];
  const current = Math.min(highlight, Math.max(0, list.length - 1));

  useInput(
    (_input, key) => {
      if (key.upArrow) setHighlight(Math.max(0, current - 1));
      else if (key.downArrow) setHighlight(Math.min(list.length - 1, current + 1));
      else if (key.tab && list[current] !== undefined) {
        if (field === 'ssh') setSsh(list[current]);
        else if (field === 'jump') setJump(list[current]);
      }
    },
    {isActive: active && field !== 'name'},
  );

  const submit = async () => {
    const host = {name: name.trim(), ssh: ssh.trim(), roles: [] as string[], ...(jump.trim() ? {jump: jump.trim()} : {})};
    const fleet = {...state.fleet, hosts: [...state.fleet.hosts, host]};
    if (await actions.saveFleet(fleet)) {
      dispatch({type: 'select', host: host.name});
      dispatch({type: 'back'});
      dispatch({type: 'message', text: `${host.name} added; press l to lock down the fleet`});
      // Its state is read at once, not left "checking…" until r.
      void actions.refreshStatus();
    }
  };

  const fieldLine = (label: string, which: Field, value: string, onChange: (value: string) => void, onSubmit: () => void, placeholder: string) => (
    <Box>
      <Box width={18}>
        <Text color={field === which ? color('cyan') : undefined}>{label}</Text>
      </Box>
      {field === which ? <TextInput value={value} onChange={onChange} onSubmit={onSubmit} placeholder={placeholder} focus={active} /> : <Text>{value || ' '}</Text>}
    </Box>
  );

  return (
    <Frame
      title="add a server"
      message={state.message}
      hints={[
        {key: 'Tab', label: 'take the suggestion'},
        {key: '↑↓', label: 'choose'},
        {key: 'Enter', label: field === 'name' ? 'add' : 'next'},
        {key: 'Esc', label: 'back'},
      ]}
    >
      {fieldLine('ssh destination', 'ssh', ssh, setSsh, () => {
        if (ssh.trim() === '') return dispatch({type: 'message', text: 'ssh destination: required (an alias from ~/.ssh/config or [user@]host[:port])'});
        dispatch({type: 'message', text: undefined});
        if (name === '') setName(nameFromDestination(ssh.trim()));
        setHighlight(0);
        setField('jump');
      }, 'alias or user@host:port')}
      {field !== 'ssh' ? fieldLine('jump host', 'jump', jump, setJump, () => {
        setHighlight(0);
        setField('name');
      }, 'optional: a fleet server or destination') : null}
      {field === 'name' ? fieldLine('name in the fleet', 'name', name, setName, () => void submit(), 'e.g. mysql-1') : null}
      {list.length > 0 ? (
        <Box flexDirection="column" marginTop={1}>
          <Text dimColor>{field === 'ssh' ? 'from ~/.ssh/config:' : 'jump through:'}</Text>
          {list.map((choice, index) => (
            <Text key={choice} color={index === current ? color('cyan') : undefined}>
              {index === current ? '❯ ' : '  '}
              {choice}
            </Text>
          ))}
        </Box>
      ) : null}
    </Frame>
  );
}
