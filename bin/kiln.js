#!/usr/bin/env node
// The `kiln` command. Runs the production build in dist/ (`npm run build`: compiled JavaScript and a prebuilt
// workflow bundle) when there is one and no source is newer than it; otherwise the TypeScript sources through tsx,
// as in development, so a fresh clone works with nothing built. A stale build is never run: it says so and runs
// the sources. KILN_RUN_FROM=sources|dist forces one or the other.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

/** Why the build in dist/ cannot run, or undefined when it can. */
function whyNotDist() {
  let info;
  try {
    info = JSON.parse(readFileSync(join(dist, 'build-info.json'), 'utf8'));
  } catch {
    return 'there is no build in dist/ (npm run build)';
  }
  // Without the sources (the Docker image) there is nothing to be stale against.
  for (const input of info.inputs ?? []) {
    const newer = newerThan(join(root, input), info.builtAt);
    if (newer) return `${newer.slice(root.length + 1)} changed after the build in dist/ (npm run build refreshes it)`;
  }
  return undefined;
}

/** The first file under `path` modified after `time` (ms), if any. */
function newerThan(path, time) {
  let st;
  try {
    st = statSync(path);
  } catch {
    return undefined;
  }
  if (!st.isDirectory()) return st.mtimeMs > time ? path : undefined;
  for (const name of readdirSync(path)) {
    const found = newerThan(join(path, name), time);
    if (found) return found;
  }
  return undefined;
}

const from = process.env.KILN_RUN_FROM;
const reason = from === 'sources' ? 'KILN_RUN_FROM=sources' : whyNotDist();
if (reason === undefined || from === 'dist') {
  await import(pathToFileURL(join(dist, 'src/cli/main.js')).href);
} else {
  if (existsSync(join(dist, 'build-info.json')) && from !== 'sources') {
    process.stderr.write(`kiln: running the TypeScript sources: ${reason}\n`);
  }
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
