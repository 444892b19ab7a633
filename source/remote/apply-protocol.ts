// The apply protocol on ONE host, in the order it runs. Every remote command is a constant of
// this file; batch ids and seconds are generated here and checked by regex before use; rulesets
// and the owner line travel on stdin.
//
//   1-4. installBeginStage  in one round trip: put the agent in place, lock (exit 3 when held),
//                       snapshot iptables-save/ip6tables-save, arm a lease watchdog (so even a
//                       client dying now leaves nothing locked forever), and `iptables-restore
//                       --noflush --test` our chains as planned (prepareRules); nothing changes yet
//   3. (caller)         keep the snapshot locally
//   5. loadCandidate    our chains, iptables-restore --noflush v4 then v6; any failure puts the
//                       snapshot's part of ours back at once
//   6. armDeadline      the operator's countdown, on the server's clock
//   7. verifyLoaded     over a NEW connection: login works, the live rules are the ones sent
//      (verifyAndHold: the same, then waits there for the word to confirm, for apply --yes)
//   8. confirmBatch     over a new connection: check the server did not reboot and the live
//                       rules are the ones loaded, cancel the watchdog, persist; exit 4 = expired,
//                       8 = refused (rebooted / changed; the batch stays pending)
//   9. rollbackBatch    restore now, check live == snapshot, then cancel the watchdog
// A restore that cannot be verified (exit 7) keeps the batch pending and the server retrying:
// RestoreFailedError, reported as "could not restore: act now", never as restored.
import {hostname, userInfo} from 'node:os';
import {randomBytes} from 'node:crypto';
import {HostError, RefusedError} from '../core/errors.js';
import {diffRulesets, parseIptablesSave} from '../core/iptables-save.js';
import {canonicalFilter, hasNothingOurs, ownPart, toOwnChains} from '../core/own-chains.js';
import type {Ruleset} from '../core/model.js';
import {renderRuleset} from '../core/render.js';
import {stripControl} from '../core/terminal-text.js';
import {AGENT_EXIT, AGENT_SCRIPT, SECTION_NFT, SECTION_V4, SECTION_V6} from './agent-script.js';
import {nftAccessDifferences} from '../core/nft-equivalence.js';
import {parseNftJson} from '../core/nft-ruleset.js';
import type {Connector, ExecOptions, ExecResult, HostTarget, RemoteHost} from './types.js';

/** Single quotes for sh: the text exactly, whatever it holds. */
function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

// The only command strings sent by the protocol. `%BATCH%` / `%SECONDS%` are replaced by values
// that passed BATCH_PATTERN / a safe-integer check, nothing else.
const COMMANDS = {
  // install + begin + stage in one round trip, for the candidate as planned (the client stages
  // again only when the snapshot holds other software's chains to keep). The agent's text, a
  // constant of this program, travels inside the command (printf is a builtin: no program to
  // split it from the data), so stdin is free for the owner line and then the candidate. The new
  // copy (a temp name per remote shell, $$: two runs at once must not interleave their writes)
  // runs begin, and takes the agent's place under its lock only when no batch is pending (a
  // batch keeps the agent it began with). mkdir only on a first install (each program started
  // costs the server a fork and an exec).
  installBeginStage:
    'umask 077 && { [ -d /var/lib/isolate-wizard/backups ] || mkdir -p /var/lib/isolate-wizard/backups; } && ' +
    // A full disk leaves no partial copy behind, and says so (exit 9, as the agent would).
    `{ printf '%s' ${shellQuote(AGENT_SCRIPT)} > /var/lib/isolate-wizard/agent.sh.$$ || ` +
    "{ rm -f /var/lib/isolate-wizard/agent.sh.$$; echo 'agent: cannot write the agent (disk full?): nothing changed' >&2; exit 9; }; } && " +
    'IFS= read -r IW_OWNER && export IW_OWNER && exec sh /var/lib/isolate-wizard/agent.sh.$$ begin %BATCH% %SECONDS% stage',
  stage: 'sh /var/lib/isolate-wizard/agent.sh stage %BATCH%',
  load: 'sh /var/lib/isolate-wizard/agent.sh load %BATCH%',
  arm: 'sh /var/lib/isolate-wizard/agent.sh arm %BATCH% %SECONDS%',
  show: 'sh /var/lib/isolate-wizard/agent.sh show',
  // show, then wait for "confirm" on stdin (apply --yes: confirm over the verifying connection)
  verify: 'sh /var/lib/isolate-wizard/agent.sh verify %BATCH%',
  confirm: 'sh /var/lib/isolate-wizard/agent.sh confirm %BATCH%',
  rollback: 'sh /var/lib/isolate-wizard/agent.sh rollback %BATCH%',
  unlock: 'sh /var/lib/isolate-wizard/agent.sh unlock %BATCH%',
  // `status` must work on a host that never ran the agent: no agent = not managed.
  status: 'if [ -f /var/lib/isolate-wizard/agent.sh ]; then sh /var/lib/isolate-wizard/agent.sh status; else echo managed=no; fi',
  installPersistence: 'sh /var/lib/isolate-wizard/agent.sh install-persistence',
  // status: what the last confirmed batch loaded (read-only; "none" where nothing was confirmed)
  confirmed: 'if [ -f /var/lib/isolate-wizard/agent.sh ]; then sh /var/lib/isolate-wizard/agent.sh confirmed; else echo none; fi',
  // rollback --to: the snapshot a batch took (read-only; "missing" when the server has none).
  readBackup:
    'b=/var/lib/isolate-wizard/backups/%BATCH%; if [ -f "$b.v4" ] && [ -f "$b.v6" ]; then ' +
    `printf '#iw:v4\\n' && cat "$b.v4" && printf '\\n#iw:v6\\n' && cat "$b.v6" && ` +
    `{ [ ! -f "$b.nft" ] || { printf '\\n#iw:nft\\n' && cat "$b.nft"; }; }; else echo missing; fi`,
} as const;

