// ESLint flat config: type-aware TypeScript rules, no import cycles, and workflows kept free of
// Node built-ins and I/O libraries (they must stay deterministic and bundle for the workflow sandbox).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';

const nodeBuiltins = [
  'fs',
  'path',
  'child_process',
  'net',
  'http',
  'https',
  'crypto',
  'os',
  'stream',
  'events',
  'url',
  'util',
  'worker_threads',
  'dns',
  'tls',
  'zlib',
  'readline',
  'process',
  'timers',
  'buffer',
];

export default tseslint.config(
  { ignores: ['node_modules/**', '.tools/**', '.kiln/**', 'dist/**', 'ui/dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    // Cycles are Kiln's own business; parsing dependencies (PGlite's minified chunks) overflows the stack.
    settings: { 'import-x/ignore': ['node_modules'] },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's describe/it return promises the runner itself awaits.
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] },
          ],
        },
      ],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'import-x/no-cycle': 'error',
    },
  },
  {
    files: ['workflows/**/*.ts', 'src/domain/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            ...nodeBuiltins
              .flatMap((m) => [m, `node:${m}`])
              .map((name) => ({
                name,
                message: 'Workflow code must be deterministic: no Node built-ins.',
              })),
            { name: 'pino', message: 'Inside workflows log with the SDK `log`.' },
            { name: 'pg', message: 'No I/O in workflow code.' },
            { name: '@electric-sql/pglite', message: 'No I/O in workflow code.' },
            { name: 'fastify', message: 'No I/O in workflow code.' },
          ],
          patterns: [
            { group: ['**/activities/**'], allowTypeImports: true, message: 'Import activities by type only.' },
            { group: ['**/src/storage/**', '**/src/api/**', '**/src/cli/**'], message: 'Node-side code.' },
          ],
        },
      ],
    },
  },
);
