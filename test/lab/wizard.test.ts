// The wizard in a real terminal: the built CLI under a pseudo-terminal (node-pty, 80x24) in the
// lab's operator namespace, its screen read back through a headless xterm. A first-time lockdown
// of the seed fleet, kept and probed for real; then a change whose timer runs out, shown rolled back.
// Run: npm run build && npx vitest run --project lab test/lab/wizard.test.ts

import {readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {createLab, type Lab, type LabHost} from '../../source/lab/lab.js';
import {KEYS, WizardTerminal} from './support/wizard-terminal.js';


/** From settings: back home (waiting for it before the next keys), select mysql-1, open its quick edit. */
async function quickEditMysql1(wizard: WizardTerminal): Promise<void> {
  await wizard.press(KEYS.escape);
  await wizard.waitFor('l lock down the fleet');
  await wizard.press(KEYS.down, KEYS.down, KEYS.down, KEYS.down);
  await wizard.waitFor(/❯ mysql-1/);
  await wizard.press('e');
  await wizard.waitFor('close a port');
}

function host(lab: Lab, name: string): LabHost {
  const found = lab.hosts.get(name);
  if (!found) throw new Error(`no lab host ${name}`);
  return found;
}

async function filterRules(lab: Lab, name: string, family: 4 | 6): Promise<string> {
  const output = await host(lab, name).exec([family === 4 ? 'iptables-save' : 'ip6tables-save', '-t', 'filter']);
  return output.stdout
    .split('\n')
    .filter((line) => !line.startsWith('#'))
    .map((line) => line.replace(/\[\d+:\d+\]/, ''))
    .join('\n');
}


const SEED = JSON.parse(readFileSync(path.resolve(import.meta.dirname, '../../fixtures/inventories/seed.json'), 'utf8')) as {options?: object};
/** Pinned to the iptables backend (imported with the fleet): these walks read and diff iptables rules. */
const SEED_INVENTORY = {...SEED, options: {...SEED.options, backend: 'iptables'}};

describe('the wizard in a terminal', () => {
  let lab: Lab;
  const terminals: WizardTerminal[] = [];

  beforeAll(async () => {
    lab = await createLab();
  });

  afterAll(async () => {
    for (const terminal of terminals) terminal.kill();
    await lab?.teardown();
  });

  /** A new wizard on the fleet the first test locked down, on its settings screen. */
  async function openSettingsOfLockedFleet(): Promise<WizardTerminal> {
    const wizard = new WizardTerminal(lab);
    terminals.push(wizard);
    await wizard.waitFor(/mysql-2.*locked down/, 60_000);
    await wizard.settle();
    await wizard.press('s');
    await wizard.waitFor('default deadline');
    return wizard;
  }

  it('locks down the seed fleet for the first time; kept; the access is what the roles say', async () => {
    const inventoryPath = lab.writeInventory(SEED_INVENTORY, 'seed.json');
    const wizard = new WizardTerminal(lab);
    terminals.push(wizard);
    await wizard.waitFor('No servers yet');
    await wizard.settle();

    // Import the inventory, then lock down the whole fleet.
    await wizard.press('i');
    await wizard.waitFor('read from:'); // keys typed before a field exists are lost
    await wizard.type(inventoryPath);
    await wizard.press(KEYS.enter);
    await wizard.waitFor('imported 6 servers');
    await wizard.waitFor(/mysql-2.*unmanaged/);
    await wizard.press('l');
    let screen = await wizard.waitFor('discover (6/6)', 90_000);
    expect(screen).toMatch(/eth0\s+public\s+203\.0\.113\.10/);
    expect(screen).toMatch(/eth1\s+private\s+10\.132\.0\.10/);
    await wizard.press(KEYS.enter);
    screen = await wizard.waitFor('isolate-wizard · roles');
    expect(screen).toMatch(/mysql-1.*\[x\] db/);
    await wizard.press(KEYS.enter);
    screen = await wizard.waitFor(/Lockout check/, 60_000);
    expect(screen).toContain('✓ Lockout check: your SSH path to every server survives');
    expect(screen).toContain('preview · tunnel-1 · diff');
    await wizard.press('4');
    screen = await wizard.waitFor('internet → haproxy-www');

    await wizard.press('a');
    screen = await wizard.waitFor('keep the new rules?', 90_000);
    expect(screen).toMatch(/✓ .*(tunnel-1|ssh)/i);
    await wizard.press('K');
    screen = await wizard.waitFor('isolate-wizard · kept', 60_000);
    expect(screen).toMatch(/mysql-1 keeps the new rules/);

    // Probe the result for real, v4 and v6.
    const lb = host(lab, 'haproxy-www');
    const app = host(lab, 'wordpress-1');
    const db = host(lab, 'mysql-1');
    const probes: [string, string, number, boolean][] = [
      ['operator', lb.publicV4 as string, 80, true],
      ['operator', lb.publicV6 as string, 443, true],
      ['haproxy-www', app.privateV4 as string, 80, true],
      ['haproxy-www', app.privateV6 as string, 443, true],
      ['wordpress-1', db.privateV4 as string, 3306, true],
      ['operator', host(lab, 'tunnel-1').publicV4 as string, 22, true],
      ['operator', app.publicV4 as string, 80, false],
      ['operator', app.publicV6 as string, 80, false],
      ['operator', db.publicV4 as string, 3306, false],
      ['tenant', db.privateV4 as string, 3306, false],
      ['tenant', db.privateV6 as string, 3306, false],
      ['tenant', app.privateV4 as string, 80, false],
    ];
    const label = ([from, address, port]: [string, string, number, boolean]) => `${from} -> ${address}:${port}`;
    const results: (readonly [string, boolean])[] = [];
    for (const probe of probes) results.push([label(probe), await lab.canConnect(probe[0], probe[1], probe[2])]);
    const wanted = probes.map((probe) => [label(probe), probe[3]] as const);
    if (JSON.stringify(results) !== JSON.stringify(wanted)) {
      console.log('haproxy-www IPv4 rules after the lockdown:\n' + (await filterRules(lab, 'haproxy-www', 4)));

    }
    expect(results).toEqual(wanted);

    // Back home: every server is locked down; quit.
    await wizard.press(KEYS.enter);
    await wizard.waitFor(/mysql-2.*locked down/, 60_000);
    await wizard.press('q');
    expect(await wizard.waitForExit()).toBe(0);
  });

  it('lets the timer run out: the servers roll back by themselves and the wizard shows it verified', async () => {
    const before = await filterRules(lab, 'mysql-1', 4);
    const wizard = await openSettingsOfLockedFleet();

    // Shortest deadline (30 s), then a quick edit of mysql-1: open 8443.
    await wizard.press(...Array<string>(6).fill(KEYS.left));
    await wizard.waitFor(/default deadline\s+30 s/);
    await quickEditMysql1(wizard);
    await wizard.press('o');
    await wizard.waitFor('open port:');
    await wizard.type('8443');
    await wizard.press(KEYS.enter);
    let screen = await wizard.waitFor('preview · mysql-1 · diff', 60_000);
    expect(screen).toMatch(/\+ -A IW-INPUT .*8443/);
    await wizard.press('a');
    await wizard.waitFor('keep the new rules?', 90_000);
    expect(await filterRules(lab, 'mysql-1', 4)).toContain('8443');

    // Do nothing: at zero the wizard reconnects and shows the verified rollback.
    screen = await wizard.waitFor('deadline passed — rolled back', 90_000);
    screen = await wizard.waitFor(/mysql-1 back on its previous rules/, 30_000);
    expect(screen).toMatch(/✓ mysql-1 back on its previous rules/);
    expect(await filterRules(lab, 'mysql-1', 4)).toBe(before);
    // Home: mysql-1 is back on its last confirmed rules, so still locked down.
    await wizard.press(KEYS.enter);
    await wizard.waitFor(/mysql-1 .*locked down/, 60_000);
    await wizard.press('q');
    expect(await wizard.waitForExit()).toBe(0);
  });
  it('a rule added by hand on mysql-1: the home shows it drifted, never locked down; f re-applies the plan with the countdown, K keeps it: locked down again', async () => {
    const before = await filterRules(lab, 'mysql-1', 4);
    const added = await host(lab, 'mysql-1').exec(['iptables', '-I', 'IW-INPUT', '-p', 'tcp', '--dport', '3306', '-j', 'ACCEPT']);
    expect(added.code, added.stderr).toBe(0);
    const wizard = new WizardTerminal(lab);
    terminals.push(wizard);
    let screen = await wizard.waitFor(/mysql-1 .*DRIFTED — drift/, 60_000);
    expect(screen).not.toMatch(/mysql-1 .*locked down/);
    await wizard.waitFor(/mysql-2.*locked down/, 60_000);
    await wizard.settle();
    await wizard.press(KEYS.down, KEYS.down, KEYS.down, KEYS.down);
    await wizard.waitFor(/❯ mysql-1/);
    await wizard.press('f');
    screen = await wizard.waitFor('preview · mysql-1 · diff', 60_000);
    expect(screen).toMatch(/- -A IW-INPUT -p tcp -m tcp --dport 3306 -j ACCEPT/);
    await wizard.press('a');
    await wizard.waitFor('keep the new rules?', 90_000);
    await wizard.press('K');
    await wizard.waitFor('kept', 60_000);
    expect(await filterRules(lab, 'mysql-1', 4)).toBe(before);
    await wizard.press(KEYS.enter);
    await wizard.waitFor(/mysql-1 .*locked down/, 60_000);
    expect(wizard.screen()).not.toContain('DRIFTED');
    await wizard.press('q');
    expect(await wizard.waitForExit()).toBe(0);
  });

  it('troubleshoot: live counters, and the dropped packets from the kernel log once drop logging is on', async () => {
    // The kernel writes LOG lines from a non-initial namespace only with this set in the initial one.
    const sysctl = '/proc/sys/net/netfilter/nf_log_all_netns';
    const previous = readFileSync(sysctl, 'utf8').trim();
    writeFileSync(sysctl, '1');
    try {
      const wizard = await openSettingsOfLockedFleet();

      // Turn on drop logging, then re-apply mysql-1 (quick edit, roles unchanged) and keep it.
      // deadline, backend, strict outbound, then drop logging.
      await wizard.press(KEYS.down, KEYS.down, KEYS.down, ' ');
      await wizard.waitFor(/log dropped packets \(rate-limited\)\s+on/);
      await quickEditMysql1(wizard);
      await wizard.press('r');
      await wizard.waitFor('[x] db');
      await wizard.press(KEYS.enter);
      const preview = await wizard.waitFor('preview · mysql-1 · diff', 60_000);
      expect(preview).toContain('IW-LOG-DROP');
      await wizard.press('a');
      await wizard.waitFor('keep the new rules?', 90_000);
      await wizard.press('K');
      await wizard.waitFor('isolate-wizard · kept', 60_000);

      // Something the rules drop: the internet knocking on mysql-1's MySQL port.
      expect(await lab.canConnect('operator', host(lab, 'mysql-1').publicV4 as string, 3306)).toBe(false);

      await wizard.press(KEYS.enter);
      await wizard.waitFor(/❯ mysql-1/);
      await wizard.press('t');
      // Ours is our chain, entered from INPUT (whose policy is not ours).
      const counters = await wizard.waitFor(/ {2}to IW-INPUT: everything — [\d,]+ packets?/, 30_000);
      expect(counters).toContain('troubleshoot · mysql-1 · IPv4 counters');
      expect(counters).toMatch(/ {2}tcp\/3306 from wordpress-1 in eth1 — [\d,]+ packets?/);
      await wizard.press('3');
      const drops = await wizard.waitFor(/dropped tcp\/3306 from 203\.0\.113\.1 to mysql-1 in eth0/, 30_000);
      expect(drops).toMatch(/dropped packets \((dmesg|journalctl|syslog)\)/);
      await wizard.press(KEYS.escape, 'q');
      expect(await wizard.waitForExit()).toBe(0);
    } finally {
      writeFileSync(sysctl, previous);
    }
  });

  it('a port opened by hand on mysql-1 adopted into the plan (m): the allow asked first, then the countdown; kept, both families open and the home says locked down', async () => {
    const db = host(lab, 'mysql-1');
    const added = await db.exec(['iptables', '-I', 'IW-INPUT', '-p', 'tcp', '--dport', '3306', '-j', 'ACCEPT']);
    expect(added.code, added.stderr).toBe(0);
    expect(await lab.canConnect('operator', db.publicV6 as string, 3306)).toBe(false); // by hand: IPv4 only
    const wizard = new WizardTerminal(lab);
    terminals.push(wizard);
    await wizard.waitFor(/mysql-1 .*DRIFTED — drift/, 60_000);
    await wizard.waitFor(/mysql-2.*locked down/, 60_000);
    await wizard.settle();
    await wizard.press(KEYS.down, KEYS.down, KEYS.down, KEYS.down);
    await wizard.waitFor(/❯ mysql-1/);
    await wizard.press('m');
    await wizard.waitFor("adopt into mysql-1's plan: + allow tcp/3306 from internet");
    await wizard.press('y');
    const preview = await wizard.waitFor('preview · mysql-1 · diff', 60_000);
    // The hand rule replaced by the plan's own opening, on both families (lines cut at 80 columns).
    expect(preview).toMatch(/- -A IW-INPUT -p tcp -m tcp --dport 3306 -j ACCEPT {2}\[IPv4\]/);
    expect(preview.match(/\+ -A IW-INPUT -i eth0 -p tcp -m tcp --dport 3306 /g)).toHaveLength(2);
    await wizard.press('a');
    await wizard.waitFor('keep the new rules?', 90_000);
    await wizard.press('K');
    await wizard.waitFor('isolate-wizard · kept', 60_000);
    expect(await lab.canConnect('operator', db.publicV4 as string, 3306)).toBe(true);
    expect(await lab.canConnect('operator', db.publicV6 as string, 3306)).toBe(true);
    await wizard.press(KEYS.enter);
    await wizard.waitFor(/mysql-1 .*locked down/, 60_000);
    expect(wizard.screen()).not.toContain('DRIFTED');
    await wizard.press('q');
    expect(await wizard.waitForExit()).toBe(0);
  });
});
