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
/** Without addresses: plan discovers the servers over SSH, and reads their other firewalls then. */
const SEED_UNWRITTEN = JSON.parse(readFileSync(path.join(FIXTURES, 'inventories', 'seed.json'), 'utf8')) as object;
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
    nft -f /etc/firewalld/standin-zone.nft 2>> /etc/firewalld/standin.errors || { cat /etc/firewalld/standin.errors >&2; exit 1; }
    [ ! -f /etc/firewalld/standin.rules ] && exit 0
    while IFS= read -r rule; do firewall-cmd --add-rich-rule="$rule" || exit 1; done < /etc/firewalld/standin.rules ;;
  is-active) if running; then echo active; else echo inactive; exit 3; fi ;;
  disable) touch /etc/firewalld/standin.disabled ;;
  enable) rm -f /etc/firewalld/standin.disabled ;;
  *) echo "stand-in systemctl: $1 is not supported" >&2; exit 1 ;;
esac
`;

// Lab STAND-IN for ufw (on mysql-1): its INPUT chains as `ufw default deny incoming` and
// `ufw allow OpenSSH` leave them (ICMPv6 accepted, as its before6.rules do), the user's rules in
// ufw-user-input / ufw6-user-input, and the CLI forms the agent uses.
const UFW = String.raw`#!/bin/sh
set -u
conf=/etc/ufw/standin.enabled
rules=/etc/ufw/standin.rules
mkdir -p /etc/ufw
enabled() { [ -f "$conf" ]; }
families() { case $1 in any) echo '4 6' ;; *:*) echo 6 ;; *) echo 4 ;; esac; }
ipt() { if [ "$1" = 4 ]; then shift; iptables -w "$@"; else shift; ip6tables -w "$@"; fi; }
pre() { if [ "$1" = 4 ]; then echo ufw; else echo ufw6; fi; }
user_rule() { # ACTION(-A|-D|-C) FAMILY PROTO SOURCE PORT
  src=; [ "$4" = any ] || src="-s $4"
  ipt "$2" "$1" "$(pre "$2")-user-input" $src -p "$3" -m "$3" --dport "$5" -j ACCEPT
}
start() {
  for f in 4 6; do
    p=$(pre $f)
    ipt $f -N $p-before-input 2>/dev/null; ipt $f -N $p-user-input 2>/dev/null
    ipt $f -F $p-before-input && ipt $f -F $p-user-input || return 1
    ipt $f -A $p-before-input -i lo -j ACCEPT
    ipt $f -A $p-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    [ $f = 4 ] || ipt $f -A $p-before-input -p ipv6-icmp -j ACCEPT
    ipt $f -A $p-before-input -j $p-user-input
    ipt $f -A $p-user-input -p tcp -m tcp --dport 22 -j ACCEPT
    ipt $f -C INPUT -j $p-before-input 2>/dev/null || ipt $f -I INPUT 1 -j $p-before-input || return 1
    ipt $f -P INPUT DROP || return 1
  done
  [ -f "$rules" ] || return 0
  while read -r proto source port; do
    for f in $(families "$source"); do user_rule -A $f "$proto" "$source" "$port" || return 1; done
  done < "$rules"
}
stop() {
  for f in 4 6; do
    p=$(pre $f)
    while ipt $f -D INPUT -j $p-before-input 2>/dev/null; do :; done
    ipt $f -F $p-before-input 2>/dev/null; ipt $f -F $p-user-input 2>/dev/null
    ipt $f -X $p-before-input 2>/dev/null; ipt $f -X $p-user-input 2>/dev/null
    ipt $f -P INPUT ACCEPT
  done
}
case "$*" in
  'status') if enabled; then echo 'Status: active'; else echo 'Status: inactive'; fi ;;
  '--force enable') start && touch "$conf" ;;
  'disable') stop && rm -f "$conf" ;;
  'allow proto '*|'delete allow proto '*)
    [ "$1" = delete ] && { action=-D; shift; } || action=-A
    proto=$3 source=$5 port=$9
    if [ "$action" = -A ]; then
      grep -qx "$proto $source $port" "$rules" 2>/dev/null && { echo 'Skipping adding existing rule'; exit 0; }
      printf '%s %s %s\n' "$proto" "$source" "$port" >> "$rules"
    else
      grep -vx "$proto $source $port" "$rules" > "$rules.new" 2>/dev/null; mv -f "$rules.new" "$rules"
    fi
    enabled || exit 0
    for f in $(families "$source"); do
      if [ "$action" = -A ]; then user_rule -C $f "$proto" "$source" "$port" 2>/dev/null || user_rule -A $f "$proto" "$source" "$port" || exit 1
      else while user_rule -D $f "$proto" "$source" "$port" 2>/dev/null; do :; done; fi
    done ;;
  *) echo "stand-in ufw: $* is not supported" >&2; exit 2 ;;
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
  const started = await wordpress.exec(['/usr/local/sbin/systemctl', 'start', 'firewalld']);
  expect(started.code, started.stderr).toBe(0);
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
  return `${phases}\n${(await host('wordpress-1').exec(['sh', '-c', 'tail -n 20 /var/lib/isolate-wizard/log; cat /etc/firewalld/standin.errors 2>/dev/null'])).stdout}`;
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

  it('plan, discovering the servers, names what firewalld drops; with the addresses written it says apply checks it', async () => {
    const online = await lab.runCli(['plan', '--inventory', lab.writeInventory(SEED_UNWRITTEN, 'seed-unwritten.json')]);
    expect(online.code, online.stderr).toBe(0);
    const section = online.stdout.slice(online.stdout.indexOf('== Other firewalls'));
    expect(section).toContain('wordpress-1: firewalld (table inet firewalld) drops what the plan opens: tcp/80,443 from haproxy-www (IPv4, IPv6; rule 8 of filter_INPUT)');
    expect(section).not.toMatch(/^(mysql|wordpress-2|haproxy)/m);
    expect(section).toContain('apply refuses (exit 3, nothing touched)');
    const offline = await lab.runCli(['plan', '--inventory', lab.writeInventory(SEED, 'seed.json')]);
    expect(offline.stdout).toContain('not read for every host (plan ran from the inventory\'s addresses)');
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
  it('--other-firewall stop with --yes: confirmed, firewalld is left stopped and disabled', async () => {
    const applied = await lab.runCli(['apply', '--inventory', lab.writeInventory(SEED, 'seed.json'), '--other-firewall', 'stop', '--yes', '--timeout', '60']);
    expect(applied.code, applied.stderr).toBe(0);
    expect(await firewalldTable()).toBe('');
    expect(await webFromBalancer()).toEqual([true, true]);
    expect((await host('wordpress-1').exec(['test', '-f', '/etc/firewalld/standin.disabled'])).code).toBe(0);
  });
});

