// Fleet all-or-nothing against fake servers that answer like the agent does. The agent itself is
// tested for real in agent-script.test.ts and the whole path in test/lab/apply.test.ts; this file
// pins the orchestration: order, who is rolled back or unlocked, exit codes, and that every
// command string sent is one of the fixed templates.
import {describe, expect, it} from 'vitest';
import {EXIT, RefusedError} from '../../source/core/errors.js';
import type {Ruleset} from '../../source/core/model.js';
import {AGENT_SCRIPT, SECTION_V4, SECTION_V6} from '../../source/remote/agent-script.js';
import {applyFleet, confirmFleet, FleetApplyError, loadWaves, outcomeExitCode, rollbackFleet, type FleetHostPlan} from '../../source/remote/fleet-apply.js';
import {LocalState} from '../../source/remote/local-state.js';
import {snapshotPlans} from '../../source/remote/rollback-to.js';
import {mkdtempSync, readFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import type {ConnectOptions, Connector, ExecOptions, ExecResult, HostTarget, RemoteHost} from '../../source/remote/types.js';

const CANDIDATE: Ruleset = {
  family: 4,
  tables: [
    {
      name: 'filter',
      chains: [
        {name: 'INPUT', policy: 'DROP'},
        {name: 'FORWARD', policy: 'DROP'},
        {name: 'OUTPUT', policy: 'ACCEPT'},
      ],
      rules: [{chain: 'INPUT', spec: ['-p', 'tcp', '-m', 'tcp', '--dport', '22', '-j', 'ACCEPT']}],
    },
  ],
};
const CANDIDATE6: Ruleset = {...CANDIDATE, family: 6};

const INSTALL_BEGIN_STAGE =
  "umask 077 && { [ -d /var/lib/isolate-wizard/backups ] || mkdir -p /var/lib/isolate-wizard/backups; } && " +
  `{ printf '%s' '${AGENT_SCRIPT.replace(/'/g, "'\\''")}' > /var/lib/isolate-wizard/agent.sh.$$ || ` +
  "{ rm -f /var/lib/isolate-wizard/agent.sh.$$; echo 'agent: cannot write the agent (disk full?): nothing changed' >&2; exit 9; }; } && " +
  'IFS= read -r IW_OWNER && export IW_OWNER && exec sh /var/lib/isolate-wizard/agent.sh.$$ begin';

const ALLOWED_COMMANDS: readonly {test(command: string): boolean}[] = [
  /^sh \/var\/lib\/isolate-wizard\/agent\.sh arm [a-z0-9-]+ \d+$/,
  /^sh \/var\/lib\/isolate-wizard\/agent\.sh (stage|load|confirm|rollback|unlock|verify) [a-z0-9-]+$/,
  /^sh \/var\/lib\/isolate-wizard\/agent\.sh show$/,
  // install + begin + stage: the agent's own text (a constant) inside, exactly; the owner line and
  // the candidate on stdin (compared as text: the script is too long for one regular expression)
  {test: (command) => command.startsWith(INSTALL_BEGIN_STAGE) && /^ [a-z0-9-]+ \d+ stage$/.test(command.slice(INSTALL_BEGIN_STAGE.length))},
];


interface FakeServer {
  phase: string;
  loaded: string;
  log: string[];
  failOn?: 'stage' | 'load' | 'begin' | 'load-and-restore' | 'rollback-restore' | 'confirm-rebooted';
  /** What `show` prints instead of the loaded rules (a server that changed them). */
  tamper?: string;
  /** The batch the server's state names, and who began it (status). */
  batch?: string;
  owner?: string;
  /** What the backend check prints (default: iptables-nft alone). */
  backends?: string;
  /** backups/<batch>.v4/.v6 on the server (rollback --to). */
  backups?: Record<string, {v4: string; v6: string}>;
}

class FakeFleet implements Connector {
  readonly servers = new Map<string, FakeServer>();
  readonly events: string[] = [];
  readonly commands: string[] = [];
  connects = 0;
  freshConnects = 0;
  readonly freshGroups: (string | undefined)[] = [];

  constructor(names: string[]) {
    for (const name of names) this.servers.set(name, {phase: 'none', loaded: '', log: []});
  }

  async connect(target: HostTarget, options?: ConnectOptions): Promise<RemoteHost> {
    this.connects += 1;
    if (options?.fresh) {
      this.freshConnects += 1;
      this.freshGroups.push(options.freshGroup);
    }
    const server = this.servers.get(target.name);
    if (!server) throw new Error(`no server ${target.name}`);
    const fleet = this;
    return {
      name: target.name,
      route: `fake ${target.name}`,
      async exec(command: string, execOptions?: ExecOptions): Promise<ExecResult> {
        fleet.commands.push(command);
        // The op word of the agent call that ends the command ("... agent.sh begin B S [stage]");
        // the install-only command has none (and install + begin carries the agent's own text).
        const call = /agent\.sh(?:\.\$\$)? ([a-z-]+)((?: [a-z0-9-]+)*)$/.exec(command);
        const op = call?.[1];
        const staging = op === 'begin' && (call?.[2] ?? '').endsWith(' stage');
        const stdin = String(execOptions?.stdin ?? '');
        const ok = (stdout = ''): ExecResult => ({code: 0, stdout, stderr: ''});
        if (op === undefined && command.startsWith('umask')) return ok();
        if (command === 'sh -s' && stdin.startsWith('# isolate-wizard backend check')) {
          fleet.events.push(`${target.name}:backends`);
          return ok(server.backends ?? '@@iw-begin iptables-version@@\niptables v1.8.9 (nf_tables)\n\n@@iw-end iptables-version rc=0@@\n');
        }
        if (command.includes('agent.sh status')) {
          fleet.events.push(`${target.name}:status`);
          const pending = ['locked', 'staged', 'loaded'].includes(server.phase);
          return ok(`managed=yes\nbatch=${server.batch ?? ''}\nphase=${server.phase}\nowner=${server.owner ?? ''}\nlocked=${pending ? 'yes' : 'no'}\nbackups=1\npersistence=none\n`);
        }
        if (command.startsWith('b=/var/lib/isolate-wizard/backups/')) {
          const batch = /backups\/([a-z0-9-]+);/.exec(command)?.[1] ?? '';
          fleet.events.push(`${target.name}:read-backup ${batch}`);
          const backup = server.backups?.[batch];
          return ok(backup ? `${SECTION_V4}\n${backup.v4}\n${SECTION_V6}\n${backup.v6}` : 'missing\n');
        }
        fleet.events.push(`${target.name}:${op}`);
        switch (op) {
          case 'begin':
            if (server.failOn === 'begin') return {code: 3, stdout: 'held_by=bob@desk pid=9\nsince=1700000000\ndeadline=1700000100\nnow=1700000050\n', stderr: ''};
            server.phase = 'locked';
            if (staging) {
              // stdin: the owner line, then the candidate
              fleet.events.push(`${target.name}:stage`);
              if (server.failOn === 'stage') return {code: 5, stdout: `${SECTION_V4}\n${SECTION_V6}\n`, stderr: 'IPv6 candidate rejected by ip6tables-restore --test: no conntrack'};
              server.phase = 'staged';
              server.loaded = stdin.slice(stdin.indexOf('\n') + 1);
            }
            return ok(`${SECTION_V4}\n${SECTION_V6}\n`);
          case 'stage':
            if (server.failOn === 'stage') return {code: 5, stdout: '', stderr: 'IPv6 candidate rejected by ip6tables-restore --test: no conntrack'};
            server.phase = 'staged';
            server.loaded = stdin;
            return ok('staged\n');
          case 'load':
            if (server.failOn === 'load-and-restore') {
              server.phase = 'restoring';
              return {code: 7, stdout: 'restore=failed\n', stderr: 'agent: could not restore: act now: IPv6 load failed (x) in batch b-1, then putting the previous rules back failed: IPv4: iptables-restore failed; the batch stays pending and the server retries every 12 s'};
            }
            if (server.failOn === 'load') {
              server.phase = 'failed';
              return {code: 6, stdout: '', stderr: 'IPv6 load failed; snapshot restored'};
            }
            server.phase = 'loaded';
            return ok('loaded\n');
          case 'show': {
            const [v4, v6] = (server.tamper ?? server.loaded).split(`${SECTION_V6}\n`);
            return ok(`phase=${server.phase}\nbatch=b-1\n${v4 ?? ''}${SECTION_V6}\n${v6 ?? ''}`);
          }
          case 'verify': {
            // show, then the agent waits for its answer on stdin (the reply hook)
            const [v4, v6] = (server.tamper ?? server.loaded).split(`${SECTION_V6}\n`);
            const shown = `phase=${server.phase}\nbatch=b-1\n${v4 ?? ''}${SECTION_V6}\n${v6 ?? ''}#iw:await\n`;
            const pending = execOptions?.reply?.(shown);
            if (!pending) return {code: 2, stdout: shown, stderr: 'verify without an answer'};
            const answer = (await pending).trim();
            fleet.events.push(`${target.name}:answer ${answer || '(none)'}`);
            if (answer !== 'confirm') return ok(`${shown}not-confirmed\n`);
            if (server.failOn === 'confirm-rebooted') {
              return {code: 8, stdout: `${shown}reason=rebooted\ndetail=boot id a at the load, b now\n`, stderr: 'agent: not confirmed: the server rebooted since the load'};
            }
            server.phase = 'confirmed';
            return ok(`${shown}confirmed\npersisted=none\n`);
          }
          case 'arm':
            return ok('deadline=1700000100\nnow=1700000000\nwatchdog=detached\n');
          case 'confirm':
            if (server.batch !== undefined && !command.endsWith(` ${server.batch}`)) return {code: 4, stdout: '', stderr: `agent: batch is not the current one (current: ${server.batch} ${server.phase})`};
            server.phase = 'confirmed';
            return ok('confirmed\npersisted=none\n');
          case 'unlock':
            server.phase = 'released';
            return ok('released\n');
          case 'rollback':
            if (server.batch !== undefined && !command.endsWith(` ${server.batch}`)) return {code: 4, stdout: '', stderr: `agent: batch is not the current one (current: ${server.batch} ${server.phase})`};
            if (server.failOn === 'rollback-restore' || server.phase === 'restoring') {
              server.phase = 'restoring';
              return {code: 7, stdout: 'restore=failed\n', stderr: 'agent: could not restore: act now: rollback of b-1, then putting the previous rules back failed: IPv4: the live rules differ from the snapshot; the batch stays pending and the server retries every 12 s'};
            }
            server.phase = 'rolledback';
            return ok('rolledback\n');
          default:
            return {code: 2, stdout: '', stderr: `unexpected ${command}`};
        }
      },
      async close() {},
    };
  }

  async closeAll(): Promise<void> {}
}

const SEED = ['tunnel-1', 'haproxy-www', 'wordpress-1', 'mysql-1'];

function plans(names: string[]): FleetHostPlan[] {
  return names.map((name) => ({
    target: {name, ssh: name},
    candidate: {v4: CANDIDATE, v6: CANDIDATE6},
    via: name === 'tunnel-1' ? [] : ['tunnel-1'],
  }));
}

async function failure(promise: Promise<unknown>): Promise<FleetApplyError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof FleetApplyError) return error;
    throw error;
  }
  throw new Error('expected the apply to fail');
}

