// The troubleshoot view of a live firewall in plain words: each rule of the filter table with its
// packet counter ("tcp/80,443 from haproxy-www on eth1 — 1,204 packets"), ours told apart from
// the rules other software (or a person) wrote, and dropped packets named by fleet host. Pure: the
// caller read `iptables-save -c` and the drop log on the server.
import {formatRule, tokenizeRuleLine} from './iptables-save.js';
import {canonicalSpec, isOwnChain, ruleTarget, toOwnChains} from './own-chains.js';
import type {Rule, Ruleset} from './model.js';

export interface RuleWordsContext {
  /** This host's rules as the fleet compiles them: a live rule equal to one of them is ours. */
  readonly ours?: Ruleset;
  /** Fleet addresses (plain, no prefix length) → host name. */
  readonly names: ReadonlyMap<string, string>;
}

const OWNERS: readonly (readonly [RegExp, string])[] = [
  [/^DOCKER/, 'Docker'],
  [/^f2b-/, 'fail2ban'],
  [/^KUBE-/, 'Kubernetes'],
  [/^cali-/, 'Calico'],
  [/^CILIUM/, 'Cilium'],
  [/^ts-/, 'Tailscale'],
  [/^LIBVIRT_/, 'libvirt'],
];

/** Who a chain belongs to, when it is known software's. */
function ownerOf(chain: string): string | undefined {
  return OWNERS.find(([pattern]) => pattern.test(chain))?.[1];
}

const count = (packets: number): string => `${packets.toLocaleString('en')} packet${packets === 1 ? '' : 's'}`;

function hostName(address: string, names: ReadonlyMap<string, string>): string {
  const plain = address.replace(/\/(32|128)$/, '');
  return names.get(plain) ?? plain;
}

/** One rule's match and verdict in words, e.g. "tcp/80,443 from haproxy-www on eth1". */
/** In a chain of ours, RETURN is how we admit (own-chains.ts): said as an accept is. */
export function ruleInWords(spec: readonly string[], names: ReadonlyMap<string, string>, inOurChain = false): string {
  let proto: string | undefined;
  let ports: string | undefined;
  let icmpType: string | undefined;
  let states: string | undefined;
  let comment: string | undefined;
  const where: string[] = [];
  let negate = false;
  for (let index = 0; index < spec.length; index += 1) {
    const token = spec[index] ?? '';
    const value = spec[index + 1] ?? '';
    const not = negate ? 'not ' : '';
    negate = false;
    switch (token) {
      case '!':
        negate = true;
        continue;
      case '-p':
      case '--protocol':
        proto = `${not}${value}`;
        break;
      case '--dport':
      case '--dports':
      case '--destination-port':
        ports = `${not}${value.replaceAll(':', '-')}`;
        break;
      case '--icmp-type':
      case '--icmpv6-type':
        icmpType = value;
        break;
      case '--ctstate':
      case '--state':
        states = value;
        break;
      case '--comment':
        comment = value;
        break;
      case '-s':
      case '--source':
        where.push(`from ${not}${hostName(value, names)}`);
        break;
      case '-d':
      case '--destination':
        where.push(`to ${not}${hostName(value, names)}`);
        break;
      case '-i':
      case '--in-interface':
        where.push(value === 'lo' && !not ? 'on loopback' : `in ${not}${value}`);
        break;
      case '-o':
      case '--out-interface':
        where.push(`out ${not}${value}`);
        break;
      default:
        continue;
    }
    index += 1;
  }
  let what: string;
  if (states === 'RELATED,ESTABLISHED' || states === 'ESTABLISHED,RELATED') what = 'replies';
  else if (states === 'INVALID') what = 'invalid packets';
  else if (icmpType !== undefined) what = comment ?? `${proto ?? 'icmp'} type ${icmpType}`;
  else if (proto !== undefined) what = `${proto}/${ports ?? 'any port'}`;
  else what = where.length > 0 ? 'everything' : (comment ?? 'everything');
  const target = ruleTarget({chain: '', spec});
  const verdict =
    target === undefined || target === 'ACCEPT' || (inOurChain && target === 'RETURN')
      ? ''
      : target === 'DROP'
        ? 'drop '
        : target === 'REJECT'
          ? 'reject '
          : target === 'RETURN'
            ? 'return '
            : target === 'LOG'
              ? 'log '
              : target === 'IW-LOG-DROP'
                ? 'log and drop '
                : `to ${target}: `;
  return `${verdict}${[what, ...where].join(' ')}`;
}

