// The wizard's state in one reducer above the screens, so Esc can go back a step
// without losing choices. Pure: no React, no I/O.

import type {OtherFirewallRemedy} from '../core/model.js';
import type {
  ApplyProgress,
  ApplyStep,
  DiscoveredHost,
  FleetAllow,
  FleetDoc,
  FleetHost,
  HostState,
  InterfaceSide,
  KeepResult,
  ListeningHost,
  PendingBatch,
  PreviewResult,
  RestoredHost,
  WizardSettings,
} from './services.js';

export type Screen =
  | 'home'
  | 'add-server'
  | 'add-from-config'
  | 'settings'
  | 'import'
  | 'export'
  | 'discover'
  | 'roles'
  | 'preview'
  | 'apply'
  | 'countdown'
  | 'done'
  | 'quick-edit'
  | 'troubleshoot';

export type DiscoverEntry = {readonly phase: 'connecting' | 'reading'} | {readonly phase: 'finished'; readonly result: DiscoveredHost};

export type Outcome =
  | {readonly kind: 'kept'; readonly result: KeepResult}
  | {readonly kind: 'rolled-back'; readonly why: 'operator' | 'expired' | 'failed'; readonly hosts: readonly RestoredHost[]; readonly reasons?: readonly string[]}
  | {readonly kind: 'refused'; readonly reasons: readonly string[]};

export type StepStatus = ApplyProgress['status'] | 'waiting';

/** A question on the fleet home before something acts on servers. */
export type Confirming =
  /** A pending batch this machine did not begin: keep or roll back someone else's change? */
  | {readonly kind: 'others-batch'; readonly batch: PendingBatch; readonly owner: string}
  /** Undo the last change: put back the rules from before `batch` on `hosts`. */
  | {readonly kind: 'undo'; readonly batch: string; readonly hosts: readonly string[]}
  /** Adopt a drifted host's live change into its plan as `allow` entries. */
  | {readonly kind: 'adopt'; readonly host: string; readonly allow: readonly FleetAllow[]};

export interface PrintedHost {
  readonly id: string;
  readonly host: string;
  readonly steps: Readonly<Partial<Record<ApplyStep, {status: StepStatus; detail?: string}>>>;
}

export interface WizardState {
  readonly screen: Screen;
  /** Screens to return to with Esc. */
  readonly history: readonly Screen[];
  /** The saved fleet. */
  readonly fleet: FleetDoc;
  readonly settings: WizardSettings;
  /** The fleet being changed (roles, facts, openings); becomes `fleet` when the operator keeps it. */
  readonly draft: FleetDoc;
  /** The hosts this run changes (the whole fleet for a lockdown, one host for a quick edit). */
  readonly scope: readonly string[];
  /** After discovery: 'roles' for a lockdown, 'preview' for a quick edit. */
  readonly afterDiscover: 'roles' | 'preview';
  readonly selected: string | undefined;
  readonly hostStates: ReadonlyMap<string, HostState>;
  readonly discovery: Readonly<Record<string, DiscoverEntry>>;
  readonly roleChoices: Readonly<Record<string, readonly string[]>>;
  readonly preview: PreviewResult | undefined;
  readonly applySteps: Readonly<Record<string, Readonly<Partial<Record<ApplyStep, {status: StepStatus; detail?: string}>>>>>;
  /** Hosts of this apply that finished (verified, or a step failed), in the order they finished. */
  readonly applyFinished: readonly string[];
  /** Every finished host of every apply of this session, append-only: printed once above the screens. */
  readonly printed: readonly PrintedHost[];
  readonly batch: PendingBatch | undefined;
  readonly outcome: Outcome | undefined;
  /** One line for the operator (an error or what just happened). */
  readonly message: string | undefined;
  /** A yes/no question waiting on the fleet home. */
  readonly confirming: Confirming | undefined;
}

