// A sample of the flows to try live, for fleets where trying every one costs too much: the flows
// between hosts grow with the square of the fleet (40 servers: ~4,000), but hosts of the same
// roles get the same rules, so a sample that still touches every host finds what the full set
// finds, short of two hosts of one kind that differ between themselves. Pure.
//
// Covered, each at least once:
//   - every destination's open port, at each of its addresses, from each kind of source it is
//     open to (a host whose port is dropped is found, whichever kind was meant to reach it);
//   - every fleet host as a source of its flows (a host that cannot send is found);
//   - every destination's closed ports in each family, from the fleet and from the internet
//     (a host whose rules let too much in is found), and each class of closed flow.
// Cells are whole: a (source, destination) pair chosen for any reason has every one of its open
// flows tried, so a marked cell of the access matrix was tried in full, and an unmarked one not.
import {INTERNET} from './access.js';
import {OPERATOR, type Flow} from './flows.js';
import type {HostEntry} from './inventory.js';

/**
 * What makes two hosts alike for the firewall: their roles and their own allows. The source
 * "internet" is a kind of its own.
 */
export function hostKinds(hosts: readonly Pick<HostEntry, 'name' | 'roles' | 'allow'>[]): (name: string) => string {
  const kinds = new Map(hosts.map((host) => [host.name, JSON.stringify([[...host.roles].sort(), host.allow])]));
  return (name) => (name === INTERNET ? INTERNET : (kinds.get(name) ?? `host ${name}`));
}

/**
 * The flows to try, in the order given (a subset of `flows`). Every host keeps its coverage
 * (above); the count grows with hosts × their ports, not with host pairs.
 */
export function sampleFlows(flows: readonly Flow[], kindOf: (name: string) => string): Flow[] {
  const cellOf = (flow: Flow): string => `${flow.planSource}\n${flow.to}`;
  const cellOpens = new Map<string, number[]>();
  flows.forEach((flow, index) => {
    if (flow.expect !== 'open') return;
    const list = cellOpens.get(cellOf(flow));
    if (list) list.push(index);
    else cellOpens.set(cellOf(flow), [index]);
  });

  const units = (flow: Flow): string[] => {
    const from = kindOf(flow.planSource);
    if (flow.expect === 'open') return [`open\n${flow.to}\n${flow.address}\n${flow.port}\n${from}`];
    const side = flow.planSource === INTERNET ? INTERNET : 'fleet';
    return [`closed\n${flow.to}\n${flow.family}\n${side}`, `closed class\n${from}\n${kindOf(flow.to)}\n${flow.port}\n${flow.family}`];
  };

  const chosen = new Set<number>();
  const chosenCells = new Set<string>();
  const covered = new Set<string>();
  /** Cells chosen per source: the next choice goes to the least used, so no sshd does all the work. */
  const uses = new Map<string, number>();
  const take = (index: number): void => {
    if (chosen.has(index)) return;
    chosen.add(index);
    for (const unit of units(flows[index] as Flow)) covered.add(unit);
  };
  const chooseCell = (flow: Flow): void => {
    const cell = cellOf(flow);
    if (chosenCells.has(cell)) return;
    chosenCells.add(cell);
    uses.set(flow.from, (uses.get(flow.from) ?? 0) + 1);
    for (const index of cellOpens.get(cell) ?? []) take(index);
  };
  const chooseFlow = (index: number): void => {
    take(index);
    chooseCell(flows[index] as Flow);
  };
  /** Of the flows that would cover a unit, the one whose source was used least (the first on a tie). */
  const leastUsed = (candidates: readonly number[]): number =>
    candidates.reduce((best, index) => ((uses.get((flows[index] as Flow).from) ?? 0) < (uses.get((flows[best] as Flow).from) ?? 0) ? index : best));

  const byUnit = (expect: Flow['expect']): Map<string, number[]> => {
    const map = new Map<string, number[]>();
    flows.forEach((flow, index) => {
      if (flow.expect !== expect) return;
      for (const unit of units(flow)) {
        const list = map.get(unit);
        if (list) list.push(index);
        else map.set(unit, [index]);
      }
    });
    return map;
  };

  // Every open port of every destination, from each kind of source.
  for (const [unit, candidates] of byUnit('open')) if (!covered.has(unit)) chooseFlow(leastUsed(candidates));
  // Every fleet host as a source: one of its open flows, else one of its closed ones.
  const bySource = new Map<string, number[]>();
  flows.forEach((flow, index) => {
    const list = bySource.get(flow.from);
    if (list) list.push(index);
    else bySource.set(flow.from, [index]);
  });
  for (const [source, indexes] of bySource) {
    if (source === OPERATOR || uses.has(source)) continue;
    chooseFlow(indexes.find((index) => flows[index]?.expect === 'open') ?? (indexes[0] as number));
  }
  // Every destination's closed ports per family and side, then each class of closed flow.
  for (const [unit, candidates] of byUnit('closed')) if (!covered.has(unit)) chooseFlow(leastUsed(candidates));
  return flows.filter((_flow, index) => chosen.has(index));
}
