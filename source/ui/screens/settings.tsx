// Settings: default deadline, where the rules live (backend) and the fleet options (strict
// outbound, drop logging, trust private, Docker's published ports restricted to the plan).
// Each change is saved at once; IPv6 is always isolated like IPv4 (shown, not switchable).

import {useRef, useState} from 'react';
import {Box, Text, useInput} from 'ink';
import {Frame, useInputActive} from '../components.js';
import {useColor} from '../context.js';
import {useWizard} from '../app.js';
import {DEFAULT_BACKEND_CHOICE} from '../../core/backend.js';
import type {BackendChoice} from '../../core/model.js';
import type {FleetOptionsDoc} from '../services.js';

// What to do about another firewall is chosen on the preview, where its drops are shown.
type Item = 'deadline' | Exclude<keyof FleetOptionsDoc, 'otherFirewall'> | 'ipv6';
const ITEMS: readonly Item[] = ['deadline', 'backend', 'strictOutbound', 'logDrops', 'trustPrivate', 'restrictPublished', 'ipv6'];
const BACKENDS: readonly BackendChoice[] = ['auto', 'nftables', 'iptables'];

const LABELS: Record<Item, string> = {
  deadline: 'default deadline',
  backend: 'where the rules live',
  strictOutbound: 'strict outbound (public hosts)',
  logDrops: 'log dropped packets (rate-limited)',
  trustPrivate: 'trust the whole fleet on every port',
  restrictPublished: 'Docker published ports: plan only',
  ipv6: 'IPv6',
};

const BACKEND_WORDS: Record<BackendChoice, string> = {
  iptables: 'iptables filter tables',
  nftables: 'own nftables table',
  auto: 'auto (nftables, else iptables)',
};

export function SettingsScreen() {
  const {state, actions} = useWizard();
  const active = useInputActive();
  const color = useColor();
  const [cursor, setCursor] = useState(0);
  const item = ITEMS[cursor] ?? 'deadline';
  const options = state.fleet.options ?? {};
  // Keys can come faster than saves re-render: each press builds on the previous press, not on
  // the last rendered value (or quick presses would be lost).
  const latest = useRef({fleet: state.fleet, settings: state.settings});

  useInput(
    (input, key) => {
      if (key.upArrow) setCursor((value) => (value - 1 + ITEMS.length) % ITEMS.length);
      else if (key.downArrow) setCursor((value) => (value + 1) % ITEMS.length);
      else if (item === 'deadline' && (key.leftArrow || key.rightArrow)) {
        const step = key.rightArrow ? 15 : -15;
        const settings = {...latest.current.settings, deadlineSeconds: Math.min(900, Math.max(30, latest.current.settings.deadlineSeconds + step))};
        latest.current = {...latest.current, settings};
        void actions.saveFleet(latest.current.fleet, settings);
      } else if ((input === ' ' || key.return) && item !== 'deadline' && item !== 'ipv6') {
        const current = latest.current.fleet.options ?? {};
        const next = item === 'backend' ? BACKENDS[(BACKENDS.indexOf(current.backend ?? DEFAULT_BACKEND_CHOICE) + 1) % BACKENDS.length] : !(current[item] ?? false);
        const fleet = {...latest.current.fleet, options: {...current, [item]: next}};
        latest.current = {...latest.current, fleet};
        void actions.saveFleet(fleet);
      }
    },
    {isActive: active},
  );

  const valueOf = (which: Item): string => {
    if (which === 'deadline') return `${state.settings.deadlineSeconds} s  (←→ by 15 s)`;
    if (which === 'ipv6') return 'isolated the same way as IPv4 (always)';
    if (which === 'backend') return BACKEND_WORDS[options.backend ?? DEFAULT_BACKEND_CHOICE];
    return options[which] ? 'on' : 'off';
  };

  return (
    <Frame
      title="settings"
      message={state.message}
      hints={[
        {key: '↑↓', label: 'select'},
        {key: 'Space', label: 'toggle'},
        {key: '←→', label: 'deadline'},
        {key: 'Esc', label: 'back'},
      ]}
    >
      {ITEMS.map((which, index) => (
        <Box key={which}>
          <Text color={index === cursor ? color('cyan') : undefined}>{index === cursor ? '❯ ' : '  '}</Text>
          <Box width={40}>
            <Text>{LABELS[which]}</Text>
          </Box>
          <Text bold>{valueOf(which)}</Text>
        </Box>
      ))}
    </Frame>
  );
}