export type Action =
  | {type: 'loaded'; fleet: FleetDoc; settings: WizardSettings}
  | {type: 'go'; screen: Screen}
  | {type: 'back'}
  | {type: 'home'}
  | {type: 'select'; host: string | undefined}
  | {type: 'select-move'; delta: number}
  | {type: 'message'; text: string | undefined}
  | {type: 'host-states'; states: ReadonlyMap<string, HostState>}
  | {type: 'host-state'; host: string; state: HostState}
  | {type: 'fleet-changed'; fleet: FleetDoc; settings?: WizardSettings}
  | {type: 'start-lockdown'}
  | {type: 'start-quick-edit'; host: string; draft: FleetDoc}
  /**
   * Re-apply the saved plan to a host that drifted (or `draft`, the plan with its live change
   * adopted): its preview (the diff against the live rules), then the apply and countdown.
   */
  | {type: 'start-reapply'; host: string; draft?: FleetDoc}
  | {type: 'ask-adopt'; host: string; allow: readonly FleetAllow[]}
  | {type: 'discover-progress'; host: string; phase: 'connecting' | 'reading'}
  | {type: 'discovered'; result: DiscoveredHost}
  | {type: 'set-side'; host: string; iface: string; side: InterfaceSide}
  | {type: 'toggle-role'; host: string; role: string}
  | {type: 'set-allow'; host: string; allow: readonly FleetAllow[]}
  | {type: 'set-role-peers'; role: string; peers: readonly string[]}
  /** The preview's choice about another firewall that drops planned flows (undefined: refuse). */
  | {type: 'set-other-firewall'; remedy: OtherFirewallRemedy | undefined}
  | {type: 'roles-done'}
  | {type: 'preview-ready'; preview: PreviewResult}
  | {type: 'apply-started'}
  | {type: 'apply-progress'; event: ApplyProgress}
  | {type: 'apply-outcome-pending'; batch: PendingBatch}
  /** startedHere false: someone else's batch, asked about first (the owner shown). */
  | {type: 'resume-batch'; batch: PendingBatch; startedHere?: boolean}
  | {type: 'ask-undo'; batch: string; hosts: readonly string[]}
  | {type: 'confirm-answer'; yes: boolean}
  | {type: 'start-undo'; hosts: readonly string[]}
  | {type: 'finished'; outcome: Outcome}
  | {type: 'outcome-updated'; outcome: Outcome};

export function initialState(): WizardState {
  return {
    screen: 'home',
    history: [],
    fleet: {hosts: []},
    settings: {deadlineSeconds: 120},
    draft: {hosts: []},
    scope: [],
    afterDiscover: 'roles',
    selected: undefined,
    hostStates: new Map(),
    discovery: {},
    roleChoices: {},
    preview: undefined,
    applySteps: {},
    applyFinished: [],
    printed: [],
    batch: undefined,
    outcome: undefined,
    message: undefined,
    confirming: undefined,
  };
}

type HostSteps = WizardState['applySteps'][string];

/** A host's apply is over when a step failed or the last step (verify) is no longer running or waiting. */
export function applyFinished(steps: HostSteps | undefined): boolean {
  if (!steps) return false;
  const verify = steps.verify?.status;
  return Object.values(steps).some((entry) => entry?.status === 'failed') || verify === 'done' || verify === 'skipped';
}

/** Screens Esc cannot leave: the servers are changing or counting down; only K / R decide. */
const NO_WAY_BACK: ReadonlySet<Screen> = new Set(['apply', 'countdown']);

export function canGoBack(state: WizardState): boolean {
  return !NO_WAY_BACK.has(state.screen) && state.history.length > 0;
}

function push(state: WizardState, screen: Screen): WizardState {
  if (state.screen === screen) return state;
  return {...state, screen, history: [...state.history, state.screen], message: undefined};
}

function updateHost(fleet: FleetDoc, name: string, change: (host: FleetHost) => FleetHost): FleetDoc {
  return {...fleet, hosts: fleet.hosts.map((host) => (host.name === name ? change(host) : host))};
}

/** Interfaces and addresses for the inventory, from the (possibly corrected) discovery. */
export function factsFromDiscovery(result: DiscoveredHost): Pick<FleetHost, 'interfaces' | 'addresses'> | undefined {
  if (!result.ok) return undefined;
  const publicIface = result.interfaces.find((iface) => iface.side === 'public');
  const privateIface = result.interfaces.find((iface) => iface.side === 'private');
  const interfaces: {public?: string; private?: string} = {};
  if (publicIface) interfaces.public = publicIface.name;
  if (privateIface) interfaces.private = privateIface.name;
  return {
    interfaces,
    addresses: {public: publicIface ? [...publicIface.addresses] : [], private: privateIface ? [...privateIface.addresses] : []},
  };
}

