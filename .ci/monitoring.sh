#!/usr/bin/env bash
# Monitoring: promtool (from Debian's prometheus package) checks the
# packaged alert rules. Only promtool is needed, so the package is
# downloaded and unpacked into a temporary directory rather than installed:
# no Prometheus service, user or data is left behind. The dashboard's and
# the rules' metric names are checked against a running broker by
# TestMonitoringNamesExportedMetrics (go test).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rules=packaging/prometheus/chronik-alerts.yml

promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  (cd "$work" && apt-get download prometheus >/dev/null 2>&1) || { apt-get update -qq && (cd "$work" && apt-get download prometheus >/dev/null); }
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  promtool=$work/root/usr/bin/promtool
fi
"$promtool" --version 2>&1 | head -1
"$promtool" check rules "$rules"
echo "monitoring: ok: promtool check rules $rules"
