// The inventory: the operator's description of the fleet (JSON), validated and normalized.
// A zod schema checks the shape; a second pass over the same raw JSON checks meaning
// (ports, addresses, references, jumps), so every problem is reported at once,
// one line each, starting with its JSON path.
import {z} from 'zod';
import {canonicalAddress, parseAddress, parseCidrDetailed} from './addresses.js';
import {InputError} from './errors.js';
import {rememberedPerKey} from './remembered.js';
import {BACKEND_CHOICES, DEFAULT_OPTIONS} from './model.js';
import type {FleetOptions, HostFacts, Opening, PortRange, Protocol} from './model.js';
import {BUILTIN_ROLES} from './roles.js';

/** A role as written under top-level `roles`: only the fields given (they replace the built-in's). */
export interface RoleOverride {
  readonly description?: string;
  readonly accept?: readonly Opening[];
  readonly peers?: readonly PortRange[];
  readonly peersProto?: Protocol;
}

export interface HostEntry {
  readonly name: string;
  /** An alias from ~/.ssh/config or [user@]host[:port]. */
  readonly ssh: string;
  readonly roles: readonly string[];
  /** An inventory host name or an ssh destination; used when the ssh config gives no ProxyJump. */
  readonly jump?: string;
  readonly allow: readonly Opening[];
  /** Interface names given by the operator (a hint for discovery when addresses are not given). */
  readonly interfaces?: {readonly public?: string; readonly private?: string};
  /** Canonical plain addresses; present only together with `interfaces`. */
  readonly addresses?: {readonly public: readonly string[]; readonly private: readonly string[]};
}

export interface Inventory {
  readonly options: FleetOptions;
  readonly roles: Readonly<Record<string, RoleOverride>>;
  readonly hosts: readonly HostEntry[];
}

// ---------------------------------------------------------------------------
// Shape

const portSpec = z.union([z.number(), z.string()], {error: 'expected a port (80) or a port range ("8000-8100")'});
const protocol = z.enum(['tcp', 'udp']);

const roleOpeningSchema = z.strictObject({
  ports: z.array(portSpec),
  proto: protocol.optional(),
  from: z.string(),
});

const roleSchema = z.strictObject({
  description: z.string().optional(),
  accept: z.array(roleOpeningSchema).optional(),
  peers: z.array(portSpec).optional(),
  peersProto: protocol.optional(),
});

const allowSchema = z.strictObject({
  port: portSpec,
  proto: protocol.optional(),
  from: z.string(),
});

const sidesSchema = z.strictObject({public: z.string().optional(), private: z.string().optional()});
const addressListsSchema = z.strictObject({
  public: z.array(z.string()).optional(),
  private: z.array(z.string()).optional(),
});

const hostSchema = z.strictObject({
  name: z.string(),
  ssh: z.string(),
  roles: z.array(z.string()),
  jump: z.string().optional(),
  allow: z.array(allowSchema).optional(),
  interfaces: sidesSchema.optional(),
  addresses: addressListsSchema.optional(),
});

const inventorySchema = z.strictObject({
  options: z
    .strictObject({
      strictOutbound: z.boolean().optional(),
      trustPrivate: z.boolean().optional(),
      logDrops: z.boolean().optional(),
      backend: z.enum(BACKEND_CHOICES).optional(),
      restrictPublished: z.boolean().optional(),
      otherFirewall: z.enum(['open', 'stop']).optional(),
    })
    .optional(),
  roles: z.record(z.string(), roleSchema).optional(),
  hosts: z.array(hostSchema),
});

type RawInventory = z.infer<typeof inventorySchema>;

// The same shape, checked by hand: a valid inventory (the usual case) then skips zod, which is
// there to word what is wrong, and a large fleet is spared its walk and copy. Written to be
// stricter than the schema: any doubt (an explicit undefined, a non-plain object) answers
// false, and zod decides.

const INVENTORY_KEYS = new Set(['options', 'roles', 'hosts']);
const OPTION_KEYS = new Set(['strictOutbound', 'trustPrivate', 'logDrops', 'backend', 'restrictPublished', 'otherFirewall']);
const ROLE_KEYS = new Set(['description', 'accept', 'peers', 'peersProto']);
const OPENING_KEYS = new Set(['ports', 'proto', 'from']);
const HOST_KEYS = new Set(['name', 'ssh', 'roles', 'jump', 'allow', 'interfaces', 'addresses']);
const ALLOW_KEYS = new Set(['port', 'proto', 'from']);
const SIDE_KEYS = new Set(['public', 'private']);

