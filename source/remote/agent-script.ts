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
// itself: a batch in a pending phase (locked, staged, loading, loaded) holds it.
//
// Cheap in processes (a fleet apply runs it on every server at once, each fork+exec costs
// 10-25 ms of CPU on small machines): state, payloads and rules are read and written with shell
// builtins; what remains is one date per op, flock, iptables-save/-restore, and one mv per begin.
// The detached watchdog is a fork of the agent's shell, not a new program.
//
// Exit codes: 0 ok, 3 lock held by another batch, 4 batch expired / not pending, 5 candidate
// rejected by `iptables-restore --test`, 6 load failed (snapshot restored), 7 restore could not be
// verified, 2 bad arguments.
//
// Kept free of backquotes and dollar-brace so it can live in a TS template literal unchanged.

/** Where the agent lives on every server. Fixed: commands never take paths from input. */
export const AGENT_DIR = '/var/lib/isolate-wizard';
export const AGENT_PATH = `${AGENT_DIR}/agent.sh`;

/** Bumped whenever the state format or an op's contract changes. */
export const AGENT_VERSION = '2';

/** Exit codes of the agent (see the header of the script). */
export const AGENT_EXIT = {
  ok: 0,
  badArguments: 2,
  lockHeld: 3,
  notPending: 4,
  candidateRejected: 5,
  loadFailed: 6,
  restoreUnverified: 7,
} as const;

/** Separates the IPv4 and IPv6 parts of a stdin/stdout payload; iptables-save never prints it. */
export const SECTION_V4 = '#iw:v4';
export const SECTION_V6 = '#iw:v6';

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
KEEP_BACKUPS=10
# After the deadline, a watchdog that never ran (killed, reboot) leaves a stale lock; the next
# begin/status treats it as expired once this grace has also passed.
STALE_GRACE=30

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

log() {
  clock; iso_time "$op_now"
  printf '%s %s\n' "$iso" "$*" >> "$DIR/log" 2>/dev/null
}

# At most 64 characters: 65 "?" match any longer word, without a process to count them.
valid_batch() { case "$1" in ''|*[!a-z0-9-]*|${'?'.repeat(65)}*) return 1 ;; esac; }
valid_seconds() { case "$1" in ''|*[!0-9]*) return 1 ;; esac; [ "$1" -ge 1 ] && [ "$1" -le 86400 ]; }
valid_token() { case "$1" in ''|*[!a-z0-9]*) return 1 ;; esac; }

# ---- state: key=value lines --------------------------------------------------------------------
# begin writes the whole state (a new file renamed over the old one); later ops of the batch
# append the keys they change, and the last line of a key wins. An append is one small write,
# started with a newline so a write torn by a crash cannot run into the next line; a reader
# ignores a last line without its newline. Every writer holds the mutex. Readers without it: the
# watchdog's poll, which re-reads under the mutex before it stands down or expires anything, and
# show, whose answer the client only compares (a torn read there fails the verification, safely).
#
# read_state: sets s_<key> for every key, each reduced to the characters it may hold.
read_state() {
  s_version= s_batch= s_phase= s_owner= s_since= s_changed= s_confirmed= s_token= s_deadline= s_watchdog=
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
  return 0
}

# write_state: the whole state from the s_ variables, replaced atomically.
write_state() {
  printf 'version=%s\nbatch=%s\nphase=%s\nowner=%s\nsince=%s\nchanged=%s\nconfirmed=%s\ntoken=%s\ndeadline=%s\nwatchdog=%s\n' \
    "$AGENT_VERSION_PLACEHOLDER" "$s_batch" "$s_phase" "$s_owner" "$s_since" "$s_changed" "$s_confirmed" \
    "$s_token" "$s_deadline" "$s_watchdog" > "$STATE.new" && mv -f "$STATE.new" "$STATE"
}

# append_state key=value ...: one write. Callers update the s_ variables they still use.
append_state() {
  as_lines=
  for as_pair in "$@"; do as_lines="$as_lines$as_pair$nl"; done
  printf '\n%s' "$as_lines" >> "$STATE"
}

is_pending_phase() { case "$1" in locked|staged|loading|loaded) return 0 ;; *) return 1 ;; esac; }

