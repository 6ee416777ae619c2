/**
 * Picks and starts a TensorFlow.js backend. All model code uses `@tensorflow/tfjs-core` only; backends load
 * dynamically so the optional native ones never have to install:
 *   tensorflow  @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node (libtensorflow; install them yourself)
 *   webgpu      @tensorflow/tfjs-backend-webgpu + the `webgpu` package (Dawn), with a hardware adapter
 *   wasm        @tensorflow/tfjs-backend-wasm (SIMD, one thread in Node), always installed
 *   cpu         @tensorflow/tfjs-backend-cpu (plain JS; tests and tiny models only)
 * `auto` takes the first that starts, in that order.
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
// The union package's Node bundle carries every gradient; tfjs-core's own register_all_gradients is ESM
// with extensionless imports that Node cannot load.
import '@tensorflow/tfjs';
import { ConfigError } from '../errors.js';

export const BACKENDS = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

export interface BackendInfo {
  name: Exclude<BackendName, 'auto'>;
  device: string;
  /**
   * webgpu: the largest buffer the device makes and binds whole (the lesser of maxBufferSize and
   * maxStorageBufferBindingSize), so a model whose weights cannot fit is refused before it is built.
   */
  bindingLimit?: number;
}

/** The binding limit of the device the webgpu loader opened last. */
let webgpuBindingLimit: number | undefined;

const require = createRequire(import.meta.url);

/**
 * Each loader resolves to a device description, or throws why the backend is unavailable; `auto` says the
 * backend was not named (a software WebGPU adapter is then passed over).
 */
const LOADERS: Record<Exclude<BackendName, 'auto'>, (auto: boolean) => Promise<string>> = {
  tensorflow: async () => {
    for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
      try {
        await import(pkg);
        await setBackend('tensorflow');
        return pkg.endsWith('gpu') ? 'libtensorflow (CUDA)' : 'libtensorflow (CPU)';
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
      }
    }
    throw new Error(
      'neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed (npm i @tensorflow/tfjs-node-gpu@4.22.0)',
    );
  },
  webgpu: async (auto) => {
    // The WebGPU engine (webgpu/stepper.ts) trains on the device; tfjs keeps the model (checkpoints, export,
    // evaluation) on its cpu backend. A software adapter (lavapipe) trains correctly but slowly: named only.
    const { describeDevice, openDevice } = await import('./webgpu/device.js');
    const ctx = await openDevice();
    const line = describeDevice(ctx.info);
    const fallback = ctx.info.isFallback;
    webgpuBindingLimit = Math.min(ctx.info.limits.maxBufferSize, ctx.info.limits.maxStorageBufferBindingSize);
    ctx.destroy();
    if (fallback && auto) throw new Error(`the only WebGPU adapter is a software one (${line})`);
    await LOADERS.cpu(false);
    return line;
  },
  wasm: async () => {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    // Node has no fetch for file paths inside node_modules: point the backend at the shipped binaries.
    wasm.setWasmPaths(`${dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm'))}/`);
    await setBackend('wasm');
    const { registerWasmGradients } = await import('./wasm-grads.js');
    registerWasmGradients();
    return 'wasm SIMD, 1 thread';
  },
  cpu: async () => {
    await import('@tensorflow/tfjs-backend-cpu');
    await setBackend('cpu');
    return 'JavaScript';
  },
};

async function setBackend(name: string): Promise<void> {
  tf.env().set('PROD', true); // no debug checks, no "install tfjs-node" banner
  if (!(await tf.setBackend(name))) throw new Error(`tfjs could not start the ${name} backend`);
  await tf.ready();
}

/** Starts the named backend (or the best available for `auto`); a named one that cannot start is an error. */
export async function startBackend(name: BackendName = 'auto'): Promise<BackendInfo> {
  checkName(name);
  return startFirst(name, name === 'auto' ? ['tensorflow', 'webgpu', 'wasm', 'cpu'] : [name]);
}

/**
 * The backend a forward pass outside training runs on (embed, eval knn, the report's k-NN): as `startBackend`,
 * except that `webgpu` names the WebGPU training engine, which has no inference path, so the forward runs on
 * wasm (SIMD), several times faster than the plain-JS cpu backend that holds a webgpu run's weights; `auto`
 * passes over webgpu for the same reason. A pipeline's embed stage inherits train.backend, so webgpu is no error.
 */
export async function startInferenceBackend(name: BackendName = 'auto'): Promise<BackendInfo> {
  checkName(name);
  if (name === 'webgpu') {
    const wasm = await startFirst('wasm', ['wasm']);
    return { ...wasm, device: `${wasm.device} (the WebGPU engine trains only; forward passes run on tfjs)` };
  }
  return startFirst(name, name === 'auto' ? ['tensorflow', 'wasm', 'cpu'] : [name]);
}

function checkName(name: BackendName): void {
  if (!BACKENDS.includes(name)) throw new ConfigError(`backend must be one of ${BACKENDS.join(', ')}, got "${name}"`);
}

async function startFirst(name: BackendName, order: ReadonlyArray<Exclude<BackendName, 'auto'>>): Promise<BackendInfo> {
  const reasons: string[] = [];
  for (const candidate of order) {
    try {
      const device = await LOADERS[candidate](name === 'auto');
      const limit = candidate === 'webgpu' ? webgpuBindingLimit : undefined;
      return { name: candidate, device, ...(limit !== undefined && { bindingLimit: limit }) };
    } catch (err) {
      reasons.push(`${candidate}: ${(err as Error).message}`);
    }
  }
  throw new ConfigError(`backend ${name} is not available here (${reasons.join('; ')})`);
}
