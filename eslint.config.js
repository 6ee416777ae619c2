// ESLint flat config: eslint's and typescript-eslint's recommended rules, syntax-only (no type-aware rules, so a
// lint of the whole tree stays a few seconds on two cores). Formatting is prettier's job, not a lint rule.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  {
    ignores: [
      'dist/',
      'docs/api/',
      'coverage/',
      'node_modules/',
      'bench/out/',
      'bench/scratch/',
      'src/augment/wasm/',
      // The GPU machine's carried runtime and bundles (scripts/gpu/), git-ignored build outputs.
      '.gpurun/',
      '.gpucarry/',
    ],
  },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, globals: { ...globals.node } },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Control characters are the point where the code follows the URL standard (C0 controls), reads bytes or
      // checks terminal output (ESC sequences).
      'no-control-regex': 'off',
      // `_`-prefixed names are deliberately unused (loop counters, positional callback parameters).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true },
      ],
    },
  },
  {
    // Tests forge malformed values on purpose (`as any` on a header, a cursor, an option).
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
