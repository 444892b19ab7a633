// firewalld on a server drops what the plan opens: apply refuses unless the operator picks a
// remedy (--other-firewall open|stop), and with one the intended access really holds, while the
// batch's rollback (here: the watchdog's, at expiry) undoes the remedy. Proved by real
// connections, IPv4 and IPv6.
//
// STAND-INS: real firewalld needs D-Bus and systemd, which a lab server does not have. So on
// wordpress-1 (in its own mount namespace: /usr/local is that server's) `firewall-cmd` and
// `systemctl` are small scripts that change the nftables table `inet firewalld` the way the
// real tools do: a rich rule becomes a rule in the public zone's filter_IN_public_allow chain
// (tagged with a comment so the stand-in can find it again), `systemctl stop firewalld` deletes
// the table (firewalld's CleanupOnExit), `systemctl start firewalld` loads the public zone as
// Rocky 9 makes it (ssh, dhcpv6-client, cockpit: fixtures/nft/firewalld-rocky9.nft) plus the
// permanent rich rules, enable/disable a flag file. The agent runs them exactly as it would run
// the real ones.
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest';
import {createLab, type Lab, type LabHost} from '../../source/lab/lab.js';
import {labHost, phaseOf, resetFleet, SEED_FLEET, waitFor} from './support/fleet.js';

const FIXTURES = path.join(import.meta.dirname, '..', '..', 'fixtures');
const SEED = JSON.parse(readFileSync(path.join(FIXTURES, 'inventories', 'seed-with-addresses.json'), 'utf8')) as object;
const FIREWALLD = readFileSync(path.join(FIXTURES, 'nft', 'firewalld-rocky9.nft'), 'utf8');

const FIREWALL_CMD = String.raw`#!/bin/sh
# Lab STAND-IN for firewall-cmd (see test/lab/other-firewall.test.ts): rich rules of the public zone.
set -u
perm=/etc/firewalld/standin.rules
permanent=0 action= rule=
for arg in "$@"; do
  case $arg in
    -q) ;;
    --permanent) permanent=1 ;;
    --state) action=state ;;
    --add-rich-rule=*) action=add; rule=$(printf '%s\n' "$arg" | sed 's/^[^=]*=//') ;;
    --remove-rich-rule=*) action=remove; rule=$(printf '%s\n' "$arg" | sed 's/^[^=]*=//') ;;
    --query-rich-rule=*) action=query; rule=$(printf '%s\n' "$arg" | sed 's/^[^=]*=//') ;;
    *) echo "stand-in firewall-cmd: $arg is not supported" >&2; exit 2 ;;
  esac
done
running() { nft list table inet firewalld >/dev/null 2>&1; }
if [ "$action" = state ]; then running && { echo running; exit 0; }; echo 'not running'; exit 252; fi
if [ "$permanent" = 1 ]; then
  mkdir -p /etc/firewalld
  case $action in
    add) grep -qxF "$rule" "$perm" 2>/dev/null || printf '%s\n' "$rule" >> "$perm" ;;
    *) echo "stand-in firewall-cmd: --permanent $action is not supported" >&2; exit 2 ;;
  esac
  exit 0
fi
running || { echo 'FirewallD is not running' >&2; exit 252; }
field() { printf '%s\n' "$rule" | sed -n "s/.* $1=\"\([^\"]*\)\".*/\1/p"; }
family=$(field family); port=$(field port); proto=$(field protocol)
source=$(printf '%s\n' "$rule" | sed -n 's/.*source address="\([^"]*\)".*/\1/p')
key=$(printf '%s' "$rule" | cksum | cut -d' ' -f1)
if [ "$family" = ipv4 ]; then match="meta nfproto ipv4"; [ -z "$source" ] || match="ip saddr $source"
else match="meta nfproto ipv6"; [ -z "$source" ] || match="ip6 saddr $source"; fi
handle() { nft -a list chain inet firewalld filter_IN_public_allow | sed -n "s/.*comment \"standin-$key\" # handle \([0-9]*\)$/\1/p" | head -n 1; }
case $action in
  add) [ -n "$(handle)" ] || printf 'add rule inet firewalld filter_IN_public_allow %s %s dport %s ct state { new, untracked } accept comment "standin-%s"\n' "$match" "$proto" "$port" "$key" | nft -f - ;;
  remove) h=$(handle); [ -z "$h" ] || nft delete rule inet firewalld filter_IN_public_allow handle "$h" ;;
  query) [ -n "$(handle)" ] ;;
esac
`;

