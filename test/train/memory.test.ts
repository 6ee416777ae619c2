import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { pipelineNames } from '../../src/options/declare.js';
import { startBackend } from '../../src/train/backend.js';
import { checkTrainConfig, defaultTrainConfig, type TrainConfig } from '../../src/train/config.js';
import { openStore } from '../../src/shards/store.js';
import { exportBackbone } from '../../src/train/export.js';
import { loadBackbone } from '../../src/train/model-folder.js';
import {
  checkInference,
  estimateMemory,
  formatBytes,
  inferenceMemory,
  largestBatch,
  planMemory,
  WASM_HEAP_BYTES,
  WASM_HEAP_PER_TENSOR_BYTE,
} from '../../src/train/memory.js';
import { SwavModel } from '../../src/train/model.js';
import { ParamSet } from '../../src/train/params.js';
import { regnetFeatures } from '../../src/train/regnet.js';
import { regnetSpec } from '../../src/train/regnet-spec.js';
import { DEFAULT_SWAV } from '../../src/train/swav.js';
import { prng } from '../../src/rng.js';

beforeAll(async () => {
  await startBackend('cpu');
});

const GiB = 2 ** 30;
const tiny = (over: Partial<TrainConfig>) =>
  defaultTrainConfig({
    model: 'custom:4,8,8,2,4',
    batchSize: 2,
    crops: '2x32,2x16',
    swav: { ...DEFAULT_SWAV, hidden: 16, dim: 8, prototypes: 10, freezePrototypesSteps: 0 },
    ...over,
  });

/** Peak bytes tfjs held during one training step, beyond what was alive before it (weights, momentum, crops). */
async function measuredStep(config: TrainConfig): Promise<{ measured: number; model: SwavModel }> {
  const model = new SwavModel(config);
  const rand = prng(1);
  const sizes = [32, 32, 16, 16];
  const xs = sizes.map((s) =>
    tf.tensor4d(
      Float32Array.from({ length: config.batchSize * s * s * 3 }, () => rand() - 0.5),
      [config.batchSize, s, s, 3],
    ),
  );
  model.step(xs, 0); // creates the LARS momentum
  const before = tf.memory().numBytes;
  const { peakBytes } = await tf.profile(() => {
    model.step(xs, 1);
  });
  tf.dispose(xs);
  return { measured: peakBytes - before, model };
}

describe('memory estimate', () => {
  it("is within 25 % of tfjs' measured peak of a step, with and without recomputation, and recomputation lowers it", async () => {
    const peaks: Record<string, number> = {};
    for (const recompute of ['off', 'on'] as const) {
      const { measured, model } = await measuredStep(tiny({ recompute }));
      const e = model.memory.estimate;
      const estimate = e.peak[recompute] - e.params - e.optimiser - e.inputs;
      expect(measured / estimate, recompute).toBeGreaterThan(0.8);
      expect(measured / estimate, recompute).toBeLessThan(1.25);
      peaks[recompute] = measured;
      model.dispose();
    }
    expect(peaks.on! / peaks.off!).toBeLessThan(0.75);
  });

  it("counts the model's parameters from the same RegNet walk", () => {
    const config = tiny({});
    const model = new SwavModel(config);
    const e = estimateMemory(config);
    expect(e.optimiser).toBe(4 * model.ps.count());
    expect(e.params).toBe(4 * [...model.ps.vars.values()].reduce((n, v) => n + v.size, 0));
    model.dispose();
  });

  it('grows with the batch; activations dominate the default model at batch 16', () => {
    const at = (batchSize: number) => estimateMemory(defaultTrainConfig({ batchSize }));
    const [a, b] = [at(8), at(16)];
    expect(b.activations.off / a.activations.off).toBeCloseTo(2, 1);
    expect(b.peak.on).toBeLessThan(b.peak.off / 2);
    expect(b.activations.off).toBeGreaterThan(10 * b.params);
  });
});

