// The server-side agent: a POSIX sh script installed at /var/lib/isolate-wizard/agent.sh.
//
// Why on the server: the rollback must not depend on the operator's session (iptables-apply's
// does, and a dead link leaves the new rules in place). The agent snapshots the rules, arms a
// watchdog that restores them at a deadline computed on the server's own clock, and lets a later
// connection cancel it (Junos `commit confirmed`, Ansible `iptables_state`).
//
// Invocation: `sh /var/lib/isolate-wizard/agent.sh OP [BATCH] [SECONDS]`. OP is a constant word,
// BATCH matches [a-z0-9-]+ and SECONDS [0-9]+; the agent re-checks both. Rulesets and owner text
// arrive on stdin, never in the command line.
//
// Every state change happens under one mutex (flock on $DIR/mutex, or a mkdir spin lock where
// flock is missing), so a watchdog firing and a confirm arriving at the same moment serialize:
// exactly one of "confirmed" / "expired" wins. A watchdog acts only if the state still carries its
// token, so re-arming or cancelling never races with an old watchdog.
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
export const AGENT_VERSION = '1';

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
umask 077
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH LC_ALL=C

# Tests point the agent elsewhere; production never sets this.
# (Read with set +u rather than through printenv: one process less on every call.)
set +u; DIR=$IW_STATE_DIR_OVERRIDE; set -u
[ -n "$DIR" ] || DIR=/var/lib/isolate-wizard
AGENT="$DIR/agent.sh"
STATE="$DIR/state"
state_read=
op_now=
LOCKDIR="$DIR/lock"
BACKUPS="$DIR/backups"
KEEP_BACKUPS=10
# After the deadline, a watchdog that never ran (killed, reboot) leaves a stale lock; the next
# begin/status treats it as expired once this grace has also passed.
STALE_GRACE=30

die() { code=$1; shift; printf 'agent: %s\n' "$*" >&2; exit "$code"; }
# One date per op for its log lines (an op lasts about a second; the log is for people).
log_stamp=
log() {
  [ -n "$log_stamp" ] || log_stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  printf '%s %s\n' "$log_stamp" "$*" >> "$DIR/log" 2>/dev/null
}
now() { date +%s; }

# At most 64 characters: 65 "?" match any longer word, without a process to count them.
valid_batch() { case "$1" in ''|*[!a-z0-9-]*|${'?'.repeat(65)}*) return 1 ;; esac; }
valid_seconds() { case "$1" in ''|*[!0-9]*) return 1 ;; esac; [ "$1" -ge 1 ] && [ "$1" -le 86400 ]; }
valid_token() { case "$1" in ''|*[!a-z0-9]*) return 1 ;; esac; }

# ---- state: key=value lines, replaced atomically -------------------------------------------
# One process per read and per write: the agent runs on busy servers, often several at once.
get() { [ -f "$STATE" ] && awk -v key="$1" 'index($0, key "=") == 1 { print substr($0, length(key) + 2); exit }' "$STATE"; }
# set_state k=v ...: rewrites the state file with the given keys changed.
set_state() {
  state_read=
  [ -f "$STATE" ] || : > "$STATE"
  awk -v state="$STATE" '
    BEGIN {
      n = ARGC - 1
      for (i = 1; i <= n; i++) { key = substr(ARGV[i], 1, index(ARGV[i], "=") - 1); pair[key] = ARGV[i]; order[i] = key; ARGV[i] = "" }
      ARGV[1] = state; ARGC = 2
    }
    { key = substr($0, 1, index($0, "=") - 1); if (!(key in pair)) print }
    END { for (i = 1; i <= n; i++) print pair[order[i]] }
  ' "$@" > "$STATE.new" && mv -f "$STATE.new" "$STATE"
}

# ---- mutex ---------------------------------------------------------------------------------
take_mutex() {
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$DIR/mutex"
    flock 9 || die 1 "cannot take the mutex"
  else
    # mkdir is atomic; a holder that died more than 60 s ago is presumed gone.
    tries=0
    until mkdir "$DIR/mutex.d" 2>/dev/null; do
      tries=$((tries + 1))
      if [ "$tries" -gt 600 ]; then rmdir "$DIR/mutex.d" 2>/dev/null; tries=0; fi
      sleep 0.1 2>/dev/null || sleep 1
    done
    trap 'rmdir "$DIR/mutex.d" 2>/dev/null' EXIT
  fi
}

