#!/usr/bin/env -S node --initial-old-space-size=128
// The V8 flags are src/v8-flags.ts's (a test checks they match): a shebang is the one place they can go.
// An installed package runs its built JavaScript (dist/, which `npm pack` builds). A checkout (it has .git) runs
// the TypeScript sources through tsx, so `npx wildstream` works right after `npm ci` with no build step and never
// runs a build older than the sources; tsx's loader costs about a second of CPU at each start.
import { existsSync } from 'node:fs';

const built = new URL('../dist/cli.js', import.meta.url);
const checkout = existsSync(new URL('../.git', import.meta.url));
let main;
if (!checkout && existsSync(built)) ({ main } = await import(built.href));
else {
  (await import('tsx/esm/api')).register();
  ({ main } = await import('../src/cli.ts'));
}
process.exitCode = await main(process.argv);
