// Where a worker thread's module is, for the thread entries (augment/worker-entry.mjs, train/parallel/
// worker-entry.mjs): threads do not inherit the main thread's module loader. Built (dist/), the module is plain
// JavaScript beside its entry. From the sources, the test suite's transpiled copy of src/ when it names one
// (WILDSTREAM_TEST_SRC, set by test/global-setup.ts: registering tsx in each thread costs ~0.5-1 s of CPU, and
// the suite starts hundreds of threads); else tsx is registered to load the TypeScript.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * The URL to import for the module `name` (without extension) beside `entry` (the entry's import.meta.url);
 * `fromSrc`: its path under src/ without extension, as the transpiled copy holds it.
 */
export async function workerModule(entry, name, fromSrc) {
  const built = new URL(`./${name}.js`, entry);
  if (existsSync(fileURLToPath(built))) return built;
  const copy = process.env.WILDSTREAM_TEST_SRC;
  if (copy && existsSync(join(copy, `${fromSrc}.js`))) return pathToFileURL(join(copy, `${fromSrc}.js`));
  (await import('tsx/esm/api')).register();
  return new URL(`./${name}.ts`, entry);
}
