#!/usr/bin/env bash
# Packaging: build the .deb and .rpm with packaging/build.sh (twice: the
# same bytes), install the deb with dpkg, check the user, files and
# permissions, the man page and the bash completion, run the installed broker as
# user chronik (kcat and the chronik CLI, /readyz, /metrics, SIGTERM), upgrade
# over an edited config, purge; check the rpm with rpm -qp; check the unit with
# systemd-analyze. Runs as root on a machine without a running systemd; it
# leaves no package, user or data behind, so it can be re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
repo=$(pwd)
work=$(mktemp -d)
port=${CHRONIK_CI_PKG_PORT:-19094}
admin_port=${CHRONIK_CI_PKG_ADMIN_PORT:-19644}
broker=127.0.0.1:$port
admin=http://127.0.0.1:$admin_port
pid=

ok() { echo "packages: ok: $*"; }
fail() { echo "packages: FAIL: $*" >&2; exit 1; }

need() { # need COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return
  apt-get update -qq
  apt-get install -y -qq "$2" >/dev/null
}

uninstall() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; fi
  if dpkg-query -W -f '${Status}' chronik 2>/dev/null | grep -q 'installed\|config-files'; then
    dpkg --purge chronik >/dev/null
  fi
  rm -rf /var/lib/chronik /etc/chronik
  if getent passwd chronik >/dev/null; then userdel chronik; fi
  if getent group chronik >/dev/null; then groupdel chronik; fi
}
trap 'rc=$?; if [ $rc -ne 0 ] && [ -f "$work/serve.log" ]; then echo "--- serve log (tail)"; tail -n 40 "$work/serve.log"; fi; uninstall; rm -rf "$work"' EXIT

need curl curl
need kcat kcat
need rpm rpm

# Leftovers of an earlier, interrupted run.
uninstall

# 1. Build.
dist=$work/dist
bash packaging/build.sh "$dist" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "packaging/build.sh"; }
deb=$(ls "$dist"/chronik_0.1.0_*.deb)
rpmfile=$(ls "$dist"/chronik-0.1.0-*.rpm)
ok "built $(basename "$deb") and $(basename "$rpmfile")"

dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$work/deb.files"
for f in /usr/bin/chronik /etc/chronik/chronik.yaml /etc/default/chronik /usr/lib/systemd/system/chronik.service /var/lib/chronik/; do
  grep -qx "$f" "$work/deb.files" || fail "deb lacks $f"
done
dpkg-deb -I "$deb" conffiles | sort >"$work/conffiles"
printf '%s\n' /etc/chronik/chronik.yaml /etc/default/chronik | diff - "$work/conffiles" >/dev/null ||
  fail "deb conffiles are $(tr '\n' ' ' <"$work/conffiles")"
ok "deb holds the binary, config, /etc/default/chronik, the unit and /var/lib/chronik; conffiles: chronik.yaml and /etc/default/chronik"
docs="/usr/share/man/man1/chronik.1.gz /usr/share/bash-completion/completions/chronik /usr/share/zsh/vendor-completions/_chronik /usr/share/fish/vendor_completions.d/chronik.fish /usr/share/chronik/grafana/chronik.json /usr/share/chronik/prometheus/chronik-alerts.yml"
for f in $docs; do
  grep -qx "$f" "$work/deb.files" || fail "deb lacks $f"
done
ok "deb holds the man page, the bash, zsh and fish completions, the Grafana dashboard and the alert rules"
bash packaging/build.sh "$work/dist-again" >"$work/build-again.log" 2>&1 || { cat "$work/build-again.log"; fail "packaging/build.sh (again)"; }
cmp -s "$deb" "$work/dist-again/$(basename "$deb")" || fail "a second build of the deb differs from the first"
cmp -s "$rpmfile" "$work/dist-again/$(basename "$rpmfile")" || fail "a second build of the rpm differs from the first"
ok "a second build gives the same deb and rpm, byte for byte"

