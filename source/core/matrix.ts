// The access matrix: sources down, destinations across, each cell the ports a NEW connection gets
// (read from the access summary), marked by the live result where flows were tried. Pure.
// Rendered to a width (80 columns by default): names and long cells are abbreviated with a
// legend, and a fleet too wide for one screen is printed in blocks of destination columns.
import {INTERNET, PRIVATE_TENANTS, type AccessEntry} from './access.js';
import {asPlanned, differsFromPlan, type FlowResult} from './flows.js';
import type {Family, PortRange} from './model.js';

/** ✓ tried, as planned · ✗ planned open, dropped · ! planned closed, answers · ? not tried. */
export type LiveMark = '✓' | '✗' | '!' | '?';

export interface MatrixCell {
  readonly source: string;
  readonly destination: string;
  readonly tcp: readonly PortRange[];
  readonly udp: readonly PortRange[];
  /** The opening holds in this family only. */
  readonly only?: Family;
  /** From the live tries between these two, when there were any. */
  readonly live?: LiveMark;
  /** The tries behind `live` that differ from the plan ("203.0.113.12:80 planned open, live dropped"). */
  readonly differences?: readonly string[];
}

export interface AccessMatrix {
  readonly sources: readonly string[];
  readonly destinations: readonly string[];
  /** One per source and destination (the host to itself excluded), in row order. */
  readonly cells: readonly MatrixCell[];
}

/** The matrix of a plan's access summary, marked by live results when given. */
export function buildMatrix(hostNames: readonly string[], access: readonly AccessEntry[], results: readonly FlowResult[] = []): AccessMatrix {
  const tenants = access.some((entry) => entry.sources.includes(PRIVATE_TENANTS));
  const sources = [INTERNET, ...hostNames, ...(tenants ? [PRIVATE_TENANTS] : [])];
  const opened = new Map<string, {tcp: PortRange[]; udp: PortRange[]; only?: Family}>();
  for (const entry of access) {
    for (const source of entry.sources) {
      opened.set(`${source}\n${entry.destination}`, {tcp: [...entry.tcp], udp: [...entry.udp], ...(entry.only === undefined ? {} : {only: entry.only})});
    }
  }
  const tried = new Map<string, FlowResult[]>();
  for (const result of results) {
    const key = `${result.flow.planSource}\n${result.flow.to}`;
    const list = tried.get(key);
    if (list) list.push(result);
    else tried.set(key, [result]);
  }
  const cells: MatrixCell[] = [];
  for (const source of sources) {
    for (const destination of hostNames) {
      if (source === destination) continue;
      const key = `${source}\n${destination}`;
      const open = opened.get(key) ?? {tcp: [], udp: []};
      const live = markOf(tried.get(key) ?? []);
      cells.push({source, destination, ...open, ...live});
    }
  }
  return {sources, destinations: [...hostNames], cells};
}

function markOf(results: readonly FlowResult[]): {live?: LiveMark; differences?: string[]} {
  if (results.length === 0) return {};
  const differing = results.filter(differsFromPlan);
  const differences = differing.map((result) => `${result.flow.family === 6 ? `[${result.flow.address}]` : result.flow.address}:${result.flow.port} planned ${result.flow.expect}, live ${result.live}`);
  if (differing.some((result) => result.flow.expect === 'open')) return {live: '✗', differences};
  if (differing.length > 0) return {live: '!', differences};
  return {live: results.some(asPlanned) ? '✓' : '?'};
}

/** "80,443", "24007-24008", "all", "u53" (udp), "all+u" (the same in udp), "-" (nothing); "(4)" when one family only. */
export function cellPorts(cell: Pick<MatrixCell, 'tcp' | 'udp' | 'only'>): string {
  const spell = (ranges: readonly PortRange[]): string =>
    ranges.length === 1 && ranges[0]?.first === 1 && ranges[0].last === 65535
      ? 'all'
      : ranges.map((range) => (range.first === range.last ? `${range.first}` : `${range.first}-${range.last}`)).join(',');
  const tcp = spell(cell.tcp);
  const udp = spell(cell.udp);
  // The same ports in both protocols (trustPrivate: everything) once, marked "+u".
  const parts = tcp !== '' && tcp === udp ? [`${tcp}+u`] : [...(tcp === '' ? [] : [tcp]), ...(udp === '' ? [] : [`u${udp}`])];
  if (parts.length === 0) return '-';
  return `${parts.join(' ')}${cell.only === undefined ? '' : `(${cell.only})`}`;
}

const MIN_COLUMN = 6;
const BLOCK_COLUMN = 10;
const MAX_LABEL = 14;
const SOURCE_LABELS: Readonly<Record<string, string>> = {[INTERNET]: 'internet', [PRIVATE_TENANTS]: 'tenants'};

const width = (text: string): number => [...text].length;

/** A name in `room` columns: as is, without separators, else head…tail (the tail keeps a number). */
export function abbreviate(name: string, room: number): string {
  if (width(name) <= room) return name;
  const squeezed = name.replace(/[-_.]/g, '');
  if (width(squeezed) <= room) return squeezed;
  const tail = /[-_.]?\d+$/.exec(name)?.[0] ?? name.slice(-2);
  const head = Math.max(1, room - width(tail) - 1);
  return `${[...name].slice(0, head).join('')}…${tail}`.slice(0, Math.max(room, 2));
}

/** Abbreviations that stay distinct; undefined when two would look alike. */
function distinctAbbreviations(names: readonly string[], room: number): string[] | undefined {
  const short = names.map((name) => abbreviate(name, room));
  return new Set(short).size === short.length ? short : undefined;
}

