// `isolate-wizard discover`: what each server has (interfaces, services, firewall), headless.
import {describePort} from '../core/docker.js';
import {EXIT} from '../core/errors.js';
import type {HostDiscovery} from '../core/discovery/index.js';
import {discoverFleet, type FleetDiscoveryResult} from '../remote/discovery.js';
import type {Command} from './command.js';
import {FLEET_OPTIONS, fleetContext} from './fleet-context.js';
import {compactDiscovery, isLargeFleet} from './fleet-output.js';

export const discoverCommand: Command = {
  options: {
    ...FLEET_OPTIONS,
    json: {type: 'boolean'},
  },
  async run(values, _positionals, io) {
    const context = fleetContext(values, io);
    const {connector, selected: targets} = context;
    let results: FleetDiscoveryResult[];
    try {
      results = await discoverFleet(connector, targets);
    } finally {
      await connector.closeAll();
    }

    if (values['json'] === true) {
      io.stdout.write(`${JSON.stringify({hosts: results}, null, 2)}\n`);
    } else {
      if (isLargeFleet(results.length)) io.stdout.write(`${compactDiscovery(results).join('\n')}\n`);
      else io.stdout.write(results.filter((result) => result.ok).map((result) => formatHost(result.discovery)).join('\n'));
    }
    for (const result of results) {
      if (!result.ok) io.stderr.write(`isolate-wizard: ${result.error}\n`);
    }
    if (results.some((result) => !result.ok && result.refused)) return EXIT.refused;
    return results.every((result) => result.ok) ? EXIT.ok : EXIT.failed;
  },
};

/** A readable block per host. */
export function formatHost(discovery: HostDiscovery): string {
  const lines: string[] = [];
  const os = discovery.os.prettyName ?? discovery.os.id ?? 'unknown OS';
  lines.push(`${discovery.host}  ${discovery.route}  (${os})`);
  lines.push('  interfaces:');
  const width = Math.max(4, ...discovery.interfaces.map((item) => item.name.length));
  for (const item of discovery.interfaces) {
    const routes = [item.defaultRoute.v4 ? 'v4' : '', item.defaultRoute.v6 ? 'v6' : ''].filter(Boolean).join('+');
    const extras = [routes ? `default route ${routes}` : '', item.note ?? ''].filter(Boolean).join('; ');
    lines.push(
      `    ${item.name.padEnd(width)}  ${item.side.padEnd(7)}  ${item.cidrs.join(' ') || '(no address)'}${extras ? `  [${extras}]` : ''}`,
    );
  }
  // IPv4 and IPv6 sockets of one service show once.
  const services = [
    ...new Set(
      discovery.listening.map(
        (service) =>
          `${service.proto}/${service.port}${service.program ? ` ${service.program}` : ''}` +
          (service.address && !/^(0\.0\.0\.0|::|\*)$/.test(service.address) ? ` on ${service.address}` : ''),
      ),
    ),
  ];
  lines.push(`  listening: ${services.length > 0 ? services.join(', ') : '(nothing)'}`);
  const roles = discovery.suggestedRoles.map((role) => `${role.role} (${role.reason})`);
  lines.push(`  suggested roles: ${roles.length > 0 ? roles.join('; ') : '(none)'}`);
  const firewall = discovery.firewall;
  lines.push(
    `  firewall: iptables ${firewall.iptablesVersion ?? '?'} (${firewall.backend}); persistence: ${discovery.persistence.kind}`,
  );
  const docker = discovery.facts.docker;
  if (docker) lines.push(`  Docker published ports: ${docker.published.length > 0 ? docker.published.map(describePort).join(', ') : '(none)'}`);
  if (firewall.nftUsable !== undefined) {
    lines.push(`  backend auto: ${firewall.nftUsable ? 'nftables (nft takes a table like ours)' : `iptables (${firewall.nftProblem ?? 'nft cannot hold our table'})`}`);
  }
  if (discovery.sshConnection) {
    const ssh = discovery.sshConnection;
    lines.push(`  your ssh session: from ${ssh.clientAddress}:${ssh.clientPort} to ${ssh.serverAddress}:${ssh.serverPort}`);
  }
  if (discovery.warnings.length > 0) {
    lines.push('  warnings:');
    for (const warning of discovery.warnings) lines.push(`    - ${warning}`);
  }
  return `${lines.join('\n')}\n`;
}
