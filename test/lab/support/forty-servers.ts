// The forty-server lab shared by `BENCH_ONLY=apply40` (scripts/bench.ts) and test/lab/wizard-40.test.ts:
// the seed fleet and 34 more servers behind the bastion, each its own namespace, sshd and role-port
// listener. Roles in all: 1 bastion, 2 lb, 25 app, 12 db.
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {DEFAULT_HOSTS, type Lab, type LabHostSpec, type LabOptions} from '../../../source/lab/lab.js';

const SEED_WITH_ADDRESSES = path.resolve(import.meta.dirname, '../../../fixtures/inventories/seed-with-addresses.json');

const numbered = (prefix: string, from: number, to: number): string[] =>
  Array.from({length: to - from + 1}, (_, index) => `${prefix}-${String(from + index).padStart(2, '0')}`);

/** The 34 servers added to the seed fleet, with the role each one gets. */
const EXTRA_ROLES: readonly (readonly [string, 'lb' | 'app' | 'db'])[] = [
  ['lb-02', 'lb'],
  ...numbered('app', 3, 25).map((name) => [name, 'app'] as const),
  ...numbered('db', 3, 12).map((name) => [name, 'db'] as const),
];

const LISTEN: Record<'lb' | 'app' | 'db', number[]> = {lb: [80, 443], app: [80, 443, 24007], db: [3306]};

/** createLab's hosts: the seed fleet, then the 34 more. */
export const FORTY_HOSTS: readonly LabHostSpec[] = [...DEFAULT_HOSTS, ...EXTRA_ROLES.map(([name, role]) => ({name, listen: {tcp: LISTEN[role]}}))];

/**
 * createLab's options for the forty: the servers, and their neighbours written permanently (the
 * kernel's shared neighbour tables overflow when 40 servers all try each other: see LabOptions).
 */
export const FORTY_LAB: LabOptions = {hosts: FORTY_HOSTS, staticNeighbours: true};

/** The forty servers' names, in inventory order. */
export const FORTY_NAMES: readonly string[] = FORTY_HOSTS.map((host) => host.name);

/** The seed inventory (every address given) and the 34 more hosts, each with its role and the lab's addresses. */
export function fortyInventory(lab: Lab): {roles: object; hosts: {name: string; roles: string[]}[]} {
  const seed = JSON.parse(readFileSync(SEED_WITH_ADDRESSES, 'utf8')) as {roles: object; hosts: {name: string; roles: string[]}[]};
  const extra = EXTRA_ROLES.map(([name, role]) => {
    const host = lab.hosts.get(name);
    if (!host?.publicV4 || !host.publicV6 || !host.privateV4 || !host.privateV6) throw new Error(`lab host ${name} lacks an address`);
    return {
      name,
      ssh: name,
      roles: [role],
      interfaces: {public: 'eth0', private: 'eth1'},
      addresses: {public: [host.publicV4, host.publicV6], private: [host.privateV4, host.privateV6]},
    };
  });
  return {...seed, hosts: [...seed.hosts, ...extra]};
}
