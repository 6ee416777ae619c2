/**
 * The kernels bench/webgpu-kernels.ts times, on shapes of a RegNet at one image size and batch: a plain GEMM
 * (square, and the SwAV projection's first layer), the implicit-GEMM convolution's three passes for the stem
 * (dense 3x3 stride 2), a 1x1, a grouped 3x3 stride 1 and a grouped 3x3 stride 2, and the BatchNorm forward.
 * Inputs are filled on the GPU by a hash (uploading 400 MB of f16 through JS would take longer than timing it);
 * values in [-1, 1) keep every f16 sum far from overflow.
 */
import { BN_STATS, batchNormForward } from '../src/train/webgpu/kernels/batchnorm.js';
import {
  conv2dFilterGrad,
  conv2dForwardKernel,
  conv2dInputGradKernel,
  convFlops,
  convShape,
  type ConvShape,
} from '../src/train/webgpu/kernels/conv2d.js';
import { gemmKernel } from '../src/train/webgpu/kernels/gemm.js';
import {
  DTYPE_BYTES,
  type Dispatch,
  type Dtype,
  type GpuRunner,
  type GpuTensor,
  type Kernel,
} from '../src/train/webgpu/runner.js';
import { regnetSpec } from '../src/train/regnet-spec.js';

/** One timed unit: the dispatches of one kernel (pass) and the work it does, for the rate. */
export interface KernelCase {
  /** e.g. `conv 3x3g/1 28x28 104->104 g13 fwd`. */
  name: string;
  family: 'gemm' | 'conv' | 'bn';
  /** Useful floating-point operations (2 x MACs); 0 for BatchNorm, which is rated in bytes. */
  flops: number;
  /** Bytes the kernel must move at least (each input read once, each output written once). */
  bytes: number;
  /** Allocates and fills its tensors; returns the dispatches and the tensors to release afterwards. */
  build(runner: GpuRunner): Promise<{ dispatches: Dispatch[]; tensors: GpuTensor[] }>;
}

export interface CaseOptions {
  model: string;
  batch: number;
  /** Image side in pixels (the 224 crop). */
  size: number;
  /** Storage type of activations and weight copies; sums are f32 either way. */
  dtype: Dtype;
  /** Side of the square GEMM; 0 leaves it out (it does not depend on the model or batch: timed once). */
  gemmSide: number;
  /** Crops per image in a SwAV step (rows of the projection GEMM per image). */
  crops: number;
}

const MAX_DIM = 65535;

/**
 * out[i] = a hash of (i, seed) mapped to [-1, 1): bindings out, params ([size, seed] u32). Size and seed are read
 * at run time so that one pipeline per storage type fills every tensor (each compile costs ~1 s on lavapipe).
 */
function fillKernel(size: number, dtype: Dtype): Kernel {
  const groups = Math.ceil(size / 256);
  const code = /* wgsl */ `${dtype === 'f16' ? 'enable f16;' : ''}
@group(0) @binding(0) var<storage, read_write> out: array<${dtype}>;
@group(0) @binding(1) var<storage, read> params: array<u32, 2>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * ${MAX_DIM * 256}u;
  if (i >= params[0]) { return; }
  var h = i * 747796405u + params[1] * 2891336453u + 1u;
  h = ((h >> ((h >> 28u) + 4u)) ^ h) * 277803737u;
  h = (h >> 22u) ^ h;
  out[i] = ${dtype}(f32(h >> 8u) / 8388608.0 - 1.0);
}
`;
  return {
    key: `bench-fill:${dtype}`,
    code,
    workgroups: [Math.min(groups, MAX_DIM), Math.ceil(groups / MAX_DIM), 1],
  };
}

let seedCounter = 1;

/** A tensor filled with hashed values in [-1, 1) (submitted now; the queue orders it before any timing). */
async function filled(runner: GpuRunner, shape: number[], dtype: Dtype): Promise<GpuTensor> {
  const t = runner.tensor(shape, dtype);
  const params = runner.tensor([2], 'f32'); // two u32 words
  runner.writeBytes(params, new Uint32Array([t.size, seedCounter++]));
  const rec = await runner.record([{ kernel: fillKernel(t.size, dtype), buffers: [t, params] }]);
  rec.submit();
  runner.release(params); // reused only by later submissions, which the queue orders after this one
  return t;
}