const SYSTEMCTL = String.raw`#!/bin/sh
# Lab STAND-IN for systemctl (see test/lab/other-firewall.test.ts): firewalld.service only.
set -u
[ $# -eq 2 ] && { [ "$2" = firewalld ] || [ "$2" = firewalld.service ]; } || { echo "stand-in systemctl: only firewalld ($*)" >&2; exit 1; }
running() { nft list table inet firewalld >/dev/null 2>&1; }
case $1 in
  stop) ! running || nft delete table inet firewalld ;;
  start)
    running && exit 0
    nft -f /etc/firewalld/standin-zone.nft || exit 1
    [ ! -f /etc/firewalld/standin.rules ] && exit 0
    while IFS= read -r rule; do firewall-cmd --add-rich-rule="$rule" || exit 1; done < /etc/firewalld/standin.rules ;;
  is-active) if running; then echo active; else echo inactive; exit 3; fi ;;
  disable) touch /etc/firewalld/standin.disabled ;;
  enable) rm -f /etc/firewalld/standin.disabled ;;
  *) echo "stand-in systemctl: $1 is not supported" >&2; exit 1 ;;
esac
`;

let lab: Lab;
const host = (name: string): LabHost => labHost(lab, name);

/** firewalld as Rocky 9 starts it, with the stand-ins, on wordpress-1. */
async function startFirewalld(): Promise<void> {
  const wordpress = host('wordpress-1');
  const put = async (file: string, text: string): Promise<void> => {
    const written = await wordpress.exec(['sh', '-c', `mkdir -p "$(dirname "${file}")" && cat > "${file}" && chmod 755 "${file}"`], {input: text});
    expect(written.code).toBe(0);
  };
  await wordpress.exec(['sh', '-c', 'rm -f /etc/firewalld/standin.rules /etc/firewalld/standin.disabled; nft delete table inet firewalld 2>/dev/null; true']);
  await put('/usr/local/sbin/firewall-cmd', FIREWALL_CMD);
  await put('/usr/local/sbin/systemctl', SYSTEMCTL);
  await put('/etc/firewalld/standin-zone.nft', FIREWALLD);
  expect((await wordpress.exec(['/usr/local/sbin/systemctl', 'start', 'firewalld'])).code).toBe(0);
}

/** firewalld's table as nft lists it ('' when firewalld is not running). */
async function firewalldTable(): Promise<string> {
  return (await host('wordpress-1').exec(['sh', '-c', 'nft list table inet firewalld 2>/dev/null || true'])).stdout.trim();
}

async function footprint(name: string): Promise<string> {
  const rules = await host(name).exec(['nft', 'list', 'ruleset']);
  const state = await host(name).exec(['sh', '-c', 'cat /var/lib/isolate-wizard/state 2>/dev/null || true']);
  return `${rules.stdout}\n${state.stdout}`;
}

/** The web ports from the load balancer, IPv4 and IPv6: what firewalld drops and the plan opens. */
async function webFromBalancer(): Promise<boolean[]> {
  return Promise.all([lab.canConnect('haproxy-www', '10.132.0.12', 80), lab.canConnect('haproxy-www', 'fd00:132::12', 443)]);
}

const allExpired = async (): Promise<boolean> => (await Promise.all(SEED_FLEET.map(async (name) => (await phaseOf(host(name))) === 'expired'))).every(Boolean);

/** Every server's phase, and wordpress-1's agent log when one has not expired (says why). */
async function afterExpiry(): Promise<string> {
  await waitFor(allExpired, 60_000);
  const phases = (await Promise.all(SEED_FLEET.map(async (name) => `${name}=${await phaseOf(host(name))}`))).join(' ');
  if (await allExpired()) return phases;
  return `${phases}\n${(await host('wordpress-1').exec(['sh', '-c', 'tail -n 20 /var/lib/isolate-wizard/log'])).stdout}`;
}
const EXPIRED = SEED_FLEET.map((name) => `${name}=expired`).join(' ');

beforeAll(async () => {
  lab = await createLab();
});

afterAll(async () => {
  await lab?.teardown();
});

beforeEach(async () => {
  await resetFleet(lab);
  await startFirewalld();
});

