// How the headless commands report a large fleet: one compact line per host (name, outcome,
// detail, in aligned columns) and a summary line counting the outcomes. Small fleets keep the
// fuller per-host output. Pure formatting: no I/O.

import type {HostDiscovery} from '../core/discovery/index.js';
import {describeDrift, type HostSync} from '../core/drift.js';
import type {HostOutcome, HostStatusOutcome} from '../remote/fleet-apply.js';
import type {FleetDiscoveryResult} from '../remote/discovery.js';

/** Above this many hosts, one compact line per host and a summary. */
export const COMPACT_ABOVE = 20;

export function isLargeFleet(hosts: number): boolean {
  return hosts > COMPACT_ABOVE;
}

/** "40 hosts: 38 kept, 2 FAILED" — outcomes in the order first seen. */
export function summaryLine(outcomes: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const outcome of outcomes) counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
  const parts = [...counts].map(([outcome, count]) => `${count} ${outcome}`);
  return `${outcomes.length} host${outcomes.length === 1 ? '' : 's'}: ${parts.join(', ')}`;
}

/** Rows of cells in aligned columns (the last cell is not padded). */
export function alignedRows(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, index) => (widths[index] = Math.max(widths[index] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, index) => (index === row.length - 1 ? cell : cell.padEnd(widths[index] ?? 0))).join('  ').trimEnd());
}

function outcomeOf(verb: string, outcome: HostOutcome): string {
  if (outcome.ok) return verb;
  return outcome.expired ? 'already rolled back' : 'FAILED';
}

/** apply --yes, confirm, rollback: a line per host, then the counts. */
export function compactOutcomes(verb: string, outcomes: readonly HostOutcome[]): string[] {
  const lines = alignedRows(outcomes.map((outcome) => [outcome.host, outcomeOf(verb, outcome), outcome.detail]));
  return [...lines, summaryLine(outcomes.map((outcome) => outcomeOf(verb, outcome)))];
}

function statusOutcomeOf(outcome: HostStatusOutcome, sync?: HostSync): {outcome: string; detail: string} {
  const status = outcome.status;
  if (!status) return {outcome: 'unreachable', detail: outcome.error ?? 'unknown error'};
  if (!status.managed || !status.batch) return {outcome: 'not managed', detail: ''};
  if (status.pending) return {outcome: 'PENDING', detail: `batch ${status.batch} (${status.phase}), rolls back in ${status.secondsLeft ?? '?'} s unless confirmed`};
  if (sync?.state === 'drifted') return {outcome: 'DRIFTED', detail: describeDrift(sync)};
  if (sync && sync.state === undefined) return {outcome: 'drift unknown', detail: sync.reason ?? ''};
  if (sync?.state === 'unmanaged') return {outcome: 'not managed', detail: `no batch confirmed here (batch ${status.batch} ${status.phase})`};
  const when = status.lastChange ? ` since ${status.lastChange.toISOString().slice(0, 16).replace('T', ' ')} UTC` : '';
  return {outcome: sync?.state ?? status.phase ?? 'managed', detail: `batch ${status.batch}${sync ? ` ${status.phase}` : ''}${when}${status.persistence === 'none' ? '; no boot-time loader' : ''}`};
}

/** status: a line per host (state, then what matters of it), then the counts. */
export function compactStatus(outcomes: readonly HostStatusOutcome[], syncs?: ReadonlyMap<string, HostSync>): string[] {
  const described = outcomes.map((outcome) => ({host: outcome.host, ...statusOutcomeOf(outcome, syncs?.get(outcome.host))}));
  const lines = alignedRows(described.map((entry) => [entry.host, entry.outcome, entry.detail]));
  return [...lines, summaryLine(described.map((entry) => entry.outcome))];
}

function discoveryDetail(discovery: HostDiscovery): string {
  const side = (name: 'public' | 'private') => {
    const iface = discovery.interfaces.find((item) => item.side === name);
    return iface ? `${name} ${iface.name} ${iface.cidrs[0]?.replace(/\/\d+$/, '') ?? '-'}` : `${name} -`;
  };
  const ports = [...new Set(discovery.listening.map((service) => `${service.proto === 'tcp' ? '' : `${service.proto}/`}${service.port}`))];
  const roles = discovery.suggestedRoles.map((role) => role.role);
  return [
    side('public'),
    side('private'),
    `listening ${ports.length > 0 ? ports.join(',') : '-'}`,
    ...(roles.length > 0 ? [`suggests ${roles.join(',')}`] : []),
    ...(discovery.warnings.length > 0 ? [`${discovery.warnings.length} warning${discovery.warnings.length === 1 ? '' : 's'}`] : []),
  ].join('; ');
}

/** discover: a line per host (its sides, ports, suggested roles, warnings counted), then the counts. */
export function compactDiscovery(results: readonly FleetDiscoveryResult[]): string[] {
  const rows = results.map((result) => (result.ok ? [result.discovery.host, 'discovered', discoveryDetail(result.discovery)] : [result.host, 'FAILED', result.error]));
  const withWarnings = results.filter((result) => result.ok && result.discovery.warnings.length > 0).length;
  const summary = summaryLine(results.map((result) => (result.ok ? 'discovered' : 'FAILED')));
  return [...alignedRows(rows), withWarnings > 0 ? `${summary}; ${withWarnings} with warnings (--json, or --host NAME, shows them)` : summary];
}
