// Which module a worker thread entry loads (src/worker-module.mjs): the built one beside it, else the suite's
// transpiled copy of src/ when WILDSTREAM_TEST_SRC names one holding it, else the TypeScript through tsx.
// test/library/examples.test.ts runs the last case end to end (its pool threads, without the copy).
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { workerModule } from '../src/worker-module.mjs';

let dir: string;
const saved = process.env.WILDSTREAM_TEST_SRC;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-worker-module-'));
  for (const sub of ['built/augment', 'sources/augment', 'copy/augment'])
    await mkdir(join(dir, sub), { recursive: true });
  await writeFile(join(dir, 'built/augment/worker.js'), '');
  await writeFile(join(dir, 'copy/augment/worker.js'), '');
});
afterEach(() => {
  if (saved === undefined) delete process.env.WILDSTREAM_TEST_SRC;
  else process.env.WILDSTREAM_TEST_SRC = saved;
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const entry = (tree: string) => pathToFileURL(join(dir, tree, 'augment/worker-entry.mjs')).href;

describe('workerModule', () => {
  it('takes the built module beside the entry, whatever the environment says', async () => {
    process.env.WILDSTREAM_TEST_SRC = join(dir, 'copy');
    expect((await workerModule(entry('built'), 'worker', 'augment/worker')).href).toBe(
      pathToFileURL(join(dir, 'built/augment/worker.js')).href,
    );
  });

  it("takes the suite's transpiled copy from the sources when it holds the module, else the TypeScript", async () => {
    process.env.WILDSTREAM_TEST_SRC = join(dir, 'copy');
    expect((await workerModule(entry('sources'), 'worker', 'augment/worker')).href).toBe(
      pathToFileURL(join(dir, 'copy/augment/worker.js')).href,
    );
    for (const copy of ['', join(dir, 'nowhere')]) {
      process.env.WILDSTREAM_TEST_SRC = copy;
      expect((await workerModule(entry('sources'), 'worker', 'augment/worker')).href).toBe(
        pathToFileURL(join(dir, 'sources/augment/worker.ts')).href,
      );
    }
  });
});
