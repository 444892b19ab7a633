// What discovery learns about one server. Field names line up with the UI's view model
// (source/ui/services.ts: DiscoveredInterface, ListeningService) so mapping is a copy.
import type {HostFacts} from '../model.js';

export type InterfaceSide = 'public' | 'private' | 'ignore';

export interface InterfaceAddress {
  readonly address: string;
  readonly prefixLength: number;
  readonly family: 4 | 6;
  /** `global`, `link`, `host`... as ip prints it. */
  readonly scope: string;
}

export interface InterfaceInfo {
  readonly name: string;
  readonly up: boolean;
  readonly loopback: boolean;
  readonly mac?: string;
  readonly allAddresses: readonly InterfaceAddress[];
}

export interface RouteInfo {
  readonly dst: string; // "default" or a CIDR
  readonly dev?: string;
  readonly gateway?: string;
  readonly metric?: number;
}

export interface DiscoveredInterface {
  readonly name: string;
  /** Plain addresses (no prefix length), IPv4 then IPv6; link-local left out. */
  readonly addresses: readonly string[];
  readonly side: InterfaceSide;
  /** Why the classification is uncertain or why the interface is ignored. */
  readonly note?: string;
  /** Address with prefix length, for display (e.g. 10.132.0.12/24). */
  readonly cidrs: readonly string[];
  readonly defaultRoute: {readonly v4: boolean; readonly v6: boolean};
}

export interface ListeningService {
  readonly proto: 'tcp' | 'udp';
  readonly port: number;
  /** The bound address: 0.0.0.0 / :: / * for all, else one address. */
  readonly address?: string;
  readonly program?: string;
}

export interface RoleSuggestion {
  readonly role: string;
  readonly reason: string;
}

export type IptablesBackend = 'nf_tables' | 'legacy' | 'unknown';

export interface FirewallFacts {
  readonly iptablesVersion?: string;
  readonly backend: IptablesBackend;
  /** Both legacy and nf_tables hold iptables tables: rules in the other one still filter traffic. */
  readonly mixedBackends: boolean;
  /**
   * Whether nft took a table like ours (`nft -c`, nothing loaded): where it did, backend auto
   * gives the host nftables. Undefined when not checked (recorded before the check existed).
   */
  readonly nftUsable?: boolean;
  /** Why not, when nftUsable is false. */
  readonly nftProblem?: string;
  /** Native nftables tables that are not iptables' own (e.g. `inet firewalld`). */
  readonly nativeNftTables: readonly string[];
  readonly ufwActive: boolean;
  readonly firewalldActive: boolean;
  readonly docker: boolean;
  readonly fail2ban: boolean;
  readonly kubernetes: boolean;
  /** The current rules as the server printed them ('' when it could not). */
  readonly iptablesSave: string;
  readonly ip6tablesSave: string;
}

export type PersistenceKind = 'netfilter-persistent' | 'iptables-services' | 'none';

export interface PersistenceFacts {
  readonly kind: PersistenceKind;
  /** Where saved rules live for that kind (IPv4, IPv6). */
  readonly files?: {readonly v4: string; readonly v6: string};
  /** Which of those files exist now. */
  readonly existing: readonly string[];
}

export interface OsFacts {
  readonly id?: string;
  readonly versionId?: string;
  readonly prettyName?: string;
  readonly systemdPid1: boolean;
}

/** `$SSH_CONNECTION` as the server saw our session. */
export interface SshConnectionFacts {
  readonly clientAddress: string;
  readonly clientPort: number;
  readonly serverAddress: string;
  readonly serverPort: number;
}

export interface HostDiscovery {
  readonly host: string;
  readonly route: string;
  readonly facts: HostFacts;
  readonly interfaces: readonly DiscoveredInterface[];
  readonly listening: readonly ListeningService[];
  readonly suggestedRoles: readonly RoleSuggestion[];
  readonly firewall: FirewallFacts;
  readonly persistence: PersistenceFacts;
  readonly os: OsFacts;
  readonly sshConnection?: SshConnectionFacts;
  /** The login's uid as reported by the script run as root (0 when it really ran as root). */
  readonly ranAsRoot: boolean;
  readonly warnings: readonly string[];
}
