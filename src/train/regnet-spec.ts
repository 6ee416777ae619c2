/**
 * RegNet design space ("Designing Network Design Spaces", Radosavovic et al. 2020) as pure functions: a table
 * of (depth, w0, wa, wm, group width, SE) per model and the quantised linear width generator, giving each
 * stage's width, depth and group width. Values follow pycls/torchvision (and VISSL for SEER's RegNetY-256GF).
 */
import { ConfigError } from '../errors.js';

export interface RegNetParams {
  depth: number;
  w0: number;
  wa: number;
  wm: number;
  groupWidth: number;
  /** Squeeze-and-excitation ratio (RegNetY); 0 for RegNetX. */
  se: number;
}

export interface StageSpec {
  width: number;
  depth: number;
  groupWidth: number;
}

export interface RegNetSpec {
  name: string;
  stemWidth: number;
  stages: StageSpec[];
  se: number;
  /** Bottleneck multiplier: 1 for every RegNet in the paper. */
  bottleneck: number;
}

const y = (depth: number, w0: number, wa: number, wm: number, groupWidth: number): RegNetParams => ({
  depth,
  w0,
  wa,
  wm,
  groupWidth,
  se: 0.25,
});
const x = (depth: number, w0: number, wa: number, wm: number, groupWidth: number): RegNetParams => ({
  depth,
  w0,
  wa,
  wm,
  groupWidth,
  se: 0,
});

export const REGNETS: Readonly<Record<string, RegNetParams>> = {
  regnetx_200mf: x(13, 24, 36.44, 2.49, 8),
  regnetx_400mf: x(22, 24, 24.48, 2.54, 16),
  regnetx_800mf: x(16, 56, 35.73, 2.28, 16),
  regnetx_1_6gf: x(18, 80, 34.01, 2.25, 24),
  regnetx_3_2gf: x(25, 88, 26.31, 2.25, 48),
  regnetx_8gf: x(23, 80, 49.56, 2.88, 120),
  regnetx_16gf: x(22, 216, 55.59, 2.1, 128),
  regnetx_32gf: x(23, 320, 69.86, 2.0, 168),
  regnety_200mf: y(13, 24, 36.44, 2.49, 8),
  regnety_400mf: y(16, 48, 27.89, 2.09, 8),
  regnety_800mf: y(14, 56, 38.84, 2.4, 16),
  regnety_1_6gf: y(27, 48, 20.71, 2.65, 24),
  regnety_3_2gf: y(21, 80, 42.63, 2.66, 24),
  regnety_8gf: y(17, 192, 76.82, 2.19, 56),
  regnety_16gf: y(18, 200, 106.23, 2.48, 112),
  regnety_32gf: y(20, 232, 115.89, 2.53, 232),
  regnety_128gf: y(27, 456, 160.83, 2.52, 264),
  regnety_256gf: y(27, 640, 230.83, 2.53, 373),
};

const QUANT = 8;

/** The quantised linear widths of every block, grouped into stages of equal width. */
export function generateStages(p: RegNetParams, bottleneck = 1): StageSpec[] {
  if (!(p.depth >= 1 && p.w0 > 0 && p.wa >= 0 && p.wm > 1 && p.groupWidth >= 1)) {
    throw new ConfigError(`invalid RegNet parameters ${JSON.stringify(p)}`);
  }
  const blockWidths = Array.from({ length: p.depth }, (_, j) => {
    const s = Math.round(Math.log((p.w0 + p.wa * j) / p.w0) / Math.log(p.wm));
    return Math.round((p.w0 * p.wm ** s) / QUANT) * QUANT;
  });
  const stages: StageSpec[] = [];
  for (const w of blockWidths) {
    const last = stages[stages.length - 1];
    if (last && last.width === w) last.depth++;
    else stages.push({ width: w, depth: 1, groupWidth: p.groupWidth });
  }
  // Make bottleneck widths divisible by the group width (group width capped at the bottleneck width).
  return stages.map((s) => {
    const wBot = Math.trunc(s.width * bottleneck);
    const g = Math.min(s.groupWidth, wBot);
    return { width: Math.trunc(makeDivisible(wBot, g) / bottleneck), depth: s.depth, groupWidth: g };
  });
}

