import {describe, expect, it} from 'vitest';
import {suggestPeerPorts, type ListeningHost} from '../../source/core/peer-ports.js';
import {BUILTIN_ROLES} from '../../source/core/roles.js';
import type {Protocol} from '../../source/core/model.js';

const templates = new Map(Object.entries(BUILTIN_ROLES));
const host = (name: string, roles: string[], tcp: number[], extra: {proto: Protocol; port: number; address?: string}[] = []): ListeningHost => ({
  name,
  roles,
  listening: [...tcp.map((port) => ({proto: 'tcp' as const, port})), ...extra],
});

describe('peer ports suggested from what same-role servers listen on', () => {
  it('suggests the tutorial\'s GlusterFS port between the two wordpress servers, and nothing the role opens already', () => {
    const suggestions = suggestPeerPorts(
      [
        host('haproxy-www', ['lb'], [22, 80, 443]),
        host('wordpress-1', ['app'], [22, 80, 443, 24007, 49152]),
        host('wordpress-2', ['app'], [22, 80, 443, 24007]),
        host('mysql-1', ['db'], [22, 3306, 9104]),
        host('mysql-2', ['db'], [22, 3306]),
      ],
      templates,
    );
    expect(suggestions).toEqual([{role: 'app', proto: 'tcp', ports: [24007], hosts: ['wordpress-1', 'wordpress-2'], peers: ['24007']}]);
  });

  it('keeps the role\'s own peers, ignores loopback listeners, other protocols and roles of one server', () => {
    const suggestions = suggestPeerPorts(
      [
        host('mysql-1', ['db'], [22, 3306, 4567], [{proto: 'tcp', port: 6379, address: '127.0.0.1'}, {proto: 'udp', port: 4567}]),
        host('mysql-2', ['db'], [22, 3306, 4567], [{proto: 'tcp', port: 6379, address: '::1'}, {proto: 'udp', port: 4567}]),
        host('mysql-3', ['db'], [22, 3306]),
        host('haproxy-www', ['lb'], [22, 80, 443, 8404]),
      ],
      templates,
    );
    expect(suggestions).toEqual([{role: 'db', proto: 'tcp', ports: [4567], hosts: ['mysql-1', 'mysql-2'], peers: ['3306', '4567']}]);
  });

  it('suggests nothing once the role opens the port between peers (ranges included)', () => {
    const app = {...BUILTIN_ROLES['app']!, peers: [{first: 24007, last: 24008}]};
    const hosts = [host('wordpress-1', ['app'], [24007, 24008]), host('wordpress-2', ['app'], [24007, 24008])];
    expect(suggestPeerPorts(hosts, new Map([['app', app]]))).toEqual([]);
  });
});