# ---- iptables helpers ----------------------------------------------------------------------
# Set $cmd / $rcmd for a family (assignments, not $(...): no subshell per call).
save_cmd() { if [ "$1" = 4 ]; then cmd=iptables-save; else cmd=ip6tables-save; fi; }
restore_cmd() { if [ "$1" = 4 ]; then rcmd=iptables-restore; else rcmd=ip6tables-restore; fi; }
have() { command -v "$1" >/dev/null 2>&1; }

# The *filter section of an iptables-save file, counters and comment lines removed: the only
# table this tool writes, in the form two saves can be compared in.
filter_section() {
  awk '
    /^#/ { next }
    /^\*/ { infilter = ($0 == "*filter" && !done); if (infilter) print; next }
    infilter && /^:/ { sub(/ \[[0-9]+:[0-9]+\]$/, ""); print; next }
    infilter { print; if ($0 == "COMMIT") { infilter = 0; done = 1 } }
  ' "$@"
}

# Every section except *filter, verbatim (for keeping other tables of a persistence file).
other_sections() {
  awk '
    /^\*/ { keep = ($0 != "*filter") }
    keep { print; if ($0 == "COMMIT") keep = 0 }
  ' "$1"
}

live_filter() { # family -> live filter section on stdout ("" when no filter table exists)
  save_cmd "$1"
  have "$cmd" || return 0
  # Piped, no temp file to remove; filter_section keeps the first *filter only, so a fallback
  # after a partial first answer cannot double it.
  { "$cmd" -t filter 2>/dev/null || "$cmd" 2>/dev/null; } | filter_section
}

# "Empty" = no filter table at all (what a fresh nf_tables host has), or on the legacy backend,
# where the table always exists once loaded, no rules, no user chains and ACCEPT policies. Both
# let everything through; restoring an empty snapshot produces exactly this.
remove_filter() {
  fam=$1
  if have nft && iptables -V 2>/dev/null | grep -q nf_tables; then
    if [ "$fam" = 4 ]; then nft delete table ip filter 2>/dev/null; else nft delete table ip6 filter 2>/dev/null; fi
    return 0
  fi
  if [ "$fam" = 4 ]; then c=iptables; else c=ip6tables; fi
  have "$c" || return 0
  $c -t filter -P INPUT ACCEPT; $c -t filter -P FORWARD ACCEPT; $c -t filter -P OUTPUT ACCEPT
  $c -t filter -F; $c -t filter -X
}

is_empty_filter() { # file: normalized filter section; true when it lets everything through
  [ ! -s "$1" ] && return 0
  awk '
    /^\*filter$/ || /^COMMIT$/ { next }
    /^:(INPUT|FORWARD|OUTPUT) ACCEPT$/ { next }
    { bad = 1 }
    END { exit bad ? 1 : 0 }
  ' "$1"
}

# Restores the filter table of a snapshot. Only *filter is written by this tool, so only *filter
# is restored: nat/mangle/raw (Docker's, Kubernetes') stay as they are now.
restore_snapshot() {
  rs_batch=$1; status=0
  for fam in 4 6; do
    snap="$BACKUPS/$rs_batch.v$fam"
    [ -f "$snap" ] || continue
    sect="$DIR/restore.$$.v$fam"
    filter_section "$snap" > "$sect"
    if [ -s "$sect" ]; then
      restore_cmd "$fam"
      if have "$rcmd"; then "$rcmd" < "$sect" || status=1; fi
    else
      remove_filter "$fam"
    fi
    rm -f "$sect"
  done
  return $status
}

snapshot_matches_live() { # sm_batch -> true when the live filter tables equal the snapshot's
  sm_batch=$1
  for fam in 4 6; do
    snap="$BACKUPS/$sm_batch.v$fam"
    [ -f "$snap" ] || continue
    a="$DIR/cmp.$$.a"; b="$DIR/cmp.$$.b"
    filter_section "$snap" > "$a"; live_filter "$fam" > "$b"
    if is_empty_filter "$a" && is_empty_filter "$b"; then rm -f "$a" "$b"; continue; fi
    if ! cmp -s "$a" "$b"; then rm -f "$a" "$b"; return 1; fi
    rm -f "$a" "$b"
  done
  return 0
}

