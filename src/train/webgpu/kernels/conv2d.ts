/**
 * 2-D convolution as implicit GEMM (NHWC activations, HWIO filters [kH, kW, inC / groups, outC], tfjs's
 * layouts and 'same' padding), forward and both gradients, for any kernel size, stride and group count:
 *   forward      y[b, oh, ow, co]  M = batch*outH*outW  N = outC/groups  K = kH*kW*inC/groups
 *   input grad   dx[b, ih, iw, ci] M = batch*inH*inW    N = inC/groups   K = kH*kW*outC/groups
 *   filter grad  dw[kh, kw, ci, co] M = kH*kW*inC/groups N = outC/groups  K = batch*outH*outW (split-K)
 * Activations are stored as `act` (f32 or f16), filters as `weight`; sums are f32, the filter gradient is f32.
 */
import type { Dispatch, Dtype, GpuTensor, Kernel } from '../runner.js';
import { gemmKernel, gemmLayout, splitKReduceKernel } from './gemm.js';

export interface ConvShape {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  outC: number;
  kH: number;
  kW: number;
  strideH: number;
  strideW: number;
  groups: number;
  padTop: number;
  padLeft: number;
  outH: number;
  outW: number;
}

export interface ConvShapeOptions {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  outC: number;
  /** Square kernel size. */
  kernel: number;
  stride: number;
  /** @default 1 */
  groups?: number;
  /** tfjs's 'same' (extra padding at the bottom / right) or 'valid'. @default 'same' */
  padding?: 'same' | 'valid';
}

/** Storage types: activations (and their gradients) and the filter copy the kernels read. */
export interface ConvPrecision {
  act: Dtype;
  weight: Dtype;
}

export function convShape(o: ConvShapeOptions): ConvShape {
  const groups = o.groups ?? 1;
  if (o.inC % groups || o.outC % groups)
    throw new RangeError(`conv: ${o.inC} -> ${o.outC} channels do not divide into ${groups} groups`);
  const same = (o.padding ?? 'same') === 'same';
  const out = (n: number) => (same ? Math.ceil(n / o.stride) : Math.ceil((n - o.kernel + 1) / o.stride));
  const pad = (n: number, outN: number) =>
    same ? Math.floor(Math.max((outN - 1) * o.stride + o.kernel - n, 0) / 2) : 0;
  const outH = out(o.inH);
  const outW = out(o.inW);
  if (outH < 1 || outW < 1)
    throw new RangeError(`conv: a ${o.inH}x${o.inW} input is smaller than the ${o.kernel}x${o.kernel} kernel`);
  return {
    batch: o.batch,
    inH: o.inH,
    inW: o.inW,
    inC: o.inC,
    outC: o.outC,
    kH: o.kernel,
    kW: o.kernel,
    strideH: o.stride,
    strideW: o.stride,
    groups,
    padTop: pad(o.inH, outH),
    padLeft: pad(o.inW, outW),
    outH,
    outW,
  };
}

export function convFlops(s: ConvShape): number {
  return 2 * s.batch * s.outH * s.outW * s.outC * s.kH * s.kW * (s.inC / s.groups);
}

/** What the GEMM's operands are stored as: f16 only when activations and filters both are. */
const operands = (p: ConvPrecision): Dtype => (p.act === 'f16' && p.weight === 'f16' ? 'f16' : 'f32');

function shapeKey(s: ConvShape): string {
  return `${s.batch}x${s.inH}x${s.inW}x${s.inC}-${s.kH}x${s.kW}s${s.strideH}x${s.strideW}p${s.padTop}x${s.padLeft}g${s.groups}-${s.outC}`;
}

