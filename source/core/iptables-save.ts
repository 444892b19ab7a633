// Reads `iptables-save` / `ip6tables-save` output (also `-c` counters and iptables-nft-save's
// comment lines) into a Ruleset, and compares rulesets. Pure: the caller fetched the text.

import type {Chain, Family, Rule, Ruleset, Table} from './model.js';

/** A line of save output this parser cannot read; `line` is 1-based. */
export class IptablesSaveError extends Error {
  override readonly name = 'IptablesSaveError';
  constructor(
    readonly line: number,
    problem: string,
  ) {
    super(`iptables-save output, line ${line}: ${problem}`);
  }
}

export interface SaveNotice {
  readonly line: number;
  readonly text: string;
  /** True when the output cannot show the whole firewall (nft-only tables or base chains). */
  readonly incomplete: boolean;
}

export interface ParsedSave {
  readonly ruleset: Ruleset;
  /** iptables-nft-save's `# Warning: ...` and `# Table ... incompatible` lines, which matter. */
  readonly notices: readonly SaveNotice[];
}

const BUILT_IN_POLICIES = new Set(['ACCEPT', 'DROP']);

/**
 * Splits a rule line the way iptables-restore does: on spaces, with double-quoted tokens
 * inside which a backslash escapes the next character. Throws a plain Error on an unterminated quote.
 */
export function tokenizeRuleLine(text: string): string[] {
  const tokens: string[] = [];
  let index = 0;
  while (index < text.length) {
    const char = text[index];
    if (char === ' ' || char === '\t') {
      index += 1;
      continue;
    }
    let token = '';
    let quoted = false;
    while (index < text.length) {
      const current = text[index];
      if (!quoted && (current === ' ' || current === '\t')) break;
      if (current === '"') {
        quoted = !quoted;
        index += 1;
        continue;
      }
      // Inside quotes a backslash escapes the next character (iptables-save escapes " \ and ').
      if (quoted && current === '\\' && index + 1 < text.length) {
        token += text[index + 1];
        index += 2;
        continue;
      }
      token += current;
      index += 1;
    }
    if (quoted) throw new Error('a quoted value is not closed');
    tokens.push(token);
  }
  return tokens;
}

