// Lint that guards the design: promises are awaited or handed on deliberately, and no module
// imports itself back through another (see docs/architecture.md for what each folder may import).
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.base],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })],
      'import-x/extensions': ['.ts', '.js'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's test() and describe() return promises the runner itself awaits.
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/require-await': 'off',
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-self-import': 'error',
      // The folders' boundaries, as docs/architecture.md states them.
      'import-x/no-restricted-paths': [
        'error',
        {
          zones: [
            {
              target: './src/transform',
              from: ['./src/sink', './src/pipeline', './src/pipeline.ts', './src/cli', './src/commands', './src/embedded', './src/observability', './src/run.ts', './src/lambda.ts'],
              message: 'transform/ is pure: it validates, masks and seals, and knows no I/O (see docs/architecture.md)',
            },
            {
              target: './src/source',
              from: ['./src/sink', './src/transform', './src/pipeline', './src/pipeline.ts', './src/cli', './src/commands', './src/embedded', './src/run.ts'],
              message: 'source/ speaks SQS only (see docs/architecture.md)',
            },
            {
              target: './src/sink',
              from: ['./src/source', './src/pipeline', './src/pipeline.ts', './src/cli', './src/commands', './src/embedded', './src/run.ts'],
              message: 'sink/ speaks Postgres only (see docs/architecture.md)',
            },
            {
              target: ['./src/pipeline', './src/pipeline.ts', './src/observability', './src/embedded'],
              from: ['./src/cli', './src/commands'],
              message: 'the command line sits on top: nothing below it imports it (see docs/architecture.md)',
            },
            { target: './src', from: ['./test', './bench'], message: 'the product never imports its tests or its bench' },
          ],
        },
      ],
    },
  },
);