describe('ufw drops what the plan opens', () => {
  const mysql = (): LabHost => host('mysql-1');
  const userRules = async (): Promise<string> => {
    const v4 = await mysql().exec(['sh', '-c', 'iptables -S ufw-user-input 2>/dev/null; ip6tables -S ufw6-user-input 2>/dev/null; true']);
    return v4.stdout;
  };

  beforeEach(async () => {
    // No firewalld in this case: ufw on mysql-1 only.
    await host('wordpress-1').exec(['sh', '-c', 'nft delete table inet firewalld 2>/dev/null; rm -f /usr/local/sbin/firewall-cmd /usr/local/sbin/systemctl; true']);
    const written = await mysql().exec(['sh', '-c', 'rm -f /etc/ufw/standin.rules /etc/ufw/standin.enabled; cat > /usr/local/sbin/ufw && chmod 755 /usr/local/sbin/ufw && /usr/local/sbin/ufw --force enable'], {input: UFW});
    expect(written.code, written.stderr).toBe(0);
  });

  it('is refused without a remedy, naming ufw; --other-firewall open adds exactly the flows to ufw, and the rollback at expiry deletes them', async () => {
    const refused = await lab.runCli(['apply', '--inventory', lab.writeInventory(SEED, 'seed.json'), '--yes', '--timeout', '60']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain("mysql-1: ufw (iptables chains ufw-*/ufw6-*) drops what the plan opens: tcp/3306 from wordpress-1 (IPv4, IPv6; the DROP policy of INPUT (ufw's default))");
    expect(await lab.canConnect('wordpress-1', '10.132.0.14', 3306)).toBe(false);
    expect(await lab.canConnect('wordpress-1', 'fd00:132::14', 3306)).toBe(false);
    const before = await userRules();

    const applied = await lab.runCli(['apply', '--inventory', lab.writeInventory(SEED, 'seed.json'), '--other-firewall', 'open', '--timeout', '10']);
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stderr).toMatch(/mysql-1 +load +done +\d+ flow\(s\) opened in ufw; the planned flows pass/);
    const opened = await userRules();
    expect(opened).toContain('-A ufw-user-input -s 10.132.0.12/32 -p tcp -m tcp --dport 3306 -j ACCEPT');
    expect(opened).toContain('-A ufw6-user-input -s fd00:132::12/128 -p tcp -m tcp --dport 3306 -j ACCEPT');
    expect(await lab.canConnect('wordpress-1', '10.132.0.14', 3306)).toBe(true);
    expect(await lab.canConnect('wordpress-1', 'fd00:132::14', 3306)).toBe(true);
    expect(await lab.canConnect('operator', '203.0.113.14', 3306)).toBe(false);

    expect(await afterExpiry()).toBe(EXPIRED);
    expect(await userRules()).toBe(before);
    expect(await lab.canConnect('wordpress-1', '10.132.0.14', 3306)).toBe(false);
    expect(await lab.canConnect('wordpress-1', 'fd00:132::14', 3306)).toBe(false);
  });
});