const bytesOf = (elements: number, dtype: Dtype) => elements * DTYPE_BYTES[dtype];

/** C[M, N] = A[M, K] B[K, N], row-major, stored as `dtype`, summed in f32. */
function gemmCase(name: string, M: number, N: number, K: number, dtype: Dtype): KernelCase {
  const prelude = `${dtype === 'f16' ? 'enable f16;' : ''}
@group(0) @binding(0) var<storage, read> a: array<${dtype}>;
@group(0) @binding(1) var<storage, read> b: array<${dtype}>;
@group(0) @binding(2) var<storage, read_write> c: array<${dtype}>;
fn loadA(m: u32, k: u32, g: u32) -> f32 { return f32(a[m * K + k]); }
fn loadB(k: u32, n: u32, g: u32) -> f32 { return f32(b[k * N + n]); }
fn store(m: u32, n: u32, g: u32, s: u32, v: f32) { c[m * N + n] = ${dtype}(v); }
`;
  return {
    name: `gemm ${name} ${M}x${N}x${K}`,
    family: 'gemm',
    flops: 2 * M * N * K,
    bytes: bytesOf(M * K + K * N + M * N, dtype),
    build: async (runner) => {
      const kernel = gemmKernel({
        key: `bench-gemm:${M}x${N}x${K}:${dtype}`,
        M,
        N,
        K,
        aContiguous: 'k',
        bContiguous: 'mn',
        operands: dtype,
        prelude,
      });
      const a = await filled(runner, [M, K], dtype);
      const b = await filled(runner, [K, N], dtype);
      const c = runner.tensor([M, N], dtype);
      return { dispatches: [{ kernel, buffers: [a, b, c] }], tensors: [a, b, c] };
    },
  };
}

type ConvPass = 'fwd' | 'dx' | 'dw';

function convName(label: string, s: ConvShape, pass: ConvPass): string {
  const g = s.groups > 1 ? ` g${s.groups}` : '';
  return `conv ${label} ${s.inH}x${s.inW} ${s.inC}->${s.outC}${g} ${pass}`;
}

/** One pass of a convolution: forward (x, w -> y), input gradient (dy, w -> dx), filter gradient (x, dy -> dw). */
function convCase(label: string, s: ConvShape, pass: ConvPass, dtype: Dtype): KernelCase {
  const p = { act: dtype, weight: dtype };
  const xShape = [s.batch, s.inH, s.inW, s.inC];
  const yShape = [s.batch, s.outH, s.outW, s.outC];
  const wShape = [s.kH, s.kW, s.inC / s.groups, s.outC];
  const [xn, yn, wn] = [xShape, yShape, wShape].map((d) => d.reduce((a, b) => a * b, 1)) as [number, number, number];
  const bytes = pass === 'dw' ? bytesOf(xn + yn, dtype) + wn * 4 : bytesOf(xn + yn + wn, dtype);
  return {
    name: convName(label, s, pass),
    family: 'conv',
    flops: convFlops(s),
    bytes,
    build: async (runner) => {
      if (pass === 'fwd') {
        const [x, w] = [await filled(runner, xShape, dtype), await filled(runner, wShape, dtype)];
        const y = runner.tensor(yShape, dtype);
        return { dispatches: [{ kernel: conv2dForwardKernel(s, p), buffers: [x, w, y] }], tensors: [x, w, y] };
      }
      if (pass === 'dx') {
        const [dy, w] = [await filled(runner, yShape, dtype), await filled(runner, wShape, dtype)];
        const dx = runner.tensor(xShape, dtype);
        return { dispatches: [{ kernel: conv2dInputGradKernel(s, p), buffers: [dy, w, dx] }], tensors: [dy, w, dx] };
      }
      const [x, dy] = [await filled(runner, xShape, dtype), await filled(runner, yShape, dtype)];
      const dw = runner.tensor(wShape, 'f32');
      const scratch: GpuTensor[] = [];
      const dispatches = conv2dFilterGrad(s, p, x, dy, dw, (shape) => {
        const t = runner.tensor(shape, 'f32');
        scratch.push(t);
        return t;
      });
      return { dispatches, tensors: [x, dy, dw, ...scratch] };
    },
  };
}

