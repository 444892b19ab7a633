// Import the fleet from an inventory file, or export it to one (the same JSON format).

import {useState} from 'react';
import {Box, Text} from 'ink';
import TextInput from 'ink-text-input';
import {Frame, useInputActive} from '../components.js';
import {useUi} from '../context.js';
import {useWizard} from '../app.js';

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message.split('\n').join('; ') : String(error);
}

export function FileScreen({mode}: {mode: 'import' | 'export'}) {
  const {services} = useUi();
  const {state, dispatch, actions} = useWizard();
  const active = useInputActive();
  const [path, setPath] = useState(mode === 'export' ? 'inventory.json' : '');

  const submit = async (value: string) => {
    const target = value.trim();
    if (target === '') return dispatch({type: 'message', text: 'file: a path is required'});
    try {
      if (mode === 'import') {
        const fleet = await services.importFleet(target);
        if (await actions.saveFleet(fleet)) {
          dispatch({type: 'back'});
          dispatch({type: 'message', text: `imported ${fleet.hosts.length} servers from ${target}`});
          void actions.refreshStatus();
        }
      } else {
        await services.exportFleet(state.fleet, target);
        dispatch({type: 'back'});
        dispatch({type: 'message', text: `exported the fleet to ${target}`});
      }
    } catch (error) {
      dispatch({type: 'message', text: messageOf(error)});
    }
  };

  return (
    <Frame title={mode === 'import' ? 'import an inventory' : 'export the fleet'} message={state.message} hints={[{key: 'Enter', label: mode}, {key: 'Esc', label: 'back'}]}>
      <Box>
        <Text>{mode === 'import' ? 'read from: ' : 'write to: '}</Text>
        <TextInput value={path} onChange={setPath} onSubmit={(value) => void submit(value)} focus={active} placeholder="path/to/inventory.json" />
      </Box>
      {mode === 'import' ? <Text dimColor>The saved fleet is replaced by the file's (after it validates).</Text> : null}
    </Frame>
  );
}
