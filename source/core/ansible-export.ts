// The Ansible project written by `isolate-wizard export --format ansible`: for fleets whose
// operators run everything through Ansible. Ansible has no nftables module in core or
// community.general, and its iptables_state keeps the rollback on the controller's side, so the
// project carries the compiled rulesets and the server-side agent (the same one `apply` uses:
// same lock, snapshot, watchdog, confirm and rollback) and drives them with builtin modules only.
//
// Each host's rules are shipped as the agent reads them (the payload `apply` sends, made by the
// remote layer and handed in): for the iptables backend, the filter tables; for nftables, our
// table and filter tables holding nothing of ours (so a host moving to nftables loses our
// iptables rules in the same batch); for auto, both, the playbook choosing on each server.
//
// Pure: it returns the project's files as text; the export command writes them (and the agent).
import type {Backend} from './backend.js';
import type {Inventory} from './inventory.js';
import {parseSshDestination} from './inventory.js';
import type {ResolvedSsh} from './lockout.js';
import type {BackendChoice} from './model.js';
import type {Plan} from './plan.js';

/** Where the agent goes in the project (the command writes it: it lives in the remote layer). */
export const AGENT_FILE = 'files/agent.sh';
/** Marks a directory as an export: a later export may replace it. */
export const EXPORT_MARKER = '.isolate-wizard-export';
/** The inventory group of the hosts loaded last, one at a time: bastions and jump hosts. */
export const LAST_GROUP = 'iw_last';
/** The rollback deadline of a run, in seconds: it covers every play, the confirm included. */
export const DEFAULT_ANSIBLE_TIMEOUT = 300;

export interface AnsibleExportInput {
  readonly inventory: Inventory;
  readonly plan: Plan;
  /** What the operator's ssh config says of each host (its ProxyJump). */
  readonly resolved: ReadonlyMap<string, ResolvedSsh>;
  /** The operator's ssh config file, or /dev/null when there is none. */
  readonly sshConfigPath: string;
  readonly timeoutSeconds?: number;
  /** Where the rules live: `--backend`, else the inventory's options.backend, else auto (the product's default). */
  readonly backend: BackendChoice;
  /** What the agent reads on stdin for a host's rules in a backend (apply's candidate payload). */
  readonly payload: (host: string, backend: Backend) => string;
}

/** The backends whose rules a choice ships: auto ships both, the playbook picks on each server. */
export function shippedBackends(choice: BackendChoice): Backend[] {
  return choice === 'auto' ? ['iptables', 'nftables'] : [choice];
}

/** The group of a role: `role_` and the name with what Ansible refuses in group names made `_`. */
export function roleGroup(role: string): string {
  return `role_${role.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

/** Hosts others are reached through, by inventory name (loaded last, as `apply` does). */
export function lastHosts(inventory: Inventory, resolved: ReadonlyMap<string, ResolvedSsh>): Set<string> {
  const names = new Set(inventory.hosts.map((host) => host.name));
  const last = new Set<string>();
  for (const host of inventory.hosts) {
    if (host.roles.includes('bastion')) last.add(host.name);
    const jump = resolved.get(host.name)?.proxyJump ?? host.jump;
    if (jump !== undefined && names.has(jump)) last.add(jump);
  }
  return last;
}

/** A word for Ansible's shlex-split ssh arguments: quoted when it holds anything unusual. */
function shellWord(text: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'"'"'`)}'`;
}

/** JSON is YAML: every value is written as JSON, so no name or address can change the structure. */
const yaml = (value: unknown): string => JSON.stringify(value);

/**
 * The ProxyJump chain for a host whose ssh config gives none but whose inventory names a `jump`:
 * an inventory host stands for its ssh destination (and its own jump first).
 */
function jumpChain(inventory: Inventory, resolved: ReadonlyMap<string, ResolvedSsh>, hostName: string): string[] {
  const chain: string[] = [];
  const seen = new Set<string>([hostName]);
  let current = inventory.hosts.find((host) => host.name === hostName);
  while (current?.jump !== undefined && resolved.get(current.name)?.proxyJump === undefined) {
    const jump = current.jump;
    const jumpHost = inventory.hosts.find((host) => host.name === jump);
    if (!jumpHost) {
      chain.unshift(jump);
      break;
    }
    if (seen.has(jumpHost.name)) break;
    seen.add(jumpHost.name);
    chain.unshift(jumpHost.ssh);
    current = jumpHost;
  }
  return chain;
}

