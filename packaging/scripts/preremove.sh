#!/bin/sh
# Stop the service on removal (not on upgrade).
set -e
case "$1" in
  remove|0)
    if [ -d /run/systemd/system ]; then
      systemctl stop chronik.service >/dev/null 2>&1 || true
      systemctl disable chronik.service >/dev/null 2>&1 || true
    fi
    ;;
esac