/** Hosts whose interfaces and addresses the fleet document does not give (they need discovery). */
export function hostsWithoutFacts(fleet: FleetDoc): string[] {
  return fleet.hosts.filter((host) => !host.interfaces || !host.addresses).map((host) => host.name);
}

/** Roles to pre-select: what the host has already, else what discovery suggests from listening services. */
export function preselectedRoles(host: FleetHost, result: DiscoveredHost | undefined): readonly string[] {
  if (host.roles.length > 0) return host.roles;
  return result?.ok ? result.suggestedRoles : [];
}

/** A batch left pending (e.g. by a run that died): back to its countdown; keeping saves the fleet as it is. */
function resume(state: WizardState, batch: PendingBatch): WizardState {
  return {...push(state, 'countdown'), batch, scope: batch.hosts, draft: state.fleet, outcome: undefined};
}

export function reducer(state: WizardState, action: Action): WizardState {
  switch (action.type) {
    case 'loaded':
      return {...state, fleet: action.fleet, draft: action.fleet, settings: action.settings};
    case 'go':
      return push(state, action.screen);
    case 'back': {
      if (!canGoBack(state)) return state;
      const history = state.history.slice(0, -1);
      const previous = state.history.at(-1) ?? 'home';
      return {...state, screen: previous, history, message: undefined};
    }
    case 'home':
      return {...state, screen: 'home', history: [], message: undefined, draft: state.fleet};
    case 'select':
      return {...state, selected: action.host};
    case 'select-move': {
      // In the reducer, so quick presses each move one row (no stale index from the last render).
      const hosts = state.fleet.hosts;
      if (hosts.length === 0) return state;
      const index = Math.max(0, hosts.findIndex((host) => host.name === state.selected));
      // One step wraps around the ends; a page (or Home/End) stops at them.
      const next = Math.abs(action.delta) === 1 ? (index + action.delta + hosts.length) % hosts.length : Math.max(0, Math.min(hosts.length - 1, index + action.delta));
      return {...state, selected: hosts[next]?.name};
    }
    case 'message':
      return {...state, message: action.text};
    case 'host-states':
      return {...state, hostStates: action.states};
    case 'host-state':
      return {...state, hostStates: new Map(state.hostStates).set(action.host, action.state)};
    case 'fleet-changed':
      return {...state, fleet: action.fleet, draft: action.fleet, settings: action.settings ?? state.settings};
    case 'start-lockdown': {
      const scope = state.fleet.hosts.map((host) => host.name);
      const discovery = Object.fromEntries(scope.map((name) => [name, {phase: 'connecting'} as DiscoverEntry]));
      return {
        ...push(state, 'discover'),
        draft: state.fleet,
        scope,
        afterDiscover: 'roles',
        discovery,
        roleChoices: {},
        preview: undefined,
        applySteps: {},
        applyFinished: [],
        batch: undefined,
        outcome: undefined,
      };
    }
    case 'start-reapply': {
      // Compiling needs every server's interfaces: the ones the fleet does not know are discovered first.
      const draft = action.draft ?? state.fleet;
      const missing = hostsWithoutFacts(draft);
      const base: WizardState = {
        ...state,
        draft,
        scope: [action.host],
        afterDiscover: 'preview',
        discovery: Object.fromEntries(missing.map((name) => [name, {phase: 'connecting'} as DiscoverEntry])),
        roleChoices: {},
        preview: undefined,
        outcome: undefined,
        batch: undefined,
        applySteps: {},
        applyFinished: [],
      };
      return push(base, missing.length > 0 ? 'discover' : 'preview');
    }
    case 'start-quick-edit': {
      const roles = action.draft.hosts.find((host) => host.name === action.host)?.roles ?? [];
      return {
        ...push(state, 'quick-edit'),
        draft: action.draft,
        scope: [action.host],
        afterDiscover: 'preview',
        discovery: {},
        roleChoices: {[action.host]: roles},
        preview: undefined,
        outcome: undefined,
        batch: undefined,
        applySteps: {},
        applyFinished: [],
      };
    }
    case 'discover-progress':
      return {...state, discovery: {...state.discovery, [action.host]: {phase: action.phase}}};
    case 'discovered': {
      const discovery = {...state.discovery, [action.result.host]: {phase: 'finished', result: action.result} as DiscoverEntry};
      const host = state.draft.hosts.find((candidate) => candidate.name === action.result.host);
      const roleChoices =
        host && state.roleChoices[host.name] === undefined
          ? {...state.roleChoices, [host.name]: preselectedRoles(host, action.result)}
          : state.roleChoices;
      return {...state, discovery, roleChoices};
    }
    case 'set-side': {
      const entry = state.discovery[action.host];
      if (!entry || entry.phase !== 'finished' || !entry.result.ok) return state;
      const result = entry.result;
      const interfaces = result.interfaces.map((iface) => {
        if (iface.name === action.iface) return {...iface, side: action.side};
        // One public and one private interface per host: choosing a side takes it from the other.
        if (action.side !== 'ignore' && iface.side === action.side) return {...iface, side: 'ignore' as const};
        return iface;
      });
      return {...state, discovery: {...state.discovery, [action.host]: {phase: 'finished', result: {...result, interfaces}}}};
    }
    case 'toggle-role': {
      const current = state.roleChoices[action.host] ?? [];
      const next = current.includes(action.role) ? current.filter((role) => role !== action.role) : [...current, action.role].sort();
      return {...state, roleChoices: {...state.roleChoices, [action.host]: next}};
    }
    case 'set-allow':
      return {...state, draft: updateHost(state.draft, action.host, (host) => ({...host, allow: action.allow}))};
    case 'set-other-firewall': {
      const {otherFirewall: _dropped, ...options} = state.draft.options ?? {};
      return {...state, draft: {...state.draft, options: action.remedy === undefined ? options : {...options, otherFirewall: action.remedy}}};
    }
    case 'set-role-peers': {
      // The role's other fields stay as the fleet gives them; `peers` replaces the built-in's.
      const current = state.draft.roles?.[action.role];
      const role = {...(typeof current === 'object' && current !== null ? current : {}), peers: [...action.peers]};
      return {...state, draft: {...state.draft, roles: {...state.draft.roles, [action.role]: role}}};
    }
    case 'roles-done': {
      // Write the chosen roles and the (corrected) facts into the draft; the saved fleet changes only when kept.
      let draft = state.draft;
      for (const [name, entry] of Object.entries(state.discovery)) {
        const facts = entry.phase === 'finished' ? factsFromDiscovery(entry.result) : undefined;
        if (facts) draft = updateHost(draft, name, (host) => ({...host, ...facts}));
      }
      for (const name of state.scope) {
        const roles = state.roleChoices[name];
        if (roles) draft = updateHost(draft, name, (host) => ({...host, roles: [...roles]}));
      }
      return {...state, draft};
    }
    case 'preview-ready':
      return {...state, preview: action.preview};
    case 'apply-started': {
      const applySteps = Object.fromEntries(state.scope.map((name) => [name, {}]));
      return {...push(state, 'apply'), applySteps, applyFinished: [], batch: undefined, outcome: undefined};
    }
    case 'apply-progress': {
      const {host, step, status, detail} = action.event;
      const steps = {...(state.applySteps[host] ?? {}), [step]: detail === undefined ? {status} : {status, detail}};
      const applySteps = {...state.applySteps, [host]: steps};
      if (state.applyFinished.includes(host) || !applyFinished(steps)) return {...state, applySteps};
      const printed = {id: `${state.printed.length}/${host}`, host, steps};
      return {...state, applySteps, applyFinished: [...state.applyFinished, host], printed: [...state.printed, printed]};
    }
    case 'apply-outcome-pending':
      return {...push(state, 'countdown'), batch: action.batch};
    case 'resume-batch':
      if (action.startedHere === false) return {...state, confirming: {kind: 'others-batch', batch: action.batch, owner: action.batch.owner ?? 'an unknown owner'}};
      return resume(state, action.batch);
    case 'ask-undo':
      return {...state, confirming: {kind: 'undo', batch: action.batch, hosts: action.hosts}};
    case 'confirm-answer': {
      const asked = state.confirming;
      const cleared = {...state, confirming: undefined};
      if (!action.yes || !asked) return cleared;
      // Undo goes on in the App (start-undo, then the apply screen); a batch of someone else's opens its countdown.
      return asked.kind === 'others-batch' ? resume(cleared, asked.batch) : cleared;
    }
    case 'ask-adopt':
      return {...state, confirming: {kind: 'adopt', host: action.host, allow: action.allow}};
    case 'start-undo':
      // The saved fleet stays as it is; the servers go back to earlier rules.
      return {...state, draft: state.fleet, scope: action.hosts, applySteps: {}, batch: undefined, outcome: undefined};
    case 'outcome-updated':
      return {...state, outcome: action.outcome, message: undefined};
    case 'finished': {
      const kept = action.outcome.kind === 'kept';
      const fleet = kept ? state.draft : state.fleet;
      return {...push(state, 'done'), outcome: action.outcome, fleet, batch: kept || action.outcome.kind !== 'refused' ? undefined : state.batch};
    }
  }
}

