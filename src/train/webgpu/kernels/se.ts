/**
 * Squeeze-and-excitation as layers.ts' squeezeExcite defines it, on x viewed as [batch, hw, C]:
 *   pooled = mean_p x                     (pool.ts, channelReduceKernel 'mean')
 *   hidden = relu(pooled W1 + b1)          W1 [C, S] = `<name>.reduce.w`, b1 [S]
 *   gate   = sigmoid(hidden W2 + b2)       W2 [S, C] = `<name>.expand.w`, b2 [C]
 *   y      = x * gate[b, c]
 * The gate's two small matrix products run in one workgroup per image (S and C are a few hundred at most in
 * RegNet), keeping pooled, hidden and gate in f32. Backward, from the saved pooled, hidden and gate:
 *   dgate = sum_p dy * x (pool.ts 'dot'); da2 = dgate * gate * (1 - gate); da1 = (da2 W2^T) * [hidden > 0];
 *   dpooled = da1 W1^T; dW1 = pooled^T da1, db1 = sum_b da1; dW2 = hidden^T da2, db2 = sum_b da2;
 *   dx = dy * gate + dpooled / hw.
 * Weights are read as `weight` (f32 masters, or their f16 copies), biases as f32.
 */
import type { Dispatch, Dtype, GpuTensor, Kernel } from '../runner.js';
import { elementwiseEntry, elementwiseGroups, enableF16 } from './elementwise.js';
import { channelReduceKernel, type SpatialShape } from './pool.js';

const MAX_DIM = 65535;
const THREADS = 256;
/** f32 words of workgroup memory a kernel may use (WebGPU's guaranteed 16 KiB). */
const WORKGROUP_WORDS = 4096;

export interface SeShape extends SpatialShape {
  /** Width of the bottleneck: round(se * block input width) in regnet.ts. */
  squeeze: number;
}

function gateChecks(s: SeShape): void {
  if (s.squeeze < 1) throw new RangeError(`SE: a squeeze width of ${s.squeeze}`);
  if (s.batch > MAX_DIM) throw new RangeError(`SE: batch ${s.batch} exceeds ${MAX_DIM} workgroups`);
  if (s.channels + s.squeeze > WORKGROUP_WORDS)
    throw new RangeError(
      `SE: ${s.channels} + ${s.squeeze} channels exceed the ${WORKGROUP_WORDS}-word workgroup memory`,
    );
}

function key(s: SeShape, ...rest: string[]): string {
  return [`${s.batch}x${s.hw}x${s.channels}x${s.squeeze}`, ...rest].join(':');
}

/** hidden and gate: bindings pooled ([B, C] f32), w1, b1, w2, b2, hidden ([B, S] f32), gate ([B, C] f32). */
export function seGateKernel(s: SeShape, weight: Dtype): Kernel {
  gateChecks(s);
  const code = /* wgsl */ `${enableF16(weight)}
@group(0) @binding(0) var<storage, read> pooled: array<f32>;
@group(0) @binding(1) var<storage, read> w1: array<${weight}>;
@group(0) @binding(2) var<storage, read> b1: array<f32>;
@group(0) @binding(3) var<storage, read> w2: array<${weight}>;
@group(0) @binding(4) var<storage, read> b2: array<f32>;
@group(0) @binding(5) var<storage, read_write> hidden: array<f32>;
@group(0) @binding(6) var<storage, read_write> gate: array<f32>;
const C = ${s.channels}u; const S = ${s.squeeze}u;
var<workgroup> h: array<f32, ${s.squeeze}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let b = wid.x;
  for (var j = lid.x; j < S; j += ${THREADS}u) {
    var a = b1[j];
    for (var c = 0u; c < C; c++) { a = fma(pooled[b * C + c], f32(w1[c * S + j]), a); }
    h[j] = max(a, 0.0);
    hidden[b * S + j] = h[j];
  }
  workgroupBarrier();
  for (var c = lid.x; c < C; c += ${THREADS}u) {
    var a = b2[c];
    for (var j = 0u; j < S; j++) { a = fma(h[j], f32(w2[j * C + c]), a); }
    gate[b * C + c] = 1.0 / (1.0 + exp(-a));
  }
}
`;
  return { key: `se-gate:${key(s, weight)}`, code, workgroups: [s.batch, 1, 1] };
}

/** y = x * gate[b, c]: bindings x, gate ([B, C] f32), y (`act`). */
export function seScaleKernel(s: SpatialShape, act: Dtype): Kernel {
  const total = s.batch * s.hw * s.channels;
  const code = /* wgsl */ `${enableF16(act)}
@group(0) @binding(0) var<storage, read> x: array<${act}>;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<${act}>;
const P = ${s.hw}u; const C = ${s.channels}u;
${elementwiseEntry(total)}
  y[i] = ${act}(f32(x[i]) * gate[(i / (P * C)) * C + i % C]);
}
`;
  return { key: `se-scale:${s.batch}x${s.hw}x${s.channels}:${act}`, code, workgroups: elementwiseGroups(total) };
}

/**
 * The gate's backward per image: bindings dgate ([B, C] f32, sum dy * x in, da2 out), gate, hidden, w1, w2,
 * da1 ([B, S] f32), dpooled ([B, C] f32).
 */
