// Fake services for screen tests: in-memory fleet, scripted discovery/apply results,
// a manual clock, and deferred promises so a test decides when remote work finishes.

import {suggestPeerPorts} from '../../source/core/peer-ports.js';
import {BUILTIN_ROLES} from '../../source/core/roles.js';
import {PromptQueue} from '../../source/ui/prompts.js';
import type {
  ApplyOutcome,
  ApplyProgress,
  Clock,
  CountersView,
  DiscoverProgress,
  DiscoveredHost,
  DropLogView,
  FleetDoc,
  HostState,
  KeepResult,
  PendingBatch,
  PreviewResult,
  RestoredHost,
  WizardServices,
  WizardSettings,
} from '../../source/ui/services.js';

export class FakeClock implements Clock {
  private readonly listeners = new Set<() => void>();
  constructor(private current = 1_000_000) {}
  now(): number {
    return this.current;
  }
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }
  advance(ms: number): void {
    this.current += ms;
    for (const listener of this.listeners) listener();
  }
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  return {promise, resolve, reject};
}

export const SEED_FLEET: FleetDoc = {
  hosts: [
    {name: 'tunnel-1', ssh: 'tunnel-1', roles: []},
    {name: 'haproxy-www', ssh: 'haproxy-www', roles: []},
    {name: 'mysql-1', ssh: 'mysql-1', roles: []},
  ],
};

/** The same fleet after a lockdown: roles and facts known. */
export const MANAGED_FLEET: FleetDoc = {
  hosts: [
    {
      name: 'tunnel-1',
      ssh: 'tunnel-1',
      roles: ['bastion'],
      interfaces: {public: 'eth0', private: 'eth1'},
      addresses: {public: ['203.0.113.10'], private: ['10.132.0.10']},
    },
    {
      name: 'haproxy-www',
      ssh: 'haproxy-www',
      roles: ['lb'],
      allow: [{port: 8443, proto: 'tcp', from: 'internet'}],
      interfaces: {public: 'eth0', private: 'eth1'},
      addresses: {public: ['203.0.113.11'], private: ['10.132.0.11']},
    },
    {
      name: 'mysql-1',
      ssh: 'mysql-1',
      roles: ['db'],
      interfaces: {public: 'eth0', private: 'eth1'},
      addresses: {public: ['203.0.113.14'], private: ['10.132.0.14']},
    },
  ],
};

export function discovered(host: string, octet: number, listening: number[], suggestedRoles: string[], warnings: string[] = []): DiscoveredHost {
  return {
    host,
    ok: true,
    route: host === 'tunnel-1' ? 'root@203.0.113.10:22' : `root@10.132.0.${octet}:22 via tunnel-1`,
    interfaces: [
      {name: 'eth0', addresses: [`203.0.113.${octet}`, `2001:db8:100::${octet}`], side: 'public'},
      {name: 'eth1', addresses: [`10.132.0.${octet}`, `fd00:132::${octet}`], side: 'private'},
    ],
    listening: listening.map((port) => ({proto: 'tcp' as const, port})),
    suggestedRoles,
    warnings,
  };
}

export interface FakeCalls {
  saved: {fleet: FleetDoc; settings: WizardSettings}[];
  discover: string[][];
  preview: {fleet: FleetDoc; hosts: readonly string[]}[];
  apply: {fleet: FleetDoc; hosts: readonly string[]; deadlineSeconds: number}[];
  undo: {batch: string; hosts: readonly string[]; deadlineSeconds: number}[];
  keep: PendingBatch[];
  installPersistence: string[][];
  rollback: PendingBatch[];
  verifyExpired: PendingBatch[];
  counters: string[];
  dropLog: string[];
  imported: string[];
  exported: {fleet: FleetDoc; path: string}[];
  closed: number;
}

export interface FakeOptions {
  fleet?: FleetDoc;
  settings?: WizardSettings;
  states?: Record<string, HostState>;
  /** Per host, when it answers (default: at once, from `states`). */
  status?: (host: string) => Promise<HostState>;
  /** Replaces `states` and `status`: each status read, in order (call counts from 1). */
  statusReads?: (fleet: FleetDoc, call: number) => Promise<ReadonlyMap<string, HostState>>;
  suggestions?: string[];
  /** Per host; default: a seed-like result. */
  discover?: (host: string, prompter: PromptQueue) => Promise<DiscoveredHost>;
  preview?: (fleet: FleetDoc, hosts: readonly string[]) => Promise<PreviewResult>;
  /** Called with the progress callback; default: every step done and a pending batch. */
  apply?: (hosts: readonly string[], deadlineSeconds: number, onProgress: (event: ApplyProgress) => void) => Promise<ApplyOutcome>;
  keep?: (batch: PendingBatch) => Promise<KeepResult>;
  installPersistence?: (hosts: readonly string[]) => Promise<KeepResult>;
  rollback?: (batch: PendingBatch) => Promise<readonly RestoredHost[]>;
  verifyExpired?: (batch: PendingBatch) => Promise<readonly RestoredHost[]>;
  counters?: (host: string, call: number) => Promise<CountersView>;
  dropLog?: (host: string) => Promise<DropLogView>;
  importFleet?: (path: string) => Promise<FleetDoc>;
  validate?: (fleet: FleetDoc) => string[];
}

