// Shared pieces: the frame every screen uses (title, body, one message line, key hints
// always visible at the bottom), the windowed list every growing list uses, and a large countdown timer.

import {createContext, useContext, useEffect, useRef, useState, type ReactNode} from 'react';
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

/** Hints laid out in lines of at most `width` columns (two spaces apart), so a frame knows their height. */
export function layoutHints(hints: readonly Hint[], width: number): Hint[][] {
  const lines: Hint[][] = [];
  let line: Hint[] = [];
  let used = 0;
  for (const hint of hints) {
    const size = hint.key.length + 1 + hint.label.length;
    if (line.length > 0 && used + 2 + size > width) {
      lines.push(line);
      line = [];
      used = 0;
    }
    used += (line.length > 0 ? 2 : 0) + size;
    line.push(hint);
  }
  if (line.length > 0) lines.push(line);
  return lines;
}

export function KeyHints({hints, width}: {hints: readonly Hint[]; width?: number}) {
  const color = useColor();
  const {columns} = useTerminalSize();
  return (
    <>
      {layoutHints(hints, width ?? columns).map((line, index) => (
        <Text key={index} wrap="truncate-end">
          {line.map((hint, position) => (
            <Text key={hint.key + hint.label}>
              {position > 0 ? '  ' : ''}
              <Text bold color={color('cyan')}>
                {hint.key}
              </Text>{' '}
              {hint.label}
            </Text>
          ))}
        </Text>
      ))}
    </>
  );
}

/** The frame's height: one row short of the terminal (Ink clears the whole screen, a flicker, when output fills it). */
function frameRows(rows: number): number {
  return Math.max(rows - 1, 8);
}

/** Rows left for a screen's body inside a Frame with these hints: the title, message and hint lines never move. */
export function useBodyRows(hints: readonly Hint[]): number {
  const {rows, columns} = useTerminalSize();
  return Math.max(1, frameRows(rows) - 2 - layoutHints(hints, columns).length);
}

/**
 * The frame every screen uses: title, body, one message line and the key hints at the bottom,
 * each exactly as high as the terminal allows (the body is cut, never the title or the hints).
 * `compact`: as high as its content (the apply screen, under the hosts it printed once with Static).
 */
export function Frame({title, hints, message, compact, children}: {title: string; hints: readonly Hint[]; message?: string | undefined; compact?: boolean; children: ReactNode}) {
  const {rows} = useTerminalSize();
  const bodyRows = useBodyRows(hints);
  const color = useColor();
  return (
    <Box flexDirection="column" height={compact ? undefined : frameRows(rows)}>
      <Text bold color={color('green')} wrap="truncate-end">
        isolate-wizard · {title}
      </Text>
      <Box flexDirection="column" height={compact ? undefined : bodyRows} flexShrink={0} overflow="hidden">
        {children}
      </Box>
      <Text color={color('yellow')} wrap="truncate-end">
        {message ?? ' '}
      </Text>
      <KeyHints hints={hints} />
    </Box>
  );
}

/**
 * First visible index of a window of `height` rows over `total`, moved as little as possible from
 * `offset` so that rows `first`..`last` show; when they cannot all fit, row `at` (the cursor) does.
 */
export function scrollWindow(offset: number, total: number, height: number, first: number, last = first, at = first): number {
  let start = offset;
  if (last >= start + height) start = last - height + 1;
  if (first < start) start = first;
  if (at >= start + height) start = at - height + 1;
  if (at < start) start = at;
  return Math.max(0, Math.min(start, total - height));
}

/** "12–31 of 40", with ▲ / ▼ when there is more above / below. */
export function positionLabel(start: number, shown: number, total: number): string {
  return `${start > 0 ? '▲' : ' '} ${start + 1}–${start + shown} of ${total}${start + shown < total ? ' ▼' : ''}`;
}

/** The selected row, or a block of rows to keep in view around the selected row `at`. */
export type ListFocus = number | {readonly first: number; readonly last: number; readonly at: number};

/**
 * Every list that grows with the fleet: only the rows that fit in `height` are rendered, with a
 * position line ("▲ 12–31 of 40 ▼") when they do not all fit. With `focus` (the selected row, or
 * the span of rows to keep in view) the window follows it, computed from it during render; without
 * it the operator scrolls the window with ↑↓ PgUp PgDn Home End while `scroll` is true.
 * Each item must render as one terminal line (truncated, never wrapped).
 */
export function WindowedList<T>({
  items,
  height,
  focus,
  scroll = false,
  renderItem,
}: {
  items: readonly T[];
  height: number;
  focus?: ListFocus | undefined;
  scroll?: boolean;
  renderItem: (item: T, index: number) => ReactNode;
}) {
  const total = items.length;
  const fits = total <= height;
  const rowsForItems = fits ? total : Math.max(1, height - 1);
  const followed = useRef(0);
  const [scrolled, setScrolled] = useState(0);
  const maxOffset = Math.max(0, total - rowsForItems);
  useInput(
    (_input, key) => {
      if (key.upArrow) setScrolled((value) => Math.max(0, Math.min(value, maxOffset) - 1));
      else if (key.downArrow) setScrolled((value) => Math.min(maxOffset, value + 1));
      else if (key.pageUp) setScrolled((value) => Math.max(0, Math.min(value, maxOffset) - rowsForItems));
      else if (key.pageDown) setScrolled((value) => Math.min(maxOffset, value + rowsForItems));
      else if (key.home) setScrolled(0);
      else if (key.end) setScrolled(maxOffset);
    },
    {isActive: scroll && focus === undefined && !fits},
  );
  let start: number;
  if (focus === undefined) start = Math.min(scrolled, maxOffset);
  else {
    const span = typeof focus === 'number' ? {first: focus, last: focus, at: focus} : focus;
    start = scrollWindow(followed.current, total, rowsForItems, span.first, span.last, span.at);
    followed.current = start;
  }
  const visible = items.slice(start, start + rowsForItems);
  return (
    <Box flexDirection="column" flexShrink={0}>
      {visible.map((item, index) => renderItem(item, start + index))}
      {fits ? null : (
        <Text dimColor wrap="truncate-end">
          {positionLabel(start, visible.length, total)}
          {focus === undefined && scroll ? '  ↑↓ PgUp PgDn' : ''}
        </Text>
      )}
    </Box>
  );
}

/** Cuts `text` to `width` columns, ending with … when cut; pads it to `width` when `pad`. */
export function fit(text: string, width: number, pad = false): string {
  if (width <= 0) return '';
  const cut = text.length > width ? `${text.slice(0, Math.max(0, width - 1))}…` : text;
  return pad ? cut.padEnd(width) : cut;
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
