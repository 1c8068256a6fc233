#!/usr/bin/env bash
# Ensures a headless-capable Chromium at /usr/bin/chromium (Debian's `chromium` package) for browser tests of
# the web UI. Skipped when it is already there; as root, installs it with apt-get (no chromium-driver: tests
# drive it over the DevTools protocol, e.g. playwright-core with executablePath /usr/bin/chromium).
# fonts-liberation (a chromium "Recommends") is added so pages render text with real fonts.
# Run by scripts/setup.sh when KILN_SETUP_EXTRAS has chromium.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

SETUP_NAME=setup-chromium
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ -x "$CHROMIUM" ]]; then
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  die "$CHROMIUM not found. Install it as root, e.g. 'sudo apt-get install chromium' (Debian; on Ubuntu the apt package is a snap shim)."
fi
command -v apt-get >/dev/null 2>&1 || die "$CHROMIUM not found and apt-get is unavailable; install Chromium so that $CHROMIUM exists"

log "installing chromium with apt-get (first time only; a few hundred MB)"
export DEBIAN_FRONTEND=noninteractive
apt_log="$(mktemp)"
trap 'rm -f "$apt_log"' EXIT
{
  apt-get update -q && apt-get install -y -q --no-install-recommends chromium fonts-liberation
} >"$apt_log" 2>&1 || {
  tail -n 30 "$apt_log" >&2
  die "apt-get could not install chromium (see above)"
}
[[ -x "$CHROMIUM" ]] || die "installed chromium, but $CHROMIUM is missing"
log "ready: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
