// Quick edit of one server: open or close a port, allow a source, change roles — then the
// diff. Two or three keystrokes from the fleet home to the diff (e.g. e, c, Enter).

import {useState} from 'react';
import {Box, Text, useInput} from 'ink';
import SelectInput from 'ink-select-input';
import TextInput from 'ink-text-input';
import {Frame, useClaimEscape, useInputActive} from '../components.js';
import {useWizard} from '../app.js';
import {RolesGrid} from './roles.js';
import {describeAllow, hostsWithoutFacts, parseOpeningText, reducer, type WizardState} from '../state.js';
import type {FleetAllow} from '../services.js';

type Mode = 'menu' | 'open' | 'allow' | 'close' | 'roles';

const MENU: readonly {label: string; value: Mode; key: string}[] = [
  {label: 'o  open a port', value: 'open', key: 'o'},
  {label: 'c  close a port', value: 'close', key: 'c'},
  {label: 'a  allow a source (host, role, CIDR)', value: 'allow', key: 'a'},
  {label: 'r  change roles', value: 'roles', key: 'r'},
];

type Closable = {kind: 'allow'; index: number} | {kind: 'role'; role: string};

export function QuickEditScreen() {
  const {state, dispatch, actions} = useWizard();
  const active = useInputActive();
  const [mode, setMode] = useState<Mode>('menu');
  const [text, setText] = useState('');
  const hostName = state.scope[0] ?? '';
  const host = state.draft.hosts.find((candidate) => candidate.name === hostName);
  useClaimEscape(mode !== 'menu');

  const toPreview = (next: WizardState) => {
    const missing = hostsWithoutFacts(next.draft);
    if (missing.length > 0) {
      // Compiling needs every server's interfaces; discover the ones the fleet does not know yet.
      dispatch({type: 'go', screen: 'discover'});
      for (const name of missing) dispatch({type: 'discover-progress', host: name, phase: 'connecting'});
      void actions.discover(next.draft, missing);
      return;
    }
    const done = reducer(next, {type: 'roles-done'});
    dispatch({type: 'roles-done'});
    dispatch({type: 'go', screen: 'preview'});
    void actions.preview(done.draft, done.scope);
  };

  const setAllow = (allow: readonly FleetAllow[]) => {
    const action = {type: 'set-allow', host: hostName, allow} as const;
    dispatch(action);
    toPreview(reducer(state, action));
  };

  useInput(
    (input) => {
      const item = MENU.find((entry) => entry.key === input);
      if (item) {
        setText('');
        setMode(item.value);
      }
    },
    {isActive: active && mode === 'menu'},
  );
  useInput(
    (_input, key) => {
      if (key.escape) setMode('menu');
    },
    {isActive: active && mode !== 'menu'},
  );

  if (!host) return <Frame title="quick edit" hints={[{key: 'Esc', label: 'back'}]}>{<Text>No server selected.</Text>}</Frame>;

  const allows = host.allow ?? [];
  const closable: {label: string; value: Closable; key: string}[] = [
    ...allows.map((allow, index) => ({label: `${describeAllow(allow)} (this server's opening)`, value: {kind: 'allow', index} as Closable, key: `a${index}`})),
    ...host.roles.map((role) => ({label: `role ${role} (removes the role and all it opens)`, value: {kind: 'role', role} as Closable, key: `r${role}`})),
  ];

  const submitOpening = (value: string) => {
    let parsed;
    if (mode === 'allow') {
      // "SOURCE PORT[/proto]": who, then which port.
      const [source, port] = value.trim().split(/\s+/);
      parsed = source && port ? parseOpeningText(`${port} from ${source}`) : {problem: `"${value.trim()}" is not SOURCE PORT (e.g. 10.0.0.5 3306 or app 8080/tcp)`};
    } else parsed = parseOpeningText(value);
    if ('problem' in parsed) return dispatch({type: 'message', text: `${hostName}: ${parsed.problem}`});
    setAllow([...allows, parsed]);
  };

  return (
    <Frame
      title={`quick edit · ${hostName}`}
      message={state.message}
      hints={mode === 'menu' ? [{key: 'o/c/a/r', label: 'choose'}, {key: 'Esc', label: 'back'}] : [{key: 'Enter', label: 'diff'}, {key: 'Esc', label: 'menu'}]}
    >
      <Text dimColor>
        roles: {host.roles.join(', ') || 'none'}
        {allows.length > 0 ? `; openings: ${allows.map(describeAllow).join('; ')}` : ''}
      </Text>
      {mode === 'menu' ? (
        <SelectInput
          items={MENU.map(({label, value}) => ({label, value}))}
          isFocused={active}
          onSelect={(item) => {
            setText('');
            setMode(item.value);
          }}
        />
      ) : null}
      {mode === 'open' || mode === 'allow' ? (
        <Box>
          <Text>{mode === 'open' ? 'open port: ' : 'allow source and port: '}</Text>
          <TextInput value={text} onChange={setText} onSubmit={submitOpening} focus={active} placeholder={mode === 'open' ? '8443/tcp from internet' : '10.0.0.5 3306'} />
        </Box>
      ) : null}
      {mode === 'close' ? (
        closable.length === 0 ? (
          <Text>Nothing to close on {hostName}: it has no roles and no openings (SSH from the bastions always stays).</Text>
        ) : (
          <SelectInput
            items={closable}
            isFocused={active}
            onSelect={(item) => {
              if (item.value.kind === 'allow') {
                const index = item.value.index;
                setAllow(allows.filter((_allow, position) => position !== index));
              } else {
                const role = item.value.role;
                const action = {type: 'toggle-role', host: hostName, role} as const;
                dispatch(action);
                toPreview(reducer(state, action));
              }
            }}
          />
        )
      ) : null}
      {mode === 'roles' ? <RolesGrid hosts={[hostName]} height={4} onDone={() => toPreview(state)} /> : null}
    </Frame>
  );
}
