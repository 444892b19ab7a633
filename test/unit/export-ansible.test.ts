// export --format ansible: the files it writes, read back (by Ansible's own parsers where
// ansible-core is installed), and its refusals. Running the playbook is test/lab/export-ansible.test.ts.
import {execFileSync, spawnSync} from 'node:child_process';
import {existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {Writable} from 'node:stream';
import {afterAll, describe, expect, it} from 'vitest';
import {main} from '../../source/cli.js';
import type {CliIo} from '../../source/commands/command.js';
import {AGENT_SCRIPT} from '../../source/remote/agent-script.js';
import {payloadSections} from '../../source/remote/apply-protocol.js';

const repo = path.resolve(new URL('../..', import.meta.url).pathname);
const SEED = 'fixtures/inventories/seed-with-addresses.json';
const SEED_HOSTS = ['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'];
const scratch = mkdtempSync(path.join(tmpdir(), 'iw-export-'));
afterAll(() => rmSync(scratch, {recursive: true, force: true}));
const HAVE_ANSIBLE = spawnSync('ansible-playbook', ['--version']).status === 0;

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

async function run(args: string[], home: string): Promise<{code: number; stdout: string; stderr: string}> {
  const stdout = new Capture();
  const stderr = new Capture();
  const io: CliIo = {stdout, stderr, env: {HOME: home}, cwd: repo, isTTY: false};
  const code = await main(args, io);
  return {code, stdout: stdout.text, stderr: stderr.text};
}

/** A home whose ~/.ssh/config sends every seed host but tunnel-1 through tunnel-1. */
function homeWithProxyJump(): string {
  const home = path.join(scratch, 'home');
  mkdirSync(path.join(home, '.ssh'), {recursive: true});
  writeFileSync(
    path.join(home, '.ssh', 'config'),
    ['Host tunnel-1', '  HostName 203.0.113.10', '', 'Host haproxy-www wordpress-* mysql-*', '  ProxyJump tunnel-1', ''].join('\n'),
  );
  return home;
}

let outCount = 0;
async function exportSeed(inventory = SEED, home = homeWithProxyJump(), extra: string[] = []): Promise<{dir: string; code: number; stdout: string; stderr: string}> {
  outCount += 1;
  const dir = path.join(scratch, `out-${outCount}`);
  return {dir, ...(await run(['export', '--format', 'ansible', '--out', dir, '--inventory', inventory, ...extra], home))};
}

const read = (dir: string, file: string): string => readFileSync(path.join(dir, file), 'utf8');

describe('isolate-wizard export --format ansible', () => {
  it('writes each host\'s rules as the agent reads them, each section exactly as plan --format iptables prints it, and the agent apply uses', async () => {
    const home = homeWithProxyJump();
    const {dir, code, stderr, stdout} = await exportSeed(SEED, home);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('6 hosts, backend auto');
    // No backend named anywhere: auto (the default), which ships both backends' rules.
    expect(readdirSync(path.join(dir, 'rules')).sort()).toEqual(SEED_HOSTS.flatMap((name) => [`${name}.iptables`, `${name}.nftables`]).sort());
    expect(read(dir, 'inventory.yml')).toContain('    iw_backend: "auto"\n');
    for (const name of SEED_HOSTS) {
      const sections = payloadSections(read(dir, `rules/${name}.iptables`));
      // No #iw:nft section: the agent then removes our table (a host coming back from nftables).
      expect([...sections.keys()]).toEqual(['', 'v4', 'v6']);
      for (const family of ['4', '6'] as const) {
        const printed = await run(['plan', '--inventory', SEED, '--host', name, '--family', family, '--format', 'iptables'], home);
        expect(printed.code).toBe(0);
        expect(sections.get(`v${family}`)).toBe(printed.stdout);
      }
    }
    expect(read(dir, 'rules/mysql-1.iptables')).toContain('-A IW-INPUT -s 10.132.0.12/32 -i eth1 -p tcp -m tcp --dport 3306');
    expect(read(dir, 'files/agent.sh')).toBe(AGENT_SCRIPT);
  });

  it('--backend nftables: our table exactly as plan --format nft prints it, and filter tables holding nothing of ours', async () => {
    const home = homeWithProxyJump();
    const {dir, code, stderr, stdout} = await exportSeed(SEED, home, ['--backend', 'nftables']);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('6 hosts, backend nftables');
    expect(readdirSync(path.join(dir, 'rules')).sort()).toEqual(SEED_HOSTS.map((name) => `${name}.nftables`).sort());
    expect(read(dir, 'inventory.yml')).toContain('    iw_backend: "nftables"\n');
    for (const name of SEED_HOSTS) {
      const sections = payloadSections(read(dir, `rules/${name}.nftables`));
      expect([...sections.keys()]).toEqual(['', 'v4', 'v6', 'nft']);
      const printed = await run(['plan', '--inventory', SEED, '--host', name, '--format', 'nft'], home);
      expect(sections.get('nft')).toBe(printed.stdout);
      for (const family of ['v4', 'v6']) {
        const filter = sections.get(family) ?? '';
        expect(filter).toMatch(/^\*filter$/m);
        expect(filter).not.toMatch(/^-A /m);
        expect(filter).not.toMatch(/^:/m); // no chain of ours, no policy (the built-in chains are not ours)
      }
    }
    // The table defines ours and nothing else.
    expect(read(dir, 'rules/mysql-1.nftables')).not.toMatch(/flush|^table (?!inet isolate_wizard \{)/m);
  });

  it('--backend auto ships both, for the playbook to choose on each server; the inventory\'s options.backend is followed, --backend wins', async () => {
    const auto = await exportSeed(SEED, homeWithProxyJump(), ['--backend', 'auto']);
    expect(auto.code, auto.stderr).toBe(0);
    expect(auto.stdout).toContain('backend auto (nftables where nft is installed, else iptables: chosen on each server)');
    expect(readdirSync(path.join(auto.dir, 'rules')).sort()).toEqual(SEED_HOSTS.flatMap((name) => [`${name}.iptables`, `${name}.nftables`]).sort());
    expect(read(auto.dir, 'inventory.yml')).toContain('    iw_backend: "auto"\n');

    const inventory = path.join(scratch, 'seed-nftables.json');
    writeFileSync(inventory, JSON.stringify({...(JSON.parse(readFileSync(path.join(repo, SEED), 'utf8')) as object), options: {backend: 'nftables'}}));
    const followed = await exportSeed(inventory);
    expect(followed.code, followed.stderr).toBe(0);
    expect(readdirSync(path.join(followed.dir, 'rules'))).toContain('mysql-1.nftables');
    const overridden = await exportSeed(inventory, homeWithProxyJump(), ['--backend', 'iptables']);
    expect(overridden.code, overridden.stderr).toBe(0);
    expect(readdirSync(path.join(overridden.dir, 'rules'))).toEqual(SEED_HOSTS.map((name) => `${name}.iptables`).sort());
  });

  it('writes an inventory with a group per role, the bastions loaded last, and each host\'s facts', async () => {
    const {dir, code} = await exportSeed();
    expect(code).toBe(0);
    const text = read(dir, 'inventory.yml');
    expect(text).toContain('    role_app:\n      hosts:\n        "wordpress-1": {}\n        "wordpress-2": {}\n');
    expect(text).toContain('    iw_last:\n      hosts:\n        "tunnel-1": {}\n');
    expect(text).toContain('      iw_addresses: {"public":["203.0.113.14","2001:db8:100::14"],"private":["10.132.0.14","fd00:132::14"]}');
    if (!HAVE_ANSIBLE) return;
    // Ansible's own reading of it.
    const listed = JSON.parse(execFileSync('ansible-inventory', ['-i', path.join(dir, 'inventory.yml'), '--list'], {encoding: 'utf8', env: {...process.env, ANSIBLE_CONFIG: path.join(dir, 'ansible.cfg')}})) as Record<string, {hosts?: string[]}> & {
      _meta: {hostvars: Record<string, Record<string, unknown>>};
    };
    expect(listed['role_bastion']?.hosts).toEqual(['tunnel-1']);
    expect(listed['role_lb']?.hosts).toEqual(['haproxy-www']);
    expect(listed['role_app']?.hosts).toEqual(['wordpress-1', 'wordpress-2']);
    expect(listed['role_db']?.hosts).toEqual(['mysql-1', 'mysql-2']);
    expect(listed['iw_last']?.hosts).toEqual(['tunnel-1']);
    expect(listed._meta.hostvars['mysql-2']).toMatchObject({
      ansible_host: 'mysql-2',
      iw_ssh: 'mysql-2',
      iw_roles: ['db'],
      iw_interfaces: {public: 'eth0', private: 'eth1'},
      iw_addresses: {public: ['203.0.113.15', '2001:db8:100::15'], private: ['10.132.0.15', 'fd00:132::15']},
      iw_timeout: 300,
      iw_confirm: true,
    });
  }, 60_000);

  it('reaches hosts as the inventory says when the ssh config does not: user, port, IPv6, jump', async () => {
    const inventory = path.join(scratch, 'spelled.json');
    writeFileSync(
      inventory,
      JSON.stringify({
        hosts: [
          {name: 'gw', ssh: 'admin@198.51.100.7:2222', roles: ['bastion'], interfaces: {public: 'eth0', private: 'eth1'}, addresses: {public: ['198.51.100.7'], private: ['10.0.0.1']}},
          {name: 'web', ssh: 'root@10.0.0.2', jump: 'gw', roles: ['lb'], interfaces: {public: 'eth0', private: 'eth1'}, addresses: {public: ['198.51.100.8'], private: ['10.0.0.2']}},
          {name: 'db6', ssh: '[fd00::3]:22', jump: 'gw', roles: ['db'], interfaces: {private: 'eth1'}, addresses: {public: [], private: ['10.0.0.3', 'fd00::3']}},
        ],
      }),
    );
    const {dir, code, stderr} = await exportSeed(inventory, path.join(scratch, 'no-home'));
    expect(code, stderr).toBe(0);
    const text = read(dir, 'inventory.yml');
    expect(text).toContain('    "gw":\n      ansible_host: "198.51.100.7"\n      ansible_user: "admin"\n      ansible_port: 2222\n');
    expect(text).toContain('    "web":\n      ansible_host: "10.0.0.2"\n      ansible_user: "root"\n      ansible_ssh_common_args: "-o ProxyJump=admin@198.51.100.7:2222"\n');
    expect(text).toContain('    "db6":\n      ansible_host: "fd00::3"\n      ansible_port: 22\n      ansible_ssh_common_args: "-o ProxyJump=admin@198.51.100.7:2222"\n');
    // No ssh config: ssh reads none (Ansible must not pick up another user's).
    expect(read(dir, 'ansible.cfg')).toContain('ssh_args = -F /dev/null ');
  });

  it('connects as the operator\'s ssh does, host keys checked', async () => {
    const home = homeWithProxyJump();
    const {dir} = await exportSeed(SEED, home);
    const config = read(dir, 'ansible.cfg');
    expect(config).toContain(`ssh_args = -F ${path.join(home, '.ssh', 'config')} -o StrictHostKeyChecking=yes`);
    expect(config).toMatch(/^host_key_checking = True$/m);
    expect(config).toMatch(/^inventory = inventory\.yml$/m);
  });

  it('writes a playbook that loads the bastions last and confirms only after every host passed a new login', async () => {
    const {dir} = await exportSeed();
    const site = read(dir, 'site.yml');
    // Stopping the batch is the gates' work (see the playbook's header), not any_errors_fatal's.
    expect(site).not.toMatch(/^\s+any_errors_fatal:/m);
    const load = read(dir, 'tasks/load.yml');
    const confirm = read(dir, 'tasks/confirm.yml');
    // Validation and the rollback's arming (begin … stage) come before the load, the new login before the confirm.
    expect(load.indexOf('begin "$1" "$2" stage')).toBeGreaterThan(0);
    expect(load.indexOf('begin "$1" "$2" stage')).toBeLessThan(load.indexOf('load, "{{ iw_batch }}"'));
    // Others' chains are no reason to refuse: only ours is loaded (--noflush), theirs stay.
    expect(load).not.toContain('iw_foreign_chains');
    // A step's failure is judged for the whole batch at once (a gate after each), never by one host alone.
    expect(load.match(/failed_when: false/g)).toHaveLength(3);
    expect(confirm.match(/failed_when: false/g)).toHaveLength(2);
    expect(confirm.indexOf('meta: reset_connection')).toBeLessThan(confirm.indexOf('agent.sh, show]'));
    expect(confirm.indexOf('agent.sh, show]')).toBeLessThan(confirm.indexOf('agent.sh, confirm,'));
    for (const tasks of [load, confirm]) expect(tasks).toContain('rescue:\n    - ansible.builtin.import_tasks: rollback-this-server.yml');
    if (!HAVE_ANSIBLE) return;
    // Ansible's own reading: plays in order, with their hosts.
    const hosts = execFileSync('ansible-playbook', ['--list-hosts', 'site.yml'], {cwd: dir, encoding: 'utf8'});
    const plays = [...hosts.matchAll(/play #\d+ \((.+?)\): (.+?)\t/g)].map((match) => `${match[1]}: ${match[2]}`);
    expect(plays).toEqual([
      "all: Name this run's batch",
      'all:!iw_last: Load the rules on every server but the bastions',
      'iw_last: Load the rules on the bastions and jump hosts, last',
      'all: Over new connections, check every server, then keep the rules',
    ]);
    expect(hosts).toMatch(/pattern: \['iw_last'\]\n\s+hosts \(1\):\n\s+tunnel-1\n/);
    const tasks = execFileSync('ansible-playbook', ['--list-tasks', 'site.yml'], {cwd: dir, encoding: 'utf8'});
    const last = tasks.slice(tasks.indexOf('play #4'));
    const order = ['Close the connection', 'Over a new ssh connection', 'Go on only when every server shows this batch loaded', 'Keep the rules'].map((name) => last.indexOf(name));
    expect(order.every((at, index) => at > 0 && (index === 0 || at > (order[index - 1] as number)))).toBe(true);
  }, 60_000);

  it('counts our lines only in a live table: our chains and jumps, not others\' rules', async () => {
    const {dir} = await exportSeed();
    const site = read(dir, 'inventory.yml');
    const quoted = /iw_our_rules: (.*)$/m.exec(site)?.[1] ?? '';
    const pattern = new RegExp((JSON.parse(quoted) as string).replace('(?m)', ''), 'gm');
    const save = ['*filter', ':INPUT DROP [0:0]', ':IW-INPUT - [0:0]', ':f2b-sshd - [0:0]', '-A INPUT -j f2b-sshd', '-A INPUT -j IW-INPUT', '-A INPUT -p tcp -j ACCEPT', '-A IW-INPUT -i lo -j ACCEPT', '-A f2b-sshd -j RETURN', 'COMMIT'].join('\n');
    expect(save.match(pattern)).toEqual(['-A INPUT -j IW-', '-A IW-']);
  });

  it.skipIf(!HAVE_ANSIBLE)('holds what a new connection shows to what was sent, in either backend, as ansible-playbook evaluates it', async () => {
    const {dir, code} = await exportSeed(SEED, homeWithProxyJump(), ['--backend', 'auto']);
    expect(code).toBe(0);
    const sent = {iptables: read(dir, 'rules/mysql-1.iptables'), nftables: read(dir, 'rules/mysql-1.nftables')};
    // What the agent's show prints: the filter tables as iptables-save does (no comments, no
    // counters), our table as nft lists it (long element lists wrapped).
    const filterAsSaved = (text: string): string => text.split('\n').filter((line) => !line.startsWith('# ')).map((line) => line.replace(/ \[0:0\]$/, '')).join('\n');
    const nftAsListed = (text: string): string => text.replace(/(elements = \{ [^,]+,) /g, '$1\n\t\t\t     ');
    const shown = (payload: string, edit: (text: string) => string = (text) => text): string =>
      `phase=loaded\nbatch=b1\n${edit(nftAsListed(filterAsSaved(payload)))}${payload.includes('#iw:nft') ? '' : '#iw:nft\n'}`;
    const cases: Record<string, {backend: 'iptables' | 'nftables'; live: string}> = {
      'ipt-ok': {backend: 'iptables', live: shown(sent.iptables)},
      'nft-ok': {backend: 'nftables', live: shown(sent.nftables)},
      'nft-rule-missing': {backend: 'nftables', live: shown(sent.nftables, (text) => text.replace(/^.*dhcpv6 replies.*\n/m, ''))},
      'nft-table-absent': {backend: 'nftables', live: shown(sent.nftables, (text) => text.slice(0, text.indexOf('#iw:nft') + 8))},
      'nft-iptables-left': {backend: 'nftables', live: shown(sent.nftables, (text) => text.replace('*filter\n', '*filter\n:IW-INPUT\n-A INPUT -j IW-INPUT\n'))},
      'ipt-table-left': {backend: 'iptables', live: `${shown(sent.iptables)}${(payloadSections(sent.nftables).get('nft') ?? '')}`},
      'ipt-jump-missing': {backend: 'iptables', live: shown(sent.iptables, (text) => text.replace('-A INPUT -j IW-INPUT\n', ''))},
      // Others' rules, chains and the policies are theirs: not compared.
      'ipt-others-rules': {backend: 'iptables', live: shown(sent.iptables, (text) => text.replace(':INPUT -', ':INPUT DROP').replace('-A INPUT -j IW-INPUT\n', '-A INPUT -j IW-INPUT\n-A INPUT -j f2b-sshd\n'))},
    };
    expect(nftAsListed(sent.nftables)).not.toBe(sent.nftables); // the listing is spelt differently
    // The gate task of tasks/confirm.yml, run on local hosts whose `show` answered as above.
    const confirm = read(dir, 'tasks/confirm.yml');
    const gate = confirm.slice(confirm.indexOf('    - name: Go on only when every server shows this batch loaded'), confirm.indexOf('    - name: Keep the rules'));
    expect(gate.length).toBeGreaterThan(100);
    const check = path.join(dir, 'check');
    mkdirSync(path.join(check, 'rules'), {recursive: true});
    const hostLines: string[] = [];
    for (const [name, {backend, live}] of Object.entries(cases)) {
      writeFileSync(path.join(check, 'rules', `${name}.${backend}`), sent[backend]);
      writeFileSync(path.join(check, `${name}.live`), live);
      hostLines.push(`${name} ansible_connection=local iw_backend_here=${backend}`);
    }
    writeFileSync(path.join(check, 'hosts'), `${hostLines.join('\n')}\n`);
    writeFileSync(
      path.join(check, 'check.yml'),
      [
        '- hosts: all',
        '  gather_facts: false',
        `  vars: {iw_batch: b1, iw_our_rules: ${/iw_our_rules: (.*)$/m.exec(read(dir, 'inventory.yml'))?.[1] ?? ''}}`,
        '  tasks:',
        '    - ansible.builtin.set_fact:',
        "        iw_live: {rc: 0, stdout: \"{{ lookup('file', playbook_dir ~ '/' ~ inventory_hostname ~ '.live') }}\", stdout_lines: \"{{ lookup('file', playbook_dir ~ '/' ~ inventory_hostname ~ '.live').splitlines() }}\"}",
        gate.replace(/^ {4}/gm, '    ').trimEnd(),
        '',
      ].join('\n'),
    );
    writeFileSync(path.join(check, 'ansible.cfg'), '[defaults]\ngathering = explicit\n');
    const result = spawnSync('ansible-playbook', ['-i', 'hosts', 'check.yml'], {cwd: check, encoding: 'utf8', env: {...process.env, ANSIBLE_NOCOLOR: '1', ANSIBLE_CONFIG: path.join(check, 'ansible.cfg')}});
    const problems = [...result.stdout.matchAll(/"msg": "(.*)"/g)].map((match) => match[1] as string)[0] ?? result.stdout + result.stderr;
    expect(result.stdout, result.stdout + result.stderr).toContain("FAILED!");
    expect([...problems.matchAll(/(?:^|;\s*)([a-z]+-[a-z-]+): /g)].map((match) => match[1]).sort()).toEqual(['ipt-jump-missing', 'ipt-table-left', 'nft-iptables-left', 'nft-rule-missing', 'nft-table-absent']);
    // One rule fewer in the live input chain than in the one sent, the sets named alike.
    const missing = /nft-rule-missing: our live nftables table is not the one this batch loaded \(table inet isolate_wizard, ((?:set \w+, )+)chain input: (\d+) rules, .*?; sent table inet isolate_wizard, ((?:set \w+, )+)chain input: (\d+) rules/.exec(problems);
    expect(missing, problems).not.toBeNull();
    expect(missing?.[1]).toBe(missing?.[3]);
    expect(Number(missing?.[2]) + 1).toBe(Number(missing?.[4]));
    expect(problems).toContain('nft-table-absent: our nftables table inet isolate_wizard is not there');
    expect(problems).toContain('ipt-table-left: our nftables table inet isolate_wizard is still there');
    expect(problems).toMatch(/nft-iptables-left: the live iptables rules are not the ones this batch loaded \(IPv4 1 chains and 1 rules of ours/);
    expect(problems).toMatch(/ipt-jump-missing: the live iptables rules are not the ones this batch loaded \(IPv4 3 chains and (\d+) rules of ours/);
  }, 120_000);

  it('replaces an earlier export, rules of hosts gone included', async () => {
    const {dir} = await exportSeed();
    writeFileSync(path.join(dir, 'rules', 'old-host.iptables'), '#iw:v4\n*filter\nCOMMIT\n#iw:v6\n*filter\nCOMMIT\n');
    const again = await run(['export', '--format', 'ansible', '--out', dir, '--inventory', SEED, '--backend', 'nftables'], homeWithProxyJump());
    expect(again.code, again.stderr).toBe(0);
    expect(existsSync(path.join(dir, 'rules', 'old-host.iptables'))).toBe(false);
    // Nor the rules of the backend no longer chosen: the playbook must not find them.
    expect(existsSync(path.join(dir, 'rules', 'mysql-1.iptables'))).toBe(false);
  });

  it.each([
    [['export', '--out', 'x', '--inventory', SEED], /--format ansible is required/],
    [['export', '--format', 'nft', '--out', 'x', '--inventory', SEED], /^isolate-wizard: --format: "nft" is not one of ansible\n$/],
    [['export', '--format', 'ansible', '--inventory', SEED], /--out DIR is required/],
    [['export', '--format', 'ansible', '--out', 'x'], /--inventory FILE is required/],
    [['export', '--format', 'ansible', '--out', 'x', '--inventory', SEED, '--timeout', '5'], /^isolate-wizard: --timeout: "5" is not a whole number of seconds between 30 and 86400\n$/],
    [['export', '--format', 'ansible', '--out', 'x', '--inventory', SEED, '--backend', 'pf'], /^isolate-wizard: --backend: "pf" is not one of iptables, nftables, auto\n$/],
    [['export', '--format', 'ansible', '--out', 'x', '--inventory', 'nope.json'], /^isolate-wizard: --inventory: cannot read nope.json \(no such file\)\n$/],
    [['export', '--format', 'ansible', '--out', 'x', '--inventory', SEED, '--bogus'], /Unknown option '--bogus'/],
  ])('refuses %j in one line, exit 2, nothing written', async (args, message) => {
    const result = await run(args, homeWithProxyJump());
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(path.join(repo, 'x'))).toBe(false);
  });

  it('refuses a directory that holds something else, writing nothing', async () => {
    const dir = path.join(scratch, 'busy');
    mkdirSync(dir, {recursive: true});
    writeFileSync(path.join(dir, 'notes.txt'), 'mine\n');
    const result = await run(['export', '--format', 'ansible', '--out', dir, '--inventory', SEED], homeWithProxyJump());
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(`isolate-wizard: --out: ${dir} is not empty and holds no earlier export: give a new or empty directory\n`);
    expect(readdirSync(dir)).toEqual(['notes.txt']);
  });

  it('refuses, exit 3 and nothing written, a plan that would cut the operator\'s ssh path', async () => {
    // Without the ProxyJump config, the private hosts are reached from the internet on a port their rules close.
    const {dir, code, stderr} = await exportSeed(SEED, path.join(scratch, 'no-home'));
    expect(code).toBe(3);
    expect(stderr).toMatch(/^isolate-wizard: refused, nothing written:\nlockout: haproxy-www: /);
    expect(existsSync(dir)).toBe(false);
  });
});
