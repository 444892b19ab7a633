// The one read-only script discovery runs on each server (`sh -s`, the text on stdin, as root), and
// the parser of its output. Each section is framed by markers so one round trip brings everything.

export const SECTION_BEGIN = '@@iw-begin ';
export const SECTION_END = '@@iw-end ';

import {NFT_PROBE_TABLE} from '../backend.js';

// The script's preamble: a clean environment and the section() framing.
const PREAMBLE = String.raw`LC_ALL=C
export LC_ALL
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
section() {
  iw_name=$1
  shift
  printf '@@iw-begin %s@@\n' "$iw_name"
  "$@" 2>/dev/null
  iw_rc=$?
  printf '\n@@iw-end %s rc=%s@@\n' "$iw_name" "$iw_rc"
}
have() { command -v "$1" >/dev/null 2>&1; }
`;

// Which iptables backends hold tables: `iptables -V`, the legacy backend's tables (and their
// rules, only where it has tables: listing them creates none), and the tables iptables-nft holds
// (read by firewallFacts).
const BACKEND_SECTIONS = String.raw`section iptables-version iptables -V
section legacy-tables cat /proc/net/ip_tables_names /proc/net/ip6_tables_names
if have iptables-legacy-save && { grep -q . /proc/net/ip_tables_names || grep -q . /proc/net/ip6_tables_names; } 2>/dev/null; then
  section legacy-save sh -c 'iptables-legacy-save 2>/dev/null; ip6tables-legacy-save 2>/dev/null; true'
fi
if have iptables-nft-save; then
  section nft-iptables-tables sh -c 'iptables-nft-save 2>/dev/null | grep "^\*"; ip6tables-nft-save 2>/dev/null | grep "^\*"; true'
fi
`;

// Docker's published ports, without the docker CLI: its nat chain (both families) and Docker 29's
// nftables tables (read by docker.ts); the filter tables' chain names say where DOCKER-USER is.
const DOCKER_SECTIONS = String.raw`section nat-save4 iptables-save -t nat
section nat-save6 ip6tables-save -t nat
section filter-chains4 sh -c 'iptables-save -t filter | sed -n "/^:/p"'
section filter-chains6 sh -c 'ip6tables-save -t filter | sed -n "/^:/p"'
if have nft; then section nft-json nft -j list ruleset; fi
`;

/** Run on hosts whose facts the inventory gives (`sh -s`, as root; read-only): Docker's published ports. */
export const DOCKER_SCRIPT = `# isolate-wizard Docker ports (read-only)
${PREAMBLE}${DOCKER_SECTIONS}`;

/**
 * Run before an apply on every host (`sh -s`, as root; read-only): just enough to tell whether
 * both iptables backends hold tables, where packets would pass both rule sets.
 */
export const BACKENDS_SCRIPT = `# isolate-wizard backend check (read-only)
${PREAMBLE}${BACKEND_SECTIONS}`;

/** Sent on stdin to `sh -s`; a constant: nothing from an inventory or a server is ever pasted in. */
export const DISCOVERY_SCRIPT = `# isolate-wizard discovery (read-only)
${PREAMBLE}section uid id -u
section os-release cat /etc/os-release
section pid1 cat /proc/1/comm
section ip-addr ip -j addr show
section ip-route4 ip -j -4 route show
section ip-route6 ip -j -6 route show
section ss ss -Htulnp
section iptables-save iptables-save
section ip6tables-save ip6tables-save
${BACKEND_SECTIONS}${DOCKER_SECTIONS}nft_check() { printf '%s\n' '${NFT_PROBE_TABLE}' | nft -c -f /dev/stdin 2>&1; }
if have nft; then section nft-tables nft list tables; section nft-check nft_check; fi
if have ufw; then section ufw ufw status; fi
if have firewall-cmd; then section firewalld firewall-cmd --state; fi
section commands sh -c 'for c in iptables-restore ip6tables-restore iptables-legacy iptables-nft nft ufw firewall-cmd docker dockerd fail2ban-client netfilter-persistent systemctl kubelet; do p=$(command -v "$c" 2>/dev/null) && printf "%s %s\n" "$c" "$p"; done; true'
section files sh -c 'for f in /etc/iptables/rules.v4 /etc/iptables/rules.v6 /usr/sbin/netfilter-persistent /usr/share/netfilter-persistent/plugins.d/15-ip4tables /etc/sysconfig/iptables /etc/sysconfig/ip6tables /usr/libexec/iptables/iptables.init /usr/lib/systemd/system/iptables.service /lib/systemd/system/iptables.service /var/run/docker.sock /run/docker.sock; do [ -e "$f" ] && printf "%s\n" "$f"; done; true'
`;

export interface Section {
  readonly text: string;
  /** The command's exit status; undefined when the end marker never came (output cut). */
  readonly rc?: number;
}

/** Splits the script's output into its sections by name. Text outside markers is ignored. */
export function parseSections(output: string): Map<string, Section> {
  const sections = new Map<string, Section>();
  const lines = output.split('\n');
  let current: {name: string; lines: string[]} | undefined;
  for (const line of lines) {
    const begin = /^@@iw-begin (\S+)@@$/.exec(line);
    if (begin?.[1]) {
      if (current) sections.set(current.name, {text: current.lines.join('\n')});
      current = {name: begin[1], lines: []};
      continue;
    }
    const end = /^@@iw-end (\S+) rc=(\d+)@@$/.exec(line);
    if (end?.[1] && current && end[1] === current.name) {
      // The script prints a newline before the end marker: drop exactly that one.
      const text = current.lines.join('\n');
      sections.set(current.name, {text: text.endsWith('\n') ? text.slice(0, -1) : text, rc: Number(end[2])});
      current = undefined;
      continue;
    }
    current?.lines.push(line);
  }
  if (current) sections.set(current.name, {text: current.lines.join('\n')});
  return sections;
}

/** Builds script output from section texts (fixtures and tests use it to assemble recorded outputs). */
export function formatSections(sections: Readonly<Record<string, string | {text: string; rc: number}>>): string {
  return Object.entries(sections)
    .map(([name, value]) => {
      const {text, rc} = typeof value === 'string' ? {text: value, rc: 0} : value;
      return `@@iw-begin ${name}@@\n${text}\n@@iw-end ${name} rc=${rc}@@\n`;
    })
    .join('');
}