function inventoryYaml(input: AnsibleExportInput, last: ReadonlySet<string>): string {
  const {inventory, resolved} = input;
  const factsOf = new Map(input.plan.hosts.map((host) => [host.name, host.facts]));
  const lines = [
    '# Written by isolate-wizard export. A group per role, the hosts loaded last in iw_last; each',
    '# host with how ssh reaches it (your ssh config resolves aliases) and its facts.',
    'all:',
    '  vars:',
    `    iw_timeout: ${input.timeoutSeconds ?? DEFAULT_ANSIBLE_TIMEOUT}`,
    '    iw_confirm: true',
    '    # Why the batch stopped, from every server that noted it (tasks/load.yml).',
    `    iw_stopped: "{{ groups['all'] | map('extract', hostvars) | selectattr('iw_stop', 'defined') | map(attribute='iw_stop') | list }}"`,
    // Our lines in an iptables-save text (own-chains.ts): what the live check counts.
    `    iw_our_rules: ${yaml('^-A (IW-|(INPUT|FORWARD|OUTPUT) -j IW-)')}`,
    '    # Where the rules live: iptables (our chains IW-*), nftables (our table inet isolate_wizard), or auto',
    '    # (nftables where nft is installed, else iptables: decided on each server when the playbook runs).',
    `    # Shipped: ${shippedBackends(input.backend).map((backend) => `rules/<host>.${backend}`).join(' and ')}.`,
    `    iw_backend: ${yaml(input.backend)}`,
    // The tables iptables-nft (and ebtables-nft / arptables-nft) keep, ours, and fail2ban's (its
    // tables only ban addresses; neither backend touches them): any other table is another
    // manager's, whose drops this playbook does not check.
    `    iw_allowed_tables: ${yaml('^table (ip6? (filter|nat|mangle|raw|security)|arp filter|bridge (filter|nat|broute)|inet isolate_wizard|(ip6?|inet) f2b-[A-Za-z0-9_-]+)$')}`,
    '  hosts:',
  ];
  for (const host of inventory.hosts) {
    const destination = parseSshDestination(host.ssh);
    const facts = factsOf.get(host.name);
    lines.push(`    ${yaml(host.name)}:`);
    lines.push(`      ansible_host: ${yaml(destination?.host ?? host.ssh)}`);
    if (destination?.user !== undefined) lines.push(`      ansible_user: ${yaml(destination.user)}`);
    if (destination?.port !== undefined) lines.push(`      ansible_port: ${destination.port}`);
    const chain = jumpChain(inventory, resolved, host.name);
    if (chain.length > 0) lines.push(`      ansible_ssh_common_args: ${yaml(`-o ProxyJump=${chain.join(',')}`)}`);
    lines.push(`      iw_ssh: ${yaml(host.ssh)}`);
    lines.push(`      iw_roles: ${yaml(host.roles)}`);
    if (facts) {
      lines.push(`      iw_interfaces: ${yaml(facts.interfaces)}`);
      lines.push(`      iw_addresses: ${yaml(facts.addresses)}`);
    }
  }
  lines.push('  children:');
  const roles = [...new Set(inventory.hosts.flatMap((host) => host.roles))];
  for (const role of roles) {
    lines.push(`    ${roleGroup(role)}:`, '      hosts:');
    for (const host of inventory.hosts.filter((candidate) => candidate.roles.includes(role))) lines.push(`        ${yaml(host.name)}: {}`);
  }
  lines.push(`    ${LAST_GROUP}:`);
  const lastNames = inventory.hosts.filter((host) => last.has(host.name)).map((host) => host.name);
  if (lastNames.length === 0) lines.push('      hosts: {}');
  else {
    lines.push('      hosts:');
    for (const name of lastNames) lines.push(`        ${yaml(name)}: {}`);
  }
  return `${lines.join('\n')}\n`;
}

