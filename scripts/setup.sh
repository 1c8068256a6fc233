#!/usr/bin/env bash
# Prepares the repo for `npm start`, `npm test` and `npm run bench` (package.json runs it first).
# Idempotent and quiet: when everything is already in place it only checks and exits (well under a second).
#
#   1. node_modules: `npm ci` when missing or when package-lock.json changed since the last install
#      (sha256 stamp in node_modules/.kiln-lock-sha).
#   1b. The web UI (ui/ → ui/dist) by scripts/build-ui.sh, when its sources changed (content stamp).
#   2. Temporal CLI v1.5.1 (dev server) in .tools/bin/temporal, built with `go install`; skipped when
#      TEMPORAL_ADDRESS points at an existing server.
#   3. Optional extras named in KILN_SETUP_EXTRAS (space-separated), each in its own script:
#        java-test-server  -> scripts/setup-java-test-server.sh (time-skipping test server)
#        gerrit-test-server -> scripts/setup-gerrit-test-server.sh (a real Gerrit 3.10, and the ssh client)
#        postgres          -> scripts/setup-postgres.sh         (PostgreSQL server binaries)
#        chromium          -> scripts/setup-chromium.sh         (/usr/bin/chromium)
#        temporal-server   -> scripts/setup-temporal-server.sh  (Temporal server + SQL tool, for a real cluster)
#
# Example: KILN_SETUP_EXTRAS="java-test-server postgres chromium" bash scripts/setup.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TEMPORAL_CLI_VERSION=1.5.1
TOOLS_DIR="$ROOT/.tools"
TOOLS_BIN="$TOOLS_DIR/bin"

SETUP_NAME=setup
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# --- 1. node_modules -------------------------------------------------------------------------------
ensure_node_modules() {
  local stamp="node_modules/.kiln-lock-sha" want
  [[ -f package-lock.json ]] || die "package-lock.json is missing in $ROOT"
  want="$(sha256_of package-lock.json)"
  if [[ -d node_modules && -f "$stamp" && "$(<"$stamp")" == "$want" ]]; then
    return 0
  fi
  if [[ -d node_modules ]]; then
    log "package-lock.json changed since the last install: running npm ci"
  else
    log "node_modules is missing: running npm ci"
  fi
  # `npm ci`: exactly the lockfile, never rewriting it, so a fresh clone stays clean. The lockfile
  # lists every platform's optional native packages (@swc/core-*), which `npm ci` requires.
  npm ci --no-audit --no-fund --loglevel=error
  sha256_of package-lock.json >"$stamp"
}

# --- 2. Temporal CLI -------------------------------------------------------------------------------
# True when .tools/bin/temporal is v$TEMPORAL_CLI_VERSION. Release builds (and ours, see ldflags below)
# report it in `temporal --version`; a plain `go install` reports 0.0.0-DEV, so ask Go's build info.
temporal_cli_ok() {
  local bin="$TOOLS_BIN/temporal" out
  [[ -x "$bin" ]] || return 1
  out="$("$bin" --version 2>/dev/null)" || return 1
  case "$out" in
    *"version $TEMPORAL_CLI_VERSION "* | *"version $TEMPORAL_CLI_VERSION") return 0 ;;
    *"version 0.0.0-DEV"*)
      command -v go >/dev/null 2>&1 &&
        go version -m "$bin" 2>/dev/null | grep -q "^[[:space:]]*mod[[:space:]]*github.com/temporalio/cli[[:space:]]*v${TEMPORAL_CLI_VERSION}[[:space:]]"
      ;;
    *) return 1 ;;
  esac
}

ensure_temporal_cli() {
  if [[ -n "${TEMPORAL_ADDRESS:-}" ]]; then
    return 0 # an existing server is used; no local CLI needed
  fi
  temporal_cli_ok && return 0

  require_go "Or set TEMPORAL_ADDRESS=host:port to use an existing Temporal server instead."
  local gover
  gover="$(go env GOVERSION)"

  log "building Temporal CLI v$TEMPORAL_CLI_VERSION with $gover (first time only; a few minutes)"
  mkdir -p "$TOOLS_BIN"
  # Build into a scratch GOBIN and rename into place: atomic, and safe while a dev server runs the old binary.
  local tmp
  tmp="$(mktemp -d "$TOOLS_DIR/.temporal-cli.XXXXXX")"
  # Same ldflags as the upstream release build: stripped, and `temporal --version` reports the real version.
  if ! GOBIN="$tmp" GOTOOLCHAIN=local go install \
    -ldflags "-s -w -X github.com/temporalio/cli/temporalcli.Version=$TEMPORAL_CLI_VERSION" \
    "github.com/temporalio/cli/cmd/temporal@v$TEMPORAL_CLI_VERSION" >"$tmp/go-install.log" 2>&1; then
    tail -n 30 "$tmp/go-install.log" >&2
    die "go install of the Temporal CLI failed (full log: $tmp/go-install.log)"
  fi
  mv -f "$tmp/temporal" "$TOOLS_BIN/temporal"
  rm -rf "$tmp"
  temporal_cli_ok || die "built $TOOLS_BIN/temporal but it does not report version $TEMPORAL_CLI_VERSION"
  log "Temporal CLI ready: $("$TOOLS_BIN/temporal" --version)"
}

# --- 3. extras -------------------------------------------------------------------------------------
run_extras() {
  local extra
  for extra in ${KILN_SETUP_EXTRAS:-}; do
    case "$extra" in
      java-test-server | gerrit-test-server | postgres | chromium | temporal-server) bash "$ROOT/scripts/setup-$extra.sh" ;;
      *) die "unknown KILN_SETUP_EXTRAS entry '$extra' (known: java-test-server gerrit-test-server postgres chromium temporal-server)" ;;
    esac
  done
}

ensure_node_modules
bash "$ROOT/scripts/build-ui.sh" # web UI assets (ui/dist), rebuilt only when ui/ or the lockfile changed
ensure_temporal_cli
run_extras
