// The nftables backend end to end on the seed fleet: our rules in our own table (inet
// isolate_wizard) give the same access as the iptables backend, by real connections, IPv4 and
// IPv6; a host changing backend loses the other's rules in the same batch; another tool's table
// (fail2ban's, with a ban added mid-countdown) survives expiry and confirm; a server without nft
// is refused before anything changes, and auto gives it iptables; so is one whose nft cannot load
// a table like ours.
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest';
import {createLab, DEFAULT_HOSTS, type Lab} from '../../source/lab/lab.js';
import {accessMatrix, hideNft, iptablesRuleCount, labHost, ourNftTable, phaseOf, resetFleet, SEED_FLEET, waitFor} from './support/fleet.js';

const FIXTURE = path.join(import.meta.dirname, '..', '..', 'fixtures', 'inventories', 'seed-with-addresses.json');
const SEED = JSON.parse(readFileSync(FIXTURE, 'utf8')) as object;

/** fail2ban's nftables action makes a table of its own: a set of banned addresses, rejected on ssh. */
const FAIL2BAN_TABLE = `table inet f2b-table {
  set addr-set-sshd { type ipv4_addr; elements = { 192.0.2.7 } }
  chain f2b-chain {
    type filter hook input priority filter - 1; policy accept;
    tcp dport 22 ip saddr @addr-set-sshd reject
  }
}
`;

let lab: Lab;
let inventory: string;

async function f2bBans(): Promise<string> {
  const listed = await labHost(lab, 'wordpress-1').exec(['sh', '-c', 'nft list set inet f2b-table addr-set-sshd 2>&1']);
  return listed.stdout;
}