function ansibleCfg(sshConfigPath: string): string {
  return [
    '# Written by isolate-wizard export: Ansible connects the way your ssh does (your ssh config,',
    '# its ProxyJump and known_hosts), host keys checked; unknown keys are refused, as by isolate-wizard.',
    '[defaults]',
    'inventory = inventory.yml',
    'host_key_checking = True',
    'interpreter_python = auto_silent',
    'gathering = explicit',
    'retry_files_enabled = False',
    // Each host's connection through a bastion is a new login there: sshd's MaxStartups (10
    // unauthenticated at once, by default) drops more; so at most 8 at once, as apply does.
    'forks = 8',
    // A handshake slower than ssh's default on a busy bastion is not a dead host.
    'timeout = 20',
    '',
    '[ssh_connection]',
    `ssh_args = -F ${shellWord(sshConfigPath)} -o StrictHostKeyChecking=yes -o ControlMaster=auto -o ControlPersist=60s`,
    'pipelining = True',
    // A connection refused at the handshake is tried again (a command cut mid-way that runs twice
    // finds the lock taken by its own batch and fails: the batch is rolled back).
    'retries = 2',
    '',
  ].join('\n');
}

// The plays. Fixed text: what differs per fleet is in the inventory and rules/.
const SITE_YML = `# Written by isolate-wizard export. Applies rules/<host>.<backend> (iw_backend in inventory.yml:
# iptables, nftables, or auto: nftables where nft is installed, else iptables, chosen on each
# server) with the safety of \`isolate-wizard apply\`, through the same server-side agent
# (files/agent.sh). With nftables our rules are one table, inet isolate_wizard, replaced in one
# transaction: no other table is touched and no ruleset flushed; our iptables rules go in the
# same batch, with the same way back.
#   1. every server but the bastions: lock, snapshot (the filter tables and our table, or its
#      absence), arm the rollback (iw_timeout seconds, on the server: a systemd timer, else a
#      detached process), validate (iptables-restore --test, nft -c), load;
#   2. the bastions and jump hosts (group iw_last), last: the same;
#   3. every server, over a NEW ssh connection: login works and its rules are the ones loaded;
#      only when every server passed, the rollback is cancelled and the rules saved for boot.
# Each step is judged for every server of the play at once (tasks/*.yml: no server fails alone,
# a gate after each step fails them all), so a failure anywhere stops the run and rolls the whole
# batch back now (not any_errors_fatal: it lets the other servers of a block with a rescue go on
# to the next step, and aborts without any rescue when a server is unreachable). A server that
# cannot be reached rolls back by itself at the deadline, as does every server if this run dies.
# -e iw_confirm=false stops before step 3's confirm (the batch then rolls back at the deadline
# unless confirmed: isolate-wizard confirm, or see README.md).

- name: Name this run's batch
  hosts: all
  gather_facts: false
  tasks:
    - name: One batch id for every server
      ansible.builtin.set_fact:
        iw_batch: "{{ iw_batch_id | default(now(utc=true, fmt='%Y%m%d-%H%M%S') ~ '-' ~ ('%06x' | format(16777215 | random))) }}"
      run_once: true

- name: Load the rules on every server but the bastions
  hosts: "all:!${LAST_GROUP}"
  gather_facts: false
  become: true
  tasks:
    - ansible.builtin.import_tasks: tasks/load.yml

- name: Load the rules on the bastions and jump hosts, last
  hosts: ${LAST_GROUP}
  gather_facts: false
  become: true
  tasks:
    - ansible.builtin.import_tasks: tasks/load.yml

- name: Over new connections, check every server, then keep the rules
  hosts: all
  gather_facts: false
  become: true
  tasks:
    - ansible.builtin.import_tasks: tasks/confirm.yml
`;

