// A plan: the fleet compiled, and read back from the compiled rules — who can reach what, and
// whether the operator's SSH path survives. Pure; the plan command, apply and the wizard share it.
import {summarizeFleetAccess, type AccessEntry, type FleetHost} from './access.js';
import {compileFleet} from './compiler.js';
import {forwardLeftToDocker} from './docker.js';
import type {Inventory} from './inventory.js';
import {checkLockout, operatorPaths, type LockoutFinding, type ResolvedSsh} from './lockout.js';
import type {HostFacts} from './model.js';

export interface Plan {
  readonly inventory: Inventory;
  readonly hosts: readonly FleetHost[];
  readonly access: readonly AccessEntry[];
  readonly lockout: readonly LockoutFinding[];
}

/**
 * Compiles the fleet and reads back, from the compiled rules, its access and the operator's
 * SSH paths. `withAccess: false` skips the access matrix (the slow part) when nobody shows it.
 */
export function buildPlan(
  inv: Inventory,
  facts: ReadonlyMap<string, HostFacts>,
  resolved?: ReadonlyMap<string, ResolvedSsh>,
  options: {readonly withAccess?: boolean} = {},
): Plan {
  // On a Docker host forwarding is Docker's: a FORWARD of ours that dropped would cut its containers off.
  const compiled = compileFleet(inv, facts).map((host) =>
    facts.get(host.host)?.docker ? {...host, v4: forwardLeftToDocker(host.v4), v6: forwardLeftToDocker(host.v6)} : host,
  );
  const hosts: FleetHost[] = compiled.map((host) => ({name: host.host, facts: facts.get(host.host) as HostFacts, compiled: host}));
  const access = options.withAccess === false ? [] : summarizeFleetAccess(hosts);
  const lockout = checkLockout(hosts, operatorPaths(inv, resolved));
  return {inventory: inv, hosts, access, lockout};
}
