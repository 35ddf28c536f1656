#!/bin/sh
# deb postrm (remove | purge | upgrade ...) and rpm %postun (0 erase, 1+
# upgrade). Removal keeps the data in /var/lib/chronik; purge (deb) also
# removes the configuration. Data is never deleted by the package.
set -e
unit=chronik.service
case "$1" in
  remove)
    # Masks the unit while its file is gone, so that the enablement kept
    # for a reinstall starts nothing (dh_installsystemd's postrm).
    if command -v deb-systemd-helper >/dev/null 2>&1; then
      deb-systemd-helper mask "$unit" >/dev/null || true
    fi
    ;;
  purge)
    rm -rf /etc/chronik
    if command -v deb-systemd-helper >/dev/null 2>&1; then
      deb-systemd-helper purge "$unit" >/dev/null || true
      deb-systemd-helper unmask "$unit" >/dev/null || true
    fi
    ;;
esac
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
  # rpm upgrade (%systemd_postun_with_restart): restart a running service
  # onto the new binary; a stopped one stays stopped.
  case "$1" in
    [1-9]*) systemctl try-restart "$unit" >/dev/null 2>&1 || true ;;
  esac
fi
exit 0
