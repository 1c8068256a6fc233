/** Builds as tests need them without going through `BuildService.schedule`. */
import { type Build, type BuilderId } from '../../src/domain/build.ts';
import { type Storage } from '../../src/storage/storage.ts';

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

/**
 * `storage` as an API sees it that dies between starting a build's workflow and writing the build
 * (`BuildService.schedule`): that write fails; everything else goes through.
 */
export function losingScheduleWrites(storage: Storage): Storage {
  return new Proxy(storage, {
    get(target, prop, receiver) {
      if (prop === 'insertBuild') return () => Promise.reject(new Error('storage went away'));
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
