#!/bin/sh
# Removal keeps the data in /var/lib/chronik; purge (deb) also removes the
# configuration. Data is never deleted by the package.
set -e
case "$1" in
  purge)
    rm -rf /etc/chronik
    ;;
esac
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