export interface RenderOptions {
  /** Terminal columns (default 80). */
  readonly columns?: number;
}

function widest(texts: readonly string[]): number {
  let most = 0;
  for (const text of texts) most = Math.max(most, width(text));
  return most;
}

/** The matrix as lines no wider than `columns`: blocks of destinations, then the legend. */
export function renderMatrix(matrix: AccessMatrix, options: RenderOptions = {}): string[] {
  const columns = Math.max(40, options.columns ?? 80);
  const cellOf = new Map(matrix.cells.map((cell) => [`${cell.source}\n${cell.destination}`, cell]));
  const texts = matrix.cells.map((cell) => `${cell.live ?? ''}${cellPorts(cell)}`);

  // Row labels: abbreviated to MAX_LABEL, or numbered when two would look alike.
  const labelNames = matrix.sources.map((source) => SOURCE_LABELS[source] ?? source);
  const legend: string[] = [];
  let labels = distinctAbbreviations(labelNames, MAX_LABEL);
  if (!labels) {
    labels = labelNames.map((_name, index) => `s${index + 1}`);
    legend.push(...labelNames.map((name, index) => `s${index + 1} = ${name}`));
  }
  const labelWidth = widest(labels);
  const available = columns - labelWidth - 1;

  const count = Math.max(1, matrix.destinations.length);
  // A loop, not a spread: a 1,000-host fleet has a million cells, beyond a call's arguments.
  const natural = Math.max(MIN_COLUMN, widest(matrix.destinations), widest(texts));
  const fit = Math.floor((available + 1) / count) - 1; // columns are separated by one space
  // Paged when even narrow columns do not fit: then columns wide enough to read a name.
  const cellWidth = Math.min(natural, fit >= MIN_COLUMN ? fit : BLOCK_COLUMN);
  const perBlock = Math.max(1, Math.floor((available + 1) / (cellWidth + 1)));

  let headers = distinctAbbreviations(matrix.destinations, cellWidth);
  if (!headers) {
    headers = matrix.destinations.map((_name, index) => `d${index + 1}`);
    legend.push(...matrix.destinations.map((name, index) => `d${index + 1} = ${name}`));
  }

  // Cells too long for a column get a key, explained below the matrix.
  const keys = new Map<string, string>();
  const keyOf = (ports: string): string => {
    let key = keys.get(ports);
    if (!key) {
      key = keyName(keys.size);
      keys.set(ports, key);
    }
    return key;
  };
  const shown = (source: string, destination: string): string => {
    if (source === destination) return '';
    const cell = cellOf.get(`${source}\n${destination}`);
    if (!cell) return '';
    const ports = cellPorts(cell);
    const mark = cell.live ?? '';
    return width(mark + ports) <= cellWidth ? mark + ports : mark + keyOf(ports);
  };

  const lines: string[] = [];
  const blocks = Math.ceil(matrix.destinations.length / perBlock);
  for (let block = 0; block < blocks; block += 1) {
    const first = block * perBlock;
    const destinations = matrix.destinations.slice(first, first + perBlock);
    if (block > 0) lines.push('');
    if (blocks > 1) lines.push(`destinations ${first + 1}-${first + destinations.length} of ${matrix.destinations.length}:`);
    const row = (label: string, values: readonly string[]): string =>
      `${pad(label, labelWidth)} ${values.map((value) => pad(value, cellWidth)).join(' ')}`.trimEnd();
    lines.push(row('from \\ to', headers.slice(first, first + perBlock)).slice(0, columns));
    matrix.sources.forEach((source, index) => {
      lines.push(row(labels[index] as string, destinations.map((destination) => shown(source, destination))));
    });
  }

  legend.push(...[...keys].map(([ports, key]) => `${key} = ${ports}`));
  const tried = matrix.cells.some((cell) => cell.live !== undefined);
  // A sampled check (a large fleet) leaves pairs untried: their cells carry no mark.
  const untried = tried && matrix.cells.some((cell) => cell.live === undefined && cell.tcp.length > 0);
  const marks = tried ? ['✓ tried, as planned', '✗ planned open, dropped', '! planned closed, answers', '? not tried', ...(untried ? ['unmarked: not tried (a sample)'] : [])] : [];
  const words = [...marks, 'tcp ports a new connection gets', 'u udp', '+u udp too', '(4) IPv4 only', '- nothing', 'blank: itself'];
  lines.push('', ...wrap(words, ' · ', columns), ...wrap(legend, '   ', columns));
  return lines;
}

function keyName(index: number): string {
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  return index < letters.length ? `[${letters[index]}]` : `[${index + 1}]`;
}

function pad(text: string, room: number): string {
  return text + ' '.repeat(Math.max(0, room - width(text)));
}

/** Items joined on lines no wider than `columns` (an item longer than a line is cut). */
function wrap(items: readonly string[], separator: string, columns: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const raw of items) {
    const item = width(raw) > columns ? `${[...raw].slice(0, columns - 1).join('')}…` : raw;
    if (line !== '' && width(line) + width(separator) + width(item) > columns) {
      lines.push(line);
      line = '';
    }
    line = line === '' ? item : `${line}${separator}${item}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** For scripts: the matrix with each cell's ports spelled ("80,443") and its live mark. */
export function matrixJson(matrix: AccessMatrix): object {
  return {
    sources: matrix.sources,
    destinations: matrix.destinations,
    cells: matrix.cells.map((cell) => ({...cell, ports: cellPorts(cell)})),
  };
}