/** Quotes a token for display when it holds spaces, quotes or backslashes (escaping as iptables-save does). */
export function quoteToken(token: string): string {
  if (token !== '' && !/[\s"\\']/.test(token)) return token;
  return `"${token.replace(/[\\"']/g, (char) => `\\${char}`)}"`;
}

/** `-A CHAIN spec...` as iptables-save prints it. */
export function formatRule(rule: Rule): string {
  return ['-A', rule.chain, ...rule.spec].map(quoteToken).join(' ');
}

interface TableDraft {
  readonly name: string;
  readonly chains: Chain[];
  readonly rules: Rule[];
  readonly chainNames: Set<string>;
}

/** Parses save output and keeps the notices iptables-nft-save prints as comments. */
export function parseIptablesSaveWithNotices(text: string, family: Family): ParsedSave {
  const tables: Table[] = [];
  const seenTables = new Set<string>();
  const notices: SaveNotice[] = [];
  let current: TableDraft | undefined;
  const lines = text.split(/\r?\n/);

  lines.forEach((rawLine, lineIndex) => {
    const lineNumber = lineIndex + 1;
    const line = rawLine.trim();
    if (line === '') return;
    if (line.startsWith('#')) {
      const comment = line.replace(/^#\s*/, '');
      if (/^(Warning|Table)\b/i.test(comment)) {
        notices.push({line: lineNumber, text: comment, incomplete: /incompatible/i.test(comment)});
      }
      return;
    }
    const fail = (problem: string): never => {
      throw new IptablesSaveError(lineNumber, problem);
    };
    if (line.startsWith('*')) {
      if (current) fail(`table ${current.name} starts before the previous one's COMMIT`);
      const name = line.slice(1).trim();
      if (!/^[a-z]+$/.test(name)) fail(`"${line}" is not a table name`);
      if (seenTables.has(name)) fail(`table ${name} appears twice`);
      seenTables.add(name);
      current = {name, chains: [], rules: [], chainNames: new Set()};
      return;
    }
    if (line === 'COMMIT') {
      if (!current) fail('COMMIT without a table');
      else tables.push({name: current.name, chains: current.chains, rules: current.rules});
      current = undefined;
      return;
    }
    if (!current) return fail(`"${truncate(line)}" appears outside a table (*filter ... COMMIT)`);
    if (line.startsWith(':')) {
      const match = /^:(\S+)\s+(\S+)(?:\s+\[\d+:\d+\])?$/.exec(line);
      if (!match) return fail(`"${truncate(line)}" is not a chain declaration (:NAME POLICY [packets:bytes])`);
      const [, name = '', policy = ''] = match;
      if (current.chainNames.has(name)) fail(`chain ${name} is declared twice in table ${current.name}`);
      if (policy !== '-' && !BUILT_IN_POLICIES.has(policy)) fail(`chain ${name} has an unknown policy ${policy}`);
      current.chainNames.add(name);
      current.chains.push({name, policy: policy === '-' ? null : policy});
      return;
    }
    // `iptables-save -c` prefixes each rule with its counters.
    const withoutCounters = line.replace(/^\[\d+:\d+\]\s+/, '');
    let tokens: string[];
    try {
      tokens = tokenizeRuleLine(withoutCounters);
    } catch (error) {
      return fail(error instanceof Error ? error.message : String(error));
    }
    const [command, chain, ...spec] = tokens;
    if (command !== '-A') {
      return fail(`"${truncate(line)}" is not save output (expected -A CHAIN ..., a :CHAIN declaration or COMMIT)`);
    }
    if (chain === undefined || chain === '') return fail('-A without a chain name');
    if (!current.chainNames.has(chain)) fail(`rule for chain ${chain}, which table ${current.name} does not declare`);
    current.rules.push({chain, spec});
  });
  if (current) {
    throw new IptablesSaveError(lines.length, `table ${current.name} has no COMMIT (output cut short?)`);
  }
  return {ruleset: {family, tables}, notices};
}

/**
 * Parses `iptables-save` (family 4) or `ip6tables-save` (family 6) output. Throws
 * IptablesSaveError naming the line it cannot read, or when iptables-nft-save says the
 * output does not show the whole firewall (nft-only base chains or tables).
 */
export function parseIptablesSave(text: string, family: Family): Ruleset {
  const parsed = parseIptablesSaveWithNotices(text, family);
  const incomplete = parsed.notices.find((notice) => notice.incomplete);
  if (incomplete) {
    throw new IptablesSaveError(
      incomplete.line,
      `${incomplete.text} — the firewall has nftables rules that iptables-save cannot show`,
    );
  }
  return parsed.ruleset;
}

function truncate(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

// ---------------------------------------------------------------------------
// Comparison

function emptyTable(name: string): Table {
  return {name, chains: [], rules: []};
}

/** The longest common subsequence of two line lists, as edit lines ("+ x" / "- x"). */
function diffLines(before: readonly string[], after: readonly string[]): {sign: '+' | '-'; line: string}[] {
  const rows = before.length;
  const columns = after.length;
  // lengths[i][j] = LCS length of before[i..] and after[j..]
  const lengths: number[][] = Array.from({length: rows + 1}, () => Array<number>(columns + 1).fill(0));
  for (let i = rows - 1; i >= 0; i -= 1) {
    for (let j = columns - 1; j >= 0; j -= 1) {
      const row = lengths[i] as number[];
      row[j] =
        before[i] === after[j]
          ? (lengths[i + 1]?.[j + 1] ?? 0) + 1
          : Math.max(lengths[i + 1]?.[j] ?? 0, row[j + 1] ?? 0);
    }
  }
  const edits: {sign: '+' | '-'; line: string}[] = [];
  let i = 0;
  let j = 0;
  while (i < rows || j < columns) {
    if (i < rows && j < columns && before[i] === after[j]) {
      i += 1;
      j += 1;
    } else if (j < columns && (i >= rows || (lengths[i]?.[j + 1] ?? 0) >= (lengths[i + 1]?.[j] ?? 0))) {
      edits.push({sign: '+', line: after[j] as string});
      j += 1;
    } else {
      edits.push({sign: '-', line: before[i] as string});
      i += 1;
    }
  }
  return edits;
}

/**
 * What changes from `before` to `after`, per table and chain, ignoring counters, the order
 * of tables and of chain declarations (rule order within a chain matters). Lines look like
 * `filter: INPUT policy ACCEPT -> DROP`, `filter: chain IW-LOG-DROP added`,
 * `filter: + -A INPUT -i lo -j ACCEPT`. Empty when the rulesets are equivalent.
 */
export function diffRulesets(before: Ruleset, after: Ruleset): string[] {
  const lines: string[] = [];
  if (before.family !== after.family) lines.push(`family IPv${before.family} -> IPv${after.family}`);
  const tableNames = [...new Set([...before.tables, ...after.tables].map((table) => table.name))];
  for (const tableName of tableNames) {
    const oldTable = before.tables.find((table) => table.name === tableName);
    const newTable = after.tables.find((table) => table.name === tableName);
    if (!oldTable) lines.push(`${tableName}: table added`);
    if (!newTable) lines.push(`${tableName}: table removed`);
    const left = oldTable ?? emptyTable(tableName);
    const right = newTable ?? emptyTable(tableName);
    const chainNames = [...new Set([...left.chains, ...right.chains].map((chain) => chain.name))];
    for (const chainName of chainNames) {
      const oldChain = left.chains.find((chain) => chain.name === chainName);
      const newChain = right.chains.find((chain) => chain.name === chainName);
      if (!oldChain) lines.push(`${tableName}: chain ${chainName} added${newChain?.policy ? ` (policy ${newChain.policy})` : ''}`);
      else if (!newChain) lines.push(`${tableName}: chain ${chainName} removed`);
      else if (oldChain.policy !== newChain.policy) {
        lines.push(`${tableName}: ${chainName} policy ${oldChain.policy ?? '-'} -> ${newChain.policy ?? '-'}`);
      }
      const rulesOf = (table: Table): string[] =>
        table.rules.filter((rule) => rule.chain === chainName).map(formatRule);
      for (const edit of diffLines(rulesOf(left), rulesOf(right))) lines.push(`${tableName}: ${edit.sign} ${edit.line}`);
    }
  }
  return lines;
}

/** Same tables, chains, policies and rules (in order per chain); counters never count. */
export function rulesetsEqual(a: Ruleset, b: Ruleset): boolean {
  return diffRulesets(a, b).length === 0;
}

/** The table of that name, or undefined. */
export function findTable(ruleset: Ruleset, name: string): Table | undefined {
  return ruleset.tables.find((table) => table.name === name);
}

/** The same ruleset restricted to some tables (e.g. compare only `filter`, which is what we load). */
export function onlyTables(ruleset: Ruleset, names: readonly string[]): Ruleset {
  return {family: ruleset.family, tables: ruleset.tables.filter((table) => names.includes(table.name))};
}