require_batch() { # batch: the current, pending batch (state read); else exit 4 saying what happened
  if [ "$s_batch" != "$1" ]; then die 4 "batch $1 is not the current one (current: $s_batch $s_phase)"; fi
  if ! is_pending_phase "$s_phase"; then die 4 "batch $1 is $s_phase"; fi
}

# ---- mutex ---------------------------------------------------------------------------------
mutex=
take_mutex() {
  if have flock; then
    exec 9>"$DIR/mutex"
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

# ---- iptables helpers ----------------------------------------------------------------------
# Set $cmd / $rcmd for a family (assignments, not $(...): no subshell per call).
save_cmd() { if [ "$1" = 4 ]; then cmd=iptables-save; else cmd=ip6tables-save; fi; }
restore_cmd() { if [ "$1" = 4 ]; then rcmd=iptables-restore; else rcmd=ip6tables-restore; fi; }

# save_text FAMILY [ARGS]: sets $saved to the output of iptables-save ARGS ("" when the command is
# missing); fails, with $saved empty, when the command fails. Read through $(...): the shell
# reads a pipe in blocks, where a read loop would take a system call per byte.
save_text() {
  save_cmd "$1"; shift
  saved=
  have "$cmd" || return 0
  saved=$("$cmd" "$@" 2>/dev/null) || { saved=; return 1; }
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

# is_empty_filter TEXT (a filter_text output): true when it lets everything through.
is_empty_filter() {
  IFS=$nl
  for ie_line in $1; do
    case $ie_line in
      '*filter'|COMMIT|':INPUT ACCEPT'|':FORWARD ACCEPT'|':OUTPUT ACCEPT') ;;
      *) IFS=$ifs0; return 1 ;;
    esac
  done
  IFS=$ifs0
  return 0
}

# Every section of FILE except *filter, verbatim (for keeping other tables of a persistence file).
other_sections() {
  os_keep=0
  while IFS= read -r os_line || [ -n "$os_line" ]; do
    case $os_line in '*'*) if [ "$os_line" = '*filter' ]; then os_keep=0; else os_keep=1; fi ;; esac
    [ "$os_keep" = 1 ] || continue
    printf '%s\n' "$os_line"
    [ "$os_line" != COMMIT ] || os_keep=0
  done < "$1"
}

live_filter() { # family -> live filter section on stdout ("" when no filter table exists)
  save_text "$1" -t filter || save_text "$1"
  filter_text "$saved"
}

# "Empty" = no filter table at all (what a fresh nf_tables host has), or on the legacy backend,
# where the table always exists once loaded, no rules, no user chains and ACCEPT policies. Both
# let everything through; restoring an empty snapshot produces exactly this.
remove_filter() {
  fam=$1
  if have nft && have iptables; then
    case "$(iptables -V 2>/dev/null)" in
      *nf_tables*)
        if [ "$fam" = 4 ]; then nft delete table ip filter 2>/dev/null; else nft delete table ip6 filter 2>/dev/null; fi
        return 0 ;;
    esac
  fi
  if [ "$fam" = 4 ]; then c=iptables; else c=ip6tables; fi
  have "$c" || return 0
  $c -t filter -P INPUT ACCEPT; $c -t filter -P FORWARD ACCEPT; $c -t filter -P OUTPUT ACCEPT
  $c -t filter -F; $c -t filter -X
}

# The filter section of a snapshot file, normalized, in $snap_filter. The rare paths (rollback,
# expiry) read the file with one cat: a read loop takes a system call per byte.
snapshot_filter() { # file
  snap_filter=$(filter_text "$(cat "$1")")
}

# Restores the filter table of a snapshot. Only *filter is written by this tool, so only *filter
# is restored: nat/mangle/raw (Docker's, Kubernetes') stay as they are now. Under the mutex.
restore_snapshot() {
  rs_batch=$1; rs_status=0
  for fam in 4 6; do
    snap="$BACKUPS/$rs_batch.v$fam"
    [ -f "$snap" ] || continue
    snapshot_filter "$snap"
    if [ -n "$snap_filter" ]; then
      printf '%s\n' "$snap_filter" > "$WORK.v$fam"
      restore_cmd "$fam"
      if have "$rcmd"; then "$rcmd" < "$WORK.v$fam" || rs_status=1; fi
    else
      remove_filter "$fam"
    fi
  done
  return $rs_status
}