export const BATCH_PATTERN = /^[a-z0-9-]{1,64}$/;

/** A new batch id: sortable by time (the agent prunes old backups by name), unique by chance. */
export function newBatchId(now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15); // 20261124-013000
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

function command(template: string, batch?: string, seconds?: number): string {
  if (batch !== undefined && !BATCH_PATTERN.test(batch)) throw new Error(`invalid batch id: ${JSON.stringify(batch)}`);
  if (seconds !== undefined && !(Number.isSafeInteger(seconds) && seconds >= 1 && seconds <= 86_400)) {
    throw new Error(`invalid number of seconds: ${seconds}`);
  }
  return template.replace('%BATCH%', batch ?? '').replace('%SECONDS%', seconds === undefined ? '' : String(seconds));
}

/** "user@machine pid=N": who holds a lock, shown to a second operator. */
export function ownerLine(): string {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // no passwd entry (containers): keep "unknown"
  }
  return `${user}@${hostname()} pid=${process.pid}`;
}

/**
 * The agent's sections: #iw:v4, #iw:v6 and, last and optional, #iw:nft (our nftables table, as
 * `nft list table` prints it; empty = the table is absent).
 */
export function splitPayload(text: string): {v4: string; v6: string; nft: string} {
  const lines = text.split('\n');
  const v4Start = lines.indexOf(SECTION_V4);
  const v6Start = lines.indexOf(SECTION_V6);
  if (v4Start < 0 || v6Start < v4Start) throw new Error('the agent answered without its #iw:v4 / #iw:v6 sections');
  const found = lines.indexOf(SECTION_NFT, v6Start);
  const nftStart = found < 0 ? lines.length : found;
  const section = (from: number, to: number): string => {
    const body = lines.slice(from + 1, to).join('\n');
    return body.trim() === '' ? '' : `${body.replace(/\n*$/, '')}\n`;
  };
  return {v4: section(v4Start, v6Start), v6: section(v6Start, nftStart), nft: found < 0 ? '' : section(nftStart, lines.length)};
}

function keyValues(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const at = line.indexOf('=');
    // Values are shown (owner, held_by): no terminal control sequences from the server.
    if (at > 0) values.set(line.slice(0, at), stripControl(line.slice(at + 1)));
  }
  return values;
}

function firstLine(result: ExecResult): string {
  const text = (result.stderr.trim() || result.stdout.trim()).replace(/^agent: /, '');
  return text.split('\n').slice(0, 3).map(stripControl).join('; ') || `exit ${result.code}`;
}

async function run(
  remote: RemoteHost,
  template: string,
  options: {batch?: string; seconds?: number; stdin?: string; reply?: ExecOptions['reply']} = {},
): Promise<ExecResult> {
  return remote.exec(command(template, options.batch, options.seconds), {root: true, stdin: options.stdin ?? '', ...(options.reply ? {reply: options.reply} : {})});
}

// ---------------------------------------------------------------------------
// Errors the fleet and the commands tell apart.

/** Another batch holds the host's lock (exit 3). */
export class LockHeldError extends RefusedError {
  constructor(
    readonly host: string,
    readonly holder: string,
    readonly since: Date | undefined,
    readonly secondsLeft: number | undefined,
    /** Its deadline passed long ago and no watchdog acted (a reboot?): only a rollback ends it. */
    readonly stale = false,
  ) {
    super(
      `${host}: locked by ${holder || 'another run'}` +
        (since ? ` since ${since.toISOString()}` : '') +
        (stale
          ? ': that batch is stale (its deadline passed and no watchdog acted: a reboot?); nothing was restored by itself: ' +
            `roll it back with "isolate-wizard rollback --host ${host}" (it restores only if the live rules are still that batch's)`
          : secondsLeft !== undefined
            ? ` (its deadline is in ${secondsLeft} s; wait, or confirm/roll back from that machine)`
            : ''),
    );
  }
}

/** The host answered and said no (as opposed to a link that failed): retrying cannot help. */
export class AgentError extends HostError {}

