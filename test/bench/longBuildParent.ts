/**
 * A stand-in parent (as a change verification is) for the long-build phase: runs one build as its
 * child on Kiln's task queue and keeps every progress notification the build sends it, so the phase
 * can check they keep coming after the build continued as new.
 */
import { defineQuery, executeChild, setHandler } from '@temporalio/workflow';
import { type Build } from '../../src/domain/build.ts';
import {
  type BuildProgress,
  buildProgressSignal,
  buildWorkflow,
  type BuildWorkflowInput,
} from '../../workflows/build.ts';

export const progressQuery = defineQuery<BuildProgress[]>('progress');

export async function longBuildParent(input: {
  child: BuildWorkflowInput;
  workflowId: string;
  taskQueue: string;
}): Promise<{ build: Build; progress: BuildProgress[] }> {
  const progress: BuildProgress[] = [];
  setHandler(buildProgressSignal, (p) => void progress.push(p));
  setHandler(progressQuery, () => progress);
  const build = await executeChild(buildWorkflow, {
    workflowId: input.workflowId,
    taskQueue: input.taskQueue,
    args: [input.child],
  });
  return { build, progress };
}
