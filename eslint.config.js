// Type-aware lint of the TypeScript sources; `tsc --noEmit` does the type check.
import tseslint from 'typescript-eslint'

/** `no-restricted-imports` patterns: what a folder may not import (STYLE.md, dependencies point inward). */
const forbid = (...groups) => ['error', { patterns: groups.map(([group, message]) => ({ group, message })) }]
const frameworks = [['fastify', 'fastify-*', '@fastify/*', '!@fastify/error', 'redis', '@redis/*', 'ws'], 'the domain knows no Fastify, Redis or ws']
const outward = (...folders) => [folders.flatMap((f) => [`**/${f}/*`, `**/${f}/**`]), `imports point inward: not ${folders.join(', ')}`]
const rootModules = [['**/app.js', '**/server.js'], 'only the composition root imports app.ts and server.ts']
/** `no-restricted-syntax`: private properties of ws and Node (one leading underscore) are read in one module only (STYLE.md, Layout). */
const internals = 'private properties of ws and Node are touched only in adapters/ws/transport.ts (and pinned by its test)'
const underscored = ['MemberExpression[property.name=/^_[^_]/]', 'MemberExpression[property.value=/^_[^_]/]', 'Property[key.name=/^_[^_]/]', 'TSPropertySignature[key.name=/^_[^_]/]']

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.tap/**', 'coverage/**', '.mutants/**', 'eslint.config.js', 'scripts/**', 'bench/**'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/ban-ts-comment': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // Ports return promises from every method, memory adapters too (STYLE.md).
      '@typescript-eslint/require-await': 'off'
    }
  },
  {
    // tap's t.test() returns a promise that tap itself awaits.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-floating-promises': 'off' }
  },
  // The direction of dependencies (STYLE.md, Layout).
  {
    files: ['lib/**/*.ts'],
    rules: {
      'no-restricted-imports': forbid(frameworks, outward('plugins', 'adapters', 'client'), rootModules),
      'max-len': ['error', { code: 120, ignoreUrls: true }]
    }
  },
  { files: ['ports/**/*.ts'], rules: { 'no-restricted-imports': forbid(frameworks, outward('plugins', 'adapters', 'client', 'hub'), rootModules) } },
  // Adapters meet only through a port: no adapter folder imports another.
  ...['memory', 'redis', 'failover', 'ws'].map((folder) => ({
    files: [`adapters/${folder}/**/*.ts`],
    rules: { 'no-restricted-imports': forbid(outward('plugins'), [['memory', 'redis', 'failover', 'ws'].filter((f) => f !== folder).map((f) => `../${f}/*`), 'adapters meet only through a port'], rootModules) }
  })),
  { files: ['plugins/**/*.ts'], rules: { 'no-restricted-imports': forbid(rootModules) } },
  { files: ['client/**/*.ts'], rules: { 'no-restricted-imports': forbid(frameworks, outward('plugins', 'adapters', 'ports'), rootModules) } },
  {
    files: ['**/*.ts'],
    ignores: ['adapters/ws/transport.ts', 'test/adapters/ws-transport.test.ts'],
    rules: { 'no-restricted-syntax': ['error', ...underscored.map((selector) => ({ selector, message: internals }))] }
  }
)