/** The batch is no longer pending (exit 4). `serverRolledBack`: the server said it expired, its restore verified. */
export class BatchExpiredError extends AgentError {
  constructor(
    host: string,
    message: string,
    readonly serverRolledBack = false,
  ) {
    super(host, message);
  }
}

/** `iptables-restore --test` refused the candidate; nothing changed on the host. */
export class CandidateRejectedError extends AgentError {}

/**
 * Exit 7: the server could not put the previous rules back (or could not verify it did). Its rules
 * are neither the new ones confirmed nor the previous ones; the batch stays pending and the
 * server's watchdog retries. Never reported as restored.
 */
export class RestoreFailedError extends AgentError {
  constructor(host: string, detail: string) {
    super(host, detail);
    this.message = `could not restore: act now — ${host}: ${detail.replace(/^could not restore: act now: /, '')}`;
  }
}

/** Exit 8: confirm refused, nothing persisted; the batch is still pending with its watchdog. */
export class ConfirmRefusedError extends AgentError {
  constructor(
    host: string,
    readonly reason: 'rebooted' | 'changed',
    detail: string,
  ) {
    super(
      host,
      `not confirmed: ${reason === 'rebooted' ? 'the server rebooted since load' : 'the live rules changed since load'}` +
        `${detail ? ` (${detail.trim().replace(/;$/, '')})` : ''}; nothing persisted, the batch is still pending: ` +
        'it rolls back by itself at its deadline, or run rollback now',
    );
  }
}

/** Which watchdog the server armed: a systemd timer unit, or a detached process. */
export type WatchdogKind = 'unit' | 'detached';

function watchdogKind(text: string): WatchdogKind | undefined {
  const kind = keyValues(text.split(`${SECTION_V4}\n`)[0] ?? '').get('watchdog');
  return kind === 'unit' || kind === 'detached' ? kind : undefined;
}

/** Errors every op maps the same way: 7 could not restore, 9 could not write, 4 not pending. */
function commonFailure(remote: RemoteHost, result: ExecResult): Error | undefined {
  if (result.code === AGENT_EXIT.restoreFailed) return new RestoreFailedError(remote.name, firstLine(result));
  if (result.code === AGENT_EXIT.notPending) {
    const why = firstLine(result);
    return new BatchExpiredError(remote.name, why, / is expired$/.test(why));
  }
  if (result.code === AGENT_EXIT.writeFailed) return new AgentError(remote.name, `the server could not write (disk full?): ${firstLine(result)}`);
  return undefined;
}

// ---------------------------------------------------------------------------
// 1-4. Install, lock, snapshot and lease; test the rules as planned

export interface Snapshot {
  readonly v4: string;
  readonly v6: string;
  /** Our nftables table as listed, '' when absent (and in copies kept before the nftables backend). */
  readonly nft?: string;
}

/**
 * Our nftables table for a host (the nftables backend): its text, and the iptables rules it was
 * compiled from, which the live table is held to after a load. Without them (a snapshot put back
 * by rollback --to) the live listing must equal the text.
 */
export interface NftCandidate {
  readonly text: string;
  readonly planned?: {readonly v4: Ruleset; readonly v6: Ruleset};
}

function beginOutcome(remote: RemoteHost, result: ExecResult): Snapshot {
  if (result.code === AGENT_EXIT.lockHeld) {
    const info = keyValues(result.stdout);
    const since = Number(info.get('since'));
    const deadline = Number(info.get('deadline'));
    const now = Number(info.get('now'));
    throw new LockHeldError(
      remote.name,
      info.get('held_by') ?? '',
      Number.isFinite(since) && since > 0 ? new Date(since * 1000) : undefined,
      Number.isFinite(deadline) && Number.isFinite(now) && deadline > 0 ? Math.max(0, deadline - now) : undefined,
      info.get('stale') === 'yes',
    );
  }
  if (result.code === AGENT_EXIT.writeFailed) throw new AgentError(remote.name, `lock/snapshot failed, nothing changed: ${firstLine(result)}`);
  if (result.code !== 0) throw new AgentError(remote.name, `lock/snapshot failed: ${firstLine(result)}`);
  return splitPayload(result.stdout);
}

// ---------------------------------------------------------------------------
// 3. Our chains

export interface PreparedRules {
  /** What is loaded: our chains (IW-*) and the jumps into them, nothing else (see own-chains.ts). */
  readonly v4: Ruleset;
  readonly v6: Ruleset;
  readonly v4Text: string;
  readonly v6Text: string;
  /** Our nftables table, '' = it must be absent after the load (the iptables backend). */
  readonly nftText: string;
  readonly nftPlanned?: {readonly v4: Ruleset; readonly v6: Ruleset};
}