// A step never fails on one server alone: its answer is registered, then a gate that every server
// of the play evaluates alike stops them all at once, so all go to the rescue together and the run
// ends there (no host left). any_errors_fatal does not do this: the other servers of a block with a
// rescue go on to the next step, load or confirm, while the failed one rolls back; and an
// unreachable server aborts the play with no rescue at all.
const LOAD_YML = `# One server: lock, snapshot, arm the rollback, validate, load (see site.yml).
- name: Load
  block:
    # Tables of nftables-native managers (firewalld, Docker 29, kube-proxy…) filter on their own
    # hooks: their drops would win over these rules, which \`isolate-wizard apply\` checks and this
    # playbook does not; such servers are refused (iptables' own tables, ours and fail2ban's are
    # not theirs). Whether nft is there decides iw_backend auto.
    - name: Read whether nft is installed, and the server's nftables tables
      ansible.builtin.command:
        argv: [sh, -c, "command -v nft >/dev/null 2>&1 || { echo no-nft; exit 0; }; exec nft list tables"]
      register: iw_tables
      changed_when: false
      failed_when: false
      ignore_unreachable: true

    - name: Choose where this server's rules live (iw_backend auto - nftables where nft is installed)
      ansible.builtin.set_fact:
        iw_backend_here: "{{ 'iptables' if iw_backend == 'iptables' or (iw_backend == 'auto' and 'no-nft' in iw_tables.stdout_lines | default(['no-nft'])) else 'nftables' }}"

    # One round trip: the agent's text travels as an argument (data, never part of the command),
    # its new copy begins the batch and takes the agent's place under the host's lock only when
    # no other batch is pending, as \`apply\` does; the rules follow on stdin, as the agent reads them.
    - name: Lock, snapshot, arm the rollback, validate the rules (iptables-restore --test, nft -c)
      ansible.builtin.command:
        argv:
          - sh
          - -c
          - >-
            umask 077 && mkdir -p /var/lib/isolate-wizard/backups &&
            printf '%s\\n' "$3" > /var/lib/isolate-wizard/agent.sh.$$ &&
            exec sh /var/lib/isolate-wizard/agent.sh.$$ begin "$1" "$2" stage
          - sh
          - "{{ iw_batch }}"
          - "{{ iw_timeout }}"
          - "{{ lookup('file', playbook_dir ~ '/files/agent.sh') }}"
        stdin: "{{ lookup('file', playbook_dir ~ '/rules/' ~ inventory_hostname ~ '.' ~ iw_backend_here) }}"
      environment:
        IW_OWNER: "ansible-playbook {{ lookup('env', 'USER') }}"
      register: iw_begin
      changed_when: true
      failed_when: false
      ignore_unreachable: true

    - name: Go on only when every server is locked, its rules validated, and no other software's chains or tables are there
      ansible.builtin.assert:
        that: iw_problems | trim == ''
        fail_msg: "{{ iw_problems | trim }}"
        quiet: true
      vars:
        iw_problems: >-
          {% for host in ansible_play_batch %}{% set answer = hostvars[host].iw_begin | default({}) %}
          {% set tables = hostvars[host].iw_tables | default({}) %}{% set others = tables.stdout_lines | default([])
          | reject('equalto', 'no-nft') | reject('match', iw_allowed_tables) | list %}
          {% if answer.unreachable | default(false) %}{{ host }}: unreachable ({{ answer.msg | default('') | trim }});
          {% elif hostvars[host].iw_backend_here == 'nftables' and 'no-nft' in tables.stdout_lines | default([]) %}{{ host }}: the
          nftables backend needs nft, which is not installed there (export with --backend auto to use iptables on such a host);
          {% elif answer.rc | default(-1) != 0 %}{{ host }}: {{ (answer.stderr | default('') or answer.msg | default('no answer')) | trim }};
          {% elif tables.rc | default(-1) != 0 and hostvars[host].iw_backend_here == 'nftables' %}{{ host }}: its nftables tables could not be listed
          ({{ (tables.stderr | default('') or tables.msg | default('no answer')) | trim }});
          {% elif others %}{{ host }}: its nftables ruleset holds tables another manager owns ({{ others
          | map('regex_replace', '^table ', '') | join(', ') }}), whose drops this playbook does not check: use isolate-wizard apply for this server;
          {% endif %}{% endfor %}

    - name: Load the rules (a failure puts the snapshot back at once)
      ansible.builtin.command:
        argv: [sh, /var/lib/isolate-wizard/agent.sh, load, "{{ iw_batch }}"]
      register: iw_load
      failed_when: false
      ignore_unreachable: true

    - name: Go on only when every server loaded its rules
      ansible.builtin.assert:
        that: iw_problems | trim == ''
        fail_msg: "{{ iw_problems | trim }}"
        quiet: true
      vars:
        iw_problems: >-
          {% for host in ansible_play_batch %}{% set answer = hostvars[host].iw_load | default({}) %}
          {% if answer.unreachable | default(false) %}{{ host }}: unreachable during the load ({{ answer.msg | default('') | trim }});
          {% elif answer.rc | default(-1) != 0 %}{{ host }}: {{ (answer.stderr | default('') or answer.msg | default('no answer')) | trim }};
          {% endif %}{% endfor %}

  rescue:
    - ansible.builtin.import_tasks: rollback-this-server.yml
    # Noted, not failed: the run goes on to the last play, which stops every server of the batch.
    - name: Note why the batch stops
      ansible.builtin.set_fact:
        iw_stop: "{{ ansible_failed_result.msg | default('?') }}"

  when: iw_stopped | length == 0
`;

