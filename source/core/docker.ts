// Docker's published container ports, and what our rules do to them. Pure.
//
// A published port is DNATed in prerouting: the packet then goes through the forward hook to the
// container, never through input, so our input rules do not see it. Docker (27/28 with iptables)
// writes the DNAT rules in the nat table's DOCKER chain; Docker 29's nftables backend in its own
// `ip`/`ip6 docker-bridges` tables. Both are read here, without the docker CLI.
//
// By default our rules leave forwarding to Docker (a forward chain of ours that dropped would cut
// every container off: a drop in any base chain is final). With `restrictPublished`, the nftables
// backend adds a forward base chain to our table that lets a new connection to a published port
// through only from the sources the plan grants that port on the host (its input rules), matched
// on the port the client asked for (`ct original proto-dst`), and drops the rest. The iptables
// backend does the same in a chain of ours entered from Docker's DOCKER-USER (withPublishedRules).
import type {FleetHost} from './access.js';
import {parseIptablesSave} from './iptables-save.js';
import type {Family, HostFacts, PortRange, Protocol, Rule, Ruleset} from './model.js';
import type {NftRuleset, NftStatement} from './nft-ruleset.js';

export interface PublishedPort {
  readonly family: Family;
  readonly proto: Protocol;
  /** The host's port(s) clients connect to. */
  readonly ports: PortRange;
  /** Where Docker sends it: the container's address and port(s), "172.17.0.2:80". */
  readonly containerAddress: string;
  readonly containerPorts?: PortRange;
  /** `-p 127.0.0.1:8080:80`: only connections to this host address are DNATed. */
  readonly hostAddress?: string;
  /** The bridge the container is on (traffic from it is not DNATed). */
  readonly bridge?: string;
}

/** What a Docker host publishes, as read on it (iptables nat rules and Docker 29's tables). */
export interface DockerFacts {
  readonly published: readonly PublishedPort[];
  /** The families whose iptables filter table has Docker's DOCKER-USER chain (absent: not read). */
  readonly userChain?: readonly Family[];
}

// ---------------------------------------------------------------------------
// Reading

function portRange(text: string, separator: string): PortRange | undefined {
  const [first, last = first] = text.split(separator);
  const a = Number(first);
  const b = Number(last);
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < 1 || b > 65535 || a > b) return undefined;
  return {first: a, last: b};
}

/** `172.17.0.2:80`, `172.18.0.2:9000-9002`, `[fd00::2]:80`, `172.17.0.2` (the same port). */
function dnatTarget(text: string): {address: string; ports?: PortRange} | undefined {
  const match = /^\[([0-9a-fA-F:.]+)\](?::(\d+(?:-\d+)?))?$/.exec(text) ?? /^([0-9.]+)(?::(\d+(?:-\d+)?))?$/.exec(text);
  if (!match?.[1]) return undefined;
  const ports = match[2] === undefined ? undefined : portRange(match[2], '-');
  return {address: match[1], ...(ports ? {ports} : {})};
}

const withoutHostPrefix = (text: string): string => text.replace(/\/(32|128)$/, '');

/** One `-A DOCKER … -j DNAT --to-destination …` rule of the nat table, or undefined for any other. */
function publishedFromRule(rule: Rule, family: Family): PublishedPort | undefined {
  const spec = rule.spec;
  let proto: Protocol | undefined;
  let ports: PortRange | undefined;
  let hostAddress: string | undefined;
  let bridge: string | undefined;
  let target: ReturnType<typeof dnatTarget>;
  let dnat = false;
  for (let index = 0; index < spec.length; index += 1) {
    const token = spec[index];
    const next = spec[index + 1];
    const negated = spec[index - 1] === '!';
    if (token === '-p' && (next === 'tcp' || next === 'udp')) proto = next;
    else if (token === '--dport' && next !== undefined) ports = portRange(next, ':');
    else if (token === '-d' && next !== undefined && !negated) hostAddress = withoutHostPrefix(next);
    else if (token === '-i' && next !== undefined && negated) bridge = next;
    else if (token === '-j') dnat = next === 'DNAT';
    else if (token === '--to-destination' && next !== undefined) target = dnatTarget(next);
  }
  if (!dnat || !proto || !ports || !target) return undefined;
  return {
    family,
    proto,
    ports,
    containerAddress: target.address,
    ...(target.ports ? {containerPorts: target.ports} : {}),
    ...(hostAddress === undefined ? {} : {hostAddress}),
    ...(bridge === undefined ? {} : {bridge}),
  };
}