interface CountedRule extends Rule {
  readonly packets: number;
}

/**
 * The filter table of `iptables-save -c` output, chain by chain: each chain's policy and what it
 * dropped, then its rules in words with their packets, ours plain and the others marked as theirs.
 */
export function describeLiveRules(saveText: string, context: RuleWordsContext): string[] {
  const chains: {name: string; policy: string; packets: number}[] = [];
  const rules: CountedRule[] = [];
  let inFilter = false;
  for (const raw of saveText.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) inFilter = line === '*filter';
    if (!inFilter) continue;
    const chain = /^:(\S+)\s+(\S+)(?:\s+\[(\d+):\d+\])?$/.exec(line);
    if (chain) {
      chains.push({name: chain[1] ?? '', policy: chain[2] ?? '-', packets: Number(chain[3] ?? 0)});
      continue;
    }
    const counted = /^(?:\[(\d+):\d+\]\s+)?(-A\s.*)$/.exec(line);
    if (!counted) continue;
    let tokens: string[];
    try {
      tokens = tokenizeRuleLine(counted[2] ?? '');
    } catch {
      continue; // a line iptables-save would not print; the rest still reads
    }
    const [, name = '', ...spec] = tokens;
    rules.push({chain: name, spec, packets: Number(counted[1] ?? 0)});
  }
  if (chains.length === 0) return ['no filter table: nothing is filtered on this server'];

  // Compared in iptables-save's spelling (`-m tcp` after `-p tcp`, /32 on addresses, …).
  const key = (rule: Rule): string => formatRule({chain: rule.chain, spec: canonicalSpec(rule.spec)});
  // Live, the compiled rules are in our chains (own-chains.ts): compared in that form.
  const ours = new Set((context.ours ? toOwnChains(context.ours).tables.find((table) => table.name === 'filter')?.rules ?? [] : []).map(key));
  const lines: string[] = [];
  for (const chain of chains) {
    const owner = ownerOf(chain.name);
    const policy = chain.policy === '-' ? '' : chain.policy === 'DROP' ? `, everything else dropped: ${count(chain.packets)}` : `, everything else accepted (${count(chain.packets)})`;
    lines.push(`${chain.name}${owner ? ` (${owner}'s)` : ''}${policy}`);
    for (const rule of rules) {
      if (rule.chain !== chain.name) continue;
      const words = `${ruleInWords(rule.spec, context.names, isOwnChain(chain.name))} — ${count(rule.packets)}`;
      const target = ruleTarget(rule);
      const theirs = owner ?? (target !== undefined ? ownerOf(target) : undefined);
      if (ours.has(key(rule))) lines.push(`  ${words}`);
      else lines.push(`  theirs${theirs ? ` (${theirs})` : ''}: ${words}`);
    }
  }
  return lines;
}

/**
 * A kernel LOG line of our drop chain in words, sender and receiver named when they are fleet hosts:
 * "[ 12.5] isolate-wizard DROP IN=eth1 … SRC=10.132.0.99 DST=10.132.0.14 … PROTO=TCP … DPT=3306"
 * becomes "[ 12.5] dropped tcp/3306 from 10.132.0.99 to mysql-1 in eth1" (a log's timestamp stays, its
 * host name and "kernel:" go: a terminal line is short).
 */
export function droppedPacketInWords(line: string, names: ReadonlyMap<string, string>): string {
  const field = (name: string): string | undefined => new RegExp(`(?:^|\\s)${name}=(\\S*)`).exec(line)?.[1];
  const source = field('SRC');
  const marker = line.indexOf('isolate-wizard DROP');
  if (source === undefined || marker < 0) return line;
  // When: dmesg's "[ 12.5]" or the log's timestamp (its host and "kernel:" say nothing here).
  const prefix = line.slice(0, marker).trim();
  const when = prefix.startsWith('[') ? prefix.slice(0, prefix.indexOf(']') + 1) : (prefix.split(/\s+/)[0] ?? '');
  const proto = (field('PROTO') ?? '?').toLowerCase();
  const port = field('DPT');
  const destination = field('DST');
  const inbound = field('IN');
  return [
    ...(when ? [when] : []),
    `dropped ${proto}${port ? `/${port}` : ''} from ${hostName(source, names)}`,
    ...(destination ? [`to ${hostName(destination, names)}`] : []),
    ...(inbound ? [`in ${inbound}`] : []),
  ].join(' ');
}
