#!/usr/bin/env bash
# The packages under a real systemd: a Debian 12 system container
# (debootstrap) booted with systemd as PID 1 (systemd-nspawn -b) in its own
# network namespace, joined by a veth pair to a second namespace for the
# clients. Driven with nsenter into the container's PID 1 (machinectl and
# systemd-run -M need a systemd on the host, which CI does not have).
#
# deb: a fresh install enables and starts the service (Debian's
# convention), ready when dpkg returns (Type=notify); a kcat round trip from
# the client namespace through the address the default config advertises;
# systemctl reload; a bad config fails at once (exit 2, no restart); a
# failing start ends in the start limit; an upgrade keeps a disabled
# service disabled and stopped, a stopped one stopped, and restarts a
# running one; remove, then purge; `systemd-analyze security` <= 2.0.
# rpm (rpm -i --nodeps in the same container, preset policy "disable *" as
# on Fedora/RHEL): install leaves it disabled and stopped, an upgrade
# restarts it only when it runs and keeps it disabled, erase stops it.
#
# Runs as root on Debian without a running systemd; installs debootstrap,
# systemd-container, kcat and curl. It leaves no container, namespace,
# mount or file behind, so it can be re-run; a run killed halfway is
# cleaned up by the next. CHRONIK_CI_ROOTFS_CACHE=FILE.tar keeps the
# debootstrapped tree between local runs (CI leaves it unset and starts
# clean).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
start=$SECONDS
tag=chronik-sd-$$                 # machine name, netns prefix
ns_ct=$tag-ct ns_cl=$tag-cl       # the container's and the clients' network namespaces
ct_ip=10.99.0.2 cl_ip=10.99.0.1   # only inside those two namespaces
broker=$ct_ip:9092                # what the default config must advertise
work=
nspawn_pid=
rootfs_pid=
leader=

say() { echo "systemd: $*"; }
ok() { echo "systemd: ok ($((SECONDS - start))s): $*"; }
fail() {
  echo "systemd: FAIL: $*" >&2
  if [ -n "$leader" ] && kill -0 "$leader" 2>/dev/null; then
    echo "--- systemctl status chronik" >&2
    ct systemctl --no-pager status chronik >&2 || true
    echo "--- journalctl -u chronik (tail)" >&2
    ct journalctl --no-pager -u chronik -n 40 -o short-monotonic >&2 || true
  elif [ -n "$work" ] && [ -s "$work/console.log" ]; then
    echo "--- container console (tail)" >&2
    tail -n 30 "$work/console.log" >&2
  fi
  exit 1
}