describe('firewalld drops what the plan opens', () => {
  it('is refused without a remedy, naming firewalld, the flows and the way out; nothing touched', async () => {
    const before = await Promise.all(SEED_FLEET.map(footprint));
    const refused = await lab.runCli(['apply', '--inventory', lab.writeInventory(SEED, 'seed.json'), '--yes', '--timeout', '60']);
    expect(refused.code).toBe(3);
    const said = `${refused.stdout}${refused.stderr}`;
    expect(said).toContain('wordpress-1: firewalld (table inet firewalld) drops what the plan opens: tcp/80,443 from haproxy-www (IPv4, IPv6; rule 8 of filter_INPUT)');
    expect(said).toContain('--other-firewall open');
    expect(said).toContain('--other-firewall stop');
    expect(await Promise.all(SEED_FLEET.map(footprint))).toEqual(before);
    expect(await webFromBalancer()).toEqual([false, false]);
  });

  it('--other-firewall open: the planned flows pass firewalld during the countdown; the watchdog\'s rollback removes them again', async () => {
    const original = await firewalldTable();
    const inventory = lab.writeInventory(SEED, 'seed.json');
    const applied = await lab.runCli(['apply', '--inventory', inventory, '--other-firewall', 'open', '--timeout', '10']);
    expect(applied.stderr).toContain('wordpress-1');
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stderr).toMatch(/wordpress-1 +load +done +\d+ flow\(s\) opened in firewalld; the planned flows pass/);
    // Opened in firewalld: the rich rules, per source address and family (the ranges whole).
    const opened = await firewalldTable();
    expect(opened).toContain('ip saddr 10.132.0.11 tcp dport 80 ct state { new, untracked } accept');
    expect(opened).toMatch(/ip6 saddr fd00:132::11 tcp dport 443 /);
    expect(opened).toMatch(/tcp dport 49152-49251 /);
    // The intended access holds, and only it: the internet still does not reach the web port.
    expect(await webFromBalancer()).toEqual([true, true]);
    expect(await lab.canConnect('wordpress-2', '10.132.0.12', 24007)).toBe(true);
    expect(await lab.canConnect('operator', '203.0.113.12', 80)).toBe(false);

    // Not confirmed: the watchdog rolls back, and firewalld holds exactly what it held before.
    expect(await afterExpiry()).toBe(EXPIRED);
    expect(await firewalldTable()).toBe(original);
    expect(await webFromBalancer()).toEqual([false, false]);
    expect(await lab.canConnect('tunnel-1', '10.132.0.12', 22)).toBe(true);
  });

  it('--other-firewall stop: firewalld is stopped for the batch; the watchdog\'s rollback starts it again', async () => {
    const original = await firewalldTable();
    const inventory = lab.writeInventory(SEED, 'seed.json');
    const applied = await lab.runCli(['apply', '--inventory', inventory, '--other-firewall', 'stop', '--timeout', '10']);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stderr).toMatch(/wordpress-1 +load +done +firewalld stopped for this batch; the planned flows pass/);
    expect(await firewalldTable()).toBe('');
    expect(await webFromBalancer()).toEqual([true, true]);
    // Our rules hold where firewalld no longer does.
    expect(await lab.canConnect('operator', '203.0.113.12', 80)).toBe(false);
    expect(await lab.canConnect('operator', '203.0.113.12', 9090)).toBe(false);

    expect(await afterExpiry()).toBe(EXPIRED);
    expect(await firewalldTable()).toBe(original);
    expect(await webFromBalancer()).toEqual([false, false]);
  });

  it('--other-firewall open with --yes: confirmed, the opened flows are in firewalld\'s permanent configuration', async () => {
    const applied = await lab.runCli(['apply', '--inventory', lab.writeInventory(SEED, 'seed.json'), '--other-firewall', 'open', '--yes', '--timeout', '60']);
    expect(applied.code, applied.stderr).toBe(0);
    expect(await webFromBalancer()).toEqual([true, true]);
    const permanent = (await host('wordpress-1').exec(['cat', '/etc/firewalld/standin.rules'])).stdout;
    expect(permanent).toContain('rule family="ipv4" source address="10.132.0.11" port port="80" protocol="tcp" accept');
    expect(permanent).toContain('rule family="ipv6" source address="fd00:132::11" port port="443" protocol="tcp" accept');
    // firewalld restarted from its permanent configuration still lets the plan's flows through.
    expect((await host('wordpress-1').exec(['sh', '-c', '/usr/local/sbin/systemctl stop firewalld && /usr/local/sbin/systemctl start firewalld'])).code).toBe(0);
    expect(await webFromBalancer()).toEqual([true, true]);
  });
});
