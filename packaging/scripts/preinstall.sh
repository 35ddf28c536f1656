#!/bin/sh
# Create the chronik system user and group before files are installed.
set -e
if ! getent group chronik >/dev/null 2>&1; then
  groupadd --system chronik 2>/dev/null || addgroup --system chronik
fi
if ! getent passwd chronik >/dev/null 2>&1; then
  useradd --system --gid chronik --home-dir /var/lib/chronik --no-create-home \
    --shell /usr/sbin/nologin --comment "Chronik broker" chronik 2>/dev/null ||
  adduser --system --ingroup chronik --home /var/lib/chronik --no-create-home \
    --shell /usr/sbin/nologin chronik
fi