need() { # need COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

# ct runs a command in the container (all of PID 1's namespaces), with a
# clean environment and a time limit.
ct() {
  timeout "${CT_TIMEOUT:-60}" nsenter --target "$leader" --all -- \
    /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}
# client runs a host command (kcat) in the clients' network namespace.
client() { timeout 60 ip netns exec "$ns_cl" "$@"; }
# admin_get PATH: the admin listener (127.0.0.1:9644 in the container).
admin_get() { timeout 10 nsenter --target "$leader" --net -- curl -fsS -o /dev/null -w '%{http_code}' "http://127.0.0.1:9644$1"; }
prop() { ct systemctl show -p "$1" --value chronik; }
state() { printf '%s/%s' "$(ct systemctl is-enabled chronik 2>/dev/null || true)" "$(ct systemctl is-active chronik 2>/dev/null || true)"; }
expect_state() { # WANT WHAT
  local got; got=$(state)
  [ "$got" = "$1" ] || fail "$2: chronik is $got, want $1"
}
wait_for() { # SECONDS WHAT COMMAND...
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || fail "$what: not within ${limit}s"
    sleep 0.5
  done
}
journal() { ct journalctl --no-pager -u chronik -o cat; }

# stop_container asks the container to power off (nspawn turns SIGTERM into
# SIGRTMIN+3 for systemd), then kills what is left.
stop_container() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  timeout 30 tail --pid="$pid" -f /dev/null || { kill -KILL "$pid" 2>/dev/null || true; }
  timeout 10 tail --pid="$pid" -f /dev/null || true
}
# remove_tree unmounts what debootstrap may have left mounted under DIR
# (proc, sys when it was stopped halfway), then deletes DIR.
remove_tree() {
  awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" || true; done
  rm -rf --one-file-system "$1"
}
cleanup() {
  local rc=$?
  set +e
  # debootstrap runs in its own process group (setsid): stop all of it.
  [ -n "$rootfs_pid" ] && kill -- -"$rootfs_pid" 2>/dev/null && wait "$rootfs_pid" 2>/dev/null
  [ -n "$nspawn_pid" ] && stop_container "$nspawn_pid"
  ip netns del "$ns_ct" 2>/dev/null
  ip netns del "$ns_cl" 2>/dev/null
  [ -n "$work" ] && remove_tree "$work"
  [ $rc -eq 0 ] || say "failed after $((SECONDS - start))s"
  exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# Leftovers of a run that was killed before its cleanup: its container
# (found by its machine name) and its namespaces. Work directories are
# under /var/tmp/chronik-systemd.*; their pid is in the name.
cleanup_stale() {
  local ns pid p dir
  for ns in $(ip netns list | awk '{print $1}' | grep -E '^chronik-sd-[0-9]+-(ct|cl)$' || true); do
    pid=${ns#chronik-sd-}; pid=${pid%-*}
    kill -0 "$pid" 2>/dev/null && continue
    for p in $(pgrep -x systemd-nspawn || true); do
      tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q -- "--machine=chronik-sd-$pid " && stop_container "$p"
    done
    ip netns del "$ns" 2>/dev/null || true
    say "removed $ns, left by an earlier run"
  done
  for dir in /var/tmp/chronik-systemd.*; do
    [ -d "$dir" ] || continue
    pid=$(cat "$dir/owner" 2>/dev/null || echo 0)
    kill -0 "$pid" 2>/dev/null || { remove_tree "$dir"; say "removed $dir, left by an earlier run"; }
  done
}

need debootstrap debootstrap
need systemd-nspawn systemd-container
need kcat kcat
need curl curl
cleanup_stale
work=$(mktemp -d /var/tmp/chronik-systemd.XXXXXX)
echo $$ >"$work/owner"
root=$work/root

# 1. The root file system (in the background) and the packages.
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
cache=${CHRONIK_CI_ROOTFS_CACHE:-}
mkdir "$root"
if [ -n "$cache" ] && [ -f "$cache" ]; then
  tar -C "$root" -xf "$cache"
  say "root file system from $cache"
else
  # rpm (and the perl it needs) only for the rpm part.
  setsid debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,iproute2,rpm \
    bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 &
  rootfs_pid=$!
fi
bash packaging/build.sh "$work/dist" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "packaging/build.sh"; }
CHRONIK_VERSION=0.1.1 bash packaging/build.sh "$work/dist2" >"$work/build2.log" 2>&1 ||
  { cat "$work/build2.log"; fail "packaging/build.sh (0.1.1)"; }
ok "built the 0.1.0 and 0.1.1 deb and rpm"
if [ -n "$rootfs_pid" ]; then
  wait "$rootfs_pid" || { rootfs_pid=; tail -n 30 "$work/debootstrap.log"; fail "debootstrap from $mirror"; }
  rootfs_pid=
  if [ -n "$cache" ]; then mkdir -p "$(dirname "$cache")" && tar -C "$root" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"; fi
  ok "debootstrap --variant=minbase bookworm from $mirror"
fi
echo chronik-ci >"$root/etc/hostname"
mkdir -p "$root/root/pkgs"
cp "$work"/dist/chronik_0.1.0_*.deb "$work"/dist2/chronik_0.1.1_*.deb \
  "$work"/dist/chronik-0.1.0*.rpm "$work"/dist2/chronik-0.1.1*.rpm "$root/root/pkgs/"
deb1=$(cd "$root/root/pkgs" && ls chronik_0.1.0_*.deb) deb2=$(cd "$root/root/pkgs" && ls chronik_0.1.1_*.deb)
rpm1=$(cd "$root/root/pkgs" && ls chronik-0.1.0*.rpm) rpm2=$(cd "$root/root/pkgs" && ls chronik-0.1.1*.rpm)

# 2. Two network namespaces joined by a veth pair; boot the container in
# the first. nspawn without a host systemd: no registration with machined,
# no scope unit, and /run/systemd/nspawn on a tmpfs of a private mount
# namespace (which also keeps every mount of the container off the host).
ip netns add "$ns_ct"
ip netns add "$ns_cl"
ip -n "$ns_ct" link add eth0 type veth peer name eth0 netns "$ns_cl"
ip -n "$ns_ct" addr add "$ct_ip/24" dev eth0
ip -n "$ns_cl" addr add "$cl_ip/24" dev eth0
for ns in "$ns_ct" "$ns_cl"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done
mkdir -p /run/systemd/nspawn
unshare --mount --propagation private sh -c \
  'mount -t tmpfs tmpfs /run/systemd/nspawn && exec systemd-nspawn --quiet --boot --directory="$1" --machine="$2" --register=no --keep-unit --network-namespace-path="/run/netns/$3"' \
  sh "$root" "$tag" "$ns_ct" </dev/null >"$work/console.log" 2>&1 &
nspawn_pid=$!
find_leader() { leader=$(pgrep -P "$nspawn_pid" -x systemd || true); [ -n "$leader" ]; }
wait_for 30 "the container's systemd to start" find_leader
booted() { ct systemctl is-system-running --wait >/dev/null 2>&1 || [ "$(ct systemctl is-system-running || true)" = degraded ]; }
wait_for 60 "the container to boot" booted
ok "booted: $(ct systemctl --version | head -1) as PID 1 of the container ($(ct systemctl is-system-running || true))"

# 3. deb: a fresh install starts the service, and it is ready when dpkg
# returns: Type=notify makes systemctl start wait for READY=1, which the
# broker sends once its logs are recovered and its listener is up.
ct dpkg -i "/root/pkgs/$deb1" >"$work/dpkg1.log" 2>&1 || { cat "$work/dpkg1.log"; fail "dpkg -i $deb1"; }
expect_state enabled/active "fresh install"
[ "$(admin_get /readyz)" = 200 ] || fail "/readyz is not 200 right after dpkg -i returned"
ok "dpkg -i $deb1: chronik enabled and started by the install, /readyz 200 as dpkg returns"
[ "$(ct stat -c %U "/proc/$(prop MainPID)")" = chronik ] || fail "the service does not run as user chronik"
exposure=$(ct systemd-analyze security chronik.service 2>&1 | sed -n 's/.*Overall exposure level for chronik.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "systemd-analyze security printed no exposure level"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "runtime exposure $exposure > 2.0"
ok "systemd-analyze security chronik (the running unit): exposure $exposure <= 2.0"

# 4. The default config (listen ":9092", no advertise) advertises the
# container's address; a client in the other namespace uses it.
ready=$(journal | grep '"message":"chronik ready"' | tail -1)
case "$ready" in *"\"advertise\":\"$broker\""*) ;; *) fail "start-up line does not advertise $broker: $ready" ;; esac
! grep -q 'advertising a loopback address' <(journal) || fail "loopback warning although $ct_ip is advertised"
client kcat -b "$broker" -L -m 10 >"$work/kcat-L.txt" 2>&1 || { cat "$work/kcat-L.txt"; fail "kcat -L from the client namespace"; }
grep -q "broker 0 at $broker" "$work/kcat-L.txt" || { cat "$work/kcat-L.txt"; fail "metadata does not name broker 0 at $broker"; }
seq -f 'sd-%g' 1 100 >"$work/in.txt"
client kcat -b "$broker" -P -t sd -X topic.request.required.acks=-1 -l "$work/in.txt"
client kcat -b "$broker" -C -t sd -o beginning -c 100 -e -q >"$work/out.txt"
cmp -s "$work/in.txt" "$work/out.txt" || fail "kcat consumed $(wc -l <"$work/out.txt") of the 100 records"
ok "start-up log advertises $broker; kcat in another network namespace: metadata names $broker, 100 records produced (acks=all) and consumed back"

