#!/usr/bin/env bash
# Builds Kiln's web UI (ui/) into ui/dist, which `kiln api` and `kiln dev` serve under `/`. Skipped when
# ui/dist was built from the same sources: a sha256 over every file under ui/ (less ui/dist) and
# package-lock.json, kept in ui/dist/.kiln-ui-sha. Run by scripts/setup.sh; `npm run build:ui` forces it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SETUP_NAME=build-ui
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stamp=ui/dist/.kiln-ui-sha
want="$(
  {
    find ui -path ui/dist -prune -o -type f -print | LC_ALL=C sort | while IFS= read -r f; do
      printf '%s %s\n' "$(sha256_of "$f")" "$f"
    done
    printf '%s package-lock.json\n' "$(sha256_of package-lock.json)"
  } | sha256sum | cut -d' ' -f1
)"
if [[ "${1:-}" != "--force" && -f "$stamp" && "$(<"$stamp")" == "$want" && -f ui/dist/index.html ]]; then
  exit 0
fi
log "building the web UI into ui/dist"
build_log="$(mktemp)"
trap 'rm -f "$build_log"' EXIT
if ! node node_modules/vite/bin/vite.js build --config ui/vite.config.ts --logLevel warn >"$build_log" 2>&1; then
  tail -n 40 "$build_log" >&2
  die "the web UI did not build (see above)"
fi
printf '%s\n' "$want" >"$stamp"
