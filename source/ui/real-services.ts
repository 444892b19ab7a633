// WizardServices over the real engine: the inventory validator and compiler (core), the
// access summary and lockout check (core), SSH, discovery and the fleet apply protocol (remote).
// The wizard drives the same functions as the headless commands; nothing is faked here.

import {readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import SSHConfig from 'ssh-config';
import {formatAccess, type FleetHost as AccessHost} from '../core/access.js';
import {describeDrift, fleetSync, type HostSync} from '../core/drift.js';
import {InputError, RefusedError} from '../core/errors.js';
import {factsFromInventory, parseInventoryText, validateInventory} from '../core/inventory.js';
import {diffRulesets, parseIptablesSave} from '../core/iptables-save.js';
import {checkLockout, operatorPaths, type ResolvedSsh} from '../core/lockout.js';
import {buildPlan, type Plan} from '../core/plan.js';
import type {HostFacts, RoleTemplate, Ruleset} from '../core/model.js';
import {renderRuleset} from '../core/render.js';
import {BUILTIN_ROLES, resolveRoles} from '../core/roles.js';
import {stripControl, stripControlLines} from '../core/terminal-text.js';
import {suggestPeerPorts} from '../core/peer-ports.js';
import {describeLiveRules, droppedPacketInWords} from '../core/rule-words.js';
import {ownPart, toOwnChains} from '../core/own-chains.js';
import type {HostDiscovery} from '../core/discovery/index.js';
import {hostStatus, snapshotDifferences, readLive} from '../remote/apply-protocol.js';
import {createConnector} from '../remote/connection.js';
import {discoverHost, readDockerFacts} from '../remote/discovery.js';
import type {DockerFacts} from '../core/docker.js';
import {applyFleet, confirmFleet, FleetApplyError, type ApplyFleetOptions, mapLimit, rollbackFleet, statusFleet, type FleetHostPlan, type HostOutcome, type HostStatusOutcome} from '../remote/fleet-apply.js';
import {LocalState, openPrivateStore} from '../remote/local-state.js';
import {snapshotPlans} from '../remote/rollback-to.js';
import {probePlan} from '../remote/probe.js';
import {differsFromPlan, formatResult, summarizeResults} from '../core/flows.js';
import {storeOptions} from '../remote/settings-directory.js';
import {resolveOperatorSsh} from '../remote/operator-ssh.js';
import {checkOtherFirewalls, otherFirewallDrops, readNativeRulesets} from '../remote/native-tables.js';
import {formatNativeDrops} from '../core/native-drops.js';
import {remedyAfterLoad} from '../remote/remedy.js';
import {chooseBackends, hostCandidate, restrictRefusal} from '../core/backend.js';
import {describePublished, publishedToRestrict, withPublishedRules} from '../core/docker.js';
import {buildMatrix} from '../core/matrix.js';
import {expandIncludes, readSshConfig} from '../remote/ssh-config.js';
import type {Connector, HostTarget, Prompter, RemoteHost} from '../remote/types.js';
import {
  APPLY_STEPS,
  DEFAULT_SETTINGS,
  type ApplyOutcome,
  type ApplyProgress,
  systemClock,
  type ApplyStep,
  type Clock,
  type DiscoveredHost,
  type DropLogView,
  type FleetAllow,
  type FleetDoc,
  type HostPreview,
  type HostState,
  type KeepResult,
  type PendingBatch,
  type RestoredHost,
  type WizardServices,
  type WizardSettings,
} from './services.js';

/** Fixed remote commands of the troubleshoot screen (never built from input). */
export const TROUBLESHOOT_COMMANDS = {
  countersV4: 'iptables-save -c -t filter',
  countersV6: 'ip6tables-save -c -t filter',
  dropLog: 'sh -s',
} as const;

/** Read on the server with `sh -s`: the newest drop-log lines and where they came from. */
export const DROP_LOG_SCRIPT = String.raw`PATH=/usr/sbin:/usr/bin:/sbin:/bin
if iptables -w -S IW-LOG-DROP >/dev/null 2>&1; then echo '@logging on'; else echo '@logging off'; fi
# The first source that has our lines wins; a readable source without lines is still named.
readable=''
report() {
  [ -n "$readable" ] || readable=$1
  if [ -n "$2" ]; then echo "@source $1"; printf '%s
' "$2"; exit 0; fi
}
if command -v journalctl >/dev/null 2>&1 && journalctl -k -n 1 --no-pager >/dev/null 2>&1; then
  report journalctl "$(journalctl -k --no-pager -o short-iso -n 5000 2>/dev/null | grep 'isolate-wizard DROP ' | tail -n 50)"
fi
if dmesg >/dev/null 2>&1; then
  report dmesg "$(dmesg 2>/dev/null | grep 'isolate-wizard DROP ' | tail -n 50)"
fi
for f in /var/log/kern.log /var/log/syslog /var/log/messages; do
  if [ -r "$f" ]; then report syslog "$(grep 'isolate-wizard DROP ' "$f" | tail -n 50)"; fi
done
[ -n "$readable" ] || readable=none
echo "@source $readable"
`;

export function parseDropLog(output: string): DropLogView {
  const lines = output.split('\n');
  const logging = lines.find((line) => line.startsWith('@logging '))?.slice('@logging '.length);
  const sourceText = lines.find((line) => line.startsWith('@source '))?.slice('@source '.length) ?? 'none';
  const source = sourceText === 'journalctl' || sourceText === 'dmesg' || sourceText === 'syslog' ? sourceText : 'none';
  const entries = lines.filter((line) => line.trim() !== '' && !line.startsWith('@')).map(stripControl);
  let note: string | undefined;
  if (logging !== 'on') note = 'drop logging is off on this server (settings → log dropped packets, then apply)';
  else if (source === 'none') note = 'the kernel log cannot be read on this server (no journalctl, dmesg or readable syslog)';
  return {source, lines: entries, ...(note === undefined ? {} : {note})};
}

export interface RealServicesOptions {
  readonly home: string;
  readonly env: NodeJS.ProcessEnv;
  /** Unknown host keys and secrets are asked through this (the wizard's PromptQueue). */
  readonly prompter: Prompter;
  readonly clock?: Clock;
  /** Another directory for the saved fleet and batches (tests); default: conf's directory. */
  readonly configDirectory?: string;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message.split('\n').join('; ') : String(error);
}

function targetsOf(fleet: FleetDoc): HostTarget[] {
  return fleet.hosts.map((host) => ({name: host.name, ssh: host.ssh, ...(host.jump === undefined ? {} : {jump: host.jump})}));
}

/** Aliases from ~/.ssh/config Host lines, without patterns. */
export function sshConfigAliases(configText: string): string[] {
  const aliases = new Set<string>();
  const visit = (config: SSHConfig) => {
    for (const line of config) {
      if (!('param' in line)) continue;
      if (line.param.toLowerCase() === 'host') {
        const values = typeof line.value === 'string' ? line.value.split(/\s+/) : line.value.map((item) => item.val);
        for (const value of values) if (value !== '' && !/[*?!]/.test(value)) aliases.add(value);
      }
      if ('config' in line && line.config) visit(line.config as SSHConfig);
    }
  };
  visit(SSHConfig.parse(configText));
  return [...aliases];
}

/** Status checks at once from the fleet home. */
export const STATUS_CONCURRENCY = 16;

/** What the fleet home shows for a host, from what its agent says and its drift. */
function hostStateOf(outcome: HostStatusOutcome, now: number, localBatch: string | undefined, sync: HostSync | undefined): HostState {
  const status = outcome.status;
  if (!status) return {kind: 'unreachable', reason: outcome.error ?? 'unknown error'};
  if (!status.pending && status.managed && sync) {
    if (sync.state === 'drifted') {
      const adopt = sync.adoptable?.flatMap((opening) =>
        opening.ports.map((range): FleetAllow => ({port: range.first === range.last ? range.first : `${range.first}-${range.last}`, proto: opening.protocol, from: opening.from})),
      );
      return {
        kind: 'drifted',
        drift: describeDrift(sync),
        ...(outcome.confirmedBatch === undefined ? {} : {batch: outcome.confirmedBatch}),
        ...(adopt === undefined ? {} : {adopt}),
      };
    }
    if (sync.state === undefined) return {kind: 'unchecked', reason: sync.reason ?? 'unknown'};
    if (sync.state === 'unmanaged') return {kind: 'unmanaged'};
  }
  if (status.pending) {
    const deadline = now + (status.secondsLeft ?? 0) * 1000;
    return status.batch
      ? {kind: 'pending', deadline, batch: status.batch, ...(status.owner === undefined ? {} : {owner: status.owner}), startedHere: localBatch === status.batch}
      : {kind: 'pending', deadline};
  }
  if (status.managed && status.confirmedAt) {
    // A later batch that rolled back (or was released) leaves the last confirmed rules in place.
    // To the second: a quick edit kept a minute after the lockdown shows as a change.
    const since = `since ${status.confirmedAt.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
    const note = status.phase === 'confirmed' ? since : `${since}; last change ${status.phase === 'released' ? 'released' : 'rolled back'}`;
    return {kind: 'locked', detail: note, ...(status.phase === 'confirmed' && status.batch ? {batch: status.batch} : {})};
  }
  return {kind: 'unmanaged'};
}

export function createRealServices(options: RealServicesOptions): WizardServices {
  const clock = options.clock ?? systemClock;
  const fleetStore = openPrivateStore<Record<string, unknown>>(storeOptions('fleet', options.configDirectory));
  const settingsStore = openPrivateStore<Record<string, unknown>>(storeOptions('wizard-settings', options.configDirectory));
  const localState = new LocalState(options.configDirectory ? {directory: options.configDirectory} : {});
  const discoveries = new Map<string, HostDiscovery>();
  /** Docker's facts read on hosts not discovered in this session (undefined: read, no Docker). */
  const dockerRead = new Map<string, DockerFacts | undefined>();
  let appliedFleet: FleetDoc | undefined;
  // A batch resumed from the fleet home (left pending by an earlier run) is found through this one.
  let statusFleetDoc: FleetDoc | undefined;

  // One connector per fleet shape (its jump names refer to the fleet's hosts); connections are reused.
  let connector: {key: string; value: Connector} | undefined;
  const connectorFor = async (fleet: FleetDoc): Promise<Connector> => {
    const targets = targetsOf(fleet);
    const key = JSON.stringify(targets);
    if (connector?.key === key) return connector.value;
    await connector?.value.closeAll().catch(() => undefined);
    connector = {key, value: createConnector({home: options.home, env: options.env, prompter: options.prompter, inventoryHosts: targets})};
    return connector.value;
  };
  const targetFor = (fleet: FleetDoc, name: string): HostTarget => {
    const target = targetsOf(fleet).find((candidate) => candidate.name === name);
    if (!target) throw new InputError([`${name}: not in the fleet`]);
    return target;
  };

  const sshConfigText = (): string => {
    try {
      return expandIncludes(readSshConfig(options.home), options.home);
    } catch {
      return '';
    }
  };

  /** What the operator's ssh does for each host (config read once), plus each session as the host saw it. */
  const resolvedSsh = (fleet: FleetDoc): Map<string, ResolvedSsh> => {
    const resolved = resolveOperatorSsh(fleet, options.home, sshConfigText());
    for (const host of fleet.hosts) {
      const session = discoveries.get(host.name)?.sshConnection;
      if (session) resolved.set(host.name, {...resolved.get(host.name), source: session.clientAddress, address: session.serverAddress});
    }
    return resolved;
  };

  /** The fleet host each host is reached through (ssh config ProxyJump first, then the inventory jump). */
  const jumpHostsOf = (fleet: FleetDoc): Map<string, string> => {
    const names = new Set(fleet.hosts.map((host) => host.name));
    const viaConfig = resolveOperatorSsh(fleet, options.home, sshConfigText());
    const jumps = new Map<string, string>();
    for (const host of fleet.hosts) {
      const jump = viaConfig.get(host.name)?.proxyJump ?? host.jump;
      if (jump !== undefined && jump !== host.name && names.has(jump)) jumps.set(host.name, jump);
    }
    return jumps;
  };

  /** The whole fleet compiled, its access and the SSH path check; InputError naming what is missing. */
  const compile = (fleet: FleetDoc, withAccess: boolean): Plan => {
    const inventory = validateInventory(fleet);
    const facts = new Map<string, HostFacts>();
    const missing: string[] = [];
    for (const host of inventory.hosts) {
      const known = factsFromInventory(host);
      // Docker's published ports, as discovery read them (the inventory does not hold them).
      const docker = discoveries.has(host.name) ? discoveries.get(host.name)?.facts.docker : dockerRead.get(host.name);
      if (known) facts.set(host.name, docker ? {...known, docker} : known);
      else missing.push(`${host.name}: interfaces and addresses are not known yet (lock down the fleet to discover them)`);
    }
    if (missing.length > 0) throw new InputError(missing);
    return buildPlan(inventory, facts, resolvedSsh(fleet), {withAccess});
  };

  /**
   * Docker's published ports on the hosts about to be previewed or applied that this session did not
   * discover: a Docker host's forwarding must stay Docker's. A host that cannot be read is left to the
   * apply, which reports it.
   */
  const readDocker = async (fleet: FleetDoc, names: readonly string[]): Promise<void> => {
    const unread = names.filter((name) => !discoveries.has(name) && !dockerRead.has(name) && fleet.hosts.some((host) => host.name === name));
    if (unread.length === 0) return;
    const activeConnector = await connectorFor(fleet);
    await mapLimit(unread, 8, async (name) => {
      const read = await readDockerFacts(await activeConnector.connect(targetFor(fleet, name)));
      if (read.warnings.length === 0) dockerRead.set(name, read.docker);
    });
  };

  const keptResult = (outcomes: readonly HostOutcome[]): KeepResult => ({
    kept: outcomes
      .filter((outcome) => outcome.ok)
      .map((outcome) => {
        const batch = localState.host(outcome.host)?.batch;
        return {
          host: outcome.host,
          ...(batch === undefined ? {} : {backup: `/var/lib/isolate-wizard/backups/${batch}.v4 (.v6)`}),
          persistent: outcome.persistence !== undefined && outcome.persistence !== 'none' && outcome.persistence !== 'nftables-file' && outcome.persistence !== 'iptables-file',
          note: outcome.detail,
        };
      }),
    problems: outcomes.filter((outcome) => !outcome.ok).map((outcome) => `${outcome.host}: ${outcome.detail}`),
  });

  /**
   * Apply and undo: the plans (made once the connector is there), then the apply protocol; the
   * batch left pending with its countdown, or why it was refused or failed.
   */
  const runBatch = async (
    fleet: FleetDoc,
    scope: readonly string[],
    deadlineSeconds: number,
    onProgress: (event: ApplyProgress) => void,
    plan: (connector: Connector) => Promise<Pick<ApplyFleetOptions, 'hosts' | 'preflight' | 'recheck' | 'beforeConfirm' | 'afterLoad'> & {readonly liveCheck?: () => PendingBatch['liveCheck']}>,
  ): Promise<ApplyOutcome> => {
    appliedFleet = fleet;
    const steps = new Set<string>(APPLY_STEPS);
    try {
      const activeConnector = await connectorFor(fleet);
      const planned = await plan(activeConnector);
      const pending = await applyFleet({
        connector: activeConnector,
        hosts: planned.hosts,
        timeoutSeconds: deadlineSeconds,
        localState,
        onProgress: (event) => {
          if (steps.has(event.step)) onProgress({host: event.host, step: event.step as ApplyStep, status: event.status, ...(event.detail === undefined ? {} : {detail: event.detail})});
        },
        ...(planned.preflight ? {preflight: planned.preflight} : {}),
        ...(planned.recheck ? {recheck: planned.recheck} : {}),
        ...(planned.beforeConfirm ? {beforeConfirm: planned.beforeConfirm} : {}),
        ...(planned.afterLoad ? {afterLoad: planned.afterLoad} : {}),
        refuseMixedBackends: true,
      });
      const liveCheck = planned.liveCheck?.();
      // The servers count on their own clocks; ours only shows the same number of seconds.
      const deadline = clock.now() + Math.max(0, pending.deadline - Date.now());
      const checks = pending.checks.map((check) => ({label: check.label, ok: check.ok}));
      return {kind: 'pending', batch: {id: pending.batch, hosts: pending.hosts, deadline, checks, ...(liveCheck === undefined ? {} : {liveCheck})}};
    } catch (error) {
      if (error instanceof RefusedError) return {kind: 'refused', reasons: error.message.split('\n')};
      if (error instanceof FleetApplyError) return {kind: 'failed', reasons: [...error.problems], rolledBack: error.rolledBack};
      return {kind: 'failed', reasons: [messageOf(error)], rolledBack: false};
    } finally {
      for (const name of scope) discoveries.delete(name); // the current rules changed
    }
  };

  /** What names a host's rules in words: the fleet's addresses, and its compiled rules (ours). */
  const ruleWordsContext = (fleet: FleetDoc, name: string): {names: Map<string, string>; v4?: Ruleset; v6?: Ruleset} => {
    const names = new Map<string, string>();
    for (const host of fleet.hosts) for (const address of [...(host.addresses?.public ?? []), ...(host.addresses?.private ?? [])]) names.set(address, host.name);
    try {
      const compiled = compile(fleet, false).hosts.find((candidate) => candidate.name === name)?.compiled;
      return compiled ? {names, v4: compiled.v4, v6: compiled.v6} : {names};
    } catch {
      return {names}; // facts unknown: no rule can be shown as ours
    }
  };

  const withRemote = async <T>(fleet: FleetDoc, name: string, work: (remote: RemoteHost) => Promise<T>): Promise<T> => {
    const remote = await (await connectorFor(fleet)).connect(targetFor(fleet, name));
    return work(remote);
  };

  const toDiscovered = (discovery: HostDiscovery, bastion: boolean): DiscoveredHost => ({
    host: discovery.host,
    ok: true,
    route: discovery.route,
    interfaces: discovery.interfaces.map((iface) => ({
      name: iface.name,
      addresses: iface.addresses,
      side: iface.side,
      ...(iface.note === undefined ? {} : {note: iface.note}),
    })),
    listening: discovery.listening,
    suggestedRoles: [...new Set([...(bastion ? ['bastion'] : []), ...discovery.suggestedRoles.map((suggestion) => suggestion.role)])],
    warnings: discovery.warnings,
  });

  const expiredCheck = async (fleet: FleetDoc, batch: PendingBatch, host: string): Promise<RestoredHost> => {
    const target = targetFor(fleet, host);
    const remote = await (await connectorFor(fleet)).connect(target, {fresh: true});
    try {
      // The server's watchdog fires on its own clock; give it a little time around the deadline.
      let status = await hostStatus(remote);
      for (let attempt = 0; attempt < 15 && status.batch === batch.id && status.pending; attempt += 1) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        status = await hostStatus(remote);
      }
      if (status.batch === batch.id && status.restoring) {
        return {host, restored: false, detail: 'could not restore: act now — the server could not put the previous rules back; it keeps retrying'};
      }
      if (status.batch === batch.id && status.pending) return {host, restored: false, detail: `still pending on the server (${status.secondsLeft ?? '?'} s left)`};
      if (status.phase === 'confirmed') return {host, restored: false, detail: 'the server says it was confirmed'};
      const snapshot = localState.snapshot(batch.id, host);
      if (!snapshot) {
        return {host, restored: status.phase === 'expired' || status.phase === 'rolledback', detail: `server phase ${status.phase ?? 'unknown'} (no local snapshot copy to compare)`};
      }
      const live = await readLive(remote);
      const differences = snapshotDifferences(live, snapshot);
      if (differences.length > 0) return {host, restored: false, detail: `live rules differ from the snapshot: ${differences.slice(0, 3).join('; ')}`};
      return {host, restored: true, detail: `rolled back by the server (${status.phase ?? 'expired'}); live rules equal the snapshot`};
    } finally {
      await remote.close().catch(() => undefined);
    }
  };

  return {
    clock,
    prompter: options.prompter,

    async loadFleet() {
      const stored = fleetStore.store;
      const hosts = Array.isArray(stored['hosts']) ? stored['hosts'] : [];
      const fleet = {...stored, hosts} as unknown as FleetDoc;
      const deadline = settingsStore.get('deadlineSeconds');
      const settings: WizardSettings = {deadlineSeconds: typeof deadline === 'number' && deadline > 0 ? deadline : DEFAULT_SETTINGS.deadlineSeconds};
      return {fleet, settings};
    },
    async saveFleet(fleet, settings) {
      fleetStore.store = JSON.parse(JSON.stringify(fleet)) as Record<string, unknown>;
      settingsStore.set('deadlineSeconds', settings.deadlineSeconds);
    },
    async importFleet(file) {
      let text: string;
      try {
        text = readFileSync(path.resolve(file), 'utf8');
      } catch (error) {
        throw new InputError([`${file}: cannot read the inventory (${(error as NodeJS.ErrnoException).code ?? messageOf(error)})`]);
      }
      parseInventoryText(text, file); // every problem, one line each, before anything is replaced
      return JSON.parse(text) as FleetDoc;
    },
    async exportFleet(fleet, file) {
      writeFileSync(path.resolve(file), `${JSON.stringify(fleet, null, 2)}\n`);
    },
    async validateFleet(fleet) {
      if (fleet.hosts.length === 0) return []; // an empty fleet is fine while building it
      try {
        validateInventory(fleet);
        return [];
      } catch (error) {
        if (error instanceof InputError) return error.problems;
        return [messageOf(error)];
      }
    },
    async sshHostSuggestions() {
      return sshConfigAliases(sshConfigText());
    },
    roleNames(fleet) {
      return [...new Set([...Object.keys(BUILTIN_ROLES), ...Object.keys(fleet.roles ?? {})])].sort();
    },

    peerPortSuggestions(fleet, hosts) {
      let templates: ReadonlyMap<string, RoleTemplate>;
      try {
        templates = resolveRoles(validateInventory(fleet));
      } catch {
        templates = new Map(Object.entries(BUILTIN_ROLES)); // a fleet being written: the built-in roles
      }
      return suggestPeerPorts(hosts, templates);
    },

    async status(fleet, onHost) {
      const states = new Map<string, HostState>();
      if (fleet.hosts.length === 0) return states;
      statusFleetDoc = fleet;
      const activeConnector = await connectorFor(fleet);
      // Drift names sources and effects with the compiled fleet; without facts, rule changes only.
      let compiled: readonly AccessHost[] = [];
      try {
        compiled = compile(fleet, false).hosts;
      } catch {
        // facts not known yet (never locked down from here): compared rule by rule only
      }
      // A few hosts at a time, each reported as it answers: 500 servers never open 500 sessions at once.
      await mapLimit(targetsOf(fleet), STATUS_CONCURRENCY, async (target) => {
        const [outcome] = await statusFleet({connector: activeConnector, hosts: [target], readDrift: true});
        const [sync] = outcome?.status
          ? fleetSync(compiled, [{host: outcome.host, managed: outcome.status.managed, pending: outcome.status.pending, ...(outcome.view ? {view: outcome.view} : {}), ...(outcome.viewError === undefined ? {} : {viewError: outcome.viewError})}])
          : [];
        const state = outcome ? hostStateOf(outcome, clock.now(), localState.host(target.name)?.batch, sync) : {kind: 'unreachable' as const, reason: 'no answer'};
        states.set(target.name, state);
        onHost?.(target.name, state);
      });
      return states;
    },

    async discover(fleet, hosts, onProgress) {
      const activeConnector = await connectorFor(fleet);
      const jumps = jumpHostsOf(fleet);
      const bastions = new Set(jumps.values());
      const results = await mapLimit(hosts, 8, async (name): Promise<DiscoveredHost> => {
        let result: DiscoveredHost;
        try {
          onProgress({host: name, phase: 'connecting'});
          const remote = await activeConnector.connect(targetFor(fleet, name));
          onProgress({host: name, phase: 'reading'});
          const discovery = await discoverHost(remote);
          discoveries.set(name, discovery);
          result = toDiscovered(discovery, bastions.has(name));
        } catch (error) {
          const message = messageOf(error);
          result = {host: name, ok: false, error: message.includes(name) ? message : `${name}: ${message}`};
        }
        onProgress({host: name, phase: 'finished', result});
        return result;
      });
      return results.map((entry, index) => (entry.ok ? entry.value : {host: hosts[index] ?? '?', ok: false as const, error: messageOf(entry.error)}));
    },

    async preview(fleet, scope) {
      let compiled: Plan;
      await readDocker(fleet, scope).catch(() => undefined);
      try {
        compiled = compile(fleet, true);
      } catch (error) {
        return {hosts: [], access: [], lockout: [], problems: error instanceof InputError ? error.problems : [messageOf(error)]};
      }
      // Only the servers this change touches: the others keep the rules they have.
      const findings = compiled.lockout.filter((finding) => scope.includes(finding.host));
      const activeConnector = await connectorFor(fleet);
      const previews = await mapLimit(scope, 8, async (name): Promise<HostPreview> => {
        const host = compiled.hosts.find((candidate) => candidate.name === name) as AccessHost;
        let current = discoveries.get(name);
        const warnings = [...host.compiled.warnings, ...findings.filter((finding) => finding.host === name && finding.severity === 'warning').map((finding) => finding.message)];
        // What the iptables backend loads: our chains, with IW-PUBLISHED where published ports are restricted.
        const restricted = publishedToRestrict(host.facts, fleet.options?.restrictPublished === true);
        const ours4 = toOwnChains(withPublishedRules(host.compiled.v4, restricted));
        const ours6 = toOwnChains(withPublishedRules(host.compiled.v6, restricted));
        let diff: string[];
        try {
          if (!current) {
            // A quick edit: read what the server has now for the diff.
            current = await discoverHost(await activeConnector.connect(targetFor(fleet, name)));
            discoveries.set(name, current);
          }
          // Ours against ours: others' rules and the policies are not written.
          const before4 = ownPart(parseIptablesSave(current.firewall.iptablesSave, 4));
          const before6 = ownPart(parseIptablesSave(current.firewall.ip6tablesSave, 6));
          diff = [
            ...diffRulesets(before4, ownPart(ours4)).map((line) => `${line.replace(/^filter: /, '')}  [IPv4]`),
            ...diffRulesets(before6, ownPart(ours6)).map((line) => `${line.replace(/^filter: /, '')}  [IPv6]`),
          ];
        } catch (error) {
          diff = [`(cannot read the current rules: ${messageOf(error)})`];
        }
        return {host: name, rulesV4: renderRuleset(ours4), rulesV6: renderRuleset(ours6), diff, warnings};
      });
      // What the servers' other firewalls drop of the plan: apply refuses it unless a remedy is chosen.
      const others = await readNativeRulesets(activeConnector, scope.map((name) => targetFor(fleet, name)));
      const otherFirewalls = [...others.unread, ...formatNativeDrops(otherFirewallDrops(compiled.hosts, others, new Set(scope), compiled.access))];
      return {
        otherFirewalls,
        hosts: previews.map((entry, index) => (entry.ok ? entry.value : {host: scope[index] ?? '?', rulesV4: '', rulesV6: '', diff: [messageOf(entry.error)], warnings: []})),
        access: [...formatAccess(compiled.access), ...compiled.hosts.filter((host) => scope.includes(host.name)).flatMap((host) => describePublished(host, compiled.hosts, fleet.options?.restrictPublished === true))],
        matrix: buildMatrix(compiled.hosts.map((host) => host.name), compiled.access),
        lockout: findings.filter((finding) => finding.severity === 'error').map((finding) => finding.message),
        problems: [],
      };
    },

    async apply(fleet, scope, deadlineSeconds, onProgress) {
      let compiled: Plan;
      await readDocker(fleet, scope).catch(() => undefined);
      try {
        compiled = compile(fleet, true); // with the access summary: its flows are tried live
      } catch (error) {
        return {kind: 'refused', reasons: error instanceof InputError ? error.problems : [messageOf(error)]};
      }
      const jumps = jumpHostsOf(fleet);
      let liveCheck: PendingBatch['liveCheck'];
      return runBatch(fleet, scope, deadlineSeconds, onProgress, async (activeConnector) => {
        // Read first: options.backend auto chooses by whether nft is there; the preflight reuses it.
        const native = await readNativeRulesets(activeConnector, scope.map((name) => targetFor(fleet, name)));
        const chosen = chooseBackends(scope, fleet.options?.backend, native.withoutNft, new Set(native.rulesets.keys()));
        const restrictRefusals: string[] = [];
        const hosts: FleetHostPlan[] = scope.map((name) => {
          const host = compiled.hosts.find((candidate) => candidate.name === name) as AccessHost;
          const via = jumps.get(name);
          const backend = chosen.backends.get(name) ?? 'iptables';
          const published = publishedToRestrict(host.facts, fleet.options?.restrictPublished === true);
          const refusal = restrictRefusal(name, backend, published, host.facts.docker, 'settings: where the rules live');
          if (refusal) restrictRefusals.push(refusal);
          return {target: targetFor(fleet, name), candidate: hostCandidate(host.compiled, backend, published), ...(via === undefined ? {} : {via: [via]})};
        });
        let remedies = new Map<string, string[]>();
        return {
          hosts,
          // Refuse, before touching anything, a plan that would cut the operator's SSH path.
          // And one whose opened flows another firewall would drop, unless the operator chose
          // a remedy (the preview offers it: options.otherFirewall).
          preflight: async () => {
            const lockout = compiled.lockout.filter((finding) => finding.severity === 'error' && scope.includes(finding.host)).map((finding) => finding.message);
            const others = checkOtherFirewalls(compiled.hosts, native, new Set(scope), compiled.access, fleet.options?.otherFirewall);
            remedies = others.remedies;
            return [...lockout, ...chosen.refusals, ...restrictRefusals, ...others.refusals];
          },
          afterLoad: (host, remote, batch) => remedyAfterLoad(remedies, compiled.hosts, () => compiled.access)(host, remote, batch),
          // The flows tried live before the countdown; the operator judges them there.
          beforeConfirm: async () => {
            const check = await probePlan(compiled, activeConnector, compiled.hosts.map((host) => targetFor(fleet, host.name)), new Set(scope), {destinationsOnly: true});
            const {results} = check;
            liveCheck = {
              summary: summarizeResults(check),
              differing: results.filter(differsFromPlan).map(formatResult),
              matrix: buildMatrix(compiled.hosts.map((host) => host.name), compiled.access, results),
            };
            return [];
          },
          liveCheck: () => liveCheck,
        };
      });
    },

    async undo(fleet, batch, scope, deadlineSeconds, onProgress) {
      let compiled: Plan;
      try {
        compiled = compile(fleet, false);
      } catch (error) {
        return {kind: 'refused', reasons: error instanceof InputError ? error.problems : [messageOf(error)]};
      }
      const jumps = jumpHostsOf(fleet);
      const paths = operatorPaths(validateInventory(fleet), resolvedSsh(fleet));
      return runBatch(fleet, scope, deadlineSeconds, onProgress, async (activeConnector) => ({
        // The rules that come back must not cut the operator's SSH path either (checked with ours over others' rules as snapshotted, once locked).
        recheck: (merged) => {
          const hosts = compiled.hosts.map((host) => {
            const rules = merged.get(host.name);
            return rules ? {...host, compiled: {...host.compiled, v4: rules.v4, v6: rules.v6}} : host;
          });
          return checkLockout(hosts, paths)
            .filter((finding) => finding.severity === 'error' && scope.includes(finding.host))
            .map((finding) => finding.message);
        },
        hosts: await snapshotPlans({
          connector: activeConnector,
          hosts: scope.map((name) => {
            const via = jumps.get(name);
            return {target: targetFor(fleet, name), ...(via === undefined ? {} : {via: [via]})};
          }),
          batch,
          localState,
        }),
      }));
    },

    async keep(batch) {
      const fleet = currentFleet();
      const outcomes = await confirmFleet({connector: await connectorFor(fleet), hosts: batch.hosts.map((name) => targetFor(fleet, name)), batch: batch.id, localState});
      return keptResult(outcomes);
    },

    async installPersistence(hosts) {
      const fleet = currentFleet();
      // Confirming again is harmless (already confirmed); with installPersistence it installs the
      // loader where none is, then writes the boot-time files.
      const outcomes = await confirmFleet({connector: await connectorFor(fleet), hosts: hosts.map((name) => targetFor(fleet, name)), localState, installPersistence: true});
      return keptResult(outcomes);
    },

    async rollback(batch) {
      const fleet = currentFleet();
      const outcomes = await rollbackFleet({connector: await connectorFor(fleet), hosts: batch.hosts.map((name) => targetFor(fleet, name)), batch: batch.id, localState});
      return outcomes.map((outcome) => ({host: outcome.host, restored: outcome.ok || outcome.expired === true, detail: outcome.detail}));
    },

    async verifyExpired(batch) {
      const fleet = currentFleet();
      const results = await mapLimit(batch.hosts, 8, (host) => expiredCheck(fleet, batch, host));
      return results.map((entry, index) => (entry.ok ? entry.value : {host: batch.hosts[index] ?? '?', restored: false, detail: `cannot check: ${messageOf(entry.error)}`}));
    },

    async counters(fleet, host) {
      const context = ruleWordsContext(fleet, host);
      return withRemote(fleet, host, async (remote) => {
        const [v4, v6] = await Promise.all([
          remote.exec(TROUBLESHOOT_COMMANDS.countersV4, {root: true}),
          remote.exec(TROUBLESHOOT_COMMANDS.countersV6, {root: true}),
        ]);
        const words = (result: {code: number | null; stdout: string; stderr: string}, ours: Ruleset | undefined, tool: string): string =>
          stripControlLines(result.code === 0 ? describeLiveRules(result.stdout, {ours, names: context.names}).join('\n') : `${tool} failed: ${result.stderr.trim()}`);
        return {v4: words(v4, context.v4, 'iptables-save'), v6: words(v6, context.v6, 'ip6tables-save')};
      });
    },

    async dropLog(fleet, host) {
      const {names} = ruleWordsContext(fleet, host);
      return withRemote(fleet, host, async (remote) => {
        const result = await remote.exec(TROUBLESHOOT_COMMANDS.dropLog, {root: true, stdin: DROP_LOG_SCRIPT});
        const view = parseDropLog(result.stdout);
        return {...view, lines: view.lines.map((line) => droppedPacketInWords(line, names))};
      });
    },

    async close() {
      await connector?.value.closeAll().catch(() => undefined);
      connector = undefined;
    },
  };

  /** The fleet of the last apply (or status): keep / roll back / the expiry check act on its batch's hosts. */
  function currentFleet(): FleetDoc {
    const fleet = appliedFleet ?? statusFleetDoc;
    if (!fleet) throw new Error('no batch was applied in this session');
    return fleet;
  }
}
