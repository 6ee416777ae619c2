// train() consumes any BatchSource: batches made by hand, with no store of images, train, checkpoint at the
// source's cursor, resume where the cursor says, and stop promptly while the source stalls.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BatchSource, MultiCropBatch } from '../../src/augment/loader.js';
import type { StreamCursor } from '../../src/augment/stream.js';
import { ConfigError } from '../../src/errors.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { startBackend } from '../../src/train/backend.js';
import { listCheckpoints, loadCheckpoint } from '../../src/train/checkpoint.js';
import { defaultTrainConfig, type TrainConfig } from '../../src/train/config.js';
import { resolveResume } from '../../src/train/resume.js';
import { DEFAULT_SWAV } from '../../src/train/swav.js';
import { train } from '../../src/train/trainer.js';

let dir: string;

const config = (steps: number): TrainConfig =>
  defaultTrainConfig({
    model: 'custom:2,8,8,2,8',
    batchSize: 4,
    crops: '2x16@0.3-1',
    steps,
    swav: { ...DEFAULT_SWAV, prototypes: 8, hidden: 16, dim: 8, freezePrototypesSteps: 1, cropsForAssign: [0, 1] },
  });

const at = (position: number): StreamCursor => ({ epoch: 0, group: 0, offset: position, position, units: null });

/** Crops of batch `n`: a pure function of n, as a resumable stream's are of its position. */
function crops(n: number): MultiCropBatch['crops'] {
  let s = n * 7919 + 1;
  const next = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  return [0, 1].map(() => ({ size: 16, data: Float32Array.from({ length: 4 * 16 * 16 * 3 }, next) }));
}

/** A hand-made source from batch `from` on; `stallAfter` batches in, next() never settles. */
function handMade(
  from = 0,
  stallAfter = Infinity,
): BatchSource & { released: number; closed: boolean; stalled: Promise<void> } {
  let position = from;
  let onStall = () => {};
  const source = {
    released: 0,
    closed: false,
    stalled: new Promise<void>((resolve) => (onStall = resolve)),
    cursor: () => at(position),
    close: async () => void (source.closed = true),
    async *[Symbol.asyncIterator](): AsyncGenerator<MultiCropBatch> {
      for (let n = from; ; n++) {
        if (n - from === stallAfter) {
          onStall();
          await new Promise(() => {}); // a read that never answers
        }
        position = n + 1;
        yield {
          keys: ['a', 'b', 'c', 'd'].map((k) => `${n}-${k}`),
          crops: crops(n),
          epoch: 0,
          cursor: at(n + 1),
          release: () => void source.released++,
        };
      }
    },
  };
  return source;
}

async function weights(out: Store): Promise<Map<string, Float32Array>> {
  const [latest] = await listCheckpoints(out);
  return (await loadCheckpoint(out, latest!.key)).values;
}

function maxDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let max = 0;
  for (const [k, v] of a) v.forEach((x, i) => (max = Math.max(max, Math.abs(x - b.get(k)![i]!))));
  return max;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-source-'));
  await startBackend('wasm');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('train on a hand-made BatchSource', () => {
  it('trains, checkpoints at the source cursor, closes the source; resuming at the cursor equals a straight run', async () => {
    const straight = await openStore(join(dir, 'straight'));
    const source = handMade();
    const done = await train({
      batches: source,
      out: straight,
      config: config(4),
      backend: 'wasm',
      checkpointEvery: 2,
    });
    expect(done).toMatchObject({
      step: 4,
      startStep: 0,
      stopped: 'done',
      checkpoint: 'checkpoints/step-000000004.ckpt',
    });
    expect(Number.isFinite(done.loss)).toBe(true);
    expect([source.released, source.closed]).toEqual([4, true]);
    expect((await loadCheckpoint(straight, done.checkpoint!)).header.cursor).toEqual(at(4));

    const pieces = await openStore(join(dir, 'pieces'));
    const stop = new AbortController();
    const first = await train({
      batches: handMade(),
      out: pieces,
      config: config(4),
      backend: 'wasm',
      signal: stop.signal,
      onStep: (n) => n === 2 && stop.abort(),
    });
    expect(first).toMatchObject({ stopped: 'signal', step: 2 });
    const start = await resolveResume({ out: pieces, config: config(4), resume: true, log: () => {} });
    expect(start).toMatchObject({ step: 2, cursor: at(2), resumedFrom: 'checkpoints/step-000000002.ckpt' });
    const resumed = await train({ batches: handMade(2), start, out: pieces, config: config(4), backend: 'wasm' });
    expect(resumed).toMatchObject({ startStep: 2, step: 4 });
    expect(maxDiff(await weights(straight), await weights(pieces))).toBeLessThan(1e-5);
  }, 60_000);

  it('refuses a source that does not stand at the checkpoint cursor, before any step', async () => {
    const out = await openStore(join(dir, 'wrong'));
    await train({ batches: handMade(), out, config: config(2), backend: 'wasm' });
    const source = handMade(0);
    await expect(train({ batches: source, out, config: config(4), backend: 'wasm' })).rejects.toThrow(ConfigError);
    await expect(train({ batches: handMade(0), out, config: config(4), backend: 'wasm' })).rejects.toThrow(
      /the batches stand at .*"position":0.* resumes from checkpoints\/step-000000002\.ckpt at .*"position":2/,
    );
    expect(source.closed).toBe(true);
    expect((await listCheckpoints(out)).map((c) => c.step)).toEqual([2]);
  }, 60_000);

  it('a stop while the source stalls ends the run at once, with the steps done checkpointed', async () => {
    const out = await openStore(join(dir, 'stalled'));
    const source = handMade(0, 2);
    const stop = new AbortController();
    void source.stalled.then(() => setTimeout(() => stop.abort(), 50));
    const summary = await train({
      batches: source,
      out,
      config: config(10),
      backend: 'wasm',
      signal: stop.signal,
      checkpointEvery: 100,
    });
    expect(summary).toMatchObject({ stopped: 'signal', step: 2, checkpoint: 'checkpoints/step-000000002.ckpt' });
    expect(source.closed).toBe(true);
  }, 30_000);
});
