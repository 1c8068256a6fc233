/**
 * `npm run build`: Kiln's production build in dist/, which `bin/kiln.js` (and so `kiln api`, `kiln worker`,
 * `kiln runner` and the Docker image) runs instead of the TypeScript sources:
 *   dist/{src,workflows,activities,workers}/**.js   the sources compiled by tsc (tsconfig.build.json; the `.ts`
 *                                                    in relative imports rewritten to `.js`), with source maps;
 *   dist/workflow-bundle.js                          the workflow bundle (the SDK's bundleWorkflowCode), so a
 *                                                    worker loads it instead of running webpack at every start;
 *   dist/package.json                                marks the folder's .js files as ES modules;
 *   dist/build-info.json                             written last: when the build started, and from what.
 * `npm run build -- --no-check` skips type checking (`npm run typecheck` does it); `--out-dir <dir>` builds
 * elsewhere (inside the repo, so node_modules resolve).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { bundleKilnWorkflows } from '../workers/worker.ts';

const ROOT = resolve(import.meta.dirname, '..');

/** The file the build writes last; `bin/kiln.js` runs a build only when it is there and no source is newer. */
export const BUILD_INFO_FILE = 'build-info.json';

/** What `build-info.json` holds. */
export interface BuildInfo {
  /** Milliseconds since the epoch when the build started: a source changed after it makes the build stale. */
  builtAt: number;
  version: string;
  node: string;
  /** The folders and files compiled into the build, relative to the repo (what staleness is checked against). */
  inputs: string[];
}

/** Folders and files whose change makes a build stale (the workflow bundle holds node_modules code too). */
export const BUILD_INPUTS = ['src', 'workflows', 'activities', 'workers', 'package-lock.json', 'tsconfig.json'];

/** Builds Kiln into `outDir` (removed first). Resolves with the build's info; rejects when tsc fails. */
export async function buildKiln(
  opts: { outDir?: string; typecheck?: boolean; log?: (line: string) => void } = {},
): Promise<BuildInfo & { outDir: string; ms: { tsc: number; bundle: number } }> {
  const outDir = resolve(ROOT, opts.outDir ?? 'dist');
  const rel = relative(ROOT, outDir);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel) || BUILD_INPUTS.includes(rel.split(/[\\/]/)[0]!)) {
    throw new Error(`--out-dir must be a new folder inside ${ROOT} (node_modules resolve from there), not ${outDir}`);
  }
  const log = opts.log ?? ((line: string) => console.error(line));
  const builtAt = Date.now();
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });

  const t0 = performance.now();
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
  await run(process.execPath, [
    tsc,
    '-p',
    join(ROOT, 'tsconfig.build.json'),
    '--outDir',
    outDir,
    ...(opts.typecheck === false ? ['--noCheck'] : []),
  ]);
  const tscMs = performance.now() - t0;
  log(`build: compiled the sources into ${rel}/ (${(tscMs / 1000).toFixed(1)} s)`);

  const t1 = performance.now();
  const { code } = await bundleKilnWorkflows();
  writeFileSync(join(outDir, 'workflow-bundle.js'), code);
  const bundleMs = performance.now() - t1;
  log(`build: bundled the workflows into ${rel}/workflow-bundle.js (${(bundleMs / 1000).toFixed(1)} s)`);

  writeFileSync(join(outDir, 'package.json'), `${JSON.stringify({ type: 'module', private: true }, null, 2)}\n`);
  const info: BuildInfo = {
    builtAt,
    version: (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version,
    node: process.version,
    inputs: BUILD_INPUTS,
  };
  writeFileSync(join(outDir, BUILD_INFO_FILE), `${JSON.stringify(info, null, 2)}\n`);
  return { ...info, outDir, ms: { tsc: tscMs, bundle: bundleMs } };
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: 'inherit' });
    child.on('error', fail);
    child.on('close', (code) => (code === 0 ? done() : fail(new Error(`tsc failed (exit ${code})`))));
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const outAt = args.indexOf('--out-dir');
  try {
    const r = await buildKiln({
      outDir: outAt >= 0 ? args[outAt + 1] : undefined,
      typecheck: !args.includes('--no-check'),
    });
    console.error(`build: ready in ${relative(ROOT, r.outDir)}/ (bin/kiln.js runs it while no source is newer)`);
  } catch (e) {
    console.error(`build: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
