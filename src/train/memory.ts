/**
 * The memory a training configuration needs, estimated before the first step from the RegNet spec, the crops
 * and the batch: the network is walked with the same `regnetBody` that builds it (RegNetOps over shapes), and
 * each op is charged what tfjs holds for it. What tfjs holds (tfjs-core 4.22, engine.ts and tape.ts):
 * - each op's saved inputs/outputs (its gradient config's inputsToSave/outputsToSave) until the backward pass
 *   ends, and a gradient for every tensor on the tape, also until the backward pass ends;
 * - with recomputation (recompute.ts), the stem, the head and each stage's input on the outer tape, and one
 *   stage's saved tensors and gradients at a time while that stage's backward pass runs;
 * - weights, BatchNorm running statistics, LARS momentum and the weights' gradients for the whole step.
 * The check against tf.profile's peak bytes is test/train/memory.test.ts.
 */
import { cropSizes } from '../crops.js';
import { ConfigError } from '../errors.js';
import { FLAG_NAMES, type OptionNames } from '../options/declare.js';
import { regnetBody, type RegNetOps } from './regnet.js';
import { regnetSpec } from './regnet-spec.js';
import type { SwavConfig } from './swav.js';

export const RECOMPUTE_MODES = ['auto', 'on', 'off'] as const;
export type RecomputeMode = (typeof RECOMPUTE_MODES)[number];

/** Bytes, each part at the backward pass's end, where a step's memory peaks. */
export interface MemoryEstimate {
  /** Trainable weights and BatchNorm running statistics. */
  params: number;
  /** LARS momentum (one slot per trainable weight). */
  optimiser: number;
  /** The weights' gradients. */
  gradients: number;
  /** The step's input crops and the SwAV head's tensors. */
  inputs: number;
  /** Tensors held for and by the backward pass, without and with recomputation. */
  activations: { off: number; on: number };
  /** The largest temporary of one op's gradient (wasm's im2col patches of a conv's filter gradient). */
  transient: number;
  peak: { off: number; on: number };
}

export interface MemoryPlan {
  estimate: MemoryEstimate;
  /** What the backend can hold (bytes), when known. */
  budget: number | null;
  recompute: boolean;
  /** One line for the training log. */
  line: string;
}

/** The wasm module's memory grows to at most 65536 pages, less one (emscripten getHeapMax: 4294901760). */
export const WASM_HEAP_BYTES = 4294901760;

/**
 * Wasm heap bytes per byte of tensors tfjs holds: the allocator's fragmentation and emscripten's heap growth
 * (20 % steps, up to 96 MiB past the request). Measured: regnety_400mf, SwAV crops, batch 16, recomputation on,
 * a 2.61 GiB heap high-water after the first step for a 2.18 GiB estimate (1.20x).
 */
export const WASM_HEAP_PER_TENSOR_BYTE = 1.25;

const F32 = 4;

interface Sym {
  id: number;
  n: number;
  h: number;
  w: number;
  c: number;
}

/** Tensors of one tape: the outer one, or one recomputed stage's. */
interface Segment {
  /** Op outputs: each gets a gradient in the backward pass. */
  created: number;
  /** Tensors the segment's ops save for their gradients (ids, as several ops save one tensor). */
  saved: Set<number>;
  /** Tensors saved inside custom gradients (BatchNorm's normalised input), not op outputs. */
  internal: number;
  /** The largest temporary of one op's gradient in this segment. */
  transient: number;
}

/** RegNetOps over shapes, charging each op what tfjs keeps for it in training mode. */
class Walk {
  readonly sizes = new Map<number, number>();
  readonly outer: Segment = { created: 0, saved: new Set(), internal: 0, transient: 0 };
  readonly stages: Segment[] = [];
  /** Gradients of the stages' outputs on the outer tape (without recomputation, the last block's own). */
  links = 0;
  trainable = 0;
  buffers = 0;
  /** The largest op output: what bounds a forward pass that frees each tensor after its last use. */
  largest = 0;
  private seg = this.outer;
  private ids = 0;
  private readonly counted = new Set<string>();
  /** Consumers so far of each tensor that gets a gradient. */
  private readonly uses = new Map<number, number>();