snapshot_matches_live() { # batch -> true when the live filter tables equal the snapshot's
  for fam in 4 6; do
    snap="$BACKUPS/$1.v$fam"
    [ -f "$snap" ] || continue
    snapshot_filter "$snap"
    sm_live=$(live_filter "$fam")
    if is_empty_filter "$snap_filter" && is_empty_filter "$sm_live"; then continue; fi
    [ "$snap_filter" = "$sm_live" ] || return 1
  done
  return 0
}

# ---- watchdog ------------------------------------------------------------------------------

# systemd manages this system only when it booted it (sd_booted: /run/systemd/system exists). A
# container or a lab server with its own /run sees the host's PID 1 but must not use its systemd.
pid1_is_systemd() {
  [ -d /run/systemd/system ] || return 1
  IFS= read -r p1_comm < /proc/1/comm 2>/dev/null || return 1
  [ "$p1_comm" = systemd ] && have systemd-run && have systemctl
}

# new_arm BATCH SECONDS: a new token and deadline (op_now + SECONDS, server clock) and the kind
# of watchdog, in the s_ variables; the caller writes them to the state, then launch_watchdog.
new_arm() {
  clock
  s_deadline=$((op_now + $2))
  # Unique per arm (this shell's pid and the second): it only has to differ from earlier tokens.
  s_token="$op_now"p$$
  if pid1_is_systemd; then s_watchdog="unit:isolate-wizard-$1-$s_token"; else s_watchdog=detached; fi
}

# launch_watchdog BATCH SECONDS: starts the watchdog new_arm chose (its token is in the state).
launch_watchdog() {
  case $s_watchdog in
    unit:*)
      lw_unit=isolate-wizard-$1-$s_token
      if systemd-run --quiet --unit="$lw_unit" --on-active="$2" --timer-property=AccuracySec=1s \
          /bin/sh "$AGENT" fire "$1" "$s_token" >/dev/null 2>&1; then
        log "armed $1 unit $lw_unit deadline $s_deadline"
        return 0
      fi
      s_watchdog=detached; append_state "watchdog=detached" ;;
  esac
  # Detached: a session of its own (setsid: no controlling terminal, no process group shared
  # with the SSH session), no inherited pipes (the SSH channel can close), the mutex fd closed
  # (it must not hold our lock). Where setsid is missing, a forked copy of this shell deaf to
  # SIGHUP (OpenSSH already runs each command in a new session without a terminal); it needs
  # no clock read before its first sleep: it knows the second the deadline was computed from.
  if have setsid; then
    setsid sh "$AGENT" fire "$1" "$s_token" </dev/null >/dev/null 2>&1 9>&- &
  else
    ( trap - EXIT; trap '' HUP; watch_deadline "$1" "$s_token" "$op_now" ) </dev/null >/dev/null 2>&1 9>&- &
  fi
  log "armed $1 pid $! deadline $s_deadline"
}

stop_watchdog_unit() { # a systemd timer of an earlier arm; the state's token retires the others
  case $s_watchdog in
    unit:*) IFS=:; set -- $s_watchdog; IFS=$ifs0; systemctl stop "$2.timer" >/dev/null 2>&1 ;;
  esac
  return 0
}

# The watch is alive while the state holds the token and a deadline.
watch_ok() { [ "$s_token" = "$1" ] && [ -n "$s_deadline" ]; }

# watch_deadline BATCH TOKEN [NOW]: waits for the deadline, then expires the batch if it is still ours.
# Polls rather than one long sleep: a suspended/adjusted clock is re-read, and a cancelled or
# re-armed watchdog notices that its token is gone and quits. At most 5 s between polls, to the
# second near the deadline: few processes while a fleet is being applied. Never returns.
watch_deadline() {
  w_batch=$1; w_token=$2; w_now=$3
  while :; do
    # No state at all: nothing left to guard (renames and appends never remove it).
    [ -f "$STATE" ] || exit 0
    read_state
    if ! watch_ok "$w_token"; then
      # Seen without the mutex: make sure under it before standing down.
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
  expire "$w_batch"
  exit 0
}