# ---- watchdog ------------------------------------------------------------------------------

# systemd manages this system only when it booted it (sd_booted: /run/systemd/system exists). A
# container or a lab server with its own /run sees the host's PID 1 but must not use its systemd.
pid1_is_systemd() {
  [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && have systemd-run && have systemctl
}

# arm BATCH SECONDS [KEY=VALUE...]: a new watchdog that expires the batch at now+SECONDS (server
# clock); the extra pairs are written in the same state update (one process less per call).
arm() {
  arm_batch=$1; arm_seconds=$2; shift 2
  # Stop a systemd timer of an earlier arm; the token written below retires any detached watchdog.
  stop_watchdog_unit
  # begin passes the second it just read (op_now); the arm op reads the clock here.
  if [ -n "$op_now" ]; then arm_now=$op_now; else arm_now=$(now); fi
  deadline=$((arm_now + arm_seconds))
  # Unique per arm (this shell's pid and the second): it only has to differ from earlier tokens.
  token="$arm_now"p$$
  if pid1_is_systemd; then
    unit="isolate-wizard-$arm_batch-$token"
    # Written before the timer starts: the watchdog must find its token.
    set_state "$@" "token=$token" "deadline=$deadline" "watchdog=unit:$unit"
    if systemd-run --quiet --unit="$unit" --on-active="$arm_seconds" --timer-property=AccuracySec=1s \
        /bin/sh "$AGENT" fire "$arm_batch" "$token" >/dev/null 2>&1; then
      log "armed $arm_batch unit $unit deadline $deadline"
      return 0
    fi
  fi
  set_state "$@" "token=$token" "deadline=$deadline" "watchdog=detached"
  # Detached: a new session, no terminal, no inherited pipes (the SSH channel can close) and the
  # mutex fd closed (the child must not hold our lock).
  if have setsid; then
    setsid sh "$AGENT" fire "$arm_batch" "$token" </dev/null >/dev/null 2>&1 9>&- &
  else
    nohup sh "$AGENT" fire "$arm_batch" "$token" </dev/null >/dev/null 2>&1 9>&- &
  fi
  log "armed $arm_batch pid $! deadline $deadline"
}

stop_watchdog_unit() {
  [ -n "$state_read" ] || read_batch_phase
  case "$wd" in
    unit:*) systemctl stop "$(printf '%s' "$wd" | sed 's/^unit://').timer" >/dev/null 2>&1 ;;
  esac
}

cancel_watchdog() {
  stop_watchdog_unit
  set_state "token=" "watchdog="
  # A detached watchdog is not killed (its pid may have been reused); it sees its token gone
  # within a few seconds and exits (and acts only under the mutex with its own token).
  return 0
}

is_pending_phase() { case "$1" in locked|staged|loading|loaded) return 0 ;; *) return 1 ;; esac; }

# expire BATCH: under the mutex. Puts back the snapshot if anything may have been loaded.
expire() {
  ex_batch=$1; ex_phase=$(get phase)
  if [ "$ex_phase" = loading ] || [ "$ex_phase" = loaded ]; then
    if restore_snapshot "$ex_batch"; then log "expired $ex_batch: snapshot restored"
    else log "expired $ex_batch: restore reported an error"; fi
  else
    log "expired $ex_batch before any change: lock released"
  fi
  set_state "phase=expired" "token=" "watchdog=" "changed=$(now)"
  rm -rf "$LOCKDIR"
}

# A lock whose deadline passed long ago with no watchdog left to act (killed, reboot).
expire_if_stale() {
  [ -d "$LOCKDIR" ] || return 0
  phase=$(get phase); deadline=$(get deadline)
  is_pending_phase "$phase" || { rm -rf "$LOCKDIR"; return 0; }
  case "$deadline" in ''|*[!0-9]*) deadline=0 ;; esac
  if [ "$(now)" -gt $((deadline + STALE_GRACE)) ]; then expire "$(get batch)"; fi
}

# ---- persistence ---------------------------------------------------------------------------
persist_kind() {
  if have netfilter-persistent || [ -d /usr/share/netfilter-persistent/plugins.d ]; then echo debian
  elif [ -f /usr/libexec/iptables/iptables.init ] || [ -f /usr/lib/systemd/system/iptables.service ]; then echo rhel
  else echo none; fi
}

