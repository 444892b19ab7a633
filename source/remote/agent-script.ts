// The server-side agent: a POSIX sh script installed at /var/lib/isolate-wizard/agent.sh.
//
// Why on the server: the rollback must not depend on the operator's session (iptables-apply's
// does, and a dead link leaves the new rules in place). The agent snapshots the rules, arms a
// watchdog that restores them at a deadline computed on the server's own clock, and lets a later
// connection cancel it (Junos `commit confirmed`, Ansible `iptables_state`).
//
// Invocation: `sh /var/lib/isolate-wizard/agent.sh OP [BATCH] [SECONDS]`. OP is a constant word,
// BATCH matches [a-z0-9-]+ and SECONDS [0-9]+; the agent re-checks both. Rulesets and owner text
// arrive on stdin, never in the command line (the install-and-begin command reads the owner line
// off stdin itself and hands it to begin in the IW_OWNER variable).
//
// Every state change happens under one mutex (flock on $DIR/mutex, or a mkdir spin lock where
// flock is missing), so a watchdog firing and a confirm arriving at the same moment serialize:
// exactly one of "confirmed" / "expired" wins. A watchdog acts only if the state still carries its
// token, so re-arming or cancelling never races with an old watchdog. The host's lock is the state
// itself: a batch in a pending phase (locked, staged, loading, loaded, restoring) holds it.
//
// Every step checks its result, and nothing is claimed before it is checked against what is live:
// a restore is followed by a comparison of the live rules with the snapshot, and while they
// differ the batch stays pending (phase restoring), the watchdog stays armed and retries, and the
// op exits 7. Token and watchdog are retired only once live equals the snapshot, or once a
// confirm has found live equal to what was loaded on the same boot.
//
// iptables: ours is the chains named IW-* in each family's filter table and one jump into each
// of IW-INPUT, IW-FORWARD and IW-OUTPUT from its built-in chain (the payload's #iw:v4 / #iw:v6
// parts: nothing else may be named there). They are replaced with iptables-restore --noflush
// (our chains flushed and refilled, our jumps deleted and inserted at position 1, all in one
// transaction per family), so others' rules and chains (fail2ban, Docker, the operator's), and
// the built-in chains' policies, are never rewritten, whatever they do during the countdown.
// Snapshots, restores and comparisons are about our part only.
//
// nftables: ours is one table, inet isolate_wizard (the payload's #iw:nft part; empty = the table
// must be absent). It is replaced in one nft transaction (declare, delete, define: atomic, and no
// other table is named), so others' tables (firewalld, fail2ban, Docker) are never read or
// written, whatever they do during the countdown. It loads after the iptables parts and is
// restored and compared with them (the listing of our table against the snapshot's).
//
// Cheap in processes (a fleet apply runs it on every server at once, each fork+exec costs
// 10-25 ms of CPU on small machines): state and payloads are read and written with shell
// builtins, and no awk runs on the way of a load or a restore.
//
// Kept free of backquotes and dollar-brace so it can live in a TS template literal unchanged
// (the few interpolations below are the TS side's).
/** Where the agent lives on every server. Fixed: commands never take paths from input. */
export const AGENT_DIR = '/var/lib/isolate-wizard';
export const AGENT_PATH = `${AGENT_DIR}/agent.sh`;

/** Bumped whenever the state format or an op's contract changes. */
export const AGENT_VERSION = '5';

/** Exit codes of the agent (see README "Exit codes" and the ops below). */
export const AGENT_EXIT = {
  ok: 0,
  /** Anything else that failed before changing anything (the message says what). */
  failed: 1,
  badArguments: 2,
  /** Another batch is pending (stdout: held_by=, stale=yes|no, ...). */
  lockHeld: 3,
  /** The batch expired (restored and verified), is not the current one, or is not pending. */
  notPending: 4,
  /** `iptables-restore --test` refused the candidate; nothing changed. */
  candidateRejected: 5,
  /** The load failed; the snapshot was restored AND live was compared equal to it. */
  loadFailed: 6,
  /** A restore could not be completed or verified: the batch stays pending, the watchdog retries. */
  restoreFailed: 7,
  /** Confirm refused (stdout reason=rebooted|changed); nothing persisted, the batch still pending. */
  confirmRefused: 8,
  /** A write failed (snapshot, state, disk full); at begin nothing changed and nothing is locked. */
  writeFailed: 9,
} as const;

/** Seconds between two tries of a restore that failed (the watchdog's retry). */
export const RESTORE_RETRY_SECONDS = 12;

/** Separates the IPv4 and IPv6 parts of a stdin/stdout payload; iptables-save never prints it. */
export const SECTION_V4 = '#iw:v4';
export const SECTION_V6 = '#iw:v6';
/** The nftables part (our table), last; optional in a candidate (missing = our table absent). */
export const SECTION_NFT = '#iw:nft';

