/**
 * A build's steps and output properties as the lease holder reports them while the build runs (Buildbucket v2
 * `UpdateBuild`): `steps` are replaced as a whole, `output.properties` too. Kept in storage beside the build (not in
 * its workflow), so they never grow a workflow's history; reads merge them into the build. Pure.
 */
import { type Build, type BuildStatus } from './build.ts';

/** One log of a step: a name and where to read it. */
export interface BuildStepLog {
  name: string;
  url: string;
}

/** One step of a build (Buildbucket v2 `Step`): `a|b` names step `b` inside step `a`. */
export interface BuildStep {
  name: string;
  status: BuildStatus;
  startTime?: string;
  endTime?: string;
  summaryMarkdown?: string;
  logs?: BuildStepLog[];
}

/** Limits of one update; over them the API answers 413 PAYLOAD_TOO_LARGE naming the field. */
export const STEP_LIMITS = {
  /** Steps in one build. */
  maxSteps: 1000,
  /** Bytes of the steps as JSON (UTF-8). */
  maxStepsBytes: 256 * 1024,
  /** Bytes of the output properties as JSON (UTF-8). */
  maxOutputPropertiesBytes: 256 * 1024,
} as const;

/** What storage keeps of a build's reported progress. */
export interface StoredBuildProgress {
  /** The lease generation that wrote it; a later attempt replaces what an earlier one reported. */
  attempt: number;
  steps?: BuildStep[];
  outputProperties?: Record<string, unknown>;
  updateTime: string;
}

/**
 * Why `steps` cannot be a build's steps (as Buildbucket checks them): names must be unique, and a nested step
 * `a|b` needs its parent `a` listed before it. Returns `[index, message]` of the first problem, or undefined.
 */
export function stepsProblem(steps: readonly BuildStep[]): [number, string] | undefined {
  const seen = new Set<string>();
  for (const [i, s] of steps.entries()) {
    if (seen.has(s.name)) return [i, `duplicate step name "${s.name}"`];
    const parent = s.name.includes('|') ? s.name.slice(0, s.name.lastIndexOf('|')) : undefined;
    if (parent !== undefined && !seen.has(parent)) return [i, `parent step "${parent}" is not listed before it`];
    if (s.startTime && s.endTime && Date.parse(s.endTime) < Date.parse(s.startTime)) {
      return [i, 'endTime is before startTime'];
    }
    seen.add(s.name);
  }
  return undefined;
}

/**
 * The build as readers see it: its reported steps, and its reported output properties unless the build's own
 * output (given at succeed/fail) has some.
 */
export function withReportedProgress(b: Build, p: StoredBuildProgress | undefined): Build {
  if (!p) return b;
  const out: Build = { ...b };
  if (p.steps !== undefined) out.steps = p.steps;
  if (p.outputProperties !== undefined && b.output?.properties === undefined) {
    out.output = { ...b.output, properties: p.outputProperties };
  }
  return out;
}
