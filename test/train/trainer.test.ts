import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openStore, type Store } from '../../src/shards/store.js';
import { startBackend } from '../../src/train/backend.js';
import { listCheckpoints, loadCheckpoint } from '../../src/train/checkpoint.js';
import { defaultTrainConfig, type TrainConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { SwavModel } from '../../src/train/model.js';
import { DEFAULT_SWAV } from '../../src/train/swav.js';
import { trainOnStore } from '../../src/jobs/train.js';
import { TRAIN_RUN } from '../../src/shards/run-lock.js';
import { runCli, spawnCli, tinyTrainArgs } from '../helpers/cli.js';
import { writePhotoDataset } from '../helpers/dataset.js';

let dir: string;
let data: Store;
const TINY = tinyTrainArgs({ freezePrototypes: 2 }, '--log-every', '2');

function tinyConfig(over: Partial<TrainConfig> = {}): TrainConfig {
  return defaultTrainConfig({
    model: 'custom:3,16,8,2,16',
    batchSize: 8,
    crops: '2x32@0.3-1,2x16@0.1-0.3',
    steps: 6,
    swav: { ...DEFAULT_SWAV, prototypes: 16, hidden: 32, dim: 16, freezePrototypesSteps: 2 },
    ...over,
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-train-'));
  data = await openStore(join(dir, 'data'));
  await writePhotoDataset(data, { units: 3, perUnit: 16 });
  await startBackend('wasm');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Weights and momentum of a run's final checkpoint. */
async function finalState(out: string): Promise<Map<string, Float32Array>> {
  const store = await openStore(out);
  const [latest] = await listCheckpoints(store);
  const ckpt = await loadCheckpoint(store, latest!.key);
  return ckpt.values;
}

function maxDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let max = 0;
  for (const [k, v] of a) v.forEach((x, i) => (max = Math.max(max, Math.abs(x - b.get(k)![i]!))));
  return max;
}

/** Runs `train` and sends `signal` when its first checkpoint line appears. */
const trainUntilFirstCheckpoint = (args: string[], signal: NodeJS.Signals) =>
  spawnCli(['train', ...args], {
    stopWhen: ({ stdout }) => stdout.includes('checkpoint checkpoints/'),
    stopSignal: signal,
  });

describe('train: checkpoint and resume', () => {
  it('N steps straight equal N/2, SIGKILL, resume to N (and a SIGTERM stop checkpoints and resumes too)', async () => {
    const steps = ['--steps', '12', '--checkpoint-every', '3'];
    const straight = join(dir, 'straight');
    const full = await runCli(['train', '--data', join(dir, 'data'), '--out', straight, ...TINY, ...steps]);
    expect(full.code, full.stderr).toBe(0);
    expect(full.stdout).toMatch(/backend wasm/);
    expect(full.stdout).toMatch(
      /step 12\/12 +epoch \d+ +loss [\d.]+ +lr [\d.e-]+ +[\d.]+ img\/s +data-wait \d+% +wasm/,
    );

    for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
      const out = join(dir, `killed-${signal}`);
      const args = ['--data', join(dir, 'data'), '--out', out, ...TINY, ...steps];
      const first = await trainUntilFirstCheckpoint(args, signal);
      const left = await listCheckpoints(await openStore(out));
      expect(left.length, signal).toBeGreaterThan(0);
      expect(left[0]!.step, `${signal} stopped the run early`).toBeLessThan(12);
      if (signal === 'SIGTERM') expect(first.code).toBe(143); // checkpointed, then 128 + 15
      const resumed = await runCli(['train', ...args]);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(resumed.stdout).toMatch(new RegExp(`resuming at step ${left[0]!.step}`));
      // A killed run leaves its lease, taken over at once on this host; a stopped one released it.
      const takeover = /^took over the lock of .*\(its process is gone\)$/m;
      if (signal === 'SIGKILL') expect(resumed.stdout).toMatch(takeover);
      else expect(resumed.stdout).not.toMatch(takeover);
      expect(await (await openStore(out)).head(TRAIN_RUN.key), 'the lease outlived the run').toBeNull();
      expect(maxDiff(await finalState(straight), await finalState(out)), signal).toBeLessThan(1e-5);
    }
  }, 240_000);

  it('falls back past a damaged checkpoint, keeps the last K, and writes metrics once per step', async () => {
    const out = await openStore(join(dir, 'fallback'));
    await trainOnStore({
      data,
      out,
      config: tinyConfig({ steps: 6 }),
      backend: 'wasm',
      checkpointEvery: 2,
      keep: 2,
      logEvery: 1,
      threads: 1,
    });
    expect((await listCheckpoints(out)).map((c) => c.step)).toEqual([6, 4]);
    const file = join(dir, 'fallback', 'checkpoints', 'step-000000006.ckpt');
    const bytes = await readFile(file);
    bytes[bytes.length - 100] = bytes[bytes.length - 100]! ^ 0xff;
    await writeFile(file, bytes);
    const lines: string[] = [];
    const summary = await trainOnStore({
      data,
      out,
      config: tinyConfig({ steps: 8 }),
      backend: 'wasm',
      checkpointEvery: 2,
      keep: 2,
      logEvery: 1,
      threads: 1,
      log: (l) => lines.push(l),
    });
    expect(lines.join('\n')).toMatch(/step-000000006\.ckpt .*unusable: checksum mismatch/);
    expect(summary.resumedFrom).toBe('checkpoints/step-000000004.ckpt');
    // The checkpoint line says where the store is, so the file can be found from any working directory.
    expect(lines).toContain(`checkpoint checkpoints/step-000000008.ckpt in ${join(dir, 'fallback')}`);
    expect(summary.step).toBe(8);
    expect((await listCheckpoints(out)).map((c) => c.step)).toEqual([8, 6]);
    const metrics = await readMetrics(out);
    expect(metrics.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(
      metrics.every((m) => Number.isFinite(m.loss) && m.lr >= 0 && m.imagesPerSec > 0 && m.backend === 'wasm'),
    ).toBe(true);
    expect(metrics.some((m) => 'gpuWaitPct' in m)).toBe(false); // a GPU run's measure only
  }, 120_000);

  it('refuses to resume with an incompatible config, naming the field', async () => {
    const out = await openStore(join(dir, 'compat'));
    await trainOnStore({ data, out, config: tinyConfig({ steps: 2 }), backend: 'wasm', threads: 1 });
    await expect(
      trainOnStore({
        data,
        out,
        config: tinyConfig({ steps: 4, model: 'custom:3,16,8,2,8' }),
        backend: 'wasm',
        threads: 1,
      }),
    ).rejects.toThrow(
      /trained with --model "custom:3,16,8,2,16", this run asks for "custom:3,16,8,2,8"; use the same settings, --no-resume, or another --out/,
    );
    const r = await runCli([
      'train',
      '--data',
      join(dir, 'data'),
      '--out',
      join(dir, 'compat'),
      ...TINY,
      '--steps',
      '4',
      '--seed',
      '9',
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /trained with --seed 0, this run asks for 9; use the same settings, --no-resume, or another --out/,
    );
  }, 120_000);
});

describe('train: settings written another way, and a head too big for the heap', () => {
  it('resumes a model and crops that are the same written another way', async () => {
    const out = await openStore(join(dir, 'spelled'));
    await trainOnStore({ data, out, config: tinyConfig({ steps: 1 }), backend: 'wasm', threads: 1 });
    const lines: string[] = [];
    const summary = await trainOnStore({
      data,
      out,
      // the default SE ratio and the spaces written out
      config: tinyConfig({ steps: 2, model: 'custom:3,16,8,2,16,0.25', crops: '2x32@0.3-1, 2x16@0.1-0.3' }),
      backend: 'wasm',
      threads: 1,
      log: (l) => lines.push(l),
    });
    expect([summary.resumedFrom !== null, summary.startStep, summary.step]).toEqual([true, 1, 2]);
  }, 120_000);

  it('refuses many prototypes before any step, naming --prototypes, and leaves no run lock', async () => {
    const out = await openStore(join(dir, 'huge-head'));
    const swav = { ...DEFAULT_SWAV, prototypes: 1_000_000, hidden: 32, dim: 16, freezePrototypesSteps: 0 };
    const t0 = Date.now();
    await expect(
      trainOnStore({ data, out, config: tinyConfig({ steps: 1, swav }), backend: 'wasm', threads: 1 }),
    ).rejects.toThrow(/^--prototypes 1000000 with --dim 16 at batch 8 needs .*; --prototypes \d+ fits$/);
    expect(Date.now() - t0).toBeLessThan(20_000); // refused by the plan, not by the heap after building and stepping
    expect(await out.head(TRAIN_RUN.key)).toBeNull();
    expect(await listCheckpoints(out)).toEqual([]);
  }, 120_000);
});

describe('train: an exhausted wasm heap', () => {
  it('says what the memory plan expected and what lowers the peak, not a bare Aborted()', async () => {
    // The heap's abort is what emscripten throws (tfjs-backend-wasm 4.22: abort() in its module).
    const step = vi.spyOn(SwavModel.prototype, 'step').mockImplementation(() => {
      const abort = new Error('Aborted(). Build with -sASSERTIONS for more info.');
      throw Object.assign(abort, { name: 'RuntimeError' }); // a WebAssembly.RuntimeError, as the module throws it
    });
    try {
      const out = await openStore(join(dir, 'heap'));
      const run = trainOnStore({ data, out, config: tinyConfig({ steps: 2 }), backend: 'wasm', threads: 1 });
      await expect(run).rejects.toThrow(
        /^the wasm backend ran out of memory: its heap holds at most 4\.0 GiB and the step \(batch 8, crops 2x32@0\.3-1,2x16@0\.1-0\.3\) needed more than the ~[\d.]+ [KM]iB the memory plan expected; try --recompute on, or --batch 4, or smaller crops or model \(Aborted\(\)\)$/,
      );
      expect(await out.head(TRAIN_RUN.key)).toBeNull();
    } finally {
      step.mockRestore();
    }
  }, 120_000);
});

describe('train: resume on another dataset or augmentation', () => {
  it('refuses a resume on another --data, naming it, unless told --no-resume; states a changed augmentation', async () => {
    const out = await openStore(join(dir, 'other-data'));
    const other = await openStore(join(dir, 'data-other'));
    await writePhotoDataset(other, { units: 2, perUnit: 8 });
    await trainOnStore({ data, out, config: tinyConfig({ steps: 1 }), backend: 'wasm', threads: 1 });
    const [ckpt] = await listCheckpoints(out);
    expect((await loadCheckpoint(out, ckpt!.key)).header.dataset).toEqual({ url: data.url });
    await expect(
      trainOnStore({ data: other, out, config: tinyConfig({ steps: 2 }), backend: 'wasm', threads: 1 }),
    ).rejects.toThrow(
      new RegExp(
        `^checkpoint checkpoints/step-0+1\\.ckpt was trained on --data ${data.url}, this run asks for ${other.url};.*--no-resume to start over, or another --out$`,
      ),
    );
    expect((await listCheckpoints(out)).map((c) => c.step)).toEqual([1]); // refused: nothing changed
    const lines: string[] = [];
    const summary = await trainOnStore({
      data,
      out,
      config: tinyConfig({ steps: 2, jitterStrength: 0.5, blurP: 0 }),
      backend: 'wasm',
      threads: 1,
      log: (l) => lines.push(l),
    });
    expect(summary.startStep).toBe(1);
    expect(lines).toContain(
      'resuming at step 1 with --jitter-strength 0.5 (was 1), --blur 0 (was 0.5): the crops from step 1 on are drawn with the new augmentation',
    );
    const fresh = await trainOnStore({
      data: other,
      out,
      config: tinyConfig({ steps: 1 }),
      backend: 'wasm',
      threads: 1,
      resume: false,
    });
    expect([fresh.startStep, fresh.step]).toEqual([0, 1]);
  }, 120_000);
});

describe('train: one step', () => {
  it('keeps the tensor count flat across steps, with the queue in use', () => {
    const model = new SwavModel(tinyConfig({ queue: { length: 16, startStep: 1 } }));
    const crops = [32, 32, 16, 16].map((s) => tf.randomNormal([8, s, s, 3]) as tf.Tensor4D);
    const losses = [0, 1, 2].map((s) => model.step(crops, s).loss);
    expect(model.queueFilled).toBe(16);
    const before = tf.memory().numTensors;
    for (let s = 3; s < 6; s++) losses.push(model.step(crops, s).loss);
    expect(tf.memory().numTensors).toBe(before);
    expect(losses.every(Number.isFinite)).toBe(true);
    model.dispose();
    tf.dispose(crops);
  });
});
