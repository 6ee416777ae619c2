/**
 * GPU memory of the WebGPU engine with and without activation recomputation, measured as the bytes of the
 * buffers it allocates (what the stepper's memory line reports; WebGPU reports no peak of its own). Builds
 * only: nothing is compiled or run, so lavapipe measures it in seconds.
 *   npx tsx bench/webgpu-recompute-memory.ts [model] [size] [batch]
 * Prints, per precision and recompute setting: one backbone for `batch` images of `size` px, and the whole
 * SwAV gradient program for crops `2x224,6x96` at `batch` images, each per image.
 */
import { defaultTrainConfig } from '../src/train/config.js';
import { SwavModel } from '../src/train/model.js';
import { regnetSpec } from '../src/train/regnet-spec.js';
import { openDevice } from '../src/train/webgpu/device.js';
import { allocateBackboneWeights, buildBackbone } from '../src/train/webgpu/engine/backbone.js';
import { LOSS_SCALE } from '../src/train/webgpu/kernels/loss-scale.js';
import type { Precision } from '../src/train/webgpu/precision.js';
import { GpuRunner } from '../src/train/webgpu/runner.js';
import { allocateState, releaseState } from '../src/train/webgpu/state.js';
import { swavGradientProgram } from '../src/train/webgpu/swav-program.js';
import { startBackend } from '../src/train/backend.js';

const [model = 'regnety_400mf', sizeArg = '224', batchArg = '2'] = process.argv.slice(2);
const size = Number(sizeArg);
const batch = Number(batchArg);
const mib = (n: number) => (n / 2 ** 20).toFixed(1);

await startBackend('cpu');
const ctx = await openDevice();
const runner = new GpuRunner(ctx);
const spec = regnetSpec(model);
const crops = '2x224,6x96';
const config0 = defaultTrainConfig({ model, batchSize: batch, crops });
const swavModel = new SwavModel({ ...config0, queue: { length: 0, startStep: 0 } });
console.log(`${model}, backbone ${batch} x ${size}px; program ${crops} x ${batch} images (MiB per image)`);
for (const precision of ['f32', 'mixed'] as Precision[]) {
  for (const recompute of [false, true]) {
    const w = allocateBackboneWeights(runner, spec, precision);
    const b = buildBackbone(runner, spec, { batch, size, precision, recompute }, w);
    const backbone = b.bytes / batch;
    b.release();
    runner.release(w.weights, w.grads, w.running, ...(w.weights16 ? [w.weights16] : []));

    const config = { ...swavModel.config, recompute: recompute ? ('on' as const) : ('off' as const) };
    const state = allocateState(runner, swavModel, precision === 'mixed');
    const layout = { params: state.params, stats: state.stats };
    const program = swavGradientProgram(runner, {
      config,
      rows: batch,
      cropSizes: [224, 224, 96, 96, 96, 96, 96, 96],
      precision,
      layout,
    });
    const lossScale = runner.tensor([LOSS_SCALE.SIZE]);
    const loss = runner.tensor([1]);
    const io = { weights: state.w, grads: state.g, running: state.running, crops: [], lossScale, loss };
    program.dispatches(state.w16 ? { ...io, weights16: state.w16 } : io);
    const whole = program.bytes / batch;
    program.release();
    runner.release(lossScale, loss);
    releaseState(runner, state);
    console.log(
      `${precision.padEnd(5)} recompute ${recompute ? 'on ' : 'off'}: backbone ${mib(backbone)}, program ${mib(whole)}`,
    );
  }
}
swavModel.dispose();
ctx.destroy();
