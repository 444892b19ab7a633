// What lab tests read of the seed fleet's servers (their filter tables: faults.ts' liveFilter),
// our nftables table, the agent's phase, and who reaches what by real TCP connections. Shared, so each test states only
// what it does to the fleet.
import type {Lab, LabHost} from '../../../source/lab/lab.js';
import {run} from '../../../source/lab/process.js';
import {liveFilter} from './faults.js';

export const SEED_FLEET = ['tunnel-1', 'haproxy-www', 'wordpress-1', 'wordpress-2', 'mysql-1', 'mysql-2'] as const;

export function labHost(lab: Lab, name: string): LabHost {
  const found = lab.hosts.get(name);
  if (!found) throw new Error(`no lab host ${name}`);
  return found;
}

/** Rules of ours in a server's iptables filter tables (-A lines): none once the nftables backend holds them. */
export async function iptablesRuleCount(host: LabHost): Promise<number> {
  const both = `${await liveFilter(host, 4)}\n${await liveFilter(host, 6)}`;
  return both.split('\n').filter((line) => line.startsWith('-A ')).length;
}

/**
 * A filter table as liveFilter reads it, with the agent's second form of "empty" (the table with
 * nothing in it and ACCEPT policies: what a server without nft, mysql-2, cannot delete) read as
 * no table ('').
 */
export function emptyAsNone(text: string): string {
  return text.trim() === '*filter\n:INPUT ACCEPT\n:FORWARD ACCEPT\n:OUTPUT ACCEPT\nCOMMIT' ? '' : text;
}

/** `nft list table inet isolate_wizard` inside a server; '' when the table is absent. */
export async function ourNftTable(host: LabHost): Promise<string> {
  const listed = await host.exec(['sh', '-c', 'nft list table inet isolate_wizard 2>/dev/null || true']);
  return listed.stdout.trim();
}

/** The agent's state file on a server ('' when it never ran). */
export async function agentState(host: LabHost): Promise<string> {
  return (await host.exec(['sh', '-c', 'cat /var/lib/isolate-wizard/state 2>/dev/null || true'])).stdout;
}

/** The phase the agent's state ends on ('' when the host never ran it). */
export async function phaseOf(host: LabHost): Promise<string> {
  const state = await agentState(host);
  const phases = [...state.matchAll(/^phase=(\w*)$/gm)].map((match) => match[1]);
  return phases[phases.length - 1] ?? '';
}

/** Every server as new: no agent state, no wrappers, no filter tables and no table of ours. */
export async function resetFleet(lab: Lab): Promise<void> {
  await Promise.all(
    SEED_FLEET.map(async (name) => {
      const host = labHost(lab, name);
      await host.exec([
        'sh',
        '-c',
        'rm -rf /var/lib/isolate-wizard/* /etc/isolate-wizard /etc/systemd/system/isolate-wizard-iptables.service /etc/systemd/system/multi-user.target.wants/isolate-wizard-iptables.service /etc/systemd/system/isolate-wizard-docker-user.service /etc/systemd/system/docker.service.wants/isolate-wizard-docker-user.service;  rm -f /usr/local/sbin/*',
      ]);
      // The machine's nft in the server's network namespace: a server of the lab may have none.
      await run('ip', ['netns', 'exec', host.netns, 'sh', '-c', 'nft delete table ip filter; nft delete table ip6 filter; nft delete table inet isolate_wizard; true']);
    }),
  );
}

export async function waitFor(check: () => Promise<boolean>, limitMs: number): Promise<boolean> {
  const start = Date.now();
  while (Date.now() - start < limitMs) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return check();
}

/**
 * Who reaches what, by real TCP connections: the internet (operator) to every server's public
 * addresses, and the tenant and three servers to every server's private addresses, IPv4 and IPv6,
 * on ssh, web and database ports. Sorted "from -> address:port" lines of the open ones.
 */
export async function accessMatrix(lab: Lab): Promise<string[]> {
  const probes: [string, string, number][] = [];
  for (const name of SEED_FLEET) {
    const target = labHost(lab, name);
    for (const port of [22, 80, 3306]) {
      for (const address of [target.publicV4, target.publicV6]) if (address) probes.push(['operator', address, port]);
      for (const from of ['tenant', 'tunnel-1', 'haproxy-www', 'wordpress-1']) {
        if (from === name) continue;
        for (const address of [target.privateV4, target.privateV6]) if (address) probes.push([from, address, port]);
      }
    }
  }
  const open: string[] = [];
  // A few at a time: a dropped probe waits for its time limit.
  for (let index = 0; index < probes.length; index += 32) {
    const batch = probes.slice(index, index + 32);
    const outcomes = await Promise.all(batch.map(([from, address, port]) => lab.canConnect(from, address, port)));
    batch.forEach(([from, address, port], at) => {
      if (outcomes[at]) open.push(`${from} -> ${address}:${port}`);
    });
  }
  return open.sort();
}

/**
 * Hides `nft` from one server, in its own mount namespace: an overlay on /usr/sbin whose upper
 * layer (in the server's private /run) holds a whiteout for it. Resolves to the undo. Removing
 * that layer can never reach the machine's own /usr/sbin, whatever becomes of the unmount (a
 * bind of the real directory and a recursive delete once emptied the machine's /usr/sbin).
 */
export async function hideNft(host: LabHost): Promise<() => Promise<void>> {
  const hide =
    'mkdir -p /run/iw-hide/upper /run/iw-hide/work && mknod /run/iw-hide/upper/nft c 0 0 && ' +
    'mount -t overlay iw-hide -o lowerdir=/usr/sbin,upperdir=/run/iw-hide/upper,workdir=/run/iw-hide/work /usr/sbin';
  const hidden = await host.exec(['sh', '-c', hide]);
  if (hidden.code !== 0) throw new Error(`could not hide nft on ${host.name}: ${hidden.stderr}`);
  return async () => {
    // Lazily: sshd re-execs itself from /usr/sbin for each connection, so the overlay stays busy
    // while any session (this one included) lives; it goes once the last one ends. Deleting the
    // layer then touches only the server's own /run.
    const shown = await host.exec(['sh', '-c', 'umount -l /usr/sbin && rm -rf /run/iw-hide && command -v nft']);
    if (shown.code !== 0) throw new Error(`could not show nft again on ${host.name}: ${shown.stderr}`);
  };
}
