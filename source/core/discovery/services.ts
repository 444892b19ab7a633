// Listening sockets (`ss -Htulnp`) and the role suggestions they lead to.
import type {ListeningService, RoleSuggestion} from './types.js';

/** Parses `ss -Htulnp` lines: `tcp LISTEN 0 4096 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=1,fd=3))`. */
export function parseSs(text: string): ListeningService[] {
  const services: ListeningService[] = [];
  const seen = new Set<string>();
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 5) continue;
    const [netid, state, , , local] = fields;
    if (netid !== 'tcp' && netid !== 'udp') continue;
    if (netid === 'tcp' && state !== 'LISTEN') continue;
    if (!local) continue;
    const colon = local.lastIndexOf(':');
    if (colon < 0) continue;
    const port = Number(local.slice(colon + 1));
    if (!Number.isInteger(port) || port <= 0) continue;
    const address = local
      .slice(0, colon)
      .replace(/^\[|\]$/g, '')
      .replace(/%.*$/, '')
      .replace(/^\[/, '')
      .replace(/\]$/, '');
    const users = line.slice(line.indexOf('users:') >= 0 ? line.indexOf('users:') : line.length);
    const program = /\("([^"]+)"/.exec(users)?.[1];
    const key = `${netid}/${address}/${port}/${program ?? ''}`;
    if (seen.has(key)) continue;
    seen.add(key);
    services.push({proto: netid, port, address, ...(program === undefined ? {} : {program})});
  }
  return services.sort((a, b) => a.proto.localeCompare(b.proto) || a.port - b.port);
}

/** Bound only to loopback: nobody else can reach it, whatever the firewall says. */
export function isLoopbackOnly(service: ListeningService): boolean {
  const address = service.address ?? '';
  return address.startsWith('127.') || address === '::1' || address === '::ffff:127.0.0.1';
}

const DATABASES: Record<string, RegExp> = {
  '3306': /^(mysqld|mariadbd|mysqld_safe)$/,
  '5432': /^(postgres|postmaster)$/,
  '27017': /^mongod$/,
  '6379': /^redis-server$/,
};
const LOAD_BALANCERS = /^(haproxy|traefik|envoy)$/;
const WEB_SERVERS = /^(nginx|apache2|httpd|caddy|lighttpd|php-fpm.*|node|gunicorn|uwsgi|puma|java)$/;

/** Suggests roles from what listens beyond loopback. sshd alone suggests nothing. */
export function suggestRoles(services: readonly ListeningService[]): {suggestions: RoleSuggestion[]; warnings: string[]} {
  const suggestions: RoleSuggestion[] = [];
  const warnings: string[] = [];
  const reachable = services.filter((service) => service.proto === 'tcp' && !isLoopbackOnly(service));
  const add = (role: string, reason: string) => {
    if (!suggestions.some((item) => item.role === role)) suggestions.push({role, reason});
  };
  for (const service of reachable) {
    const port = String(service.port);
    const databasePattern = DATABASES[port];
    if (databasePattern && (service.program === undefined || databasePattern.test(service.program) || port === '3306')) {
      add('db', `${service.program ?? 'something'} listens on ${service.port}`);
    }
  }
  const web = reachable.filter((service) => service.port === 80 || service.port === 443);
  for (const service of web) {
    const program = service.program ?? '';
    if (LOAD_BALANCERS.test(program)) add('lb', `${program} listens on ${service.port}`);
    else if (WEB_SERVERS.test(program)) add('app', `${program} listens on ${service.port} (choose lb instead if it only proxies)`);
    else add('app', `${program || 'a web server'} listens on ${service.port}`);
  }
  for (const service of services) {
    if (service.proto === 'tcp' && isLoopbackOnly(service) && DATABASES[String(service.port)]) {
      warnings.push(`${service.program ?? 'a database'} listens on ${service.address}:${service.port} only: other servers cannot reach it`);
    }
  }
  return {suggestions, warnings};
}
