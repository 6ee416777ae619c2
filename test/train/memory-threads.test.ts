// The memory plan of data-parallel training is one thread's: the activations and inputs of its share of the
// batch, on its own wasm heap (cpu threads share the machine's memory).
import { describe, expect, it } from 'vitest';
import { defaultTrainConfig } from '../../src/train/config.js';
import { estimateMemory, planMemory, WASM_HEAP_BYTES } from '../../src/train/memory.js';

const config = defaultTrainConfig({ model: 'regnetx_200mf', batchSize: 16, crops: '2x96@0.3-1,4x64@0.1-0.3' });

describe('memory per training thread', () => {
  it('charges each thread the activations and inputs of ceil(batch / threads) images, and the same weights', () => {
    const one = estimateMemory(config);
    const two = estimateMemory({ ...config, threads: 2 });
    const half = estimateMemory({ ...config, batchSize: 8 });
    expect(two.params).toBe(one.params);
    expect(two.inputs).toBe(half.inputs);
    expect(two.activations.off).toBeLessThan(0.55 * one.activations.off);
    expect(estimateMemory({ ...config, threads: 3 }).inputs).toBe(estimateMemory({ ...config, batchSize: 6 }).inputs);
  });

  it('fits a batch split over threads that does not fit whole, and says the figure is per thread', () => {
    const big = {
      ...config,
      model: 'regnety_400mf',
      crops: '2x224@0.14-1,6x96@0.05-0.14',
      batchSize: 16,
      recompute: 'off' as const,
    };
    expect(() => planMemory(big, 'wasm', 8 * 2 ** 30)).toThrow(/needs ~.* GiB, more than the 4\.0 GiB wasm heap/);
    expect(() => planMemory({ ...big, batchSize: 64, threads: 4 }, 'wasm', 8 * 2 ** 30)).toThrow(
      /batch 64 split over 4 training threads .* needs ~.* GiB per thread/,
    );
    const plan = planMemory({ ...big, threads: 4 }, 'wasm', 8 * 2 ** 30);
    expect(plan.budget).toBe(WASM_HEAP_BYTES); // each thread has a heap of its own
    expect(plan.line).toMatch(/per training thread \(4 threads\)/);
    expect(planMemory({ ...config, threads: 2 }, 'cpu', 8 * 2 ** 30).budget).toBe(4 * 2 ** 30); // cpu threads share
  });
});
