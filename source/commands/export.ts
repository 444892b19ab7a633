// `isolate-wizard export --format ansible --out DIR`: the fleet as a self-contained Ansible project
// (see core/ansible-export.ts). Nothing on any server changes; hosts without addresses in the
// inventory are discovered over SSH first, as by `plan`.
import {existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {homedir} from 'node:os';
import path from 'node:path';
import {AGENT_FILE, ansibleProject, DEFAULT_ANSIBLE_TIMEOUT, EXPORT_MARKER, roleGroup} from '../core/ansible-export.js';
import {DEFAULT_BACKEND_CHOICE, hostCandidate, parseBackendChoice, type Backend} from '../core/backend.js';
import {InputError, RefusedError, UsageError} from '../core/errors.js';
import {formatLockout} from '../core/lockout.js';
import {buildPlan} from '../core/plan.js';
import {AGENT_SCRIPT} from '../remote/agent-script.js';
import {candidatePayload, prepareRules} from '../remote/apply-protocol.js';
import {stringOption, type Command} from './command.js';
import {planInputs} from './plan.js';

const FORMATS = ['ansible'] as const;

function parseTimeout(value: string | undefined): number {
  if (value === undefined) return DEFAULT_ANSIBLE_TIMEOUT;
  if (!/^\d+$/.test(value) || Number(value) < 30 || Number(value) > 86_400) {
    throw new InputError([`--timeout: "${value}" is not a whole number of seconds between 30 and 86400`]);
  }
  return Number(value);
}

/** DIR may be new, empty, or an earlier export (then replaced); anything else is refused. */
function checkOutDir(dir: string): void {
  if (!existsSync(dir)) return;
  if (!statSync(dir).isDirectory()) throw new InputError([`--out: ${dir} is not a directory`]);
  const entries = readdirSync(dir);
  if (entries.length > 0 && !entries.includes(EXPORT_MARKER)) {
    throw new InputError([`--out: ${dir} is not empty and holds no earlier export: give a new or empty directory`]);
  }
}

export const exportCommand: Command = {
  options: {
    inventory: {type: 'string', short: 'i'},
    format: {type: 'string'},
    out: {type: 'string', short: 'o'},
    timeout: {type: 'string'},
    backend: {type: 'string'},
    'accept-new': {type: 'boolean'},
  },
  async run(values, _positionals, io) {
    const format = stringOption(values, 'format');
    if (format === undefined) throw new UsageError('--format ansible is required');
    if (!(FORMATS as readonly string[]).includes(format)) throw new InputError([`--format: "${format}" is not one of ${FORMATS.join(', ')}`]);
    const out = stringOption(values, 'out');
    if (out === undefined || out === '') throw new UsageError('--out DIR is required');
    if (stringOption(values, 'inventory') === undefined) throw new UsageError('--inventory FILE is required');
    const timeoutSeconds = parseTimeout(stringOption(values, 'timeout'));
    const backendFlag = parseBackendChoice(stringOption(values, 'backend'));
    const dir = path.resolve(io.cwd, out);
    checkOutDir(dir);

    const {inventory, facts, resolved} = await planInputs(values, io);
    const groups = new Map<string, string>();
    for (const role of new Set(inventory.hosts.flatMap((host) => host.roles))) {
      const other = groups.get(roleGroup(role));
      if (other !== undefined) throw new InputError([`roles "${other}" and "${role}" would share the Ansible group ${roleGroup(role)}: rename one`]);
      groups.set(roleGroup(role), role);
    }
    const plan = buildPlan(inventory, facts, resolved, {withAccess: false});
    const cuts = formatLockout(plan.lockout.filter((finding) => finding.severity === 'error'));
    if (cuts.length > 0) throw new RefusedError(`refused, nothing written:\n${cuts.join('\n')}`);
    for (const line of formatLockout(plan.lockout.filter((finding) => finding.severity === 'warning'))) io.stderr.write(`isolate-wizard: ${line}\n`);

    // Each host's rules as apply stages them (our chains or our table), checked to read back as planned.
    const compiledOf = new Map(plan.hosts.map((host) => [host.name, host.compiled]));
    const payload = (name: string, backend: Backend): string => {
      const compiled = compiledOf.get(name);
      if (!compiled) throw new InputError([`${name}: the compiler produced no rules for it`]);
      return candidatePayload(prepareRules(name, hostCandidate(compiled, backend)));
    };
    const backend = backendFlag ?? inventory.options.backend ?? DEFAULT_BACKEND_CHOICE;
    const sshConfig = path.join(io.env.HOME ?? homedir(), '.ssh', 'config');
    const files = ansibleProject({
      inventory,
      plan,
      resolved,
      sshConfigPath: existsSync(sshConfig) ? sshConfig : '/dev/null',
      timeoutSeconds,
      backend,
      payload,
    });
    files.set(AGENT_FILE, AGENT_SCRIPT);
    // An earlier export's rules of hosts no longer in the inventory must not linger.
    rmSync(path.join(dir, 'rules'), {recursive: true, force: true});
    for (const [file, text] of files) {
      const target = path.join(dir, file);
      mkdirSync(path.dirname(target), {recursive: true});
      writeFileSync(target, text, {mode: file === AGENT_FILE ? 0o600 : 0o644});
    }
    io.stdout.write(
      `wrote ${dir}: ${plan.hosts.length} hosts, backend ${backend}${backend === 'auto' ? ' (nftables where nft is installed, else iptables: chosen on each server)' : ''} (inventory.yml, rules/, site.yml)\n` +
        `  cd ${dir} && ansible-playbook site.yml\n`,
    );
    return 0;
  },
};
