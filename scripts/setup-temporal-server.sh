#!/usr/bin/env bash
# Builds the Temporal server v1.29.1 (the version the dev server embeds) for tests and benchmarks that run a real
# multi-process Temporal cluster on PostgreSQL (test/support/temporalCluster.ts), from the Go module proxy:
#   .tools/bin/temporal-server       go.temporal.io/server/cmd/server             (frontend, history, matching, worker)
#   .tools/bin/temporal-sql-tool     go.temporal.io/server/cmd/tools/sql          (creates and migrates its databases)
#   .tools/temporal-server/schema/postgresql/v12/   the module's PostgreSQL schemas, copied from the module cache
# Idempotent: silent when all three are there at this version. The first build takes a few minutes.
# Run by scripts/setup.sh when KILN_SETUP_EXTRAS has temporal-server.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVER_VERSION=1.29.1
TOOLS_DIR="$ROOT/.tools"
TOOLS_BIN="$TOOLS_DIR/bin"
SCHEMA_DIR="$TOOLS_DIR/temporal-server/schema/postgresql/v12"
SCHEMA_STAMP="$TOOLS_DIR/temporal-server/VERSION"

SETUP_NAME=setup-temporal-server
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Both binaries print "<name> version <v>" for --version (Temporal's release builds and `go install` alike).
reports_version() {
  local out
  [[ -x "$1" ]] || return 1
  out="$("$1" --version 2>/dev/null)" || return 1
  [[ "$out" == *" version $SERVER_VERSION" ]]
}

ready() {
  reports_version "$TOOLS_BIN/temporal-server" &&
    reports_version "$TOOLS_BIN/temporal-sql-tool" &&
    [[ -f "$SCHEMA_STAMP" && "$(<"$SCHEMA_STAMP")" == "$SERVER_VERSION" ]] &&
    [[ -f "$SCHEMA_DIR/temporal/schema.sql" && -d "$SCHEMA_DIR/visibility/versioned" ]]
}

ready && exit 0

command -v go >/dev/null 2>&1 ||
  die "the Temporal server v$SERVER_VERSION is built from source and needs Go >= 1.22 (https://go.dev/dl/)"
gover="$(go env GOVERSION)"
minor="$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$gover")"
[[ "$minor" =~ ^[0-9]+$ ]] || minor=0
((minor >= 22)) || die "Go >= 1.22 is needed to build the Temporal server (found $gover)"
# server v1.29.1's go.mod says `go 1.25.0`; older Go fetches that toolchain itself when allowed to.
toolchain="$(go env GOTOOLCHAIN)"
if ((minor < 25)); then toolchain=auto; fi

mkdir -p "$TOOLS_BIN"
tmp="$(mktemp -d "$TOOLS_DIR/.temporal-server.XXXXXX")"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

log "building Temporal server v$SERVER_VERSION and its SQL tool with $gover (first time only; a few minutes)"
# Stripped, like the release binaries. Both packages are in one module, so one `go install` builds them together.
if ! GOBIN="$tmp/bin" GOTOOLCHAIN="$toolchain" go install -ldflags "-s -w" \
  "go.temporal.io/server/cmd/server@v$SERVER_VERSION" \
  "go.temporal.io/server/cmd/tools/sql@v$SERVER_VERSION" >"$tmp/go-install.log" 2>&1; then
  tail -n 30 "$tmp/go-install.log" >&2
  cp "$tmp/go-install.log" "$TOOLS_DIR/temporal-server-go-install.log"
  die "go install of the Temporal server failed (full log: $TOOLS_DIR/temporal-server-go-install.log)"
fi

# The schemas ship in the module, not in the binaries: take them from the module cache `go install` just filled.
module_dir="$(GOTOOLCHAIN="$toolchain" go mod download -json "go.temporal.io/server@v$SERVER_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[[ -d "$module_dir/schema/postgresql/v12" ]] ||
  die "go.temporal.io/server@v$SERVER_VERSION has no schema/postgresql/v12 in the module cache (looked in '$module_dir')"
mkdir -p "$tmp/schema"
cp -R "$module_dir/schema/postgresql/v12" "$tmp/schema/v12"
chmod -R u+w "$tmp/schema" # the module cache is read-only

# Rename into place: atomic per file, and safe while a cluster runs the old binaries.
mv -f "$tmp/bin/server" "$TOOLS_BIN/temporal-server"
mv -f "$tmp/bin/sql" "$TOOLS_BIN/temporal-sql-tool"
rm -rf "$SCHEMA_DIR"
mkdir -p "$(dirname "$SCHEMA_DIR")"
mv "$tmp/schema/v12" "$SCHEMA_DIR"
printf '%s\n' "$SERVER_VERSION" >"$SCHEMA_STAMP"

ready || die "built the Temporal server, but $TOOLS_BIN/temporal-server, temporal-sql-tool or the schemas are not right"
log "ready: $("$TOOLS_BIN/temporal-server" --version), $("$TOOLS_BIN/temporal-sql-tool" --version)"