/**
 * The ports Docker publishes through iptables: DNAT rules in the nat table's DOCKER chain
 * (`iptables-save -t nat` text, or a whole save). Empty when there is no such chain.
 */
export function publishedFromIptablesNat(saveText: string, family: Family): PublishedPort[] {
  if (saveText.trim() === '') return [];
  const nat = parseIptablesSave(saveText, family).tables.find((table) => table.name === 'nat');
  const published: PublishedPort[] = [];
  for (const rule of nat?.rules ?? []) {
    if (rule.chain !== 'DOCKER') continue;
    const port = publishedFromRule(rule, family);
    if (port) published.push(port);
  }
  return published;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function nftPorts(right: unknown): PortRange | undefined {
  if (typeof right === 'number') return portRange(String(right), '-');
  if (isRecord(right) && Array.isArray(right['range'])) return portRange(right['range'].join('-'), '-');
  return undefined;
}

/** One rule of a Docker table that DNATs (`… tcp dport 8080 … dnat to 172.17.0.2:80`), or undefined. */
function publishedFromNftRule(statements: readonly NftStatement[], tableFamily: string): PublishedPort | undefined {
  let proto: Protocol | undefined;
  let ports: PortRange | undefined;
  let hostAddress: string | undefined;
  let bridge: string | undefined;
  let dnat: {address: string; ports?: PortRange; family?: Family} | undefined;
  for (const statement of statements) {
    const match = statement['match'];
    if (isRecord(match) && isRecord(match['left'])) {
      const left = match['left'];
      const payload = isRecord(left['payload']) ? left['payload'] : undefined;
      const meta = isRecord(left['meta']) ? left['meta'] : undefined;
      if (payload && (payload['protocol'] === 'tcp' || payload['protocol'] === 'udp') && payload['field'] === 'dport' && match['op'] === '==') {
        proto = payload['protocol'];
        ports = nftPorts(match['right']);
      } else if (payload && (payload['protocol'] === 'ip' || payload['protocol'] === 'ip6') && payload['field'] === 'daddr' && match['op'] === '==' && typeof match['right'] === 'string') {
        hostAddress = match['right'];
      } else if (meta?.['key'] === 'iifname' && match['op'] === '!=' && typeof match['right'] === 'string') {
        bridge = match['right'];
      }
    }
    const to = statement['dnat'];
    if (isRecord(to) && typeof to['addr'] === 'string') {
      const containerPorts = to['port'] === undefined ? undefined : nftPorts(to['port']);
      const family = to['family'] === 'ip' ? 4 : to['family'] === 'ip6' ? 6 : undefined;
      dnat = {address: to['addr'], ...(containerPorts ? {ports: containerPorts} : {}), ...(family ? {family} : {})};
    }
  }
  const family: Family | undefined = tableFamily === 'ip' ? 4 : tableFamily === 'ip6' ? 6 : dnat?.family ?? (dnat?.address.includes(':') ? 6 : 4);
  if (!dnat || !proto || !ports || !family) return undefined;
  return {
    family,
    proto,
    ports,
    containerAddress: dnat.address,
    ...(dnat.ports ? {containerPorts: dnat.ports} : {}),
    ...(hostAddress === undefined ? {} : {hostAddress}),
    ...(bridge === undefined ? {} : {bridge}),
  };
}

/** The ports Docker 29's nftables backend publishes: DNAT rules in its `docker-*` tables. */
export function publishedFromNft(ruleset: NftRuleset): PublishedPort[] {
  const published: PublishedPort[] = [];
  for (const table of ruleset.tables) {
    if (!table.name.startsWith('docker')) continue;
    for (const chain of table.chains.values()) {
      for (const rule of chain.rules) {
        const port = publishedFromNftRule(rule.statements, table.family);
        if (port) published.push(port);
      }
    }
  }
  return published;
}

/** Whether Docker is there: its nat chain, or its nftables tables. */
export function dockerPresent(natSaves: readonly string[], ruleset: NftRuleset | undefined): boolean {
  return natSaves.some((text) => /^:DOCKER\s/m.test(text)) || (ruleset?.tables.some((table) => table.name.startsWith('docker')) ?? false);
}

/**
 * Docker's facts from what the host printed; undefined when Docker is not there. `filterChains`:
 * the chain declarations of each family's filter table (iptables-save's ":NAME …" lines).
 */
export function dockerFacts(input: {readonly nat4: string; readonly nat6: string; readonly nft?: NftRuleset; readonly filterChains?: {readonly v4: string; readonly v6: string}}): DockerFacts | undefined {
  if (!dockerPresent([input.nat4, input.nat6], input.nft)) return undefined;
  const published = [...publishedFromIptablesNat(input.nat4, 4), ...publishedFromIptablesNat(input.nat6, 6), ...(input.nft ? publishedFromNft(input.nft) : [])];
  const chains = input.filterChains;
  if (!chains) return {published};
  const userChain = ([4, 6] as const).filter((family) => new RegExp(`^:${DOCKER_USER_CHAIN}\\s`, 'm').test(family === 4 ? chains.v4 : chains.v6));
  return {published, userChain};
}

// ---------------------------------------------------------------------------
// Docker hosts' rules

/**
 * A Docker host's compiled rulesets with FORWARD accepting: forwarding is Docker's (its own
 * chains filter it); ours would drop every container's traffic. Cached, so hosts that share a
 * ruleset still share one.
 */
export function forwardLeftToDocker(ruleset: Ruleset): Ruleset {
  let open = forwardOpened.get(ruleset);
  if (!open) {
    open = {
      family: ruleset.family,
      tables: ruleset.tables.map((table) =>
        table.name !== 'filter' ? table : {...table, chains: table.chains.map((chain) => (chain.name === 'FORWARD' ? {...chain, policy: 'ACCEPT'} : chain))},
      ),
    };
    forwardOpened.set(ruleset, open);
  }
  return open;
}
const forwardOpened = new WeakMap<Ruleset, Ruleset>();

/** An INPUT rule that accepts new connections of one protocol to some ports, read from our compiled rules. */
interface InputGrant {
  /** Undefined: every protocol and port (trustPrivate's rules). */
  readonly proto?: Protocol;
  readonly ports?: readonly PortRange[];
  readonly source?: string;
  readonly inInterface?: string;
}

/**
 * The grants of a compiled ruleset: its INPUT accepts of new tcp/udp connections by port. A rule
 * with anything else in it is left out (the restriction can then only be narrower, never wider).
 */
export function inputGrants(ruleset: Ruleset): InputGrant[] {
  const filter = ruleset.tables.find((table) => table.name === 'filter');
  const grants: InputGrant[] = [];
  for (const rule of filter?.rules ?? []) {
    if (rule.chain !== 'INPUT') continue;
    const grant = grantOf(rule.spec);
    if (grant) grants.push(grant);
  }
  return grants;
}

function grantOf(spec: readonly string[]): InputGrant | undefined {
  let proto: Protocol | undefined;
  let ports: PortRange[] | undefined;
  let source: string | undefined;
  let inInterface: string | undefined;
  let accepts = false;
  let newOnly = true;
  for (let index = 0; index < spec.length; index += 1) {
    const token = spec[index] as string;
    const next = spec[index + 1];
    if (token === '!') return undefined;
    if (next === undefined) return undefined;
    index += 1;
    if (token === '-p' && (next === 'tcp' || next === 'udp')) proto = next;
    else if (token === '-s') source = next;
    else if (token === '-i') inInterface = next;
    else if (token === '--dport' || token === '--dports') {
      const parsed = next.split(',').map((part) => portRange(part, ':'));
      if (parsed.some((range) => range === undefined)) return undefined;
      ports = parsed as PortRange[];
    } else if (token === '--ctstate' || token === '--state') newOnly = next.split(',').includes('NEW');
    else if (token === '-m' || token === '--comment') continue;
    else if (token === '-j') accepts = next === 'ACCEPT' && index === spec.length - 1;
    else return undefined;
  }
  // A rule with neither protocol nor port (trustPrivate) lets its source reach every port.
  if (!accepts || !newOnly || (proto === undefined) !== (ports === undefined) || inInterface?.endsWith('+')) return undefined;
  if (proto === undefined && source === undefined) return undefined; // not a grant: loopback and the like
  return {...(proto ? {proto} : {}), ...(ports ? {ports} : {}), ...(source === undefined ? {} : {source}), ...(inInterface === undefined ? {} : {inInterface})};
}

/** Whether a grant is of the port's protocol (or every protocol). */
function grants(grant: InputGrant, port: {readonly proto: Protocol}): boolean {
  return grant.proto === undefined || grant.proto === port.proto;
}

/** Whether a grant opens some of a published port's range. */
function grantsPort(grant: InputGrant, port: PublishedPort): boolean {
  return grants(grant, port) && (grant.ports === undefined || grant.ports.some((range) => intersect(range, port.ports) !== undefined));
}

function intersect(a: PortRange, b: PortRange): PortRange | undefined {
  const first = Math.max(a.first, b.first);
  const last = Math.min(a.last, b.last);
  return first <= last ? {first, last} : undefined;
}

const rangeText = (range: PortRange): string => (range.first === range.last ? String(range.first) : `${range.first}-${range.last}`);

/** Published ports merged by family, protocol and host port: a port DNATed for several host addresses is restricted once. */
function distinctPorts(published: readonly PublishedPort[]): {family: Family; proto: Protocol; ports: PortRange}[] {
  const seen = new Map<string, {family: Family; proto: Protocol; ports: PortRange}>();
  for (const port of published) seen.set(`${port.family}/${port.proto}/${port.ports.first}-${port.ports.last}`, {family: port.family, proto: port.proto, ports: port.ports});
  return [...seen.values()].sort((a, b) => a.family - b.family || a.proto.localeCompare(b.proto) || a.ports.first - b.ports.first);
}

/** The chain of our table that restricts published ports (a base chain on the forward hook). */
export const PUBLISHED_CHAIN = 'published';

/** Who the plan lets reach (part of) a published port: by input interface and port range, from these sources (undefined: any). */
interface Admission {
  readonly inInterface?: string;
  readonly ports: PortRange;
  readonly sources?: readonly string[];
}

/** A published port's admissions from the host's input grants (none: nobody). */
function admissionsOf(port: {readonly proto: Protocol; readonly ports: PortRange}, grantList: readonly InputGrant[]): Admission[] {
  // Grants by interface and range: their sources together (any source when one grant has none).
  const byKey = new Map<string, {inInterface?: string; ports: PortRange; sources: Set<string> | undefined}>();
  for (const grant of grantList) {
    if (!grants(grant, port)) continue;
    const covered = (grant.ports ?? [port.ports]).map((range) => intersect(range, port.ports)).filter((range): range is PortRange => range !== undefined);
    for (const range of covered) {
      const key = `${grant.inInterface ?? ''}\u0000${rangeText(range)}`;
      const entry = byKey.get(key) ?? {...(grant.inInterface === undefined ? {} : {inInterface: grant.inInterface}), ports: range, sources: new Set<string>()};
      if (grant.source === undefined) entry.sources = undefined;
      else entry.sources?.add(withoutHostPrefix(grant.source));
      byKey.set(key, entry);
    }
  }
  return [...byKey.values()].map(({sources, ...rest}) => (sources ? {...rest, sources: [...sources]} : rest));
}

/**
 * The lines of `chain published { … }` for our table: per published port, a new connection
 * DNATed to it passes from the sources the host's input grants for that port, else it is
 * dropped. `ct status dnat` first: nothing else (routed traffic, replies) is touched.
 */
export function publishedChainLines(published: readonly PublishedPort[], rulesets: {readonly v4: Ruleset; readonly v6: Ruleset}): string[] {
  const lines = ['type filter hook forward priority filter; policy accept;', 'ct state established,related accept'];
  const grantsOf = {4: inputGrants(rulesets.v4), 6: inputGrants(rulesets.v6)};
  for (const port of distinctPorts(published)) {
    const nfproto = `meta nfproto ipv${port.family}`;
    const head = `ct status dnat ${nfproto} meta l4proto ${port.proto}`;
    for (const admission of admissionsOf(port, grantsOf[port.family])) {
      const parts = [head, `ct original proto-dst ${rangeText(admission.ports)}`];
      if (admission.inInterface) parts.push(`iifname "${admission.inInterface}"`);
      if (admission.sources) parts.push(`${port.family === 4 ? 'ip' : 'ip6'} saddr { ${admission.sources.join(', ')} }`);
      lines.push(`${parts.join(' ')} accept`);
    }
    lines.push(`${head} ct original proto-dst ${rangeText(port.ports)} drop comment "published port: not in the plan's grants"`);
  }
  return lines;
}

/** Docker's chain for user rules on iptables: FORWARD jumps into it before Docker's own chains. */
export const DOCKER_USER_CHAIN = 'DOCKER-USER';
/** Our chain that restricts published ports on iptables, entered by one jump at position 1 of DOCKER-USER. */
export const IPTABLES_PUBLISHED_CHAIN = 'IW-PUBLISHED';

/**
 * A compiled ruleset (one family) with the published ports restricted, for the iptables backend:
 * chain IW-PUBLISHED and a jump into it from Docker's DOCKER-USER (seen after DNAT, so matched on
 * the port the client asked for, conntrack's original destination port). Per published port, a
 * new DNATed connection from a source the host's input grants for that port RETURNs (Docker's
 * rules then decide, as before), the rest is dropped; anything else (replies, routed traffic,
 * containers' own connections) falls through. No published port of the family: unchanged.
 */
export function withPublishedRules(ruleset: Ruleset, published: readonly PublishedPort[] | undefined): Ruleset {
  const ports = (published ?? []).filter((port) => port.family === ruleset.family);
  if (ports.length === 0) return ruleset;
  const grantList = inputGrants(ruleset);
  const rules: Rule[] = [];
  for (const port of distinctPorts(ports)) {
    // A port bound to host addresses only is matched on them; bound to any address once, on none.
    const same = ports.filter((other) => other.proto === port.proto && other.ports.first === port.ports.first && other.ports.last === port.ports.last);
    const bound = same.every((other) => other.hostAddress !== undefined) ? [...new Set(same.map((other) => other.hostAddress as string))] : [undefined];
    for (const hostAddress of bound) {
      const match = (range: PortRange): string[] => [
        '-p', port.proto, '-m', 'conntrack', '--ctstate', 'DNAT', '-m', 'conntrack', '--ctstate', 'NEW',
        ...(hostAddress === undefined ? [] : ['--ctorigdst', hostAddress]), '--ctorigdstport', range.first === range.last ? String(range.first) : `${range.first}:${range.last}`,
      ];
      for (const admission of admissionsOf(port, grantList)) {
        const inInterface = admission.inInterface === undefined ? [] : ['-i', admission.inInterface];
        for (const source of admission.sources ?? [undefined]) {
          rules.push({chain: IPTABLES_PUBLISHED_CHAIN, spec: [...(source === undefined ? [] : ['-s', source]), ...inInterface, ...match(admission.ports), '-j', 'RETURN']});
        }
      }
      rules.push({chain: IPTABLES_PUBLISHED_CHAIN, spec: [...match(port.ports), '-j', 'DROP']});
    }
  }
  return {
    family: ruleset.family,
    tables: ruleset.tables.map((table) =>
      table.name !== 'filter'
        ? table
        : {...table, chains: [...table.chains, {name: IPTABLES_PUBLISHED_CHAIN, policy: null}], rules: [...table.rules, {chain: DOCKER_USER_CHAIN, spec: ['-j', IPTABLES_PUBLISHED_CHAIN]}, ...rules]},
    ),
  };
}

/**
 * The published ports to restrict on a host, when the option is on and the host publishes any
 * reachable from outside (a port bound to a loopback address is not forwarded).
 */
export function publishedToRestrict(facts: HostFacts | undefined, restrict: boolean): readonly PublishedPort[] | undefined {
  if (!restrict || !facts?.docker) return undefined;
  const reachable = facts.docker.published.filter((port) => !isLoopback(port.hostAddress));
  return reachable.length === 0 ? undefined : reachable;
}

const isLoopback = (address: string | undefined): boolean => address !== undefined && /^(127\.|::1$)/.test(address);

/** Our table's text with the published chain added before its closing brace. */
export function withPublishedChain(tableText: string, chainLines: readonly string[]): string {
  const end = tableText.lastIndexOf('}');
  if (end < 0) return tableText;
  const chain = [`\n\tchain ${PUBLISHED_CHAIN} {`, ...chainLines.map((line) => `\t\t${line}`), '\t}'].join('\n');
  return `${tableText.slice(0, end).trimEnd()}\n${chain}\n}\n`;
}

// ---------------------------------------------------------------------------
// Saying who reaches them

const familyWord = (family: Family): string => (family === 4 ? 'IPv4' : 'IPv6');

/** "tcp/8080 (IPv4) → container 172.17.0.2:80", "tcp/5432 on 127.0.0.1 (IPv4) → …". */
export function describePort(port: PublishedPort): string {
  const to = `${port.family === 6 ? `[${port.containerAddress}]` : port.containerAddress}${port.containerPorts ? `:${rangeText(port.containerPorts)}` : ''}`;
  const on = port.hostAddress ? ` on ${port.hostAddress}` : '';
  return `${port.proto}/${rangeText(port.ports)}${on} (${familyWord(port.family)}) → container ${to}`;
}

/** Names of the sources a host's grants for a port come from (peers by host name, else their address). */
function grantedSources(inputs: readonly InputGrant[], port: PublishedPort, nameOf: (address: string) => string | undefined): string[] | 'anywhere' {
  const names = new Set<string>();
  for (const grant of inputs) {
    if (!grantsPort(grant, port)) continue;
    if (grant.source === undefined) return 'anywhere';
    const address = grant.source.replace(/\/(32|128)$/, '');
    names.add(nameOf(address) ?? grant.source);
  }
  return [...names].sort();
}

/**
 * One line per published port of a Docker host: where it is reachable from, given our rules.
 * Unrestricted, Docker's rules decide: anyone who can route to the host. Restricted, the plan's
 * sources for that port on the host (none: nobody).
 */
export function describePublished(host: FleetHost, fleet: readonly FleetHost[], restrict: boolean): string[] {
  const docker = host.facts.docker;
  if (!docker) return [];
  if (docker.published.length === 0) return [`${host.name}: Docker publishes no ports`];
  const byAddress = new Map<string, string>();
  for (const other of fleet) for (const address of [...other.facts.addresses.public, ...other.facts.addresses.private]) byAddress.set(address, other.name);
  return docker.published.map((port) => {
    const what = `${host.name} ${describePort(port)}`;
    if (isLoopback(port.hostAddress)) return `${what}: this host only (bound to ${port.hostAddress})`;
    if (!restrict) return `${what}: reachable from anywhere that routes to this host (Docker's rules, not ours, filter it; restrictPublished limits it to the plan)`;
    const sources = grantedSources(inputGrants(port.family === 4 ? host.compiled.v4 : host.compiled.v6), port, (address) => byAddress.get(address));
    if (sources === 'anywhere') return `${what}: reachable from anywhere the plan opens that port (restricted to the plan)`;
    return `${what}: ${sources.length === 0 ? 'reachable from nobody: the plan grants no one that port' : `reachable from ${sources.join(', ')} only`} (restricted to the plan)`;
  });
}
