#!/usr/bin/env bash
# Ensures the PostgreSQL server binaries (initdb, pg_ctl, postgres) exist for tests that start a throwaway
# cluster (test/support/postgres.ts). Looks on PATH, then in /usr/lib/postgresql/*/bin (Debian's layout);
# when none is found and we are root, installs Debian's `postgresql` without creating or starting the
# default "main" cluster. Silent when the binaries are already there.
# Run by scripts/setup.sh when KILN_SETUP_EXTRAS has postgres.
set -euo pipefail

SETUP_NAME=setup-postgres
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

has_server_binaries() { [[ -x "$1/initdb" && -x "$1/pg_ctl" && -x "$1/postgres" ]]; }

# Same search order as test/support/postgres.ts: the directory of `initdb` on PATH, then the newest
# /usr/lib/postgresql/<major>/bin.
find_bindir() {
  local initdb dir
  if initdb="$(command -v initdb 2>/dev/null)"; then
    dir="$(dirname "$initdb")"
    if has_server_binaries "$dir"; then
      printf '%s\n' "$dir"
      return 0
    fi
  fi
  for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4,4 -n -r); do
    if has_server_binaries "$dir"; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}

if find_bindir >/dev/null; then
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in /usr/lib/postgresql/*/bin.
       Install them as root, e.g. 'sudo apt-get install postgresql' (Debian/Ubuntu), or put their bin directory on PATH."
fi
command -v apt-get >/dev/null 2>&1 || die "PostgreSQL server binaries not found and apt-get is unavailable; install PostgreSQL and put its bin directory on PATH"

log "installing PostgreSQL with apt-get (first time only)"
export DEBIAN_FRONTEND=noninteractive
apt_log="$(mktemp)"
trap 'rm -f "$apt_log"' EXIT
{
  apt-get update -q &&
    apt-get install -y -q --no-install-recommends postgresql-common &&
    # Tests make their own clusters; do not let the package create and start a system-wide one on :5432.
    sed -ri 's/^#?\s*create_main_cluster\s*=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf &&
    apt-get install -y -q --no-install-recommends postgresql
} >"$apt_log" 2>&1 || {
  tail -n 30 "$apt_log" >&2
  die "apt-get could not install postgresql (see above)"
}

bindir="$(find_bindir)" || die "installed postgresql, but initdb/pg_ctl/postgres are still not found"
log "ready: $bindir"
