// The server-side agent, run for real with dash in a network namespace of this test's own (its
// iptables are private to the namespace; the root namespace is never touched). The state
// directory is a temp dir (IW_STATE_DIR_OVERRIDE), so several runs can share the machine.
import {execFileSync, spawn, spawnSync} from 'node:child_process';
import {chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync, readlinkSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {afterAll, afterEach, beforeAll, beforeEach, describe, expect, it} from 'vitest';
import {AGENT_EXIT, AGENT_SCRIPT, SECTION_NFT, SECTION_V4, SECTION_V6} from '../../source/remote/agent-script.js';
import {parseIptablesSave} from '../../source/core/iptables-save.js';
import {toOwnChains} from '../../source/core/own-chains.js';
import {withPublishedRules} from '../../source/core/docker.js';
import {renderRuleset} from '../../source/core/render.js';

const canUseNetns = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0;
const NETNS = `iw-h5-agent-${process.pid}`;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let dir = '';

interface Server {
  /** A server without the nftables package. */
  withoutNft?: boolean;
  /** A directory shown as /usr/local/sbin, first on the agent's PATH: wrappers that fail for real. */
  sbin?: string;
  /** A file shown as /proc/sys/kernel/random/boot_id: another boot. */
  bootId?: string;
  /** /etc as an overlay whose writes land in this directory (boot-time files). */
  etc?: string;
}

/**
 * The agent run for real: dash in the test's network namespace, in a mount namespace of its own
 * when the server is given wrappers, another boot id or another /etc (the agent sets its own
 * PATH, so what it finds must change in the file system). A watchdog it starts stays in both.
 */
function agent(args: string[], input = '', given: Server = {}): Run {
  // Always an /etc of its own: a confirm writes our boot files, never into this machine's /etc.
  const server = given.etc ? given : {...given, etc: path.join(dir, 'etc-default')};
  const mounts: string[] = [];
  const mountArgs: string[] = [];
  const mount = (line: string, ...values: string[]): void => {
    let text = line;
    for (const value of values) {
      mountArgs.push(value);
      text = text.replace('@', `"$${mountArgs.length}"`);
    }
    mounts.push(text);
  };
  if (server.withoutNft) {
    const real = mkdtempSync(path.join(dir, 'sbin-')) + '/real';
    const shown = mkdtempSync(path.join(dir, 'sbin-')) + '/shown';
    mount('mkdir @ @ && mount --bind /usr/sbin @ && for f in @/*; do [ "${f##*/}" = nft ] || ln -s "$f" @/"${f##*/}"; done && mount --bind @ /usr/sbin', real, shown, real, real, shown, shown);
  }
  if (server.sbin) mount('mount --bind @ /usr/local/sbin', server.sbin);
  if (server.bootId) mount('mount --bind @ /proc/sys/kernel/random/boot_id', server.bootId);
  if (server.etc) {
    const work = path.join(path.dirname(server.etc), `${path.basename(server.etc)}-work`);
    execFileSync('mkdir', ['-p', server.etc, work]);
    mount('mount -t overlay iw-etc -o lowerdir=/etc,upperdir=@,workdir=@ /etc', server.etc, work);
  }
  const inner = ['ip', 'netns', 'exec', NETNS, 'env', `IW_STATE_DIR_OVERRIDE=${dir}`, 'dash', path.join(dir, 'agent.sh'), ...args];
  const argv =
    mounts.length === 0
      ? inner
      : ['unshare', '-m', 'sh', '-c', `mount --make-rprivate / && ${mounts.join(' && ')} && shift ${mountArgs.length} && exec "$@"`, 'sh', ...mountArgs, ...inner];
  const [command = 'ip', ...rest] = argv;
  const result = spawnSync(command, rest, {input, encoding: 'utf8', timeout: 30_000});
  return {code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr};
}

/** A directory of executable sh scripts (name → body), for `sbin`. */
function wrappers(scripts: Record<string, string>): string {
  const sbin = mkdtempSync(path.join(dir, 'wrappers-'));
  for (const [name, body] of Object.entries(scripts)) {
    writeFileSync(path.join(sbin, name), `#!/bin/sh\n${body}\n`);
    chmodSync(path.join(sbin, name), 0o755);
  }
  return sbin;
}

function inNetns(argv: string[], input?: string): string {
  return execFileSync('ip', ['netns', 'exec', NETNS, ...argv], {encoding: 'utf8', ...(input === undefined ? {} : {input})});
}

/** The filter table as iptables-save prints it, without counters and comments. */
function liveFilter(family: 4 | 6): string {
  const text = inNetns([family === 4 ? 'iptables-save' : 'ip6tables-save']);
  const lines: string[] = [];
  let inFilter = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    if (line.startsWith('*')) inFilter = line === '*filter';
    if (inFilter) lines.push(line.replace(/ \[\d+:\d+\]$/, ''));
    if (line === 'COMMIT') inFilter = false;
  }
  return lines.join('\n');
}

function state(): Record<string, string> {
  return Object.fromEntries(
    readFileSync(path.join(dir, 'state'), 'utf8')
      .split('\n')
      .filter((line) => line.includes('='))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
}

/** The watchdog gone (its token no longer matches: it quits) and the deadline passed long ago. */
function makeStale(): void {
  const file = path.join(dir, 'state');
  const past = Math.floor(Date.now() / 1000) - 600;
  writeFileSync(file, readFileSync(file, 'utf8').replace(/^token=.*$/m, 'token=gone').replace(/^deadline=.*$/m, `deadline=${past}`));
}

/** The rules as the compiler writes them (built-in chains with policies)... */
const COMPILED_V4 = [
  '*filter',
  ':INPUT DROP [0:0]',
  ':FORWARD DROP [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  '-A INPUT -i lo -j ACCEPT',
  '-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT',
  'COMMIT',
  '',
].join('\n');
/** ...and as the client sends them: our chains (IW-*) and one jump into each (own-chains.ts). */
const ownText = (compiled: string, family: 4 | 6): string => renderRuleset(toOwnChains(parseIptablesSave(compiled, family)));
const CANDIDATE_V4 = ownText(COMPILED_V4, 4);
const CANDIDATE_V6 = ownText(COMPILED_V4.replace('--dport 22', '--dport 2222'), 6);
const payload = (v4: string, v6: string): string => `${SECTION_V4}\n${v4}${SECTION_V6}\n${v6}`;

/** What a Docker host's tables look like: its chains in filter (FORWARD) and in nat. */
const DOCKER_LIKE = [
  '*nat',
  ':PREROUTING ACCEPT [0:0]',
  ':INPUT ACCEPT [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  ':POSTROUTING ACCEPT [0:0]',
  ':DOCKER - [0:0]',
  '-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER',
  '-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE',
  '-A DOCKER -i docker0 -j RETURN',
  'COMMIT',
  '*filter',
  ':INPUT ACCEPT [0:0]',
  ':FORWARD DROP [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  ':DOCKER - [0:0]',
  ':DOCKER-USER - [0:0]',
  '-A INPUT -i lo -j ACCEPT',
  '-A FORWARD -j DOCKER-USER',
  '-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  '-A FORWARD -o docker0 -j DOCKER',
  '-A DOCKER-USER -j RETURN',
  'COMMIT',
  '',
].join('\n');


/** A table of ours, as the nftables backend's compiler writes one (a named interval set, a base chain). */
const OUR_TABLE = [
  'table inet isolate_wizard {',
  '\tset admins_v4 {',
  '\t\ttype ipv4_addr',
  '\t\tflags interval',
  '\t\telements = { 192.0.2.10, 198.51.100.0/24 }',
  '\t}',
  '',
  '\tchain input {',
  '\t\ttype filter hook input priority filter; policy drop;',
  '\t\tiif "lo" accept',
  '\t\tip saddr @admins_v4 tcp dport 22 accept',
  '\t}',
  '}',
].join('\n');
const OTHER_TABLE = OUR_TABLE.replace('tcp dport 22', 'tcp dport { 22, 443 }').replace('192.0.2.10', '192.0.2.11');
const withNft = (v4: string, v6: string, nft: string): string => `${payload(v4, v6)}${SECTION_NFT}\n${nft}${nft === '' ? '' : '\n'}`;

/** Our table as nft lists it ('' when absent). */
function ourTable(): string {
  const listed = spawnSync('ip', ['netns', 'exec', NETNS, 'nft', '-s', 'list', 'table', 'inet', 'isolate_wizard'], {encoding: 'utf8'});
  return listed.status === 0 ? listed.stdout : '';
}

/** Waits (bounded) for the watchdog to act; the agent polls once a second. */
async function waitForPhase(phases: string[], limitMs = 15_000): Promise<string> {
  const start = Date.now();
  for (;;) {
    const phase = state()['phase'] ?? '';
    if (phases.includes(phase) || Date.now() - start > limitMs) return phase;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Namespaces of this file's earlier runs whose process is gone (killed: no afterAll ran), removed. */
function removeOrphanNamespaces(): void {
  const listed = spawnSync('ip', ['netns', 'list'], {encoding: 'utf8'}).stdout ?? '';
  for (const [, name, pid] of listed.matchAll(/^(iw-h5-agent-(\d+))\b/gm)) {
    if (name === NETNS || existsSync(`/proc/${pid}`)) continue;
    spawnSync('ip', ['netns', 'del', name as string]);
  }
}

function freshNamespace(): void {
  spawnSync('ip', ['netns', 'del', NETNS]);
  execFileSync('ip', ['netns', 'add', NETNS]);
  inNetns(['ip', 'link', 'set', 'lo', 'up']);
}

describe('agent script (static)', () => {
  it('is valid POSIX sh', () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'iw-h5-')), 'agent.sh');
    writeFileSync(file, AGENT_SCRIPT);
    expect(spawnSync('dash', ['-n', file]).status).toBe(0);
    rmSync(path.dirname(file), {recursive: true});
  });

  it('lets an nftables part define our table and nothing else, in awk and busybox awk alike', () => {
    const program = /^nft_ours_awk='([\s\S]*?)'$/m.exec(AGENT_SCRIPT)?.[1] ?? '';
    expect(program).toContain('table inet isolate_wizard');
    const awks = [['awk'], ...(spawnSync('busybox', ['awk', 'BEGIN { exit 0 }']).status === 0 ? [['busybox', 'awk']] : [])];
    const ours = (text: string): boolean[] => awks.map(([command = 'awk', ...rest]) => spawnSync(command, [...rest, program], {input: `${text}\n`}).status === 0);
    for (const text of ['table inet isolate_wizard {\n\tchain input { iif "lo" accept comment "a } brace" # { and one\n\t}\n}', 'table inet isolate_wizard', '']) {
      expect(ours(text), text).toEqual(awks.map(() => true));
    }
    for (const text of [
      'table inet isolate_wizard { }\ntable inet firewalld { }',
      'flush ruleset',
      'table inet isolate_wizard { chain c { } } ; delete table ip filter',
      'table inet isolate_wizard { } }',
      'table inet isolate_wizard { chain c {',
      'table ip isolate_wizard { }',
      'define x = 1',
    ]) {
      expect(ours(text), text).toEqual(awks.map(() => false));
    }
  });

  it('rejects arguments that are not a batch id or a number of seconds', () => {
    dir = mkdtempSync(path.join(tmpdir(), 'iw-h5-agent-'));
    writeFileSync(path.join(dir, 'agent.sh'), AGENT_SCRIPT);
    const run = (args: string[]): number =>
      spawnSync('dash', [path.join(dir, 'agent.sh'), ...args], {env: {...process.env, IW_STATE_DIR_OVERRIDE: dir}, input: 'x\n'}).status ?? -1;
    expect(run(['begin', 'bad;id', '5'])).toBe(AGENT_EXIT.badArguments);
    expect(run(['begin', 'ok-id', '5s'])).toBe(AGENT_EXIT.badArguments);
    expect(run(['confirm', 'UPPER'])).toBe(AGENT_EXIT.badArguments);
    expect(run(['fire', 'ok', 'tok;en'])).toBe(AGENT_EXIT.badArguments);
    expect(run(['frobnicate'])).toBe(AGENT_EXIT.badArguments);
    expect(existsSync(path.join(dir, 'state'))).toBe(false); // nothing was locked
    rmSync(dir, {recursive: true});
  });
});