# 2. Install the deb.
dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i"; }
ok "dpkg -i $(basename "$deb")"
getent group chronik >/dev/null || fail "no group chronik"
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd chronik) || fail "no user chronik"
[ "$uid" -lt 1000 ] || fail "chronik uid $uid is not a system uid"
[ "$gid" = "$(getent group chronik | cut -d: -f3)" ] || fail "chronik's primary group is not chronik"
case "$shell" in */nologin|/bin/false) ;; *) fail "chronik's shell is $shell" ;; esac
ok "system user chronik (uid $uid, home $home, shell $shell) and group chronik"
check_stat() { # PATH MODE OWNER:GROUP
  local got; got=$(stat -c '%a %U:%G' "$1")
  [ "$got" = "$2 $3" ] || fail "$1 is $got, want $2 $3"
  ok "$1 is $2 $3"
}
check_stat /usr/bin/chronik 755 root:root
check_stat /etc/chronik/chronik.yaml 640 root:chronik
check_stat /var/lib/chronik 750 chronik:chronik
check_stat /usr/lib/systemd/system/chronik.service 644 root:root
for f in $docs; do check_stat "$f" 644 root:root; done
grep -q '^\.TH chronik 1' <(zcat /usr/share/man/man1/chronik.1.gz) || fail "chronik.1.gz is not a section 1 man page"
if command -v man >/dev/null; then
  grep -q -- '--data-dir' <(man -l /usr/share/man/man1/chronik.1.gz 2>/dev/null) || fail "man -l chronik.1.gz does not show --data-dir"
  ok "man -l renders the installed man page"
