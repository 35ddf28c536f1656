#!/usr/bin/env bash
# The web console in a real browser: headless Chromium (Debian's chromium
# package) driven by chromedp against a broker with data loads every page,
# clicks topic -> messages -> a JSON record, edits a config, resets a
# group's offsets through the confirmation, adds a user and an ACL, and
# fails on any console error or exception of the page. The screenshots of
# every page are kept in $shots, listed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
shots=${CHRONIK_CONSOLE_SHOTS:-${TMPDIR:-/tmp}/chronik-ci/console-screenshots}
if ! command -v chromium >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
chromium --version 2>/dev/null | head -1
rm -rf "$shots"
mkdir -p "$shots"
CHRONIK_CONSOLE_SHOTS=$shots go test -tags browser -run 'TestConsoleBrowser$' -count=1 -v . 2>&1 | tail -20
echo "console screenshots (kept in $shots):"
ls -l "$shots"