  make(n: number, h: number, w: number, c: number, opOutput = true): Sym {
    const t = { id: ++this.ids, n, h, w, c };
    this.sizes.set(t.id, bytes(t));
    this.largest = Math.max(this.largest, bytes(t));
    if (opOutput) {
      this.seg.created += bytes(t);
      this.uses.set(t.id, 0);
    }
    return t;
  }

  /**
   * `t` feeds one more op. tfjs sums a tensor's gradient contributions as `add(sum, dx)`, disposing the old
   * sum but not `dx`: each consumer after the first leaves one more gradient of its size.
   */
  use(...ts: Sym[]): void {
    for (const t of ts) {
      const n = this.uses.get(t.id);
      if (n === undefined) continue;
      if (n > 0) this.seg.created += bytes(t);
      this.uses.set(t.id, n + 1);
    }
  }

  temporary(b: number): void {
    this.seg.transient = Math.max(this.seg.transient, b);
  }

  save(...ts: Sym[]): void {
    for (const t of ts) this.seg.saved.add(t.id);
  }

  weights(name: string, trainable: number, buffers = 0): void {
    if (this.counted.has(name)) return; // one network walked once per crop size: its weights once
    this.counted.add(name);
    this.trainable += trainable;
    this.buffers += buffers;
  }

  /** What the segments hold together: saved tensors (each once), custom gradients' own, op gradients. */
  held(segs: Segment[]): number {
    const ids = new Set(segs.flatMap((s) => [...s.saved]));
    let sum = 0;
    for (const id of ids) sum += this.sizes.get(id)!;
    for (const s of segs) sum += s.internal + s.created;
    return sum;
  }

  ops(): RegNetOps<Sym> {
    return {
      conv: (name, x, out, k, stride, groups) => {
        const y = this.make(x.n, Math.ceil(x.h / stride), Math.ceil(x.w / stride), out);
        this.weights(name, k * k * (x.c / groups) * out);
        this.use(x);
        this.save(x);
        // wasm's filter gradient: im2col patches [n, h', w', cin/groups * k * k] (a 1x1 stride-1 conv is a matMul).
        if (k > 1 || stride > 1) this.temporary(y.n * y.h * y.w * (x.c / groups) * k * k * F32);
        if (groups > 1) this.save(this.make(x.n, x.h, x.w, x.c), this.make(y.n, y.h, y.w, y.c)); // split slices, concat inputs
        return y;
      },
      bn: (name, x) => {
        this.weights(name, 2 * x.c, 2 * x.c);
        this.use(x);
        this.seg.internal += bytes(x); // x-hat
        // Its gradient's temporaries (dy * x-hat, dy - mean(dy), x-hat * mean(dy * x-hat), their difference, its
        // scaling) and, before it, ReLU's dy * step(x): six of x's size, as measured with tf.profile.
        this.temporary(6 * bytes(x));
        return this.make(x.n, x.h, x.w, x.c);
      },
      relu: (x) => {
        this.use(x);
        this.save(x);
        return this.make(x.n, x.h, x.w, x.c);
      },
      se: (name, x, squeeze) => {
        this.weights(name, x.c * squeeze + squeeze + squeeze * x.c + x.c);
        this.use(x, x); // the channel means and the gating
        this.save(x);
        return this.make(x.n, x.h, x.w, x.c);
      },
      add: (a, b) => {
        this.use(a, b);
        this.save(a, b);
        return this.make(a.n, a.h, a.w, a.c);
      },
      pool: (x) => {
        this.use(x);
        this.save(x);
        return this.make(x.n, 1, 1, x.c);
      },
      channels: (x) => x.c,
      stage: (_prefix, x, body) => {
        // The outer tape keeps the stage's input and a gradient of its output; the rest is the stage's own.
        this.save(x);
        const seg: Segment = { created: 0, saved: new Set(), internal: 0, transient: 0 };
        this.stages.push(seg);
        this.seg = seg;
        const y = body(this.ops(), x);
        this.seg = this.outer;
        this.outer.created += bytes(y);
        this.links += bytes(y);
        return y;
      },
    };
  }
}

function bytes(t: Omit<Sym, 'id'>): number {
  return t.n * t.h * t.w * t.c * F32;
}