describe('memory plan', () => {
  it('recomputes the default model and crops at batch 16 on wasm (auto), and not at batch 4', () => {
    const plan = planMemory(defaultTrainConfig({ batchSize: 16 }), 'wasm', 0);
    expect(plan.recompute).toBe(true);
    expect(plan.estimate.peak.on * WASM_HEAP_PER_TENSOR_BYTE).toBeLessThan(WASM_HEAP_BYTES);
    expect(plan.line).toMatch(
      /^memory: ~\d\.\d GiB peak of 4\.0 GiB wasm heap \(recompute: on, auto, ~\d+\.\d GiB without\)$/,
    );
    expect(planMemory(defaultTrainConfig({ batchSize: 4 }), 'wasm', 0).recompute).toBe(false);
    expect(planMemory(defaultTrainConfig({ batchSize: 16, recompute: 'on' }), 'cpu', 64 * GiB).line).toMatch(
      /\(recompute: on\)$/,
    );
    expect(planMemory(defaultTrainConfig({ batchSize: 16 }), 'webgpu', 0)).toMatchObject({
      budget: null,
      recompute: false,
    });
  });

  it('refuses, before any step, a batch that cannot fit, naming the largest that does', () => {
    const config = defaultTrainConfig({ batchSize: 256 });
    expect(() => planMemory(config, 'wasm', 0)).toThrow(ConfigError);
    expect(() => planMemory(config, 'wasm', 0)).toThrow(
      /batch 256 of model regnety_400mf .* needs ~\d+\.?\d* GiB, more than the 4\.0 GiB wasm heap even with activation recomputation; --batch \d+ fits$/,
    );
    const fits = largestBatch(config, WASM_HEAP_BYTES / WASM_HEAP_PER_TENSOR_BYTE, 'on');
    expect(() => planMemory(config, 'wasm', 0)).toThrow(`--batch ${fits} fits`);
    expect(() => planMemory(config, 'wasm', 0, pipelineNames('train'))).toThrow(
      new RegExp(`; train\\.batch=${fits} fits$`),
    );
    const off = { ...config, batchSize: 16, recompute: 'off' as const }; // fits only when recomputing
    expect(() => planMemory(off, 'wasm', 0)).toThrow(/; --recompute on would fit it$/);
    expect(() => planMemory(off, 'wasm', 0, pipelineNames('train'))).toThrow(/; train\.recompute=on would fit it$/);
    expect(planMemory({ ...config, batchSize: fits }, 'wasm', 0).recompute).toBe(true); // fits, recomputed
    expect(estimateMemory({ ...config, batchSize: fits + 1 }).peak.on * WASM_HEAP_PER_TENSOR_BYTE).toBeGreaterThan(
      WASM_HEAP_BYTES,
    );
    expect(planMemory(defaultTrainConfig({ batchSize: 16, recompute: 'off' }), 'cpu', 64 * GiB).recompute).toBe(false); // the machine's memory
    expect(() => planMemory(defaultTrainConfig({ batchSize: 16, recompute: 'off' }), 'wasm', 0)).toThrow(
      /--batch \d+ fits; --recompute on would fit it$/,
    );
  });

  it('a model for the WebGPU engine takes no tfjs plan: its tfjs side holds weights only, the device runs the batch', () => {
    // A batch no machine's memory holds in tfjs: its crops alone are ~79 GB, its activations many times that.
    const huge = defaultTrainConfig({ model: 'custom:2,8,8,2,8', batchSize: 65536, crops: '2x224@0.3-1' });
    expect(() => new SwavModel(huge)).toThrow(ConfigError);
    const model = new SwavModel(huge, { backend: 'webgpu' });
    try {
      expect(model.memory).toMatchObject({ budget: null, recompute: false });
    } finally {
      model.dispose();
    }
  });

  it('prints a tiny model in MiB, not as ~0.0 GiB', () => {
    const tiny = defaultTrainConfig({ model: 'custom:2,8,8,2,8', batchSize: 2, crops: '2x16@0.3-1' });
    const line = planMemory(tiny, 'cpu', 64 * GiB).line;
    expect(line).toMatch(/^memory: ~\d+\.\d MiB peak of 64 GiB cpu budget/);
    expect(line).not.toMatch(/~0\.0/);
    expect(formatBytes(0.1 * GiB - 1)).toBe('102.4 MiB');
    expect(formatBytes(0.1 * GiB)).toBe('0.1 GiB');
    expect(formatBytes(12 * GiB)).toBe('12 GiB');
  });

  it('takes auto, on or off and nothing else', () => {
    expect(() => checkTrainConfig({ ...defaultTrainConfig(), recompute: 'always' as never })).toThrow(
      /recompute must be one of auto, on, off, got "always"/,
    );
  });

  it("uses the wasm module's own heap limit (emscripten getHeapMax in tfjs-backend-wasm)", () => {
    const require = createRequire(import.meta.url);
    const glue = readFileSync(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.node.js'), 'utf8');
    const limits = new Set([...glue.matchAll(/function getHeapMax\(\) \{ return (\d+); \}/g)].map((m) => Number(m[1])));
    expect([...limits]).toEqual([WASM_HEAP_BYTES]);
  });
});

describe('inference memory (embed, eval knn)', () => {
  it("is at least tfjs' measured peak of an exported backbone's forward pass, and less than twice it", async () => {
    const model = 'custom:4,16,8,2,8'; // grouped convs, SE and shortcuts: every op the executor runs
    const ps = new ParamSet(3);
    tf.tidy(() => regnetFeatures(ps, regnetSpec(model), tf.zeros([1, 32, 32, 3]), true));
    const dir = await mkdtemp(join(tmpdir(), 'ws-infer-mem-'));
    try {
      const out = await openStore(dir);
      await exportBackbone(out, ps, regnetSpec(model), { model, step: 0, inputSize: 32 });
      const backbone = await loadBackbone(out);
      for (const [size, batch] of [
        [32, 8],
        [96, 2],
      ] as const) {
        const x = new Float32Array(batch * size * size * 3).fill(0.5);
        const before = tf.memory().numBytes;
        const { peakBytes } = await tf.profile(() => {
          tf.tidy(() => backbone.embed(tf.tensor4d(x, [batch, size, size, 3]))).dispose();
        });
        // Beyond the weights (batch 0), the estimate counts the input's JS array besides its tensor.
        const estimate = inferenceMemory(model, size, batch) - inferenceMemory(model, size, 0) - x.byteLength;
        const measured = peakBytes - before;
        expect(estimate, `${size} px, batch ${batch}`).toBeGreaterThanOrEqual(measured);
        expect(estimate, `${size} px, batch ${batch}`).toBeLessThan(2 * measured);
      }
      backbone.model.dispose();
    } finally {
      ps.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses, before any image is read, a batch that cannot fit, naming the largest that does', () => {
    const huge = { model: 'regnety_400mf', size: 4096, batch: 4096 };
    expect(() => checkInference(huge, 'wasm', 0)).toThrow(ConfigError);
    expect(() => checkInference(huge, 'wasm', 0)).toThrow(
      /^--batch 4096 at --size 4096 of model regnety_400mf needs ~\d+ GiB, more than the 4\.0 GiB wasm heap; no batch fits: use a smaller --size$/,
    );
    const big = { model: 'regnety_400mf', size: 224, batch: 4096 };
    expect(() => checkInference(big, 'wasm', 0, pipelineNames('embed'))).toThrow(
      /^embed\.batch=4096 at embed\.size=224 .* wasm heap; embed\.batch=\d+ fits$/,
    );
    const fits = Number(/batch (\d+) fits/.exec(catchMessage(() => checkInference(big, 'wasm', 0)))![1]);
    expect(inferenceMemory(big.model, 224, fits) * WASM_HEAP_PER_TENSOR_BYTE).toBeLessThanOrEqual(WASM_HEAP_BYTES);
    expect(inferenceMemory(big.model, 224, fits + 1) * WASM_HEAP_PER_TENSOR_BYTE).toBeGreaterThan(WASM_HEAP_BYTES);
    expect(() => checkInference({ ...big, batch: fits }, 'wasm', 0)).not.toThrow();
    expect(() => checkInference(big, 'cpu', 1024 * GiB)).not.toThrow(); // the machine's memory
    expect(() => checkInference(big, 'cpu', 8 * GiB)).toThrow(/more than the 8\.0 GiB cpu budget/);
  });
});

function catchMessage(f: () => void): string {
  try {
    f();
  } catch (err) {
    return (err as Error).message;
  }
  return '';
}

describe('memory estimate of the SwAV head', () => {
  it('counts the [batch, K] scores and Sinkhorn codes of many prototypes, and refuses them naming --prototypes', () => {
    const at = (prototypes: number, dim = 16) =>
      defaultTrainConfig({
        model: 'custom:4,16,8,2,16',
        batchSize: 4,
        crops: '2x32,4x16',
        swav: { ...DEFAULT_SWAV, dim, prototypes },
      });
    // Measured with tf.profile (cpu, custom:4,8,8,2,4, hidden 16, dim 16): 1122-1165 x 4K bytes beyond the
    // weights for one step of batch 4 with 6 crops at K = 20000-40000; the estimate must not fall below it.
    const head = (k: number) => {
      const e = estimateMemory({ ...at(k), model: 'custom:4,8,8,2,4', swav: { ...at(k).swav, hidden: 16 } });
      return (e.peak.off - e.params - e.optimiser - e.inputs) / (4 * k);
    };
    expect(head(20000)).toBeGreaterThan(1165);
    expect(head(20000)).toBeLessThan(1.25 * 1165);
    for (const dim of [16, 128]) {
      expect(() => planMemory(at(1_000_000, dim), 'wasm', 0)).toThrow(
        new RegExp(
          `^--prototypes 1000000 with --dim ${dim} at batch 4 needs ~.* GiB, more than the 4\\.0 GiB wasm heap: .*; --prototypes \\d+ fits$`,
        ),
      );
      expect(() => planMemory(at(1_000_000, dim), 'wasm', 0, pipelineNames('train'))).toThrow(
        /train\.prototypes=\d+ fits$/,
      );
    }
    expect(planMemory(at(200_000), 'wasm', 0).recompute).toBe(false); // fits
  });
});

describe('memory plan of a wide projection head', () => {
  it('names --hidden and --dim when not one image fits because of them, not the batch, crops or model', () => {
    const wide = defaultTrainConfig({
      model: 'custom:3,16,8,2,16',
      batchSize: 8,
      crops: '2x32,2x16',
      swav: { ...DEFAULT_SWAV, prototypes: 16, hidden: 65536, dim: 65536 },
    });
    expect(() => planMemory(wide, 'wasm', 0)).toThrow(
      /^--hidden 65536 with --dim 65536 needs ~\d+ GiB, more than the 4\.0 GiB wasm heap even at batch 1: .*; use SwAV's --hidden 2048 and --dim 128 or less$/,
    );
    expect(() => planMemory(wide, 'wasm', 0, pipelineNames('train'))).toThrow(/train\.hidden=2048 and train\.dim=128/);
  });
});