fi
completed=$(bash --norc -c 'source /usr/share/bash-completion/completions/chronik
COMP_WORDS=(chronik serve --data-); COMP_CWORD=2; _chronik; echo "${COMPREPLY[*]}"')
[ "$completed" = --data-dir ] || fail "bash completion of 'chronik serve --data-' gave '$completed'"
ok "the installed bash completion completes 'chronik serve --data-' to --data-dir"

# 3. Run the installed broker as user chronik. setpriv execs the broker
# itself (runuser would stay as the parent and turn SIGTERM into status 143).
start_broker() {
  (cd / && exec env CHRONIK_LISTEN="$broker" CHRONIK_ADMIN_LISTEN="127.0.0.1:$admin_port" \
    setpriv --reuid=chronik --regid=chronik --init-groups -- /usr/bin/chronik serve --config /etc/chronik/chronik.yaml) >"$work/serve.log" 2>&1 &
  pid=$!
  timeout 30 bash -c "until curl -fs -o /dev/null '$admin/readyz'; do sleep 0.1; done" ||
    fail "/readyz not 200 within 30s"
}
stop_broker() {
  kill -TERM "$pid"
  local rc=0
  timeout 60 tail --pid="$pid" -f /dev/null || fail "chronik did not exit within 60s of SIGTERM"
  wait "$pid" || rc=$?
  pid=
  [ "$rc" -eq 0 ] || fail "chronik exited $rc after SIGTERM"
}
start_broker
ok "chronik serve --config /etc/chronik/chronik.yaml runs as $(ps -o user= -p "$(pgrep -u chronik -x chronik | head -1)"); /readyz 200"
curl -fsS -o /dev/null "$admin/healthz" || fail "/healthz"
ok "/healthz 200"

topic=pkg-ci
seq -f 'kcat-%g' 1 20 >"$work/kcat.in"
timeout 30 kcat -b "$broker" -P -t "$topic" -X topic.request.required.acks=-1 -l "$work/kcat.in"
seq -f 'cli-%g' 1 20 >"$work/cli.in"
timeout 30 /usr/bin/chronik produce --brokers "$broker" "$topic" <"$work/cli.in" 2>"$work/produce.log" ||
  { cat "$work/produce.log"; fail "chronik produce"; }
cat "$work/kcat.in" "$work/cli.in" >"$work/all.in"
timeout 30 kcat -b "$broker" -C -t "$topic" -o beginning -c 40 -e -q >"$work/kcat.out"
cmp -s "$work/all.in" "$work/kcat.out" || fail "kcat consumed $(wc -l <"$work/kcat.out") lines, not the 40 produced"
timeout 30 /usr/bin/chronik consume --brokers "$broker" -e "$topic" >"$work/cli.out"
cmp -s "$work/all.in" "$work/cli.out" || fail "chronik consume printed $(wc -l <"$work/cli.out") lines, not the 40 produced"
ok "20 records produced with kcat and 20 with chronik produce; both kcat and chronik consume -e read back all 40 in order"

curl -fsS "$admin/metrics" >"$work/metrics.txt" || fail "/metrics"
grep -q '^chronik_kafka_requests_total{' "$work/metrics.txt" || fail "/metrics lacks chronik_kafka_requests_total"
ok "/metrics has chronik_kafka_requests_total ($(grep -c '^chronik_kafka_requests_total{' "$work/metrics.txt") series)"

stop_broker
ok "SIGTERM: chronik exited 0"
# Topic directories are named by topic id; kcat's records are uncompressed.
datafile=$(grep -rlF kcat-17 /var/lib/chronik/data | sed -n 1p)
[ -n "$datafile" ] || fail "no file under /var/lib/chronik/data holds the produced records"
[ "$(stat -c %U "$datafile")" = chronik ] || fail "$datafile is owned by $(stat -c %U "$datafile"), not chronik"
[ -z "$(find /var/lib/chronik ! -user chronik | head -1)" ] || fail "files under /var/lib/chronik not owned by chronik: $(find /var/lib/chronik ! -user chronik | head -3)"
ok "the records are in $datafile; everything under /var/lib/chronik is owned by chronik"

# 7. The unit (needs /usr/bin/chronik, so while the deb is installed).
if systemd-analyze --version >/dev/null 2>&1 || need systemd-analyze systemd; then
  verify=$(systemd-analyze verify systemd/chronik.service 2>&1) || fail "systemd-analyze verify: $verify"
  [ -z "$verify" ] || fail "systemd-analyze verify printed: $verify"
  ok "systemd-analyze verify systemd/chronik.service prints nothing"
  exposure=$(systemd-analyze security --offline=yes systemd/chronik.service 2>&1 |
    sed -n 's/.*Overall exposure level for chronik.service: \([0-9.]*\).*/\1/p')
  [ -n "$exposure" ] || fail "systemd-analyze security printed no exposure level"
  awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "exposure $exposure > 2.0"
  ok "systemd-analyze security --offline=yes: exposure $exposure <= 2.0"
else
  echo "packages: SKIP: systemd-analyze is not available and systemd could not be installed"
fi

# 4. Upgrade over an edited config.
echo '# edited by .ci/packages.sh' >>/etc/chronik/chronik.yaml
sed -i 's/^log_level: info$/log_level: debug/' /etc/chronik/chronik.yaml
cp /etc/chronik/chronik.yaml "$work/edited.yaml"
CHRONIK_VERSION=0.1.1 bash packaging/build.sh "$work/dist2" >"$work/build2.log" 2>&1 ||
  { cat "$work/build2.log"; fail "packaging/build.sh (0.1.1)"; }
deb2=$(ls "$work"/dist2/chronik_0.1.1_*.deb)
dpkg --force-confold -i "$deb2" >"$work/dpkg2.log" 2>&1 </dev/null || { cat "$work/dpkg2.log"; fail "dpkg -i (upgrade)"; }
[ "$(dpkg-query -W -f '${Version}' chronik)" = 0.1.1 ] || fail "dpkg reports $(dpkg-query -W -f '${Version}' chronik) after the upgrade"
cmp -s "$work/edited.yaml" /etc/chronik/chronik.yaml || fail "the upgrade did not keep the edited /etc/chronik/chronik.yaml"
grep -qx 'chronik 0.1.1' <(/usr/bin/chronik version) || fail "chronik version: $(/usr/bin/chronik version | head -1)"
check_stat /etc/chronik/chronik.yaml 640 root:chronik
ok "upgraded to 0.1.1 (chronik version agrees); the edited chronik.yaml is kept"
start_broker
timeout 30 kcat -b "$broker" -C -t "$topic" -o beginning -c 40 -e -q >"$work/kcat2.out"
cmp -s "$work/all.in" "$work/kcat2.out" || fail "after the upgrade, kcat read $(wc -l <"$work/kcat2.out") lines, not the 40"
stop_broker
ok "after the upgrade the broker starts with the edited config, serves the 40 records and exits 0 on SIGTERM"

# 5. Purge.
dpkg --purge chronik >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg --purge"; }
[ ! -e /usr/bin/chronik ] || fail "/usr/bin/chronik is left after purge"
[ ! -e /etc/chronik ] || fail "/etc/chronik is left after purge"
[ ! -e /etc/default/chronik ] || fail "/etc/default/chronik is left after purge"
[ -f "$datafile" ] || fail "purge removed the data in /var/lib/chronik ($datafile)"
ok "dpkg --purge: binary and /etc/chronik gone, data in /var/lib/chronik kept"

# 6. The rpm.
rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME}\n]' "$rpmfile" >"$work/rpm.files"
for f in /usr/bin/chronik /etc/chronik/chronik.yaml /etc/sysconfig/chronik /usr/lib/systemd/system/chronik.service /var/lib/chronik; do
  grep -q "^$f " "$work/rpm.files" || { cat "$work/rpm.files"; fail "rpm lacks $f"; }