const CONFIRM_YML = `# Every server, once all are loaded: a new login, the live rules checked, then keep them.
- name: Check and keep
  block:
    - name: Stop here when an earlier step stopped the batch
      ansible.builtin.assert:
        that: iw_stopped | length == 0
        fail_msg: "{{ iw_stopped | first | default('') }}"
        quiet: true

    - name: Close the connection, so the next task logs in anew through the new rules
      ansible.builtin.meta: reset_connection

    - name: Over a new ssh connection, read the live rules and the batch's state
      ansible.builtin.command:
        argv: [sh, /var/lib/isolate-wizard/agent.sh, show]
      register: iw_live
      changed_when: false
      failed_when: false
      ignore_unreachable: true

    # Live against sent, in what survives nft's and iptables-save's own spelling (shape): in each
    # filter table the number of our chains (iptables-save sorts them) and of our rules (others' are
    # theirs); in our table its sets
    # and chains and the number of rules in each chain ('' = our table absent).
    - name: Go on only when every server shows this batch loaded, with the rules that were sent
      ansible.builtin.assert:
        that: iw_problems | trim == ''
        fail_msg: "{{ iw_problems | trim }}"
        quiet: true
      vars:
        iw_problems: >-
          {%- macro shape(text, name) -%}{%- set at = namespace(inside=false, chain=false, rules=0, chains=0) -%}
          {%- for line in text.splitlines() -%}{%- set word = line | trim -%}
          {%- if line is match('#iw:[a-z0-9]+$') -%}{%- set at.inside = line == '#iw:' ~ name -%}
          {%- elif not at.inside or word == '' -%}
          {%- elif word is match(':IW-') -%}{%- set at.chains = at.chains + 1 -%}
          {%- elif word is match(iw_our_rules) -%}{%- set at.rules = at.rules + 1 -%}
          {%- elif word is match('(table|chain|set|map) [^ ]+( [^ ]+)? [{]$') -%}{{ word[:-2] }}{%- set at.chain = word.startswith('chain ') -%}
          {%- set at.rules = 0 -%}{{ '' if at.chain else ', ' }}
          {%- elif word == '}' -%}{{ ': ' ~ at.rules ~ ' rules, ' if at.chain else '' }}{%- set at.chain = false -%}
          {%- elif at.chain and word is not match('(type|policy) ') -%}{%- set at.rules = at.rules + 1 -%}
          {%- endif -%}{%- endfor -%}{%- if name != 'nft' -%}{{ at.chains }} chains and {{ at.rules }} rules of ours{%- endif -%}{%- endmacro -%}
          {% for host in ansible_play_batch %}{% set answer = hostvars[host].iw_live | default({}) %}
          {% set lines = answer.stdout_lines | default([]) %}{% set live = answer.stdout | default('') %}
          {% set sent = lookup('file', playbook_dir ~ '/rules/' ~ host ~ '.' ~ hostvars[host].iw_backend_here | default('none')) if answer.rc | default(-1) == 0 else '' %}
          {% if answer.unreachable | default(false) %}{{ host }}: no new login ({{ answer.msg | default('') | trim }});
          {% elif answer.rc | default(-1) != 0 %}{{ host }}: {{ (answer.stderr | default('') or answer.msg | default('no answer')) | trim }};
          {% elif ('batch=' ~ iw_batch) not in lines or 'phase=loaded' not in lines %}{{ host }}: batch {{ iw_batch }} is not
          loaded there ({{ lines | select('match', '^(phase|batch)=') | join(', ') }});
          {% elif shape(live, 'v4') != shape(sent, 'v4') or shape(live, 'v6') != shape(sent, 'v6') %}{{ host }}: the live iptables
          rules are not the ones this batch loaded (IPv4 {{ shape(live, 'v4') }}, IPv6 {{ shape(live, 'v6') }}; sent IPv4
          {{ shape(sent, 'v4') }}, IPv6 {{ shape(sent, 'v6') }});
          {% elif shape(live, 'nft') != shape(sent, 'nft') %}{{ host }}: {% if shape(sent, 'nft') == '' %}our nftables table inet
          isolate_wizard is still there{% elif shape(live, 'nft') == '' %}our nftables table inet isolate_wizard is not there{% else %}our
          live nftables table is not the one this batch loaded ({{ shape(live, 'nft') }}; sent {{ shape(sent, 'nft') }}){% endif %};
          {% endif %}{% endfor %}

    - name: Keep the rules (cancel the rollback, save them for boot)
      ansible.builtin.command:
        argv: [sh, /var/lib/isolate-wizard/agent.sh, confirm, "{{ iw_batch }}"]
      register: iw_confirmed
      when: iw_confirm | bool
      failed_when: false
      ignore_unreachable: true

    - name: Say what was kept
      ansible.builtin.assert:
        that: iw_problems | trim == ''
        fail_msg: "{{ iw_problems | trim }}"
        success_msg: >-
          {% if iw_confirm | bool %}kept batch {{ iw_batch }}{% set said = iw_confirmed.stdout_lines %}{% if 'persisted_nft=unit' in said %};
          saved for boot (/etc/isolate-wizard/isolate-wizard.nft, loaded by isolate-wizard.service){% elif 'persisted_nft=file' in said %};
          our table is saved in /etc/isolate-wizard/isolate-wizard.nft, but nothing loads it at boot here (no systemd):
          load it with nft -f from the boot scripts{% elif 'persisted=unit' in said %};
          saved for boot (our chains in /etc/isolate-wizard, loaded by isolate-wizard-iptables.service){% elif 'persisted=file' in said %};
          our chains are saved in /etc/isolate-wizard, but nothing loads them at boot here (no systemd){% endif %}{% else %}batch
          {{ iw_batch }} left pending: it rolls back by itself {{ iw_timeout }} s after its lock unless
          confirmed{% endif %}
      vars:
        iw_problems: >-
          {% for host in ansible_play_batch if iw_confirm | bool %}{% set answer = hostvars[host].iw_confirmed | default({}) %}
          {% if answer.unreachable | default(false) or answer.rc | default(-1) != 0 %}{{ host }}: not kept
          ({{ (answer.stderr | default('') or answer.msg | default('no answer')) | trim }});
          {% endif %}{% endfor %}

  rescue:
    - ansible.builtin.import_tasks: rollback-this-server.yml

    - name: Say what happened
      ansible.builtin.fail:
        msg: >-
          batch {{ iw_batch }} stopped: {{ ansible_failed_result.msg | default('?') }}
          Rolled back now: {{ ansible_play_hosts_all | map('extract', hostvars) | selectattr('iw_rollback', 'defined')
          | selectattr('iw_rollback.rc', 'defined') | selectattr('iw_rollback.rc', 'equalto', 0) | map(attribute='inventory_hostname') | join(', ') or 'none' }}.
          Not reached (they roll back by themselves at the deadline): {{ ansible_play_hosts_all | map('extract', hostvars)
          | selectattr('iw_rollback', 'defined') | selectattr('iw_rollback.unreachable', 'defined') | map(attribute='inventory_hostname') | join(', ') or 'none' }}.
          The others never began, were already back, or were kept (isolate-wizard status shows which).
`;

