// Shared pieces: the frame every screen uses (title, body, one message line, key hints
// always visible at the bottom), a scrolling text window, and a large countdown timer.

import {createContext, useContext, useEffect, useState, type ReactNode} from 'react';
import {Box, Text, useInput} from 'ink';
import {useColor, useTerminalSize} from './context.js';

/** False while a question (host key, secret) owns the keyboard. */
export const InputActiveContext = createContext(true);
export function useInputActive(): boolean {
  return useContext(InputActiveContext);
}

/** A screen's inner step (a text field, a sub-menu) can take Esc for itself instead of "go back". */
export const EscapeClaimContext = createContext<{current: number}>({current: 0});
export function useClaimEscape(claimed: boolean): void {
  const claims = useContext(EscapeClaimContext);
  useEffect(() => {
    if (!claimed) return;
    claims.current += 1;
    return () => {
      claims.current -= 1;
    };
  }, [claimed, claims]);
}

export interface Hint {
  readonly key: string;
  readonly label: string;
}

export function KeyHints({hints}: {hints: readonly Hint[]}) {
  const color = useColor();
  return (
    <Box flexWrap="wrap" columnGap={2}>
      {hints.map((hint) => (
        <Text key={hint.key + hint.label}>
          <Text bold color={color('cyan')}>
            {hint.key}
          </Text>{' '}
          {hint.label}
        </Text>
      ))}
    </Box>
  );
}

/** Lines the frame itself uses: title, message and two lines of hints. */
export const FRAME_CHROME_ROWS = 5;

export function Frame({title, hints, message, children}: {title: string; hints: readonly Hint[]; message?: string | undefined; children: ReactNode}) {
  const {rows} = useTerminalSize();
  const color = useColor();
  // One row short of the terminal: Ink clears the whole screen (flicker) when output fills it.
  return (
    <Box flexDirection="column" height={Math.max(rows - 1, 8)}>
      <Text bold color={color('green')}>
        isolate-wizard · {title}
      </Text>
      <Box flexDirection="column" flexGrow={1} overflow="hidden">
        {children}
      </Box>
      <Text color={color('yellow')} wrap="truncate-end">
        {message ?? ' '}
      </Text>
      <KeyHints hints={hints} />
    </Box>
  );
}

/** Scroll position for a text window, driven by ↑ ↓ PgUp PgDn Home End. */
export function useScroll(total: number, height: number, active = true): number {
  const [offset, setOffset] = useState(0);
  const maxOffset = Math.max(0, total - height);
  useInput(
    (_input, key) => {
      if (key.upArrow) setOffset((value) => Math.max(0, value - 1));
      else if (key.downArrow) setOffset((value) => Math.min(maxOffset, value + 1));
      else if (key.pageUp) setOffset((value) => Math.max(0, value - height));
      else if (key.pageDown) setOffset((value) => Math.min(maxOffset, value + height));
      else if (key.home) setOffset(0);
      else if (key.end) setOffset(maxOffset);
    },
    {isActive: active},
  );
  return Math.min(offset, maxOffset);
}

export function ScrollText({lines, height, offset, colorFor}: {lines: readonly string[]; height: number; offset: number; colorFor?: (line: string) => string | undefined}) {
  const visible = lines.slice(offset, offset + height);
  const more = lines.length > height;
  return (
    <Box flexDirection="column">
      {visible.map((line, index) => (
        <Text key={offset + index} wrap="truncate-end" color={colorFor?.(line)}>
          {line === '' ? ' ' : line}
        </Text>
      ))}
      {more ? (
        <Text dimColor>
          lines {offset + 1}-{Math.min(offset + height, lines.length)} of {lines.length} (↑↓ PgUp PgDn)
        </Text>
      ) : null}
    </Box>
  );
}

// A 3-row block font for the countdown, readable from across the desk.
const DIGITS: Record<string, readonly [string, string, string]> = {
  '0': ['█▀█', '█ █', '▀▀▀'],
  '1': [' ▄█', '  █', '  ▀'],
  '2': ['▀▀█', '█▀▀', '▀▀▀'],
  '3': ['▀▀█', ' ▀█', '▀▀▀'],
  '4': ['█ █', '▀▀█', '  ▀'],
  '5': ['█▀▀', '▀▀█', '▀▀▀'],
  '6': ['█▀▀', '█▀█', '▀▀▀'],
  '7': ['▀▀█', '  █', '  ▀'],
  '8': ['█▀█', '█▀█', '▀▀▀'],
  '9': ['█▀█', '▀▀█', '▀▀▀'],
  ':': [' ▪ ', ' ▪ ', '   '],
};

export function formatClock(seconds: number): string {
  const safe = Math.max(0, Math.ceil(seconds));
  return `${Math.floor(safe / 60)}:${String(safe % 60).padStart(2, '0')}`;
}

export function BigTimer({seconds}: {seconds: number}) {
  const text = formatClock(seconds);
  const color = useColor();
  const rows = [0, 1, 2].map((row) => [...text].map((char) => DIGITS[char]?.[row] ?? '   ').join(' '));
  return (
    <Box flexDirection="column">
      {rows.map((row, index) => (
        <Text key={index} bold color={color(seconds <= 10 ? 'red' : 'yellow')}>
          {row}
        </Text>
      ))}
      <Text>{text} left</Text>
    </Box>
  );
}
