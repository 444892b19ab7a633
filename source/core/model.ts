// Shared domain types. Pure data: no I/O, no React. Every layer speaks these.
import type {DockerFacts} from './docker.js';

export type Family = 4 | 6;
export type Protocol = 'tcp' | 'udp';

/** An inclusive port range; a single port has first === last. */
export interface PortRange {
  readonly first: number;
  readonly last: number;
}

/**
 * Who an opening lets in: 'internet' (anyone, on the public interface), 'private'
 * (every server of this fleet, on the private interface), a role name, a host name,
 * or a CIDR / address (v4 or v6).
 */
export type SourceSpec = string;

export interface Opening {
  readonly ports: readonly PortRange[];
  readonly proto: Protocol;
  readonly from: SourceSpec;
}

/** A role template after built-ins and overrides are merged. */
export interface RoleTemplate {
  readonly name: string;
  readonly description: string;
  /** Openings on every host that has this role. */
  readonly accept: readonly Opening[];
  /** Ports open between hosts that share this role, over the private network. */
  readonly peers: readonly PortRange[];
  readonly peersProto: Protocol;
}

/** What a host has: its interfaces and their addresses (from the inventory or discovery). */
export interface HostFacts {
  readonly interfaces: {readonly public?: string; readonly private?: string};
  /** Plain addresses (no prefix length), IPv4 and IPv6 mixed. */
  readonly addresses: {readonly public: readonly string[]; readonly private: readonly string[]};
  /** The port sshd listens on for the operator's path (from the ssh destination or config); default 22. */
  readonly sshPort?: number;
  /** Docker, as read on the host (absent: no Docker there, or not read). */
  readonly docker?: DockerFacts;
}

export interface FleetOptions {
  /**
   * The seed's strict outbound on public hosts: OUTPUT DROP except replies, loopback, essential ICMP,
   * DNS/NTP/HTTP(S) out for updates, and to each fleet peer exactly the ports that peer opens to this host.
   */
  readonly strictOutbound: boolean;
  /** The seed's looser mode: trust every server of the fleet on every port over the private network. */
  readonly trustPrivate: boolean;
  /** Rate-limited logging of dropped packets (prefix "isolate-wizard DROP "). */
  readonly logDrops: boolean;
  /** Where our rules live on each host (absent: auto, see core/backend.ts); `--backend` overrides it. */
  readonly backend?: BackendChoice;
  /**
   * Docker hosts: let new connections to published container ports (which bypass input) through
   * only from the plan's sources for that port on the host (nftables backend). Default false.
   */
  readonly restrictPublished?: boolean;
  /**
   * What apply does where another firewall (firewalld, ufw) would drop what the plan opens:
   * absent = refuse; open = open those flows in it too; stop = stop it within the batch.
   * `--other-firewall` overrides it.
   */
  readonly otherFirewall?: OtherFirewallRemedy;
}

export type OtherFirewallRemedy = 'open' | 'stop';

/**
 * iptables: our rules in the iptables filter tables. nftables: in our own table, inet
 * isolate_wizard. auto: nftables where the host has nft, else iptables.
 */
export type BackendChoice = 'iptables' | 'nftables' | 'auto';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['iptables', 'nftables', 'auto'];

export const DEFAULT_OPTIONS: FleetOptions = {strictOutbound: false, trustPrivate: false, logDrops: false};

// ---------------------------------------------------------------------------
// Rulesets: the structured form of an iptables-restore / iptables-save file.
// The compiler builds them, the parser reads servers' output into them, the
// evaluator walks them, and the renderer writes the text that is loaded.

/** One rule: the tokens after `-A CHAIN`, as iptables-save prints them (quotes removed). */
export interface Rule {
  readonly chain: string;
  readonly spec: readonly string[];
}

export interface Chain {
  readonly name: string;
  /** ACCEPT/DROP for built-in chains; null for user-defined chains (`-` in the file). */
  readonly policy: string | null;
}

export interface Table {
  readonly name: string; // filter, nat, mangle, raw, security
  readonly chains: readonly Chain[];
  readonly rules: readonly Rule[]; // in file order; a chain's rules are those with its name
}

export interface Ruleset {
  readonly family: Family;
  readonly tables: readonly Table[];
}

/** The compiler's output for one host. */
export interface CompiledHost {
  readonly host: string;
  readonly v4: Ruleset;
  readonly v6: Ruleset;
  /** Things the operator should know (e.g. a role accepts from the internet but the host has no public interface). */
  readonly warnings: readonly string[];
}
