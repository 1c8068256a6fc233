/** Builds as tests need them without going through `BuildService.schedule`. */
import { type Build, type BuilderId } from '../../src/domain/build.ts';

/** A plausible freshly scheduled build (version 1, no lease) of `builder`, created at `createTime`. */
export function scheduledBuild(id: string, builder: BuilderId, createTime: string, o: Partial<Build> = {}): Build {
  return {
    id,
    builder,
    number: 1,
    status: 'SCHEDULED',
    statusDetails: {},
    tags: [],
    input: { properties: {} },
    priority: 30,
    dimensions: [],
    createTime,
    updateTime: createTime,
    leaseGeneration: 0,
    leaseResets: 0,
    events: [],
    version: 1,
    ...o,
  };
}