# expire BATCH: under the mutex, state read. Puts back the snapshot if anything may have been loaded.
expire() {
  if [ "$s_phase" = loading ] || [ "$s_phase" = loaded ]; then
    if restore_snapshot "$1"; then log "expired $1: snapshot restored"
    else log "expired $1: restore reported an error"; fi
  else
    log "expired $1 before any change: lock released"
  fi
  clock
  append_state "phase=expired" "token=" "watchdog=" "changed=$op_now"
  s_phase=expired; s_token=; s_watchdog=; s_changed=$op_now
}

# A lock whose deadline passed long ago with no watchdog left to act (killed, reboot).
expire_if_stale() {
  is_pending_phase "$s_phase" || return 0
  clock
  es_deadline=$s_deadline; [ -n "$es_deadline" ] || es_deadline=0
  if [ "$op_now" -gt $((es_deadline + STALE_GRACE)) ]; then expire "$s_batch"; fi
  return 0
}

# ---- persistence ---------------------------------------------------------------------------
persist_kind() { # -> $pk
  if have netfilter-persistent || [ -d /usr/share/netfilter-persistent/plugins.d ]; then pk=debian
  elif [ -f /usr/libexec/iptables/iptables.init ] || [ -f /usr/lib/systemd/system/iptables.service ]; then pk=rhel
  else pk=none; fi
}

# persist_file FAMILY FILE ITS-DIRECTORY: writes the live filter table into the boot-time file,
# keeping the file's other tables.
persist_file() {
  [ -d "$3" ] || mkdir -p "$3"
  umask 022
  save_text "$1" -t filter || save_text "$1"
  clock; iso_time "$op_now"
  {
    printf '# Written by isolate-wizard on %s\n' "$iso"
    [ -f "$2" ] && other_sections "$2"
    filter_text "$saved"
  } > "$2.iw-new" && mv -f "$2.iw-new" "$2"
  pf_status=$?
  umask 077
  return $pf_status
}

persist() {
  persist_kind
  case $pk in
    debian) persist_file 4 /etc/iptables/rules.v4 /etc/iptables && persist_file 6 /etc/iptables/rules.v6 /etc/iptables && echo "persisted=debian" ;;
    rhel) persist_file 4 /etc/sysconfig/iptables /etc/sysconfig && persist_file 6 /etc/sysconfig/ip6tables /etc/sysconfig && echo "persisted=rhel" ;;
    *) echo "persisted=none" ;;
  esac
}

# Snapshots are named <batch>.v4 (.v6, .cand.v4, .cand.v6); batches start with a sortable
# timestamp and hold no dot. Sets $snapshots to their number and $oldest_first to their batch
# names, oldest first (the shell sorts a glob's matches). Changes directory to the backups.
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
    pb_files="$pb_files $pb_old.v4 $pb_old.v6 $pb_old.cand.v4 $pb_old.cand.v6"
  done
  [ -z "$pb_files" ] || rm -f $pb_files
}

