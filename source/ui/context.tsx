// Services, the prompt queue and terminal facts reach the screens through context,
// so screen tests pass fakes and the core never sees React.

import {createContext, useContext, useEffect, useState, type ReactNode} from 'react';
import {useStdout} from 'ink';
import type {WizardServices} from './services.js';
import type {PromptQueue} from './prompts.js';

export interface UiEnvironment {
  readonly services: WizardServices;
  readonly prompts: PromptQueue;
  /** NO_COLOR set: every colour prop is dropped. */
  readonly noColor: boolean;
}

const UiContext = createContext<UiEnvironment | undefined>(undefined);
const TerminalSizeContext = createContext<{columns: number; rows: number} | undefined>(undefined);

export function UiProvider({value, children}: {value: UiEnvironment; children: ReactNode}) {
  return (
    <UiContext.Provider value={value}>
      <TerminalSizeContext.Provider value={useStdoutSize()}>{children}</TerminalSizeContext.Provider>
    </UiContext.Provider>
  );
}

export function useUi(): UiEnvironment {
  const value = useContext(UiContext);
  if (!value) throw new Error('useUi outside UiProvider');
  return value;
}

/** A colour, or nothing when NO_COLOR is set. */
export function useColor(): (color: string | undefined) => string | undefined {
  const {noColor} = useUi();
  return (color) => (noColor ? undefined : color);
}

/** The terminal size, following resizes (80x24 when the stream does not say): one listener for every screen. */
export function useTerminalSize(): {columns: number; rows: number} {
  const size = useContext(TerminalSizeContext);
  if (!size) throw new Error('useTerminalSize outside UiProvider');
  return size;
}

function useStdoutSize(): {columns: number; rows: number} {
  const {stdout} = useStdout();
  const read = () => ({columns: stdout.columns || 80, rows: stdout.rows || 24});
  const [size, setSize] = useState(read);
  useEffect(() => {
    const onResize = () => setSize(read());
    stdout.on('resize', onResize);
    return () => {
      stdout.off('resize', onResize);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [stdout]);
  return size;
}

/** Re-renders on every clock tick while `active`; returns the clock's now(). */
export function useNow(active = true): number {
  const {services} = useUi();
  const [now, setNow] = useState(() => services.clock.now());
  useEffect(() => {
    if (!active) return;
    setNow(services.clock.now());
    return services.clock.subscribe(() => setNow(services.clock.now()));
  }, [services.clock, active]);
  return now;
}