export const AGENT_SCRIPT = String.raw`#!/bin/sh
# isolate-wizard agent, version ${AGENT_VERSION}. Installed and called by isolate-wizard; see its README.
set -u
# No pathname expansion: rule lines hold [0:0] and *filter, which must stay text. Only the
# backup listing turns globbing on, for its own loop.
set -f
umask 077
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH LC_ALL=C
nl='
'
ifs0=$IFS

# Tests point the agent elsewhere; production never sets this.
# (Read with set +u rather than through printenv: one process less on every call.)
set +u; DIR=$IW_STATE_DIR_OVERRIDE; set -u
[ -n "$DIR" ] || DIR=/var/lib/isolate-wizard
AGENT="$DIR/agent.sh"
STATE="$DIR/state"
BACKUPS="$DIR/backups"
# Scratch files, written only under the mutex (fixed names: nothing to remove afterwards).
WORK="$DIR/work"
BOOT_ID_FILE=/proc/sys/kernel/random/boot_id
KEEP_BACKUPS=10
# After the deadline, a watchdog that never ran (killed, reboot) leaves a stale lock: reported
# (status, begin) once this grace has also passed, and restored only by an explicit rollback.
STALE_GRACE=30
RETRY_SECONDS=${RESTORE_RETRY_SECONDS}
# Seconds an iptables call waits for the xtables lock (legacy backend) before it fails.
XT_WAIT=10

die() { code=$1; shift; printf 'agent: %s\n' "$*" >&2; exit "$code"; }
have() { command -v "$1" >/dev/null 2>&1; }

# ---- clock: one date per op -----------------------------------------------------------------
op_now=
clock() { [ -n "$op_now" ] || op_now=$(date +%s); }

# iso_time EPOCH: sets $iso to that second in UTC (YYYY-MM-DDTHH:MM:SSZ) by arithmetic, so log
# lines need no second date (days to civil date: H. Hinnant's algorithm).
iso_time() {
  it_z=$(($1 / 86400 + 719468)); it_s=$(($1 % 86400))
  it_era=$((it_z / 146097)); it_doe=$((it_z - it_era * 146097))
  it_yoe=$(((it_doe - it_doe / 1460 + it_doe / 36524 - it_doe / 146096) / 365))
  it_doy=$((it_doe - (365 * it_yoe + it_yoe / 4 - it_yoe / 100)))
  it_mp=$(((5 * it_doy + 2) / 153))
  it_d=$((it_doy - (153 * it_mp + 2) / 5 + 1))
  it_m=$((it_mp < 10 ? it_mp + 3 : it_mp - 9))
  it_y=$((it_yoe + it_era * 400 + (it_m <= 2)))
  it_h=$((it_s / 3600)); it_mi=$((it_s % 3600 / 60)); it_s=$((it_s % 60))
  [ "$it_m" -ge 10 ] || it_m=0$it_m; [ "$it_d" -ge 10 ] || it_d=0$it_d
  [ "$it_h" -ge 10 ] || it_h=0$it_h; [ "$it_mi" -ge 10 ] || it_mi=0$it_mi; [ "$it_s" -ge 10 ] || it_s=0$it_s
  iso="$it_y-$it_m-$it_d"T"$it_h:$it_mi:$it_s"Z
}

# The log is a help for people, not state: a failed log write changes no outcome.
log() {
  clock; iso_time "$op_now"
  printf '%s %s\n' "$iso" "$*" >> "$DIR/log" 2>/dev/null
  return 0
}

# At most 64 characters: 65 "?" match any longer word, without a process to count them.
valid_batch() { case "$1" in ''|*[!a-z0-9-]*|${'?'.repeat(65)}*) return 1 ;; esac; }
valid_seconds() { case "$1" in ''|*[!0-9]*) return 1 ;; esac; [ "$1" -ge 1 ] && [ "$1" -le 86400 ]; }
valid_token() { case "$1" in ''|*[!a-z0-9]*) return 1 ;; esac; }

# ---- files -----------------------------------------------------------------------------------
# read_text FILE: sets $text to FILE's lines joined by newlines (a last line without its newline
# kept), as $(cat FILE) would for the files this agent writes. Builtins only; fails when FILE
# cannot be read.
read_text() {
  text= rt_sep=
  [ -f "$1" ] || return 1
  { while IFS= read -r rt_line || [ -n "$rt_line" ]; do text="$text$rt_sep$rt_line"; rt_sep=$nl; done; } < "$1"
}

# write_checked FILE TEXT: TEXT (and a newline, unless empty) into FILE.new, read back and
# compared, then renamed over FILE. Fails, leaving FILE as it was, on any error (disk full).
write_checked() {
  { [ -z "$2" ] || printf '%s\n' "$2"; } > "$1.new" 2>/dev/null &&
    read_text "$1.new" && [ "$text" = "$2" ] && mv -f "$1.new" "$1" && return 0
  rm -f "$1.new" 2>/dev/null
  return 1
}

# ---- state: key=value lines, the whole state rewritten at every change ------------------------
# write_state writes the s_ variables to state.new and renames it over the state: a reader sees
# the old state or the new one, never a mix. Every writer holds the mutex. Readers without it (the
# watchdog's poll, status, show) re-read under the mutex before they act, or only report.
#
# read_state: sets s_<key> for every key, each reduced to the characters it may hold. (A state of
# agent version 2, an append log, reads the same way: the last value of a key wins, and a torn
# last line without its newline is not read.)
read_state() {
  s_version= s_batch= s_phase= s_owner= s_since= s_changed= s_confirmed= s_token= s_deadline= s_watchdog=
  s_boot= s_nftpart= s_lastconfirmed=
  [ -f "$STATE" ] || return 0
  while IFS='=' read -r rs_key rs_value; do
    case $rs_key in
      version) s_version=$rs_value ;;
      batch) s_batch=$rs_value ;;
      phase) s_phase=$rs_value ;;
      owner) s_owner=$rs_value ;;
      since) s_since=$rs_value ;;
      changed) s_changed=$rs_value ;;
      confirmed) s_confirmed=$rs_value ;;
      token) s_token=$rs_value ;;
      deadline) s_deadline=$rs_value ;;
      watchdog) s_watchdog=$rs_value ;;
      boot) s_boot=$rs_value ;;
      nftpart) s_nftpart=$rs_value ;;
      lastconfirmed) s_lastconfirmed=$rs_value ;;
    esac
  done < "$STATE"
  case $s_batch in *[!a-z0-9-]*) s_batch= ;; esac
  case $s_phase in *[!a-z]*) s_phase= ;; esac
  case $s_token in *[!a-z0-9]*) s_token= ;; esac
  case $s_watchdog in *[!a-z0-9:-]*) s_watchdog= ;; esac
  case $s_since in *[!0-9]*) s_since= ;; esac
  case $s_changed in *[!0-9]*) s_changed= ;; esac
  case $s_confirmed in *[!0-9]*) s_confirmed= ;; esac
  case $s_deadline in *[!0-9]*) s_deadline= ;; esac
  case $s_boot in *[!a-f0-9-]*) s_boot= ;; esac
  case $s_nftpart in yes) ;; *) s_nftpart= ;; esac
  case $s_lastconfirmed in *[!a-z0-9-]*) s_lastconfirmed= ;; esac
  return 0
}

# write_state: the whole state from the s_ variables; fails (the old state kept) on any error.
# nftpart=yes: the batch snapshotted our nftables table at begin and owns that part (a batch
# begun by agent version 3 or older has no such key: its nftables part is left alone).
write_state() {
  printf 'version=%s\nbatch=%s\nphase=%s\nowner=%s\nsince=%s\nchanged=%s\nconfirmed=%s\ntoken=%s\ndeadline=%s\nwatchdog=%s\nboot=%s\nnftpart=%s\nlastconfirmed=%s\n' \
    "$AGENT_VERSION_PLACEHOLDER" "$s_batch" "$s_phase" "$s_owner" "$s_since" "$s_changed" "$s_confirmed" \
    "$s_token" "$s_deadline" "$s_watchdog" "$s_boot" "$s_nftpart" "$s_lastconfirmed" > "$STATE.new" 2>/dev/null &&
    mv -f "$STATE.new" "$STATE" && return 0
  rm -f "$STATE.new" 2>/dev/null
  return 1
}

is_pending_phase() { case "$1" in locked|staged|loading|loaded|restoring) return 0 ;; *) return 1 ;; esac; }

require_batch() { # batch: the current, pending batch (state read); else exit 4 saying what happened
  if [ "$s_batch" != "$1" ]; then die 4 "batch $1 is not the current one (current: $s_batch $s_phase)"; fi
  if ! is_pending_phase "$s_phase"; then die 4 "batch $1 is $s_phase"; fi
}

# is_stale: the state's batch is pending, its deadline and the grace passed, and no watchdog
# acted (killed, reboot). Reported; never restored implicitly.
is_stale() {
  is_pending_phase "$s_phase" || return 1
  clock
  st_deadline=$s_deadline; [ -n "$st_deadline" ] || st_deadline=0
  [ "$op_now" -gt $((st_deadline + STALE_GRACE)) ]
}

read_boot_id() { # -> $boot_id (empty when unreadable); a builtin read, no process
  boot_id=
  IFS= read -r boot_id 2>/dev/null < "$BOOT_ID_FILE" || :
  case $boot_id in *[!a-f0-9-]*) boot_id= ;; esac
}

# ---- mutex ---------------------------------------------------------------------------------
mutex=
take_mutex() {
  if have flock; then
    exec 9>"$DIR/mutex" || die 1 "cannot open the mutex"
    flock 9 || die 1 "cannot take the mutex"
    mutex=flock
  else
    # mkdir is atomic; a holder that died more than 60 s ago is presumed gone.
    tries=0
    until mkdir "$DIR/mutex.d" 2>/dev/null; do
      # A directory removed under a waiting watchdog must not keep it spinning.
      [ -d "$DIR" ] || die 1 "$DIR is gone"
      tries=$((tries + 1))
      if [ "$tries" -gt 600 ]; then rmdir "$DIR/mutex.d" 2>/dev/null; tries=0; fi
      sleep 0.1 2>/dev/null || sleep 1
    done
    trap 'rmdir "$DIR/mutex.d" 2>/dev/null' EXIT
    mutex=dir
  fi
}

release_mutex() {
  if [ "$mutex" = flock ]; then exec 9>&-
  elif [ "$mutex" = dir ]; then rmdir "$DIR/mutex.d" 2>/dev/null; trap - EXIT
  fi
  mutex=
}

# ---- iptables text -------------------------------------------------------------------------
# Set $cmd / $rcmd for a family (assignments, not $(...): no subshell per call).
save_cmd() { if [ "$1" = 4 ]; then cmd=iptables-save; else cmd=ip6tables-save; fi; }
restore_cmd() { if [ "$1" = 4 ]; then rcmd=iptables-restore; else rcmd=ip6tables-restore; fi; }

# save_text FAMILY [ARGS]: sets $saved to the output of iptables-save ARGS ("" when the command is
# missing: nothing to save, nothing to restore); fails, with $saved empty, when the command
# fails. Read through $(...): the shell reads a pipe in blocks.
save_text() {
  save_cmd "$1"; shift
  saved=
  have "$cmd" || return 0
  saved=$("$cmd" "$@" 2>/dev/null) || { saved=; return 1; }
}

live_text() { # family -> $saved: the live filter table as iptables-save prints it; fails when it fails
  save_text "$1" -t filter || save_text "$1"
}

# filter_text TEXT: prints the *filter section of an iptables-save text, counters and comment
# lines removed: the only table this tool writes, in the form two saves can be compared in.
# Builtins only: the lines are the fields of TEXT split at newlines (empty lines dropped).
filter_text() {
  ft_in=0; ft_done=0
  IFS=$nl
  for ft_line in $1; do
    case $ft_line in
      '#'*) continue ;;
      '*'*)
        if [ "$ft_line" = '*filter' ] && [ "$ft_done" = 0 ]; then ft_in=1; printf '%s\n' "$ft_line"; else ft_in=0; fi
        continue ;;
    esac
    [ "$ft_in" = 1 ] || continue
    case $ft_line in
      :*' ['*:*']')
        # ":CHAIN POLICY [packets:bytes]": the three words, the counters dropped.
        IFS=' '; set -- $ft_line; IFS=$nl
        if [ $# = 3 ]; then printf '%s %s\n' "$1" "$2"; else printf '%s\n' "$ft_line"; fi ;;
      COMMIT) printf 'COMMIT\n'; ft_in=0; ft_done=1 ;;
      *) printf '%s\n' "$ft_line" ;;
    esac
  done
  IFS=$ifs0
}

# ---- iptables: our chains only ---------------------------------------------------------------
# Ours in each family's filter table: the chains named IW-* (IW-INPUT, IW-FORWARD, IW-OUTPUT and
# their helpers) and one plain jump into each of the first three from its built-in chain, put at
# position 1; on a Docker host with restricted published ports, one into IW-PUBLISHED at position 1
# of Docker's DOCKER-USER (Docker's chain: never declared, created, flushed or deleted here; a
# load where it is missing fails whole). The drop is the last rule of our chain; the built-in chains' policies and every
# other rule and chain are others' (fail2ban, Docker, the operator's own), never written.
#
# Loaded with iptables-restore --noflush, one transaction per family (checked on iptables-nft and
# iptables-legacy 1.8.9: a ":CHAIN -" line flushes an existing user chain or creates it, no
# built-in's policy is named, and a -D of a rule that is not there fails the whole transaction,
# nothing changed). The -D lines are our jumps as live just before; one that vanished in between
# makes the load fail, and the caller's comparison then decides.

# our_part TEXT: sets $part to what is ours in TEXT (an iptables-save output; only its first
# *filter section is read): "*filter", the built-in chains our jumps are in (":INPUT -": no
# policy, theirs), our chains' declarations (":IW-X -"), our jumps, our chains' rules and
# "COMMIT", in iptables-save's order (a text iptables-save could print); empty when nothing is
# ours. Builtins only.
our_part() {
  part= op_in=0 op_done=0 op_builtins=
  IFS=$nl
  for op_line in $1; do
    case $op_line in
      '#'*) continue ;;
      '*'*) if [ "$op_line" = '*filter' ] && [ "$op_done" = 0 ]; then op_in=1; else op_in=0; fi; continue ;;
      COMMIT) [ "$op_in" = 0 ] || op_done=1; op_in=0; continue ;;
    esac
    [ "$op_in" = 1 ] || continue
    case $op_line in
      ':IW-'*) IFS=' '; set -- $op_line; IFS=$nl; op_line="$1 -" ;;
      '-A IW-'*) ;;
      '-A INPUT -j IW-'*|'-A FORWARD -j IW-'*|'-A OUTPUT -j IW-'*|'-A DOCKER-USER -j IW-PUBLISHED')
        IFS=' '; set -- $op_line; IFS=$nl
        case "$nl$op_builtins" in *"$nl:$2 -$nl"*) ;; *) op_builtins="$op_builtins:$2 -$nl" ;; esac ;;
      *) continue ;;
    esac
    part="$part$op_line$nl"
  done
  IFS=$ifs0
  [ -z "$part" ] || part="*filter$nl$op_builtins$part""COMMIT"
}

# is_ours_text TEXT: every line of TEXT (a candidate) is ours: a declaration of an IW- chain
# (no policy), one of our jumps, a rule of an IW- chain, *filter, COMMIT, a comment or blank. A
# built-in chain may be named without a policy (":INPUT -", which --noflush leaves as it is): it
# is not passed on.
is_ours_text() {
  IFS=$nl
  for io_line in $1; do
    case $io_line in
      '*filter'|COMMIT|'#'*|':IW-'*' -'|':IW-'*' - ['*']'|'-A IW-'*) ;;
      ':INPUT -'|':FORWARD -'|':OUTPUT -'|':INPUT - ['*']'|':FORWARD - ['*']'|':OUTPUT - ['*']') ;;
      ':DOCKER-USER -'|':DOCKER-USER - ['*']'|'-A DOCKER-USER -j IW-PUBLISHED') ;;
      '-A INPUT -j IW-'*|'-A FORWARD -j IW-'*|'-A OUTPUT -j IW-'*)
        IFS=' '; set -- $io_line; IFS=$nl
        [ $# = 4 ] || { IFS=$ifs0; return 1; } ;;
      *[!"$blanks"]*) IFS=$ifs0; return 1 ;;
    esac
  done
  IFS=$ifs0
  return 0
}

# ours_transaction LIVE WANT [test]: prints the iptables-restore --noflush input that turns
# LIVE (an our_part output: ours as live now) into WANT (one too, or a candidate): WANT's chains
# declared (created, or flushed), LIVE's other chains of ours flushed, every live jump of ours
# deleted, those other chains deleted, WANT's jumps inserted at position 1 (ending in WANT's
# order) and WANT's chains' rules appended. With "test": no -D and -X lines (iptables-nft's
# --test does not check them against the live table, iptables-legacy's does).
ours_transaction() {
  ot_live=$1 ot_want=$2 ot_test=
  [ $# -lt 3 ] || ot_test=$3
  ot_decl= ot_flush= ot_del= ot_drop= ot_insert= ot_rules=
  IFS=$nl
  for ot_line in $ot_want; do
    case $ot_line in
      ':IW-'*) IFS=' '; set -- $ot_line; IFS=$nl; ot_decl="$ot_decl$1 -$nl" ;;
      '-A IW-'*) ot_rules="$ot_rules$ot_line$nl" ;;
      '-A '*) IFS=' '; set -- $ot_line; IFS=$nl; ot_insert="-I $2 1 -j $4$nl$ot_insert" ;;
    esac
  done
  if [ "$ot_test" != test ]; then
    for ot_line in $ot_live; do
      case $ot_line in
        ':IW-'*)
          case "$nl$ot_decl" in *"$nl$ot_line$nl"*) continue ;; esac
          IFS=': '; set -- $ot_line; IFS=$nl
          ot_flush="$ot_flush$ot_line$nl"; ot_drop="$ot_drop-X $2$nl" ;;
        '-A IW-'*) ;;
        '-A '*) IFS=' '; set -- $ot_line; IFS=$nl; ot_del="$ot_del-D $2 -j $4$nl" ;;
      esac
    done
  fi
  IFS=$ifs0
  printf '*filter\n%s%s%s%s%s%sCOMMIT\n' "$ot_decl" "$ot_flush" "$ot_del" "$ot_drop" "$ot_insert" "$ot_rules"
}

# load_ours FAMILY WANT: ours in the live filter table made WANT (an our_part output or a
# candidate; empty: nothing of ours), in one iptables-restore --noflush transaction through a
# pipe (nothing written: the way back must work on a full disk), waiting at most XT_WAIT seconds
# for the xtables lock that Docker, fail2ban or kube-proxy may hold on the legacy backend. Nothing
# of ours live and nothing wanted: nothing run. Sets $load_err on failure; the caller compares.
load_ours() {
  restore_cmd "$1"
  live_text "$1" || { load_err="cannot read the live rules"; return 1; }
  our_part "$saved"
  lo_live=$part
  [ -n "$lo_live" ] || [ -n "$2" ] || return 0
  have "$rcmd" || { load_err="$rcmd is not installed"; return 1; }
  load_err=$(ours_transaction "$lo_live" "$2" | "$rcmd" --noflush --wait="$XT_WAIT" 2>&1) && return 0
  [ -n "$load_err" ] || load_err="$rcmd failed"
  return 1
}

# drop_empty_filter FAMILY: on iptables-nft, the filter table our load created on a host that had
# none (a snapshot without *filter) is deleted again once nothing is left in it: no rule, no
# chain but the built-ins, ACCEPT policies (iptables-legacy's table always exists).
drop_empty_filter() {
  have nft && have iptables || return 0
  case "$(iptables -V 2>/dev/null)" in *nf_tables*) ;; *) return 0 ;; esac
  live_text "$1" || return 0
  IFS=$nl
  for de_line in $(filter_text "$saved"); do
    case $de_line in
      '*filter'|COMMIT|':INPUT ACCEPT'|':FORWARD ACCEPT'|':OUTPUT ACCEPT') ;;
      *) IFS=$ifs0; return 0 ;;
    esac
  done
  IFS=$ifs0
  if [ "$1" = 4 ]; then nft delete table ip filter 2>/dev/null; else nft delete table ip6 filter 2>/dev/null; fi
  return 0
}

# ---- nftables: our table only ---------------------------------------------------------------
NFT_TABLE='inet isolate_wizard'
blanks=" 	$nl"

# nft_empty TEXT: true when TEXT holds nothing but blanks (our table absent).
nft_empty() { case $1 in *[!"$blanks"]*) return 1 ;; esac; return 0; }

# same_nft A B: two listings of our table are the same (blank lines aside; both empty = absent).
same_nft() {
  [ "$1" = "$2" ] && return 0
  [ "$(nft_norm "$1")" = "$(nft_norm "$2")" ]
}
nft_norm() { # TEXT: prints it without its blank lines
  IFS=$nl
  for nn_line in $1; do case $nn_line in *[!"$blanks"]*) printf '%s\n' "$nn_line" ;; esac; done
  IFS=$ifs0
}

# nft_live: sets $nft_text to our table as nft lists it (without stateful values: counters),
# empty when the table does not exist or nft is not installed. Fails when it cannot be read: a
# failed listing counts as "absent" only when the list of tables says so.
nft_live() {
  nft_text=
  have nft || return 0
  nft_text=$(nft -s list table $NFT_TABLE 2>/dev/null) && return 0
  nft_text=
  nl_tables=$(nft list tables inet 2>/dev/null) || return 1
  case "$nl$nl_tables$nl" in *"$nl"'table inet isolate_wizard'"$nl"*) return 1 ;; esac
  return 0
}

# nft_transaction TEXT: prints the one transaction that replaces our table by TEXT (declared
# first so the delete cannot fail; TEXT empty: the table ends absent). Names no other table.
nft_transaction() {
  printf 'table %s\ndelete table %s\n' "$NFT_TABLE" "$NFT_TABLE"
  nft_empty "$1" || printf '%s\n' "$1"
}

# load_nft TEXT: our table replaced by TEXT in one transaction, through a pipe (nothing written:
# the way back must work on a full disk; /dev/stdin rather than "-", which older nft versions
# may not take). Without nft, only "absent" can be loaded (a no-op). Sets $load_err on failure.
load_nft() {
  if ! have nft; then
    nft_empty "$1" && return 0
    load_err="nft is not installed"; return 1
  fi
  load_err=$(nft_transaction "$1" | nft -f /dev/stdin 2>&1) && return 0
  [ -n "$load_err" ] || load_err="nft -f failed"
  return 1
}

# The candidate's nftables part may define our table and nothing else: at the top level only
# "table inet isolate_wizard" (with its block), no other table, no flush, no delete, no include.
# Braces inside quoted strings and comments do not count. Exit status 0 when it is so.
nft_ours_awk='
function top(w) { gsub(/[ \t]+/, " ", w); sub(/^ /, "", w); sub(/ $/, "", w); return w }
{
  n = length($0)
  for (i = 1; i <= n; i++) {
    c = substr($0, i, 1)
    if (q) { if (c == "\"") q = 0; continue }
    if (c == "\"") { q = 1; if (!depth) word = word c; continue }
    if (c == "#") break
    if (depth) { if (c == "{") depth++; else if (c == "}") depth--; continue }
    if (c == "{") { if (top(word) != "table inet isolate_wizard") { bad = 1; exit } word = ""; depth = 1; continue }
    if (c == ";") { if (top(word) != "" && top(word) != "table inet isolate_wizard") { bad = 1; exit } word = ""; continue }
    word = word c
  }
  if (!depth) { if (top(word) != "" && top(word) != "table inet isolate_wizard") { bad = 1; exit } word = "" }
}
END { exit bad || depth || q }'

# restore_nft BATCH: our table put back as the snapshot had it (or deleted when it had none),
# then the live listing compared with the snapshot's. Sets $nft_why and fails when they differ
# or cannot be compared.
restore_nft() {
  nft_why=
  # A batch begun by an older agent never touched our table.
  [ "$s_nftpart" = yes ] || return 0
  read_text "$BACKUPS/$1.nft" || { nft_why="snapshot $BACKUPS/$1.nft is missing"; return 1; }
  rn_want=$text
  if ! have nft; then
    # Without nft nothing of ours can have been loaded (stage refuses a table then), unless nft
    # went away after the load: then our table may be live and cannot be checked.
    read_text "$BACKUPS/$1.cand.nft" || text=
    nft_empty "$rn_want" && nft_empty "$text" && return 0
    nft_why="nft is not installed: our table cannot be restored or checked"; return 1
  fi
  rn_error=
  load_nft "$rn_want" || rn_error=$load_err
  nft_live || { nft_why="cannot list the live table after the restore ($rn_error)"; return 1; }
  if ! same_nft "$nft_text" "$rn_want"; then
    [ -z "$rn_error" ] || rn_error="$rn_error, "
    nft_why="$rn_error""the live table differs from the snapshot"; return 1
  fi
  [ -z "$rn_error" ] || log "restore of $1 nftables: $rn_error, but the live table equals the snapshot"
  return 0
}

# restore_verified BATCH: puts our part of the snapshot back (others' rules and chains as they
# are live), then compares our part of the live rules with the snapshot's: that comparison
# decides (a restore command that failed when nothing needed undoing, e.g. after a load that
# changed nothing, still leaves the host provably on its previous rules). Under the mutex. Sets
# $why and fails when a family differs or cannot be checked (a missing snapshot is such a failure).
restore_verified() {
  why=
  for fam in 4 6; do
    snap="$BACKUPS/$1.v$fam"
    # A missing snapshot is an error: restoring "nothing" would claim rules that were never put back.
    [ -f "$snap" ] || { why="$why IPv$fam: snapshot $snap is missing;"; continue; }
    read_text "$snap" || { why="$why IPv$fam: cannot read $snap;"; continue; }
    rv_text=$text
    our_part "$rv_text"
    rv_want=$part
    rv_error=
    load_ours "$fam" "$rv_want" || rv_error=$load_err
    live_text "$fam" || { why="$why IPv$fam: cannot read the live rules after the restore ($rv_error);"; continue; }
    our_part "$saved"
    if [ "$part" != "$rv_want" ]; then
      [ -z "$rv_error" ] || rv_error="$rv_error, "
      why="$why IPv$fam: $rv_error""the live rules differ from the snapshot;"
      continue
    fi
    [ -z "$rv_error" ] || log "restore of $1 IPv$fam: $rv_error, but the live rules equal the snapshot"
    # A host that had no filter table gets none back (iptables-nft made one for our chains).
    if [ -z "$rv_want" ]; then
      case "$nl$rv_text$nl" in *"$nl*filter$nl"*) ;; *) drop_empty_filter "$fam" ;; esac
    fi
  done
  restore_nft "$1" || why="$why nftables: $nft_why;"
  undo_remedy "$1" || why="$why other firewall:$remedy_why"
  [ -z "$why" ]
}

# live_matches_loaded BATCH: our part of the live rules equals what was live right after the
# load (recorded then: iptables-save's own spelling of the candidate), and so does our table.
# Keeps our live parts in $live_v4 / $live_v6 / $live_nft for persist. Sets $why when not.
live_matches_loaded() {
  why=
  for fam in 4 6; do
    read_text "$BACKUPS/$1.loaded.v$fam" || { why="$why IPv$fam: the record of the loaded rules is missing;"; continue; }
    lm_want=$text
    live_text "$fam" || { why="$why IPv$fam: cannot read the live rules;"; continue; }
    our_part "$saved"
    if [ "$fam" = 4 ]; then live_v4=$part; else live_v6=$part; fi
    [ "$part" = "$lm_want" ] || why="$why IPv$fam: the live rules differ from the ones loaded;"
  done
  live_nft=
  if [ "$s_nftpart" = yes ]; then
    if ! read_text "$BACKUPS/$1.loaded.nft"; then why="$why nftables: the record of the loaded table is missing;"
    elif ! nft_live; then why="$why nftables: cannot list the live table;"
    else
      live_nft=$nft_text
      same_nft "$nft_text" "$text" || why="$why nftables: the live table differs from the one loaded;"
    fi
  fi
  [ -z "$why" ]
}

# ---- watchdog ------------------------------------------------------------------------------

# systemd manages this system only when it booted it (sd_booted: /run/systemd/system exists). A
# container or a lab server with its own /run sees the host's PID 1 but must not use its systemd.
pid1_is_systemd() {
  [ -d /run/systemd/system ] || return 1
  IFS= read -r p1_comm < /proc/1/comm 2>/dev/null || return 1
  [ "$p1_comm" = systemd ] && have systemd-run && have systemctl
}

# arm_watchdog BATCH SECONDS: starts a new watchdog (new token, deadline op_now + SECONDS on the
# server's clock) and sets the s_ variables to it; the previous one's in $old_watchdog. The caller
# writes the state (the new watchdog finds its token there: it waits for the mutex the caller
# holds), then retires the old one (retire_watchdog). Fails, the s_ variables unchanged, when the
# watchdog cannot be started: where systemd booted the host that is a failed systemd-run (no
# fallback: a process of the login session dies with it there).
arm_watchdog() {
  clock
  old_watchdog=$s_watchdog; aw_token=$s_token; aw_deadline=$s_deadline
  # Unique per arm (this shell's pid and the second): it only has to differ from earlier tokens.
  s_token="$op_now"p$$
  s_deadline=$((op_now + $2))
  if pid1_is_systemd; then
    s_watchdog="unit:isolate-wizard-$1-$s_token"
    if systemd-run --quiet --unit="isolate-wizard-$1-$s_token" --on-active="$2" --timer-property=AccuracySec=1s \
        /bin/sh "$AGENT" fire "$1" "$s_token" >/dev/null 2>&1; then
      watchdog_kind=unit
      log "armed $1 unit isolate-wizard-$1-$s_token deadline $s_deadline"
      return 0
    fi
    s_watchdog=$old_watchdog; s_token=$aw_token; s_deadline=$aw_deadline
    return 1
  fi
  s_watchdog=detached; watchdog_kind=detached
  # Detached: a session of its own (setsid: no controlling terminal, no process group shared
  # with the SSH session), no inherited pipes (the SSH channel can close), the mutex fd closed
  # (it must not hold our lock). Where setsid is missing, a forked copy of this shell deaf to
  # SIGHUP (OpenSSH already runs each command in a new session without a terminal); it needs
  # no clock read before its first sleep: it knows the second the deadline was computed from.
  if have setsid; then
    # HUP ignored from the fork on: a login session that ends (its terminal hung up) before
    # setsid ran must not take the watchdog with it; an ignored signal stays ignored in sh.
    ( trap '' HUP; exec setsid sh "$AGENT" fire "$1" "$s_token" ) </dev/null >/dev/null 2>&1 9>&- &
  else
    ( trap - EXIT; trap '' HUP; watch_deadline "$1" "$s_token" "$op_now" ) </dev/null >/dev/null 2>&1 9>&- &
  fi
  log "armed $1 pid $! deadline $s_deadline"
  return 0
}

# retire_watchdog WATCHDOG: stops a systemd timer (a detached watchdog retires itself when it
# finds its token gone from the state; so does a unit whose timer already fired).
retire_watchdog() {
  case $1 in
    unit:*) IFS=:; set -- $1; IFS=$ifs0; systemctl stop "$2.timer" >/dev/null 2>&1 ;;
  esac
  return 0
}

# The watch is alive while the state holds the token and a deadline.
watch_ok() { [ "$s_token" = "$1" ] && [ -n "$s_deadline" ]; }

# watch_deadline BATCH TOKEN [NOW]: waits for the deadline, then expires the batch if it is still
# ours; when its restore fails, tries again every RETRY_SECONDS for as long as the state holds
# the token. Polls rather than one long sleep: a suspended/adjusted clock is re-read, and a
# cancelled or re-armed watchdog notices that its token is gone and quits. At most 5 s between
# polls, to the second near the deadline. Never returns.
watch_deadline() {
  w_batch=$1; w_token=$2; w_now=$3
  while :; do
    while :; do
      read_state
      if ! watch_ok "$w_token"; then
        # Seen without the mutex: make sure under it before standing down. A state not written
        # yet (a first batch: begin arms us before it writes) is read again once begin is done.
        take_mutex; read_state
        watch_ok "$w_token" || exit 0
        release_mutex
      fi
      [ -n "$w_now" ] || w_now=$(date +%s)
      w_left=$((s_deadline - w_now)); w_now=
      [ "$w_left" -le 0 ] && break
      [ "$w_left" -gt 5 ] && w_left=5
      sleep "$w_left"
    done
    take_mutex; read_state
    [ "$s_batch" = "$w_batch" ] && [ "$s_token" = "$w_token" ] && is_pending_phase "$s_phase" || exit 0
    op_now=
    expire "$w_batch" && exit 0
    release_mutex
    sleep "$RETRY_SECONDS"
  done
}

# expire BATCH: under the mutex, state read. Puts back the snapshot if anything may have been
# loaded. Phase expired (token retired) only once the restore is verified and written down; else
# the batch stays pending (restoring) with its deadline moved on, and expire fails: the watchdog
# retries.
expire() {
  clock
  case $s_phase in
    loading|loaded|restoring)
      if restore_verified "$1"; then
        s_phase=expired; s_token=; s_watchdog=; s_changed=$op_now
        if write_state; then log "expired $1: snapshot restored and verified"; return 0; fi
        log "expired $1: snapshot restored and verified, but the state cannot be written: retrying"
        return 1
      fi
      log "expired $1: COULD NOT RESTORE:$why retrying in $RETRY_SECONDS s"
      s_phase=restoring; s_deadline=$((op_now + RETRY_SECONDS)); s_changed=$op_now
      write_state || log "expired $1: the state cannot be written either"
      return 1 ;;
  esac
  s_phase=expired; s_token=; s_watchdog=; s_changed=$op_now
  if write_state; then log "expired $1 before any change: lock released"; return 0; fi
  log "expired $1 before any change, but the state cannot be written: retrying"
  return 1
}

# restore_or_retry BATCH WHAT: the restore after WHAT failed (load, rollback): prints and exits.
# Verified: the caller's final phase is written by the caller (returns 0). Not verified: the
# batch stays pending (restoring), a watchdog is armed to retry in RETRY_SECONDS, exit 7.
restore_or_retry() {
  restore_verified "$1" && return 0
  rr_why=$why
  s_phase=restoring
  if arm_watchdog "$1" "$RETRY_SECONDS"; then
    if write_state; then retire_watchdog "$old_watchdog"
    else retire_watchdog "$s_watchdog"; fi
  else
    # The earlier watchdog stays (it acts at its own deadline, then retries).
    write_state || :
  fi
  log "$2 $1: COULD NOT RESTORE:$rr_why the watchdog retries"
  printf 'restore=failed\n'
  die 7 "could not restore: act now: $2 $1, then putting the previous rules back failed:$rr_why the batch stays pending and the server retries every $RETRY_SECONDS s"
}

# ---- persistence ---------------------------------------------------------------------------
persist_kind() { # -> $pk
  if have netfilter-persistent || [ -d /usr/share/netfilter-persistent/plugins.d ]; then pk=debian
  elif [ -f /usr/libexec/iptables/iptables.init ] || [ -f /usr/lib/systemd/system/iptables.service ]; then pk=rhel
  else pk=none; fi
}

PERSIST_MARK='# Written by isolate-wizard'

# Our table at boot: our own file (the replacing transaction: loading it again changes nothing)
# and our own unit, ordered after nftables.service, part of it and reloaded with it, so that
# "systemctl restart nftables" and "systemctl reload nftables" (Debian's nftables.conf begins
# with "flush ruleset") load ours again after it: systemd runs a reload job only once the jobs of
# the units it is ordered after are done. Nothing else is written: not nftables.conf, no other table.
NFT_FILE=/etc/isolate-wizard/isolate-wizard.nft
NFT_UNIT_NAME=isolate-wizard.service
NFT_UNIT=/etc/systemd/system/$NFT_UNIT_NAME
NFT_WANTS=/etc/systemd/system/multi-user.target.wants/$NFT_UNIT_NAME

# persist_nft: our live table ($live_nft) into our boot file and unit, or (our table absent)
# both removed. Sets $pn: unit (file and unit written), file (no systemd: the file alone),
# none (nothing of ours to load at boot). Every step checked.
persist_nft() {
  pn=none
  [ "$s_nftpart" = yes ] || return 0
  if nft_empty "$live_nft"; then
    [ -e "$NFT_FILE" ] || [ -e "$NFT_UNIT" ] || [ -L "$NFT_WANTS" ] || return 0
    # A oneshot without ExecStop: stopping it changes no rule, it only stops following nftables.
    if pid1_is_systemd; then systemctl stop "$NFT_UNIT_NAME" >/dev/null 2>&1 || log "persist: systemctl stop $NFT_UNIT_NAME failed"; fi
    rm -f "$NFT_WANTS" "$NFT_UNIT" "$NFT_FILE" || return 1
    rmdir /etc/isolate-wizard 2>/dev/null
    if pid1_is_systemd; then systemctl daemon-reload >/dev/null 2>&1 || return 1; fi
    return 0
  fi
  pn_nft=$(command -v nft) || return 1
  clock; iso_time "$op_now"
  { [ -d /etc/isolate-wizard ] || mkdir -p /etc/isolate-wizard; } &&
    write_checked "$NFT_FILE" "$PERSIST_MARK on $iso: our table, loaded at boot by $NFT_UNIT_NAME$nl$(nft_transaction "$live_nft")" ||
    return 1
  pn=file
  have systemctl || [ -d /etc/systemd/system ] || return 0
  umask 022
  { [ -d /etc/systemd/system/multi-user.target.wants ] || mkdir -p /etc/systemd/system/multi-user.target.wants; } &&
    write_checked "$NFT_UNIT" "$PERSIST_MARK: table $NFT_TABLE, after (and restarted and reloaded with) nftables.service
[Unit]
Description=isolate-wizard firewall (nftables table $NFT_TABLE)
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target shutdown.target
After=nftables.service
PartOf=nftables.service
ReloadPropagatedFrom=nftables.service
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$pn_nft -f $NFT_FILE
ExecReload=$pn_nft -f $NFT_FILE

[Install]
WantedBy=multi-user.target" &&
    ln -sf "$NFT_UNIT" "$NFT_WANTS"
  pn_status=$?
  umask 077
  [ "$pn_status" = 0 ] || return 1
  # Where systemd runs, it must know the unit and hold it active: a restart of nftables.service
  # restarts only the active units that are part of it. Starting it loads the same table again,
  # which must leave it as it was.
  if pid1_is_systemd; then
    systemctl daemon-reload >/dev/null 2>&1 && systemctl start "$NFT_UNIT_NAME" >/dev/null 2>&1 &&
      nft_live && same_nft "$nft_text" "$live_nft" || return 1
  fi
  pn=unit
}

# Our chains at boot: our own files (our part of each family, as our_part prints it), loaded by
# our own unit through this agent's boot op (the same --noflush transaction as a load: loading
# again changes nothing), ordered after the distribution's loader (netfilter-persistent,
# iptables/ip6tables.service), part of it and reloaded with it (RHEL's iptables.service reloads
# its file, which replaces the whole filter table; Debian's netfilter-persistent has no reload), so
# that restarting or reloading that loader loads ours again after it. The operator's rules.v4 / sysconfig files are
# never written.
IPT_FILE=/etc/isolate-wizard/isolate-wizard
IPT_UNIT_NAME=isolate-wizard-iptables.service
IPT_UNIT=/etc/systemd/system/$IPT_UNIT_NAME
IPT_WANTS=/etc/systemd/system/multi-user.target.wants/$IPT_UNIT_NAME
# Our jump into Docker's DOCKER-USER (restricted published ports) can only load once Docker made
# that chain, long after the unit above: a second unit of ours, started with docker.service and
# after it, runs the same boot op then (and again when Docker restarts).
IPT_DOCKER_UNIT_NAME=isolate-wizard-docker-user.service
IPT_DOCKER_UNIT=/etc/systemd/system/$IPT_DOCKER_UNIT_NAME
IPT_DOCKER_WANTS=/etc/systemd/system/docker.service.wants/$IPT_DOCKER_UNIT_NAME

# persist_ipt: our live chains ($live_v4 / $live_v6, our_part outputs) into our boot files and
# unit, or (nothing of ours live) both removed. Sets $pi: unit (files and unit written), file (no
# systemd: the files alone), none (nothing of ours to load at boot). Every step checked.
persist_ipt() {
  pi=none
  if [ -z "$live_v4" ] && [ -z "$live_v6" ]; then
    [ -e "$IPT_FILE.v4" ] || [ -e "$IPT_FILE.v6" ] || [ -e "$IPT_UNIT" ] || [ -L "$IPT_WANTS" ] || [ -e "$IPT_DOCKER_UNIT" ] || [ -L "$IPT_DOCKER_WANTS" ] || return 0
    # A oneshot without ExecStop: stopping it changes no rule, it only stops following the loader.
    if pid1_is_systemd; then
      systemctl stop "$IPT_UNIT_NAME" >/dev/null 2>&1 || log "persist: systemctl stop $IPT_UNIT_NAME failed"
      [ ! -e "$IPT_DOCKER_UNIT" ] || systemctl stop "$IPT_DOCKER_UNIT_NAME" >/dev/null 2>&1 || log "persist: systemctl stop $IPT_DOCKER_UNIT_NAME failed"
    fi
    rm -f "$IPT_WANTS" "$IPT_UNIT" "$IPT_DOCKER_WANTS" "$IPT_DOCKER_UNIT" "$IPT_FILE.v4" "$IPT_FILE.v6" || return 1
    rmdir /etc/isolate-wizard 2>/dev/null
    if pid1_is_systemd; then systemctl daemon-reload >/dev/null 2>&1 || return 1; fi
    return 0
  fi
  clock; iso_time "$op_now"
  { [ -d /etc/isolate-wizard ] || mkdir -p /etc/isolate-wizard; } &&
    write_checked "$IPT_FILE.v4" "$PERSIST_MARK on $iso: our IPv4 chains, loaded at boot by $IPT_UNIT_NAME$nl$live_v4" &&
    write_checked "$IPT_FILE.v6" "$PERSIST_MARK on $iso: our IPv6 chains, loaded at boot by $IPT_UNIT_NAME$nl$live_v6" ||
    return 1
  pi=file
  have systemctl || [ -d /etc/systemd/system ] || return 0
  umask 022
  { [ -d /etc/systemd/system/multi-user.target.wants ] || mkdir -p /etc/systemd/system/multi-user.target.wants; } &&
    write_checked "$IPT_UNIT" "$PERSIST_MARK: our iptables chains (IW-*), after (and restarted with) the distribution's loader
[Unit]
Description=isolate-wizard firewall (iptables chains IW-*)
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target shutdown.target
After=netfilter-persistent.service iptables.service ip6tables.service
PartOf=netfilter-persistent.service iptables.service ip6tables.service
ReloadPropagatedFrom=iptables.service ip6tables.service
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh $AGENT boot
ExecReload=/bin/sh $AGENT boot

[Install]
WantedBy=multi-user.target" &&
    ln -sf "$IPT_UNIT" "$IPT_WANTS" &&
    persist_docker_user
  pi_status=$?
  umask 077
  [ "$pi_status" = 0 ] || return 1
  # Known and active where systemd runs (a restart of the loader restarts only the active units
  # that are part of it). The boot op takes no mutex (this op holds it): it loads what is live.
  if pid1_is_systemd; then
    systemctl daemon-reload >/dev/null 2>&1 && systemctl start "$IPT_UNIT_NAME" >/dev/null 2>&1 || return 1
    if [ -e "$IPT_DOCKER_UNIT" ]; then systemctl start "$IPT_DOCKER_UNIT_NAME" >/dev/null 2>&1 || return 1; fi
  fi
  pi=unit
}

# persist_docker_user: our Docker-side unit written (our jump into DOCKER-USER is in what we
# keep) or removed (it is not). Every step checked.
persist_docker_user() {
  case "$nl$live_v4$nl$live_v6$nl" in
    *"$nl-A DOCKER-USER -j IW-PUBLISHED$nl"*) ;;
    *)
      [ -e "$IPT_DOCKER_UNIT" ] || [ -L "$IPT_DOCKER_WANTS" ] || return 0
      if pid1_is_systemd; then systemctl stop "$IPT_DOCKER_UNIT_NAME" >/dev/null 2>&1 || log "persist: systemctl stop $IPT_DOCKER_UNIT_NAME failed"; fi
      rm -f "$IPT_DOCKER_WANTS" "$IPT_DOCKER_UNIT"
      return ;;
  esac
  { [ -d /etc/systemd/system/docker.service.wants ] || mkdir -p /etc/systemd/system/docker.service.wants; } &&
    write_checked "$IPT_DOCKER_UNIT" "$PERSIST_MARK: our jump into Docker's DOCKER-USER, once docker.service made that chain
[Unit]
Description=isolate-wizard firewall (our jump into DOCKER-USER, after Docker)
After=docker.service
PartOf=docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh $AGENT boot

[Install]
WantedBy=docker.service" &&
    ln -sf "$IPT_DOCKER_UNIT" "$IPT_DOCKER_WANTS"
}

# without_docker_user PART: sets $part to PART (an our_part output) without our jump into DOCKER-USER.
without_docker_user() {
  part= wd_sep=
  IFS=$nl
  for wd_line in $1; do
    case $wd_line in ':DOCKER-USER -'*|'-A DOCKER-USER -j IW-PUBLISHED') continue ;; esac
    part="$part$wd_sep$wd_line" wd_sep=$nl
  done
  IFS=$ifs0
}

# boot_load: our boot files loaded (each family whose file exists), each compared with the live
# rules after. Exit 1 naming the family when one cannot be loaded or differs.
boot_load() {
  bl_why=
  for fam in 4 6; do
    read_text "$IPT_FILE.v$fam" || continue
    our_part "$text"
    bl_want=$part
    # Docker creates DOCKER-USER when it starts, after us: till then our chains load without our
    # jump into it, which our Docker-side unit loads once docker.service started.
    case $bl_want in *"$nl-A DOCKER-USER -j IW-PUBLISHED$nl"*)
      live_text "$fam" || { bl_why="$bl_why IPv$fam: cannot read the live rules;"; continue; }
      case "$nl$saved" in *"$nl:DOCKER-USER "*) ;; *)
        without_docker_user "$bl_want"
        bl_want=$part
        log "boot: IPv$fam: no DOCKER-USER chain (Docker not started): our jump into it waits for $IPT_DOCKER_UNIT_NAME, started with docker.service" ;;
      esac ;;
    esac
    bl_error=
    load_ours "$fam" "$bl_want" || bl_error=$load_err
    if live_text "$fam"; then
      our_part "$saved"
      [ "$part" = "$bl_want" ] || bl_why="$bl_why IPv$fam: $bl_error (the live chains differ from $IPT_FILE.v$fam);"
    else
      bl_why="$bl_why IPv$fam: cannot read the live rules;"
    fi
  done
  [ -z "$bl_why" ] || die 1 "boot: our chains could not be loaded:$bl_why"
  log "boot: our chains loaded"
}

persist() { # prints persisted=unit|file|none and persisted_nft=unit|file|none; exit 9 when a boot file cannot be written
  persist_ipt || { echo "persisted=failed"; die 9 "the rules are confirmed, but our iptables boot files $IPT_FILE.v4/.v6 or unit $IPT_UNIT could not be written or enabled"; }
  echo "persisted=$pi"
  persist_nft || { echo "persisted_nft=failed"; die 9 "the rules are confirmed, but our nftables boot file $NFT_FILE or unit $NFT_UNIT could not be written or enabled"; }
  echo "persisted_nft=$pn"
}

# Snapshots are named <batch>.v4 (.v6, .nft, .cand.v4, .cand.v6, .cand.nft, .loaded.v4,
# .loaded.v6, .loaded.nft); batches
# start with a sortable timestamp and hold no dot. Sets $snapshots to their number and
# $oldest_first to their batch names, oldest first (the shell sorts a glob's matches).
list_snapshots() {
  cd "$BACKUPS" || return 1
  snapshots=0; oldest_first=
  set +f
  for ls_file in *.v4; do
    case $ls_file in *.*.v4) continue ;; esac
    [ -e "$ls_file" ] || continue
    IFS=.; set -- $ls_file; IFS=$ifs0
    snapshots=$((snapshots + 1)); oldest_first="$oldest_first $1"
  done
  set -f
}

prune_backups() {
  list_snapshots || return 0
  pb_excess=$((snapshots - KEEP_BACKUPS))
  [ "$pb_excess" -gt 0 ] || return 0
  pb_files=
  for pb_old in $oldest_first; do
    [ "$pb_excess" -gt 0 ] || break
    pb_excess=$((pb_excess - 1))
    [ "$pb_old" = "$s_batch" ] && continue
    pb_files="$pb_files $pb_old.v4 $pb_old.v6 $pb_old.nft $pb_old.cand.v4 $pb_old.cand.v6 $pb_old.cand.nft"
    pb_files="$pb_files $pb_old.loaded.v4 $pb_old.loaded.v6 $pb_old.loaded.nft $pb_old.remedy $pb_old.remedy-undone"
  done
  [ -z "$pb_files" ] || rm -f $pb_files
}

# copy_until [MARK]: copies stdin lines to stdout up to the line MARK (true when it was seen),
# or to the end without one. A last line without its newline is kept. Fails on a write error
# (cu_failed=1).
copy_until() {
  while IFS= read -r cu_line || [ -n "$cu_line" ]; do
    if [ $# = 1 ] && [ "$cu_line" = "$1" ]; then return 0; fi
    printf '%s\n' "$cu_line" || { cu_failed=1; return 1; }
  done
  [ $# = 0 ]
}

# stage_payload BATCH: under the mutex, the batch locked: stores the candidate payload read from
# stdin and tests it (the nftables part, optional and last, with nft -c of the very transaction
# load runs). Exit 5 when iptables-restore --test or nft -c rejects it (or it holds a table on a
# host without nft), 9 when it cannot be stored (nothing changes either way).
stage_payload() {
  found=0
  while IFS= read -r line; do [ "$line" != '#iw:v4' ] || { found=1; break; }; done
  [ "$found" = 1 ] || die 2 "candidate for IPv4 missing"
  cu_failed=
  copy_until '#iw:v6' > "$BACKUPS/$1.cand.v4" 2>/dev/null || {
    [ -z "$cu_failed" ] || die 9 "cannot store the IPv4 candidate (disk full?)"
    die 2 "candidate for IPv6 missing"; }
  # The nftables section may be missing: then our table must end absent (an empty part).
  if copy_until '#iw:nft' > "$BACKUPS/$1.cand.v6" 2>/dev/null; then
    copy_until > "$BACKUPS/$1.cand.nft" 2>/dev/null || die 9 "cannot store the nftables candidate (disk full?)"
  else
    [ -z "$cu_failed" ] || die 9 "cannot store the IPv6 candidate (disk full?)"
    : > "$BACKUPS/$1.cand.nft" 2>/dev/null || die 9 "cannot store the nftables candidate (disk full?)"
  fi
  read_text "$BACKUPS/$1.cand.nft" || die 9 "cannot read the nftables candidate back"
  cand_nft=$text
  if ! nft_empty "$cand_nft"; then
    [ "$s_nftpart" = yes ] || die 5 "nftables candidate rejected: batch $1 was begun by an older agent, which leaves nftables alone"
    have nft || die 5 "nftables candidate rejected: nft is not installed on this server"
    printf '%s\n' "$cand_nft" | awk "$nft_ours_awk" ||
      die 5 "nftables candidate rejected: it may define table $NFT_TABLE and nothing else"
  fi
  failed=0
  for fam in 4 6; do
    restore_cmd "$fam"
    have "$rcmd" || die 5 "$rcmd is not installed"
    read_text "$BACKUPS/$1.cand.v$fam" || die 9 "cannot read the IPv$fam candidate back"
    is_ours_text "$text" ||
      die 5 "IPv$fam candidate rejected: it may declare and fill our chains (IW-*) and jump into them from INPUT, FORWARD and OUTPUT, nothing else"
    if ! err=$(ours_transaction "" "$text" test | "$rcmd" --noflush --wait="$XT_WAIT" --test 2>&1); then
      printf 'IPv%s candidate rejected by %s --test: %s\n' "$fam" "$rcmd" "$err" >&2
      failed=1
    fi
  done
  if ! nft_empty "$cand_nft"; then
    if ! err=$(nft_transaction "$cand_nft" | nft -c -f /dev/stdin 2>&1); then
      printf 'nftables candidate rejected by nft -c: %s\n' "$err" >&2
      failed=1
    fi
  fi
  [ $failed -eq 0 ] || exit 5
  s_phase=staged
  write_state || die 9 "cannot write the state (disk full?): the candidate is not staged"
}

# show_live: the state's batch and phase, then the live filter tables, normalized, and our
# nftables table as nft lists it (nothing when absent).
show_live() {
  read_state
  printf 'phase=%s\nbatch=%s\n' "$s_phase" "$s_batch"
  echo "#iw:v4"; live_text 4 || die 1 "cannot read the live IPv4 rules"; filter_text "$saved"
  echo "#iw:v6"; live_text 6 || die 1 "cannot read the live IPv6 rules"; filter_text "$saved"
  echo "#iw:nft"; nft_live || die 1 "cannot list the live nftables table $NFT_TABLE"; nft_empty "$nft_text" || printf '%s\n' "$nft_text"
}

# refuse_confirm REASON DETAIL: nothing persisted, the batch stays pending with its watchdog.
refuse_confirm() {
  printf 'reason=%s\ndetail=%s\n' "$1" "$2"
  log "confirm $batch refused: $1:$2"
  if [ "$1" = rebooted ]; then rc_what="the server rebooted since the load"; else rc_what="the live rules changed since the load"; fi
  die 8 "not confirmed: $rc_what ($2); nothing was persisted, the batch stays pending (its watchdog armed)"
}

# confirm_batch BATCH: keep the rules, if they are still the ones loaded on this boot; persist them.
confirm_batch() {
  batch=$1
  take_mutex
  read_state
  if [ "$s_batch" = "$batch" ] && [ "$s_phase" = confirmed ]; then
    # Again (after installing the boot-time loader): the live rules must still be the ones loaded.
    if ! live_matches_loaded "$batch"; then
      printf 'reason=changed\nalready=confirmed\ndetail=%s\n' "$why"
      die 8 "batch $batch is confirmed, but the live rules changed since the load ($why): not written to the boot-time files"
    fi
    echo "already-confirmed"; keep_remedy "$batch"; persist; remedy_kept; exit 0
  fi
  require_batch "$batch"
  [ "$s_phase" != restoring ] ||
    die 7 "could not restore: act now: batch $batch failed and its previous rules could not be put back yet; the server retries every $RETRY_SECONDS s"
  [ "$s_phase" = loaded ] || die 4 "batch $batch is $s_phase: nothing loaded to confirm"
  read_boot_id
  [ "$boot_id" = "$s_boot" ] ||
    refuse_confirm rebooted "boot id $s_boot at the load, $boot_id now: the rules live are what the boot loaded"
  live_matches_loaded "$batch" || refuse_confirm changed "$why"
  clock
  cb_watchdog=$s_watchdog
  # The token goes with the phase, in one write: a detached watchdog sees it gone and quits.
  s_token=; s_watchdog=; s_phase=confirmed; s_changed=$op_now; s_confirmed=$op_now; s_lastconfirmed=$batch
  write_state || die 9 "cannot write the state (disk full?): not confirmed, the watchdog is still armed"
  retire_watchdog "$cb_watchdog"
  log "confirmed $batch"
  echo "confirmed"
  keep_remedy "$batch"
  persist
  remedy_kept
  prune_backups
}

# ---- another firewall: the operator's remedy (--other-firewall) ----------------------------
# Where firewalld or ufw would drop what the plan opens, the operator may have us open exactly
# those flows in it, or stop it, within the batch. $BACKUPS/BATCH.remedy holds the steps, one a
# line, written before any of them runs: "open MANAGER FAMILY SOURCE PROTO FIRST LAST" (opened
# at runtime; SOURCE an address or "any") or "stop MANAGER active|inactive" (as it was before).
# A restore undoes them (undo_remedy, also from the watchdog); a confirm makes them permanent
# (keep_remedy). Undone, the file is renamed BATCH.remedy-undone. The managers' own tools do the
# work: firewall-cmd and systemctl for firewalld, ufw for ufw. (The loops below split each step
# into the positional parameters: what a function needs of its own are read first.)

valid_port() { case "$1" in ''|*[!0-9]*|??????*) return 1 ;; esac; [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }

# valid_remedy_step WORDS: one step as the client sends it ("stop MANAGER" or "open ...").
valid_remedy_step() {
  case $1 in
    open)
      [ $# -eq 7 ] || return 1
      case $2 in firewalld|ufw) ;; *) return 1 ;; esac
      case $3 in 4|6) ;; *) return 1 ;; esac
      case $4 in any) ;; ''|*[!0-9a-fA-F.:]*|${'?'.repeat(46)}*) return 1 ;; esac
      case $5 in tcp|udp) ;; *) return 1 ;; esac
      valid_port "$6" && valid_port "$7" && [ "$6" -le "$7" ] ;;
    stop)
      [ $# -eq 2 ] || return 1
      case $2 in firewalld|ufw) ;; *) return 1 ;; esac ;;
    *) return 1 ;;
  esac
}

# manager_active MANAGER: true while it filters.
manager_active() {
  case $1 in
    firewalld) firewall-cmd -q --state >/dev/null 2>&1 ;;
    ufw)
      ma_out=$(ufw status 2>/dev/null) || return 1
      case $ma_out in 'Status: active'*) return 0 ;; esac
      return 1 ;;
    *) return 1 ;;
  esac
}

# remedy_open ACTION open MANAGER FAMILY SOURCE PROTO FIRST LAST: ACTION add (runtime), remove
# (and checked gone), permanent (kept at boot; ufw's rules are from the start).
remedy_open() {
  ro_action=$1; shift
  case $2 in
    firewalld)
      if [ "$3" = 4 ]; then ro_fam=ipv4; else ro_fam=ipv6; fi
      if [ "$4" = any ]; then ro_src=; else ro_src=" source address=\"$4\""; fi
      if [ "$6" = "$7" ]; then ro_port=$6; else ro_port="$6-$7"; fi
      ro_rule="rule family=\"$ro_fam\"$ro_src port port=\"$ro_port\" protocol=\"$5\" accept"
      case $ro_action in
        add) firewall-cmd -q --add-rich-rule="$ro_rule" >/dev/null 2>&1 ;;
        # Not running (stopped since) holds no runtime rule: the query fails then too.
        remove) firewall-cmd -q --remove-rich-rule="$ro_rule" >/dev/null 2>&1; ! firewall-cmd -q --query-rich-rule="$ro_rule" >/dev/null 2>&1 ;;
        permanent) firewall-cmd -q --permanent --add-rich-rule="$ro_rule" >/dev/null 2>&1 ;;
      esac ;;
    ufw)
      if [ "$6" = "$7" ]; then ro_port=$6; else ro_port="$6:$7"; fi
      case $ro_action in
        add) ufw allow proto "$5" from "$4" to any port "$ro_port" >/dev/null 2>&1 ;;
        remove) ufw delete allow proto "$5" from "$4" to any port "$ro_port" >/dev/null 2>&1 ;;
        permanent) true ;;
      esac ;;
    *) return 1 ;;
  esac
}

# remedy_stop / remedy_start MANAGER: checked by asking the manager afterwards.
remedy_stop() {
  case $1 in
    firewalld) systemctl stop firewalld >/dev/null 2>&1 ;;
    ufw) ufw disable >/dev/null 2>&1 ;;
  esac
  ! manager_active "$1"
}
remedy_start() {
  case $1 in
    firewalld) systemctl start firewalld >/dev/null 2>&1 ;;
    ufw) ufw --force enable >/dev/null 2>&1 ;;
  esac
  manager_active "$1"
}

# undo_remedy BATCH: every step of the batch's remedy undone (all tried; each is a no-op when
# it was never taken). Sets $remedy_why and fails when one cannot be undone.
undo_remedy() {
  remedy_why=; ur_file="$BACKUPS/$1.remedy"
  [ -f "$ur_file" ] || return 0
  read_text "$ur_file" || { remedy_why="cannot read $ur_file"; return 1; }
  IFS=$nl
  for ur_line in $text; do
    IFS=$ifs0; set -- $ur_line
    case $1 in
      open) remedy_open remove "$@" || remedy_why="$remedy_why $2 still holds the rule opened for $5/$6-$7 from $4 (IPv$3);" ;;
      stop) [ "$3" != active ] || remedy_start "$2" || remedy_why="$remedy_why $2 could not be started again;" ;;
    esac
  done
  IFS=$ifs0
  [ -z "$remedy_why" ] || return 1
  mv -f "$ur_file" "$ur_file-undone" || { remedy_why="undone, but cannot record it"; return 1; }
  log "remedy undone: $ur_file-undone"
}

# keep_remedy BATCH: at confirm, the remedy kept at boot: the opened flows written to the
# manager's permanent configuration, a stopped manager disabled. Prints remedy=kept|failed;
# a failure is told by remedy_kept (after persist: our own rules are persisted regardless).
kr_failed=
keep_remedy() {
  kr_file="$BACKUPS/$1.remedy"
  [ -f "$kr_file" ] || return 0
  read_text "$kr_file" || kr_failed=" cannot read $kr_file;"
  IFS=$nl
  for kr_line in $text; do
    IFS=$ifs0; set -- $kr_line
    case $1 in
      open) remedy_open permanent "$@" || kr_failed="$kr_failed $2 did not keep the rule for $5/$6-$7 from $4 (IPv$3);" ;;
      stop) [ "$2" != firewalld ] || systemctl disable firewalld >/dev/null 2>&1 || kr_failed="$kr_failed systemctl disable firewalld failed;" ;;
    esac
  done
  IFS=$ifs0
  if [ -n "$kr_failed" ]; then echo "remedy=failed"; else echo "remedy=kept"; fi
}
remedy_kept() {
  [ -z "$kr_failed" ] ||
    die 9 "the rules are confirmed, but the other firewall's remedy is not kept at boot:$kr_failed after a reboot it drops the flows again"
}

# ---- ops -----------------------------------------------------------------------------------
op=$1; shift
[ -d "$BACKUPS" ] || mkdir -p "$DIR" "$BACKUPS" || die 1 "cannot create $DIR"

case "$op" in
  version) echo "$AGENT_VERSION_PLACEHOLDER"; exit 0 ;;
esac

case "$op" in
  begin) # BATCH SECONDS [stage], owner line in IW_OWNER or on stdin: lock, snapshot, arm. Prints
    # watchdog=unit|detached, then the snapshot. With "stage" a candidate payload follows on
    # stdin and is staged as by the stage op (one round trip less): exit 5 when it is rejected,
    # the batch then still locked. Exit 9 (1 for the watchdog), nothing changed, nothing locked,
    # when the snapshot, the watchdog or the state cannot be made.
    stage_too=
    if [ $# -eq 3 ] && [ "$3" = stage ]; then stage_too=1; set -- "$1" "$2"; fi
    [ $# -eq 2 ] && valid_batch "$1" && valid_seconds "$2" || die 2 "usage: begin BATCH SECONDS [stage]"
    batch=$1; seconds=$2
    # The install-and-begin commands read the owner line before the rest of their stdin.
    set +u; owner=$IW_OWNER; set -u
    [ -n "$owner" ] || [ -n "$stage_too" ] || IFS= read -r owner || :
    case $owner in
      *[!A-Za-z0-9@._:=/\ -]*|${'?'.repeat(201)}*)
        owner=$(printf '%s\n' "$owner" | awk 'NR == 1 { gsub(/[^A-Za-z0-9@._:=\/ -]/, ""); print substr($0, 1, 200); exit }') ;;
    esac
    take_mutex
    clock
    read_state
    if is_pending_phase "$s_phase"; then
      # A new copy being installed (see below) is dropped: the pending batch keeps its agent.
      case $0 in "$DIR"/agent.sh.*) rm -f "$0" ;; esac
      if is_stale; then stale=yes; else stale=no; fi
      printf 'held_by=%s\nsince=%s\nbatch=%s\nphase=%s\ndeadline=%s\nnow=%s\nstale=%s\n' \
        "$s_owner" "$s_since" "$s_batch" "$s_phase" "$s_deadline" "$op_now" "$stale"
      exit 3
    fi
    # Run from a new copy (agent.sh.<pid>, the install-begin-stage command): it takes the agent's
    # place only now, under the mutex with no batch pending, so a batch begun by an older agent
    # finishes with that agent and its watchdog (whose state format it knows).
    case $0 in "$DIR"/agent.sh.*) mv -f "$0" "$AGENT" || die 1 "cannot install the agent" ;; esac
    for fam in 4 6; do
      save_text "$fam" || { rm -f "$BACKUPS/$batch.v4"; die 9 "iptables-save failed for IPv$fam: no snapshot, nothing changed"; }
      write_checked "$BACKUPS/$batch.v$fam" "$saved" ||
        { rm -f "$BACKUPS/$batch.v4"; die 9 "cannot write the IPv$fam snapshot (disk full?): nothing changed"; }
      if [ "$fam" = 4 ]; then snap_v4=$saved; else snap_v6=$saved; fi
    done
    # Our nftables table (empty: absent, or no nft on this server).
    nft_live || { rm -f "$BACKUPS/$batch.v4" "$BACKUPS/$batch.v6"; die 9 "cannot list the nftables table $NFT_TABLE: no snapshot, nothing changed"; }
    snap_nft=$nft_text
    write_checked "$BACKUPS/$batch.nft" "$snap_nft" ||
      { rm -f "$BACKUPS/$batch.v4" "$BACKUPS/$batch.v6"; die 9 "cannot write the nftables snapshot (disk full?): nothing changed"; }
    arm_watchdog "$batch" "$seconds" ||
      { rm -f "$BACKUPS/$batch.v4" "$BACKUPS/$batch.v6" "$BACKUPS/$batch.nft"; die 1 "systemd-run failed: no watchdog could be armed, nothing changed"; }
    s_batch=$batch; s_phase=locked; s_owner=$owner; s_since=$op_now; s_changed=$op_now; s_boot=; s_nftpart=yes
    if ! write_state; then
      retire_watchdog "$s_watchdog" # a detached one finds no token and quits
      rm -f "$BACKUPS/$batch.v4" "$BACKUPS/$batch.v6" "$BACKUPS/$batch.nft"
      die 9 "cannot write the state (disk full?): nothing changed"
    fi
    log "begin $batch by $owner"
    printf 'watchdog=%s\n' "$watchdog_kind"
    printf '#iw:v4\n'; [ -z "$snap_v4" ] || printf '%s\n' "$snap_v4"
    printf '#iw:v6\n'; [ -z "$snap_v6" ] || printf '%s\n' "$snap_v6"
    printf '#iw:nft\n'; nft_empty "$snap_nft" || printf '%s\n' "$snap_nft"
    [ -z "$stage_too" ] || stage_payload "$batch"
    ;;

  stage) # BATCH, candidate payload on stdin: store and test it. Nothing changes.
    [ $# -eq 1 ] && valid_batch "$1" || die 2 "usage: stage BATCH"
    batch=$1
    take_mutex
    read_state
    require_batch "$batch"
    case $s_phase in locked|staged) ;; *) die 4 "batch $batch is $s_phase: its candidate is already loaded" ;; esac
    # A new candidate must pass --test before it may load.
    if [ "$s_phase" = staged ]; then s_phase=locked; write_state || die 9 "cannot write the state (disk full?)"; fi
    stage_payload "$batch"
    echo "staged"
    ;;

  load) # BATCH: load the staged candidate atomically (others' chains taken live), then our
    # nftables table in one transaction; on any failure put the whole snapshot back and verify
    # it (exit 6), or keep retrying (exit 7).
    [ $# -eq 1 ] && valid_batch "$1" && batch=$1 || die 2 "usage: load BATCH"
    take_mutex
    read_state
    require_batch "$batch"
    [ "$s_phase" = staged ] || die 4 "batch $batch is $s_phase, not staged"
    clock
    read_boot_id
    # Written before anything changes: from here an expiry puts the snapshot back.
    s_phase=loading; s_changed=$op_now; s_boot=$boot_id
    write_state || die 9 "cannot write the state (disk full?): nothing loaded"
    failure=
    for fam in 4 6; do
      if ! read_text "$BACKUPS/$batch.cand.v$fam"; then failure="IPv$fam load failed (the candidate is missing)"; break; fi
      our_part "$text"
      load_ours "$fam" "$part" || { failure="IPv$fam load failed ($load_err)"; break; }
    done
    if [ -z "$failure" ] && [ "$s_nftpart" = yes ]; then
      if ! read_text "$BACKUPS/$batch.cand.nft"; then failure="nftables load failed (the candidate is missing)"
      elif ! load_nft "$text"; then failure="nftables load failed ($load_err)"
      fi
    fi
    # What is live now, in iptables-save's and nft's spelling: confirm compares with it.
    if [ -z "$failure" ]; then
      for fam in 4 6; do
        live_text "$fam" && our_part "$saved" && write_checked "$BACKUPS/$batch.loaded.v$fam" "$part" ||
          { failure="cannot record the loaded IPv$fam rules (disk full?)"; break; }
      done
    fi
    if [ -z "$failure" ] && [ "$s_nftpart" = yes ]; then
      nft_live && write_checked "$BACKUPS/$batch.loaded.nft" "$nft_text" ||
        failure="cannot record the loaded nftables table (disk full?)"
    fi
    if [ -z "$failure" ]; then
      s_phase=loaded
      write_state || failure="cannot write the state (disk full?)"
    fi
    if [ -n "$failure" ]; then
      printf '%s\n' "$failure" >&2
      restore_or_retry "$batch" "$failure in batch"
      lf_watchdog=$s_watchdog
      s_phase=failed; s_token=; s_watchdog=
      # Unwritten, the watchdog stays armed and restores the same rules again at its deadline.
      write_state || die 9 "$failure; the previous rules are back and verified, but the state cannot be written"
      retire_watchdog "$lf_watchdog"
      log "load $batch failed: $failure; snapshot restored and verified"
      die 6 "$failure; the previous rules were restored and verified"
    fi
    log "loaded $batch"
    echo "loaded"
    ;;

  remedy) # BATCH, steps on stdin (see valid_remedy_step): after the load, before the countdown.
    # Every step recorded first, then taken and checked; a failure exits 1 and the client rolls
    # the batch back (its restore undoes every recorded step), as the watchdog would.
    [ $# -eq 1 ] && valid_batch "$1" && batch=$1 || die 2 "usage: remedy BATCH"
    take_mutex
    read_state
    require_batch "$batch"
    [ "$s_phase" = loaded ] || die 4 "batch $batch is $s_phase, not loaded"
    [ ! -f "$BACKUPS/$batch.remedy" ] || die 1 "batch $batch already took its remedy"
    rm_steps= rm_sep=
    while IFS= read -r rm_line || [ -n "$rm_line" ]; do
      [ -n "$rm_line" ] || continue
      set -- $rm_line
      valid_remedy_step "$@" || die 2 "remedy: not a step: $rm_line"
      if [ "$1" = stop ]; then
        if manager_active "$2"; then rm_line="stop $2 active"; else rm_line="stop $2 inactive"; fi
      fi
      rm_steps="$rm_steps$rm_sep$rm_line"; rm_sep=$nl
    done
    [ -n "$rm_steps" ] || die 2 "remedy: no steps"
    write_checked "$BACKUPS/$batch.remedy" "$rm_steps" || die 9 "cannot record the remedy (disk full?): nothing done"
    IFS=$nl
    for rm_line in $rm_steps; do
      IFS=$ifs0; set -- $rm_line
      case $1 in
        open) remedy_open add "$@" || die 1 "$2 did not take the rule opening $5/$6-$7 from $4 (IPv$3)" ;;
        stop) [ "$3" != active ] || remedy_stop "$2" || die 1 "$2 could not be stopped" ;;
      esac
    done
    IFS=$ifs0
    log "remedy $batch taken"
    echo "remedied"
    ;;

  arm) # BATCH SECONDS: (re)start the countdown from now.
    [ $# -eq 2 ] && valid_batch "$1" && valid_seconds "$2" || die 2 "usage: arm BATCH SECONDS"
    take_mutex
    read_state
    require_batch "$1"
    [ "$s_phase" != restoring ] ||
      die 7 "could not restore: act now: batch $1 failed and its previous rules could not be put back yet; the server retries every $RETRY_SECONDS s"
    arm_watchdog "$1" "$2" || die 1 "systemd-run failed: the countdown was not re-armed (the earlier watchdog stays)"
    if ! write_state; then retire_watchdog "$s_watchdog"; die 9 "cannot write the state (disk full?): the earlier watchdog stays"; fi
    retire_watchdog "$old_watchdog"
    printf 'deadline=%s\nnow=%s\nwatchdog=%s\n' "$s_deadline" "$op_now" "$watchdog_kind"
    ;;

  show) # the live filter tables, normalized, and the state (for verification from a new connection)
    show_live
    ;;

  verify) # BATCH: show, then wait for one line on stdin: "confirm" confirms (as the confirm op),
    # anything else or the end of input leaves the batch as it is (its watchdog still armed). The
    # client checks the live rules of every host of a batch before it answers any (apply --yes):
    # the confirmation then travels over this new connection, without a second command.
    [ $# -eq 1 ] && valid_batch "$1" || die 2 "usage: verify BATCH"
    show_live
    echo "#iw:await"
    answer=
    IFS= read -r answer || :
    [ "$answer" = confirm ] || { echo "not-confirmed"; exit 0; }
    confirm_batch "$1"
    ;;

  confirm) # BATCH: keep the rules. Exit 4 when the batch already expired (rolled back), 8 when
    # the server rebooted or the live rules changed since the load.
    [ $# -eq 1 ] && valid_batch "$1" || die 2 "usage: confirm BATCH"
    confirm_batch "$1"
    ;;

  rollback) # BATCH: put the snapshot back now and verify it; exit 7 (the batch pending, the
    # watchdog retrying) while it cannot be. A stale batch is restored only while the live rules
    # are still the ones it loaded (exit 8 reason=changed otherwise).
    [ $# -eq 1 ] && valid_batch "$1" && batch=$1 || die 2 "usage: rollback BATCH"
    take_mutex
    read_state
    require_batch "$batch"
    was=$s_phase
    if is_stale && [ "$was" != locked ] && [ "$was" != staged ] && ! live_matches_loaded "$batch"; then
      printf 'reason=changed\n'
      die 8 "batch $batch is stale (its deadline passed long ago and no watchdog acted: a reboot?) and the live rules are no longer the ones it loaded:$why its snapshot was not restored over them. Check the server's rules; to release the batch keeping them: sudo sh $AGENT unlock $batch"
    fi
    case $was in loading|loaded|restoring) restore_or_retry "$batch" "rollback of" ;; esac
    clock
    rb_watchdog=$s_watchdog
    s_token=; s_watchdog=; s_phase=rolledback; s_changed=$op_now
    write_state || die 9 "the previous rules are back and verified, but the state cannot be written (disk full?): the watchdog stays armed"
    retire_watchdog "$rb_watchdog"
    log "rolled back $batch (was $was): verified"
    echo "rolledback"
    ;;

  unlock) # BATCH: release a batch that changed nothing yet (locked or staged), or a stale one,
    # keeping the live rules as they are.
    [ $# -eq 1 ] && valid_batch "$1" || die 2 "usage: unlock BATCH"
    take_mutex
    read_state
    [ "$s_batch" = "$1" ] || { echo "not-current"; exit 0; }
    case $s_phase in
      locked|staged) ;;
      *) { is_pending_phase "$s_phase" && is_stale; } || die 4 "batch $1 is $s_phase: use rollback" ;;
    esac
    clock
    ul_watchdog=$s_watchdog
    s_token=; s_watchdog=; s_phase=released; s_changed=$op_now
    write_state || die 9 "cannot write the state (disk full?)"
    retire_watchdog "$ul_watchdog"
    log "released $1 (the live rules kept)"
    echo "released"
    ;;

  fire) # BATCH TOKEN: the watchdog (started by a systemd timer, or by setsid).
    [ $# -eq 2 ] && valid_batch "$1" && valid_token "$2" || die 2 "usage: fire BATCH TOKEN"
    watch_deadline "$1" "$2" ""
    ;;

  status) # key=value lines about this host. Read-only: changes nothing (no mutex either: the
    # state is only ever replaced whole).
    read_state
    clock
    if [ -f "$STATE" ]; then managed=yes; else managed=no; fi
    if is_pending_phase "$s_phase"; then locked=yes; else locked=no; fi
    if is_stale; then stale=yes; else stale=no; fi
    list_snapshots || snapshots=0
    # What brings ours back at boot: our unit or files (the distribution's loader when a batch
    # confirmed by an older agent wrote its files).
    if [ -e "$IPT_UNIT" ]; then pk=iptables
    elif [ -e "$NFT_UNIT" ]; then pk=nftables
    elif [ -e "$IPT_FILE.v4" ]; then pk=iptables-file
    elif [ -e "$NFT_FILE" ]; then pk=nftables-file
    else persist_kind; fi
    case $s_watchdog in unit:*) watchdog=unit ;; *) watchdog=$s_watchdog ;; esac
    printf 'managed=%s\nbatch=%s\nphase=%s\nowner=%s\nsince=%s\nchanged=%s\nconfirmed=%s\ndeadline=%s\nnow=%s\nlocked=%s\nstale=%s\nwatchdog=%s\nbackups=%s\npersistence=%s\n' \
      "$managed" "$s_batch" "$s_phase" "$s_owner" "$s_since" "$s_changed" "$s_confirmed" "$s_deadline" "$op_now" "$locked" "$stale" "$watchdog" "$snapshots" "$pk"
    ;;

  confirmed) # what the last confirmed batch loaded, as recorded at its load: batch=B, then each
    # part recorded (#iw:v4, #iw:v6, and any other, e.g. #iw:nft); "none" when no batch was
    # confirmed here. Read-only (status compares the live rules with it: drift).
    read_state
    cf_batch=$s_lastconfirmed
    # A state written before lastconfirmed was kept: its batch, when confirmed.
    [ -n "$cf_batch" ] || [ "$s_phase" != confirmed ] || cf_batch=$s_batch
    [ -n "$cf_batch" ] || { echo none; exit 0; }
    printf 'batch=%s\n' "$cf_batch"
    for cf_part in v4 v6 nft; do
      if [ -f "$BACKUPS/$cf_batch.loaded.$cf_part" ]; then
        read_text "$BACKUPS/$cf_batch.loaded.$cf_part" || die 1 "cannot read the rules batch $cf_batch loaded ($cf_part)"
        printf '#iw:%s\n' "$cf_part"; [ -z "$text" ] || printf '%s\n' "$text"
      elif [ "$cf_part" != nft ]; then
        die 1 "the record of the rules batch $cf_batch loaded ($cf_part) is missing"
      fi
    done
    ;;

  boot) # our boot files loaded again (isolate-wizard-iptables.service, after the distribution's
    # loader). No mutex: the confirm that starts the unit holds it.
    [ $# -eq 0 ] || die 2 "usage: boot"
    boot_load
    ;;

  install-persistence) # installs the distribution's boot-time loader, non-interactively
    persist_kind
    if [ "$pk" != none ]; then echo "persistence=$pk"; exit 0; fi
    if have apt-get; then
      # ufw's package and iptables-persistent break each other: installing one removes the
      # other, and removing ufw sets the policies to ACCEPT.
      if have ufw || awk '/^Package: / { p = ($2 == "ufw") } p && /^Status: .* installed$/ { found = 1 } END { exit !found }' /var/lib/dpkg/status 2>/dev/null; then
        die 1 "ufw is installed: the iptables-persistent package removes it (and ufw's removal opens the firewall); nothing installed: keep the rules across reboots with ufw, or remove ufw yourself first"
      fi
      # Without these answers the package saves the CURRENT rules during installation.
      if have debconf-set-selections; then
        printf '%s\n' 'iptables-persistent iptables-persistent/autosave_v4 boolean false' \
          'iptables-persistent iptables-persistent/autosave_v6 boolean false' | debconf-set-selections
      fi
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q iptables-persistent >/dev/null 2>&1 ||
        { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q iptables-persistent >/dev/null 2>&1; } ||
        die 1 "apt-get install iptables-persistent failed"
    elif have dnf; then
      dnf install -y -q iptables-services >/dev/null 2>&1 || die 1 "dnf install iptables-services failed"
      systemctl enable iptables ip6tables >/dev/null 2>&1
    elif have yum; then
      yum install -y -q iptables-services >/dev/null 2>&1 || die 1 "yum install iptables-services failed"
      systemctl enable iptables ip6tables >/dev/null 2>&1
    else
      die 1 "no apt-get, dnf or yum: install a boot-time iptables loader by hand"
    fi
    persist_kind
    echo "persistence=$pk"
    ;;

  *) die 2 "unknown op: $op" ;;
esac
exit 0
`.replaceAll('$AGENT_VERSION_PLACEHOLDER', AGENT_VERSION);
