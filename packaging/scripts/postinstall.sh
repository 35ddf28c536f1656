#!/bin/sh
# deb postinst (configure [old-version]) and rpm %post (1 install, 2+
# upgrade). The service follows each family's convention, as
# dh_installsystemd and %systemd_post write it:
# - deb: the first install enables and starts chronik; an upgrade keeps the
#   admin's choice (a disabled service stays disabled: deb-systemd-helper
#   remembers it) and restarts the service only if it was running.
# - rpm: the first install applies the preset policy (systemctl preset: on
#   Fedora and RHEL, disabled until the admin enables it), never starts;
#   %postun restarts a running service after an upgrade (postremove.sh).
set -e
unit=chronik.service
# Data directory for non-systemd starts; systemd's StateDirectory= makes it too.
install -d -o chronik -g chronik -m 0750 /var/lib/chronik
chown root:chronik /etc/chronik/chronik.yaml 2>/dev/null || true
chmod 0640 /etc/chronik/chronik.yaml 2>/dev/null || true

systemd_running() { [ -d /run/systemd/system ]; }

case "$1" in
  configure|abort-upgrade|abort-deconfigure|abort-remove)
    old_version=${2:-}
    if command -v deb-systemd-helper >/dev/null 2>&1; then
      # Removes only a mask deb-systemd-helper itself set on removal.
      deb-systemd-helper unmask "$unit" >/dev/null || true
      # was-enabled is true for a unit it has never seen, so the first
      # install enables; after `systemctl disable` it is false.
      if deb-systemd-helper --quiet was-enabled "$unit"; then
        deb-systemd-helper enable "$unit" >/dev/null || true
      else
        deb-systemd-helper update-state "$unit" >/dev/null || true
      fi
    elif [ -z "$old_version" ]; then
      systemctl enable "$unit" >/dev/null 2>&1 || true
    fi
    if systemd_running; then
      systemctl daemon-reload >/dev/null 2>&1 || true
      if [ -z "$old_version" ]; then
        action=start # deb-systemd-invoke starts only an enabled unit
      else
        action=try-restart # only if it runs
      fi
      if command -v deb-systemd-invoke >/dev/null 2>&1; then
        deb-systemd-invoke "$action" "$unit" >/dev/null || true
      elif [ "$action" = try-restart ] || systemctl --quiet is-enabled "$unit"; then
        systemctl "$action" "$unit" >/dev/null 2>&1 || true
      fi
    fi
    ;;
  1)
    systemctl --no-reload preset "$unit" >/dev/null 2>&1 || true
    if systemd_running; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
    ;;
  *)
    if systemd_running; then systemctl daemon-reload >/dev/null 2>&1 || true; fi
    ;;
esac
exit 0