# 5. Reload: the log level from the config file; the line has its level.
sed -i 's/^log_level: info$/log_level: debug/' "$root/etc/chronik/chronik.yaml"
ct systemctl reload chronik
reloaded() { grep -q '"level":"info"' <(journal | grep '"message":"log level reloaded"' | grep '"to":"debug"'); }
wait_for 10 "the 'log level reloaded' line (level info, to debug)" reloaded
expect_state enabled/active "after reload"
ok "systemctl reload: 'log level reloaded' to debug, with \"level\":\"info\"; still active"

# 6. A bad config fails at once: exit status 2 is not restarted.
cp "$root/etc/chronik/chronik.yaml" "$work/chronik.yaml"
echo 'retension: 24h' >>"$root/etc/chronik/chronik.yaml"
t0=$SECONDS
! ct systemctl restart chronik 2>/dev/null || fail "systemctl restart succeeded with an unknown key"
is_failed() { [ "$(ct systemctl is-active chronik || true)" = failed ]; }
wait_for 30 "failed after a bad config" is_failed
[ "$(prop ExecMainStatus)" = 2 ] && [ "$(prop NRestarts)" = 0 ] ||
  fail "bad config: exit status $(prop ExecMainStatus), $(prop NRestarts) restarts; want 2 and 0"
