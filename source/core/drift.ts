// Drift: a host's live rules against what was last confirmed there, told in plain words with the
// effect on who can reach it. Ours (our chains and jumps) are compared rule for rule (others'
// chains change on their own: a fail2ban ban is not drift); whatever changes access — a rule
// added by hand, our rules flushed, others' rule put before our jump that accepts or drops what
// ours would not, another manager's nftables table dropping what the plan opens — is drift. Pure.
import {INTERNET, subtractRanges, summarizeFleetAccess, formatPorts, type AccessEntry, type FleetHost} from './access.js';
import {mergePortRanges} from './compiler.js';
import {diffRulesets, formatRule} from './iptables-save.js';
import {canonicalFilter, hasNothingOurs, ownPart, rulesBeforeOurs, withOurs} from './own-chains.js';
import type {PortRange, Protocol, Ruleset} from './model.js';
import {formatNativeDrops, nativeDrops} from './native-drops.js';
import {isIptablesNftTable, type NftRuleset} from './nft-ruleset.js';

export interface LiveView {
  readonly host: string;
  /** The rules loaded by the last confirmed batch (as the server keeps them). */
  readonly confirmed: {readonly v4: Ruleset; readonly v6: Ruleset};
  readonly live: {readonly v4: Ruleset; readonly v6: Ruleset};
  /** `nft -j list ruleset`, where it was read. */
  readonly native?: NftRuleset;
  /** Our nftables table as listed at the confirmed load and now ('' = absent); absent when the agent kept no listing. */
  readonly ourTable?: {readonly confirmed: string; readonly live: string};
}

export interface HostDrift {
  readonly host: string;
  readonly drifted: boolean;
  /** What differs, rule by rule (ours), or another table that drops planned flows. */
  readonly changes: readonly string[];
  /** What that does to access: "opens mysql-1 to the internet: tcp/3306 (IPv4 only, not confirmed)". */
  readonly effects: readonly string[];
  /**
   * When the drift only adds rules that open ports (nothing lost, no other table in the way), the
   * openings that would make the plan give the same access: each an inventory `allow`, both families.
   */
  readonly adoptable?: readonly Opening[];
}

/** Ports opened to a source: the internet or a fleet host. */
export interface Opening {
  readonly from: string;
  readonly protocol: Protocol;
  readonly ports: readonly PortRange[];
}

/** Per host: what status and the wizard's home say of it. */
export type SyncState = 'in sync' | 'drifted' | 'pending' | 'unmanaged';

/** Our own nftables table (the nftables backend): compared as ours, never as another manager's. */
const OUR_NFT_TABLE = {family: 'inet', name: 'isolate_wizard'};

/** Other software's tables that filter on their own (iptables-nft's tables are read through iptables-save). */
function othersFilterTables(ruleset: NftRuleset): NftRuleset {
  return {
    tables: ruleset.tables.filter(
      (table) =>
        !isIptablesNftTable(table) &&
        !(table.family === OUR_NFT_TABLE.family && table.name === OUR_NFT_TABLE.name) &&
        [...table.chains.values()].some((chain) => chain.base?.type === 'filter'),
    ),
  };
}

/** Our chains and jumps in both (as confirm compares): others' rules and the policies are not ours. */
function ruleChanges(confirmed: Ruleset, live: Ruleset): string[] {
  const before = canonicalFilter(ownPart(confirmed));
  const after = canonicalFilter(ownPart(live));
  if (hasNothingOurs(before) && hasNothingOurs(after)) return [];
  if (hasNothingOurs(after)) return [`IPv${live.family}: our chains are gone (the table was flushed, or the server rebooted without loading them)`];
  return diffRulesets(before, after).map((line) => {
    const rule = line.replace(/^filter: /, '');
    const added = rule.startsWith('+ ');
    return added || rule.startsWith('- ') ? `IPv${live.family} rule ${added ? 'added' : 'removed'}: ${rule.slice(2)}` : `IPv${live.family} ${rule}`;
  });
}

const listingLines = (text: string): string[] => text.split('\n').map((line) => line.trim()).filter((line) => line !== '');

/** Our nftables table against its listing at the confirmed load, line by line (nft prints it the same way each time). */
function tableChanges(ourTable: LiveView['ourTable']): string[] {
  if (!ourTable) return [];
  const before = listingLines(ourTable.confirmed);
  const after = listingLines(ourTable.live);
  if (before.join('\n') === after.join('\n')) return [];
  if (after.length === 0) return ['nftables: our table inet isolate_wizard is gone (deleted, or the server rebooted without loading it)'];
  if (before.length === 0) return ['nftables: a table inet isolate_wizard is there that the confirmed batch did not load'];
  const kept = new Set(after);
  const was = new Set(before);
  const lines = [...before.filter((line) => !kept.has(line)).map((line) => `nftables rule removed: ${line}`), ...after.filter((line) => !was.has(line)).map((line) => `nftables rule added: ${line}`)];
  return lines.length > 0 ? lines.slice(0, 8) : ['nftables: our table inet isolate_wizard has its rules in another order'];
}