done
for f in /usr/share/man/man1/chronik.1.gz /usr/share/bash-completion/completions/chronik /usr/share/zsh/site-functions/_chronik /usr/share/fish/vendor_completions.d/chronik.fish /usr/share/chronik/grafana/chronik.json /usr/share/chronik/prometheus/chronik-alerts.yml; do
  grep -q "^$f .* -rw-r--r-- root:root$" "$work/rpm.files" || { cat "$work/rpm.files"; fail "rpm lacks $f (0644 root)"; }
done
! grep -q '^/etc/default/' "$work/rpm.files" || fail "rpm holds /etc/default"
for f in /etc/chronik/chronik.yaml /etc/sysconfig/chronik; do
  flags=$(awk -v f="$f" '$1 == f { print $2 }' "$work/rpm.files")
  case "$flags" in *c*n*|*n*c*) ;; *) fail "rpm: $f flags '$flags', want config(noreplace) (c and n)" ;; esac
done
grep -q '^/usr/bin/chronik .* -rwxr-xr-x root:root$' "$work/rpm.files" || fail "rpm: /usr/bin/chronik not 0755 root"
grep -q '^/var/lib/chronik .* drwxr-x--- chronik:chronik$' "$work/rpm.files" || fail "rpm: /var/lib/chronik not 0750 chronik"
grep -q '^/etc/chronik/chronik.yaml .* -rw-r----- root:chronik$' "$work/rpm.files" || fail "rpm: chronik.yaml not 0640 root:chronik"
ok "rpm holds the binary, /etc/sysconfig/chronik, the unit and /var/lib/chronik; chronik.yaml and /etc/sysconfig/chronik are config(noreplace)"
rpm -qp --scripts "$rpmfile" >"$work/rpm.scripts" 2>/dev/null
for s in preinstall postinstall preuninstall postuninstall; do
  grep -q "^$s scriptlet" "$work/rpm.scripts" || fail "rpm has no $s scriptlet"
done
grep -q 'useradd --system' "$work/rpm.scripts" || fail "rpm's preinstall does not create the user"
ok "rpm -qp --scripts: pre/post install and uninstall scriptlets; preinstall creates the chronik user"

uninstall
ok "cleaned up (package, data, user and group removed)"
