// Built-in role templates and their merge with the inventory's overrides.
// Only the types of inventory.ts are imported here, so the two modules do not load each other.
import type {Inventory} from './inventory.js';
import type {PortRange, RoleTemplate} from './model.js';

const port = (value: number): PortRange => ({first: value, last: value});

export const BUILTIN_ROLES: Readonly<Record<string, RoleTemplate>> = Object.freeze({
  bastion: {
    name: 'bastion',
    description: 'SSH entry point: tcp 22 from the internet on its public interface',
    accept: [{ports: [port(22)], proto: 'tcp', from: 'internet'}],
    peers: [],
    peersProto: 'tcp',
  },
  lb: {
    name: 'lb',
    description: 'Load balancer: tcp 80 and 443 from the internet',
    accept: [{ports: [port(80), port(443)], proto: 'tcp', from: 'internet'}],
    peers: [],
    peersProto: 'tcp',
  },
  app: {
    name: 'app',
    // Destination ports 80/443 from the lb: the seed's `--sport 80` would keep the lb out.
    description: 'Application server: tcp 80 and 443 from the load balancers',
    accept: [{ports: [port(80), port(443)], proto: 'tcp', from: 'lb'}],
    peers: [],
    peersProto: 'tcp',
  },
  db: {
    name: 'db',
    description: 'Database: tcp 3306 from the app servers, and between databases for replication',
    accept: [{ports: [port(3306)], proto: 'tcp', from: 'app'}],
    peers: [port(3306)],
    peersProto: 'tcp',
  },
});

/** Built-ins merged with the inventory's `roles` (fields given replace the built-in's), plus new roles. */
export function resolveRoles(inv: Inventory): ReadonlyMap<string, RoleTemplate> {
  const roles = new Map<string, RoleTemplate>();
  const names = [...new Set([...Object.keys(BUILTIN_ROLES), ...Object.keys(inv.roles)])].sort();
  for (const name of names) {
    const base: RoleTemplate = BUILTIN_ROLES[name] ?? {name, description: '', accept: [], peers: [], peersProto: 'tcp'};
    const override = inv.roles[name] ?? {};
    roles.set(name, {
      name,
      description: override.description ?? base.description,
      accept: override.accept ?? base.accept,
      peers: override.peers ?? base.peers,
      peersProto: override.peersProto ?? base.peersProto,
    });
  }
  return roles;
}
