/**
 * What the train() tests on the webgpu backend share (train-webgpu.test.ts, resume.test.ts): the tiny model's
 * config, a seeded batch source that can stop early (a run in pieces), one run resumed from `out`, and the
 * newest checkpoint compared bit for bit. The shapes are the same in both files, so lavapipe compiles their
 * pipelines once per shader cache.
 */
import { expect } from 'vitest';
import type { CropDtype, CropTensor } from '../../../src/crop-tensor.js';
import { IMAGENET_MEAN, IMAGENET_STD } from '../../../src/crops.js';
import type { BatchSource, MultiCropBatch } from '../../../src/augment/loader.js';
import type { StreamCursor } from '../../../src/augment/stream.js';
import type { Store } from '../../../src/shards/store.js';
import { listCheckpoints, loadCheckpoint, type Checkpoint } from '../../../src/train/checkpoint.js';
import { defaultTrainConfig, type TrainConfig } from '../../../src/train/config.js';
import { resolveResume } from '../../../src/train/resume.js';
import { DEFAULT_SWAV } from '../../../src/train/swav.js';
import { train } from '../../../src/train/trainer.js';
import type { GradientProgramFactory } from '../../../src/train/webgpu/stepper.js';
import { randomValues } from './gpu.js';

/** RegNet custom:2,8,8,2,8, batch 4 of two 16 px crops, 8 prototypes, LARS with momentum. */
export const tinyConfig = (
  steps: number,
  o: { freezePrototypesSteps: number; schedule?: TrainConfig['schedule'] },
): TrainConfig =>
  defaultTrainConfig({
    model: 'custom:2,8,8,2,8',
    batchSize: 4,
    crops: '2x16@0.3-1',
    steps,
    swav: {
      ...DEFAULT_SWAV,
      prototypes: 8,
      hidden: 16,
      dim: 8,
      freezePrototypesSteps: o.freezePrototypesSteps,
      cropsForAssign: [0, 1],
    },
    lars: { momentum: 0.9, weightDecay: 0.05, trust: 0.1, excludeBnBias: true },
    ...(o.schedule && { schedule: o.schedule }),
  });

const at = (position: number): StreamCursor => ({ epoch: 0, group: 0, offset: position, position, units: null });

/**
 * Batches `from` .. `until` - 1 of a seeded sequence: batch n is the same whichever run reads it. As bytes
 * (`uint8`), ByteCrops of ImageNet's normalisation, as the loader makes for a run on webgpu.
 */
export function handMade(
  from: number,
  until = Infinity,
  dtype: CropDtype = 'float32',
  /** The batch before `until` holds 2 images, not 4: a finite source's last. */
  partialLast = false,
): BatchSource {
  let position = from;
  return {
    cropDtype: dtype, // as the loader says what it yields
    cursor: () => at(position),
    close: async () => {},
    async *[Symbol.asyncIterator](): AsyncGenerator<MultiCropBatch> {
      for (let n = from; n < until; n++) {
        position = n + 1;
        const images = partialLast && n === until - 1 ? 2 : 4;
        const crops = [0, 1].map((c): CropTensor => {
          const values = randomValues(images * 16 * 16 * 3, n * 2 + c);
          if (dtype === 'float32') return { size: 16, data: values };
          const data = Uint8Array.from(values, (v) => Math.floor((v + 1) * 128));
          return { size: 16, dtype, data, mean: IMAGENET_MEAN, std: IMAGENET_STD };
        });
        const keys = ['a', 'b', 'c', 'd'].slice(0, images).map((k) => `${n}-${k}`);
        yield { keys, crops, epoch: 0, cursor: at(n + 1), release() {} };
      }
    },
  };
}

export interface RunOptions {
  backend: 'webgpu' | 'wasm';
  /** The batches end before this one (the run stops there, checkpointed). @default Infinity */
  until?: number;
  logEvery: number;
  /** null: the default, the SwAV gradient program. */
  program: GradientProgramFactory | null;
  /** Receives the run's lines. */
  log?: string[];
  /** The WebGPU engine's precision. @default train's (a resume keeps its checkpoint's; else mixed where offered) */
  precision?: 'f32' | 'mixed';
  /** Stops the run (train's `signal`). */
  signal?: AbortSignal;
  /** The batches' crops: floats, or bytes the backend normalises. @default 'float32' */
  cropDtype?: CropDtype;
  /** The last batch (before `until`) holds half the images. */
  partialLast?: boolean;
}

/** train() on `out` (resuming from its newest checkpoint) with `config`, checkpointing every 3 steps. */
export async function runOn(out: Store, config: TrainConfig, o: RunOptions) {
  const start = await resolveResume({ out, config, resume: true, log: () => {} });
  return train({
    batches: handMade(start.step, o.until, o.cropDtype, o.partialLast),
    start,
    out,
    config,
    backend: o.backend,
    logEvery: o.logEvery,
    checkpointEvery: 3,
    ...(o.program && { gradientProgram: o.program }),
    ...(o.precision && { precision: o.precision }),
    ...(o.signal && { signal: o.signal }),
    log: (l) => o.log?.push(l),
  });
}

export async function latest(out: Store): Promise<Checkpoint> {
  const [newest] = await listCheckpoints(out);
  return loadCheckpoint(out, newest!.key);
}

/** The same tensors, equal bit for bit. */
export function sameWeights(a: Checkpoint, b: Checkpoint): void {
  expect([...a.values.keys()].sort()).toEqual([...b.values.keys()].sort());
  for (const [k, v] of a.values)
    expect(Buffer.from(v.buffer).equals(Buffer.from(b.values.get(k)!.buffer)), k).toBe(true);
}