/** A plain object whose keys are all allowed and whose values are all defined. */
function isRecordOf(value: unknown, keys: ReadonlySet<string> | undefined): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return false;
  for (const key in value) {
    if (keys === undefined ? key === '__proto__' : !keys.has(key)) return false;
    if ((value as Record<string, unknown>)[key] === undefined) return false;
  }
  return true;
}

function isArrayOf(value: unknown, isItem: (item: unknown) => boolean): boolean {
  if (!Array.isArray(value)) return false;
  for (let index = 0; index < value.length; index += 1) {
    if (!isItem(value[index])) return false;
  }
  return true;
}

const isString = (value: unknown): boolean => typeof value === 'string';
const isPortValue = (value: unknown): boolean =>
  typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value));
const isProtocolOrAbsent = (value: unknown): boolean => value === undefined || value === 'tcp' || value === 'udp';

function isOpeningShape(value: unknown): boolean {
  return (
    isRecordOf(value, OPENING_KEYS) &&
    isArrayOf(value['ports'], isPortValue) &&
    isProtocolOrAbsent(value['proto']) &&
    typeof value['from'] === 'string'
  );
}

function isRoleShape(value: unknown): boolean {
  return (
    isRecordOf(value, ROLE_KEYS) &&
    (value['description'] === undefined || typeof value['description'] === 'string') &&
    (value['accept'] === undefined || isArrayOf(value['accept'], isOpeningShape)) &&
    (value['peers'] === undefined || isArrayOf(value['peers'], isPortValue)) &&
    isProtocolOrAbsent(value['peersProto'])
  );
}

function isAllowShape(value: unknown): boolean {
  return (
    isRecordOf(value, ALLOW_KEYS) &&
    isPortValue(value['port']) &&
    isProtocolOrAbsent(value['proto']) &&
    typeof value['from'] === 'string'
  );
}

function isHostShape(value: unknown): boolean {
  if (!isRecordOf(value, HOST_KEYS)) return false;
  const {interfaces, addresses} = value;
  return (
    typeof value['name'] === 'string' &&
    typeof value['ssh'] === 'string' &&
    isArrayOf(value['roles'], isString) &&
    (value['jump'] === undefined || typeof value['jump'] === 'string') &&
    (value['allow'] === undefined || isArrayOf(value['allow'], isAllowShape)) &&
    (interfaces === undefined ||
      (isRecordOf(interfaces, SIDE_KEYS) &&
        (interfaces['public'] === undefined || typeof interfaces['public'] === 'string') &&
        (interfaces['private'] === undefined || typeof interfaces['private'] === 'string'))) &&
    (addresses === undefined ||
      (isRecordOf(addresses, SIDE_KEYS) &&
        (addresses['public'] === undefined || isArrayOf(addresses['public'], isString)) &&
        (addresses['private'] === undefined || isArrayOf(addresses['private'], isString))))
  );
}

/** True only when inventorySchema would accept `json` as it is (see above). */
function hasInventoryShape(json: unknown): json is RawInventory {
  if (!isRecordOf(json, INVENTORY_KEYS)) return false;
  const {options, roles} = json;
  if (options !== undefined) {
    if (!isRecordOf(options, OPTION_KEYS)) return false;
    for (const key in options) {
      const value = options[key];
      if (key === 'backend' ? !(BACKEND_CHOICES as readonly unknown[]).includes(value) : key === 'otherFirewall' ? value !== 'open' && value !== 'stop' : typeof value !== 'boolean') return false;
    }
  }
  if (roles !== undefined) {
    if (!isRecordOf(roles, undefined)) return false;
    for (const name in roles) if (!isRoleShape(roles[name])) return false;
  }
  return isArrayOf(json['hosts'], isHostShape);
}

// ---------------------------------------------------------------------------
// Paths and messages

type PathKey = string | number;

/** hosts[2].roles[0], roles.app.peers[1], roles["my role"]. */
export function formatPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const key of path) {
    if (typeof key === 'number') text += `[${key}]`;
    else if (typeof key === 'string' && /^[A-Za-z_$][\w$-]*$/.test(key)) text += text === '' ? key : `.${key}`;
    else text += `[${JSON.stringify(String(key))}]`;
  }
  return text === '' ? 'inventory' : text;
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return JSON.stringify(value);
  return `${typeof value} ${String(value)}`;
}