describe('the nftables backend on the seed fleet', () => {
  beforeAll(async () => {
    // nft on every server (the default lab hides it on mysql-2): the third test hides it itself.
    lab = await createLab({hosts: DEFAULT_HOSTS.map((spec) => ({...spec, nft: true}))});
    inventory = lab.writeInventory(SEED, 'seed.json');
  });

  afterAll(async () => {
    await lab?.teardown();
  });

  beforeEach(async () => {
    await resetFleet(lab);
  }, 60_000);

  it('gives the access of the iptables backend from its own table only, and a change of backend takes the other\'s rules away in the same batch', async () => {
    const iptables = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60', '--backend', 'iptables']);
    expect(iptables.code, iptables.stderr).toBe(0);
    const iptablesAccess = await accessMatrix(lab);
    // The matrix can fail: this is the locked-down access, not everything open.
    expect(iptablesAccess).toContain('haproxy-www -> 10.132.0.12:80');
    expect(iptablesAccess).toContain('wordpress-1 -> fd00:132::14:3306');
    expect(iptablesAccess).not.toContain('operator -> 203.0.113.12:80');
    expect(iptablesAccess).not.toContain('tenant -> fd00:132::14:3306');

    const nft = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60', '--backend', 'nftables']);
    expect(nft.code, nft.stderr).toBe(0);
    // Saved for boot by our own file and unit, said as such (not the iptables loader's note).
    expect(nft.stdout).toContain('mysql-1: kept — confirmed; saved for boot (/etc/isolate-wizard/isolate-wizard.nft, loaded by isolate-wizard.service)');
    const bootFiles = await labHost(lab, 'mysql-1').exec(['sh', '-c', 'nft -c -f /etc/isolate-wizard/isolate-wizard.nft && grep -x "PartOf=nftables.service" /etc/systemd/system/isolate-wizard.service']);
    expect(bootFiles.code, bootFiles.stderr).toBe(0);
    for (const name of SEED_FLEET) {
      const host = labHost(lab, name);
      expect(await ourNftTable(host), name).toMatch(/^table inet isolate_wizard \{/);
      expect(await iptablesRuleCount(host), name).toBe(0);
      expect(await phaseOf(host), name).toBe('confirmed');
    }
    // The database's clients are one named set, not one rule per client.
    expect(await ourNftTable(labHost(lab, 'mysql-1'))).toMatch(/set \S+ \{\s+type ipv4_addr/);
    expect(await accessMatrix(lab)).toEqual(iptablesAccess);

    const back = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60', '--backend', 'iptables']);
    expect(back.code, back.stderr).toBe(0);
    for (const name of SEED_FLEET) {
      expect(await ourNftTable(labHost(lab, name)), name).toBe('');
      expect(await iptablesRuleCount(labHost(lab, name)), name).toBeGreaterThan(0);
    }
    expect(await accessMatrix(lab)).toEqual(iptablesAccess);
  }, 600_000);

  it("keeps fail2ban's table and a ban added mid-countdown through the expiry, then through the confirm", async () => {
    const wordpress = labHost(lab, 'wordpress-1');
    expect((await wordpress.exec(['nft', '-f', '-'], {input: FAIL2BAN_TABLE})).code).toBe(0);
    // Left pending (no terminal to ask): the servers roll back by themselves at the deadline.
    const pending = await lab.runCli(['apply', '--inventory', inventory, '--timeout', '20', '--backend', 'nftables']);
    expect(pending.code, pending.stderr).toBe(0);
    expect(await ourNftTable(wordpress)).not.toBe('');
    expect((await wordpress.exec(['nft', 'add', 'element', 'inet', 'f2b-table', 'addr-set-sshd', '{ 192.0.2.99 }'])).code).toBe(0);
    expect(await waitFor(async () => (await Promise.all(SEED_FLEET.map((name) => phaseOf(labHost(lab, name))))).every((phase) => phase === 'expired'), 90_000)).toBe(true);
    expect(await ourNftTable(wordpress)).toBe('');
    expect(await f2bBans()).toMatch(/192\.0\.2\.7, 192\.0\.2\.99|192\.0\.2\.99, 192\.0\.2\.7/);

    const again = await lab.runCli(['apply', '--inventory', inventory, '--timeout', '120', '--backend', 'nftables']);
    expect(again.code, again.stderr).toBe(0);
    expect((await wordpress.exec(['nft', 'add', 'element', 'inet', 'f2b-table', 'addr-set-sshd', '{ 192.0.2.100 }'])).code).toBe(0);
    const confirmed = await lab.runCli(['confirm', '--inventory', inventory]);
    expect(confirmed.code, `${confirmed.stdout}\n${confirmed.stderr}`).toBe(0);
    for (const name of SEED_FLEET) expect(await phaseOf(labHost(lab, name)), name).toBe('confirmed');
    expect(await ourNftTable(wordpress)).not.toBe('');
    const bans = await f2bBans();
    for (const address of ['192.0.2.7', '192.0.2.99', '192.0.2.100']) expect(bans).toContain(address);
    // status holds our table to its listing at the confirmed load: the ban is not drift, the table gone is.
    const inSync = await lab.runCli(['status', '--inventory', inventory]);
    expect(inSync.code, `${inSync.stdout}\n${inSync.stderr}`).toBe(0);
    expect(await labHost(lab, 'mysql-2').exec(['nft', 'delete', 'table', 'inet', 'isolate_wizard'])).toMatchObject({code: 0});
    const drifted = await lab.runCli(['status', '--inventory', inventory]);
    expect(drifted.code, `${drifted.stdout}\n${drifted.stderr}`).toBe(6);
    expect(drifted.stdout).toMatch(/mysql-2: DRIFTED — drift: .*nftables: our table inet isolate_wizard is gone/);
    expect(drifted.stdout).not.toMatch(/wordpress-1: DRIFTED/);
    await wordpress.exec(['nft', 'delete', 'table', 'inet', 'f2b-table']);
  }, 600_000);

  it('refuses --backend nftables where a server has no nft, before anything changes; auto gives that server iptables', async () => {
    const mysql = labHost(lab, 'mysql-2');
    // nft hidden in mysql-2's /usr/sbin, in its own mount namespace (support/fleet.ts).
    const showNft = await hideNft(mysql);
    expect((await mysql.exec(['sh', '-c', 'command -v nft || echo none'])).stdout.trim()).toBe('none');
    try {
      const refused = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60', '--backend', 'nftables']);
      expect(refused.code, refused.stderr).toBe(3);
      expect(refused.stderr).toMatch(/mysql-2: the nftables backend needs nft, which is not installed there/);
      expect(refused.stderr).not.toMatch(/\n\s+at /); // no stack trace
      for (const name of SEED_FLEET) {
        expect(await phaseOf(labHost(lab, name)), name).toBe('');
        expect(await iptablesRuleCount(labHost(lab, name)), name).toBe(0);
      }

      const auto = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60', '--backend', 'auto']);
      expect(auto.code, auto.stderr).toBe(0);
      expect(await iptablesRuleCount(mysql)).toBeGreaterThan(0);
      for (const name of SEED_FLEET.filter((other) => other !== 'mysql-2')) {
        expect(await ourNftTable(labHost(lab, name)), name).not.toBe('');
        expect(await iptablesRuleCount(labHost(lab, name)), name).toBe(0);
      }
      expect(await lab.canConnect('wordpress-1', '10.132.0.15', 3306)).toBe(true);
      expect(await lab.canConnect('tenant', '10.132.0.15', 3306)).toBe(false);
      expect(await lab.canConnect('wordpress-1', 'fd00:132::14', 3306)).toBe(true);
      expect(await lab.canConnect('tenant', 'fd00:132::14', 3306)).toBe(false);
    } finally {
      await showNft();
    }
  }, 600_000);

  it('refuses --backend nftables where nft is there but cannot load a table like ours (nft -c fails), saying why', async () => {
    const web = labHost(lab, 'wordpress-2');
    // An nft whose kernel lacks what we use: every check fails as nft says it then; the rest is the real nft.
    const wrapper = '#!/bin/sh\nfor a; do [ "$a" = -c ] && { cat >/dev/null; echo "/dev/stdin:1:52-80: Error: Could not process rule: No such file or directory" >&2; exit 1; }; done\nexec /usr/sbin/nft "$@"\n';
    expect((await web.exec(['sh', '-c', 'cat > /usr/local/sbin/nft && chmod 755 /usr/local/sbin/nft'], {input: wrapper})).code).toBe(0);
    try {
      const refused = await lab.runCli(['apply', '--inventory', inventory, '--yes', '--timeout', '60', '--backend', 'nftables']);
      expect(refused.code, refused.stderr).toBe(3);
      expect(refused.stderr).toContain('wordpress-2: the nftables backend needs nft, which cannot load a table using what ours uses there (nft -c: /dev/stdin:1:52-80: Error: Could not process rule: No such file or directory)');
      for (const name of SEED_FLEET) expect(await phaseOf(labHost(lab, name)), name).toBe('');
    } finally {
      await web.exec(['rm', '-f', '/usr/local/sbin/nft']);
    }
  }, 300_000);
});
