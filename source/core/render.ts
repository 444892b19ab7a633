// Ruleset -> iptables-restore text, written the way iptables-save prints it back so the
// apply layer can compare what a server reports with what was sent.
import type {Ruleset} from './model.js';

/** iptables-save quotes a token when it holds a space or a quote/backslash, escaping those. */
export function quoteToken(token: string): string {
  if (token !== '' && !/[\s"'\\]/.test(token)) return token;
  return `"${token.replace(/[\\"']/g, (character) => `\\${character}`)}"`;
}

// The compiler shares identical specs between rulesets (a fleet of 10,000 hosts has ~300,000
// rules but ~20,000 distinct specs): each one's text is written once.
const specTexts = new WeakMap<readonly string[], string>();

function specText(spec: readonly string[]): string {
  let text = specTexts.get(spec);
  if (text === undefined) {
    text = spec.map(quoteToken).join(' ');
    specTexts.set(spec, text);
  }
  return text;
}

export function renderRuleset(ruleset: Ruleset): string {
  const tool = ruleset.family === 4 ? 'iptables' : 'ip6tables';
  let text = `# isolate-wizard ${tool}-restore ruleset\n`;
  for (const table of ruleset.tables) {
    text += `*${table.name}\n`;
    for (const chain of table.chains) text += `:${chain.name} ${chain.policy ?? '-'} [0:0]\n`;
    for (const rule of table.rules) text += rule.spec.length === 0 ? `-A ${rule.chain}\n` : `-A ${rule.chain} ${specText(rule.spec)}\n`;
    text += 'COMMIT\n';
  }
  return text;
}
