// Loaded by tap (.taprc node-arg) into every test process: TypeScript through
// esbuild (see hooks.mjs) instead of ts-node's per-process TypeScript.
import { register } from 'node:module'

register('./hooks.mjs', import.meta.url)