const OCTETS: Record<string, number> = {'tunnel-1': 10, 'haproxy-www': 11, 'wordpress-1': 12, 'wordpress-2': 13, 'mysql-1': 14, 'mysql-2': 15};
const SUGGESTED: Record<string, string[]> = {'haproxy-www': ['lb'], 'mysql-1': ['db'], 'mysql-2': ['db']};

export function defaultPreview(fleet: FleetDoc, hosts: readonly string[]): PreviewResult {
  return {
    hosts: hosts.map((host) => {
      const entry = fleet.hosts.find((candidate) => candidate.name === host);
      const extra = (entry?.allow ?? []).map((allow) => `+ -A INPUT -i eth0 -p tcp -m tcp --dport ${allow.port} -j ACCEPT`);
      return {
        host,
        rulesV4: `*filter\n:INPUT DROP [0:0]\n-A INPUT -m comment --comment "${host} roles ${(entry?.roles ?? []).join(',')}" -j ACCEPT\nCOMMIT\n`,
        rulesV6: `*filter\n:INPUT DROP [0:0]\nCOMMIT\n`,
        diff: [`+ :INPUT DROP [0:0]`, `+ roles ${(entry?.roles ?? []).join(',') || 'none'}`, ...extra],
        warnings: [],
      };
    }),
    access: ['internet → haproxy-www tcp/80,443', 'haproxy-www → mysql-1 tcp/3306'],
    lockout: [],
    problems: [],
  };
}

/** A fleet of `count` servers named host-000, host-001, … with roles and facts, like a real lockdown's. */
export function generatedFleet(count: number): FleetDoc {
  const roles = [['app'], ['lb'], ['app'], ['app'], ['db']];
  return {
    hosts: Array.from({length: count}, (_, index) => {
      const name = `host-${String(index).padStart(3, '0')}`;
      const octet = index % 250;
      return {
        name,
        ssh: index === 0 ? `root@203.0.113.${octet}` : name,
        ...(index === 0 ? {} : {jump: 'host-000'}),
        roles: index === 0 ? ['bastion'] : index % 11 === 0 ? ['app', 'db', 'lb'] : (roles[index % roles.length] ?? ['app']),
        interfaces: {public: 'eth0', private: 'eth1'},
        addresses: {public: [`203.0.113.${octet}`], private: [`10.132.${Math.floor(index / 250)}.${octet}`]},
      };
    }),
  };
}