/** Renders our chains and checks the text reads back as the same rules (a renderer bug must not reach a server). */
function renderChecked(host: string, ruleset: Ruleset): string {
  const text = renderRuleset(ruleset);
  let reread: Ruleset;
  try {
    reread = parseIptablesSave(text, ruleset.family);
  } catch (error) {
    throw new HostError(host, `the rendered IPv${ruleset.family} rules do not read back: ${error instanceof Error ? error.message : String(error)}`);
  }
  const differences = diffRulesets(ruleset, reread);
  if (differences.length > 0 || !text.includes('*filter')) {
    throw new HostError(host, `the rendered IPv${ruleset.family} rules differ from the plan (${differences[0] ?? 'no *filter table'})`);
  }
  return text;
}

/** The candidate as the agent loads it: the compiled rules in our own chains (or a snapshot's part of ours, as it is). */
export function prepareRules(host: string, candidate: {v4: Ruleset; v6: Ruleset; nft?: NftCandidate}): PreparedRules {
  const v4 = toOwnChains(candidate.v4);
  const v6 = toOwnChains(candidate.v6);
  return {
    v4,
    v6,
    v4Text: renderChecked(host, v4),
    v6Text: renderChecked(host, v6),
    nftText: candidate.nft ? candidate.nft.text.replace(/\n*$/, '\n') : '',
    ...(candidate.nft?.planned ? {nftPlanned: candidate.nft.planned} : {}),
  };
}

// ---------------------------------------------------------------------------
// 4. Validate

/** What installBeginStage found: the snapshot, and whether the planned candidate passed --test. */
export interface BeganAndStaged {
  readonly snapshot: Snapshot;
  /** Undefined when staged; else why iptables-restore --test refused it (the batch is locked). */
  readonly rejected?: string;
  /** The texts that were staged. */
  readonly v4Text: string;
  readonly v6Text: string;
  readonly nftText: string;
  /** The watchdog the server armed (undefined: an agent that does not say). */
  readonly watchdog?: WatchdogKind;
}

/** The #iw:nft section only when there is a table to load: without it the agent removes ours. */
export function candidatePayload(texts: StagedTexts): string {
  const nft = texts.nftText.trim() === '' ? '' : `${SECTION_NFT}\n${texts.nftText.replace(/\n*$/, '\n')}`;
  return `${SECTION_V4}\n${texts.v4Text.replace(/\n*$/, '\n')}${SECTION_V6}\n${texts.v6Text.replace(/\n*$/, '\n')}${nft}`;
}

export interface StagedTexts {
  readonly v4Text: string;
  readonly v6Text: string;
  readonly nftText: string;
}

/**
 * Installs the agent, locks the host for `batch` (LockHeldError when another batch holds it),
 * snapshots its rules, arms a watchdog for `leaseSeconds`, and stages the rules as planned, in
 * one round trip. A rejected candidate is returned, not thrown: the batch stays locked.
 */
export async function installBeginStage(
  remote: RemoteHost,
  batch: string,
  leaseSeconds: number,
  planned: StagedTexts,
  owner = ownerLine(),
): Promise<BeganAndStaged> {
  const ownerText = owner.replace(/[\r\n]+/g, ' ');
  const result = await run(remote, COMMANDS.installBeginStage, {
    batch,
    seconds: leaseSeconds,
    stdin: `${ownerText}\n${candidatePayload(planned)}`,
  });
  const watchdog = watchdogKind(result.stdout);
  const kind = watchdog === undefined ? {} : {watchdog};
  if (result.code === AGENT_EXIT.candidateRejected) {
    return {snapshot: splitPayload(result.stdout), rejected: firstLine(result), v4Text: planned.v4Text, v6Text: planned.v6Text, nftText: planned.nftText, ...kind};
  }
  return {snapshot: beginOutcome(remote, result), v4Text: planned.v4Text, v6Text: planned.v6Text, nftText: planned.nftText, ...kind};
}

// ---------------------------------------------------------------------------
// 5. Load (atomic per family; the agent restores the snapshot itself when either fails: exit 6
// once that restore is verified, exit 7 while it is not)

export async function loadCandidate(remote: RemoteHost, batch: string): Promise<void> {
  const result = await run(remote, COMMANDS.load, {batch});
  const failure = commonFailure(remote, result);
  if (failure) throw failure;
  if (result.code === AGENT_EXIT.loadFailed) throw new AgentError(remote.name, `load failed: ${firstLine(result)}`);
  if (result.code !== 0) throw new AgentError(remote.name, `load failed: ${firstLine(result)}`);
}

// ---------------------------------------------------------------------------
// 6. Countdown

export interface Armed {
  /** Seconds since the epoch on the server's clock. */
  readonly deadline: number;
  /** The server's clock when armed (the deadline is `seconds` after it, whatever the skew). */
  readonly serverNow: number;
  readonly watchdog?: WatchdogKind;
}

export async function armDeadline(remote: RemoteHost, batch: string, seconds: number): Promise<Armed> {
  const result = await run(remote, COMMANDS.arm, {batch, seconds});
  const failure = commonFailure(remote, result);
  if (failure) throw failure;
  if (result.code !== 0) throw new AgentError(remote.name, `cannot arm the rollback timer: ${firstLine(result)}`);
  const values = keyValues(result.stdout);
  const watchdog = watchdogKind(result.stdout);
  return {deadline: Number(values.get('deadline')), serverNow: Number(values.get('now')), ...(watchdog === undefined ? {} : {watchdog})};
}

