// The documented examples, run as the README tells a user to run them (`npx tsx examples/...`), on a small
// fixture dataset: they finish, print what the README says, and refuse arguments they cannot honour.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/shards/store.js';
import { writePhotoDataset } from '../helpers/dataset.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSX = join(ROOT, 'node_modules/.bin/tsx');
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-examples-'));
  await writePhotoDataset(await openStore(join(dir, 'ds')), { units: 2, perUnit: 8 });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Runs an example under tsx from the repository root; killed (code null) after `timeoutMs`. */
function example(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // As a user runs it: without the suite's transpiled copy, so its pool threads load worker.ts through tsx.
    const env = { ...process.env, WILDSTREAM_TEST_SRC: '' };
    execFile(TSX, args, { cwd: ROOT, env, timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });
}

describe('examples/stream-multicrop.ts', () => {
  it('stops, resumes from the cursor and gets the batch an uninterrupted loader gives', async () => {
    const { code, stdout } = await example(['examples/stream-multicrop.ts', join(dir, 'ds'), '2']);
    expect(code).toBe(0);
    const line = JSON.parse(stdout) as { stoppedAfter: number; same: boolean; shapes: number[][] };
    expect(line).toMatchObject({ stoppedAfter: 2, same: true });
    expect(line.shapes[0]).toEqual([4, 64, 64, 3]);
  }, 90_000);

  it.each(['0', 'abc'])(
    'refuses a batch count of %s rather than streaming forever',
    async (count) => {
      // The stream has no end: `++taken === 0` never held, and the example ran until killed.
      const { code, stderr } = await example(['examples/stream-multicrop.ts', join(dir, 'ds'), count], 30_000);
      expect(code).toBe(2);
      expect(stderr).toContain(`[batches >= 1, default 2]; got ${count}`);
    },
    40_000,
  );
});
