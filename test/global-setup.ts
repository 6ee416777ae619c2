/**
 * Vitest global setup: transpiles src/ once per test run into a private directory under node_modules/.cache,
 * and points the CLI the tests spawn (test/helpers/cli.ts) at it through WILDSTREAM_TEST_CLI.
 *
 * Why: through bin/wildstream.js every spawned CLI, and each of its pool threads, registers tsx and loads the
 * TypeScript through its off-thread hooks, about 1 s of CPU each on these 2 cores; the suite spawns the CLI a few
 * hundred times. Plain JavaScript beside its assets (the worker entries then load worker.js directly) is what
 * `npm run build` makes, without the declarations and type check: esbuild here, as tsx itself uses, in under a
 * second. bin/wildstream.js itself is run by test/bin.test.ts (which entry it picks) and test/package.test.ts
 * (the packed package's CLI).
 */
import { build } from 'esbuild';
import { cpSync, existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { processExists } from '../src/process-exists.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const src = join(root, 'src');

/** Removes the copies of runs that were killed before their teardown (their process is gone). */
function removeStale(parent: string): void {
  for (const name of existsSync(parent) ? readdirSync(parent) : []) {
    if (!processExists(Number(name))) rmSync(join(parent, name), { recursive: true, force: true });
  }
}

/**
 * Transpiles src/ into `out` (emptied first): JavaScript beside its assets, marked ESM as src/ is by the
 * project's package.json (which Node does not look past node_modules for), and the CLI entry. Returns its path.
 */
async function transpile(out: string): Promise<string> {
  rmSync(out, { recursive: true, force: true });
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
  writeFileSync(join(out, 'package.json'), '{ "type": "module" }\n');
  const cli = join(out, 'cli.mjs');
  // What bin/wildstream.js does after registering tsx (its V8 flags come from startCli's command line).
  writeFileSync(cli, "const { main } = await import('./src/cli.js');\nprocess.exitCode = await main(process.argv);\n");
  return cli;
}

export async function setup(project: TestProject): Promise<() => void> {
  // Per run, so two runs at once (or a run beside a bench) never share one; under node_modules so the copy
  // resolves the project's packages as src/ does.
  const parent = join(root, 'node_modules/.cache/wildstream-test');
  removeStale(parent);
  const out = join(parent, String(process.pid));
  process.env.WILDSTREAM_TEST_CLI = await transpile(out);
  // The worker threads of in-process tests load the copy too (src/worker-module.mjs), not TypeScript via tsx.
  process.env.WILDSTREAM_TEST_SRC = join(out, 'src');
  // Watch mode: a rerun after an edit spawns the edited code.
  project.onTestsRerun(async () => void (await transpile(out)));
  return () => rmSync(out, { recursive: true, force: true });
}