/** The parts of a TrainConfig that size a step (config.ts imports this file, so not the type itself). */
export interface Sizing {
  model: string;
  crops: string;
  batchSize: number;
  swav: Pick<SwavConfig, 'hidden' | 'dim' | 'prototypes' | 'cropsForAssign'>;
  queue: { length: number };
  /**
   * Data-parallel training threads, each with its own backend (its own wasm heap) and a share of every batch:
   * the estimate is one thread's, with the activations and inputs of ceil(batch / threads) images (Sinkhorn
   * and the queue still span the whole batch). @default 1
   */
  threads?: number;
}

/** The estimate for a configuration (any backend: tfjs holds float32 tensors everywhere). */
export function estimateMemory(config: Sizing): MemoryEstimate {
  const spec = regnetSpec(config.model);
  const walk = new Walk();
  const rows = Math.ceil(config.batchSize / Math.max(1, config.threads ?? 1)); // this thread's share
  const sizes = cropSizes(config.crops);
  const bySize = new Map<number, number>();
  for (const size of sizes) bySize.set(size, (bySize.get(size) ?? 0) + 1);
  let inputs = 0;
  let features = 0;
  for (const [size, count] of bySize) {
    inputs += count * rows * size * size * 3 * F32; // the crops, alive for the step
    const images = walk.make(count * rows, size, size, 3, false); // no gradient: not from a weight
    walk.save(images);
    features = regnetBody(walk.ops(), spec, images).c;
  }
  const head = headMemory(config, sizes.length * rows, features);
  walk.weights('head', head.trainable, head.buffers);
  const segments = [walk.outer, ...walk.stages];
  const outer = walk.held([walk.outer]) + head.activations;
  // With recomputation one stage's tensors exist at a time, with that stage's temporaries.
  const stage = Math.max(0, ...walk.stages.map((s) => walk.held([s])));
  const stagePeak = Math.max(walk.outer.transient, ...walk.stages.map((s) => walk.held([s]) + s.transient));
  const activations = { off: walk.held(segments) - walk.links + head.activations, on: outer + stage };
  const transient = Math.max(...segments.map((s) => s.transient));
  const params = (walk.trainable + walk.buffers) * F32;
  const optimiser = walk.trainable * F32;
  const gradients = walk.trainable * F32;
  const fixed = params + optimiser + gradients + inputs;
  return {
    params,
    optimiser,
    gradients,
    inputs,
    activations,
    transient,
    peak: { off: fixed + activations.off + transient, on: fixed + outer + stagePeak },
  };
}

/** The SwAV head on `rows` feature rows: projection MLP, prototype scores, Sinkhorn and the loss. */
function headMemory(
  config: Sizing,
  rows: number,
  features: number,
): { trainable: number; buffers: number; activations: number } {
  const { hidden, dim, prototypes } = config.swav;
  const assign = config.swav.cropsForAssign.length;
  const trainable = features * hidden + hidden + 2 * hidden + hidden * dim + dim + dim * prototypes;
  const crops = Math.max(1, Math.round(rows / Math.max(1, config.batchSize)));
  const perCrop = rows / crops; // this thread's rows of one crop
  // Per row: hidden activations (dense, BN out and x-hat, ReLU, and their gradients). The [rows, K] scores are
  // what a large --prototypes costs (tf.profile on the cpu backend, K = 20000-40000, measured 230-290 [B, K]
  // matrices per image for 4-6 crops): each crop's scores, their normalisation and gradients (~9.5 [B, K] per
  // crop); per assignment crop and other crop, a log-softmax at the temperature with its temporaries and
  // gradients (~8); per assignment crop, the Sinkhorn iterations over queue + batch (~74).
  const pairs = assign * (crops - 1);
  const scores = (9.5 * crops + 8 * pairs) * perCrop * prototypes;
  const sinkhorn = 74 * assign * (config.queue.length + config.batchSize) * prototypes;
  const queue = assign * config.queue.length * dim;
  return {
    trainable,
    buffers: 2 * hidden,
    activations: (rows * (8 * hidden + 6 * dim) + scores + sinkhorn + queue) * F32,
  };
}

/** What the backend can hold, when known: the wasm heap's limit, or the machine's memory for cpu/native. */
export function memoryBudget(backend: string, totalMemory: number): number | null {
  if (backend === 'wasm') return WASM_HEAP_BYTES;
  if (backend === 'cpu' || backend === 'tensorflow') return totalMemory;
  return null; // webgpu: no API says how much the device has
}

