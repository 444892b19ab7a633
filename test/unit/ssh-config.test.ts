import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';
import {resolveOperatorSsh} from '../../source/remote/operator-ssh.js';
import {expandIncludes, jumpOfProxyCommand, parseDestination, resolveSshTarget, SshConfigError} from '../../source/remote/ssh-config.js';

let home: string;
beforeEach(() => {
  home = mkdtempSync(path.join(tmpdir(), 'iw-sshcfg-'));
  mkdirSync(path.join(home, '.ssh'));
});
afterEach(() => rmSync(home, {recursive: true, force: true}));

// The lab's config and the seed fleet: a bastion with a public address, the rest behind it.
const SEED_CONFIG = `
Host tunnel-1
  HostName 203.0.113.10

Host haproxy-www
  HostName 10.132.0.11
  ProxyJump tunnel-1

Host mysql-1
  HostName 10.132.0.14
  ProxyJump tunnel-1
  User deploy
  Port 2222

Host *
  User root
  IdentityFile ~/.ssh/id_ed25519
  IdentitiesOnly yes
  ServerAliveInterval 7
`;

describe('parseDestination', () => {
  it('reads user, host and port', () => {
    expect(parseDestination('deploy@db.example.com:2222')).toEqual({user: 'deploy', host: 'db.example.com', port: 2222});
    expect(parseDestination('mysql-1')).toEqual({user: undefined, host: 'mysql-1'});
    expect(parseDestination('10.0.0.5:22')).toEqual({user: undefined, host: '10.0.0.5', port: 22});
  });

  it('reads bracketed and bare IPv6 addresses', () => {
    expect(parseDestination('[2001:db8::1]:2200')).toEqual({user: undefined, host: '2001:db8::1', port: 2200});
    expect(parseDestination('root@[fd00:132::14]')).toEqual({user: 'root', host: 'fd00:132::14'});
    expect(parseDestination('2001:db8::1')).toEqual({user: undefined, host: '2001:db8::1'});
  });

  it('rejects nonsense instead of guessing', () => {
    expect(() => parseDestination('host:99999')).toThrow(SshConfigError);
    expect(() => parseDestination('host:abc')).toThrow(/invalid port/);
    expect(() => parseDestination('@host')).toThrow(/empty user/);
    expect(() => parseDestination('mysql-1 ;touch /tmp/x')).toThrow(SshConfigError);
    expect(() => parseDestination('[::1')).toThrow(/\]/);
  });
});