/** Rounds to the nearest multiple of `divisor`, never more than 10 % down. */
function makeDivisible(v: number, divisor: number): number {
  let n = Math.max(divisor, Math.trunc((v + divisor / 2) / divisor) * divisor);
  if (n < 0.9 * v) n += divisor;
  return n;
}

export function regnetSpec(name: string): RegNetSpec {
  const params = regnetParams(name);
  return { name, stemWidth: 32, stages: generateStages(params), se: params.se, bottleneck: 1 };
}

/**
 * The parameters a model name stands for, defaults filled in: two names build the same network exactly when
 * these are equal (`custom:4,16,8,2,16` and `custom:4,16,8,2,16,0.25`). Throws a ConfigError for an unknown name.
 */
export function regnetParams(name: string): RegNetParams {
  const p = REGNETS[name] ?? parseCustom(name);
  return { depth: p.depth, w0: p.w0, wa: p.wa, wm: p.wm, groupWidth: p.groupWidth, se: p.se };
}

/** Whether regnetSpec knows `name` (a RegNet of the zoo or a valid custom one). */
export function isRegNetName(name: string): boolean {
  try {
    regnetSpec(name);
    return true;
  } catch {
    return false;
  }
}

/** `custom:depth,w0,wa,wm,g[,se]` for tiny test and demo models. */
function parseCustom(name: string): RegNetParams {
  const m = /^custom:([\d.,]+)$/.exec(name);
  const nums = m ? m[1]!.split(',').map(Number) : [];
  if (nums.length < 5 || nums.length > 6 || nums.some((n) => !Number.isFinite(n))) {
    throw new ConfigError(
      `unknown model "${name}"; one of ${Object.keys(REGNETS).join(', ')} or custom:depth,w0,wa,wm,groupWidth[,se]`,
    );
  }
  const [depth, w0, wa, wm, groupWidth, se = 0.25] = nums as [number, number, number, number, number, number?];
  return { depth, w0, wa, wm, groupWidth, se };
}

/** Trainable parameters (conv and linear weights, biases, BN scale and shift), with an optional classifier. */
export function countParams(spec: RegNetSpec, classes = 0): number {
  let n = 3 * 3 * 3 * spec.stemWidth + 2 * spec.stemWidth;
  let wIn = spec.stemWidth;
  for (const stage of spec.stages) {
    for (let b = 0; b < stage.depth; b++) {
      const w = stage.width,
        wb = Math.trunc(w * spec.bottleneck);
      const groups = wb / stage.groupWidth;
      n += wIn * wb + 2 * wb; // 1x1 + BN
      n += 9 * (wb / groups) * wb + 2 * wb; // grouped 3x3 + BN
      if (spec.se > 0) {
        const wse = Math.round(spec.se * wIn);
        n += wb * wse + wse + wse * wb + wb;
      }
      n += wb * w + 2 * w; // 1x1 + BN
      if (wIn !== w || b === 0) n += wIn * w + 2 * w; // projection shortcut (stride 2 at each stage start)
      wIn = w;
    }
  }
  return classes > 0 ? n + wIn * classes + classes : n;
}

/**
 * Multiply-accumulates of one forward pass of the backbone on a size x size image (convs, SE and the
 * projection shortcuts; 'same' padding, so a stride-2 layer halves the side, rounding up). torchvision
 * reports these as "GFLOPS" (0.40 for regnet_y_400mf at 224): the paper's "flops" are MACs.
 */
export function regnetMacs(spec: RegNetSpec, size: number, classes = 0): number {
  let side = Math.ceil(size / 2);
  let macs = 9 * 3 * spec.stemWidth * side * side;
  let wIn = spec.stemWidth;
  for (const stage of spec.stages) {
    for (let b = 0; b < stage.depth; b++) {
      const w = stage.width,
        wb = Math.trunc(w * spec.bottleneck),
        stride = b === 0 ? 2 : 1;
      const sideIn = side;
      side = Math.ceil(side / stride);
      macs += wIn * wb * sideIn * sideIn; // 1x1 a (at the input resolution)
      macs += 9 * stage.groupWidth * wb * side * side; // grouped 3x3 b, strided
      if (spec.se > 0) macs += 2 * wb * Math.round(spec.se * wIn);
      macs += wb * w * side * side; // 1x1 c
      if (wIn !== w || stride !== 1) macs += wIn * w * side * side; // projection
      wIn = w;
    }
  }
  return macs + wIn * classes;
}
