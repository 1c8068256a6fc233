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