/** Training-mode BatchNorm + ReLU forward (statistics, finalize, apply) over [rows, channels]. */
function batchNormCase(label: string, batch: number, side: number, channels: number, dtype: Dtype): KernelCase {
  const rows = batch * side * side;
  return {
    name: `bn ${label} ${side}x${side}x${channels} fwd`,
    family: 'bn',
    flops: 0,
    // statistics read x once; apply reads x and writes y
    bytes: 3 * bytesOf(rows * channels, dtype),
    build: async (runner) => {
      const x = await filled(runner, [rows, channels], dtype);
      const gamma = await filled(runner, [channels], 'f32');
      const beta = await filled(runner, [channels], 'f32');
      const stats = runner.tensor([BN_STATS.ROWS, channels], 'f32');
      const running = await filled(runner, [2, channels], 'f32');
      const y = runner.tensor([rows, channels], dtype);
      const scratch: GpuTensor[] = [];
      const dispatches = batchNormForward({ rows, channels }, { x, gamma, beta, stats, running, y }, (shape) => {
        const t = runner.tensor(shape, 'f32');
        scratch.push(t);
        return t;
      });
      return { dispatches, tensors: [x, gamma, beta, stats, running, y, ...scratch] };
    },
  };
}

/** Side of the feature map entering stage `i` (0-based) of a RegNet at `size` pixels: stem /2, each stage /2. */
function stageInputSide(size: number, i: number): number {
  let side = Math.ceil(size / 2);
  for (let s = 0; s < i; s++) side = Math.ceil(side / 2);
  return side;
}

/** Every case for one model, batch, size and storage type. */
export function kernelCases(o: CaseOptions): KernelCase[] {
  const spec = regnetSpec(o.model);
  const st = (i: number) => spec.stages[Math.min(i, spec.stages.length - 1)]!;
  const { batch, dtype } = o;
  // Stage 1 (the second) runs at 28x28 for a 224 px image: a mid-network 1x1 and grouped 3x3 there; stage 2's
  // first block takes 28x28 to 14x14 with its strided grouped 3x3.
  const s1 = st(1);
  const side1 = Math.ceil(stageInputSide(o.size, 1) / 2);
  const s2 = st(2);
  const convs: [string, ConvShape][] = [
    ['stem 3x3/2', convShape({ batch, inH: o.size, inW: o.size, inC: 3, outC: spec.stemWidth, kernel: 3, stride: 2 })],
    ['1x1', convShape({ batch, inH: side1, inW: side1, inC: s1.width, outC: s1.width, kernel: 1, stride: 1 })],
    [
      '3x3g/1',
      convShape({
        batch,
        inH: side1,
        inW: side1,
        inC: s1.width,
        outC: s1.width,
        kernel: 3,
        stride: 1,
        groups: s1.width / s1.groupWidth,
      }),
    ],
    [
      '3x3g/2',
      convShape({
        batch,
        inH: side1,
        inW: side1,
        inC: s2.width,
        outC: s2.width,
        kernel: 3,
        stride: 2,
        groups: s2.width / s2.groupWidth,
      }),
    ],
  ];
  const last = spec.stages[spec.stages.length - 1]!.width;
  return [
    ...(o.gemmSide ? [gemmCase('square', o.gemmSide, o.gemmSide, o.gemmSide, dtype)] : []),
    gemmCase('projection', batch * o.crops, 2048, last, dtype),
    ...convs.flatMap(([label, s]) => (['fwd', 'dx', 'dw'] as const).map((pass) => convCase(label, s, pass, dtype))),
    batchNormCase('stage', batch, side1, s1.width, dtype),
  ];
}