export function createFakeServices(options: FakeOptions = {}) {
  const clock = new FakeClock();
  const prompter = new PromptQueue();
  let statusCall = 0;
  const calls: FakeCalls = {saved: [], discover: [], preview: [], apply: [], undo: [], keep: [], installPersistence: [], rollback: [], verifyExpired: [], counters: [], dropLog: [], imported: [], exported: [], closed: 0};
  let stored = {fleet: options.fleet ?? {hosts: []}, settings: options.settings ?? {deadlineSeconds: 60}};
  let countersCall = 0;

  const services: WizardServices = {
    clock,
    prompter,
    async loadFleet() {
      return stored;
    },
    async saveFleet(fleet, settings) {
      stored = {fleet, settings};
      calls.saved.push(stored);
    },
    async importFleet(path) {
      calls.imported.push(path);
      if (options.importFleet) return options.importFleet(path);
      return SEED_FLEET;
    },
    async exportFleet(fleet, path) {
      calls.exported.push({fleet, path});
    },
    async validateFleet(fleet) {
      if (options.validate) return options.validate(fleet);
      const problems: string[] = [];
      fleet.hosts.forEach((host, index) => {
        if (!/^[A-Za-z0-9._-]+$/.test(host.name)) problems.push(`hosts[${index}].name: "${host.name}" has characters outside [A-Za-z0-9._-]`);
        if (fleet.hosts.findIndex((other) => other.name === host.name) !== index) problems.push(`hosts[${index}].name: duplicate "${host.name}"`);
      });
      return problems;
    },
    async sshHostSuggestions() {
      return options.suggestions ?? [];
    },
    roleNames(fleet) {
      return [...new Set(['app', 'bastion', 'db', 'lb', ...Object.keys(fleet.roles ?? {})])].sort();
    },
    peerPortSuggestions(fleet, hosts) {
      const overrides = (fleet.roles ?? {}) as Record<string, {peers?: string[]}>;
      const templates = new Map(
        Object.entries(BUILTIN_ROLES).map(([name, template]) => {
          const peers = overrides[name]?.peers?.map((port) => ({first: Number(port), last: Number(port)}));
          return [name, peers ? {...template, peers} : template] as const;
        }),
      );
      return suggestPeerPorts(hosts, templates);
    },
    async status(fleet, onHost) {
      statusCall += 1;
      if (options.statusReads) return options.statusReads(fleet, statusCall);
      const answer = async (name: string): Promise<[string, HostState]> => {
        const state = options.status ? await options.status(name) : (options.states?.[name] ?? {kind: 'unmanaged' as const});
        onHost?.(name, state);
        return [name, state];
      };
      return new Map(await Promise.all(fleet.hosts.map((host) => answer(host.name))));
    },
    async discover(_fleet, hosts, onProgress: (event: DiscoverProgress) => void) {
      calls.discover.push([...hosts]);
      return Promise.all(
        hosts.map(async (host) => {
          onProgress({host, phase: 'reading'});
          const result = options.discover
            ? await options.discover(host, prompter)
            : discovered(host, OCTETS[host] ?? 50, host === 'mysql-1' ? [22, 3306] : [22, 80, 443], SUGGESTED[host] ?? []);
          onProgress({host, phase: 'finished', result});
          return result;
        }),
      );
    },
    async preview(fleet, hosts) {
      calls.preview.push({fleet, hosts});
      if (options.preview) return options.preview(fleet, hosts);
      return defaultPreview(fleet, hosts);
    },
    async apply(fleet, hosts, deadlineSeconds, onProgress) {
      calls.apply.push({fleet, hosts, deadlineSeconds});
      if (options.apply) return options.apply(hosts, deadlineSeconds, onProgress);
      for (const host of hosts) for (const step of ['lock', 'snapshot', 'validate', 'watchdog', 'load', 'verify'] as const) onProgress({host, step, status: 'done'});
      return {
        kind: 'pending',
        batch: {id: 'b-1', hosts, deadline: clock.now() + deadlineSeconds * 1000, checks: hosts.map((host) => ({label: `new SSH session to ${host} through tunnel-1`, ok: true}))},
      };
    },
    async undo(_fleet, batch, hosts, deadlineSeconds, onProgress) {
      calls.undo.push({batch, hosts, deadlineSeconds});
      for (const host of hosts) for (const step of ['lock', 'snapshot', 'validate', 'watchdog', 'load', 'verify'] as const) onProgress({host, step, status: 'done'});
      return {kind: 'pending', batch: {id: 'b-undo', hosts, deadline: clock.now() + deadlineSeconds * 1000, checks: []}};
    },
    async keep(batch) {
      calls.keep.push(batch);
      if (options.keep) return options.keep(batch);
      return {kept: batch.hosts.map((host) => ({host, backup: `/var/lib/isolate-wizard/backups/${batch.id}.v4`, persistent: host !== 'mysql-1', note: host === 'mysql-1' ? 'install iptables-persistent' : undefined})), problems: []};
    },
    async installPersistence(hosts) {
      calls.installPersistence.push([...hosts]);
      if (options.installPersistence) return options.installPersistence(hosts);
      return {kept: hosts.map((host) => ({host, persistent: true, note: 'saved for boot (/etc/iptables/rules.v4, rules.v6)'})), problems: []};
    },
    async rollback(batch) {
      calls.rollback.push(batch);
      if (options.rollback) return options.rollback(batch);
      return batch.hosts.map((host) => ({host, restored: true, detail: 'rules equal the snapshot'}));
    },
    async verifyExpired(batch) {
      calls.verifyExpired.push(batch);
      if (options.verifyExpired) return options.verifyExpired(batch);
      return batch.hosts.map((host) => ({host, restored: true, detail: 'the watchdog restored the snapshot'}));
    },
    async counters(_fleet, host) {
      calls.counters.push(host);
      countersCall += 1;
      if (options.counters) return options.counters(host, countersCall);
      return {v4: `Chain INPUT (policy DROP ${countersCall} packets)\nnum pkts bytes target\n1 ${countersCall * 10} 840 ACCEPT`, v6: 'Chain INPUT (policy DROP 0 packets)'};
    },
    async dropLog(_fleet, host) {
      calls.dropLog.push(host);
      if (options.dropLog) return options.dropLog(host);
      return {source: 'none', lines: [], note: 'drop logging is off for this fleet (settings → log dropped packets)'};
    },
    async close() {
      calls.closed += 1;
    },
  };
  return {services, clock, prompter, calls, stored: () => stored};
}