grep -q 'unknown key "retension"' <(journal) || fail "no 'unknown key' line in the journal"
ok "unknown key 'retension': failed within $((SECONDS - t0))s, exit status 2, 0 restarts, the journal names the key"
cp "$work/chronik.yaml" "$root/etc/chronik/chronik.yaml"
ct systemctl reset-failed chronik
ct systemctl start chronik
expect_state enabled/active "config repaired"

# 7. A failure that a restart might cure (exit 1: the admin listener's
# address is not on this host) is retried, then the start limit ends it.
# (admin-insecure: an address other hosts could reach is otherwise refused
# before binding, with exit 2, as a configuration error.)
cp "$root/etc/default/chronik" "$work/default"
printf 'CHRONIK_ADMIN_LISTEN=192.0.2.77:9644\nCHRONIK_ADMIN_INSECURE=true\n' >>"$root/etc/default/chronik"
t0=$SECONDS
! ct systemctl restart chronik 2>/dev/null || fail "systemctl restart succeeded with an unusable admin address"
wait_for 60 "failed by the start limit" is_failed
# systemd 252 keeps Result=exit-code here; the journal says why it stopped.
grep -q 'Start request repeated too quickly' <(journal) || fail "failed, but not by the start limit"
ok "exit 1 restarted every $(prop RestartUSec), then the start limit after $((SECONDS - t0))s and $(prop NRestarts) restarts"
cp "$work/default" "$root/etc/default/chronik"
ct systemctl reset-failed chronik
ct systemctl start chronik
expect_state enabled/active "environment repaired"

# 8. Upgrades keep the admin's choice.
ct systemctl disable --now chronik 2>/dev/null
expect_state disabled/inactive "disable --now"
ct dpkg --force-confold -i "/root/pkgs/$deb2" >"$work/dpkg2.log" 2>&1 </dev/null || { cat "$work/dpkg2.log"; fail "dpkg -i $deb2"; }
[ "$(ct chronik version | head -1)" = "chronik 0.1.1" ] || fail "chronik version after the upgrade: $(ct chronik version | head -1)"
expect_state disabled/inactive "upgrade of a disabled service"
ok "disable --now, upgrade to 0.1.1: still disabled and stopped"
ct systemctl enable chronik 2>/dev/null
ct dpkg --force-confold -i "/root/pkgs/$deb2" >"$work/dpkg3.log" 2>&1 </dev/null || { cat "$work/dpkg3.log"; fail "dpkg -i $deb2 (again)"; }
expect_state enabled/inactive "upgrade of an enabled, stopped service"
ok "enabled but stopped, upgrade: still stopped"
ct systemctl start chronik
pid1=$(prop MainPID)
ct dpkg --force-confold -i "/root/pkgs/$deb2" >"$work/dpkg4.log" 2>&1 </dev/null || { cat "$work/dpkg4.log"; fail "dpkg -i $deb2 (running)"; }
expect_state enabled/active "upgrade of a running service"
pid2=$(prop MainPID)
[ "$pid2" != "$pid1" ] || fail "upgrade did not restart the running service (MainPID $pid1)"
client kcat -b "$broker" -C -t sd -o beginning -c 100 -e -q >"$work/out2.txt"
cmp -s "$work/in.txt" "$work/out2.txt" || fail "after the upgrade kcat consumed $(wc -l <"$work/out2.txt") of the 100 records"
ok "running, upgrade: restarted (MainPID $pid1 -> $pid2), the 100 records still served"

