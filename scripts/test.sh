#!/usr/bin/env bash
# Kiln's test suite (run by `npm test` after scripts/setup.sh). Node's built-in test runner:
#   test/unit      pure code and clients against fake HTTP servers        (parallel)
#   test/workflow  workflows on a real Temporal dev server                (parallel, 2 files at a time)
#   test/api       HTTP routes on a real dev server: happy path, bad input, permissions
#   test/e2e       Kiln's processes started as a user would
#   test/faults    SIGKILL and restart every process while builds run (also: npm run test:faults)
#   test/timeskip  4 h / 6 h timers on the Java time-skipping test server  (one file at a time)
# Pass file paths to run only those: `npm test -- test/unit/foo.test.ts`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The spec reporter ends with a list of the failing tests and their errors, so the last lines of a red
# run say what failed (the TAP reporter, Node's default off a terminal, leaves them mid-log).
REPORTER=(--test-reporter=spec --test-reporter-destination=stdout)

run() {
  local concurrency=$1
  shift
  [[ $# -gt 0 ]] || return 0
  node --import tsx --test "${REPORTER[@]}" --test-concurrency="$concurrency" --test-timeout=600000 "$@"
}

if [[ $# -gt 0 ]]; then
  run 1 "$@"
  exit
fi

mapfile -t unit < <(find test/unit test/support -name '*.test.ts' 2>/dev/null | sort)
mapfile -t workflow < <(find test/workflow test/api -name '*.test.ts' 2>/dev/null | sort)
mapfile -t e2e < <(find test/e2e test/faults -name '*.test.ts' 2>/dev/null | sort)
mapfile -t timeskip < <(find test/timeskip -name '*.test.ts' 2>/dev/null | sort)

# One runner invocation, so the closing summary counts every test.
node --import tsx --test "${REPORTER[@]}" --test-concurrency=2 --test-timeout=600000 "${unit[@]}" "${workflow[@]}" "${e2e[@]}" "${timeskip[@]}"