describe('resolveSshTarget', () => {
  it('applies the first matching Host block and Host * defaults', () => {
    const target = resolveSshTarget('haproxy-www', {home, configText: SEED_CONFIG, localUser: 'alice'});
    expect(target).toEqual({
      alias: 'haproxy-www',
      hostname: '10.132.0.11',
      user: 'root',
      port: 22,
      proxyJump: ['tunnel-1'],
      identityFiles: [path.join(home, '.ssh', 'id_ed25519')],
      identitiesOnly: true,
      userKnownHostsFiles: [],
      serverAliveInterval: 7,
    });
  });

  it('lets the first value win (specific block before Host *)', () => {
    const target = resolveSshTarget('mysql-1', {home, configText: SEED_CONFIG, localUser: 'alice'});
    expect(target.user).toBe('deploy');
    expect(target.port).toBe(2222);
  });

  it('lets the destination override user and port like ssh does', () => {
    const target = resolveSshTarget('admin@mysql-1:22', {home, configText: SEED_CONFIG, localUser: 'alice'});
    expect(target.user).toBe('admin');
    expect(target.port).toBe(22);
    expect(target.hostname).toBe('10.132.0.14');
  });

  it('uses the alias itself when no HostName is set, and the local user when no User is set', () => {
    const target = resolveSshTarget('db.example.com', {home, configText: 'Host other\n  User x\n', localUser: 'alice'});
    expect(target).toMatchObject({alias: 'db.example.com', hostname: 'db.example.com', user: 'alice', port: 22, proxyJump: []});
    expect(target.identityFiles).toEqual([]);
    expect(target.identitiesOnly).toBe(false);
  });

  it('splits ProxyJump chains and treats `none` as no jump', () => {
    const config = 'Host deep\n  ProxyJump a@j1:2200,j2\nHost direct\n  ProxyJump none\nHost *\n  ProxyJump j9\n';
    expect(resolveSshTarget('deep', {home, configText: config}).proxyJump).toEqual(['a@j1:2200', 'j2']);
    expect(resolveSshTarget('direct', {home, configText: config}).proxyJump).toEqual([]);
  });

  it('turns ProxyCommand ssh -W %h:%p JUMP into a jump through JUMP', () => {
    const config = [
      'Host plain\n  HostName 10.132.0.14\n  ProxyCommand ssh -W %h:%p tunnel-1',
      'Host quiet\n  ProxyCommand exec /usr/bin/ssh -q -W [%h]:%p admin@tunnel-1',
      'Host options\n  ProxyCommand ssh -p 2200 -l ops -W %h:%p bastion.example',
      'Host v6\n  ProxyCommand ssh -W%h:%p -p2200 2001:db8::10',
      'Host first-jump\n  ProxyJump j1\n  ProxyCommand ssh -W %h:%p j2',
      'Host first-command\n  ProxyCommand ssh -W %h:%p j2\n  ProxyJump j1',
      'Host none\n  ProxyCommand none\n  ProxyJump j1',
    ].join('\n');
    const jumps = (alias: string) => resolveSshTarget(alias, {home, configText: config}).proxyJump;
    expect(resolveSshTarget('plain', {home, configText: config})).toMatchObject({hostname: '10.132.0.14', proxyJump: ['tunnel-1']});
    expect(jumps('quiet')).toEqual(['admin@tunnel-1']);
    expect(jumps('options')).toEqual(['ops@bastion.example:2200']);
    expect(jumps('v6')).toEqual(['[2001:db8::10]:2200']);
    // whichever comes first wins, like OpenSSH
    expect(jumps('first-jump')).toEqual(['j1']);
    expect(jumps('first-command')).toEqual(['j2']);
    expect(jumps('none')).toEqual([]);
  });

  it('refuses every other ProxyCommand in one line naming it, rather than dialling the host directly', () => {
    for (const command of [
      'nc -X 5 -x proxy:1080 %h %p',
      'ssh tunnel-1 nc %h %p',
      'ssh -W 10.0.0.5:22 tunnel-1',
      'ssh -W %h:%p -i ~/.ssh/other tunnel-1',
      'ssh -o StrictHostKeyChecking=no -W %h:%p tunnel-1',
      'ssh -W %h:%p %r@tunnel-1',
      'ssh -W %h:%p',
      'ssh -W %h:%p a b',
      'ssh -W %h:%p tunnel-1; rm -rf ~',
      'ssh -W %h:%p tunnel-1;',
      'ssh -W %h:%p $(whoami)@tunnel-1',
      'cloudflared access ssh --hostname %h',
    ]) {
      expect(() => jumpOfProxyCommand(command), command).toThrow(SshConfigError);
    }
    const config = 'Host db\n  HostName 10.132.0.14\n  ProxyCommand nc -X 5 -x proxy:1080 %h %p\n';
    expect(() => resolveSshTarget('db', {home, configText: config})).toThrow(
      'ProxyCommand "nc -X 5 -x proxy:1080 %h %p" is not supported: use ProxyJump (or ProxyCommand ssh -W %h:%p JUMPHOST)',
    );
  });

  it('reads ConnectTimeout, HostKeyAlias and %h in HostName', () => {
    const config = 'Host web-*\n  HostName %h.internal.example\n  ConnectTimeout 4\n  HostKeyAlias web-pool\n';
    const target = resolveSshTarget('web-3', {home, configText: config});
    expect(target.hostname).toBe('web-3.internal.example');
    expect(target.connectTimeout).toBe(4);
    expect(target.hostKeyAlias).toBe('web-pool');
  });

  it('reads ~/.ssh/config from home when no text is given, and an absent file is an empty config', () => {
    expect(resolveSshTarget('x', {home, localUser: 'bob'}).user).toBe('bob');
    writeFileSync(path.join(home, '.ssh', 'config'), 'Host x\n  HostName 192.0.2.9\n');
    expect(resolveSshTarget('x', {home}).hostname).toBe('192.0.2.9');
  });

  it('never runs `Match exec` commands from the config, and refuses a host whose settings it could change', () => {
    const marker = path.join(home, 'ran');
    const config = `Match exec "touch ${marker}"\n  User hacked\nHost *\n  User root\n`;
    expect(() => resolveSshTarget('x', {home, configText: config})).toThrow(SshConfigError);
    expect(() => resolveSshTarget('x', {home, configText: config})).toThrow(
      `~/.ssh/config: Match exec "touch ${marker}" is not supported (this tool never runs commands from the config, and it would change how ssh reaches this host): use Host blocks`,
    );
    expect(() => rmSync(marker)).toThrow();
  });

  it('ignores a Match exec that cannot apply to the host or changes nothing for it', () => {
    const config =
      'Match host other exec "test -e /tmp/on-vpn"\n  ProxyJump vpn-gw\n' +
      'Host x\n  HostName 192.0.2.9\n  User root\n' +
      'Match exec "true"\n  User ignored-as-user-is-set\n';
    expect(resolveSshTarget('x', {home, configText: config})).toMatchObject({hostname: '192.0.2.9', user: 'root', proxyJump: []});
    expect(() => resolveSshTarget('other', {home, configText: config})).toThrow(/Match exec "test -e \/tmp\/on-vpn"/);
  });

  it('reads UserKnownHostsFile lists with ~ expanded', () => {
    const config = 'Host x\n  UserKnownHostsFile ~/.ssh/kh_lab /etc/ssh/extra_known\n';
    expect(resolveSshTarget('x', {home, configText: config}).userKnownHostsFiles).toEqual([
      path.join(home, '.ssh', 'kh_lab'),
      '/etc/ssh/extra_known',
    ]);
  });

  it('treats IdentityFile none as no key', () => {
    expect(resolveSshTarget('x', {home, configText: 'Host x\n  IdentityFile none\n'}).identityFiles).toEqual([]);
  });
});

