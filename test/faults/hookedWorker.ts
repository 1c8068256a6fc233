/**
 * `kiln worker` for the fault suites, with a test-only hook around its storage so a test can kill
 * the Temporal server exactly between a build's storage write and its workflow task's completion.
 * Started as `node --import tsx test/faults/hookedWorker.ts` with Kiln's usual env (KILN_CONFIG,
 * TEMPORAL_ADDRESS, DATABASE_URL). Control on stdin, one command a line:
 *   arm <lease|start|end|reset>   after the next such write, print `KILN-FAULT-WROTE <kind> <build id>`
 *                                 and hold the local activity until `go` (at most 10 s)
 *   go                            let the held write's activity return
 * Prints `KILN-FAULT-READY` once the worker polls. Production code has no such hook.
 */
import { createInterface } from 'node:readline';
import { load, openConfiguredStorage } from '../../src/processes/runtime.ts';
import { startWorker } from '../../src/processes/services.ts';
import { type Storage } from '../../src/storage/storage.ts';
import { type WriteKind, writeKind } from './leaseCycles.ts';

const { config, logger } = load(undefined, 'kiln-fault-worker');
const address = config.temporal.address;
if (!address) throw new Error('hookedWorker needs TEMPORAL_ADDRESS');

let armed: WriteKind | undefined;
let release: (() => void) | undefined;
createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'arm') armed = arg as WriteKind;
  if (cmd === 'disarm') armed = undefined;
  if (cmd === 'go') release?.();
});

const real = await openConfiguredStorage(config);
const storage: Storage = new Proxy(real, {
  get(target, prop, receiver) {
    // Both write paths: the build metrics (on by default) store through recordBuildReplacing.
    if (prop === 'recordBuild' || prop === 'recordBuildReplacing') {
      return async (...args: Parameters<Storage['recordBuild']>) => {
        const written = await target[prop](...args);
        const kind = writeKind(args[0]);
        if (armed === undefined || kind !== armed) return written;
        armed = undefined;
        const held = new Promise<void>((r) => {
          release = r;
          setTimeout(r, 10_000);
        });
        process.stdout.write(`KILN-FAULT-WROTE ${kind} ${args[0].id}\n`);
        await held;
        release = undefined;
        return written;
      };
    }
    const v = Reflect.get(target, prop, receiver) as unknown;
    return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
  },
});
await startWorker({ config, address, storage, logger });
process.stdout.write('KILN-FAULT-READY\n');