/**
 * Whether to recompute, and the line that says so. `auto` recomputes when the estimate without it exceeds
 * the budget; a configuration that does not fit even with recomputation is a ConfigError naming the batch
 * that would.
 */
export function planMemory(
  config: Sizing & { recompute?: RecomputeMode },
  backend: string,
  totalMemory: number,
  names: OptionNames = FLAG_NAMES,
): MemoryPlan {
  const mode = config.recompute ?? 'auto';
  const estimate = estimateMemory(config);
  const threads = Math.max(1, config.threads ?? 1);
  // Wasm threads each have their own heap; cpu threads share the machine's memory.
  const budget = memoryBudget(backend, backend === 'wasm' ? totalMemory : totalMemory / threads);
  const scale = backend === 'wasm' ? WASM_HEAP_PER_TENSOR_BYTE : 1;
  const [on, off] = [estimate.peak.on * scale, estimate.peak.off * scale];
  const recompute = mode === 'on' || (mode === 'auto' && budget !== null && off > budget);
  const peak = recompute ? on : off;
  if (budget !== null && peak > budget) {
    const fits = largestBatch(config, budget / scale, recompute ? 'on' : 'off');
    const other = !recompute && on <= budget ? `; ${names.set('recompute', 'on')} would fit it` : '';
    const head = prototypesFitting(config, budget / scale, recompute ? 'on' : 'off');
    if (head !== null && other === '') {
      // The prototypes, not the batch, are what does not fit: the [batch, K] scores and the [dim, K] matrix.
      throw new ConfigError(
        `${names.set('prototypes', config.swav.prototypes)} with ${names.set('dim', config.swav.dim)} at batch ${config.batchSize} ` +
          `needs ~${formatBytes(peak)}${threads > 1 ? ' per thread' : ''}, more than the ${formatBytes(budget)} ${where(backend)}: ` +
          `the SwAV head's prototype scores, Sinkhorn codes and prototype matrix grow with ${names.of('prototypes')}; ` +
          (head >= 2 ? `${names.set('prototypes', head)} fits` : `use fewer ${names.of('prototypes')}`),
      );
    }
    if (fits === 0 && headTooWide(config, budget / scale, recompute ? 'on' : 'off')) {
      // Not one image fits, and the projection MLP's widths are why: the batch, crops or model would not help.
      throw new ConfigError(
        `${names.set('hidden', config.swav.hidden)} with ${names.set('dim', config.swav.dim)} needs ~${formatBytes(peak)}${threads > 1 ? ' per thread' : ''}, ` +
          `more than the ${formatBytes(budget)} ${where(backend)} even at batch 1: the SwAV head's weights, momentum and gradients ` +
          `grow with ${names.of('hidden')} x ${names.of('dim')}; use SwAV's ${names.set('hidden', SWAV_HIDDEN)} and ${names.set('dim', SWAV_DIM)} or less`,
      );
    }
    throw new ConfigError(
      `batch ${config.batchSize}${threads > 1 ? ` split over ${threads} training threads` : ''} of model ${config.model} with crops ${config.crops} ` +
        `needs ~${formatBytes(peak)}${threads > 1 ? ' per thread' : ''}, more than the ` +
        `${formatBytes(budget)} ${where(backend)}${recompute ? ' even with activation recomputation' : ''}; ` +
        (fits > 0 ? `${names.set('batch', fits)} fits${other}` : `no batch fits: use smaller crops or model${other}`),
    );
  }
  const without = mode === 'auto' && recompute ? `, ~${formatBytes(off)} without` : '';
  const of = budget === null ? '' : ` of ${formatBytes(budget)} ${where(backend)}`;
  const each = threads > 1 ? ` per training thread (${threads} threads)` : '';
  return {
    estimate,
    budget,
    recompute,
    line: `memory: ~${formatBytes(peak)} peak${each}${of} (recompute: ${recompute ? 'on' : 'off'}${mode === 'auto' ? ', auto' : ''}${without})`,
  };
}

/**
 * Bytes of one inference forward pass (embed, eval knn) of `model` on `batch` images of `size` px: the
 * weights, the input twice (the JS array and its tensor) and four of the largest activation. tfjs-converter's
 * executor frees each tensor after its last use, so at most a few activations live at once: an op's input
 * and output, a block's shortcut, and a grouped conv's split and concatenated copies. Measured: 1.3x the peak
 * tf.profile reports for an exported custom:4,16,8,2,8 at 32 px batch 8 and 96 px batch 2 (memory.test.ts).
 */
