// Ruleset -> iptables-restore text, written the way iptables-save prints it back so the
// apply layer can compare what a server reports with what was sent.
import type {Ruleset} from './model.js';

/** iptables-save quotes a token when it holds a space or a quote/backslash, escaping those. */
export function quoteToken(token: string): string {
  if (token !== '' && !/[\s"'\\]/.test(token)) return token;
  return `"${token.replace(/[\\"']/g, (character) => `\\${character}`)}"`;
}

export function renderRuleset(ruleset: Ruleset): string {
  const tool = ruleset.family === 4 ? 'iptables' : 'ip6tables';
  const lines = [`# isolate-wizard ${tool}-restore ruleset`];
  for (const table of ruleset.tables) {
    lines.push(`*${table.name}`);
    for (const chain of table.chains) lines.push(`:${chain.name} ${chain.policy ?? '-'} [0:0]`);
    for (const rule of table.rules) lines.push(['-A', rule.chain, ...rule.spec.map(quoteToken)].join(' '));
    lines.push('COMMIT');
  }
  return lines.join('\n') + '\n';
}
