/**
 * Vitest global setup: transpiles src/ once per test run into a private directory under node_modules/.cache,
 * and points the CLI the tests spawn (test/helpers/cli.ts) at it through WILDSTREAM_TEST_CLI.
 *
 * Why: through bin/wildstream.js every spawned CLI, and each of its pool threads, registers tsx and loads the
 * TypeScript through its off-thread hooks, about 1 s of CPU each on these 2 cores; the suite spawns the CLI a few
 * hundred times. Plain JavaScript beside its assets (the worker entries then load worker.js directly) is what
 * `npm run build` makes, without the declarations and type check: esbuild here, as tsx itself uses, in under a
 * second. bin/wildstream.js itself stays tested by test/package.test.ts and test/pipeline/v8-flags.test.ts.
 */
import { build } from 'esbuild';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { processExists } from '../src/process-exists.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const src = join(root, 'src');

/** Removes the copies of runs that were killed before their teardown (their process is gone). */
function removeStale(parent: string): void {
  for (const name of existsSync(parent) ? readdirSync(parent) : []) {
    if (!processExists(Number(name))) rmSync(join(parent, name), { recursive: true, force: true });
  }
}

export async function setup(): Promise<() => void> {
  // Per run, so two runs at once (or a run beside a bench) never share one; under node_modules so the copy
  // resolves the project's packages as src/ does.
  const parent = join(root, 'node_modules/.cache/wildstream-test');
  removeStale(parent);
  const out = join(parent, String(process.pid));
  const files = readdirSync(src, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  const path = (e: (typeof files)[number]) => join(e.parentPath, e.name);
  await build({
    // src/augment/wasm/ holds AssemblyScript, compiled by `npm run build:wasm` into the crop.wasm copied below.
    entryPoints: files
      .filter((e) => e.name.endsWith('.ts') && !path(e).startsWith(join(src, 'augment/wasm')))
      .map(path),
    outdir: join(out, 'src'),
    outbase: src,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    tsconfig: join(root, 'tsconfig.json'),
    logLevel: 'error',
  });
  for (const e of files.filter((e) => !e.name.endsWith('.ts')))
    cpSync(path(e), join(out, 'src', relative(src, path(e))));
  const cli = join(out, 'cli.mjs');
  mkdirSync(out, { recursive: true });
  // What bin/wildstream.js does after registering tsx (its V8 flags come from startCli's command line).
  writeFileSync(cli, "const { main } = await import('./src/cli.js');\nprocess.exitCode = await main(process.argv);\n");
  process.env.WILDSTREAM_TEST_CLI = cli;
  return () => rmSync(out, { recursive: true, force: true });
}