/**
 * An opening as the operator types it: `PORT[-PORT][/tcp|/udp] [from SOURCE]`, e.g.
 * `8443`, `8000-8100/udp from private`, `3306 from 10.0.0.5`. Source defaults to `defaultFrom`.
 * Returns the allow entry, or a one-line problem naming what is wrong.
 */
export function parseOpeningText(text: string, defaultFrom = 'internet'): FleetAllow | {problem: string} {
  const match = /^\s*(\d{1,5})(?:-(\d{1,5}))?(?:\/(tcp|udp))?(?:\s+from\s+(\S+))?\s*$/i.exec(text);
  if (!match) return {problem: `"${text.trim()}" is not an opening (PORT[-PORT][/tcp|udp] [from SOURCE], e.g. 8443/tcp from internet)`};
  const first = Number(match[1]);
  const last = match[2] === undefined ? first : Number(match[2]);
  if (first < 1 || first > 65535 || last < 1 || last > 65535) return {problem: `port: ${first > 65535 || first < 1 ? first : last} is outside 1-65535`};
  if (first > last) return {problem: `port: "${first}-${last}" is not a port range (first > last)`};
  const port = first === last ? first : `${first}-${last}`;
  const proto = (match[3]?.toLowerCase() ?? 'tcp') as 'tcp' | 'udp';
  return {port, proto, from: match[4] ?? defaultFrom};
}

