#!/bin/sh
# Data directory for non-systemd starts; systemd's StateDirectory= makes it too.
set -e
install -d -o chronik -g chronik -m 0750 /var/lib/chronik
chown root:chronik /etc/chronik/chronik.yaml 2>/dev/null || true
chmod 0640 /etc/chronik/chronik.yaml 2>/dev/null || true
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
  systemctl enable chronik.service >/dev/null 2>&1 || true
  # An upgrade restarts a running broker onto the new binary.
  if systemctl is-active --quiet chronik.service; then
    systemctl restart chronik.service || true
  fi
fi