# Writes the live filter table into the boot-time file, keeping the file's other tables.
persist_file() {
  fam=$1; file=$2
  mkdir -p "$(dirname "$file")"
  umask 022
  new="$file.iw-new"; sect="$DIR/persist.$$"
  live_filter "$fam" > "$sect"
  {
    printf '# Written by isolate-wizard on %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    [ -f "$file" ] && other_sections "$file"
    cat "$sect"
  } > "$new" && mv -f "$new" "$file"
  status=$?
  rm -f "$sect"; umask 077
  return $status
}

persist() {
  case "$(persist_kind)" in
    debian) persist_file 4 /etc/iptables/rules.v4 && persist_file 6 /etc/iptables/rules.v6 && echo "persisted=debian" ;;
    rhel) persist_file 4 /etc/sysconfig/iptables && persist_file 6 /etc/sysconfig/ip6tables && echo "persisted=rhel" ;;
    *) echo "persisted=none" ;;
  esac
}

prune_backups() {
  # Nothing to prune while there are at most KEEP_BACKUPS snapshots (no pipeline to run).
  set -- "$BACKUPS"/*.cand.v4; if [ -e "$1" ]; then cands=$#; else cands=0; fi
  set -- "$BACKUPS"/*.v4
  [ $(($# - cands)) -le "$KEEP_BACKUPS" ] && return 0
  # Backups are named <batch>.v4 / .v6 / .cand.v4 ...; batches start with a sortable timestamp.
  ls "$BACKUPS" 2>/dev/null | sed -n 's/\.v4$//p' | grep -v '\.' | sort |
    awk -v keep="$KEEP_BACKUPS" '{ names[NR] = $0 } END { for (i = 1; i <= NR - keep; i++) print names[i] }' |
    while read -r old; do
      [ "$old" = "$(get batch)" ] && continue
      rm -f "$BACKUPS/$old.v4" "$BACKUPS/$old.v6" "$BACKUPS/$old.cand.v4" "$BACKUPS/$old.cand.v6"
    done
}

# Splits a "#iw:v4 ... #iw:v6 ..." payload from stdin into PREFIX.v4 and PREFIX.v6.
split_payload() {
  awk -v p="$1" '
    $0 == "#iw:v4" { f = p ".v4"; printf "" > f; next }
    $0 == "#iw:v6" { f = p ".v6"; printf "" > f; next }
    f != "" { print > f }
  '
}

print_payload() { # prefix
  echo "#iw:v4"; [ -f "$1.v4" ] && cat "$1.v4"
  echo "#iw:v6"; [ -f "$1.v6" ] && cat "$1.v6"
  return 0
}

# Sets $cur, $phase and $wd (watchdog) from the state in one read, each reduced to the characters
# it may hold; valid until the next set_state.
read_batch_phase() {
  cur=; phase=; wd=; state_read=1
  [ -f "$STATE" ] || return 0
  eval "$(awk '
    index($0, "batch=") == 1 && !hb { b = substr($0, 7); hb = 1 }
    index($0, "phase=") == 1 && !hp { p = substr($0, 7); hp = 1 }
    index($0, "watchdog=") == 1 && !hw { w = substr($0, 10); hw = 1 }
    END {
      gsub(/[^a-z0-9-]/, "", b); gsub(/[^a-z]/, "", p); gsub(/[^a-z0-9:-]/, "", w)
      print "cur=" b "; phase=" p "; wd=" w
    }' "$STATE")"
}

require_batch() { # batch: the current, pending batch; else exit 4 saying what happened
  [ -n "$state_read" ] || read_batch_phase
  if [ "$cur" != "$1" ]; then die 4 "batch $1 is not the current one (current: $cur $phase)"; fi
  if ! is_pending_phase "$phase"; then die 4 "batch $1 is $phase"; fi
}

# ---- ops -----------------------------------------------------------------------------------
op=$1; shift
[ -d "$BACKUPS" ] || mkdir -p "$DIR" "$BACKUPS" || die 1 "cannot create $DIR"

case "$op" in
  version) echo "$AGENT_VERSION_PLACEHOLDER"; exit 0 ;;
esac

case "$op" in
  begin) # BATCH SECONDS, owner line on stdin: lock, snapshot, arm. Prints the snapshot.
    [ $# -eq 2 ] && valid_batch "$1" && valid_seconds "$2" || die 2 "usage: begin BATCH SECONDS"
    batch=$1; seconds=$2
    owner=$(awk 'NR == 1 { gsub(/[^A-Za-z0-9@._:=\/ -]/, ""); print substr($0, 1, 200); exit }')
    take_mutex
    expire_if_stale
    if ! mkdir "$LOCKDIR" 2>/dev/null; then
      printf 'held_by=%s\nsince=%s\nbatch=%s\ndeadline=%s\nnow=%s\n' "$(get owner)" "$(get since)" \
        "$(get batch)" "$(get deadline)" "$(now)"
      exit 3
    fi
    for fam in 4 6; do
      if [ "$fam" = 4 ]; then cmd=iptables-save; else cmd=ip6tables-save; fi
      if have "$cmd"; then "$cmd" > "$BACKUPS/$batch.v$fam" 2>/dev/null || : > "$BACKUPS/$batch.v$fam"
      else : > "$BACKUPS/$batch.v$fam"; fi
    done
    op_now=$(now)
    arm "$batch" "$seconds" "version=$AGENT_VERSION_PLACEHOLDER" "batch=$batch" "phase=locked" "owner=$owner" "since=$op_now" "changed=$op_now"
    log "begin $batch by $owner"
    print_payload "$BACKUPS/$batch"
    ;;

  stage) # BATCH, candidate payload on stdin: store and test it. Nothing changes.
    [ $# -eq 1 ] && valid_batch "$1" || die 2 "usage: stage BATCH"
    batch=$1
    take_mutex
    require_batch "$batch"
    split_payload "$BACKUPS/$batch.cand.tmp"
    failed=0
    for fam in 4 6; do
      f="$BACKUPS/$batch.cand.tmp.v$fam"
      [ -f "$f" ] || die 2 "candidate for IPv$fam missing"
      mv -f "$f" "$BACKUPS/$batch.cand.v$fam"
      restore_cmd "$fam"
      have "$rcmd" || die 5 "$rcmd is not installed"
      if ! err=$("$rcmd" --test < "$BACKUPS/$batch.cand.v$fam" 2>&1); then
        printf 'IPv%s candidate rejected by %s --test: %s\n' "$fam" "$rcmd" "$err" >&2
        failed=1
      fi
    done
    [ $failed -eq 0 ] || exit 5
    set_state "phase=staged"
    echo "staged"
    ;;

  load) # BATCH: load the staged candidate atomically; on any failure put the snapshot back.
    [ $# -eq 1 ] && valid_batch "$1" || die 2 "usage: load BATCH"
    batch=$1
    take_mutex
    require_batch "$batch"
    [ "$phase" = staged ] || die 4 "batch $batch is $phase, not staged"
    set_state "phase=loading" "changed=$(now)"
    for fam in 4 6; do
      restore_cmd "$fam"
      if ! err=$("$rcmd" < "$BACKUPS/$batch.cand.v$fam" 2>&1); then
        restore_snapshot "$batch"
        printf 'IPv%s load failed (%s); snapshot restored\n' "$fam" "$err" >&2
        set_state "phase=failed" "changed=$(now)"
        cancel_watchdog; rm -rf "$LOCKDIR"
        log "load $batch failed on IPv$fam: snapshot restored"
        exit 6
      fi
    done
    set_state "phase=loaded" "changed=$(now)"
    log "loaded $batch"
    echo "loaded"
    ;;

  arm) # BATCH SECONDS: (re)start the countdown from now.
    [ $# -eq 2 ] && valid_batch "$1" && valid_seconds "$2" || die 2 "usage: arm BATCH SECONDS"
    take_mutex
    require_batch "$1"
    arm "$1" "$2"
    echo "deadline=$(get deadline)"; echo "now=$(now)"
    ;;

  show) # the live filter tables, normalized, and the state (for verification from a new connection)
    read_batch_phase
    printf 'phase=%s\nbatch=%s\n' "$phase" "$cur"
    echo "#iw:v4"; live_filter 4
    echo "#iw:v6"; live_filter 6
    ;;

  confirm) # BATCH: keep the rules. Exit 4 when the batch already expired (rolled back).
    [ $# -eq 1 ] && valid_batch "$1" || die 2 "usage: confirm BATCH"
    batch=$1
    take_mutex
    read_batch_phase
    if [ "$cur" = "$batch" ] && [ "$phase" = confirmed ]; then echo "already-confirmed"; persist; exit 0; fi
    require_batch "$batch"
    [ "$phase" = loaded ] || die 4 "batch $batch is $phase: nothing loaded to confirm"
    # cancel_watchdog, folded into the one state update.
    stop_watchdog_unit
    t=$(now)
    set_state "token=" "watchdog=" "phase=confirmed" "changed=$t" "confirmed=$t"
    rm -rf "$LOCKDIR"
    log "confirmed $batch"
    echo "confirmed"
    persist
    prune_backups
    ;;

  rollback) # BATCH: put the snapshot back now, then check the live rules equal it.
    [ $# -eq 1 ] && valid_batch "$1" || die 2 "usage: rollback BATCH"
    batch=$1
    take_mutex
    require_batch "$batch"
    cancel_watchdog
    if [ "$phase" = loading ] || [ "$phase" = loaded ]; then restore_snapshot "$batch"; fi
    set_state "phase=rolledback" "changed=$(now)"
    rm -rf "$LOCKDIR"
    log "rolled back $batch (was $phase)"
    if snapshot_matches_live "$batch"; then echo "rolledback"; else die 7 "live rules differ from the snapshot after restore"; fi
    ;;

  unlock) # BATCH: release a batch that changed nothing yet (locked or staged).
    [ $# -eq 1 ] && valid_batch "$1" || die 2 "usage: unlock BATCH"
    take_mutex
    [ "$(get batch)" = "$1" ] || { echo "not-current"; exit 0; }
    case "$(get phase)" in
      locked|staged) cancel_watchdog; set_state "phase=released" "changed=$(now)"; rm -rf "$LOCKDIR"; echo "released" ;;
      *) die 4 "batch $1 is $(get phase): use rollback" ;;
    esac
    ;;

  fire) # BATCH TOKEN: the watchdog. Waits for the deadline, then expires the batch if still ours.
    [ $# -eq 2 ] && valid_batch "$1" && valid_token "$2" || die 2 "usage: fire BATCH TOKEN"
    batch=$1; token=$2
    # Poll rather than one long sleep: a suspended/adjusted clock is re-read, and a cancelled or
    # re-armed watchdog notices that its token is gone and quits. At most 5 s between polls, to
    # the second near the deadline: few processes while a fleet is being applied.
    while :; do
      [ "$(get token)" = "$token" ] || exit 0
      deadline=$(get deadline)
      case "$deadline" in ''|*[!0-9]*) exit 0 ;; esac
      left=$((deadline - $(now)))
      [ "$left" -le 0 ] && break
      [ "$left" -gt 5 ] && left=5
      sleep "$left"
    done
    take_mutex
    [ "$(get batch)" = "$batch" ] && [ "$(get token)" = "$token" ] || exit 0
    is_pending_phase "$(get phase)" || exit 0
    expire "$batch"
    ;;

  status) # key=value lines about this host
    take_mutex
    expire_if_stale
    printf 'managed=%s\n' "$([ -f "$STATE" ] && echo yes || echo no)"
    for key in batch phase owner since changed confirmed deadline; do printf '%s=%s\n' "$key" "$(get $key)"; done
    printf 'now=%s\n' "$(now)"
    printf 'locked=%s\n' "$([ -d "$LOCKDIR" ] && echo yes || echo no)"
    printf 'backups=%s\n' "$(ls "$BACKUPS" 2>/dev/null | grep -c '^[a-z0-9-]*\.v4$')"
    printf 'persistence=%s\n' "$(persist_kind)"
    ;;

  install-persistence) # installs the distribution's boot-time loader, non-interactively
    if [ "$(persist_kind)" != none ]; then echo "persistence=$(persist_kind)"; exit 0; fi
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
    echo "persistence=$(persist_kind)"
    ;;

  *) die 2 "unknown op: $op" ;;
esac
exit 0
`.replaceAll('$AGENT_VERSION_PLACEHOLDER', AGENT_VERSION);