describe('applyFleet', () => {
  it('loads hosts behind the bastion first and the bastion last, then verifies each over a fresh connection', async () => {
    const fleet = new FakeFleet(SEED);
    const batch = await applyFleet({connector: fleet, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1'});
    expect(batch.hosts).toEqual(SEED);
    const loads = fleet.events.filter((event) => event.endsWith(':load'));
    expect(loads.at(-1)).toBe('tunnel-1:load');
    expect(loads).toHaveLength(4);
    expect(fleet.freshConnects).toBe(4);
    // One verification group for the batch: hosts behind the bastion share its new link.
    expect(new Set(fleet.freshGroups)).toEqual(new Set(['verify-b-1']));
    // Every host is armed with the countdown only after every host verified.
    const lastShow = fleet.events.lastIndexOf(fleet.events.filter((event) => event.endsWith(':show')).at(-1) as string);
    const firstArm = fleet.events.findIndex((event) => event.endsWith(':arm'));
    expect(firstArm).toBeGreaterThan(lastShow);
    for (const server of fleet.servers.values()) expect(server.phase).toBe('loaded');
  });

  it('with --yes, confirms each host over the new connection that checked it, only once every host is checked', async () => {
    const fleet = new FakeFleet(SEED);
    const batch = await applyFleet({connector: fleet, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1', armCountdown: false, confirmAfterVerify: true});
    expect(batch.confirmed?.map((outcome) => [outcome.host, outcome.ok])).toEqual(SEED.map((name) => [name, true]));
    // One new connection per host (the check and the confirmation), no separate confirm command.
    expect(fleet.freshConnects).toBe(4);
    // (each host's deadline is re-armed after its load: see the test below)
    expect(fleet.events.some((event) => event.endsWith(':confirm'))).toBe(false);
    const lastVerify = Math.max(...SEED.map((name) => fleet.events.indexOf(`${name}:verify`)));
    const firstAnswer = fleet.events.findIndex((event) => event.includes(':answer'));
    expect(firstAnswer).toBeGreaterThan(lastVerify);
    for (const server of fleet.servers.values()) expect(server.phase).toBe('confirmed');
  });

  it('with --yes, confirms nobody when one host fails its check: every host is rolled back', async () => {
    const fleet = new FakeFleet(SEED);
    (fleet.servers.get('wordpress-1') as FakeServer).tamper = `${SECTION_V4}\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n${SECTION_V6}\n`;
    const error = await failure(applyFleet({connector: fleet, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1', armCountdown: false, confirmAfterVerify: true}));
    expect(error.exitCode).toBe(EXIT.rolledBack);
    expect(error.problems.join('\n')).toMatch(/wordpress-1: .*differ/);
    expect(fleet.events.filter((event) => event.includes(':answer')).every((event) => event.endsWith('(none)'))).toBe(true);
    for (const server of fleet.servers.values()) expect(server.phase).toBe('rolledback');
  });

  it('with --yes, a live check that objects (beforeConfirm) stops the confirm: every host rolled back, exit 4, the objection named', async () => {
    const fleet = new FakeFleet(SEED);
    const seen: string[] = [];
    const error = await failure(
      applyFleet({
        connector: fleet,
        hosts: plans(SEED),
        timeoutSeconds: 30,
        batch: 'b-1',
        armCountdown: false,
        confirmAfterVerify: true,
        beforeConfirm: async () => {
          seen.push(...[...fleet.servers.values()].map((server) => server.phase));
          return ['live check: haproxy-www → wordpress-1 10.132.0.12:80 planned open, live dropped'];
        },
      }),
    );
    // It ran once every host was loaded and verified, before anyone was confirmed.
    expect(seen).toEqual(SEED.map(() => 'loaded'));
    expect(error.exitCode).toBe(EXIT.rolledBack);
    expect(error.problems).toContain('live check: haproxy-www → wordpress-1 10.132.0.12:80 planned open, live dropped');
    expect(fleet.events.some((event) => event.includes(':answer confirm'))).toBe(false);
    for (const server of fleet.servers.values()) expect(server.phase).toBe('rolledback');
  });

  it('without --yes, an objection rolls back before the countdown is armed; no objection arms it', async () => {
    const objecting = new FakeFleet(SEED);
    const error = await failure(applyFleet({connector: objecting, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1', beforeConfirm: async () => ['no']}));
    expect(error.exitCode).toBe(EXIT.rolledBack);
    expect(objecting.events.some((event) => event.endsWith(':arm'))).toBe(false);
    const quiet = new FakeFleet(SEED);
    await applyFleet({connector: quiet, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1', beforeConfirm: async () => []});
    expect(quiet.events.filter((event) => event.endsWith(':arm'))).toHaveLength(SEED.length);
  });

  it('sends only the fixed command templates, never a host name', async () => {
    const fleet = new FakeFleet(SEED);
    await applyFleet({connector: fleet, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1'});
    for (const command of fleet.commands) {
      expect(ALLOWED_COMMANDS.some((pattern) => pattern.test(command)), command).toBe(true);
      for (const name of SEED) expect(command).not.toContain(name);
    }
  });

  it('changes nobody when one host rejects its rules: the others are unlocked, none loaded', async () => {
    const fleet = new FakeFleet(SEED);
    (fleet.servers.get('mysql-1') as FakeServer).failOn = 'stage';
    const error = await failure(applyFleet({connector: fleet, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1'}));
    expect(error.exitCode).toBe(EXIT.failed);
    expect(error.rolledBack).toBe(false);
    expect(error.problems.join('\n')).toMatch(/mysql-1: .*rejected/);
    expect(fleet.events.some((event) => event.endsWith(':load'))).toBe(false);
    for (const [name, server] of fleet.servers) {
      if (name !== 'mysql-1') expect(server.phase).toBe('released');
    }
  });

  it('rolls every loaded host back when one fails to load', async () => {
    const fleet = new FakeFleet(SEED);
    (fleet.servers.get('wordpress-1') as FakeServer).failOn = 'load';
    const error = await failure(applyFleet({connector: fleet, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1'}));
    expect(error.exitCode).toBe(EXIT.rolledBack);
    expect(error.rolledBack).toBe(true);
    expect(fleet.events).not.toContain('tunnel-1:load'); // the bastion was never changed
    expect(fleet.servers.get('haproxy-www')?.phase).toBe('rolledback');
    expect(fleet.servers.get('mysql-1')?.phase).toBe('rolledback');
    expect(fleet.servers.get('tunnel-1')?.phase).toBe('released');
  });

  it('says "could not restore: act now" (exit 5), never "rolled back", when a host cannot put its previous rules back', async () => {
    const fleet = new FakeFleet(SEED);
    (fleet.servers.get('wordpress-1') as FakeServer).failOn = 'load-and-restore';
    const error = await failure(applyFleet({connector: fleet, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1'}));
    expect(error.exitCode).toBe(EXIT.restoreFailed);
    expect(error.rolledBack).toBe(false);
    const text = error.problems.join('\n');
    expect(text).toContain('could not restore: act now — wordpress-1:');
    expect(text).not.toContain('every host was rolled back');
    expect(fleet.servers.get('haproxy-www')?.phase).toBe('rolledback');
    expect(fleet.servers.get('wordpress-1')?.phase).toBe('restoring');
  });

  it('a rollback the server cannot verify is exit 5, and reported as not restored', async () => {
    const fleet = new FakeFleet(SEED);
    (fleet.servers.get('mysql-1') as FakeServer).failOn = 'rollback-restore';
    const outcomes = await rollbackFleet({connector: fleet, hosts: plans(SEED).map((plan) => plan.target), batch: 'b-1'});
    expect(outcomeExitCode(outcomes)).toBe(EXIT.restoreFailed);
    const mysql = outcomes.find((outcome) => outcome.host === 'mysql-1');
    expect(mysql).toMatchObject({ok: false, restoreFailed: true});
    expect(mysql?.detail).toMatch(/^could not restore: act now/);
  });

  it('with --yes, a server that rebooted since its load is not confirmed (exit 1), and says so', async () => {
    const fleet = new FakeFleet(SEED);
    (fleet.servers.get('mysql-1') as FakeServer).failOn = 'confirm-rebooted';
    const batch = await applyFleet({connector: fleet, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1', armCountdown: false, confirmAfterVerify: true});
    const outcomes = batch.confirmed ?? [];
    const mysql = outcomes.find((outcome) => outcome.host === 'mysql-1');
    expect(mysql?.ok).toBe(false);
    expect(mysql?.detail).toContain('not confirmed: the server rebooted since load');
    expect(mysql?.detail).toContain('still pending');
    expect(outcomeExitCode(outcomes)).toBe(EXIT.failed);
  });

  it('rolls everything back when a host shows rules other than the ones sent', async () => {
    const fleet = new FakeFleet(SEED);
    (fleet.servers.get('haproxy-www') as FakeServer).tamper = `${SECTION_V4}\n*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\nCOMMIT\n${SECTION_V6}\n`;
    const error = await failure(applyFleet({connector: fleet, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1'}));
    expect(error.exitCode).toBe(EXIT.rolledBack);
    expect(error.problems.join('\n')).toMatch(/haproxy-www: the live rules differ/);
    for (const server of fleet.servers.values()) expect(server.phase).toBe('rolledback');
    expect(fleet.events.some((event) => event.endsWith(':arm'))).toBe(false);
  });

  it('is refused (exit 3) when a host is locked by another run, and releases the rest', async () => {
    const fleet = new FakeFleet(SEED);
    (fleet.servers.get('mysql-1') as FakeServer).failOn = 'begin';
    const error = await failure(applyFleet({connector: fleet, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1'}));
    expect(error.exitCode).toBe(EXIT.refused);
    expect(error.problems.join('\n')).toMatch(/mysql-1: locked by bob@desk pid=9 since 2023-/);
    for (const [name, server] of fleet.servers) if (name !== 'mysql-1') expect(server.phase).toBe('released');
  });

  it('refuses a plan the preflight (lockout check) rejects without connecting anywhere', async () => {
    const fleet = new FakeFleet(SEED);
    await expect(
      applyFleet({connector: fleet, hosts: plans(SEED), timeoutSeconds: 30, preflight: () => ['lockout: tunnel-1: ssh from the operator is dropped']}),
    ).rejects.toBeInstanceOf(RefusedError);
    expect(fleet.connects).toBe(0);
  });
});

describe('loadWaves', () => {
  it('orders a bastion behind another bastion before the outer one', () => {
    const layered: FleetHostPlan[] = [
      {target: {name: 'outer', ssh: 'outer'}, candidate: {v4: CANDIDATE, v6: CANDIDATE6}},
      {target: {name: 'inner', ssh: 'inner'}, candidate: {v4: CANDIDATE, v6: CANDIDATE6}, via: ['outer']},
      {target: {name: 'app', ssh: 'app'}, candidate: {v4: CANDIDATE, v6: CANDIDATE6}, via: ['inner']},
    ];
    expect(loadWaves(layered).map((wave) => wave.map((plan) => plan.target.name))).toEqual([['app'], ['inner'], ['outer']]);
  });
});

describe('confirmFleet / rollbackFleet over new connections', () => {
  it('share one connection group per call (one new bastion link), a different one each call', async () => {
    const fleet = new FakeFleet(SEED);
    const targets = SEED.map((name) => ({name, ssh: name}));
    await rollbackFleet({connector: fleet, hosts: targets, batch: 'b-1'});
    await confirmFleet({connector: fleet, hosts: targets, batch: 'b-1'});
    expect(fleet.freshConnects).toBe(2 * SEED.length);
    const [rollbackGroup, confirmGroup] = [fleet.freshGroups[0], fleet.freshGroups[SEED.length]];
    expect(rollbackGroup).toBeDefined();
    expect(confirmGroup).toBeDefined();
    expect(rollbackGroup).not.toBe(confirmGroup);
    expect(fleet.freshGroups).toEqual([...SEED.map(() => rollbackGroup), ...SEED.map(() => confirmGroup)]);
  });
});

describe('apply --yes re-arms each host after its own load', () => {
  it('arms the whole timeout on a host right after its load, before any check, and confirms without another arm', async () => {
    const fleet = new FakeFleet(SEED);
    await applyFleet({connector: fleet, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1', armCountdown: false, confirmAfterVerify: true});
    for (const name of SEED) {
      const load = fleet.events.indexOf(`${name}:load`);
      const arm = fleet.events.indexOf(`${name}:arm`);
      expect(arm, name).toBeGreaterThan(load);
      // before the next wave's loads and before any check
      expect(arm, name).toBeLessThan(fleet.events.findIndex((event) => event.endsWith(':verify')));
      expect(fleet.events.filter((event) => event === `${name}:arm`)).toHaveLength(1);
    }
    const armCommand = fleet.commands.find((command) => /agent\.sh arm /.test(command));
    expect(armCommand).toMatch(/ arm b-1 30$/);
    // the bastion's arm follows its own load, not the others'
    expect(fleet.events.indexOf('tunnel-1:arm')).toBeGreaterThan(fleet.events.indexOf('tunnel-1:load'));
    expect(fleet.events.indexOf('mysql-1:arm')).toBeLessThan(fleet.events.indexOf('tunnel-1:load'));
  });
});

describe('a batch has an owner', () => {
  const targets = SEED.map((name) => ({name, ssh: name}));
  const localState = () => new LocalState({directory: mkdtempSync(path.join(tmpdir(), 'iw-owner-'))});

  function othersBatch(fleet: FakeFleet): void {
    for (const server of fleet.servers.values()) Object.assign(server, {phase: 'loaded', batch: 'b-alice', owner: 'alice@laptop pid=42'});
  }

  it('confirm without a record of the pending batch refuses it (exit 3), naming batch and owner; nothing is confirmed', async () => {
    const fleet = new FakeFleet(SEED);
    othersBatch(fleet);
    const outcomes = await confirmFleet({connector: fleet, hosts: targets, localState: localState()});
    expect(outcomes.every((outcome) => outcome.refused)).toBe(true);
    expect(outcomes[3]?.detail).toBe('mysql-1: pending batch b-alice by alice@laptop pid=42; this machine has no record of it: pass --batch b-alice to act on it');
    expect(outcomeExitCode(outcomes)).toBe(EXIT.refused);
    expect(fleet.events.some((event) => event.endsWith(':confirm'))).toBe(false);
    for (const server of fleet.servers.values()) expect(server.phase).toBe('loaded');
  });

  it('rollback without a record refuses too; with --batch it acts', async () => {
    const fleet = new FakeFleet(SEED);
    othersBatch(fleet);
    const refused = await rollbackFleet({connector: fleet, hosts: targets, localState: localState()});
    expect(refused.every((outcome) => outcome.refused && !outcome.ok)).toBe(true);
    expect(fleet.events.some((event) => event.endsWith(':rollback'))).toBe(false);
    const done = await rollbackFleet({connector: fleet, hosts: targets, localState: localState(), batch: 'b-alice'});
    expect(done.every((outcome) => outcome.ok)).toBe(true);
    for (const server of fleet.servers.values()) expect(server.phase).toBe('rolledback');
  });

  it('the machine that began the batch confirms it from its record, without asking the server whose it is', async () => {
    const fleet = new FakeFleet(SEED);
    othersBatch(fleet);
    const state = localState();
    for (const name of SEED) state.setHost(name, {batch: 'b-alice', phase: 'pending', changedAt: Date.now()});
    const outcomes = await confirmFleet({connector: fleet, hosts: targets, localState: state});
    expect(outcomes.every((outcome) => outcome.ok)).toBe(true);
    expect(fleet.events.some((event) => event.endsWith(':status'))).toBe(false);
  });

  it('--batch without --host leaves the hosts of other batches as they are', async () => {
    const fleet = new FakeFleet(SEED);
    othersBatch(fleet);
    Object.assign(fleet.servers.get('tunnel-1') as FakeServer, {phase: 'confirmed', batch: 'b-older'});
    const outcomes = await confirmFleet({connector: fleet, hosts: targets, localState: localState(), batch: 'b-alice', onlyHostsInBatch: true});
    expect(outcomes.map((outcome) => [outcome.host, outcome.ok, outcome.skipped ?? false])).toEqual([
      ['tunnel-1', true, true],
      ['haproxy-www', true, false],
      ['wordpress-1', true, false],
      ['mysql-1', true, false],
    ]);
    expect(fleet.events).not.toContain('tunnel-1:confirm');
    expect(fleet.servers.get('tunnel-1')?.phase).toBe('confirmed');
    expect(fleet.servers.get('mysql-1')?.phase).toBe('confirmed');
  });

  it('a record of an older batch is no record of the pending one', async () => {
    const fleet = new FakeFleet(SEED);
    othersBatch(fleet);
    const state = localState();
    state.setHost('mysql-1', {batch: 'b-mine-earlier', phase: 'confirmed', changedAt: Date.now()});
    const [outcome] = await confirmFleet({connector: fleet, hosts: [{name: 'mysql-1', ssh: 'mysql-1'}], localState: state});
    expect(outcome?.refused).toBe(true);
    expect(fleet.servers.get('mysql-1')?.phase).toBe('loaded');
  });
});

describe('mixed iptables backends', () => {
  const mixed = readFileSync(new URL('../../fixtures/discovery/mixed-backends/backends.txt', import.meta.url), 'utf8');

  it('refuses the apply (exit 3) before any host is locked, naming the host and why', async () => {
    const fleet = new FakeFleet(SEED);
    (fleet.servers.get('wordpress-1') as FakeServer).backends = mixed;
    const error = await applyFleet({connector: fleet, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1', refuseMixedBackends: true}).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RefusedError);
    expect((error as Error).message).toBe('wordpress-1: both iptables-legacy and nftables rules are loaded: packets pass both; remove one first');
    expect(fleet.events.filter((event) => !event.endsWith(':backends'))).toEqual([]);
  });

  it('lets a fleet with one backend through', async () => {
    const fleet = new FakeFleet(SEED);
    (fleet.servers.get('wordpress-1') as FakeServer).backends = readFileSync(new URL('../../fixtures/discovery/mixed-backends/legacy-flushed.txt', import.meta.url), 'utf8');
    await applyFleet({connector: fleet, hosts: plans(SEED), timeoutSeconds: 30, batch: 'b-1', refuseMixedBackends: true});
    expect(fleet.servers.get('wordpress-1')?.phase).toBe('loaded');
  });
});

describe('rollback --to: the candidates are the snapshot the batch took', () => {
  const A_RULES = `*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:IW-INPUT - [0:0]\n:f2b-sshd - [0:0]\n-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd\n-A INPUT -j IW-INPUT\n-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\n-A IW-INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A IW-INPUT -j DROP\n-A f2b-sshd -j RETURN\nCOMMIT\n`;

  it("uses this machine's copy, else the server's, without changing anything; ours only", async () => {
    const fleet = new FakeFleet(['tunnel-1', 'mysql-1']);
    const state = new LocalState({directory: mkdtempSync(path.join(tmpdir(), 'iw-to-'))});
    state.saveSnapshot('b-2', 'tunnel-1', {v4: A_RULES, v6: ''});
    (fleet.servers.get('mysql-1') as FakeServer).backups = {'b-2': {v4: A_RULES, v6: ''}};
    const result = await snapshotPlans({connector: fleet, hosts: [{target: {name: 'tunnel-1', ssh: 'tunnel-1'}}, {target: {name: 'mysql-1', ssh: 'mysql-1'}, via: ['tunnel-1']}], batch: 'b-2', localState: state});
    expect(fleet.events).toEqual(['mysql-1:read-backup b-2']);
    for (const plan of result) {
      // Our chain and jump only: not fail2ban's, not the operator's rule, not the policies.
      const filter = plan.candidate.v4.tables[0];
      expect(filter?.chains).toEqual([{name: 'INPUT', policy: null}, {name: 'IW-INPUT', policy: null}]);
      expect(filter?.rules).toEqual([
        {chain: 'INPUT', spec: ['-j', 'IW-INPUT']},
        {chain: 'IW-INPUT', spec: ['-p', 'tcp', '-m', 'tcp', '--dport', '22', '-j', 'ACCEPT']},
        {chain: 'IW-INPUT', spec: ['-j', 'DROP']},
      ]);
      // Nothing of ours in that snapshot's IPv6: loading it removes ours.
      expect(plan.candidate.v6.tables).toEqual([]);
    }
    expect(result[1]?.via).toEqual(['tunnel-1']);
  });

  it('refuses, one line per host, when a host has no snapshot of that batch', async () => {
    const fleet = new FakeFleet(['tunnel-1', 'mysql-1']);
    (fleet.servers.get('mysql-1') as FakeServer).backups = {'b-2': {v4: A_RULES, v6: ''}};
    const error = await snapshotPlans({connector: fleet, hosts: [{target: {name: 'tunnel-1', ssh: 'tunnel-1'}}, {target: {name: 'mysql-1', ssh: 'mysql-1'}}], batch: 'b-2'}).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RefusedError);
    expect((error as Error).message).toBe('tunnel-1: no snapshot of batch b-2 (neither on this machine nor on the server): unknown batch for this host, or pruned');
  });
});
