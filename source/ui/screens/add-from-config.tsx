// Add several servers at once: the Host aliases of ~/.ssh/config that the fleet lacks, picked
// with Space (or all with a), added with Enter. Nothing is contacted until their status is read.

import {useEffect, useState} from 'react';
import {Text, useInput} from 'ink';
import {Frame, useInputActive} from '../components.js';
import {useColor, useUi} from '../context.js';
import {useWizard} from '../app.js';
import {aliasesNotInFleet, withHostsFromAliases} from '../state.js';

export function AddFromConfigScreen() {
  const {services} = useUi();
  const {state, dispatch, actions} = useWizard();
  const active = useInputActive();
  const color = useColor();
  const [aliases, setAliases] = useState<readonly string[] | undefined>(undefined);
  const [picked, setPicked] = useState<ReadonlySet<string>>(new Set());
  const [cursor, setCursor] = useState(0);

  useEffect(() => {
    let cancelled = false;
    services.sshHostSuggestions().then(
      (hosts) => {
        if (!cancelled) setAliases(hosts);
      },
      () => {
        if (!cancelled) setAliases([]);
      },
    );
    return () => {
      cancelled = true;
    };
  }, [services]);

  const choices = aliasesNotInFleet(state.fleet, aliases ?? []);
  const current = Math.min(cursor, Math.max(0, choices.length - 1));

  const add = async (chosen: readonly string[]) => {
    if (chosen.length === 0) return dispatch({type: 'message', text: 'pick servers with Space (a: all)'});
    if (await actions.saveFleet(withHostsFromAliases(state.fleet, chosen))) {
      dispatch({type: 'back'});
      dispatch({type: 'message', text: `${chosen.join(', ')} added; press l to lock down the fleet`});
      void actions.refreshStatus();
    }
  };

  useInput(
    (input, key) => {
      if (key.upArrow) setCursor(Math.max(0, current - 1));
      else if (key.downArrow) setCursor(Math.min(choices.length - 1, current + 1));
      else if (input === ' ' && choices[current] !== undefined) {
        const alias = choices[current];
        const next = new Set(picked);
        if (next.has(alias)) next.delete(alias);
        else next.add(alias);
        setPicked(next);
      } else if (input === 'a') setPicked(new Set(picked.size === choices.length ? [] : choices));
      else if (key.return) void add(choices.filter((alias) => picked.has(alias)));
    },
    {isActive: active},
  );

  return (
    <Frame
      title="add servers from ~/.ssh/config"
      message={state.message}
      hints={[
        {key: '↑↓', label: 'choose'},
        {key: 'Space', label: 'pick'},
        {key: 'a', label: 'all / none'},
        {key: 'Enter', label: `add ${picked.size}`},
        {key: 'Esc', label: 'back'},
      ]}
    >
      {aliases === undefined ? (
        <Text dimColor>reading ~/.ssh/config…</Text>
      ) : choices.length === 0 ? (
        <Text>Every Host of ~/.ssh/config is in the fleet already (or it has none).</Text>
      ) : (
        choices.map((alias, index) => (
          <Text key={alias} color={index === current ? color('cyan') : undefined}>
            {index === current ? '❯ ' : '  '}
            {picked.has(alias) ? '[x] ' : '[ ] '}
            {alias}
          </Text>
        ))
      )}
    </Frame>
  );
}