function withRules(hosts: readonly FleetHost[], rules: ReadonlyMap<string, {readonly v4: Ruleset; readonly v6: Ruleset}>): FleetHost[] {
  return hosts.map((host) => {
    const replaced = rules.get(host.name);
    return replaced ? {...host, compiled: {...host.compiled, v4: replaced.v4, v6: replaced.v6}} : host;
  });
}

/** Per source and family, the ports open to `destination` in a summary. */
function portsBySource(entries: readonly AccessEntry[], destination: string): Map<string, Record<Protocol, PortRange[]>> {
  const bySource = new Map<string, Record<Protocol, PortRange[]>>();
  for (const entry of entries) {
    if (entry.destination !== destination) continue;
    for (const source of entry.sources) {
      for (const family of entry.only === undefined ? [4, 6] : [entry.only]) {
        const key = `${source}\0${family}`;
        const ports = bySource.get(key) ?? {tcp: [], udp: []};
        ports.tcp.push(...entry.tcp);
        ports.udp.push(...entry.udp);
        bySource.set(key, ports);
      }
    }
  }
  return bySource;
}

function accessEffects(before: readonly AccessEntry[], after: readonly AccessEntry[], destination: string): {lines: string[]; gains: Opening[]; losses: number} {
  const was = portsBySource(before, destination);
  const now = portsBySource(after, destination);
  // "verb ports from source" -> the families it holds for
  const found = new Map<string, Set<string>>();
  const gains: Opening[] = [];
  let losses = 0;
  const gainedFrom = (key: string, protocol: Protocol): PortRange[] => subtractRanges(now.get(key)?.[protocol] ?? [], was.get(key)?.[protocol] ?? []);
  for (const key of new Set([...was.keys(), ...now.keys()])) {
    const [source = '', family = ''] = key.split('\0');
    for (const protocol of ['tcp', 'udp'] as const) {
      // What is opened to the internet is opened to every other source too: said once.
      const gained = source === INTERNET ? gainedFrom(key, protocol) : subtractRanges(gainedFrom(key, protocol), gainedFrom(`${INTERNET}\0${family}`, protocol));
      const lost = subtractRanges(was.get(key)?.[protocol] ?? [], now.get(key)?.[protocol] ?? []);
      const note = (line: string): void => void found.set(line, (found.get(line) ?? new Set()).add(family));
      if (gained.length > 0) gains.push({from: source, protocol, ports: gained});
      if (lost.length > 0) losses += 1;
      if (gained.length > 0) note(source === INTERNET ? `opens ${destination} to the internet: ${formatPorts(protocol, gained)}` : `${destination} now accepts ${formatPorts(protocol, gained)} from ${source}`);
      if (lost.length > 0) note(`${destination} no longer accepts ${formatPorts(protocol, lost)} from ${source}`);
    }
  }
  const lines = [...found].map(([line, families]) => {
    const notes = [...(families.size === 1 ? [`IPv${[...families][0]} only`] : []), ...(line.includes(' now accepts ') || line.startsWith('opens ') ? ['not confirmed'] : [])];
    return notes.length > 0 ? `${line} (${notes.join(', ')})` : line;
  });
  return {lines, gains, losses};
}

/** The gains per source and protocol, both families together (an `allow` opens both), ports merged. */
function mergedOpenings(gains: readonly Opening[]): Opening[] {
  const merged = new Map<string, Opening>();
  for (const gain of gains) {
    const key = `${gain.from}\0${gain.protocol}`;
    const joined = mergePortRanges([...(merged.get(key)?.ports ?? []), ...gain.ports]);
    merged.set(key, {from: gain.from, protocol: gain.protocol, ports: joined});
  }
  return [...merged.values()];
}

/**
 * Drift of each viewed host. `hosts`: the fleet as compiled from the inventory (for addresses and
 * the other hosts' rules); each viewed host is judged with its confirmed rules, then its live ones.
 */
