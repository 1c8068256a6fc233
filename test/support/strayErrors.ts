/**
 * Errors a test file raises outside any test: a rejection nobody handled or an exception thrown from
 * a callback, typically while the file tears its processes down. Node's test runner then fails the
 * whole file with only "test failed" in its closing list; a file that records them and checks them
 * in a last test gets the error itself, with its stack, into that list.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';

/** Starts recording; `assertNone()` fails with every error recorded so far. */
export function recordStrayErrors(): { assertNone(): void } {
  const errors: string[] = [];
  const keep = (kind: string) => (e: unknown) => {
    errors.push(`${kind}: ${inspect(e, { depth: 4 })}`);
  };
  process.on('unhandledRejection', keep('unhandled rejection'));
  process.on('uncaughtException', keep('uncaught exception'));
  return {
    assertNone: () => assert.deepEqual(errors, [], `errors outside any test:\n${errors.join('\n')}`),
  };
}

/**
 * Records stray errors from now on and adds a test, to run after every other test of the file, that
 * waits 2 s for teardown stragglers and fails with each error recorded.
 */
export function itLeavesNoStrayErrors(): void {
  const stray = recordStrayErrors();
  void it('leaves no stray error behind once torn down', async () => {
    await sleep(2000);
    stray.assertNone();
  });
}