// Each server rolls itself back (no delegation: an unreachable server in a delegated loop ends
// the whole play in ansible-core 2.14, ignore_unreachable or not); once per batch.
const ROLLBACK_THIS_SERVER_YML = `# A step failed: put this server back now. A server whose batch never began answers that the batch
# is not its own; a server that cannot be reached rolls back by itself at its deadline.
- name: Roll this server back now
  ansible.builtin.command:
    argv: [sh, /var/lib/isolate-wizard/agent.sh, rollback, "{{ iw_batch }}"]
  ignore_unreachable: true
  failed_when: false
  changed_when: iw_rollback_now.rc | default(1) == 0
  register: iw_rollback_now
  when: iw_rollback is not defined

# Kept apart from the register (which a skipped run would overwrite) for the last play's report.
- name: Keep what it answered
  ansible.builtin.set_fact:
    iw_rollback: "{{ iw_rollback_now }}"
  when: iw_rollback is not defined
`;

const PROJECT_README = `# Firewall rules for this fleet (written by isolate-wizard export)

    ansible-playbook site.yml                  # apply, check over new connections, keep
    ansible-playbook site.yml -e iw_timeout=600 # a longer rollback deadline (seconds, default in inventory.yml)
    ansible-playbook site.yml -e iw_confirm=false  # leave the batch pending: it rolls back by itself

- \`rules/<host>.iptables\`, \`rules/<host>.nftables\`: each server's rules as the agent reads them,
  for the backend in \`iw_backend\` (inventory.yml; auto ships both and uses nftables where nft is
  installed, else iptables, chosen on each server at run time). \`.iptables\`: after \`#iw:v4\` and
  \`#iw:v6\`, our chains (IW-INPUT, IW-FORWARD, IW-OUTPUT and one jump into each) exactly as
  \`isolate-wizard plan --host H --family 4|6 --format iptables\` prints them, loaded with
  iptables-restore --noflush: other software's rules are left as they are (and our nftables table,
  if any, is removed). \`.nftables\`: nothing of ours in iptables (our chains go in the same batch),
  then after \`#iw:nft\` our table \`inet isolate_wizard\` exactly as \`plan --host H --format nft\`
  prints it. Loading it replaces our table in one transaction; no other table is touched, no
  ruleset flushed.
- Servers with another manager's nftables table (firewalld, Docker, kube-proxy) are refused:
  their drops would win over these rules, and only \`isolate-wizard apply\` checks them.
  fail2ban's tables (\`f2b-*\`) are kept as they are, bans included.
- \`files/agent.sh\`: isolate-wizard's server-side agent (lock, snapshot, rollback watchdog,
  confirm), installed in /var/lib/isolate-wizard as \`isolate-wizard apply\` does: \`isolate-wizard
  status\`, \`confirm\` and \`rollback\` work on the batches this playbook leaves.
- Needs ansible-core (Debian's \`ansible-core\` or \`ansible\`), python3 and sudo (or root) on the servers.
  Add \`-K\` when sudo asks for a password.
`;

/** Every file of the project but the agent, by path relative to the project directory. */
export function ansibleProject(input: AnsibleExportInput): Map<string, string> {
  const last = lastHosts(input.inventory, input.resolved);
  const files = new Map<string, string>([
    [EXPORT_MARKER, 'isolate-wizard export --format ansible\n'],
    ['ansible.cfg', ansibleCfg(input.sshConfigPath)],
    ['inventory.yml', inventoryYaml(input, last)],
    ['site.yml', SITE_YML],
    ['tasks/load.yml', LOAD_YML],
    ['tasks/confirm.yml', CONFIRM_YML],
    ['tasks/rollback-this-server.yml', ROLLBACK_THIS_SERVER_YML],
    ['README.md', PROJECT_README],
  ]);
  for (const host of input.plan.hosts) {
    for (const backend of shippedBackends(input.backend)) files.set(`rules/${host.name}.${backend}`, input.payload(host.name, backend));
  }
  return files;
}
