// Peer ports suggested from what a role's servers listen on: when two servers of the same role
// both listen on a port their role does not open (the tutorial's GlusterFS on 24007 between the
// wordpress servers), that port is most likely how they talk to each other. Pure: discovery's
// listening services in, suggestions out; the operator decides.
import type {PortRange, Protocol, RoleTemplate} from './model.js';

export interface ListeningHost {
  readonly name: string;
  readonly roles: readonly string[];
  readonly listening: readonly {readonly proto: Protocol; readonly port: number; readonly address?: string}[];
}

export interface PeerPortSuggestion {
  readonly role: string;
  readonly proto: Protocol;
  /** The ports to add, ascending. */
  readonly ports: readonly number[];
  /** The servers of the role listening on at least one of them. */
  readonly hosts: readonly string[];
  /** The role's `peers` with the ports added, as the inventory writes them ("24007", "49152-49251"). */
  readonly peers: readonly string[];
}

const SSH_PORT = 22;

/** A listener only this machine can reach says nothing about its peers. */
function isLoopback(address: string | undefined): boolean {
  return address !== undefined && (address.startsWith('127.') || address === '::1');
}

const covers = (ranges: readonly PortRange[], port: number): boolean => ranges.some((range) => range.first <= port && port <= range.last);

const spell = (range: PortRange): string => (range.first === range.last ? String(range.first) : `${range.first}-${range.last}`);

/**
 * For each role with two or more servers: the ports (of the role's peer protocol) that at least two
 * of them listen on, that its template neither accepts nor opens between peers yet, SSH aside.
 */
export function suggestPeerPorts(hosts: readonly ListeningHost[], templates: ReadonlyMap<string, RoleTemplate>): PeerPortSuggestion[] {
  const suggestions: PeerPortSuggestion[] = [];
  for (const [role, template] of templates) {
    const members = hosts.filter((host) => host.roles.includes(role));
    if (members.length < 2) continue;
    const opened = [...template.peers, ...template.accept.filter((opening) => opening.proto === template.peersProto).flatMap((opening) => opening.ports)];
    const listeners = new Map<number, Set<string>>();
    for (const host of members) {
      for (const service of host.listening) {
        if (service.proto !== template.peersProto || service.port === SSH_PORT || isLoopback(service.address) || covers(opened, service.port)) continue;
        const names = listeners.get(service.port) ?? new Set<string>();
        names.add(host.name);
        listeners.set(service.port, names);
      }
    }
    const shared = [...listeners].filter(([, names]) => names.size >= 2);
    if (shared.length === 0) continue;
    const ports = shared.map(([port]) => port).sort((a, b) => a - b);
    const listening = new Set(shared.flatMap(([, names]) => [...names]));
    suggestions.push({
      role,
      proto: template.peersProto,
      ports,
      hosts: members.map((host) => host.name).filter((name) => listening.has(name)),
      peers: [...template.peers.map(spell), ...ports.map(String)],
    });
  }
  return suggestions;
}