// ---------------------------------------------------------------------------
// 7. Verify from a fresh connection

export interface LiveRules {
  readonly phase: string;
  readonly batch: string;
  readonly v4: string;
  readonly v6: string;
  readonly nft: string;
}

export async function readLive(remote: RemoteHost): Promise<LiveRules> {
  const result = await remote.exec(COMMANDS.show, {root: true, stdin: ''});
  if (result.code !== 0) throw new AgentError(remote.name, `cannot read the live rules: ${firstLine(result)}`);
  return parseLive(result.stdout);
}

function parseLive(text: string): LiveRules {
  const values = keyValues(text.split(`${SECTION_V4}\n`)[0] ?? '');
  const payload = splitPayload(text);
  return {phase: values.get('phase') ?? '', batch: values.get('batch') ?? '', ...payload};
}

/** A NEW connection on the operator's path; hosts verified together share one new bastion link (opened after every load). */
function connectFresh(connector: Connector, target: HostTarget, freshGroup: string | undefined): Promise<RemoteHost> {
  return connector.connect(target, {fresh: true, ...(freshGroup === undefined ? {} : {freshGroup})});
}

/** What a loaded host is checked against: the merged iptables rules, and our nftables table. */
export interface ExpectedLive {
  readonly v4: Ruleset;
  readonly v6: Ruleset;
  /** '' or absent: our table must not exist. */
  readonly nftText?: string;
  readonly nftPlanned?: {readonly v4: Ruleset; readonly v6: Ruleset};
}

/** Throws unless the host shows this batch loaded with exactly the rules sent. */
function checkLive(target: HostTarget, batch: string, live: LiveRules, expected: ExpectedLive): void {
  if (live.batch !== batch || live.phase !== 'loaded') {
    throw new HostError(target.name, `expected batch ${batch} loaded, the server says ${live.batch || 'none'} ${live.phase || ''}`.trim());
  }
  const differences = [...liveDifferences(live, expected), ...nftListingDifferences(live.nft, expected)];
  if (differences.length > 0) {
    throw new HostError(target.name, `the live rules differ from the ones sent: ${differences.slice(0, 3).join('; ')}`);
  }
}

const listingLines = (text: string): string[] => text.split('\n').map((line) => line.trim()).filter((line) => line !== '');

/**
 * Our table's presence, and, for a table given as a listing (a snapshot put back), the listing
 * itself. A compiled table is held to its plan by nftPlanDifferences instead: nft prints it in
 * its own words.
 */
function nftListingDifferences(liveNft: string, expected: ExpectedLive): string[] {
  const wanted = expected.nftText ?? '';
  if (wanted.trim() === '') return liveNft.trim() === '' ? [] : ['nftables: our table inet isolate_wizard is still there'];
  if (liveNft.trim() === '') return ['nftables: our table inet isolate_wizard is not there'];
  if (expected.nftPlanned) return [];
  const want = listingLines(wanted);
  const got = listingLines(liveNft);
  const at = want.findIndex((line, index) => got[index] !== line);
  if (at < 0 && got.length === want.length) return [];
  return [`nftables: our table differs at line ${(at < 0 ? want.length : at) + 1} (${got[at < 0 ? want.length : at] ?? 'missing'})`];
}

/** The fixed command that prints our table as JSON ('' when nft or the table is missing). */
const READ_OUR_NFT_TABLE = 'command -v nft >/dev/null 2>&1 || exit 0; nft -j list table inet isolate_wizard 2>/dev/null || true';

/**
 * For a compiled table: reads our live table as JSON over `remote` and holds it to the plan,
 * packet class by packet class (nft-equivalence). Throws naming the first differences.
 */