/** Shape constants of a convolution, as WGSL. */
function constants(s: ConvShape, p: ConvPrecision): string {
  const f16 = p.act === 'f16' || p.weight === 'f16' ? 'enable f16;\n' : '';
  return `${f16}
const B = ${s.batch}u; const H = ${s.inH}u; const W = ${s.inW}u; const C = ${s.inC}u; const COUT = ${s.outC}u;
const KH = ${s.kH}u; const KW = ${s.kW}u; const SH = ${s.strideH}u; const SW = ${s.strideW}u;
const PT = ${s.padTop}i; const PL = ${s.padLeft}i; const OH = ${s.outH}u; const OW = ${s.outW}u;
const CG = ${s.inC / s.groups}u; const OG = ${s.outC / s.groups}u;`;
}

/** The input element under output pixel (oh, ow) and tap (kh, kw); zero in the padding. Needs binding `x`. */
const INPUT_GATHER = `
fn input(b: u32, oh: u32, ow: u32, kh: u32, kw: u32, c: u32) -> f32 {
  let ih = i32(oh * SH + kh) - PT;
  let iw = i32(ow * SW + kw) - PL;
  if (ih < 0 || iw < 0 || ih >= i32(H) || iw >= i32(W)) { return 0.0; }
  return f32(x[((b * H + u32(ih)) * W + u32(iw)) * C + c]);
}`;

/** y = conv(x, w): bindings x, w, y. */
export function conv2dForwardKernel(s: ConvShape, p: ConvPrecision): Kernel {
  const prelude = `${constants(s, p)}${INPUT_GATHER}
@group(0) @binding(0) var<storage, read> x: array<${p.act}>;
@group(0) @binding(1) var<storage, read> w: array<${p.weight}>;
@group(0) @binding(2) var<storage, read_write> y: array<${p.act}>;
fn loadA(m: u32, k: u32, g: u32) -> f32 {
  let ow = m % OW; let t = m / OW; let oh = t % OH; let b = t / OH;
  let ci = k % CG; let t2 = k / CG; let kw = t2 % KW; let kh = t2 / KW;
  return input(b, oh, ow, kh, kw, g * CG + ci);
}
fn loadB(k: u32, n: u32, g: u32) -> f32 { return f32(w[k * COUT + g * OG + n]); }
fn store(m: u32, n: u32, g: u32, s: u32, v: f32) { y[m * COUT + g * OG + n] = ${p.act}(v); }
`;
  return gemmKernel({
    key: `conv2d-fwd:${shapeKey(s)}:${p.act}/${p.weight}`,
    M: s.batch * s.outH * s.outW,
    N: s.outC / s.groups,
    K: s.kH * s.kW * (s.inC / s.groups),
    groups: s.groups,
    aContiguous: 'k',
    bContiguous: 'mn',
    operands: operands(p),
    prelude,
  });
}

/** dx = conv2d's input gradient from dy and w: bindings dy, w, dx. Taps that fall between strides read zero. */
export function conv2dInputGradKernel(s: ConvShape, p: ConvPrecision): Kernel {
  const prelude = `${constants(s, p)}
@group(0) @binding(0) var<storage, read> dy: array<${p.act}>;
@group(0) @binding(1) var<storage, read> w: array<${p.weight}>;
@group(0) @binding(2) var<storage, read_write> dx: array<${p.act}>;
fn loadA(m: u32, k: u32, g: u32) -> f32 {
  let iw = m % W; let t = m / W; let ih = t % H; let b = t / H;
  let co = k % OG; let t2 = k / OG; let kw = t2 % KW; let kh = t2 / KW;
  let ohs = i32(ih) + PT - i32(kh);
  let ows = i32(iw) + PL - i32(kw);
  if (ohs < 0 || ows < 0) { return 0.0; }
  let oh = u32(ohs) / SH; let ow = u32(ows) / SW;
  if (oh * SH != u32(ohs) || ow * SW != u32(ows) || oh >= OH || ow >= OW) { return 0.0; }
  return f32(dy[((b * OH + oh) * OW + ow) * COUT + g * OG + co]);
}
fn loadB(k: u32, n: u32, g: u32) -> f32 {
  let co = k % OG; let tap = k / OG;
  return f32(w[(tap * CG + n) * COUT + g * OG + co]);
}
fn store(m: u32, n: u32, g: u32, s: u32, v: f32) { dx[m * C + g * CG + n] = ${p.act}(v); }
`;
  return gemmKernel({
    key: `conv2d-dx:${shapeKey(s)}:${p.act}/${p.weight}`,
    M: s.batch * s.inH * s.inW,
    N: s.inC / s.groups,
    K: s.kH * s.kW * (s.outC / s.groups),
    groups: s.groups,
    aContiguous: 'k',
    bContiguous: 'k',
    operands: operands(p),
    prelude,
  });
}