export function describeAllow(allow: FleetAllow): string {
  return `${allow.proto ?? 'tcp'}/${allow.port} from ${allow.from}`;
}

/** A fleet name from a destination: the alias itself, or the host part made safe. */
export function nameFromDestination(destination: string): string {
  const withoutUser = destination.includes('@') ? destination.slice(destination.lastIndexOf('@') + 1) : destination;
  const withoutPort = withoutUser.startsWith('[') ? withoutUser.slice(1, withoutUser.indexOf(']')) : withoutUser.replace(/:\d+$/, '');
  return withoutPort.replace(/[^A-Za-z0-9._-]/g, '-');
}

/** ~/.ssh/config aliases the fleet does not have yet (by destination), in the config's order. */
export function aliasesNotInFleet(fleet: FleetDoc, aliases: readonly string[]): string[] {
  const taken = new Set(fleet.hosts.map((host) => host.ssh));
  return aliases.filter((alias, index) => !taken.has(alias) && aliases.indexOf(alias) === index);
}

/** The fleet with one host per alias (named after it; its ProxyJump, if any, comes from the ssh config). */
export function withHostsFromAliases(fleet: FleetDoc, aliases: readonly string[]): FleetDoc {
  const added = aliases.map((alias): FleetHost => ({name: nameFromDestination(alias), ssh: alias, roles: []}));
  return {...fleet, hosts: [...fleet.hosts, ...added]};
}

/** The kept servers whose rules a reboot would lose, said once for all of them (undefined: none). */
export function rebootWarning(result: KeepResult): string | undefined {
  const hosts = result.kept.filter((host) => !host.persistent).map((host) => host.host);
  if (hosts.length === 0) return undefined;
  return `live only, will NOT survive a reboot: ${hosts.join(', ')} (no iptables-persistent / iptables-services there)`;
}

/** The servers of this run with the roles chosen for them and what discovery saw listening. */
export function listeningHosts(state: WizardState): ListeningHost[] {
  return state.scope.flatMap((name) => {
    const entry = state.discovery[name];
    if (entry?.phase !== 'finished' || !entry.result.ok) return [];
    const roles = state.roleChoices[name] ?? state.draft.hosts.find((host) => host.name === name)?.roles ?? [];
    return [{name, roles, listening: entry.result.listening}];
  });
}
