// Forward passes outside training (embed, eval knn, the report's k-NN) run on tfjs: `webgpu` names the WebGPU
// training engine, so for them it means wasm, not the plain-JS cpu backend that holds a webgpu run's weights.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { startInferenceBackend, type BackendName } from '../../src/train/backend.js';

describe('startInferenceBackend', () => {
  it('runs a webgpu-named forward pass on wasm, and says why', async () => {
    const info = await startInferenceBackend('webgpu');
    expect(info.name).toBe('wasm');
    expect(info.device).toMatch(/^wasm SIMD, 1 thread \(the WebGPU engine trains only; forward passes run on tfjs\)$/);
    expect(tf.getBackend()).toBe('wasm');
  });

  it('takes the named tfjs backend as it is, and refuses an unknown name', async () => {
    expect(await startInferenceBackend('cpu')).toEqual({ name: 'cpu', device: 'JavaScript' });
    expect(tf.getBackend()).toBe('cpu');
    await expect(startInferenceBackend('gpu' as BackendName)).rejects.toThrow(ConfigError);
  });
});
