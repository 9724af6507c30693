#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl, postgres) exist: the tests start their
# own throwaway servers from them (tools/pgserver.py). Installs Debian's package when missing.
set -euo pipefail

if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || [ -n "${AETHER_PG_BINDIR:-}" ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "PostgreSQL binaries are missing and cannot be installed without root:" >&2
    echo "  apt-get install postgresql   (or set AETHER_PG_BINDIR)" >&2
    exit 1
  fi
fi
echo "==> Installing PostgreSQL binaries (apt-get install postgresql)"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
# The package may create and start a cluster of its own; the tests only need the binaries.
$SUDO service postgresql stop >/dev/null 2>&1 || true
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | while read -r ver name _port status _rest; do
    if [ "$status" = "online" ]; then $SUDO pg_ctlcluster "$ver" "$name" stop || true; fi
  done || true
fi
