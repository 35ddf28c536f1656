#!/bin/sh
# deb prerm (remove | upgrade ...) and rpm %preun (0 erase, 1+ upgrade).
# Removal stops the service; an upgrade leaves it running for postinst
# (deb) or %postun (rpm) to restart onto the new binary.
# - deb: enablement is kept until purge, as dh_installsystemd does
#   (postremove.sh masks the removed unit, purge forgets it).
# - rpm: erase disables and stops it, as %systemd_preun does.
set -e
unit=chronik.service
case "$1" in
  remove)
    if [ -d /run/systemd/system ]; then
      if command -v deb-systemd-invoke >/dev/null 2>&1; then
        deb-systemd-invoke stop "$unit" >/dev/null || true
      else
        systemctl stop "$unit" >/dev/null 2>&1 || true
      fi
    fi
    ;;
  0)
    systemctl --no-reload disable --now "$unit" >/dev/null 2>&1 || true
    ;;
esac
exit 0
