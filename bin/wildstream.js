#!/usr/bin/env -S node --initial-old-space-size=128
// The V8 flags are src/v8-flags.ts's (a test checks they match): a shebang is the one place they can go.
// Runs the TypeScript sources through tsx, so `npx wildstream` works right after `npm ci` with no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli.ts');
process.exitCode = await main(process.argv);