export function seGateGradKernel(s: SeShape, weight: Dtype): Kernel {
  gateChecks(s);
  const code = /* wgsl */ `${enableF16(weight)}
@group(0) @binding(0) var<storage, read_write> dgate: array<f32>;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> hidden: array<f32>;
@group(0) @binding(3) var<storage, read> w1: array<${weight}>;
@group(0) @binding(4) var<storage, read> w2: array<${weight}>;
@group(0) @binding(5) var<storage, read_write> da1: array<f32>;
@group(0) @binding(6) var<storage, read_write> dpooled: array<f32>;
const C = ${s.channels}u; const S = ${s.squeeze}u;
var<workgroup> d2: array<f32, ${s.channels}>;
var<workgroup> d1: array<f32, ${s.squeeze}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let b = wid.x;
  for (var c = lid.x; c < C; c += ${THREADS}u) {
    let g = gate[b * C + c];
    d2[c] = dgate[b * C + c] * (g * (1.0 - g));
    dgate[b * C + c] = d2[c];
  }
  workgroupBarrier();
  for (var j = lid.x; j < S; j += ${THREADS}u) {
    var a = 0.0;
    for (var c = 0u; c < C; c++) { a = fma(d2[c], f32(w2[j * C + c]), a); }
    d1[j] = select(0.0, a, hidden[b * S + j] > 0.0);
    da1[b * S + j] = d1[j];
  }
  workgroupBarrier();
  for (var c = lid.x; c < C; c += ${THREADS}u) {
    var a = 0.0;
    for (var j = 0u; j < S; j++) { a = fma(d1[j], f32(w1[c * S + j]), a); }
    dpooled[b * C + c] = a;
  }
}
`;
  return { key: `se-gate-grad:${key(s, weight)}`, code, workgroups: [s.batch, 1, 1] };
}

/**
 * A dense layer's weight and bias gradients, dW = A^T D ([inputs, outputs]) and db = sum_b D, for the small
 * batch-by-channel products of SE (one thread per output; the projection MLP's large ones belong to gemm.ts):
 * bindings a ([B, inputs] f32), d ([B, outputs] f32), dw, db (f32).
 */
export function denseGradKernel(batch: number, inputs: number, outputs: number): Kernel {
  const total = inputs * outputs + outputs;
  const code = /* wgsl */ `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> d: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;
@group(0) @binding(3) var<storage, read_write> db: array<f32>;
const B = ${batch}u; const I = ${inputs}u; const O = ${outputs}u;
${elementwiseEntry(total)}
  var acc = 0.0;
  if (i < I * O) {
    let r = i / O;
    let o = i % O;
    for (var b = 0u; b < B; b++) { acc = fma(a[b * I + r], d[b * O + o], acc); }
    dw[i] = acc;
  } else {
    let o = i - I * O;
    for (var b = 0u; b < B; b++) { acc += d[b * O + o]; }
    db[o] = acc;
  }
}
`;
  return { key: `dense-grad:${batch}x${inputs}x${outputs}`, code, workgroups: elementwiseGroups(total) };
}

/** dx = dy * gate[b, c] + dpooled[b, c] / hw: bindings dy, gate, dpooled ([B, C] f32), dx (`act`). */
export function seInputGradKernel(s: SpatialShape, act: Dtype): Kernel {
  const total = s.batch * s.hw * s.channels;
  const code = /* wgsl */ `${enableF16(act)}
@group(0) @binding(0) var<storage, read> dy: array<${act}>;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> dpooled: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<${act}>;
const P = ${s.hw}u; const C = ${s.channels}u;
${elementwiseEntry(total)}
  let bc = (i / (P * C)) * C + i % C;
  dx[i] = ${act}(fma(f32(dy[i]), gate[bc], dpooled[bc] / ${s.hw}.0));
}
`;
  return { key: `se-input-grad:${s.batch}x${s.hw}x${s.channels}:${act}`, code, workgroups: elementwiseGroups(total) };
}

export interface SeWeights {
  w1: GpuTensor;
  b1: GpuTensor;
  w2: GpuTensor;
  b2: GpuTensor;
}

/** What the forward saves for the backward: [B, C], [B, S] and [B, C], f32. */
export interface SeSaved {
  pooled: GpuTensor;
  hidden: GpuTensor;
  gate: GpuTensor;
}

export function seForward(s: SeShape, x: GpuTensor, w: SeWeights, saved: SeSaved, y: GpuTensor): Dispatch[] {
  return [
    { kernel: channelReduceKernel(s, x.dtype, 'mean'), buffers: [x, saved.pooled] },
    { kernel: seGateKernel(s, w.w1.dtype), buffers: [saved.pooled, w.w1, w.b1, w.w2, w.b2, saved.hidden, saved.gate] },
    { kernel: seScaleKernel(s, x.dtype), buffers: [x, saved.gate, y] },
  ];
}

export interface SeGrads {
  dx: GpuTensor;
  dw1: GpuTensor;
  db1: GpuTensor;
  dw2: GpuTensor;
  db2: GpuTensor;
}

/** SE backward; `scratch` provides three f32 temporaries ([B, C], [B, S], [B, C]). */
export function seBackward(
  s: SeShape,
  x: GpuTensor,
  dy: GpuTensor,
  w: SeWeights,
  saved: SeSaved,
  g: SeGrads,
  scratch: (shape: number[]) => GpuTensor,
): Dispatch[] {
  const dgate = scratch([s.batch, s.channels]);
  const da1 = scratch([s.batch, s.squeeze]);
  const dpooled = scratch([s.batch, s.channels]);
  return [
    { kernel: channelReduceKernel(s, x.dtype, 'dot'), buffers: [dy, x, dgate] },
    { kernel: seGateGradKernel(s, w.w1.dtype), buffers: [dgate, saved.gate, saved.hidden, w.w1, w.w2, da1, dpooled] },
    { kernel: denseGradKernel(s.batch, s.channels, s.squeeze), buffers: [saved.pooled, da1, g.dw1, g.db1] },
    { kernel: denseGradKernel(s.batch, s.squeeze, s.channels), buffers: [saved.hidden, dgate, g.dw2, g.db2] },
    { kernel: seInputGradKernel(s, x.dtype), buffers: [dy, saved.gate, dpooled, g.dx] },
  ];
}
