// Discovery over SSH: one fixed script per host (its text on stdin to `sh -s`, run as root) plus the
// login session's $SSH_CONNECTION (read without sudo, which drops it), both at once. Hosts run in parallel.
import {HostError, RefusedError} from '../core/errors.js';
import {BACKENDS_SCRIPT, DISCOVERY_SCRIPT, DOCKER_SCRIPT, DiscoveryParseError, interpretDiscovery, interpretDocker, mixedBackendsRefusal, type HostDiscovery} from '../core/discovery/index.js';
import type {DockerFacts} from '../core/docker.js';
import {stripControl, stripControlDeep} from '../core/terminal-text.js';
import type {Connector, HostTarget, RemoteHost} from './types.js';

/** Every command string this module sends. Constants only: data travels on stdin. */
export const DISCOVERY_COMMANDS = {
  script: 'sh -s',
  sshConnection: `printf '%s\\n' "$SSH_CONNECTION"`,
} as const;

const SCRIPT_TIMEOUT_MS = 60_000;

/**
 * Why this host must not be applied to because both iptables backends hold tables ("host: ..."),
 * or undefined. Read-only; a probe that cannot run is reported as a failure of the host, not
 * taken as a yes.
 */
export async function backendRefusal(remote: RemoteHost): Promise<string | undefined> {
  const result = await remote.exec(DISCOVERY_COMMANDS.script, {root: true, stdin: BACKENDS_SCRIPT, timeoutMs: SCRIPT_TIMEOUT_MS});
  if (result.code !== 0 && result.stdout.trim() === '') {
    throw new HostError(remote.name, `the backend check failed: ${result.stderr.trim().split('\n')[0] || `exit ${result.code}`}`);
  }
  const why = mixedBackendsRefusal(result.stdout);
  return why === undefined ? undefined : `${remote.name}: ${why}`;
}

/**
 * Docker's published ports on a host whose facts the inventory gives (read-only; no docker CLI).
 * What cannot be read comes back as warnings, never as "no Docker" said with confidence.
 */
export async function readDockerFacts(remote: RemoteHost): Promise<{docker?: DockerFacts; warnings: string[]}> {
  const result = await remote.exec(DISCOVERY_COMMANDS.script, {root: true, stdin: DOCKER_SCRIPT, timeoutMs: SCRIPT_TIMEOUT_MS});
  if (result.code !== 0 && result.stdout.trim() === '') {
    return {warnings: [`${remote.name}: Docker's published ports could not be read: ${stripControl(result.stderr.trim().split('\n')[0] ?? '') || `exit ${result.code}`}`]};
  }
  const read = interpretDocker(result.stdout);
  return {...read, warnings: read.warnings.map((warning) => `${remote.name}: ${stripControl(warning)}`)};
}

export async function discoverHost(remote: RemoteHost): Promise<HostDiscovery> {
  const [script, session] = await Promise.all([
    remote.exec(DISCOVERY_COMMANDS.script, {root: true, stdin: DISCOVERY_SCRIPT, timeoutMs: SCRIPT_TIMEOUT_MS}),
    remote.exec(DISCOVERY_COMMANDS.sshConnection, {timeoutMs: SCRIPT_TIMEOUT_MS}),
  ]);
  if (script.code !== 0 && script.stdout.trim() === '') {
    const why = stripControl(script.stderr.trim().split('\n')[0] ?? '') || `exit ${script.code}`;
    throw new HostError(remote.name, `the discovery script failed: ${why}`);
  }
  const sshConnection = session.code === 0 ? session.stdout : undefined;
  const serverPort = sshConnection?.trim().split(/\s+/)[3];
  let discovery: HostDiscovery;
  try {
    discovery = interpretDiscovery({
      host: remote.name,
      route: remote.route,
      scriptOutput: script.stdout,
      ...(sshConnection === undefined ? {} : {sshConnection}),
      ...(serverPort && /^\d+$/.test(serverPort) ? {sshPort: Number(serverPort)} : {}),
    });
  } catch (error) {
    if (error instanceof DiscoveryParseError) throw new HostError(remote.name, stripControl(error.message));
    throw error;
  }
  return displaySafe(remote.name, discovery);
}

/** The rulesets as read: data compared and merged, never printed raw by discovery. */
const KEPT_AS_READ = new Set(['iptablesSave', 'ip6tablesSave', 'facts']);

/**
 * Server text (os-release, interface and process names, warnings that quote them) without terminal
 * control sequences, before anything shows it. The facts the compiler writes rules from are kept
 * as read: an interface name that would change is refused rather than shown as another name.
 */
function displaySafe(host: string, discovery: HostDiscovery): HostDiscovery {
  for (const name of [discovery.facts.interfaces.public, discovery.facts.interfaces.private]) {
    if (name !== undefined && stripControl(name) !== name) {
      throw new HostError(host, `the interface "${stripControl(name)}" has control characters in its name; name the interfaces in the inventory`);
    }
  }
  return stripControlDeep(discovery, KEPT_AS_READ);
}

export type DiscoveryPhase = 'connecting' | 'reading' | 'done' | 'failed';

export type FleetDiscoveryResult =
  | {readonly host: string; readonly ok: true; readonly discovery: HostDiscovery}
  | {readonly host: string; readonly ok: false; readonly error: string; readonly refused: boolean};

export interface DiscoverFleetOptions {
  readonly onProgress?: (host: string, phase: DiscoveryPhase) => void;
}

/** Discovers every target in parallel; a host that fails does not stop the others. Results keep target order. */
export async function discoverFleet(
  connector: Connector,
  targets: readonly HostTarget[],
  options: DiscoverFleetOptions = {},
): Promise<FleetDiscoveryResult[]> {
  const progress = options.onProgress ?? (() => undefined);
  const results = await Promise.all(
    targets.map(async (target): Promise<FleetDiscoveryResult> => {
      try {
        progress(target.name, 'connecting');
        const remote = await connector.connect(target);
        progress(target.name, 'reading');
        const discovery = await discoverHost(remote);
        progress(target.name, 'done');
        return {host: target.name, ok: true, discovery};
      } catch (error) {
        progress(target.name, 'failed');
        // Messages may quote the server (sshd's disconnect reason, sudo's complaint).
        const message = stripControl(error instanceof Error ? error.message : String(error));
        const prefixed = message.startsWith(`${target.name}:`) || message.includes(target.name) ? message : `${target.name}: ${message}`;
        return {host: target.name, ok: false, error: prefixed, refused: error instanceof RefusedError};
      }
    }),
  );
  return suggestBastions(results);
}

/** A host that others are reached through is a bastion candidate. */
function suggestBastions(results: FleetDiscoveryResult[]): FleetDiscoveryResult[] {
  const jumpNames = new Set<string>();
  for (const result of results) {
    if (!result.ok) continue;
    for (const match of result.discovery.route.matchAll(/ via (\S+)/g)) if (match[1]) jumpNames.add(match[1]);
  }
  return results.map((result) => {
    if (!result.ok || !jumpNames.has(result.host)) return result;
    if (result.discovery.suggestedRoles.some((role) => role.role === 'bastion')) return result;
    return {
      ...result,
      discovery: {
        ...result.discovery,
        suggestedRoles: [{role: 'bastion', reason: 'other hosts are reached through it (ProxyJump)'}, ...result.discovery.suggestedRoles],
      },
    };
  });
}
