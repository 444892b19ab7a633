// Text from a server is shown to the operator: a hostile or broken server must not be able to
// drive the operator's terminal (move the cursor, rewrite what was printed, set the title, hide a
// warning). Pure: no I/O.

// ESC sequences: CSI (ESC [ … final), OSC / DCS / SOS / PM / APC strings (up to BEL or ST, or the
// end of the text when unterminated), then any other two-character ESC sequence; the 8-bit C1 CSI
// and string introducers likewise.
const ESCAPE_SEQUENCE =
  /\u001b\[[0-?]*[ -/]*[@-~]?|\u009b[0-?]*[ -/]*[@-~]?|[\u001b][\]PX^_][^\u0007\u001b\u009c]*(?:\u0007|\u001b\\|\u009c)?|[\u009d\u0090\u0098\u009e\u009f][^\u0007\u001b\u009c]*(?:\u0007|\u001b\\|\u009c)?|\u001b[\s\S]?/g;
// C0 (tab, newline and carriage return included), DEL, C1, and the Unicode bidirectional controls
// that reorder what is displayed.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * One line of server text, safe to print: escape sequences removed whole, other control characters
 * removed, tabs and line breaks made spaces. Use it where server text enters the client for display.
 */
export function stripControl(text: string): string {
  return text
    .replace(ESCAPE_SEQUENCE, '')
    .replace(/[\t\n\r]+/g, ' ')
    .replace(CONTROL, '');
}

/** Several lines of server text (a rules listing), each through stripControl. */
export function stripControlLines(text: string): string {
  return text.split('\n').map(stripControl).join('\n');
}

/** Every string in a plain value (objects, arrays) through stripControl, except under the keys `keep`. */
export function stripControlDeep<T>(value: T, keep: ReadonlySet<string> = new Set()): T {
  if (typeof value === 'string') return stripControl(value) as T;
  if (Array.isArray(value)) return value.map((item: unknown) => stripControlDeep(item, keep)) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, keep.has(key) ? item : stripControlDeep(item, keep)]),
    ) as T;
  }
  return value;
}
