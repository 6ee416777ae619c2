#!/usr/bin/env -S node --initial-old-space-size=128
// The V8 flags are src/v8-flags.ts's (a test checks they match): a shebang is the one place they can go.
// An installed package (this file's real path lies in a node_modules folder: npm install, npx, a global
// install) runs its built JavaScript, dist/, which `npm pack` builds. Anywhere else (a checkout, `npm link`
// to one, an unpacked source archive) runs the TypeScript sources through tsx: `npx wildstream` works right
// after `npm ci` with no build step and never runs a build left behind by an older source; tsx's loader
// costs about a second of CPU at each start.
import { existsSync } from 'node:fs';
import { sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const built = new URL('../dist/cli.js', import.meta.url);
const installed = fileURLToPath(import.meta.url)
  .split(sep)
  .includes('node_modules');
let main;
if (installed && existsSync(built)) ({ main } = await import(built.href));
else {
  (await import('tsx/esm/api')).register();
  ({ main } = await import('../src/cli.ts'));
}
process.exitCode = await main(process.argv);
