// Type-aware lint (`npm run lint`, run by .ci/run after the type check). Deliberately few rules, all about
// promises: an unhandled rejection ends a Node process, so every promise is awaited, returned, or given a
// handler; `void p` is allowed only where p cannot reject, with a comment saying why. Formatting and style are
// not linted.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'src/native/**', '.bench-out/**'] },
  {
    files: ['src/**/*.ts', 'xds/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts', 'examples/**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    // Some files disable rules this config does not turn on (no-explicit-any): not worth a report.
    linterOptions: { reportUnusedDisableDirectives: 'off' },
    rules: {
      // A promise nobody awaits, returns or catches: its rejection is unhandled. `void p` counts too: where p
      // cannot reject, say so in an eslint-disable-next-line comment's reason.
      '@typescript-eslint/no-floating-promises': ['error', { ignoreVoid: false }],
      // A promise where a plain value or a void callback is expected (an async 'data'/'request' listener, `if (p)`):
      // the caller drops it, and with it any rejection.
      '@typescript-eslint/no-misused-promises': 'error',
      // `await` on something that is not a promise: usually a missing call or a wrong type.
      '@typescript-eslint/await-thenable': 'error',
    },
  },
);