async function checkNftPlan(remote: RemoteHost, target: HostTarget, expected: ExpectedLive): Promise<void> {
  if (!expected.nftPlanned) return;
  const result = await remote.exec(READ_OUR_NFT_TABLE, {root: true, stdin: ''});
  if (result.code !== 0) throw new AgentError(target.name, `cannot read our nftables table: ${firstLine(result)}`);
  let differences: string[];
  try {
    differences = nftAccessDifferences(expected.nftPlanned, parseNftJson(result.stdout.trim() === '' ? '{"nftables": []}' : result.stdout));
  } catch (error) {
    throw new HostError(target.name, `our nftables table does not read: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (differences.length > 0) throw new HostError(target.name, `our live nftables table differs from the plan: ${differences.slice(0, 3).join('; ')}`);
}

/** The line the agent's verify op prints once the live rules are out, before it waits for an answer. */
const AWAIT_MARK = '#iw:await';

/** A host whose live rules were checked over a new connection, waiting there for the word to confirm. */
export interface HeldVerification {
  /** "new SSH session ...; live rules match". */
  readonly label: string;
  /** Confirms over the same new connection (as confirmBatch), and keeps it open for follow-ups. */
  confirm(): Promise<{readonly confirmed: Confirmed; readonly remote: RemoteHost}>;
  /** Leaves the batch as it is (its watchdog armed) and closes the connection. */
  release(): Promise<void>;
}

/**
 * verifyLoaded, but the new connection stays and the agent waits on it: once every host of the
 * batch is checked, `confirm()` confirms over it with no second command or handshake (apply
 * --yes). If this process dies or the link drops while it waits, the agent reads the end of its
 * input and leaves the batch to its watchdog.
 */
export async function verifyAndHold(
  connector: Connector,
  target: HostTarget,
  batch: string,
  expected: ExpectedLive,
  options: {readonly freshGroup?: string} = {},
): Promise<HeldVerification> {
  const fresh = await connectFresh(connector, target, options.freshGroup);
  let answer: (word: string) => void = () => undefined;
  const decision = new Promise<string>((resolve) => (answer = resolve));
  let shown: (text: string) => void = () => undefined;
  const liveShown = new Promise<string>((resolve) => (shown = resolve));
  const finished = run(fresh, COMMANDS.verify, {
    batch,
    reply: (output) => {
      const at = output.indexOf(`\n${AWAIT_MARK}\n`);
      if (at < 0) return undefined;
      shown(output.slice(0, at + 1));
      return decision;
    },
  });
  // Settled either way, so a failure before the mark is reported once, as a failure.
  const ended = finished.then(
    (result) => ({result}),
    (error: unknown) => ({error}),
  );
  const release = async (): Promise<void> => {
    answer('');
    await ended;
    await fresh.close().catch(() => undefined);
  };
  const first = await Promise.race([liveShown.then((text) => ({text})), ended]);
  try {
    if ('error' in first) throw first.error;
    if ('result' in first) throw new AgentError(target.name, `cannot read the live rules: ${firstLine(first.result)}`);
    checkLive(target, batch, parseLive(first.text), expected);
    await checkNftPlan(fresh, target, expected);
  } catch (error) {
    await release();
    throw error;
  }
  return {
    label: `new SSH session ${fresh.route}; live rules match`,
    async confirm() {
      answer('confirm\n');
      const outcome = await ended;
      if ('error' in outcome) throw outcome.error;
      // What confirm printed comes after the live rules and the mark.
      const stdout = outcome.result.stdout;
      const after = stdout.indexOf(`\n${AWAIT_MARK}\n`);
      const confirmed = confirmedFrom(fresh, {...outcome.result, stdout: after < 0 ? stdout : stdout.slice(after + AWAIT_MARK.length + 2)});
      return {confirmed, remote: fresh};
    },
    release,
  };
}

/**
 * Differences between what is live and what was sent, in what this tool owns: our chains and
 * our jumps (canonical spellings). Others' rules and chains, and the built-in chains' policies,
 * are theirs (a fail2ban ban may arrive at any moment), so they are not compared. Empty = same.
 */
export function liveDifferences(live: {v4: string; v6: string}, expected: {v4: Ruleset; v6: Ruleset}): string[] {
  const problems: string[] = [];
  for (const family of [4, 6] as const) {
    const text = family === 4 ? live.v4 : live.v6;
    const wanted = family === 4 ? expected.v4 : expected.v6;
    const want = ownPart(wanted);
    const got = ownPart(parseIptablesSave(text, family));
    if (hasNothingOurs(got) && hasNothingOurs(want)) continue;
    for (const line of diffRulesets(canonicalFilter(want), canonicalFilter(got))) problems.push(`IPv${family} ${line}`);
  }
  return problems;
}

/**
 * Differences between what is live and a snapshot (is the host back?): the iptables parts, and
 * our nftables table's listing when the snapshot recorded it.
 */
export function snapshotDifferences(live: LiveRules, snapshot: Snapshot): string[] {
  const iptables = liveDifferences(live, {v4: parseIptablesSave(snapshot.v4, 4), v6: parseIptablesSave(snapshot.v6, 6)});
  if (snapshot.nft === undefined) return iptables;
  return [...iptables, ...nftListingDifferences(live.nft, {v4: parseIptablesSave(snapshot.v4, 4), v6: parseIptablesSave(snapshot.v6, 6), nftText: snapshot.nft})];
}

/**
 * Opens a NEW connection on the operator's path (through the bastion where there is one): proves
 * that login still works with the new rules, then compares our part of the live rules with the candidate.
 */
export async function verifyLoaded(
  connector: Connector,
  target: HostTarget,
  batch: string,
  expected: ExpectedLive,
  options: {readonly freshGroup?: string} = {},
): Promise<string> {
  const fresh = await connectFresh(connector, target, options.freshGroup);
  try {
    checkLive(target, batch, await readLive(fresh), expected);
    await checkNftPlan(fresh, target, expected);
    return `new SSH session ${fresh.route}; live rules match`;
  } finally {
    await fresh.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------
// 8. Confirm

/**
 * How the confirmed rules come back at boot: our own unit loading our iptables chains (iptables)
 * or our nftables table (nftables), our files with nothing to load them (iptables-file,
 * nftables-file: no systemd), or nothing; debian and rhel (the distribution's loader) are what an
 * older agent reported.
 */
export type Persistence = 'debian' | 'rhel' | 'iptables' | 'iptables-file' | 'nftables' | 'nftables-file' | 'none';

const PERSISTENCE_KINDS: ReadonlySet<string> = new Set(['debian', 'rhel', 'iptables', 'iptables-file', 'nftables', 'nftables-file']);
const persistenceOf = (kind: string | undefined): Persistence => (kind !== undefined && PERSISTENCE_KINDS.has(kind) ? (kind as Persistence) : 'none');

export interface Confirmed {
  readonly alreadyConfirmed: boolean;
  readonly persistence: Persistence;
}

export const NFT_FILE_ONLY_NOTE =
  'rules are live and our table is saved in /etc/isolate-wizard/isolate-wizard.nft, but nothing loads it at boot here (no systemd): load it with nft -f from the boot scripts';

export const IPT_FILE_ONLY_NOTE =
  'rules are live and our chains are saved in /etc/isolate-wizard/isolate-wizard.v4 and .v6, but nothing loads them at boot here (no systemd): run sh /var/lib/isolate-wizard/agent.sh boot from the boot scripts';

export const NO_PERSISTENCE_NOTE =
  'rules are live but will not survive a reboot; install iptables-persistent or rerun with --install-persistence';

export async function confirmBatch(remote: RemoteHost, batch: string): Promise<Confirmed> {
  return confirmedFrom(remote, await run(remote, COMMANDS.confirm, {batch}));
}

/** What a confirm answered (the confirm op, or verify after "confirm"). */
function confirmedFrom(remote: RemoteHost, result: ExecResult): Confirmed {
  if (result.code === AGENT_EXIT.notPending) {
    const why = firstLine(result);
    // "expired" is written by the agent only once its restore was verified.
    const expired = / is expired$/.test(why);
    const meaning = expired ? 'the deadline had passed and the server already rolled back (verified); ' : '';
    throw new BatchExpiredError(remote.name, `not confirmed: ${why} (${meaning}nothing changed)`, expired);
  }
  if (result.code === AGENT_EXIT.confirmRefused) {
    const values = keyValues(result.stdout);
    if (values.get('already') === 'confirmed') {
      throw new AgentError(remote.name, `confirmed, but the live rules changed since the load (${(values.get('detail') ?? '').trim()}): not saved for boot`);
    }
    throw new ConfirmRefusedError(remote.name, values.get('reason') === 'rebooted' ? 'rebooted' : 'changed', values.get('detail') ?? '');
  }
  const failure = commonFailure(remote, result);
  if (failure) throw failure;
  if (result.code !== 0) throw new AgentError(remote.name, `confirm failed: ${firstLine(result)}`);
  const values = keyValues(result.stdout);
  // Our unit (or files) of the backend that holds ours: the other part holds nothing of ours.
  const iptables = values.get('persisted');
  const nft = values.get('persisted_nft');
  return {
    alreadyConfirmed: result.stdout.startsWith('already-confirmed'),
    persistence:
      nft === 'unit' ? 'nftables' : nft === 'file' ? 'nftables-file' : iptables === 'unit' ? 'iptables' : iptables === 'file' ? 'iptables-file' : persistenceOf(iptables),
  };
}

export async function installPersistence(remote: RemoteHost): Promise<Persistence> {
  const result = await remote.exec(COMMANDS.installPersistence, {root: true, stdin: '', timeoutMs: 300_000});
  if (result.code !== 0) throw new AgentError(remote.name, `cannot install persistence: ${firstLine(result)}`);
  const kind = keyValues(result.stdout).get('persistence');
  return kind === 'debian' || kind === 'rhel' ? kind : 'none';
}

// ---------------------------------------------------------------------------
// 9. Roll back / release

export async function rollbackBatch(remote: RemoteHost, batch: string): Promise<void> {
  const result = await run(remote, COMMANDS.rollback, {batch});
  const failure = commonFailure(remote, result);
  if (failure) throw failure;
  if (result.code === AGENT_EXIT.confirmRefused) throw new AgentError(remote.name, `not rolled back: ${firstLine(result)}`);
  if (result.code !== 0) throw new AgentError(remote.name, `rollback failed: ${firstLine(result)}`);
}

/** Releases a batch that changed nothing on this host yet (locked or validated only). */
export async function unlockBatch(remote: RemoteHost, batch: string): Promise<void> {
  const result = await run(remote, COMMANDS.unlock, {batch});
  if (result.code !== 0) throw new AgentError(remote.name, `unlock failed: ${firstLine(result)}`);
}

// ---------------------------------------------------------------------------
// Status

export interface AgentStatus {
  readonly managed: boolean;
  readonly batch?: string;
  /** locked | staged | loading | loaded | restoring (pending) | confirmed | rolledback | expired | failed | released */
  readonly phase?: string;
  readonly pending: boolean;
  /** Pending, its deadline long passed and no watchdog acted (a reboot?): only a rollback ends it. */
  readonly stale: boolean;
  /** A restore failed: the rules are neither the new nor the previous ones; the server retries. */
  readonly restoring: boolean;
  readonly owner?: string;
  readonly secondsLeft?: number;
  /** Last phase change, server clock. */
  readonly lastChange?: Date;
  readonly confirmedAt?: Date;
  readonly backups: number;
  readonly persistence: Persistence;
}

const PENDING_PHASES = new Set(['locked', 'staged', 'loading', 'loaded', 'restoring']);

export function parseStatus(text: string): AgentStatus {
  const values = keyValues(text);
  const epoch = (key: string): Date | undefined => {
    const seconds = Number(values.get(key));
    return Number.isFinite(seconds) && seconds > 0 ? new Date(seconds * 1000) : undefined;
  };
  const phase = values.get('phase') || undefined;
  const pending = phase !== undefined && PENDING_PHASES.has(phase);
  const deadline = Number(values.get('deadline'));
  const now = Number(values.get('now'));
  const persistence = values.get('persistence');
  return {
    managed: values.get('managed') === 'yes',
    batch: values.get('batch') || undefined,
    phase,
    pending,
    stale: pending && values.get('stale') === 'yes',
    restoring: phase === 'restoring',
    owner: values.get('owner') || undefined,
    secondsLeft: pending && deadline > 0 && now > 0 ? Math.max(0, deadline - now) : undefined,
    lastChange: epoch('changed'),
    confirmedAt: epoch('confirmed'),
    backups: Number(values.get('backups')) || 0,
    persistence: persistenceOf(persistence),
  };
}

export async function hostStatus(remote: RemoteHost): Promise<AgentStatus> {
  const result = await remote.exec(COMMANDS.status, {root: true, stdin: ''});
  if (result.code !== 0) throw new AgentError(remote.name, `status failed: ${firstLine(result)}`);
  return parseStatus(result.stdout);
}

/** What the last confirmed batch loaded on a host (our part, as iptables-save spelt it then). */
export interface ConfirmedRules {
  readonly batch: string;
  readonly v4: string;
  readonly v6: string;
  /** Any other part the agent recorded at that load (e.g. "nft"), by section name. */
  readonly others: ReadonlyMap<string, string>;
}

/** The sections of an agent answer: "#iw:NAME" lines start them; what comes before is under "". */
export function payloadSections(text: string): Map<string, string> {
  const sections = new Map<string, string>();
  let name = '';
  let lines: string[] = [];
  const close = (): void => void sections.set(name, lines.length === 0 || lines.join('').trim() === '' ? '' : `${lines.join('\n').replace(/\n*$/, '')}\n`);
  for (const line of text.split('\n')) {
    const mark = /^#iw:([a-z0-9]+)$/.exec(line);
    if (!mark) {
      lines.push(line);
      continue;
    }
    close();
    name = mark[1] as string;
    lines = [];
  }
  close();
  return sections;
}

/** undefined: no batch was ever confirmed on this host. Throws when the agent cannot say (an older agent, a record missing). */
export async function readConfirmed(remote: RemoteHost): Promise<ConfirmedRules | undefined> {
  const result = await remote.exec(COMMANDS.confirmed, {root: true, stdin: ''});
  if (result.code === AGENT_EXIT.badArguments) {
    throw new AgentError(remote.name, 'its agent is older and keeps no record of the confirmed rules: apply again to compare them with the live ones');
  }
  if (result.code !== 0) throw new AgentError(remote.name, `cannot read the confirmed rules: ${firstLine(result)}`);
  if (result.stdout.trim() === 'none') return undefined;
  const sections = payloadSections(result.stdout);
  const batch = keyValues(sections.get('') ?? '').get('batch');
  const v4 = sections.get('v4');
  const v6 = sections.get('v6');
  if (batch === undefined || v4 === undefined || v6 === undefined) throw new AgentError(remote.name, 'the agent answered the confirmed rules without their batch and #iw:v4 / #iw:v6 sections');
  return {batch, v4, v6, others: new Map([...sections].filter(([name]) => name !== '' && name !== 'v4' && name !== 'v6'))};
}

// ---------------------------------------------------------------------------
// rollback --to

/** The rules `batch` snapshotted on this server before it changed anything; undefined when the server has no copy. */
export async function readBackup(remote: RemoteHost, batch: string): Promise<Snapshot | undefined> {
  const result = await run(remote, COMMANDS.readBackup, {batch});
  if (result.code !== 0) throw new AgentError(remote.name, `cannot read the snapshot of batch ${batch}: ${firstLine(result)}`);
  if (result.stdout.trim() === 'missing') return undefined;
  return splitPayload(result.stdout);
}