export function fleetDrift(hosts: readonly FleetHost[], views: readonly LiveView[]): HostDrift[] {
  const changes = new Map(
    views.map((view) => [view.host, [...ruleChanges(view.confirmed.v4, view.live.v4), ...ruleChanges(view.confirmed.v6, view.live.v6), ...tableChanges(view.ourTable)]]),
  );
  // Others' rules before our jump (inserted after our load) decide first: judged by their effect.
  const ahead = new Map(
    views.map((view) => [
      view.host,
      [4, 6].flatMap((family) => rulesBeforeOurs(family === 4 ? view.live.v4 : view.live.v6).map((rule) => `IPv${family} others' rule before our chain: ${formatRule(rule)}`)),
    ]),
  );
  // What was confirmed, as it would be live now were ours first: others' rules after our jump and
  // the policies count alike on both sides.
  const confirmedFleet = withRules(
    hosts,
    new Map(views.map((view) => [view.host, {v4: withOurs(view.live.v4, view.confirmed.v4), v6: withOurs(view.live.v6, view.confirmed.v6)}])),
  );
  const natives = new Map(
    views.flatMap((view) => {
      const others = view.native ? othersFilterTables(view.native) : undefined;
      return others && others.tables.length > 0 ? [[view.host, others] as const] : [];
    }),
  );
  const anyChange = [...changes.values(), ...ahead.values()].some((lines) => lines.length > 0);
  if (!anyChange && natives.size === 0) return views.map((view) => ({host: view.host, drifted: false, changes: [], effects: []}));

  const before = summarizeFleetAccess(confirmedFleet);
  const after = anyChange ? summarizeFleetAccess(withRules(hosts, new Map(views.map((view) => [view.host, view.live])))) : before;
  const dropsByHost = new Map<string, string[]>();
  for (const line of formatNativeDrops(nativeDrops(confirmedFleet, before, natives))) {
    const host = line.slice(0, line.indexOf(':'));
    dropsByHost.set(host, [...(dropsByHost.get(host) ?? []), line.slice(host.length + 2)]);
  }
  return views.map((view) => {
    const ours = changes.get(view.host) ?? [];
    const drops = dropsByHost.get(view.host) ?? [];
    const effects = ours.length > 0 || (ahead.get(view.host) ?? []).length > 0 ? accessEffects(before, after, view.host) : {lines: [], gains: [], losses: 0};
    // Others' rules ahead of ours are drift only when they change access (a ban of one address does not).
    const own = [...ours, ...(effects.lines.length > 0 ? (ahead.get(view.host) ?? []) : [])];
    const fleetNames = new Set(hosts.map((host) => host.name));
    // Adoptable: rules only added, access only gained, from sources an allow can name.
    const adoptable =
      own.length > 0 && drops.length === 0 && effects.losses === 0 && effects.gains.length > 0 &&
      own.every((line) => /^IPv[46] rule added: /.test(line)) &&
      effects.gains.every((gain) => gain.from === INTERNET || fleetNames.has(gain.from));
    return {
      host: view.host,
      drifted: own.length > 0 || drops.length > 0,
      changes: [...own, ...drops],
      effects: effects.lines,
      ...(adoptable ? {adoptable: mergedOpenings(effects.gains)} : {}),
    };
  });
}

/** What status knows of a host, for `fleetSync`. */
export interface SyncInput {
  readonly host: string;
  readonly managed: boolean;
  readonly pending: boolean;
  /** The confirmed and live rules; absent when nothing was ever confirmed there. */
  readonly view?: LiveView;
  /** Why the view could not be read: the host's sync is then unknown, never "in sync". */
  readonly viewError?: string;
}

export interface HostSync {
  readonly host: string;
  /** undefined: not known (the rules could not be read). */
  readonly state?: SyncState;
  readonly changes: readonly string[];
  readonly effects: readonly string[];
  readonly adoptable?: readonly Opening[];
  readonly reason?: string;
}

/** Per host: pending (a batch in flight), unmanaged (nothing confirmed there), else in sync or drifted. */
export function fleetSync(hosts: readonly FleetHost[], inputs: readonly SyncInput[]): HostSync[] {
  const judged = inputs.filter((input) => input.managed && !input.pending && input.view && input.viewError === undefined);
  const drift = new Map(fleetDrift(hosts, judged.map((input) => input.view as LiveView)).map((entry) => [entry.host, entry]));
  return inputs.map((input): HostSync => {
    const none = {host: input.host, changes: [], effects: []};
    if (input.pending) return {...none, state: 'pending'};
    if (!input.managed) return {...none, state: 'unmanaged'};
    if (input.viewError !== undefined) return {...none, reason: input.viewError};
    const found = drift.get(input.host);
    if (!found) return {...none, state: 'unmanaged', reason: 'no batch was confirmed here'};
    return {host: input.host, state: found.drifted ? 'drifted' : 'in sync', changes: found.changes, effects: found.effects, ...(found.adoptable ? {adoptable: found.adoptable} : {})};
  });
}

/** One line of words: "drift: opens mysql-1 to the internet: tcp/3306 (IPv4 only, not confirmed); IPv4 rule added: -A INPUT …". */
export function describeDrift(sync: HostSync): string {
  return `drift: ${[...sync.effects, ...sync.changes].join('; ')}`;
}
