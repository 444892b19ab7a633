#!/bin/bash
# Turns a fresh mount + UTS namespace (made by `unshare -m -u --propagation private`, inside the
# server's network namespace) into one lab server, then becomes its sshd, the process that holds
# those namespaces. Nothing here is seen outside: the machine's real files stay untouched.
# Usage: server-init.sh <host dir> <host name> <deploy uid> <deploy password hash>
#
# <host dir>/fstab (written by lab.ts) holds every mount, made in order by one `mount --all`:
#   a fresh sysfs (this namespace's interfaces, as under `ip netns exec`); private tmpfs on /run
#   (with /run/sshd, sshd's privilege separation dir), /tmp, /var/tmp, /root, /home (+ deploy's home);
#   the lab dir kept reachable under the new /var/tmp; overlays on /etc, /var/lib, ... whose upper
#   layers are this server's own (so what the tool writes there stays on this server); and empty
#   /etc/iptables and /var/lib/isolate-wizard.
# The rest uses shell builtins only: several servers start at once on a busy machine.
set -euo pipefail
host_dir=$1 host_name=$2 deploy_uid=$3 deploy_hash=$4
# IW_LAB_DEBUG=1: time every step into the sshd log.
[ "${IW_LAB_DEBUG:-}" = 1 ] && trap 'echo "$EPOCHREALTIME $BASH_COMMAND" >&2' DEBUG

echo "$host_name" >/proc/sys/kernel/hostname
mount --all --fstab "$host_dir/fstab"

# The user `deploy` (in this server's /etc overlay only): logs in with the operator's key; sudo
# asks for the password every time.
echo "deploy:x:$deploy_uid:$deploy_uid:lab deploy user:/home/deploy:/bin/bash" >>/etc/passwd
echo "deploy:x:$deploy_uid:" >>/etc/group
echo "deploy:$deploy_hash:19000:0:99999:7:::" >>/etc/shadow
(
  umask 337 # sudo wants its drop-ins 0440
  printf '%s\n' 'deploy ALL=(ALL:ALL) ALL' 'Defaults:deploy timestamp_timeout=0, lecture=never' \
    >/etc/sudoers.d/iw-lab-deploy
)

# sudo resolves the host name; without this it warns on every call.
echo "127.0.1.1 $host_name" >>/etc/hosts

cd /
exec /usr/sbin/sshd -D -e -f "$host_dir/sshd_config"
