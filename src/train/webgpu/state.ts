/**
 * A SwavModel's training state in flat GPU buffers, and back. The model (tfjs) stays the owner of the state
 * between GPU runs: checkpoints, export and evaluation read it, so a run started on the GPU resumes on wasm
 * and the other way round. On the GPU:
 *   w, v, g   trainable parameters, their LARS momentum and gradients (f32), laid out by `params`
 *   w16       the f16 copy of w that mixed-precision kernels read (written with the masters by the LARS update)
 *   stats     BatchNorm running statistics (the non-trainable variables, f32), laid out by `stats`
 * Both layouts come from the model's ParamSet (names, shapes, its order), each parameter (each BatchNorm's pair
 * of statistics) at a bindable offset.
 * f32 values travel unconverted, so upload then download gives the same bits.
 */
import type { SwavModel } from '../model.js';
import { importState, type ModelState } from '../parallel/state.js';
import { pairedStatsLayout } from './engine/backbone.js';
import { paramLayout, type ParamLayout } from './kernels/lars.js';
import type { GpuRunner, GpuTensor } from './runner.js';

export interface GpuModelState {
  /** Trainable parameters, in the ParamSet's order. */
  params: ParamLayout;
  /** BatchNorm running statistics (`<layer>.mean`, `<layer>.var`), in the ParamSet's order. */
  stats: ParamLayout;
  w: GpuTensor;
  v: GpuTensor;
  g: GpuTensor;
  w16?: GpuTensor;
  /** The running statistics, laid out by `stats`. */
  running: GpuTensor;
}

const shapeOf = ([name, v]: [string, { shape: readonly number[] }]) => ({ name, shape: v.shape });

/** Allocates the buffers for `model`'s variables (contents undefined until `uploadState`). */
export function allocateState(runner: GpuRunner, model: SwavModel, halfCopy: boolean): GpuModelState {
  const vars = [...model.ps.vars];
  const params = paramLayout(vars.filter(([, v]) => v.trainable).map(shapeOf));
  // Each BatchNorm's `.var` right after its `.mean`: the engine binds both as one [2, C] view.
  const stats = pairedStatsLayout(vars.filter(([, v]) => !v.trainable).map(shapeOf));
  return {
    params,
    stats,
    w: runner.tensor([params.total]),
    v: runner.tensor([params.total]),
    g: runner.tensor([params.total]),
    running: runner.tensor([stats.total]),
    ...(halfCopy ? { w16: runner.tensor([params.total], 'f16') } : {}),
  };
}

/** Copies weights, momentum (zeros where the model has no slot yet) and running statistics to the GPU. */
export function uploadState(runner: GpuRunner, model: SwavModel, s: GpuModelState): void {
  const flat = (layout: ParamLayout, valueOf: (name: string) => Float32Array | null) => {
    const out = new Float32Array(layout.total);
    for (const p of layout.params) {
      const data = valueOf(p.name);
      if (data) out.set(data, p.offset);
    }
    return out;
  };
  const varData = (name: string) => model.ps.vars.get(name)!.dataSync() as Float32Array;
  const w = flat(s.params, varData);
  runner.writeBytes(s.w, w);
  runner.writeBytes(
    s.v,
    flat(s.params, (name) => (model.lars.slots.get(name)?.dataSync() as Float32Array) ?? null),
  );
  runner.writeBytes(s.g, new Float32Array(s.params.total));
  runner.writeBytes(s.running, flat(s.stats, varData));
  if (s.w16) runner.write(s.w16, w);
}

/** The GPU's weights, momentum and statistics by name, as they stand after the submitted work. */
export async function downloadState(
  runner: GpuRunner,
  s: GpuModelState,
  queue: readonly GpuTensor[] = [],
): Promise<{ vars: Array<[string, Float32Array]>; momentum: Map<string, Float32Array>; queue: Float32Array[] }> {
  const [w, v, stats, ...entries] = await Promise.all([s.w, s.v, s.running, ...queue].map((t) => runner.read(t)));
  const slices = (layout: ParamLayout, data: Float32Array) =>
    layout.params.map((p) => [p.name, data.slice(p.offset, p.offset + p.size)] as [string, Float32Array]);
  return {
    vars: [...slices(s.params, w!), ...slices(s.stats, stats!)],
    momentum: new Map(slices(s.params, v!)),
    queue: entries,
  };
}

/**
 * Writes downloaded state into `model`. Momentum is written for the parameters in `withSlot` (those the
 * model had a slot for, or that a step has updated): optim.ts creates a slot on a parameter's first update,
 * so a parameter never updated (prototypes still frozen) keeps having none, as on the CPU.
 */
export function importDownloaded(
  model: SwavModel,
  got: Awaited<ReturnType<typeof downloadState>>,
  withSlot: ReadonlySet<string>,
  queueFilled: number,
): void {
  const state: ModelState = {
    vars: got.vars,
    slots: [...got.momentum].filter(([name]) => withSlot.has(name)),
    queue: got.queue,
    queueFilled,
  };
  importState(model, state);
}

export function stateTensors(s: GpuModelState): GpuTensor[] {
  return [s.w, s.v, s.g, s.running, ...(s.w16 ? [s.w16] : [])];
}

export function releaseState(runner: GpuRunner, s: GpuModelState): void {
  runner.release(...stateTensors(s));
}
