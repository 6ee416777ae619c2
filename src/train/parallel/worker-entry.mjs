// Training threads start here and do not inherit the main thread's module loader: workerModule finds worker.js
// (built), the test suite's transpiled copy, or worker.ts through tsx.
import { workerModule } from '../../worker-module.mjs';

await import((await workerModule(import.meta.url, 'worker', 'train/parallel/worker')).href);
