// Training threads start here and do not inherit the main thread's module loader. Built (dist/), the
// worker is plain JavaScript beside this file; from the sources, tsx is registered first to load the TypeScript.
import { existsSync } from 'node:fs';

let worker = new URL('./worker.js', import.meta.url);
if (!existsSync(worker)) {
  (await import('tsx/esm/api')).register();
  worker = new URL('./worker.ts', import.meta.url);
}
await import(worker.href);
