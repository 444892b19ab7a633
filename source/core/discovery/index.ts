// Turns the discovery script's output into HostDiscovery: pure, so recorded outputs test it.
import {classifyInterfaces, DiscoveryParseError, parseIpAddr, parseIpRoute} from './interfaces.js';
import {parseSections} from './script.js';
import {parseSs, suggestRoles} from './services.js';
import {firewallFacts, osFacts, parseSshConnection, persistenceFacts} from './system.js';
import type {HostDiscovery} from './types.js';
import {dockerFacts, type DockerFacts} from '../docker.js';
import {parseNftJson} from '../nft-ruleset.js';

export * from './types.js';
export {BACKENDS_SCRIPT, DISCOVERY_SCRIPT, DOCKER_SCRIPT, formatSections, parseSections} from './script.js';
export {classifyInterfaces, DiscoveryParseError, parseIpAddr, parseIpRoute} from './interfaces.js';
export {isPrivateAddress} from '../addresses.js';
export {parseSs, suggestRoles, isLoopbackOnly} from './services.js';
export {firewallFacts, osFacts, parseIptablesVersion, parseOsRelease, parseSshConnection, persistenceFacts} from './system.js';

export interface DiscoveryInput {
  readonly host: string;
  readonly route: string;
  /** stdout of DISCOVERY_SCRIPT run as root. */
  readonly scriptOutput: string;
  /** `$SSH_CONNECTION` of the login session (read without sudo, which would drop it). */
  readonly sshConnection?: string;
  /** The sshd port of the operator's path. */
  readonly sshPort?: number;
}

export function interpretDiscovery(input: DiscoveryInput): HostDiscovery {
  const sections = parseSections(input.scriptOutput);
  const text = (name: string): string => sections.get(name)?.text ?? '';
  const required = (name: string, what: string): string => {
    const section = sections.get(name);
    if (!section) throw new DiscoveryParseError(`the discovery output has no ${what} (cut short?)`);
    if (section.rc !== 0) throw new DiscoveryParseError(`${what} failed on the server (exit ${section.rc ?? 'unknown'})`);
    return section.text;
  };
  const links = parseIpAddr(required('ip-addr', '`ip -j addr`'));
  const routes4 = parseIpRoute(required('ip-route4', '`ip -j route`'));
  const routes6 = sections.get('ip-route6')?.rc === 0 ? parseIpRoute(text('ip-route6')) : [];
  const classification = classifyInterfaces(links, routes4, routes6, input.sshPort);
  const warnings = [...classification.warnings];

  const ss = sections.get('ss');
  const listening = ss?.rc === 0 ? parseSs(ss.text) : [];
  if (ss?.rc !== 0) warnings.push('could not list listening sockets (ss failed)');
  const roles = suggestRoles(listening);
  warnings.push(...roles.warnings);

  const saveOk = (name: string) => (sections.get(name)?.rc === 0 ? text(name) : '');
  const firewall = firewallFacts({
    iptablesVersion: text('iptables-version'),
    iptablesSave: saveOk('iptables-save'),
    ip6tablesSave: saveOk('ip6tables-save'),
    legacyTables: text('legacy-tables'),
    ...(sections.has('legacy-save') ? {legacySave: text('legacy-save')} : {}),
    ...(sections.has('nft-iptables-tables') ? {nftIptablesTables: text('nft-iptables-tables')} : {}),
    ...(sections.has('nft-tables') ? {nftTables: text('nft-tables')} : {}),
    ...(sections.has('nft-check') ? {nftCheck: sections.get('nft-check') as {text: string; rc?: number}} : {}),
    ...(sections.has('ufw') ? {ufwStatus: text('ufw')} : {}),
    ...(sections.has('firewalld') ? {firewalldState: text('firewalld')} : {}),
    interfaceNames: links.map((link) => link.name),
    commands: text('commands'),
  });
  if (sections.get('iptables-save')?.rc !== 0) warnings.push('iptables-save failed: the current IPv4 rules are unknown');
  if (sections.get('ip6tables-save')?.rc !== 0) warnings.push('ip6tables-save failed: the current IPv6 rules are unknown');
  warnings.push(...firewall.warnings);

  const persistence = persistenceFacts(text('commands'), text('files'));
  warnings.push(...persistence.warnings);
  const os = osFacts(text('os-release'), text('pid1'));
  const ranAsRoot = text('uid').trim() === '0';
  if (!ranAsRoot) warnings.push('the discovery script did not run as root: sockets and rules may be incomplete');
  const sshConnection = input.sshConnection === undefined ? undefined : parseSshConnection(input.sshConnection);
  if (!sshConnection) warnings.push('the server did not report $SSH_CONNECTION: the lockout check cannot see your path');

  const docker = readDocker(sections, warnings);
  return {
    host: input.host,
    route: input.route,
    facts: docker ? {...classification.facts, docker} : classification.facts,
    interfaces: classification.interfaces,
    listening,
    suggestedRoles: roles.suggestions,
    firewall: firewall.facts,
    persistence: persistence.facts,
    os,
    ...(sshConnection ? {sshConnection} : {}),
    ranAsRoot,
    warnings,
  };
}

/**
 * Why a host must not be applied to because of its iptables backends (undefined: it may), from the
 * output of BACKENDS_SCRIPT. Both backends holding tables means every packet passes both rule
 * sets: our rules in one would not be the whole story, and a rollback would not be either.
 */
export function mixedBackendsRefusal(probeOutput: string): string | undefined {
  const sections = parseSections(probeOutput);
  const text = (name: string): string => sections.get(name)?.text ?? '';
  const {facts} = firewallFacts({
    iptablesVersion: text('iptables-version'),
    iptablesSave: '',
    ip6tablesSave: '',
    legacyTables: text('legacy-tables'),
    ...(sections.has('legacy-save') ? {legacySave: text('legacy-save')} : {}),
    ...(sections.has('nft-iptables-tables') ? {nftIptablesTables: text('nft-iptables-tables')} : {}),
    interfaceNames: [],
    commands: '',
  });
  return facts.mixedBackends ? 'both iptables-legacy and nftables rules are loaded: packets pass both; remove one first' : undefined;
}

/**
 * Docker's published ports from the sections DOCKER_SCRIPT (also part of the discovery script)
 * prints; undefined without Docker or when nothing was read. What cannot be read is a warning.
 */
export function readDocker(sections: ReadonlyMap<string, {readonly text: string; readonly rc?: number}>, warnings: string[]): DockerFacts | undefined {
  const ok = (name: string): string => (sections.get(name)?.rc === 0 ? (sections.get(name)?.text ?? '') : '');
  try {
    const nftText = ok('nft-json').trim();
    const filterChains = sections.has('filter-chains4') ? {filterChains: {v4: ok('filter-chains4'), v6: ok('filter-chains6')}} : {};
    return dockerFacts({nat4: ok('nat-save4'), nat6: ok('nat-save6'), ...(nftText === '' ? {} : {nft: parseNftJson(nftText)}), ...filterChains});
  } catch (error) {
    warnings.push(`Docker's published ports could not be read: ${error instanceof Error ? error.message : String(error)}`);
    return undefined;
  }
}

/** Docker's facts from DOCKER_SCRIPT's output. */
export function interpretDocker(output: string): {docker?: DockerFacts; warnings: string[]} {
  const warnings: string[] = [];
  const docker = readDocker(parseSections(output), warnings);
  return docker ? {docker, warnings} : {warnings};
}