describe.skipIf(!canUseNetns)('agent script in a network namespace', {timeout: 60_000}, () => {
  beforeAll(() => {
    removeOrphanNamespaces();
    freshNamespace();
  });
  afterAll(() => {
    spawnSync('ip', ['netns', 'del', NETNS]);
    // The detached watchdogs poll their token: with the state dir gone they exit within a second.
    if (dir) rmSync(dir, {recursive: true, force: true, maxRetries: 10, retryDelay: 150});
  });
  beforeEach(() => {
    freshNamespace();
    // An earlier test's detached watchdogs may still open their mutex file in there as they
    // stand down (each polls at most 5 s apart): retried for as long (ENOTEMPTY).
    if (dir) rmSync(dir, {recursive: true, force: true, maxRetries: 10, retryDelay: 150});
    dir = mkdtempSync(path.join(tmpdir(), 'iw-h5-agent-'));
    writeFileSync(path.join(dir, 'agent.sh'), AGENT_SCRIPT);
  });

  it('applies, confirms, and a confirm after that is idempotent', () => {
    expect(agent(['begin', 'b1', '60'], 'alice@laptop pid=1\n').code).toBe(0);
    expect(agent(['stage', 'b1'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 'b1']).code).toBe(0);
    expect(liveFilter(4)).toContain('-A IW-INPUT -p tcp -m tcp --dport 22 -j RETURN');
    expect(liveFilter(6)).toContain('--dport 2222');
    const confirmed = agent(['confirm', 'b1']);
    expect(confirmed.code).toBe(0);
    expect(confirmed.stdout).toContain('confirmed');
    expect(confirmed.stdout).toContain('persisted=');
    expect(state()['phase']).toBe('confirmed');
    expect(agent(['status']).stdout).toContain('locked=no');
    expect(agent(['confirm', 'b1']).stdout).toContain('already-confirmed');
    expect(liveFilter(4)).toContain('--dport 22');
    // Confirmed again once our rules changed: not persisted.
    inNetns(['iptables', '-I', 'IW-INPUT', '1', '-p', 'tcp', '--dport', '9999', '-j', 'ACCEPT']);
    const again = agent(['confirm', 'b1']);
    expect(again.code).toBe(AGENT_EXIT.confirmRefused);
    expect(again.stdout).toContain('already=confirmed');
    expect(again.stdout).not.toContain('persisted=');
  });

  it('verify shows the live rules and then waits: "confirm" confirms, anything else (or no answer) leaves the batch pending', () => {
    expect(agent(['begin', 'v1', '60'], 'alice@laptop pid=1\n').code).toBe(0);
    expect(agent(['stage', 'v1'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 'v1']).code).toBe(0);
    // No answer (the client died, the link dropped): nothing changes, the watchdog stays armed.
    const silent = agent(['verify', 'v1'], '');
    expect(silent.code).toBe(0);
    const [shown, after] = silent.stdout.split('#iw:await\n') as [string, string];
    expect(shown).toContain('phase=loaded');
    expect(shown).toContain('-A IW-INPUT -p tcp -m tcp --dport 22 -j RETURN');
    expect(after.trim()).toBe('not-confirmed');
    expect(state()['phase']).toBe('loaded');
    expect(state()['token']).not.toBe('');
    expect(agent(['verify', 'v1'], 'yes\n').stdout).toContain('not-confirmed');
    expect(state()['phase']).toBe('loaded');
    // The word: confirmed over this same call, as the confirm op does.
    const kept = agent(['verify', 'v1'], 'confirm\n');
    expect(kept.code).toBe(0);
    expect(kept.stdout.split('#iw:await\n')[1]).toMatch(/^confirmed\npersisted=/);
    expect(state()['phase']).toBe('confirmed');
    expect(agent(['status']).stdout).toContain('locked=no');
  });

  it('rolls back by itself at the deadline to the exact snapshot, keeping other tables', async () => {
    inNetns(['iptables-restore'], '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:f2b-sshd - [0:0]\n-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd\n-A f2b-sshd -s 198.51.100.7/32 -j REJECT --reject-with icmp-port-unreachable\n-A f2b-sshd -j RETURN\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n-A DOCKER -i docker0 -j RETURN\nCOMMIT\n');
    const beforeV4 = liveFilter(4);
    const beforeNat = inNetns(['iptables-save', '-t', 'nat']).replace(/^#.*\n/gm, '');
    expect(agent(['begin', 'b2', '60'], 'alice@laptop pid=1\n').code).toBe(0);
    expect(agent(['stage', 'b2'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 'b2']).code).toBe(0);
    expect(liveFilter(4)).not.toEqual(beforeV4);
    expect(agent(['arm', 'b2', '2']).code).toBe(0); // the countdown, as apply arms it after verifying
    expect(await waitForPhase(['expired'])).toBe('expired');
    expect(liveFilter(4)).toEqual(beforeV4);
    expect(liveFilter(6)).toEqual('');
    expect(inNetns(['iptables-save', '-t', 'nat']).replace(/^#.*\n/gm, '')).toEqual(beforeNat);
    // A later confirm changes nothing and says the batch expired.
    const late = agent(['confirm', 'b2']);
    expect(late.code).toBe(AGENT_EXIT.notPending);
    expect(late.stderr).toContain('expired');
    expect(liveFilter(4)).toEqual(beforeV4);
  });

  it('a watchdog started on a host with no state yet waits for the state its begin writes, and acts at the deadline', async () => {
    // The first batch on a host: the watchdog starts before begin writes the state. A slow mv
    // (the state's rename) holds that window open; a watchdog reading "no state" in it must not
    // quit, or the batch is left without its way back.
    expect(existsSync(path.join(dir, 'state'))).toBe(false);
    const sbin = wrappers({mv: 'sleep 1.5; exec /bin/mv "$@"'});
    expect(agent(['begin', 'w1', '3'], 'alice@laptop pid=1\n', {sbin}).code).toBe(0);
    expect(await waitForPhase(['expired'], 20_000)).toBe('expired');
  });

  it('restores a host that had no tables at all to no tables', () => {
    expect(inNetns(['iptables-save']).trim()).toBe('');
    expect(agent(['begin', 'b3', '60'], 'x@y pid=2\n').code).toBe(0);
    expect(agent(['stage', 'b3'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 'b3']).code).toBe(0);
    expect(inNetns(['iptables-save'])).toContain('*filter');
    const rolled = agent(['rollback', 'b3']);
    expect(rolled.code).toBe(0);
    expect(inNetns(['iptables-save']).trim()).toBe('');
    expect(inNetns(['ip6tables-save']).trim()).toBe('');
  });

  it('without nft on the server, restores a host that had no tables to an empty filter table that lets everything through', () => {
    // iptables alone cannot delete a table: our chains go, the built-in chains' policies were never ours.
    const server = {withoutNft: true};
    expect(agent(['begin', 'b4', '60'], 'x@y pid=2\n', server).code).toBe(0);
    expect(agent(['stage', 'b4'], payload(CANDIDATE_V4, CANDIDATE_V6), server).code).toBe(0);
    expect(agent(['load', 'b4'], '', server).code).toBe(0);
    expect(liveFilter(4)).toContain('-A INPUT -j IW-INPUT');
    expect(liveFilter(4)).toContain(':INPUT ACCEPT');
    const rolled = agent(['rollback', 'b4'], '', server);
    expect(rolled.code).toBe(0);
    const open = '*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\nCOMMIT';
    expect(liveFilter(4)).toBe(open);
    expect(liveFilter(6)).toBe(open);
  });

  it('refuses a second batch while one is pending, naming the holder', () => {
    expect(agent(['begin', 'b4', '60'], 'alice@laptop pid=42\n').code).toBe(0);
    const second = agent(['begin', 'b5', '60'], 'bob@desk pid=7\n');
    expect(second.code).toBe(AGENT_EXIT.lockHeld);
    expect(second.stdout).toContain('held_by=alice@laptop pid=42');
    expect(second.stdout).toMatch(/since=\d+/);
    expect(agent(['unlock', 'b4']).code).toBe(0);
    expect(agent(['begin', 'b5', '60'], 'bob@desk pid=7\n').code).toBe(0);
  });

  it('reports a stale lock (its watchdog never ran: a reboot) and changes nothing; only rollback restores it, and only while the live rules are its own', () => {
    const before = liveFilter(4);
    expect(agent(['begin', 's1', '60'], 'x@y pid=2\n').code).toBe(0);
    expect(agent(['stage', 's1'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 's1']).code).toBe(0);
    makeStale();
    const loaded = liveFilter(4);
    const stateBefore = readFileSync(path.join(dir, 'state'), 'utf8');
    const status = agent(['status']);
    expect(status.stdout).toContain('stale=yes');
    expect(status.stdout).toContain('locked=yes');
    const next = agent(['begin', 's2', '60'], 'x@y pid=3\n');
    expect(next.code).toBe(AGENT_EXIT.lockHeld);
    expect(next.stdout).toContain('stale=yes');
    expect(next.stdout).toContain('batch=s1');
    // Neither status nor a refused begin touched anything.
    expect(readFileSync(path.join(dir, 'state'), 'utf8')).toBe(stateBefore);
    expect(liveFilter(4)).toBe(loaded);
    const rolled = agent(['rollback', 's1']);
    expect(rolled.code).toBe(0);
    expect(liveFilter(4)).toEqual(before);
    expect(agent(['begin', 's2', '60'], 'x@y pid=3\n').code).toBe(0);
    expect(agent(['unlock', 's2']).code).toBe(0);
  });

  it('refuses to roll back a stale batch whose live rules changed since its load (reason=changed), and unlock then releases it keeping them', () => {
    expect(agent(['begin', 's3', '60'], 'x@y pid=2\n').code).toBe(0);
    expect(agent(['stage', 's3'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 's3']).code).toBe(0);
    makeStale();
    inNetns(['iptables', '-I', 'IW-INPUT', '1', '-p', 'tcp', '--dport', '9999', '-j', 'ACCEPT']); // e.g. what a boot loaded
    const changed = liveFilter(4);
    const refused = agent(['rollback', 's3']);
    expect(refused.code).toBe(AGENT_EXIT.confirmRefused);
    expect(refused.stdout).toContain('reason=changed');
    expect(refused.stderr).toContain('unlock s3');
    expect(liveFilter(4)).toBe(changed);
    expect(state()['phase']).toBe('loaded');
    const released = agent(['unlock', 's3']);
    expect(released.code).toBe(0);
    expect(liveFilter(4)).toBe(changed);
    expect(state()['phase']).toBe('released');
  });

  it('rejects an invalid candidate with iptables-restore --test and changes nothing', () => {
    inNetns(['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '80', '-j', 'ACCEPT']);
    const before = liveFilter(4);
    expect(agent(['begin', 'b6', '60'], 'x@y pid=2\n').code).toBe(0);
    const bad = CANDIDATE_V4.replace('--dport 22', '--no-such-option 22');
    const staged = agent(['stage', 'b6'], payload(bad, CANDIDATE_V6));
    expect(staged.code).toBe(AGENT_EXIT.candidateRejected);
    expect(staged.stderr).toContain('IPv4 candidate rejected');
    expect(agent(['load', 'b6']).code).toBe(AGENT_EXIT.notPending); // never loads an unvalidated candidate
    expect(liveFilter(4)).toEqual(before);
  });

  it('begins and stages in one call: the snapshot comes back, a rejected candidate leaves the batch locked for another', () => {
    inNetns(['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '80', '-j', 'ACCEPT']);
    const before = liveFilter(4);
    // The owner travels in IW_OWNER (read by the login shell); stdin holds only the candidate.
    const bad = CANDIDATE_V4.replace('--dport 22', '--no-such-option 22');
    const rejected = spawnSync('ip', ['netns', 'exec', NETNS, 'env', `IW_STATE_DIR_OVERRIDE=${dir}`, 'IW_OWNER=x@y pid=3', 'dash', path.join(dir, 'agent.sh'), 'begin', 's1', '60', 'stage'], {
      input: payload(bad, CANDIDATE_V6),
      encoding: 'utf8',
    });
    expect(rejected.status).toBe(AGENT_EXIT.candidateRejected);
    expect(rejected.stderr).toContain('IPv4 candidate rejected');
    expect(rejected.stdout).toContain('--dport 80'); // the snapshot, as begin prints it
    expect(state()['phase']).toBe('locked');
    expect(state()['owner']).toBe('x@y pid=3');
    expect(agent(['load', 's1']).code).toBe(AGENT_EXIT.notPending);
    // The caller stages another candidate on the same batch, and that one loads.
    expect(agent(['stage', 's1'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 's1']).code).toBe(0);
    expect(liveFilter(4)).toContain('--dport 22');
    expect(agent(['rollback', 's1']).code).toBe(0);
    expect(liveFilter(4)).toEqual(before);

    const good = spawnSync('ip', ['netns', 'exec', NETNS, 'env', `IW_STATE_DIR_OVERRIDE=${dir}`, 'IW_OWNER=x@y pid=4', 'dash', path.join(dir, 'agent.sh'), 'begin', 's2', '60', 'stage'], {
      input: payload(CANDIDATE_V4, CANDIDATE_V6),
      encoding: 'utf8',
    });
    expect(good.status).toBe(0);
    expect(good.stdout.split('\n')).toContain(SECTION_V6);
    expect(good.stdout).not.toContain('staged'); // stdout is the snapshot alone
    expect(state()['phase']).toBe('staged');
    expect(agent(['load', 's2']).code).toBe(0);
    expect(agent(['rollback', 's2']).code).toBe(0);
  });

  it('puts the snapshot back at once when IPv4 loads and IPv6 fails', () => {
    inNetns(['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '80', '-j', 'ACCEPT']);
    const before = liveFilter(4);
    expect(agent(['begin', 'b9', '60'], 'x@y pid=2\n').code).toBe(0);
    // A jump to a chain the file never declares passes --test on iptables-nft but fails the load.
    const v6 = CANDIDATE_V6.replace('-i lo -j RETURN', '-i lo -j NOT-DECLARED');
    expect(agent(['stage', 'b9'], payload(CANDIDATE_V4, v6)).code).toBe(0);
    const loaded = agent(['load', 'b9']);
    expect(loaded.code).toBe(AGENT_EXIT.loadFailed);
    expect(loaded.stderr).toContain('the previous rules were restored and verified');
    expect(liveFilter(4)).toEqual(before);
    expect(liveFilter(6)).toEqual('');
    expect(state()['phase']).toBe('failed');
    expect(agent(['status']).stdout).toContain('locked=no');
  });

  it('lets exactly one of confirm and the watchdog win when they meet at the deadline', async () => {
    const before = liveFilter(4);
    expect(agent(['begin', 'b7', '60'], 'x@y pid=2\n').code).toBe(0);
    expect(agent(['stage', 'b7'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 'b7']).code).toBe(0);
    expect(agent(['arm', 'b7', '1']).code).toBe(0); // re-arm: the first watchdog must stand down
    // Keep confirming around the deadline; whichever wins, the rules must match the outcome.
    const start = Date.now();
    let confirm: Run = agent(['confirm', 'b7']);
    while (confirm.code !== 0 && confirm.code !== AGENT_EXIT.notPending && Date.now() - start < 5000) confirm = agent(['confirm', 'b7']);
    const phase = await waitForPhase(['confirmed', 'expired']);
    if (confirm.code === 0) {
      expect(phase).toBe('confirmed');
      expect(liveFilter(4)).toContain('--dport 22');
    } else {
      expect(phase).toBe('expired');
      expect(liveFilter(4)).toEqual(before);
    }
    await new Promise((resolve) => setTimeout(resolve, 1500)); // a late watchdog must not undo a confirm
    expect(state()['phase']).toBe(phase);
  });

  it('status reports a pending batch with its seconds left and the backups kept', () => {
    expect(agent(['status']).stdout).toContain('managed=no');
    expect(agent(['begin', 'b8', '90'], 'x@y pid=2\n').code).toBe(0);
    const status = agent(['status']).stdout;
    expect(status).toContain('phase=locked');
    expect(status).toContain('locked=yes');
    expect(status).toContain('backups=1');
    const values = Object.fromEntries(status.trim().split('\n').map((line) => line.split('=', 2) as [string, string]));
    expect(Number(values['deadline']) - Number(values['now'])).toBeGreaterThan(80);
  });

  it('confirmed hands back what the last confirmed batch loaded, through later batches rolled back', () => {
    expect(agent(['confirmed']).stdout).toBe('none\n');
    expect(agent(['begin', 'k1', '60'], 'x@y pid=2\n').code).toBe(0);
    expect(agent(['stage', 'k1'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 'k1']).code).toBe(0);
    expect(agent(['confirmed']).stdout).toBe('none\n'); // loaded, not confirmed
    expect(agent(['confirm', 'k1']).code).toBe(0);
    const first = agent(['confirmed']);
    expect(first.code).toBe(0);
    expect(first.stdout.startsWith(`batch=k1\n${SECTION_V4}\n*filter\n`)).toBe(true);
    expect(first.stdout).toContain('-A IW-INPUT -p tcp -m tcp --dport 22 -j RETURN');
    expect(first.stdout.split(`${SECTION_V6}\n`)[1]).toContain('--dport 2222');
    // Later batches that roll back leave k1 as the confirmed one.
    for (let index = 0; index < 2; index += 1) {
      const batch = `k2-${String(index).padStart(2, '0')}`;
      expect(agent(['begin', batch, '60'], 'x@y pid=2\n').code).toBe(0);
      expect(agent(['stage', batch], payload(CANDIDATE_V4.replace('--dport 22', '--dport 23'), CANDIDATE_V6)).code).toBe(0);
      expect(agent(['load', batch]).code).toBe(0);
      expect(agent(['rollback', batch]).code).toBe(0);
    }
    expect(agent(['confirmed']).stdout).toBe(first.stdout);
    // A record that cannot be read is an error, never an empty confirmed rule set.
    rmSync(path.join(dir, 'backups', 'k1.loaded.v6'));
    const missing = agent(['confirmed']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('k1');
  });

  it('keeps only the last 10 backups', () => {
    for (let index = 0; index < 12; index += 1) {
      const batch = `20260101-0000${String(index).padStart(2, '0')}-aa`;
      expect(agent(['begin', batch, '60'], 'x@y pid=2\n').code).toBe(0);
      expect(agent(['stage', batch], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
      expect(agent(['load', batch]).code).toBe(0);
      expect(agent(['confirm', batch]).code).toBe(0);
    }
    const snapshots = readdirSync(path.join(dir, 'backups')).filter((name) => /^[a-z0-9-]+\.v4$/.test(name));
    expect(snapshots).toHaveLength(10);
    expect(snapshots).not.toContain('20260101-000000-aa.v4');
    // Every file of a pruned batch goes, its nftables snapshot and candidate too.
    expect(readdirSync(path.join(dir, 'backups')).filter((name) => name.startsWith('20260101-000000-aa.'))).toEqual([]);
    expect(readdirSync(path.join(dir, 'backups')).filter((name) => name.startsWith('20260101-000011-aa.')).sort()).toEqual(
      ['cand.nft', 'cand.v4', 'cand.v6', 'loaded.nft', 'loaded.v4', 'loaded.v6', 'nft', 'v4', 'v6'].map((suffix) => `20260101-000011-aa.${suffix}`),
    );
  }, 120_000);

  it('hands back the snapshot exactly as iptables-save prints it, and show prints the live filter table without counters', () => {
    inNetns(['iptables-restore'], DOCKER_LIKE);
    inNetns(['ip6tables-restore'], '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p ipv6-icmp -j ACCEPT\nCOMMIT\n');
    const begun = agent(['begin', 'd1', '60'], 'x@y pid=2\n');
    expect(begun.code).toBe(0);
    const withoutComments = (text: string): string => text.replace(/^#.*\n/gm, '');
    expect(begun.stdout.startsWith('watchdog=detached\n')).toBe(true);
    const [v4, rest] = begun.stdout.replace('watchdog=detached\n', '').split(`${SECTION_V6}\n`) as [string, string];
    const [v6, nft] = rest.split(`${SECTION_NFT}\n`) as [string, string];
    expect(withoutComments(v4.replace(`${SECTION_V4}\n`, ''))).toBe(withoutComments(inNetns(['iptables-save'])));
    expect(withoutComments(v6)).toBe(withoutComments(inNetns(['ip6tables-save'])));
    expect(nft).toBe(''); // no table of ours
    expect(readFileSync(path.join(dir, 'backups', 'd1.v4'), 'utf8')).toContain(':DOCKER-USER - [0:0]');
    const shown = agent(['show']);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toBe(`phase=locked\nbatch=d1\n${SECTION_V4}\n${liveFilter(4)}\n${SECTION_V6}\n${liveFilter(6)}\n${SECTION_NFT}\n`);
    expect(shown.stdout).not.toMatch(/\[\d+:\d+\]/);
    expect(agent(['unlock', 'd1']).stdout).toContain('released');
  });

  it('loads beside the Docker chains it finds live, and rolls back a host with Docker chains in filter and nat to its exact snapshot, and checks it did', () => {
    inNetns(['iptables-restore'], DOCKER_LIKE);
    const beforeV4 = liveFilter(4);
    const beforeNat = inNetns(['iptables-save', '-t', 'nat']).replace(/^#.*\n/gm, '');
    expect(agent(['begin', 'd2', '60'], 'x@y pid=2\n').code).toBe(0);
    expect(agent(['stage', 'd2'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 'd2']).code).toBe(0);
    // The candidate did not name them: the load (--noflush) never touched them.
    expect(liveFilter(4)).toContain('-A FORWARD -o docker0 -j DOCKER');
    expect(liveFilter(4)).toContain(':DOCKER-USER -');
    expect(liveFilter(4)).toContain('-A IW-INPUT -p tcp -m tcp --dport 22 -j RETURN');
    const rolled = agent(['rollback', 'd2']);
    expect(rolled.code).toBe(0);
    expect(rolled.stdout).toContain('rolledback');
    expect(liveFilter(4)).toEqual(beforeV4);
    expect(liveFilter(6)).toEqual('');
    expect(inNetns(['iptables-save', '-t', 'nat']).replace(/^#.*\n/gm, '')).toEqual(beforeNat);
    expect(state()['phase']).toBe('rolledback');
  });

  it('restricted published ports: our jump goes first in Docker\'s DOCKER-USER, a rollback leaves that chain as Docker had it, and at boot (no DOCKER-USER yet) the rest of ours loads', () => {
    inNetns(['iptables-restore'], DOCKER_LIKE);
    const before = liveFilter(4);
    const port = {family: 4 as const, proto: 'tcp' as const, ports: {first: 8080, last: 8080}, containerAddress: '172.17.0.2'};
    const candidate = renderRuleset(toOwnChains(withPublishedRules(parseIptablesSave(COMPILED_V4, 4), [port])));
    expect(candidate).toContain('-A DOCKER-USER -j IW-PUBLISHED');
    const userChain = (): string[] => inNetns(['iptables', '-S', 'DOCKER-USER']).trim().split('\n');
    const load = (batch: string): void => {
      expect(agent(['begin', batch, '60'], 'x@y pid=2\n').code).toBe(0);
      const staged = agent(['stage', batch], payload(candidate, CANDIDATE_V6));
      expect(staged.code, staged.stderr).toBe(0);
      const loaded = agent(['load', batch]);
      expect(loaded.code, loaded.stderr).toBe(0);
      expect(userChain()).toEqual(['-N DOCKER-USER', '-A DOCKER-USER -j IW-PUBLISHED', '-A DOCKER-USER -j RETURN']);
    };
    load('du1');
    expect(agent(['rollback', 'du1']).code).toBe(0);
    expect(liveFilter(4)).toEqual(before);
    expect(userChain()).toEqual(['-N DOCKER-USER', '-A DOCKER-USER -j RETURN']);

    load('du2');
    const etc = path.join(dir, 'etc-docker-user');
    execFileSync('mkdir', ['-p', etc]);
    const server = {etc, sbin: wrappers({'netfilter-persistent': 'exit 0'})};
    const confirmed = agent(['confirm', 'du2'], '', server);
    expect(confirmed.code, confirmed.stderr).toBe(0);
    expect(readFileSync(path.join(etc, 'isolate-wizard', 'isolate-wizard.v4'), 'utf8')).toContain('-A DOCKER-USER -j IW-PUBLISHED');
    // Our Docker-side unit: started with docker.service and after it, it runs the boot op once DOCKER-USER exists.
    const dockerUnit = path.join(etc, 'systemd', 'system', 'isolate-wizard-docker-user.service');
    const unit = readFileSync(dockerUnit, 'utf8');
    expect(unit).toMatch(/^After=docker\.service$/m);
    expect(unit).toMatch(/^PartOf=docker\.service$/m);
    expect(unit).toMatch(/^WantedBy=docker\.service$/m);
    expect(unit).toContain(`ExecStart=/bin/sh ${path.join(dir, 'agent.sh')} boot`);
    expect(readlinkSync(path.join(etc, 'systemd', 'system', 'docker.service.wants', 'isolate-wizard-docker-user.service'))).toBe('/etc/systemd/system/isolate-wizard-docker-user.service');
    // A reboot: the loader's table, Docker not started yet. Ours loads without the jump, and DOCKER-USER is not made.
    inNetns(['iptables-restore'], '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n');
    const booted = agent(['boot'], '', server);
    expect(booted.code, booted.stderr).toBe(0);
    expect(liveFilter(4)).toContain('-A INPUT -j IW-INPUT');
    expect(liveFilter(4)).toContain(':IW-PUBLISHED -');
    expect(liveFilter(4)).not.toContain('DOCKER-USER');
    // Docker there: the boot op puts our jump back in front of its rules.
    inNetns(['iptables-restore', '--noflush'], '*filter\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -j RETURN\nCOMMIT\n');
    expect(agent(['boot'], '', server).code).toBe(0);
    expect(userChain()).toEqual(['-N DOCKER-USER', '-A DOCKER-USER -j IW-PUBLISHED', '-A DOCKER-USER -j RETURN']);
    // A later batch without the restriction: the Docker-side unit goes with it.
    expect(agent(['begin', 'du3', '60'], 'x@y pid=2\n').code).toBe(0);
    expect(agent(['stage', 'du3'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 'du3']).code).toBe(0);
    expect(agent(['confirm', 'du3'], '', server).code).toBe(0);
    expect(existsSync(dockerUnit)).toBe(false);
    expect(existsSync(path.join(etc, 'systemd', 'system', 'docker.service.wants', 'isolate-wizard-docker-user.service'))).toBe(false);
    expect(existsSync(path.join(etc, 'systemd', 'system', 'isolate-wizard-iptables.service'))).toBe(true);
  });

  it('takes a candidate whose last line has no newline, and a new candidate must pass --test again', () => {
    expect(agent(['begin', 'p1', '60'], 'x@y pid=2\n').code).toBe(0);
    expect(agent(['stage', 'p1'], payload(CANDIDATE_V4, CANDIDATE_V6.replace(/\n$/, ''))).code).toBe(0);
    expect(readFileSync(path.join(dir, 'backups', 'p1.cand.v6'), 'utf8')).toBe(CANDIDATE_V6);
    // A rejected second candidate leaves nothing loadable (the first passed, but it was replaced).
    const bad = CANDIDATE_V4.replace('--dport 22', '--no-such-option 22');
    expect(agent(['stage', 'p1'], payload(bad, CANDIDATE_V6)).code).toBe(AGENT_EXIT.candidateRejected);
    expect(agent(['load', 'p1']).code).toBe(AGENT_EXIT.notPending);
    expect(inNetns(['iptables-save']).trim()).toBe('');
    expect(agent(['stage', 'p1'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 'p1']).code).toBe(0);
    // Once loaded, the candidate cannot be swapped under the batch.
    expect(agent(['stage', 'p1'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(AGENT_EXIT.notPending);
    expect(agent(['stage', 'p1'], `${SECTION_V4}\n${CANDIDATE_V4}`).code).toBe(AGENT_EXIT.notPending);
    expect(agent(['rollback', 'p1']).code).toBe(0);
  });

  it('refuses a payload without its IPv6 section, leaving the batch unloadable', () => {
    expect(agent(['begin', 'p2', '60'], 'x@y pid=2\n').code).toBe(0);
    const staged = agent(['stage', 'p2'], `${SECTION_V4}\n${CANDIDATE_V4}`);
    expect(staged.code).toBe(AGENT_EXIT.badArguments);
    expect(staged.stderr).toContain('IPv6 missing');
    expect(agent(['load', 'p2']).code).toBe(AGENT_EXIT.notPending);
    expect(agent(['unlock', 'p2']).code).toBe(0);
  });

  it('reads a state written as an append log (agent version 2: the last value of a key wins, a torn last line is ignored), rewrites it whole, cleans odd owners', () => {
    expect(agent(['begin', 's3', '60'], 'eve;$(reboot) `x` pid=3\n').code).toBe(0);
    expect(state()['owner']).toBe('evereboot x pid=3');
    expect(agent(['stage', 's3'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    const file = path.join(dir, 'state');
    // An update cut by a crash: no newline at the end, so it must not count.
    writeFileSync(file, `${readFileSync(file, 'utf8')}\nphase=confi`);
    const status = agent(['status']).stdout;
    expect(status).toContain('phase=staged');
    expect(status).toContain('owner=evereboot x pid=3');
    expect(status).toContain('locked=yes');
    // The next write replaces the state whole: one line per key.
    expect(agent(['load', 's3']).code).toBe(0);
    expect(agent(['status']).stdout).toContain('phase=loaded');
    expect(readFileSync(file, 'utf8').match(/^phase=/gm)).toHaveLength(1);
    expect(agent(['confirm', 's3']).code).toBe(0);
    expect(agent(['status']).stdout).toContain('phase=confirmed');
    // A value with characters its key may not hold reads as empty.
    writeFileSync(file, `${readFileSync(file, 'utf8')}batch=../../etc\n`);
    expect(agent(['status']).stdout).toContain('batch=\n');
  });

  it('under systemd, arms a transient timer unit (systemd-run), stops it on confirm, and its run rolls back; our table\'s unit is made known and active, then stopped', async () => {
    // A booted-by-systemd look in namespaces of this test: PID 1 is a script named "systemd",
    // /run/systemd/system exists, and stand-ins for systemd-run and systemctl (in
    // /usr/local/sbin, first on the agent's PATH) log what they are asked and run the unit's
    // command after its delay. The real systemd is not exercised; the agent's use of it is.
    const fakes = path.join(dir, 'fake-sbin');
    execFileSync('mkdir', ['-p', fakes, path.join(dir, 'init')]);
    const script = (file: string, lines: string[]): void => {
      writeFileSync(file, `#!/bin/sh\n${lines.join('\n')}\n`);
      chmodSync(file, 0o755);
    };
    script(path.join(fakes, 'systemd-run'), [
      // systemd starts the unit's command in a clean process: no descriptor of the caller (the agent's lock) reaches it.
      'for fd in 3 4 5 6 7 8 9; do eval "exec $fd>&-"; done',
      'printf "systemd-run %s\\n" "$*" >> /run/fake-units/calls',
      '[ -f /run/fake-units/fail ] && exit 1',
      'unit=; delay=',
      'while [ $# -gt 0 ]; do case $1 in --unit=*) unit=${1#--unit=} ;; --on-active=*) delay=${1#--on-active=} ;; --*) ;; *) break ;; esac; shift; done',
      `setsid sh -c 'sleep "$0"; exec "$@"' "$delay" "$@" </dev/null >/dev/null 2>&1 &`,
      'echo $! > "/run/fake-units/$unit.timer"',
    ]);
    script(path.join(fakes, 'systemctl'), [
      'printf "systemctl %s\\n" "$*" >> /run/fake-units/calls',
      '[ "$1" = stop ] && [ -f "/run/fake-units/$2" ] && kill "$(cat "/run/fake-units/$2")"',
      // A unit of /etc/systemd/system is started by running its command, as systemd would.
      '[ "$1" = start ] && [ -f "/etc/systemd/system/$2" ] && exec $(sed -n "s/^ExecStart=//p" "/etc/systemd/system/$2")',
      'exit 0',
    ]);
    const ready = path.join(dir, 'init', 'ready');
    script(path.join(dir, 'init', 'systemd'), [
      'mount -t tmpfs iw-test /run && mkdir -p /run/systemd/system /run/fake-units && mount --bind "$1" /usr/local/sbin || exit 1',
      // Its own /etc (an overlay writing into the test's directory): our unit lands there.
      'mount -t overlay iw-etc -o lowerdir=/etc,upperdir="$3",workdir="$4" /etc || exit 1',
      'echo ready > "$2"',
      "trap 'exit 0' TERM",
      'while :; do sleep 60 & wait $!; done',
    ]);
    const etc = path.join(dir, 'etc-upper');
    execFileSync('mkdir', ['-p', etc, path.join(dir, 'etc-work')]);
    const holder = spawn('ip', ['netns', 'exec', NETNS, 'unshare', '--pid', '--fork', '--mount', '--mount-proc', path.join(dir, 'init', 'systemd'), fakes, ready, etc, path.join(dir, 'etc-work')], {
      stdio: 'ignore',
    });
    try {
      for (let waited = 0; !existsSync(ready) && waited < 5000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
      const pid1 = execFileSync('pgrep', ['-P', String(holder.pid)], {encoding: 'utf8'}).trim();
      const inSystemd = (args: string[], input = ''): Run => {
        const result = spawnSync('nsenter', ['-t', pid1, '--pid', '--mount', '--net', '--', 'env', `IW_STATE_DIR_OVERRIDE=${dir}`, 'dash', path.join(dir, 'agent.sh'), ...args], {input, encoding: 'utf8', timeout: 30_000});
        return {code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr};
      };
      const calls = (): string => execFileSync('nsenter', ['-t', pid1, '--mount', '--', 'sh', '-c', 'cat /run/fake-units/calls 2>/dev/null; true'], {encoding: 'utf8'});

      // Confirmed: the timer of the batch is stopped, and its command never runs.
      const begun = inSystemd(['begin', 'u1', '60'], 'x@y pid=2\n');
      expect(begun.code).toBe(0);
      expect(begun.stdout.startsWith('watchdog=unit\n')).toBe(true);
      const unit = `isolate-wizard-u1-${state()['token']}`;
      expect(state()['watchdog']).toBe(`unit:${unit}`);
      expect(calls()).toContain(`systemd-run --quiet --unit=${unit} --on-active=60 --timer-property=AccuracySec=1s /bin/sh ${path.join(dir, 'agent.sh')} fire u1 ${state()['token']}`);
      expect(inSystemd(['stage', 'u1'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
      expect(inSystemd(['load', 'u1']).code).toBe(0);
      expect(inSystemd(['confirm', 'u1']).code).toBe(0);
      expect(calls()).toContain(`systemctl stop ${unit}.timer`);
      expect(liveFilter(4)).toContain('--dport 22');

      // Not confirmed: when the timer runs the unit's command, the rules go back to the snapshot.
      const before = liveFilter(4);
      expect(inSystemd(['begin', 'u2', '2'], 'x@y pid=2\n').code).toBe(0);
      expect(state()['watchdog']).toMatch(/^unit:isolate-wizard-u2-/);
      expect(inSystemd(['stage', 'u2'], payload(CANDIDATE_V4.replace('--dport 22', '--dport 2200'), CANDIDATE_V6)).code).toBe(0);
      expect(inSystemd(['load', 'u2']).code).toBe(0);
      expect(liveFilter(4)).toContain('--dport 2200');
      expect(await waitForPhase(['expired'])).toBe('expired');
      expect(liveFilter(4)).toEqual(before);

      // Our table persisted: systemd is told of our unit and starts it (only an active unit is
      // restarted with nftables.service), which loads our file; an empty part stops it.
      expect(inSystemd(['begin', 'u4', '60'], 'x@y pid=2\n').code).toBe(0);
      expect(inSystemd(['stage', 'u4'], withNft(CANDIDATE_V4, CANDIDATE_V6, OUR_TABLE)).code).toBe(0);
      expect(inSystemd(['load', 'u4']).code).toBe(0);
      const loaded = ourTable();
      const kept = inSystemd(['confirm', 'u4']);
      expect(kept.code).toBe(0);
      expect(kept.stdout).toContain('persisted_nft=unit');
      expect(calls()).toContain('systemctl daemon-reload\nsystemctl start isolate-wizard.service\n');
      expect(ourTable()).toBe(loaded);
      expect(existsSync(path.join(etc, 'systemd', 'system', 'isolate-wizard.service'))).toBe(true);
      expect(inSystemd(['begin', 'u5', '60'], 'x@y pid=2\n').code).toBe(0);
      expect(inSystemd(['stage', 'u5'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
      expect(inSystemd(['load', 'u5']).code).toBe(0);
      const emptied = inSystemd(['confirm', 'u5']);
      expect(emptied.code).toBe(0);
      expect(emptied.stdout).toContain('persisted_nft=none');
      expect(calls()).toContain('systemctl stop isolate-wizard.service\nsystemctl daemon-reload\n');
      expect(existsSync(path.join(etc, 'systemd', 'system', 'isolate-wizard.service'))).toBe(false);
      expect(ourTable()).toBe('');

      // systemd-run failing: no setsid fallback on a systemd host; begin fails, nothing locked.
      execFileSync('nsenter', ['-t', pid1, '--mount', '--', 'touch', '/run/fake-units/fail']);
      const stateBefore = readFileSync(path.join(dir, 'state'), 'utf8');
      const refused = inSystemd(['begin', 'u3', '60'], 'x@y pid=2\n');
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('systemd-run failed');
      expect(readFileSync(path.join(dir, 'state'), 'utf8')).toBe(stateBefore);
      expect(existsSync(path.join(dir, 'backups', 'u3.v4'))).toBe(false);
    } finally {
      holder.kill('SIGKILL');
      spawnSync('pkill', ['-KILL', '-f', path.join(dir, 'init', 'systemd')]);
    }
  });

  it('stamps its log lines with the second the op read, in UTC', () => {
    expect(agent(['begin', 'l1', '60'], 'x@y pid=2\n').code).toBe(0);
    const since = Number(state()['since']);
    const line = readFileSync(path.join(dir, 'log'), 'utf8').split('\n').find((entry) => entry.includes('begin l1 by x@y pid=2')) ?? '';
    const stamp = line.split(' ')[0] ?? '';
    expect(stamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Date.parse(stamp) / 1000).toBe(since);
    expect(agent(['unlock', 'l1']).code).toBe(0);
  });

  it('restore failing once then succeeding: the load answers 7 (never "restored"), the batch stays pending with a watchdog, whose retry restores and only then expires it', async () => {
    inNetns(['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '80', '-j', 'ACCEPT']);
    const before = liveFilter(4);
    // iptables-restore fails its second real (not --test) call: the load of IPv4 passes, the
    // restore after IPv6 fails fails, the watchdog's retry passes.
    const calls = path.join(dir, 'restore-calls');
    const sbin = wrappers({
      'iptables-restore': `case " $* " in *" --test "*) ;; *) echo x >> ${calls}; [ "$(wc -l < ${calls})" = 2 ] && { echo "wrapper: fails once" >&2; exit 1; } ;; esac\nexec /usr/sbin/iptables-restore "$@"`,
    });
    const server = {sbin};
    expect(agent(['begin', 'r1', '60'], 'x@y pid=2\n', server).code).toBe(0);
    const v6 = CANDIDATE_V6.replace('-i lo -j RETURN', '-i lo -j NOT-DECLARED'); // passes --test, fails the load
    expect(agent(['stage', 'r1'], payload(CANDIDATE_V4, v6), server).code).toBe(0);
    const loaded = agent(['load', 'r1'], '', server);
    expect(loaded.code).toBe(AGENT_EXIT.restoreFailed);
    expect(loaded.stderr).toContain('could not restore: act now');
    expect(loaded.stderr).not.toMatch(/restored|rolled ?back/);
    expect(liveFilter(4)).toContain('--dport 22'); // the candidate is still live
    expect(state()).toMatchObject({phase: 'restoring', watchdog: 'detached'});
    expect(state()['token']).not.toBe('');
    expect(agent(['status']).stdout).toContain('locked=yes');
    // Nothing may confirm or re-arm it meanwhile.
    expect(agent(['confirm', 'r1']).code).toBe(AGENT_EXIT.restoreFailed);
    expect(await waitForPhase(['expired'], 30_000)).toBe('expired');
    expect(liveFilter(4)).toEqual(before);
    expect(state()['token']).toBe('');
    expect(readFileSync(path.join(dir, 'log'), 'utf8')).toContain('expired r1: snapshot restored and verified');
  });

  it('a rollback whose restore fails answers 7 and keeps the batch pending; the next rollback that verifies ends it', () => {
    inNetns(['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '80', '-j', 'ACCEPT']); // a snapshot that takes a real restore
    const before = liveFilter(4);
    const failing = wrappers({'iptables-restore': 'case " $* " in *" --test "*) exec /usr/sbin/iptables-restore "$@" ;; esac\nexit 1'});
    expect(agent(['begin', 'r2', '60'], 'x@y pid=2\n').code).toBe(0);
    expect(agent(['stage', 'r2'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 'r2']).code).toBe(0);
    const rolled = agent(['rollback', 'r2'], '', {sbin: failing});
    expect(rolled.code).toBe(AGENT_EXIT.restoreFailed);
    expect(rolled.stdout).not.toContain('rolledback');
    expect(state()['phase']).toBe('restoring');
    expect(state()['token']).not.toBe('');
    const again = agent(['rollback', 'r2']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('rolledback');
    expect(liveFilter(4)).toEqual(before);
    expect(state()).toMatchObject({phase: 'rolledback', token: ''});
  });

  it('a load that changed nothing is verified back on its previous rules (exit 6) even when the restore command fails too: the comparison decides', () => {
    inNetns(['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '80', '-j', 'ACCEPT']);
    const before = liveFilter(4);
    const sbin = wrappers({'iptables-restore': 'case " $* " in *" --test "*) exec /usr/sbin/iptables-restore "$@" ;; esac\necho "wrapper: refused" >&2; exit 1'});
    expect(agent(['begin', 'r3', '60'], 'x@y pid=2\n', {sbin}).code).toBe(0);
    expect(agent(['stage', 'r3'], payload(CANDIDATE_V4, CANDIDATE_V6), {sbin}).code).toBe(0);
    const loaded = agent(['load', 'r3'], '', {sbin});
    expect(loaded.code).toBe(AGENT_EXIT.loadFailed);
    expect(loaded.stderr).toContain('restored and verified');
    expect(liveFilter(4)).toEqual(before);
    expect(state()).toMatchObject({phase: 'failed', token: ''});
  });

  it('iptables-save failing at begin: exit 9, no snapshot, no state, no lock', () => {
    const sbin = wrappers({'iptables-save': 'exit 1'});
    const begun = agent(['begin', 'f1', '60'], 'x@y pid=2\n', {sbin});
    expect(begun.code).toBe(AGENT_EXIT.writeFailed);
    expect(begun.stderr).toContain('iptables-save failed');
    expect(begun.stdout).toBe('');
    expect(existsSync(path.join(dir, 'state'))).toBe(false);
    expect(readdirSync(path.join(dir, 'backups'))).toEqual([]);
    expect(agent(['begin', 'f2', '60'], 'x@y pid=2\n').code).toBe(0); // nothing was locked
    expect(agent(['unlock', 'f2']).code).toBe(0);
  });

  describe('with the state directory on a full file system', () => {
    let tmpfs = '';
    beforeEach(() => {
      // A tmpfs of a few pages holding the agent, then filled up: every write the agent makes fails.
      tmpfs = mkdtempSync(path.join(tmpdir(), 'iw-h5-full-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'iw-test', tmpfs]);
      dir = tmpfs;
      writeFileSync(path.join(dir, 'agent.sh'), AGENT_SCRIPT);
    });
    afterEach(() => {
      spawnSync('umount', ['-l', tmpfs]);
      rmSync(tmpfs, {recursive: true, force: true});
      dir = mkdtempSync(path.join(tmpdir(), 'iw-h5-agent-'));
    });
    const fill = (): void => {
      spawnSync('dd', ['if=/dev/zero', `of=${path.join(dir, 'fill')}`, 'bs=4k']);
    };

    it('begin: exit 9, nothing locked', () => {
      fill();
      const begun = agent(['begin', 'n1', '60'], 'x@y pid=2\n');
      expect(begun.code).toBe(AGENT_EXIT.writeFailed);
      expect(existsSync(path.join(dir, 'state'))).toBe(false);
      expect(readdirSync(path.join(dir, 'backups')).filter((name) => name.startsWith('n1.'))).toEqual([]);
    });

    it('stage: exit 9, the batch still locked and not loadable', () => {
      expect(agent(['begin', 'n2', '60'], 'x@y pid=2\n').code).toBe(0);
      fill();
      expect(agent(['stage', 'n2'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(AGENT_EXIT.writeFailed);
      expect(state()['phase']).toBe('locked');
      expect(agent(['load', 'n2']).code).toBe(AGENT_EXIT.notPending);
      expect(inNetns(['iptables-save']).trim()).toBe('');
    });

    it('load: exit 9, nothing loaded', () => {
      expect(agent(['begin', 'n3', '60'], 'x@y pid=2\n').code).toBe(0);
      expect(agent(['stage', 'n3'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
      fill();
      const loaded = agent(['load', 'n3']);
      expect(loaded.code).toBe(AGENT_EXIT.writeFailed);
      expect(loaded.stdout).not.toContain('loaded');
      expect(state()['phase']).toBe('staged');
      expect(inNetns(['iptables-save']).trim()).toBe('');
    });

    it('confirm: exit 9, not confirmed, the watchdog still armed', () => {
      expect(agent(['begin', 'n4', '60'], 'x@y pid=2\n').code).toBe(0);
      expect(agent(['stage', 'n4'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
      expect(agent(['load', 'n4']).code).toBe(0);
      const token = state()['token'];
      fill();
      const confirmed = agent(['confirm', 'n4']);
      expect(confirmed.code).toBe(AGENT_EXIT.writeFailed);
      expect(confirmed.stdout).not.toContain('confirmed');
      expect(state()).toMatchObject({phase: 'loaded', token});
    });
  });

  it('confirm refuses after a reboot (another boot id): exit 8 reason=rebooted, nothing persisted, the batch still pending', () => {
    expect(agent(['begin', 'c1', '60'], 'x@y pid=2\n').code).toBe(0);
    expect(agent(['stage', 'c1'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 'c1']).code).toBe(0);
    const bootId = path.join(dir, 'boot_id');
    writeFileSync(bootId, '00000000-1111-2222-3333-444444444444\n');
    const etc = path.join(dir, 'etc-upper');
    const sbin = wrappers({'netfilter-persistent': 'exit 0'});
    const refused = agent(['confirm', 'c1'], '', {bootId, etc, sbin});
    expect(refused.code).toBe(AGENT_EXIT.confirmRefused);
    expect(refused.stdout).toContain('reason=rebooted');
    expect(refused.stdout).not.toContain('confirmed');
    expect(existsSync(path.join(etc, 'isolate-wizard'))).toBe(false);
    expect(state()['phase']).toBe('loaded');
    expect(state()['token']).not.toBe('');
    expect(agent(['confirm', 'c1']).code).toBe(0); // the same boot: confirmed
  });

  it('confirm refuses when our live rules changed since the load: exit 8 reason=changed', () => {
    expect(agent(['begin', 'c2', '60'], 'x@y pid=2\n').code).toBe(0);
    expect(agent(['stage', 'c2'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
    expect(agent(['load', 'c2']).code).toBe(0);
    // Others' rule above our jump is not ours: it does not count...
    inNetns(['iptables', '-I', 'INPUT', '1', '-s', '203.0.113.9', '-j', 'DROP']);
    // ...a rule changed in our chain does.
    inNetns(['iptables', '-I', 'IW-INPUT', '1', '-p', 'tcp', '--dport', '9999', '-j', 'ACCEPT']);
    const refused = agent(['confirm', 'c2']);
    expect(refused.code).toBe(AGENT_EXIT.confirmRefused);
    expect(refused.stdout).toContain('reason=changed');
    expect(refused.stderr).toContain('IPv4');
    expect(state()['phase']).toBe('loaded');
    expect(agent(['rollback', 'c2']).code).toBe(0);
  });

  describe("what others add during the countdown (a fail2ban ban, a Docker chain) survives", () => {
    const FAIL2BAN = '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:f2b-sshd - [0:0]\n-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd\n-A INPUT -p tcp --dport 80 -j ACCEPT\n-A f2b-sshd -s 198.51.100.7/32 -j REJECT --reject-with icmp-port-unreachable\n-A f2b-sshd -j RETURN\nCOMMIT\n';
    /** Loads batch B on a fail2ban host, then bans an address and adds a Docker chain with its jump. */
    const loadThenNeighbours = (batch: string): string => {
      inNetns(['iptables-restore'], FAIL2BAN);
      const before = liveFilter(4);
      expect(agent(['begin', batch, '60'], 'x@y pid=2\n').code).toBe(0);
      expect(agent(['stage', batch], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
      expect(agent(['load', batch]).code).toBe(0);
      expect(liveFilter(4)).toContain('-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd');
      inNetns(['iptables', '-I', 'f2b-sshd', '1', '-s', '203.0.113.9', '-j', 'REJECT']);
      inNetns(['iptables', '-N', 'DOCKER-USER']);
      inNetns(['iptables', '-A', 'DOCKER-USER', '-j', 'RETURN']);
      inNetns(['iptables', '-I', 'FORWARD', '1', '-j', 'DOCKER-USER']);
      return before;
    };
    const expectNeighbours = (): void => {
      const live = liveFilter(4);
      expect(live).toContain('-A f2b-sshd -s 203.0.113.9/32 -j REJECT');
      expect(live).toContain('-A f2b-sshd -s 198.51.100.7/32 -j REJECT');
      expect(live).toContain('-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd');
      expect(live).toContain(':DOCKER-USER -');
      expect(live).toContain('-A FORWARD -j DOCKER-USER');
    };

    it('the server\'s own expiry', async () => {
      const before = loadThenNeighbours('o1');
      expect(agent(['arm', 'o1', '1']).code).toBe(0);
      expect(await waitForPhase(['expired'])).toBe('expired');
      expectNeighbours();
      expect(liveFilter(4)).toContain('-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT');
      expect(liveFilter(4)).not.toContain('--dport 22 -j RETURN');
      expect(liveFilter(4).split('\n').filter((line) => line.startsWith(':INPUT'))).toEqual(before.split('\n').filter((line) => line.startsWith(':INPUT')));
    });

    it('a manual rollback', () => {
      loadThenNeighbours('o2');
      expect(agent(['rollback', 'o2']).code).toBe(0);
      expectNeighbours();
      expect(liveFilter(4)).toContain('-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT');
    });

    it('confirm (a ban does not make it fail) persists only ours, in our own files and unit; the operator\'s rules.v4 is never written; the boot op loads ours again over whatever the loader put back', () => {
      loadThenNeighbours('o3');
      const etc = path.join(dir, 'etc-upper');
      execFileSync('mkdir', ['-p', path.join(etc, 'iptables')]);
      const original = '# the operator\'s own rules\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT\nCOMMIT\n';
      writeFileSync(path.join(etc, 'iptables', 'rules.v4'), original);
      const server = {etc, sbin: wrappers({'netfilter-persistent': 'exit 0'})};
      const confirmed = agent(['confirm', 'o3'], '', server);
      expect(confirmed.code).toBe(0);
      expect(confirmed.stdout).toContain('persisted=unit\npersisted_nft=none\n');
      expectNeighbours();
      expect(readFileSync(path.join(etc, 'iptables', 'rules.v4'), 'utf8')).toBe(original);
      expect(existsSync(path.join(etc, 'iptables', 'rules.v4.iw-orig'))).toBe(false);
      const ours = readFileSync(path.join(etc, 'isolate-wizard', 'isolate-wizard.v4'), 'utf8');
      expect(ours).toContain('-A IW-INPUT -p tcp -m tcp --dport 22 -j RETURN');
      expect(ours).toContain('-A INPUT -j IW-INPUT');
      expect(ours).not.toMatch(/f2b-|DOCKER|:INPUT (ACCEPT|DROP)/);
      expect(readFileSync(path.join(etc, 'isolate-wizard', 'isolate-wizard.v6'), 'utf8')).toContain('--dport 2222');
      const unit = readFileSync(path.join(etc, 'systemd', 'system', 'isolate-wizard-iptables.service'), 'utf8');
      expect(unit).toMatch(/^After=netfilter-persistent\.service iptables\.service ip6tables\.service$/m);
      expect(unit).toMatch(/^PartOf=netfilter-persistent\.service/m);
      expect(unit).toContain(`ExecStart=/bin/sh ${path.join(dir, 'agent.sh')} boot`);
      // RHEL's iptables.service reload replaces the filter table too: ours follows it.
      expect(unit).toMatch(/^ReloadPropagatedFrom=iptables\.service ip6tables\.service$/m);
      expect(unit).toContain(`ExecReload=/bin/sh ${path.join(dir, 'agent.sh')} boot`);
      // The distribution's loader restarted (the whole filter table replaced by rules.v4): our
      // unit's boot op puts ours back in front, the operator's rule stays behind our jump.
      inNetns(['iptables-restore'], original);
      expect(liveFilter(4)).not.toContain('IW-');
      const booted = agent(['boot'], '', server);
      expect(booted.code, booted.stderr).toBe(0);
      const input = liveFilter(4).split('\n').filter((line) => line.startsWith('-A INPUT '));
      expect(input).toEqual(['-A INPUT -j IW-INPUT', '-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT']);
      // Loading again changes nothing (no second jump).
      const live = liveFilter(4);
      expect(agent(['boot'], '', server).code).toBe(0);
      expect(liveFilter(4)).toBe(live);
      // Again (already confirmed): the same files.
      expect(agent(['confirm', 'o3'], '', server).stdout).toContain('already-confirmed');
      expect(readFileSync(path.join(etc, 'iptables', 'rules.v4'), 'utf8')).toBe(original);
      // A batch that leaves nothing of ours removes our files and unit.
      expect(agent(['begin', 'o4', '60'], 'x@y pid=2\n', server).code).toBe(0);
      expect(agent(['stage', 'o4'], payload('*filter\nCOMMIT\n', '*filter\nCOMMIT\n'), server).code).toBe(0);
      expect(agent(['load', 'o4'], '', server).code).toBe(0);
      expect(liveFilter(4)).not.toContain('IW-');
      expect(liveFilter(4)).toContain('--dport 8080');
      expect(agent(['confirm', 'o4'], '', server).stdout).toContain('persisted=none');
      expect(existsSync(path.join(etc, 'isolate-wizard'))).toBe(false);
      expect(existsSync(path.join(etc, 'systemd', 'system', 'isolate-wizard-iptables.service'))).toBe(false);
    });

    it('a rule others insert at the top of INPUT during the countdown survives the rollback in place, untouched', () => {
      inNetns(['iptables-restore'], FAIL2BAN);
      expect(agent(['begin', 'o5', '60'], 'x@y pid=2\n').code).toBe(0);
      expect(agent(['stage', 'o5'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
      expect(agent(['load', 'o5']).code).toBe(0);
      inNetns(['iptables', '-I', 'INPUT', '1', '-s', '203.0.113.7', '-p', 'tcp', '--dport', '443', '-j', 'ACCEPT']);
      inNetns(['ip6tables', '-I', 'INPUT', '1', '-s', '2001:db8::7', '-j', 'DROP']);
      const input = (family: 4 | 6): string[] => liveFilter(family).split('\n').filter((line) => line.startsWith('-A INPUT '));
      expect(input(4)[0]).toBe('-A INPUT -s 203.0.113.7/32 -p tcp -m tcp --dport 443 -j ACCEPT');
      expect(input(4)[1]).toBe('-A INPUT -j IW-INPUT');
      expect(agent(['rollback', 'o5']).code).toBe(0);
      expect(input(4)).toEqual([
        '-A INPUT -s 203.0.113.7/32 -p tcp -m tcp --dport 443 -j ACCEPT',
        '-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd',
        '-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT',
      ]);
      expect(input(6)).toEqual(['-A INPUT -s 2001:db8::7/128 -j DROP']);
      expect(liveFilter(4)).not.toContain('IW-');
    });
  });

  it('install-persistence refuses where ufw is installed, installing nothing', () => {
    const calls = path.join(dir, 'apt-calls');
    const sbin = wrappers({ufw: 'exit 0', 'apt-get': `echo "$*" >> ${calls}`});
    const refused = agent(['install-persistence'], '', {sbin});
    expect(refused.code).not.toBe(0);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain('ufw is installed: the iptables-persistent package removes it');
    expect(existsSync(calls)).toBe(false);
  });

  describe('the nftables part: our table inet isolate_wizard, and no other', () => {
    /** fail2ban's nftables action: its own table, a set of banned addresses, a reject rule. */
    const F2B_TABLE =
      'table inet f2b-table {\n\tset addr-set-sshd {\n\t\ttype ipv4_addr\n\t\telements = { 198.51.100.7 }\n\t}\n\n' +
      '\tchain f2b-chain {\n\t\ttype filter hook input priority filter - 1; policy accept;\n' +
      '\t\tmeta l4proto tcp tcp dport 22 ip saddr @addr-set-sshd reject\n\t}\n}\n';
    const FIREWALLD_TABLE =
      'table inet firewalld {\n\tchain filter_INPUT {\n\t\ttype filter hook input priority filter + 10; policy accept;\n' +
      '\t\tct state established,related accept\n\t\ttcp dport 22 accept\n\t\treject with icmpx admin-prohibited\n\t}\n}\n';
    // Every confirm here that may persist runs with /etc as an overlay: the machine's own /etc
    // must never receive our file or unit.
    afterEach(() => {
      expect(existsSync('/etc/isolate-wizard')).toBe(false);
      expect(existsSync('/etc/systemd/system/isolate-wizard.service')).toBe(false);
    });
    /** The start of an nft wrapper: every call but a real load (nft -f without -c) goes to nft as it is. */
    const PASS_BUT_LOADS = 'case " $* " in *" -c "*) exec /usr/sbin/nft "$@" ;; *" -f "*) ;; *) exec /usr/sbin/nft "$@" ;; esac';

    const table = (name: string): string => inNetns(['nft', '-s', 'list', 'table', 'inet', name]);
    const tables = (): string[] => inNetns(['nft', 'list', 'tables']).trim().split('\n').filter(Boolean).sort();
    /** What the agent printed after its #iw:nft line. */
    const nftSection = (stdout: string): string => stdout.split(`${SECTION_NFT}\n`)[1] ?? 'no #iw:nft section';
    const loadOurs = (batch: string, nft = OUR_TABLE, server: Server = {}): void => {
      expect(agent(['begin', batch, '60'], 'x@y pid=2\n', server).code).toBe(0);
      expect(agent(['stage', batch], withNft(CANDIDATE_V4, CANDIDATE_V6, nft), server).code).toBe(0);
      expect(agent(['load', batch], '', server).code).toBe(0);
    };

    it('begin snapshots our table (an empty section when it is absent) and show lists it', () => {
      const absent = agent(['begin', 'n1', '60'], 'x@y pid=2\n');
      expect(absent.code).toBe(0);
      expect(absent.stdout.endsWith(`${SECTION_V6}\n${SECTION_NFT}\n`)).toBe(true);
      expect(readFileSync(path.join(dir, 'backups', 'n1.nft'), 'utf8')).toBe('');
      expect(agent(['unlock', 'n1']).code).toBe(0);

      inNetns(['nft', '-f', '-'], `${OUR_TABLE}\n`);
      const present = agent(['begin', 'n2', '60'], 'x@y pid=2\n');
      expect(present.code).toBe(0);
      expect(nftSection(present.stdout)).toBe(ourTable());
      expect(ourTable()).toContain('ip saddr @admins_v4 tcp dport 22 accept');
      expect(readFileSync(path.join(dir, 'backups', 'n2.nft'), 'utf8')).toBe(ourTable());
      expect(nftSection(agent(['show']).stdout)).toBe(ourTable());
      expect(state()['nftpart']).toBe('yes');
      expect(agent(['unlock', 'n2']).code).toBe(0);
    });

    it('begin fails when our table cannot be listed: exit 9, no snapshot, nothing locked', () => {
      inNetns(['nft', '-f', '-'], `${OUR_TABLE}\n`);
      const sbin = wrappers({nft: 'case " $* " in *" list "*) echo "wrapper: cannot list" >&2; exit 1 ;; esac\nexec /usr/sbin/nft "$@"'});
      const begun = agent(['begin', 'n0', '60'], 'x@y pid=2\n', {sbin});
      expect(begun.code).toBe(AGENT_EXIT.writeFailed);
      expect(begun.stderr).toContain('cannot list the nftables table inet isolate_wizard: no snapshot, nothing changed');
      expect(begun.stdout).toBe('');
      expect(existsSync(path.join(dir, 'state'))).toBe(false);
      expect(readdirSync(path.join(dir, 'backups'))).toEqual([]);
      expect(agent(['begin', 'n0', '60'], 'x@y pid=2\n').code).toBe(0); // nothing was locked
      expect(agent(['unlock', 'n0']).code).toBe(0);
    });

    it('stage rejects a broken nft part with nft -c (exit 5, nothing changed) and any table but ours; load loads ours after the iptables parts', () => {
      inNetns(['nft', '-f', '-'], F2B_TABLE);
      inNetns(['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '80', '-j', 'ACCEPT']);
      const before = {v4: liveFilter(4), f2b: table('f2b-table')};
      expect(agent(['begin', 'n3', '60'], 'x@y pid=2\n').code).toBe(0);
      const broken = agent(['stage', 'n3'], withNft(CANDIDATE_V4, CANDIDATE_V6, OUR_TABLE.replace('tcp dport 22 accept', 'tcp dport 22 jump nowhere')));
      expect(broken.code).toBe(AGENT_EXIT.candidateRejected);
      expect(broken.stderr).toContain('nftables candidate rejected by nft -c');
      expect(agent(['load', 'n3']).code).toBe(AGENT_EXIT.notPending);
      // Not ours to write: another table, a flush of everything, a delete, an include.
      for (const foreign of [
        `${OUR_TABLE}\n${FIREWALLD_TABLE}`,
        `flush ruleset\n${OUR_TABLE}`,
        `${OUR_TABLE}; delete table inet f2b-table`,
        'include "/etc/nftables.conf"',
        OUR_TABLE.replace('table inet isolate_wizard', 'table inet f2b-table'),
      ]) {
        const refused = agent(['stage', 'n3'], withNft(CANDIDATE_V4, CANDIDATE_V6, foreign));
        expect(refused.code, foreign).toBe(AGENT_EXIT.candidateRejected);
        expect(refused.stderr).toContain(`it may define table inet isolate_wizard and nothing else`);
      }
      expect(agent(['load', 'n3']).code).toBe(AGENT_EXIT.notPending);
      expect(ourTable()).toBe('');
      expect(liveFilter(4)).toBe(before.v4);
      expect(table('f2b-table')).toBe(before.f2b);

      // A comment or a quoted brace is not a table.
      const commented = OUR_TABLE.replace('iif "lo" accept', 'iif "lo" accept comment "a } brace" # and { one here');
      expect(agent(['stage', 'n3'], withNft(CANDIDATE_V4, CANDIDATE_V6, commented)).code).toBe(0);
      expect(agent(['stage', 'n3'], withNft(CANDIDATE_V4, CANDIDATE_V6, OUR_TABLE)).code).toBe(0);
      expect(agent(['load', 'n3']).code).toBe(0);
      expect(liveFilter(4)).toContain('-A IW-INPUT -p tcp -m tcp --dport 22 -j RETURN');
      expect(liveFilter(6)).toContain('--dport 2222');
      expect(ourTable()).toContain('ip saddr @admins_v4 tcp dport 22 accept');
      expect(readFileSync(path.join(dir, 'backups', 'n3.loaded.nft'), 'utf8')).toBe(ourTable());
      expect(nftSection(agent(['show']).stdout)).toBe(ourTable());
      expect(table('f2b-table')).toBe(before.f2b);
      expect(agent(['rollback', 'n3']).code).toBe(0);
      expect(ourTable()).toBe('');
      expect(liveFilter(4)).toBe(before.v4);
    });

    it('a failing nft load restores the iptables parts and our table, and says so only once verified (exit 6)', () => {
      inNetns(['nft', '-f', '-'], `${OTHER_TABLE}\n`);
      inNetns(['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '80', '-j', 'ACCEPT']);
      const before = {v4: liveFilter(4), v6: liveFilter(6), nft: ourTable()};
      // nft -c passes, the real load fails (nothing changed: the comparison proves the table is back).
      const refusing = wrappers({nft: `${PASS_BUT_LOADS}\necho "wrapper: nft load refused" >&2; exit 1`});
      expect(agent(['begin', 'n4', '60'], 'x@y pid=2\n', {sbin: refusing}).code).toBe(0);
      expect(agent(['stage', 'n4'], withNft(CANDIDATE_V4, CANDIDATE_V6, OUR_TABLE), {sbin: refusing}).code).toBe(0);
      const refused = agent(['load', 'n4'], '', {sbin: refusing});
      expect(refused.code).toBe(AGENT_EXIT.loadFailed);
      expect(refused.stderr).toContain('nftables load failed (wrapper: nft load refused)');
      expect(refused.stderr).toContain('the previous rules were restored and verified');
      expect({v4: liveFilter(4), v6: liveFilter(6), nft: ourTable()}).toEqual(before);
      expect(state()).toMatchObject({phase: 'failed', token: ''});

      // The load goes through and then fails: our table must really be put back.
      const calls = path.join(dir, 'nft-calls');
      const lying = wrappers({
        nft: `${PASS_BUT_LOADS}\necho x >> ${calls}\nif [ "$(wc -l < ${calls})" = 1 ]; then /usr/sbin/nft "$@"; echo "wrapper: loaded, then failed" >&2; exit 1; fi\nexec /usr/sbin/nft "$@"`,
      });
      expect(agent(['begin', 'n5', '60'], 'x@y pid=2\n', {sbin: lying}).code).toBe(0);
      expect(agent(['stage', 'n5'], withNft(CANDIDATE_V4, CANDIDATE_V6, OUR_TABLE), {sbin: lying}).code).toBe(0);
      const failed = agent(['load', 'n5'], '', {sbin: lying});
      expect(failed.code).toBe(AGENT_EXIT.loadFailed);
      expect(failed.stderr).toContain('the previous rules were restored and verified');
      expect(readFileSync(calls, 'utf8')).toBe('x\nx\n'); // the load, then the restore
      expect({v4: liveFilter(4), v6: liveFilter(6), nft: ourTable()}).toEqual(before);
    });

    it('expiry and rollback put back the exact previous table, or delete it when there was none; a candidate without an nft section removes ours', async () => {
      // None before: the rollback deletes the table the load made.
      loadOurs('n6');
      expect(ourTable()).not.toBe('');
      expect(agent(['rollback', 'n6']).code).toBe(0);
      expect(ourTable()).toBe('');
      expect(tables()).toEqual([]);

      // Another table of ours before: the expiry puts it back exactly.
      inNetns(['nft', '-f', '-'], `${OTHER_TABLE}\n`);
      const before = ourTable();
      loadOurs('n7');
      expect(ourTable()).toContain('tcp dport 22 accept');
      expect(ourTable()).not.toBe(before);
      expect(agent(['arm', 'n7', '1']).code).toBe(0);
      expect(await waitForPhase(['expired'])).toBe('expired');
      expect(ourTable()).toBe(before);

      // A payload of the iptables parts alone (as from the iptables backend): our table must go,
      // and comes back with the rollback.
      expect(agent(['begin', 'n8', '60'], 'x@y pid=2\n').code).toBe(0);
      expect(agent(['stage', 'n8'], payload(CANDIDATE_V4, CANDIDATE_V6)).code).toBe(0);
      expect(agent(['load', 'n8']).code).toBe(0);
      expect(ourTable()).toBe('');
      expect(agent(['rollback', 'n8']).code).toBe(0);
      expect(ourTable()).toBe(before);
    });

    describe('others\' tables (fail2ban with a ban added mid-countdown, firewalld added mid-countdown) survive', () => {
      let firewalld = '';
      const neighboursThenLoad = (batch: string): void => {
        inNetns(['nft', '-f', '-'], F2B_TABLE);
        loadOurs(batch);
        inNetns(['nft', 'add', 'element', 'inet', 'f2b-table', 'addr-set-sshd', '{ 203.0.113.9 }']);
        inNetns(['nft', '-f', '-'], FIREWALLD_TABLE);
        firewalld = table('firewalld');
        expect(firewalld).toContain('reject with icmpx admin-prohibited');
      };
      const expectNeighbours = (): void => {
        expect(table('f2b-table')).toContain('elements = { 198.51.100.7, 203.0.113.9 }');
        expect(table('f2b-table')).toContain('tcp dport 22 ip saddr @addr-set-sshd reject');
        expect(table('firewalld')).toBe(firewalld);
      };

      it('the server\'s own expiry', async () => {
        neighboursThenLoad('n9');
        expect(agent(['arm', 'n9', '1']).code).toBe(0);
        expect(await waitForPhase(['expired'])).toBe('expired');
        expect(ourTable()).toBe('');
        expectNeighbours();
      });

      it('a manual rollback', () => {
        neighboursThenLoad('n10');
        expect(agent(['rollback', 'n10']).code).toBe(0);
        expect(ourTable()).toBe('');
        expectNeighbours();
        expect(tables()).toEqual(['table inet f2b-table', 'table inet firewalld']);
      });

      it('confirm', () => {
        neighboursThenLoad('n11');
        const loaded = ourTable();
        const confirmed = agent(['confirm', 'n11'], '', {etc: path.join(dir, 'etc-upper')});
        expect(confirmed.code).toBe(0);
        expect(confirmed.stdout).toContain('confirmed');
        expect(ourTable()).toBe(loaded);
        expectNeighbours();
      });
    });

    it('confirm refuses when our table changed after the load (exit 8 reason=changed), nothing persisted', () => {
      loadOurs('n12');
      inNetns(['nft', 'add', 'rule', 'inet', 'isolate_wizard', 'input', 'accept']);
      const etc = path.join(dir, 'etc-upper');
      const refused = agent(['confirm', 'n12'], '', {etc});
      expect(refused.code).toBe(AGENT_EXIT.confirmRefused);
      expect(refused.stdout).toContain('reason=changed');
      expect(refused.stderr).toContain('nftables: the live table differs from the one loaded');
      expect(refused.stdout).not.toContain('persisted');
      expect(existsSync(path.join(etc, 'isolate-wizard'))).toBe(false);
      expect(state()['phase']).toBe('loaded');
      expect(state()['token']).not.toBe('');
      expect(agent(['rollback', 'n12']).code).toBe(0);
      expect(ourTable()).toBe('');
    });

    it('a restore whose nft part fails answers 7 and keeps the watchdog, whose retry restores the table', async () => {
      inNetns(['nft', '-f', '-'], `${OTHER_TABLE}\n`);
      const before = {v4: liveFilter(4), nft: ourTable()};
      loadOurs('n13');
      const calls = path.join(dir, 'nft-calls');
      const failingOnce = wrappers({
        nft: `${PASS_BUT_LOADS}\necho x >> ${calls}\n[ "$(wc -l < ${calls})" = 1 ] && { echo "wrapper: fails once" >&2; exit 1; }\nexec /usr/sbin/nft "$@"`,
      });
      const rolled = agent(['rollback', 'n13'], '', {sbin: failingOnce});
      expect(rolled.code).toBe(AGENT_EXIT.restoreFailed);
      expect(rolled.stderr).toContain('could not restore: act now');
      expect(rolled.stderr).toContain('nftables: wrapper: fails once, the live table differs from the snapshot');
      expect(rolled.stdout).not.toContain('rolledback');
      expect(ourTable()).toContain('tcp dport 22 accept'); // the candidate is still live
      expect(state()).toMatchObject({phase: 'restoring', watchdog: 'detached'});
      expect(state()['token']).not.toBe('');
      expect(agent(['confirm', 'n13']).code).toBe(AGENT_EXIT.restoreFailed);
      expect(await waitForPhase(['expired'], 30_000)).toBe('expired');
      expect({v4: liveFilter(4), nft: ourTable()}).toEqual(before);
      expect(readFileSync(calls, 'utf8')).toBe('x\nx\n');
    });

    it('confirm persists our table in our own file and unit, and nothing else; the file loads over our table and after a flush; an empty part removes them', () => {
      inNetns(['nft', '-f', '-'], F2B_TABLE);
      const etc = path.join(dir, 'etc-upper');
      // As the nftables backend sends it: nothing of ours in the iptables parts.
      expect(agent(['begin', 'n14', '60'], 'x@y pid=2\n').code).toBe(0);
      expect(agent(['stage', 'n14'], withNft('*filter\nCOMMIT\n', '*filter\nCOMMIT\n', OUR_TABLE)).code).toBe(0);
      expect(agent(['load', 'n14']).code).toBe(0);
      const loaded = ourTable();
      const confirmed = agent(['confirm', 'n14'], '', {etc});
      expect(confirmed.code).toBe(0);
      expect(confirmed.stdout).toContain('persisted=none\npersisted_nft=unit\n');
      const written = (): string[] =>
        execFileSync('find', [etc, '!', '-type', 'd'], {encoding: 'utf8'}).trim().split('\n').filter(Boolean).map((file) => path.relative(etc, file)).sort();
      expect(written()).toEqual([
        'isolate-wizard/isolate-wizard.nft',
        'systemd/system/isolate-wizard.service',
        'systemd/system/multi-user.target.wants/isolate-wizard.service',
      ]);
      const file = path.join(etc, 'isolate-wizard', 'isolate-wizard.nft');
      const text = readFileSync(file, 'utf8');
      expect(text).toContain('table inet isolate_wizard\ndelete table inet isolate_wizard\ntable inet isolate_wizard {');
      expect(text).not.toMatch(/flush|f2b/);
      const unit = readFileSync(path.join(etc, 'systemd', 'system', 'isolate-wizard.service'), 'utf8');
      for (const line of ['After=nftables.service', 'PartOf=nftables.service', 'ReloadPropagatedFrom=nftables.service', 'Type=oneshot', 'RemainAfterExit=yes', 'WantedBy=multi-user.target', 'ExecStart=/usr/sbin/nft -f /etc/isolate-wizard/isolate-wizard.nft', 'ExecReload=/usr/sbin/nft -f /etc/isolate-wizard/isolate-wizard.nft']) {
        expect(unit.split('\n')).toContain(line);
      }
      expect(execFileSync('readlink', [path.join(etc, 'systemd', 'system', 'multi-user.target.wants', 'isolate-wizard.service')], {encoding: 'utf8'}).trim()).toBe(
        '/etc/systemd/system/isolate-wizard.service',
      );

      // Loaded at boot over a table of ours (idempotent), and after Debian's nftables.service
      // restart has flushed the whole ruleset (inside this test's namespace only).
      inNetns(['nft', '-f', file]);
      expect(ourTable()).toBe(loaded);
      expect(table('f2b-table')).toContain('addr-set-sshd');
      inNetns(['nft', 'flush', 'ruleset']);
      expect(ourTable()).toBe('');
      inNetns(['nft', '-f', file]);
      expect(ourTable()).toBe(loaded);
      expect(tables()).toEqual(['table inet isolate_wizard']);

      // The next batch has no table of ours: the file and the unit go.
      expect(agent(['begin', 'n15', '60'], 'x@y pid=2\n').code).toBe(0);
      expect(agent(['stage', 'n15'], withNft('*filter\nCOMMIT\n', '*filter\nCOMMIT\n', '')).code).toBe(0);
      expect(agent(['load', 'n15']).code).toBe(0);
      expect(ourTable()).toBe('');
      const removed = agent(['confirm', 'n15'], '', {etc});
      expect(removed.code).toBe(0);
      expect(removed.stdout).toContain('persisted_nft=none\n');
      expect(written()).toEqual([]);
    });

    it('without nft on the server: an empty nft part works as before, a table is rejected at stage', () => {
      const server = {withoutNft: true};
      inNetns(['iptables', '-A', 'INPUT', '-p', 'tcp', '--dport', '80', '-j', 'ACCEPT']);
      const before = liveFilter(4);
      const begun = agent(['begin', 'n16', '60'], 'x@y pid=2\n', server);
      expect(begun.code).toBe(0);
      expect(begun.stdout.endsWith(`${SECTION_NFT}\n`)).toBe(true);
      const refused = agent(['stage', 'n16'], withNft(CANDIDATE_V4, CANDIDATE_V6, OUR_TABLE), server);
      expect(refused.code).toBe(AGENT_EXIT.candidateRejected);
      expect(refused.stderr).toContain('nft is not installed');
      expect(agent(['load', 'n16'], '', server).code).toBe(AGENT_EXIT.notPending);
      expect(liveFilter(4)).toBe(before);
      expect(ourTable()).toBe('');
      expect(agent(['stage', 'n16'], withNft(CANDIDATE_V4, CANDIDATE_V6, ''), server).code).toBe(0);
      expect(agent(['load', 'n16'], '', server).code).toBe(0);
      expect(liveFilter(4)).toContain('--dport 22 -j RETURN');
      expect(nftSection(agent(['show'], '', server).stdout)).toBe('');
      const confirmed = agent(['confirm', 'n16'], '', {...server, etc: path.join(dir, 'etc-upper')});
      expect(confirmed.code).toBe(0);
      expect(confirmed.stdout).toContain('persisted=unit\npersisted_nft=none');
      expect(existsSync(path.join(dir, 'etc-upper', 'isolate-wizard', 'isolate-wizard.nft'))).toBe(false);
    });

    it('a confirmed batch of agent version 3 (no nftpart in its state, no nft files) is confirmed again without an nft part', () => {
      inNetns(['nft', '-f', '-'], `${OTHER_TABLE}\n`);
      loadOurs('n17', '');
      expect(agent(['confirm', 'n17'], '', {etc: path.join(dir, 'etc-upper')}).code).toBe(0);
      // As agent version 3 left it: its state has no nftpart key, its batch no nft files.
      const file = path.join(dir, 'state');
      writeFileSync(file, readFileSync(file, 'utf8').replace(/^version=.*$/m, 'version=3').replace(/^nftpart=.*\n/m, ''));
      for (const suffix of ['nft', 'cand.nft', 'loaded.nft']) rmSync(path.join(dir, 'backups', `n17.${suffix}`));
      inNetns(['nft', '-f', '-'], `${OTHER_TABLE}\n`); // whatever nft holds, that batch does not own it
      const again = agent(['confirm', 'n17'], '', {etc: path.join(dir, 'etc-upper')});
      expect(again.code).toBe(0);
      expect(again.stdout).toContain('already-confirmed');
      expect(again.stdout).toContain('persisted_nft=none');
    });
  });
});