# 9. Remove stops it and keeps config and data; purge removes the config
# and every trace of the unit's enablement; the data stays.
ct dpkg -r chronik >"$work/remove.log" 2>&1 || { cat "$work/remove.log"; fail "dpkg -r"; }
[ "$(ct systemctl is-active chronik || true)" = inactive ] || fail "active after dpkg -r"
[ ! -e "$root/usr/bin/chronik" ] && [ -f "$root/etc/chronik/chronik.yaml" ] || fail "dpkg -r: binary left or config removed"
ok "dpkg -r: stopped, binary gone, /etc/chronik kept"
ct dpkg --purge chronik >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg --purge"; }
[ ! -e "$root/etc/chronik" ] || fail "/etc/chronik left after purge"
left=$(cd "$root/etc/systemd/system" && find . -name 'chronik*' | head -3)
[ -z "$left" ] || fail "unit links left after purge: $left"
[ -n "$(find "$root/var/lib/chronik" -type f | head -1)" ] || fail "purge removed the data in /var/lib/chronik"
ok "dpkg --purge: /etc/chronik and the unit's links gone, the data in /var/lib/chronik kept"

# 10. rpm, with Fedora's preset policy ("disable *").
mkdir -p "$root/etc/systemd/system-preset"
echo 'disable *' >"$root/etc/systemd/system-preset/99-default-disable.preset"
rpmi() { ct rpm --nodeps --nosignature "$@" >"$work/rpm.log" 2>&1 || { cat "$work/rpm.log"; fail "rpm $*"; }; }
rpmi -i "/root/pkgs/$rpm1"
expect_state disabled/inactive "rpm -i (preset disable)"
ok "rpm -i $rpm1: preset leaves it disabled and stopped"
ct systemctl enable --now chronik 2>/dev/null
[ "$(admin_get /readyz)" = 200 ] || fail "rpm: /readyz not 200 after enable --now"
pid1=$(prop MainPID)
rpmi -U "/root/pkgs/$rpm2"
expect_state enabled/active "rpm -U of a running service"
pid2=$(prop MainPID)
[ "$pid2" != "$pid1" ] || fail "rpm -U did not restart the running service"
ok "rpm: enable --now, rpm -U to 0.1.1: still enabled, restarted (MainPID $pid1 -> $pid2)"
ct systemctl disable --now chronik 2>/dev/null
rpmi -U --oldpackage "/root/pkgs/$rpm1"
expect_state disabled/inactive "rpm -U of a disabled service"
ok "rpm: disable --now, rpm -U (to 0.1.0): still disabled and stopped"
ct systemctl enable --now chronik 2>/dev/null
rpmi -e chronik
[ "$(ct systemctl is-active chronik || true)" = inactive ] || fail "rpm -e left it running"
[ -z "$(cd "$root/etc/systemd/system" && find . -name 'chronik*' | head -1)" ] || fail "rpm -e left it enabled"
ok "rpm -e: stopped and disabled"

stop_container "$nspawn_pid"
nspawn_pid=
! grep -q "$work" /proc/mounts || fail "mounts of the container are left on the host"
ok "container powered off; nothing of it is mounted on the host"