describe('Include', () => {
  it('expands relative includes from ~/.ssh, with globs in sorted order', () => {
    mkdirSync(path.join(home, '.ssh', 'config.d'));
    writeFileSync(path.join(home, '.ssh', 'config.d', '20-web'), 'Host web\n  HostName 10.0.0.20\n');
    writeFileSync(path.join(home, '.ssh', 'config.d', '10-db'), 'Host db\n  HostName 10.0.0.10\n  ProxyJump bastion\n');
    const config = 'Include config.d/*\n\nHost *\n  User ops\n';
    expect(resolveSshTarget('db', {home, configText: config})).toMatchObject({hostname: '10.0.0.10', user: 'ops', proxyJump: ['bastion']});
    expect(resolveSshTarget('web', {home, configText: config}).hostname).toBe('10.0.0.20');
    const expanded = expandIncludes(config, home);
    expect(expanded.indexOf('Host db')).toBeLessThan(expanded.indexOf('Host web'));
  });

  it('expands ~ and absolute paths, ignores missing files, and stops include loops', () => {
    writeFileSync(path.join(home, 'extra.conf'), 'Host extra\n  Port 2022\n');
    const config = 'Include ~/extra.conf /nonexistent/file\n';
    expect(resolveSshTarget('extra', {home, configText: config}).port).toBe(2022);
    writeFileSync(path.join(home, '.ssh', 'loop'), 'Include loop\n');
    expect(() => resolveSshTarget('x', {home, configText: 'Include loop\n'})).toThrow(/nested too deeply/);
  });
});

describe('resolveOperatorSsh', () => {
  it('follows ProxyCommand ssh -W through a fleet host, and marks what it cannot follow as unusable', () => {
    const config =
      'Host db-1\n  HostName 10.132.0.14\n  ProxyCommand ssh -W %h:%p tunnel-1\n' +
      'Host db-2\n  HostName 10.132.0.15\n  ProxyCommand nc %h %p\n' +
      'Host tunnel-1\n  HostName 203.0.113.10\n';
    const inv = {hosts: [{name: 'tunnel-1', ssh: 'tunnel-1'}, {name: 'db-1', ssh: 'db-1'}, {name: 'db-2', ssh: 'db-2'}]};
    const resolved = resolveOperatorSsh(inv, home, config);
    expect(resolved.get('db-1')).toEqual({port: 22, proxyJump: 'tunnel-1', address: '10.132.0.14'});
    expect(resolved.get('db-2')).toEqual({unusable: 'ProxyCommand "nc %h %p" is not supported: use ProxyJump (or ProxyCommand ssh -W %h:%p JUMPHOST)'});
    expect(resolved.get('tunnel-1')).toEqual({port: 22, address: '203.0.113.10'});
  });
});
