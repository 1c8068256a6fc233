# Helpers the setup scripts share; source it after setting SETUP_NAME (the prefix of every message).
# shellcheck shell=bash

log() { printf '%s: %s\n' "${SETUP_NAME:-setup}" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "${SETUP_NAME:-setup}" "$*" >&2
  exit 1
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# The Go that builds the Temporal CLI (v1.5.1's go.mod says `go 1.25.0`). One truth: README's
# "Go ≥ …" says the same (test/unit/setup-scripts.test.ts checks it). No toolchain download: a newer
# Go toolchain cannot be fetched where only the module proxy is reachable.
KILN_GO_MIN=1.25

# Dies unless `go` is on PATH and at least $KILN_GO_MIN; $1 is what the caller falls back on.
require_go() {
  local fallback="${1:-}" gover want_minor have_minor
  want_minor="${KILN_GO_MIN#1.}"
  if ! command -v go >/dev/null 2>&1; then
    die "Go >= $KILN_GO_MIN is needed to build the Temporal CLI (https://go.dev/dl/).${fallback:+
       $fallback}"
  fi
  gover="$(go env GOVERSION 2>/dev/null || true)" # e.g. go1.26.8
  have_minor="$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$gover")"
  [[ "$have_minor" =~ ^[0-9]+$ ]] || have_minor=0
  if ((have_minor < want_minor)); then
    die "Go >= $KILN_GO_MIN is needed to build the Temporal CLI (found ${gover:-an unknown version}).
       Upgrade Go (https://go.dev/dl/).${fallback:+ $fallback}"
  fi
}