/** The keys an object schema allows, found by walking the schema along the issue's path. */
function allowedKeysAt(path: readonly PropertyKey[]): string[] | undefined {
  let schema: unknown = inventorySchema;
  for (const key of path) {
    while (schema instanceof z.ZodOptional) schema = schema.unwrap();
    if (schema instanceof z.ZodObject) schema = (schema.shape as Record<string, unknown>)[String(key)];
    else if (schema instanceof z.ZodArray) schema = schema.element;
    else if (schema instanceof z.ZodRecord) schema = schema.valueType;
    else return undefined;
  }
  while (schema instanceof z.ZodOptional) schema = schema.unwrap();
  return schema instanceof z.ZodObject ? Object.keys(schema.shape as Record<string, unknown>) : undefined;
}

function zodProblems(error: z.ZodError): string[] {
  const problems: string[] = [];
  for (const issue of error.issues) {
    const at = formatPath(issue.path);
    switch (issue.code) {
      case 'unrecognized_keys': {
        const allowed = allowedKeysAt(issue.path);
        for (const key of issue.keys) {
          problems.push(
            `${formatPath([...issue.path, key])}: unknown key${allowed ? ` (allowed here: ${allowed.join(', ')})` : ''}`,
          );
        }
        break;
      }
      case 'invalid_type':
        problems.push(
          issue.input === undefined
            ? `${at}: missing (expected ${issue.expected})`
            : `${at}: expected ${issue.expected}, got ${describeValue(issue.input)}`,
        );
        break;
      case 'invalid_value':
        problems.push(
          `${at}: ${describeValue(issue.input)} is not one of ${issue.values.map((value) => String(value)).join(', ')}`,
        );
        break;
      case 'invalid_union':
        problems.push(`${at}: ${issue.message}, got ${describeValue(issue.input)}`);
        break;
      default:
        problems.push(`${at}: ${issue.message}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------
// Leaf checks shared by the semantic pass

export const NAME_PATTERN = /^[A-Za-z0-9._-]+$/;
/** Host and role names end up in rule comments, which hold 255 characters. */
export const MAX_NAME_LENGTH = 63;
/** Linux interface names: at most 15 characters; never starting with "-" (it would read as an option). */
export const INTERFACE_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$/;
/** A name of NAME_PATTERN has no ":": it can only read as an address when it is all digits and dots (IPv4). */
const DIGITS_AND_DOTS = /^[\d.]+$/;
/** Sources with a fixed meaning; never usable as a host or role name. */
const RESERVED_SOURCES = ['internet', 'private'];

type PortResult = {readonly ok: true; readonly range: PortRange} | {readonly ok: false; readonly reason: string};

function isPort(value: number): boolean {
  return Number.isInteger(value) && value >= 1 && value <= 65535;
}

/** 80, "80" or "8000-8100". */
export function parsePortSpec(value: number | string): PortResult {
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) return {ok: false, reason: `${value} is not a port (not a whole number)`};
    if (!isPort(value)) return {ok: false, reason: `${value} is not a port (1-65535)`};
    return {ok: true, range: {first: value, last: value}};
  }
  const single = /^\d+$/.exec(value);
  if (single) {
    const port = Number(value);
    return isPort(port)
      ? {ok: true, range: {first: port, last: port}}
      : {ok: false, reason: `"${value}" is not a port (1-65535)`};
  }
  const range = /^(\d+)-(\d+)$/.exec(value);
  if (!range) return {ok: false, reason: `${JSON.stringify(value)} is not a port or port range (use 80 or "8000-8100")`};
  const first = Number(range[1]);
  const last = Number(range[2]);
  if (!isPort(first) || !isPort(last)) return {ok: false, reason: `"${value}" is not a port range (ports are 1-65535)`};
  if (first > last) return {ok: false, reason: `"${value}" is not a port range (first > last)`};
  return {ok: true, range: {first, last}};
}

export interface SshDestination {
  readonly user?: string;
  readonly host: string;
  readonly port?: number;
}

/**
 * `[user@]host[:port]`, IPv6 as `[addr]:port` (or a bare IPv6 address), or an ssh-config alias.
 * Nothing may start with "-": the value ends up in an ssh argument list.
 */
// Read for every host by validation, facts, the compiler and the lockout check: once per spelling.
export const parseSshDestination: (text: string) => SshDestination | undefined = rememberedPerKey((text) => readSshDestination(text));

function readSshDestination(text: string): SshDestination | undefined {
  const match = /^(?:([A-Za-z0-9._][A-Za-z0-9._-]*)@)?(.+)$/.exec(text);
  if (!match) return undefined;
  const user = match[1];
  const rest = match[2] ?? '';
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$/.exec(rest);
  if (bracketed) {
    host = bracketed[1] ?? '';
    if (parseAddress(host)?.family !== 6) return undefined;
    portText = bracketed[2];
  } else if (rest.includes(':') && parseAddress(rest)?.family === 6) {
    // (Only an IPv6 address has a colon here: other hosts are not looked up as addresses.)
    host = rest;
  } else {
    const plain = /^([A-Za-z0-9_][A-Za-z0-9._-]*)(?::(\d+))?$/.exec(rest);
    if (!plain) return undefined;
    host = plain[1] ?? '';
    portText = plain[2];
  }
  let port: number | undefined;
  if (portText !== undefined) {
    port = Number(portText);
    if (!isPort(port)) return undefined;
  }
  if (user === undefined) return port === undefined ? {host} : {host, port};
  return port === undefined ? {user, host} : {user, host, port};
}

/** Same machine and port, whatever the login name or spelling of the address. */
function destinationKey(destination: SshDestination): string {
  // Only an IPv6 host has other spellings (an IPv4 one is read in its canonical spelling only,
  // which lower case leaves as it is). A host never holds "#": without a port, the host is the key.
  const {host, port} = destination;
  const machine = host.includes(':') ? (canonicalAddress(host) ?? host.toLowerCase()) : host.toLowerCase();
  return port === undefined ? machine : `${machine}#${port}`;
}

// ---------------------------------------------------------------------------
// Loose readers for the semantic pass: it runs even when the shape is wrong,
// and simply skips the pieces zod already complained about.

function asArray(value: unknown): readonly unknown[] {
  return Array.isArray(value) ? value : [];
}
function asRecord(value: unknown): Readonly<Record<string, unknown>> | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}
function asString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
function asPortSpec(value: unknown): number | string | undefined {
  return typeof value === 'number' || typeof value === 'string' ? value : undefined;
}

class Problems {
  readonly lines: string[] = [];
  add(path: readonly PathKey[], message: string): void {
    this.lines.push(`${formatPath(path)}: ${message}`);
  }
}

/** How a `from` is understood; the compiler uses the same resolution order. */
export type SourceKind =
  | {readonly kind: 'internet'}
  | {readonly kind: 'private'}
  | {readonly kind: 'role'; readonly role: string}
  | {readonly kind: 'host'; readonly host: string}
  | {readonly kind: 'cidr'; readonly family: 4 | 6; readonly cidr: string};

/** The host names of an inventory: a set, or any map keyed by them. */
export type HostNames = Pick<ReadonlySet<string>, 'has'>;

export function classifySource(
  from: string,
  roleNames: ReadonlySet<string>,
  hostNames: HostNames,
): SourceKind | {readonly kind: 'invalid'; readonly reason: string} {
  if (from === 'internet') return {kind: 'internet'};
  if (from === 'private') return {kind: 'private'};
  if (roleNames.has(from)) return {kind: 'role', role: from};
  if (hostNames.has(from)) return {kind: 'host', host: from};
  const looksLikeAddress = from.includes(':') || from.includes('/') || /^[\d.]+$/.test(from);
  if (looksLikeAddress) {
    const cidr = parseCidrDetailed(from);
    if (cidr.ok) return {kind: 'cidr', family: cidr.cidr.family, cidr: cidr.cidr.text};
    return {kind: 'invalid', reason: `${JSON.stringify(from)} ${cidr.reason}`};
  }
  return {
    kind: 'invalid',
    reason: `${JSON.stringify(from)} is not a role, a host, a CIDR, "internet" or "private" (roles: ${[...roleNames].sort().join(', ')})`,
  };
}

// ---------------------------------------------------------------------------
// Validation

export function parseInventoryText(text: string, label: string): Inventory {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new InputError([`${label}: not valid JSON (${reason})`]);
  }
  return validate(json, true);
}

export function validateInventory(json: unknown): Inventory {
  return validate(json, false);
}

/** `ownsJson`: the JSON was parsed here and nothing else holds it, so the inventory may keep its lists. */
function validate(json: unknown, ownsJson: boolean): Inventory {
  const parsed = hasInventoryShape(json)
    ? ({success: true, data: json} as const)
    : inventorySchema.safeParse(json, {reportInput: true});
  const problems = new Problems();
  if (!parsed.success) problems.lines.push(...zodProblems(parsed.error));
  const respelled = new RespelledAddresses();
  checkMeaning(json, problems, respelled);
  if (problems.lines.length > 0 || !parsed.success) {
    // Order by appearance is already path order within each pass; keep zod's lines first.
    throw new InputError(problems.lines.length > 0 ? dedupe(problems.lines) : ['inventory: invalid']);
  }
  return normalize(parsed.data, ownsJson, respelled);
}

function dedupe(lines: readonly string[]): string[] {
  return [...new Set(lines)];
}

/**
 * The canonical spelling of each host's address lists, found while checking them, for
 * normalization: only the lists spelled otherwise are kept (`hosts[i].addresses[side]`).
 */
class RespelledAddresses {
  readonly #lists: (readonly string[] | undefined)[] = [];
  set(hostIndex: number, side: Side, list: readonly string[]): void {
    this.#lists[2 * hostIndex + (side === 'public' ? 0 : 1)] = list;
  }
  get(hostIndex: number, side: Side): readonly string[] | undefined {
    return this.#lists[2 * hostIndex + (side === 'public' ? 0 : 1)];
  }
}

function checkMeaning(json: unknown, problems: Problems, respelled: RespelledAddresses): void {
  const root = asRecord(json);
  if (!root) return; // zod reported the wrong type
  const rawRoles = asRecord(root['roles']) ?? {};
  const rawHosts = asArray(root['hosts']);
  if (Array.isArray(root['hosts']) && rawHosts.length === 0) {
    problems.add(['hosts'], 'the fleet is empty (add at least one host)');
  }

  const roleNames = new Set<string>([...Object.keys(BUILTIN_ROLES), ...Object.keys(rawRoles)]);
  /** Every host name, with the index of the first host that has it. */
  const firstHostByName = new Map<string, number>();
  for (let index = 0; index < rawHosts.length; index += 1) {
    const name = asString(asRecord(rawHosts[index])?.['name']);
    if (name !== undefined && !firstHostByName.has(name)) firstHostByName.set(name, index);
  }
  const hostNames: HostNames = firstHostByName;

  // Role definitions.
  for (const [roleName, rawRole] of Object.entries(rawRoles)) {
    if (!NAME_PATTERN.test(roleName)) {
      problems.add(['roles', roleName], `role name ${JSON.stringify(roleName)} may only use A-Z a-z 0-9 . _ -`);
    } else if (roleName.length > MAX_NAME_LENGTH) {
      problems.add(['roles', roleName], `role name is longer than ${MAX_NAME_LENGTH} characters`);
    } else if (RESERVED_SOURCES.includes(roleName)) {
      problems.add(['roles', roleName], `"${roleName}" is reserved (it already means a source)`);
    }
    const role = asRecord(rawRole);
    if (!role) continue;
    for (const [index, rawOpening] of asArray(role['accept']).entries()) {
      const opening = asRecord(rawOpening);
      if (!opening) continue;
      const ports = asArray(opening['ports']);
      if (Array.isArray(opening['ports']) && ports.length === 0) {
        problems.add(['roles', roleName, 'accept', index, 'ports'], 'no ports given');
      }
      checkPorts(ports, ['roles', roleName, 'accept', index, 'ports'], problems);
      checkSource(opening['from'], ['roles', roleName, 'accept', index, 'from'], roleNames, hostNames, problems);
    }
    checkPorts(asArray(role['peers']), ['roles', roleName, 'peers'], problems);
  }

  // Hosts.
  const firstHostByDestination = new Map<string, number>();
  /** The index of the host that first listed each canonical address. */
  const addressOwner = new Map<string, number>();
  const addressesOfHost = {seenOnHost: [] as string[], seenOnSide: [] as string[]};
  for (let index = 0; index < rawHosts.length; index += 1) {
    const host = asRecord(rawHosts[index]);
    if (!host) continue;
    const name = asString(host['name']);
    if (name !== undefined) {
      if (!NAME_PATTERN.test(name)) {
        problems.add(['hosts', index, 'name'], `${JSON.stringify(name)} may only use A-Z a-z 0-9 . _ -`);
      } else if (name.length > MAX_NAME_LENGTH) {
        problems.add(['hosts', index, 'name'], `longer than ${MAX_NAME_LENGTH} characters`);
      } else if (RESERVED_SOURCES.includes(name)) {
        problems.add(['hosts', index, 'name'], `"${name}" is reserved (it already means a source)`);
      } else if (DIGITS_AND_DOTS.test(name) && parseAddress(name) !== undefined) {
        problems.add(['hosts', index, 'name'], `"${name}" looks like an address (a "from" would be ambiguous)`);
      } else if (roleNames.has(name)) {
        problems.add(['hosts', index, 'name'], `"${name}" is also a role name (a "from" would be ambiguous)`);
      }
      const earlier = firstHostByName.get(name);
      if (earlier !== index) problems.add(['hosts', index, 'name'], `duplicate name "${name}" (also hosts[${earlier}])`);
    }

    const ssh = asString(host['ssh']);
    if (ssh !== undefined) {
      const destination = parseSshDestination(ssh);
      if (!destination) {
        problems.add(
          ['hosts', index, 'ssh'],
          `${JSON.stringify(ssh)} is not an ssh destination (use an ssh config alias or [user@]host[:port])`,
        );
      } else {
        const key = destinationKey(destination);
        const earlier = firstHostByDestination.get(key);
        if (earlier === undefined) firstHostByDestination.set(key, index);
        else problems.add(['hosts', index, 'ssh'], `${JSON.stringify(ssh)} is the same destination as hosts[${earlier}]`);
      }
    }

    const hostRoles = asArray(host['roles']);
    for (let roleIndex = 0; roleIndex < hostRoles.length; roleIndex += 1) {
      const roleName = asString(hostRoles[roleIndex]);
      if (roleName === undefined) continue;
      if (!roleNames.has(roleName)) {
        problems.add(
          ['hosts', index, 'roles', roleIndex],
          `unknown role ${JSON.stringify(roleName)} (known: ${[...roleNames].sort().join(', ')})`,
        );
      } else if (hostRoles.indexOf(roleName) < roleIndex) {
        problems.add(['hosts', index, 'roles', roleIndex], `role "${roleName}" is listed twice`);
      }
    }

    const jump = asString(host['jump']);
    if (jump !== undefined && !hostNames.has(jump)) {
      if (/[@.:]/.test(jump)) {
        if (!parseSshDestination(jump)) {
          problems.add(['hosts', index, 'jump'], `${JSON.stringify(jump)} is not an ssh destination ([user@]host[:port])`);
        }
      } else {
        problems.add(
          ['hosts', index, 'jump'],
          `"${jump}" points nowhere (not a host of this inventory; a destination needs @, . or :)`,
        );
      }
    }

    for (const [allowIndex, rawAllow] of asArray(host['allow']).entries()) {
      const allow = asRecord(rawAllow);
      if (!allow) continue;
      const port = asPortSpec(allow['port']);
      if (port !== undefined) {
        const result = parsePortSpec(port);
        if (!result.ok) problems.add(['hosts', index, 'allow', allowIndex, 'port'], result.reason);
      }
      checkSource(allow['from'], ['hosts', index, 'allow', allowIndex, 'from'], roleNames, hostNames, problems);
    }

    checkFacts(host, index, rawHosts, addressOwner, problems, respelled, addressesOfHost);
  }

  checkJumpCircles(rawHosts, firstHostByName, problems);
}

function checkPorts(ports: readonly unknown[], path: readonly PathKey[], problems: Problems): void {
  for (const [index, rawPort] of ports.entries()) {
    const port = asPortSpec(rawPort);
    if (port === undefined) continue;
    const result = parsePortSpec(port);
    if (!result.ok) problems.add([...path, index], result.reason);
  }
}

function checkSource(
  rawFrom: unknown,
  path: readonly PathKey[],
  roleNames: ReadonlySet<string>,
  hostNames: HostNames,
  problems: Problems,
): void {
  const from = asString(rawFrom);
  if (from === undefined) return;
  const source = classifySource(from, roleNames, hostNames);
  if (source.kind === 'invalid') problems.add(path, source.reason);
}

function checkFacts(
  host: Readonly<Record<string, unknown>>,
  index: number,
  rawHosts: readonly unknown[],
  addressOwner: Map<string, number>,
  problems: Problems,
  respelled: RespelledAddresses,
  scratch: {readonly seenOnHost: string[]; readonly seenOnSide: string[]},
): void {
  const interfaces = asRecord(host['interfaces']);
  const publicInterface = asString(interfaces?.['public']);
  const privateInterface = asString(interfaces?.['private']);
  checkInterfaceName(publicInterface, index, 'public', problems);
  checkInterfaceName(privateInterface, index, 'private', problems);
  if (publicInterface !== undefined && publicInterface === privateInterface) {
    problems.add(['hosts', index, 'interfaces', 'private'], `"${privateInterface}" is also the public interface`);
  }

  const addresses = asRecord(host['addresses']);
  if (host['addresses'] === undefined || !addresses) return;
  if (host['interfaces'] === undefined) {
    problems.add(['hosts', index, 'addresses'], 'addresses given without interfaces (give both, or neither to discover them)');
  }
  // Which side listed each address of this host (a handful: a list, not a map; two lists reused
  // from host to host rather than two new ones each).
  const {seenOnHost, seenOnSide} = scratch;
  seenOnHost.length = 0;
  seenOnSide.length = 0;
  for (const side of SIDES) {
    const list = asArray(addresses[side]);
    const interfaceName = side === 'public' ? publicInterface : privateInterface;
    if (interfaces && list.length > 0 && interfaceName === undefined) {
      problems.add(['hosts', index, 'addresses', side], `${side} addresses given without interfaces.${side}`);
    }
    if (interfaces && list.length === 0 && interfaceName !== undefined) {
      problems.add(['hosts', index, 'interfaces', side], `a ${side} interface given without addresses.${side}`);
    }
    /** The list in canonical spelling, from the first address spelled otherwise on (a valid list has strings only). */
    let respelledList: string[] | undefined;
    for (let addressIndex = 0; addressIndex < list.length; addressIndex += 1) {
      const text = asString(list[addressIndex]);
      if (text === undefined) continue;
      if (text.includes('/')) {
        problems.add(['hosts', index, 'addresses', side, addressIndex], `${JSON.stringify(text)} is not an address (give it without /prefix)`);
        continue;
      }
      const canonical = canonicalAddress(text);
      if (canonical === undefined) {
        problems.add(['hosts', index, 'addresses', side, addressIndex], `${JSON.stringify(text)} is not an IPv4/IPv6 address`);
        continue;
      }
      if (respelledList) respelledList.push(canonical);
      else if (canonical !== text) (respelledList = list.slice(0, addressIndex) as string[]).push(canonical);
      const seenAt = seenOnHost.lastIndexOf(canonical);
      const sideSeen = seenAt === -1 ? undefined : seenOnSide[seenAt];
      if (sideSeen !== undefined) {
        problems.add(
          ['hosts', index, 'addresses', side, addressIndex],
          sideSeen === side ? `${canonical} is listed twice` : `${canonical} is also listed as ${sideSeen}`,
        );
        continue;
      }
      seenOnHost.push(canonical);
      seenOnSide.push(side);
      const owner = addressOwner.get(canonical);
      if (owner !== undefined && owner !== index) {
        const ownerName = asString(asRecord(rawHosts[owner])?.['name']) ?? `hosts[${owner}]`;
        problems.add(['hosts', index, 'addresses', side, addressIndex], `${canonical} is also an address of ${ownerName} (hosts[${owner}])`);
      } else {
        addressOwner.set(canonical, index);
      }
    }
    if (respelledList) respelled.set(index, side, respelledList);
  }
}

const SIDES = ['public', 'private'] as const;
type Side = (typeof SIDES)[number];

function checkInterfaceName(name: string | undefined, index: number, side: 'public' | 'private', problems: Problems): void {
  if (name === undefined) return;
  if (name === 'lo') problems.add(['hosts', index, 'interfaces', side], '"lo" is the loopback interface');
  else if (!INTERFACE_PATTERN.test(name)) {
    problems.add(['hosts', index, 'interfaces', side], `${JSON.stringify(name)} is not an interface name`);
  }
}

/** `indexOf`: each host name with the index of the first host that has it (whose jump counts). */
function checkJumpCircles(rawHosts: readonly unknown[], indexOf: ReadonlyMap<string, number>, problems: Problems): void {
  const jumpOf = (name: string): string | undefined => {
    const index = indexOf.get(name);
    return index === undefined ? undefined : asString(asRecord(rawHosts[index])?.['jump']);
  };
  for (const [name, index] of indexOf) {
    const jump = asString(asRecord(rawHosts[index])?.['jump']);
    if (jump === undefined || !indexOf.has(jump)) continue;
    if (jump === name) {
      problems.add(['hosts', index, 'jump'], `"${name}" jumps through itself`);
      continue;
    }
    // Follow the chain; report when it comes back to this host.
    const chain = [name];
    let current: string | undefined = jump;
    while (current !== undefined && indexOf.has(current) && !chain.includes(current)) {
      chain.push(current);
      current = jumpOf(current);
    }
    if (current === name) {
      problems.add(['hosts', index, 'jump'], `jump hosts go in a circle (${[...chain, name].join(' -> ')})`);
    }
  }
}

// ---------------------------------------------------------------------------
// Normalization (only reached when everything above passed)

function portRanges(specs: readonly (number | string)[]): PortRange[] {
  return specs.map((spec) => {
    const result = parsePortSpec(spec);
    if (!result.ok) throw new Error(`unreachable: validated port ${String(spec)}`);
    return result.range;
  });
}

function normalize(raw: RawInventory, ownsJson: boolean, respelled: RespelledAddresses): Inventory {
  const roles: Record<string, RoleOverride> = {};
  for (const [name, role] of Object.entries(raw.roles ?? {})) {
    roles[name] = {
      ...(role.description === undefined ? {} : {description: role.description}),
      ...(role.accept === undefined
        ? {}
        : {
            accept: role.accept.map((opening) => ({
              ports: portRanges(opening.ports),
              proto: opening.proto ?? 'tcp',
              from: opening.from,
            })),
          }),
      ...(role.peers === undefined ? {} : {peers: portRanges(role.peers)}),
      ...(role.peersProto === undefined ? {} : {peersProto: role.peersProto}),
    };
  }
  const hosts: HostEntry[] = raw.hosts.map((host, index) => normalizeHost(host, index, ownsJson, respelled));
  return {options: {...DEFAULT_OPTIONS, ...raw.options}, roles, hosts};
}

type Mutable<T> = {-readonly [K in keyof T]: T[K]};

/** The `allow` of every host that has none: one read-only list shared, not one each. */
const NO_OPENINGS: readonly Opening[] = Object.freeze([]);

/**
 * One host entry: absent keys stay absent, and the keys keep their order (name, ssh, roles, jump,
 * allow, interfaces, addresses). With `ownsJson`, lists and objects that need no change are kept, not copied.
 */
function normalizeHost(host: RawInventory['hosts'][number], index: number, ownsJson: boolean, respelled: RespelledAddresses): HostEntry {
  const roles = ownsJson ? host.roles : [...host.roles];
  const allow =
    host.allow === undefined || host.allow.length === 0
      ? NO_OPENINGS
      : host.allow.map((opening) => ({
          ports: portRanges([opening.port]),
          proto: opening.proto ?? 'tcp',
          from: opening.from,
        }));
  const entry: Mutable<HostEntry> =
    host.jump === undefined
      ? {name: host.name, ssh: host.ssh, roles, allow}
      : {name: host.name, ssh: host.ssh, roles, jump: host.jump, allow};
  if (host.interfaces !== undefined) {
    if (ownsJson && isPublicFirst(host.interfaces)) {
      entry.interfaces = host.interfaces;
    } else {
      const interfaces: {public?: string; private?: string} = {};
      if (host.interfaces.public !== undefined) interfaces.public = host.interfaces.public;
      if (host.interfaces.private !== undefined) interfaces.private = host.interfaces.private;
      entry.interfaces = interfaces;
    }
  }
  if (host.addresses !== undefined) {
    // Checking the addresses found their canonical spelling (checkFacts): a list spelled so already is kept.
    entry.addresses = {
      public: respelled.get(index, 'public') ?? keptList(host.addresses.public, ownsJson),
      private: respelled.get(index, 'private') ?? keptList(host.addresses.private, ownsJson),
    };
  }
  return entry;
}

/** A list that needs no change: itself when it may be kept, else a copy. */
function keptList(list: readonly string[] | undefined, mayKeep: boolean): readonly string[] {
  if (list === undefined) return [];
  return mayKeep ? list : list.slice();
}

/**
 * The interfaces object read from the JSON (only these keys, no undefined values: hasInventoryShape
 * or zod made sure) is already in normal form unless "private" comes before "public".
 */
function isPublicFirst(interfaces: {readonly public?: string; readonly private?: string}): boolean {
  for (const key in interfaces) return key === 'public' || interfaces.public === undefined;
  return true;
}

// ---------------------------------------------------------------------------

/** The ssh port the operator reaches this host on, when the destination says it. */
export function sshPortOf(host: HostEntry): number | undefined {
  return parseSshDestination(host.ssh)?.port;
}

/** Facts written in the inventory (both interfaces and addresses given), else undefined: discover them. */
export function factsFromInventory(host: HostEntry): HostFacts | undefined {
  if (!host.interfaces || !host.addresses) return undefined;
  const sshPort = sshPortOf(host);
  // The entry's read-only lists, shared (a large fleet would copy every one for nothing).
  return sshPort === undefined
    ? {interfaces: host.interfaces, addresses: host.addresses}
    : {interfaces: host.interfaces, addresses: host.addresses, sshPort};
}

export function fleetOptions(inv: Inventory): FleetOptions {
  return inv.options;
}
