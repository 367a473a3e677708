// ESLint flat config: typescript-eslint with type information for every .ts file (src, test, bench),
// plain recommended rules for the few .mjs/.cjs scripts. Formatting is Prettier's job, not ESLint's.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/**
 * linkgate/disable-needs-reason: an `eslint-disable…` comment must say why, after ` -- `, e.g.
 *   // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the addon's N-API object is untyped
 * That is how "no `any` without a one-line reason beside it" is enforced.
 */
const local = {
  rules: {
    'disable-needs-reason': {
      meta: { type: 'problem', schema: [], messages: { reason: 'say why after " -- ": `eslint-disable… rule -- reason`' } },
      create(context) {
        return {
          Program() {
            for (const c of context.sourceCode.getAllComments()) {
              const text = c.value.trim();
              if (/^eslint-disable(-next-line|-line)?\b/.test(text) && !/\s--\s*\S/.test(text)) {
                context.report({ loc: c.loc, messageId: 'reason' });
              }
            }
          },
        };
      },
    },
  },
};

export default tseslint.config(
  {
    ignores: ['dist/**', 'node_modules/**', '**/node_modules/**', '.tap/**', 'coverage/**', 'native-bindings/build/**', 'bench/results/**'],
  },
  js.configs.recommended,
  {
    plugins: { linkgate: local },
    rules: { 'linkgate/disable-needs-reason': 'error' },
  },
  {
    files: ['**/*.ts'],
    extends: [...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        project: './tsconfig.check.json',
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Promises: none may be dropped or handed where a void callback is expected.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          // tap queues subtests itself (t.test/t.skip/t.todo/t.only); their promise needs no await.
          allowForKnownSafeCalls: [{ from: 'package', package: '@tapjs/test', name: ['test', 'skip', 'todo', 'only'] }],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      // `any`: never written without a reason (the disable comment carries it), never let flow.
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unsafe-argument': 'error',
      '@typescript-eslint/no-unsafe-assignment': 'error',
      '@typescript-eslint/no-unsafe-call': 'error',
      '@typescript-eslint/no-unsafe-member-access': 'error',
      '@typescript-eslint/no-unsafe-return': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      // An async function with no await is harmless (interface conformance, tap subtests); the
      // floating/misused-promise rules above catch the real hazards.
      '@typescript-eslint/require-await': 'off',
      // The validators match control characters on purpose: they reject them in hostile input.
      'no-control-regex': 'off',
    },
  },
  {
    files: ['**/*.mjs', '**/*.cjs', '**/*.js'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: { globals: globals.node },
  },
);
