// OS, firewall and persistence facts from the discovery script's sections.
import type {FirewallFacts, IptablesBackend, OsFacts, PersistenceFacts, SshConnectionFacts} from './types.js';

/** Parses /etc/os-release (KEY=value, values optionally quoted). */
export function parseOsRelease(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!match?.[1]) continue;
    let value = match[2] ?? '';
    if (/^".*"$|^'.*'$/.test(value)) value = value.slice(1, -1).replace(/\\(["$`\\])/g, '$1');
    values[match[1]] = value;
  }
  return values;
}

export function osFacts(osRelease: string, pid1: string): OsFacts {
  const values = parseOsRelease(osRelease);
  return {
    ...(values['ID'] === undefined ? {} : {id: values['ID']}),
    ...(values['VERSION_ID'] === undefined ? {} : {versionId: values['VERSION_ID']}),
    ...(values['PRETTY_NAME'] === undefined ? {} : {prettyName: values['PRETTY_NAME']}),
    systemdPid1: pid1.trim() === 'systemd',
  };
}

/** `iptables v1.8.9 (nf_tables)` / `(legacy)`; versions before 1.8 have no suffix and are legacy. */
export function parseIptablesVersion(text: string): {version?: string; backend: IptablesBackend} {
  const match = /iptables v([\d.]+)(?:\s+\((nf_tables|legacy)\))?/.exec(text);
  if (!match) return {backend: 'unknown'};
  const backend: IptablesBackend = match[2] === 'nf_tables' ? 'nf_tables' : 'legacy';
  return {...(match[1] ? {version: match[1]} : {}), backend};
}

/** Chains (`:NAME POLICY [..]`) declared in iptables-save text. */
export function chainNames(saveText: string): string[] {
  return [...saveText.matchAll(/^:(\S+)/gm)].map((match) => match[1]!);
}

export interface FirewallInputs {
  readonly iptablesVersion: string;
  readonly iptablesSave: string;
  readonly ip6tablesSave: string;
  /** /proc/net/ip_tables_names + ip6_tables_names: tables the legacy backend holds. */
  readonly legacyTables: string;
  /**
   * iptables-legacy-save + ip6tables-legacy-save, when the legacy backend has tables: whether they
   * hold anything (a table stays listed after its rules are flushed, letting everything through).
   */
  readonly legacySave?: string;
  /** `*table` lines from iptables-nft-save / ip6tables-nft-save, when those exist. */
  readonly nftIptablesTables?: string;
  /** `nft list tables`, when nft exists. */
  readonly nftTables?: string;
  /** `nft -c` of NFT_PROBE_TABLE, when nft exists: its output and exit status. */
  readonly nftCheck?: {readonly text: string; readonly rc?: number};
  readonly ufwStatus?: string;
  readonly firewalldState?: string;
  /** Interface names (docker0 marks Docker). */
  readonly interfaceNames: readonly string[];
  /** `name path` lines of the commands present. */
  readonly commands: string;
}

/** Whether nft took our probe table; nothing when it was not checked (a recording from before the check). */
function nftUsability(check: FirewallInputs['nftCheck'], hasNft: boolean): {nftUsable?: boolean; nftProblem?: string} {
  if (check === undefined) return hasNft ? {} : {nftUsable: false, nftProblem: 'nft is not installed'};
  if (check.rc === 0) return {nftUsable: true};
  const error = check.text.split('\n').find((line) => line.includes('Error')) ?? `exit ${check.rc ?? 'unknown'}`;
  return {nftUsable: false, nftProblem: `nft cannot load a table using what ours uses (nft -c: ${error.trim()})`};
}

/** An iptables-save text with a rule or a built-in policy other than ACCEPT: it filters something. */
function holdsRules(save: string): boolean {
  return /^-A /m.test(save) || /^:\S+ (?!ACCEPT\b|-)\S+/m.test(save);
}

export function firewallFacts(input: FirewallInputs): {facts: FirewallFacts; warnings: string[]} {
  const warnings: string[] = [];
  const {version, backend} = parseIptablesVersion(input.iptablesVersion);
  const legacyHasTables =
    input.legacySave === undefined ? input.legacyTables.trim() !== '' : holdsRules(input.legacySave);
  const nftHasIptablesTables =
    backend === 'nf_tables' ? /^\*/m.test(input.iptablesSave) || /^\*/m.test(input.ip6tablesSave) : /^\*/m.test(input.nftIptablesTables ?? '');
  // iptables-nft-save itself warns when legacy tables exist next to its own.
  const legacyWarning = /iptables-legacy tables present/.test(input.iptablesSave + input.ip6tablesSave);
  const mixedBackends =
    legacyWarning || (backend === 'nf_tables' ? legacyHasTables : backend === 'legacy' && nftHasIptablesTables && legacyHasTables);
  // iptables-nft keeps its rules in `ip filter`, `ip6 filter`, ... tables; anything else is native nftables.
  const iptablesNftTable = /^table (ip|ip6) (filter|nat|mangle|raw|security)$/;
  const nativeNftTables = (input.nftTables ?? '')
    .split('\n')
    .map((line) => line.trim())
    // Our own table (the nftables backend) is not another manager's.
    .filter((line) => line.startsWith('table ') && line !== 'table inet isolate_wizard' && !(backend === 'nf_tables' && iptablesNftTable.test(line)))
    .map((line) => line.slice('table '.length));
  const chains = [...chainNames(input.iptablesSave), ...chainNames(input.ip6tablesSave)];
  const commands = new Set(input.commands.split('\n').map((line) => line.split(' ')[0] ?? '').filter(Boolean));
  const nft = nftUsability(input.nftCheck, commands.has('nft'));
  const ufwActive = /^Status:\s*active/im.test(input.ufwStatus ?? '');
  const firewalldActive = (input.firewalldState ?? '').trim() === 'running';
  const docker = chains.some((chain) => chain === 'DOCKER' || chain.startsWith('DOCKER-')) || input.interfaceNames.includes('docker0');
  const fail2ban = chains.some((chain) => chain.startsWith('f2b-'));
  const kubernetes = chains.some((chain) => chain.startsWith('KUBE-')) || commands.has('kubelet');

  if (backend === 'unknown') warnings.push('iptables was not found or did not report its version');
  if (mixedBackends) {
    warnings.push('both iptables backends (legacy and nf_tables) hold tables: rules in the other backend still filter traffic');
  }
  if (nativeNftTables.length > 0) {
    warnings.push(`native nftables tables exist (${nativeNftTables.join(', ')}): their rules also filter traffic`);
  }
  if (ufwActive) warnings.push('ufw is active: it manages iptables too; disable it or expect conflicts');
  if (firewalldActive) warnings.push('firewalld is running: it manages the firewall too; stop it or expect conflicts');
  if (docker) warnings.push('Docker is present: it adds its own chains (DOCKER*); published container ports bypass INPUT');
  if (fail2ban) warnings.push('fail2ban chains (f2b-*) exist: fail2ban re-adds its rules; keep it in mind');
  if (kubernetes) warnings.push('Kubernetes chains (KUBE-*) exist: replacing the rules would break the cluster network');

  return {
    facts: {
      ...(version === undefined ? {} : {iptablesVersion: version}),
      backend,
      mixedBackends,
      ...nft,
      nativeNftTables,
      ufwActive,
      firewalldActive,
      docker,
      fail2ban,
      kubernetes,
      iptablesSave: withNewline(input.iptablesSave),
      ip6tablesSave: withNewline(input.ip6tablesSave),
    },
    warnings,
  };
}

function withNewline(text: string): string {
  return text === '' || text.endsWith('\n') ? text : `${text}\n`;
}

/** Which persistence mechanism the server has, from the `commands` and `files` sections. */
export function persistenceFacts(commands: string, files: string): {facts: PersistenceFacts; warnings: string[]} {
  const present = new Set(files.split('\n').map((line) => line.trim()).filter(Boolean));
  const commandNames = new Set(commands.split('\n').map((line) => line.split(' ')[0] ?? '').filter(Boolean));
  const existingOf = (paths: string[]) => paths.filter((file) => present.has(file));
  if (commandNames.has('netfilter-persistent') || present.has('/usr/sbin/netfilter-persistent')) {
    const v4 = '/etc/iptables/rules.v4';
    const v6 = '/etc/iptables/rules.v6';
    const warnings = present.has('/usr/share/netfilter-persistent/plugins.d/15-ip4tables')
      ? []
      : ['netfilter-persistent has no iptables plugin (install iptables-persistent)'];
    return {facts: {kind: 'netfilter-persistent', files: {v4, v6}, existing: existingOf([v4, v6])}, warnings};
  }
  if (present.has('/usr/libexec/iptables/iptables.init') || present.has('/usr/lib/systemd/system/iptables.service') || present.has('/lib/systemd/system/iptables.service')) {
    const v4 = '/etc/sysconfig/iptables';
    const v6 = '/etc/sysconfig/ip6tables';
    return {facts: {kind: 'iptables-services', files: {v4, v6}, existing: existingOf([v4, v6])}, warnings: []};
  }
  return {
    facts: {kind: 'none', existing: []},
    warnings: ['no firewall persistence installed (iptables-persistent or iptables-services): kept rules would not survive a reboot'],
  };
}

/** `$SSH_CONNECTION`: "client_ip client_port server_ip server_port". */
export function parseSshConnection(text: string): SshConnectionFacts | undefined {
  const fields = text.trim().split(/\s+/);
  if (fields.length !== 4) return undefined;
  const [clientAddress, clientPort, serverAddress, serverPort] = fields as [string, string, string, string];
  const ports = [Number(clientPort), Number(serverPort)];
  if (!ports.every((port) => Number.isInteger(port) && port > 0 && port <= 65535)) return undefined;
  return {clientAddress, clientPort: ports[0]!, serverAddress, serverPort: ports[1]!};
}
