import assert from 'node:assert/strict';
import { test } from 'node:test';
import { workflowBundle } from '../../workers/worker.ts';

// With reuseV8Context the worker evaluates every module of the workflow bundle once per workflow
// execution. zod and the schemas built with it cost a sixth of the workflow thread's CPU there, so
// workflow code imports zod modules by `import type` only and validation runs Node side.
void test('the workflow bundle holds no zod module', async () => {
  const { code } = await workflowBundle();
  assert.match(code, /src\/domain\/swarming\/merge\.ts/, 'module paths are visible in the bundle');
  const zod = [...new Set(code.match(/node_modules\/zod\/[\w./-]+/g) ?? [])];
  assert.deepEqual(zod, [], 'a workflow imports a module that imports zod at runtime');
});
