// What the operator's own ssh does for each inventory host (from ~/.ssh/config, no network): the
// port, the address it connects to, and the last ProxyJump hop — the address the host sees the
// operator's session come from. The lockout check and the load order are built on it.
import {addressFamily} from '../core/addresses.js';
import type {Inventory} from '../core/inventory.js';
import type {ResolvedSsh} from '../core/lockout.js';
import {parseDestination, parseSshConfig, readSshConfig, resolveSshTarget, SshConfigError, type ParsedSshConfig} from './ssh-config.js';

/**
 * What the operator's own ssh would do for each host, from ~/.ssh/config only (no network):
 * the port, and the last ProxyJump hop when it is a fleet host. Unreadable entries are skipped:
 * the lockout check then falls back to the inventory; a config this tool does not follow (an
 * unsupported ProxyCommand, a Match exec) is recorded as `unusable`, so no path is assumed for it.
 */
export function resolveOperatorSsh(inv: Pick<Inventory, 'hosts'> | {readonly hosts: readonly {readonly name: string; readonly ssh: string}[]}, home: string | undefined, configText?: string): Map<string, ResolvedSsh> {
  const resolved = new Map<string, ResolvedSsh>();
  if (home === undefined) return resolved;
  // Read and parse the config once for the whole fleet.
  let parsed: ParsedSshConfig;
  try {
    parsed = parseSshConfig(home, configText ?? readSshConfig(home));
  } catch {
    return resolved;
  }
  const fleetNameOf = new Map<string, string>();
  for (const host of inv.hosts) {
    fleetNameOf.set(host.name, host.name);
    try {
      fleetNameOf.set(parseDestination(host.ssh).host, host.name);
    } catch {
      // the inventory validated it; nothing to map
    }
  }
  for (const host of inv.hosts) {
    try {
      const target = resolveSshTarget(host.ssh, {home, parsed});
      const lastHop = target.proxyJump[target.proxyJump.length - 1];
      const jumpHost = lastHop === undefined ? undefined : fleetNameOf.get(parseDestination(lastHop).host);
      const address = addressFamily(target.hostname) === undefined ? undefined : target.hostname;
      resolved.set(host.name, {
        port: target.port,
        // A jump outside the fleet: the host sees an address we do not know.
        ...(lastHop === undefined ? {} : {proxyJump: jumpHost ?? lastHop}),
        ...(address === undefined ? {} : {address}),
      });
    } catch (error) {
      // A ProxyCommand or Match exec we do not follow: say so rather than check a path ssh would not take.
      if (error instanceof SshConfigError) resolved.set(host.name, {unusable: error.message});
      continue;
    }
  }
  return resolved;
}