# copy_until [MARK]: copies stdin lines to stdout up to the line MARK (true when it was seen),
# or to the end without one. A last line without its newline is kept.
copy_until() {
  while IFS= read -r cu_line || [ -n "$cu_line" ]; do
    if [ $# = 1 ] && [ "$cu_line" = "$1" ]; then return 0; fi
    printf '%s\n' "$cu_line"
  done
  [ $# = 0 ]
}

# stage_payload BATCH: under the mutex, the batch locked: stores the candidate payload read from
# stdin and tests it. Exit 5 when iptables-restore --test rejects it (nothing changes).
stage_payload() {
  found=0
  while IFS= read -r line; do [ "$line" != '#iw:v4' ] || { found=1; break; }; done
  [ "$found" = 1 ] || die 2 "candidate for IPv4 missing"
  copy_until '#iw:v6' > "$BACKUPS/$1.cand.v4" || die 2 "candidate for IPv6 missing"
  copy_until > "$BACKUPS/$1.cand.v6"
  failed=0
  for fam in 4 6; do
    restore_cmd "$fam"
    have "$rcmd" || die 5 "$rcmd is not installed"
    if ! err=$("$rcmd" --test < "$BACKUPS/$1.cand.v$fam" 2>&1); then
      printf 'IPv%s candidate rejected by %s --test: %s\n' "$fam" "$rcmd" "$err" >&2
      failed=1
    fi
  done
  [ $failed -eq 0 ] || exit 5
  append_state "phase=staged"
}

# show_live: the state's batch and phase, then the live filter tables, normalized.
show_live() {
  read_state
  printf 'phase=%s\nbatch=%s\n' "$s_phase" "$s_batch"
  echo "#iw:v4"; live_filter 4
  echo "#iw:v6"; live_filter 6
}

# confirm_batch BATCH: keep the rules (exit 4 when the batch already expired: rolled back), persist them.
confirm_batch() {
  batch=$1
  take_mutex
  read_state
  if [ "$s_batch" = "$batch" ] && [ "$s_phase" = confirmed ]; then echo "already-confirmed"; persist; exit 0; fi
  require_batch "$batch"
  [ "$s_phase" = loaded ] || die 4 "batch $batch is $s_phase: nothing loaded to confirm"
  stop_watchdog_unit
  clock
  # The token goes with the phase, in one write: a detached watchdog sees it gone and quits.
  append_state "token=" "watchdog=" "phase=confirmed" "changed=$op_now" "confirmed=$op_now"
  log "confirmed $batch"
  echo "confirmed"
  persist
  prune_backups
}

# ---- ops -----------------------------------------------------------------------------------
op=$1; shift
[ -d "$BACKUPS" ] || mkdir -p "$DIR" "$BACKUPS" || die 1 "cannot create $DIR"

case "$op" in
  version) echo "$AGENT_VERSION_PLACEHOLDER"; exit 0 ;;
esac

case "$op" in
  begin) # BATCH SECONDS [stage], owner line in IW_OWNER or on stdin: lock, snapshot, arm. Prints
    # the snapshot. With "stage" a candidate payload follows on stdin and is staged as by the stage
    # op (one round trip less): exit 5 when it is rejected, the batch then still locked.
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
    expire_if_stale
    if is_pending_phase "$s_phase"; then
      # A new copy being installed (see below) is dropped: the pending batch keeps its agent.
      case $0 in "$DIR"/agent.sh.*) rm -f "$0" ;; esac
      printf 'held_by=%s\nsince=%s\nbatch=%s\ndeadline=%s\nnow=%s\n' "$s_owner" "$s_since" "$s_batch" "$s_deadline" "$op_now"
      exit 3
    fi
    # Run from a new copy (agent.sh.<pid>, the install-begin-stage command): it takes the agent's
    # place only now, under the mutex with no batch pending, so a batch begun by an older agent
    # finishes with that agent and its watchdog (whose state format it knows).
    case $0 in "$DIR"/agent.sh.*) mv -f "$0" "$AGENT" || die 1 "cannot install the agent" ;; esac
    for fam in 4 6; do
      save_text "$fam" || :
      if [ -n "$saved" ]; then printf '%s\n' "$saved"; fi > "$BACKUPS/$batch.v$fam"
      if [ "$fam" = 4 ]; then snap_v4=$saved; else snap_v6=$saved; fi
    done
    new_arm "$batch" "$seconds"
    s_batch=$batch; s_phase=locked; s_owner=$owner; s_since=$op_now; s_changed=$op_now
    write_state || die 1 "cannot write the state"
    launch_watchdog "$batch" "$seconds"
    log "begin $batch by $owner"
    printf '#iw:v4\n'; [ -z "$snap_v4" ] || printf '%s\n' "$snap_v4"
    printf '#iw:v6\n'; [ -z "$snap_v6" ] || printf '%s\n' "$snap_v6"
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
    [ "$s_phase" != staged ] || append_state "phase=locked"
    stage_payload "$batch"
    echo "staged"
    ;;

  load) # BATCH: load the staged candidate atomically; on any failure put the snapshot back.
    [ $# -eq 1 ] && valid_batch "$1" || die 2 "usage: load BATCH"
    batch=$1
    take_mutex
    read_state
    require_batch "$batch"
    [ "$s_phase" = staged ] || die 4 "batch $batch is $s_phase, not staged"
    clock
    # Written before anything changes: from here an expiry puts the snapshot back.
    append_state "phase=loading" "changed=$op_now"
    for fam in 4 6; do
      restore_cmd "$fam"
      if ! err=$("$rcmd" < "$BACKUPS/$batch.cand.v$fam" 2>&1); then
        restore_snapshot "$batch"
        printf 'IPv%s load failed (%s); snapshot restored\n' "$fam" "$err" >&2
        stop_watchdog_unit
        append_state "phase=failed" "token=" "watchdog=" "changed=$op_now"
        log "load $batch failed on IPv$fam: snapshot restored"
        exit 6
      fi
    done
    append_state "phase=loaded" "changed=$op_now"
    log "loaded $batch"
    echo "loaded"
    ;;

  arm) # BATCH SECONDS: (re)start the countdown from now.
    [ $# -eq 2 ] && valid_batch "$1" && valid_seconds "$2" || die 2 "usage: arm BATCH SECONDS"
    take_mutex
    read_state
    require_batch "$1"
    stop_watchdog_unit
    new_arm "$1" "$2"
    # Written before the watchdog starts: it must find its token.
    append_state "token=$s_token" "deadline=$s_deadline" "watchdog=$s_watchdog"
    launch_watchdog "$1" "$2"
    printf 'deadline=%s\nnow=%s\n' "$s_deadline" "$op_now"
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

  confirm) # BATCH: keep the rules. Exit 4 when the batch already expired (rolled back).
    [ $# -eq 1 ] && valid_batch "$1" || die 2 "usage: confirm BATCH"
    confirm_batch "$1"
    ;;

  rollback) # BATCH: put the snapshot back now, then check the live rules equal it.
    [ $# -eq 1 ] && valid_batch "$1" || die 2 "usage: rollback BATCH"
    batch=$1
    take_mutex
    read_state
    require_batch "$batch"
    stop_watchdog_unit
    was=$s_phase
    if [ "$was" = loading ] || [ "$was" = loaded ]; then restore_snapshot "$batch"; fi
    clock
    append_state "token=" "watchdog=" "phase=rolledback" "changed=$op_now"
    log "rolled back $batch (was $was)"
    if snapshot_matches_live "$batch"; then echo "rolledback"; else die 7 "live rules differ from the snapshot after restore"; fi
    ;;

  unlock) # BATCH: release a batch that changed nothing yet (locked or staged).
    [ $# -eq 1 ] && valid_batch "$1" || die 2 "usage: unlock BATCH"
    take_mutex
    read_state
    [ "$s_batch" = "$1" ] || { echo "not-current"; exit 0; }
    case $s_phase in
      locked|staged)
        stop_watchdog_unit
        clock
        append_state "token=" "watchdog=" "phase=released" "changed=$op_now"
        echo "released" ;;
      *) die 4 "batch $1 is $s_phase: use rollback" ;;
    esac
    ;;

  fire) # BATCH TOKEN: the watchdog (started by a systemd timer, or by setsid).
    [ $# -eq 2 ] && valid_batch "$1" && valid_token "$2" || die 2 "usage: fire BATCH TOKEN"
    watch_deadline "$1" "$2" ""
    ;;

  status) # key=value lines about this host
    take_mutex
    read_state
    expire_if_stale
    clock
    if [ -f "$STATE" ]; then managed=yes; else managed=no; fi
    if is_pending_phase "$s_phase"; then locked=yes; else locked=no; fi
    list_snapshots || snapshots=0
    persist_kind
    printf 'managed=%s\nbatch=%s\nphase=%s\nowner=%s\nsince=%s\nchanged=%s\nconfirmed=%s\ndeadline=%s\nnow=%s\nlocked=%s\nbackups=%s\npersistence=%s\n' \
      "$managed" "$s_batch" "$s_phase" "$s_owner" "$s_since" "$s_changed" "$s_confirmed" "$s_deadline" "$op_now" "$locked" "$snapshots" "$pk"
    ;;

  install-persistence) # installs the distribution's boot-time loader, non-interactively
    persist_kind
    if [ "$pk" != none ]; then echo "persistence=$pk"; exit 0; fi
    if have apt-get; then
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
