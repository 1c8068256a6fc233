/**
 * Kiln's package root (the folder of its package.json), found the same way whether this module runs from the
 * TypeScript sources (`src/packageRoot.ts`) or from the production build (`dist/src/packageRoot.js`), which sit at
 * different depths. Files Kiln reads at run time that are not code (`config/`, `.tools/`) are resolved from it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        if ((JSON.parse(readFileSync(file, 'utf8')) as { name?: string }).name === 'kiln') return dir;
      } catch {
        // not a package.json we can read: keep looking
      }
    }
    if (dirname(dir) === dir) return resolve(from, '..'); // none found: where the sources' layout puts it
  }
}

/** The folder holding Kiln's package.json. */
export const PACKAGE_ROOT = findPackageRoot(import.meta.dirname);