/**
 * K slices for the filter gradient: its M x N is small (kH*kW*inC/groups x outC/groups) and its K (every output
 * pixel) large, so without a split a few workgroups would each walk the whole batch. Aims at `parallelism`
 * workgroups, each slice at least 8 K tiles deep.
 */
export function filterGradSplit(s: ConvShape, parallelism = 512): number {
  const gemm = {
    M: s.kH * s.kW * (s.inC / s.groups),
    N: s.outC / s.groups,
    K: s.batch * s.outH * s.outW,
    groups: s.groups,
  };
  const { tileCount, tiles } = gemmLayout(gemm);
  const wanted = Math.ceil(parallelism / (tileCount * s.groups));
  return Math.max(1, Math.min(wanted, Math.floor(gemm.K / (tiles.TK * 8))));
}

/** dw (f32) from x and dy: bindings x, dy, out, where out is dw when `splitK` is 1, else the partial sums. */
export function conv2dFilterGradKernel(s: ConvShape, p: ConvPrecision, splitK = 1): Kernel {
  const size = s.kH * s.kW * (s.inC / s.groups) * s.outC;
  const prelude = `${constants(s, { act: p.act, weight: 'f32' })}${INPUT_GATHER}
@group(0) @binding(0) var<storage, read> x: array<${p.act}>;
@group(0) @binding(1) var<storage, read> dy: array<${p.act}>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
fn loadA(m: u32, k: u32, g: u32) -> f32 {
  let ci = m % CG; let t = m / CG; let kw = t % KW; let kh = t / KW;
  let ow = k % OW; let t2 = k / OW; let oh = t2 % OH; let b = t2 / OH;
  return input(b, oh, ow, kh, kw, g * CG + ci);
}
fn loadB(k: u32, n: u32, g: u32) -> f32 { return f32(dy[k * COUT + g * OG + n]); }
fn store(m: u32, n: u32, g: u32, s: u32, v: f32) { out[s * ${size}u + m * COUT + g * OG + n] = v; }
`;
  return gemmKernel({
    key: `conv2d-dw:${shapeKey(s)}:${p.act}:k${splitK}`,
    M: s.kH * s.kW * (s.inC / s.groups),
    N: s.outC / s.groups,
    K: s.batch * s.outH * s.outW,
    groups: s.groups,
    splitK,
    aContiguous: 'mn',
    bContiguous: 'mn',
    operands: p.act,
    prelude,
  });
}

/** Dispatches for the filter gradient; `scratch` provides the split-K partial buffer (f32) when one is needed. */
export function conv2dFilterGrad(
  s: ConvShape,
  p: ConvPrecision,
  x: GpuTensor,
  dy: GpuTensor,
  dw: GpuTensor,
  scratch: (shape: number[]) => GpuTensor,
  splitK = filterGradSplit(s),
): Dispatch[] {
  const kernel = conv2dFilterGradKernel(s, p, splitK);
  const slices = kernel.workgroups[2] / s.groups; // gemmLayout may merge slices that would be empty
  if (slices === 1) return [{ kernel, buffers: [x, dy, dw] }];
  const partial = scratch([slices, dw.size]);
  return [
    { kernel, buffers: [x, dy, partial] },
    { kernel: splitKReduceKernel(dw.size, slices), buffers: [partial, dw] },
  ];
}
