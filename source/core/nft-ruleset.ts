// What `nft -j list ruleset` prints (libnftables-json(5)), read into typed tables, chains, sets
// and rules. Only what the evaluator needs is typed; every rule keeps its raw statements, which
// the evaluator judges one by one (and counts as "may drop" where it cannot).

export type NftFamily = 'ip' | 'ip6' | 'inet' | 'arp' | 'bridge' | 'netdev';
export type NftHook = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting' | 'ingress' | 'egress';

/** One statement of a rule, as JSON (`{"match": …}`, `{"accept": null}`, `{"jump": {"target": …}}`, …). */
export type NftStatement = Readonly<Record<string, unknown>>;

export interface NftRule {
  readonly handle?: number;
  readonly comment?: string;
  readonly statements: readonly NftStatement[];
}

export interface NftChain {
  readonly name: string;
  /** Set for base chains only. */
  readonly base?: {readonly type: string; readonly hook: NftHook; readonly priority: number; readonly policy: 'accept' | 'drop'};
  readonly rules: readonly NftRule[];
}

export interface NftSet {
  readonly name: string;
  readonly type: string | readonly string[];
  /** Elements as JSON: strings, numbers, `{"prefix": …}`, `{"range": …}`, `{"elem": {"val": …}}`. */
  readonly elements: readonly unknown[];
  /** For maps (vmap): the element's value, paired with its key. */
  readonly isMap: boolean;
}

export interface NftTable {
  readonly family: NftFamily;
  readonly name: string;
  readonly chains: ReadonlyMap<string, NftChain>;
  readonly sets: ReadonlyMap<string, NftSet>;
}

export interface NftRuleset {
  readonly tables: readonly NftTable[];
}

const FAMILIES = new Set<string>(['ip', 'ip6', 'inet', 'arp', 'bridge', 'netdev']);
const HOOKS = new Set<string>(['prerouting', 'input', 'forward', 'output', 'postrouting', 'ingress', 'egress']);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A table's key in maps: "inet firewalld". */
export function tableKey(family: string, name: string): string {
  return `${family} ${name}`;
}

/** Reads `nft -j list ruleset` output. Throws with a one-line reason when it is not that. */
export function parseNftJson(text: string): NftRuleset {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new Error(`nft -j output is not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (!isRecord(document) || !Array.isArray(document['nftables'])) throw new Error('nft -j output has no "nftables" list');

  interface Building {
    family: NftFamily;
    name: string;
    chains: Map<string, {name: string; base?: NftChain['base']; rules: NftRule[]}>;
    sets: Map<string, NftSet>;
  }
  const tables = new Map<string, Building>();
  const tableOf = (object: Record<string, unknown>): Building | undefined => {
    const family = String(object['family']);
    const name = String(object['table'] ?? object['name']);
    return tables.get(tableKey(family, name));
  };

  for (const item of document['nftables'] as unknown[]) {
    if (!isRecord(item)) continue;
    const [kind, body] = Object.entries(item)[0] ?? [];
    if (!isRecord(body)) continue;
    if (kind === 'table') {
      const family = String(body['family']);
      if (!FAMILIES.has(family)) continue;
      tables.set(tableKey(family, String(body['name'])), {family: family as NftFamily, name: String(body['name']), chains: new Map(), sets: new Map()});
    } else if (kind === 'chain') {
      const table = tableOf(body);
      if (!table) continue;
      const name = String(body['name']);
      const hook = body['hook'];
      const base =
        typeof hook === 'string' && HOOKS.has(hook)
          ? {
              type: String(body['type'] ?? 'filter'),
              hook: hook as NftHook,
              priority: typeof body['prio'] === 'number' ? body['prio'] : 0,
              policy: body['policy'] === 'drop' ? ('drop' as const) : ('accept' as const),
            }
          : undefined;
      table.chains.set(name, {name, ...(base ? {base} : {}), rules: []});
    } else if (kind === 'rule') {
      const chain = tableOf(body)?.chains.get(String(body['chain']));
      if (!chain) continue;
      const statements = Array.isArray(body['expr']) ? (body['expr'] as unknown[]).filter(isRecord) : [];
      chain.rules.push({
        ...(typeof body['handle'] === 'number' ? {handle: body['handle']} : {}),
        ...(typeof body['comment'] === 'string' ? {comment: body['comment']} : {}),
        statements,
      });
    } else if (kind === 'set' || kind === 'map') {
      const table = tableOf(body);
      if (!table) continue;
      const type = Array.isArray(body['type']) ? (body['type'] as unknown[]).map(String) : String(body['type']);
      table.sets.set(String(body['name']), {
        name: String(body['name']),
        type,
        elements: Array.isArray(body['elem']) ? (body['elem'] as unknown[]) : [],
        isMap: kind === 'map',
      });
    }
  }
  return {
    tables: [...tables.values()].map((table) => ({family: table.family, name: table.name, chains: table.chains, sets: table.sets})),
  };
}

/**
 * Tables that iptables-nft keeps for iptables' own tables (`ip filter`, `ip6 nat`, …): read
 * through iptables-save by the iptables evaluator, so the native evaluator leaves them out.
 */
export function isIptablesNftTable(table: Pick<NftTable, 'family' | 'name'>): boolean {
  return (table.family === 'ip' || table.family === 'ip6') && ['filter', 'nat', 'mangle', 'raw', 'security'].includes(table.name);
}