export function inferenceMemory(model: string, size: number, batch: number): number {
  const walk = new Walk();
  const images = walk.make(batch, size, size, 3, false);
  regnetBody(walk.ops(), regnetSpec(model), images);
  return (walk.trainable + walk.buffers) * F32 + 2 * bytes(images) + 4 * walk.largest;
}

/**
 * Refuses, before any image is read, an inference batch that cannot fit the backend (the wasm heap, or the
 * machine's memory), naming the largest batch that fits. A ConfigError.
 */
export function checkInference(
  o: { model: string; size: number; batch: number },
  backend: string,
  totalMemory: number,
  names: OptionNames = FLAG_NAMES,
): void {
  const budget = memoryBudget(backend, totalMemory);
  const scale = backend === 'wasm' ? WASM_HEAP_PER_TENSOR_BYTE : 1;
  const need = (batch: number) => inferenceMemory(o.model, o.size, batch) * scale;
  if (budget === null || need(o.batch) <= budget) return;
  const lo = largestFitting(o.batch, (batch) => need(batch) <= budget);
  throw new ConfigError(
    `${names.set('batch', o.batch)} at ${names.set('size', o.size)} of model ${o.model} needs ~${formatBytes(need(o.batch))}, ` +
      `more than the ${formatBytes(budget)} ${where(backend)}; ` +
      (lo > 0 ? `${names.set('batch', lo)} fits` : `no batch fits: use a smaller ${names.of('size')}`),
  );
}

/**
 * When the batch fits with SwAV's usual head (3000 prototypes, or the configured count when smaller) but not
 * with the configured count: the largest prototype count that fits `budget` bytes of tensors. Null when the
 * prototypes are not what makes the configuration too big.
 */
function prototypesFitting(config: Sizing, budget: number, mode: 'on' | 'off'): number | null {
  const peak = (prototypes: number) => estimateMemory({ ...config, swav: { ...config.swav, prototypes } }).peak[mode];
  const usual = Math.min(config.swav.prototypes, 3000);
  if (usual === config.swav.prototypes || peak(usual) > budget) return null;
  return largestFitting(config.swav.prototypes, (k) => peak(k) <= budget);
}

/** SwAV's projection widths (swav.ts's defaults; that module builds tensors, this one only counts them). */
const [SWAV_HIDDEN, SWAV_DIM] = [2048, 128];

/**
 * Whether the head's widths are what keeps even a batch of 1 out of `budget` bytes: with --hidden and --dim at
 * most SwAV's, one image would fit.
 */
function headTooWide(config: Sizing, budget: number, mode: 'on' | 'off'): boolean {
  const { hidden, dim } = config.swav;
  if (hidden <= SWAV_HIDDEN && dim <= SWAV_DIM) return false;
  const swav = { ...config.swav, hidden: Math.min(hidden, SWAV_HIDDEN), dim: Math.min(dim, SWAV_DIM) };
  return estimateMemory({ ...config, swav, batchSize: 1, queue: { length: 0 } }).peak[mode] <= budget;
}

/** The largest batch (at most the configured one) whose estimate fits `budget` bytes of tensors; 0 when none does. */
export function largestBatch(config: Sizing, budget: number, mode: 'on' | 'off'): number {
  const peak = (batchSize: number) =>
    estimateMemory({ ...config, batchSize, queue: { ...config.queue, length: 0 } }).peak[mode];
  return largestFitting(config.batchSize, (batch) => peak(batch) <= budget);
}

/** The largest n in 0..max with fits(n), for fits true up to some n and false above (a binary search). */
function largestFitting(max: number, fits: (n: number) => boolean): number {
  let [lo, hi] = [0, max];
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function where(backend: string): string {
  return backend === 'wasm' ? 'wasm heap' : `${backend} budget`;
}

/**
 * Bytes for a log line or an error: GiB (one decimal below 10 GiB), or MiB below 0.1 GiB, where a tiny model
 * would read as "0.0 GiB".
 */
export function formatBytes(b: number): string {
  if (b < 0.1 * 2 ** 30) return `${(b / 2 ** 20).toFixed(1)} MiB`;
  return `${(b / 2 ** 30).toFixed(b < 10 * 2 ** 30 ? 1 : 0)} GiB`;
}
