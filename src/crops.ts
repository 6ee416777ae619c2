/**
 * The SwAV multi-crop recipe's values that augment (which draws the crops) and train (which sizes the network
 * and checks a run) share: the crop spec, its parser and per-crop list, and the photometric defaults
 * (facebookresearch/swav `main_swav.py`: 2x224 at scale 0.14-1, 6x96 at 0.05-0.14; colour distortion with
 * strength 1 = jitter 0.8/0.8/0.8/0.2; Gaussian blur p 0.5; ImageNet normalisation). A base module: it imports
 * no stage, so both stages read the one declaration.
 */
import { ConfigError } from './errors.js';

export interface CropGroup {
  count: number;
  /** Output side in pixels (square crops). */
  size: number;
  /** RandomResizedCrop area fraction range. */
  scale: [number, number];
}

/** A crop recipe: a spec string such as `2x224@0.14-1,6x96@0.05-0.14`, or the groups it parses to. */
export type CropSpec = string | readonly CropGroup[];

/** SwAV's crops: 2 global 224 px crops and 6 local 96 px crops. */
export const SWAV_CROPS = '2x224@0.14-1,6x96@0.05-0.14';

/** SwAV's colour distortion strength s (SimCLR's): jitter 0.8s brightness/contrast/saturation, 0.2s hue. */
export const SWAV_JITTER_STRENGTH = 1;

/** SwAV's Gaussian blur probability (crops of about 32 px usually turn it off). */
export const SWAV_BLUR_P = 0.5;

/** ImageNet's per-channel mean and standard deviation, which crops are normalised with. */
export const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];

/** The colour-jitter ranges of distortion strength `s` (SimCLR's `get_color_distortion`; hue at most 0.5). */
export function colourJitter(s: number): { brightness: number; contrast: number; saturation: number; hue: number } {
  return { brightness: 0.8 * s, contrast: 0.8 * s, saturation: 0.8 * s, hue: Math.min(0.5, 0.2 * s) };
}

/** Parses `2x224@0.14-1,6x96@0.05-0.14` (count x size @ min-max area scale; the scale part is optional). */
export function parseCrops(spec: string): CropGroup[] {
  if (typeof spec !== 'string')
    throw new ConfigError(`a crop spec must be a string such as "${SWAV_CROPS}", got ${describe(spec)}`);
  return spec.split(',').map((part) => {
    const m = /^\s*(\d+)x(\d+)(?:@([\d.]+)-([\d.]+))?\s*$/.exec(part);
    if (!m)
      throw new ConfigError(
        `crop group "${part}" is not COUNTxSIZE[@MIN-MAX], e.g. 2x224@0.14-1: COUNT and SIZE are whole numbers, ` +
          `MIN and MAX plain decimals (0.001, not 1e-3: the '-' between them rules out exponents)`,
      );
    return checkGroup(
      { count: Number(m[1]), size: Number(m[2]), scale: [Number(m[3] ?? 0.08), Number(m[4] ?? 1)] },
      `"${part}"`,
    );
  });
}

/** The crop groups of a spec string or of an array of groups (each checked and copied); anything else is a ConfigError. */
export function cropGroups(spec: CropSpec): CropGroup[] {
  if (typeof spec === 'string') return parseCrops(spec);
  if (!Array.isArray(spec)) {
    throw new ConfigError(
      `crops must be a spec string such as "${SWAV_CROPS}" or an array of { count, size, scale }, got ${describe(spec)}`,
    );
  }
  if (spec.length === 0) throw new ConfigError('no crop groups');
  return spec.map((g: unknown, i) => {
    const { count, size, scale } = (g ?? {}) as Partial<CropGroup>;
    if (!Array.isArray(scale) || scale.length !== 2)
      throw new ConfigError(`crop group ${i} needs scale: [min, max], got ${describe(g)}`);
    return checkGroup({ count: count as number, size: size as number, scale: [scale[0], scale[1]] }, `crop group ${i}`);
  });
}

/** The number of crops per image a recipe draws. */
export function cropCount(spec: CropSpec): number {
  return cropGroups(spec).reduce((n, g) => n + g.count, 0);
}

/** The output side of every crop, in output order. */
export function cropSizes(spec: CropSpec): number[] {
  return cropList({ crops: cropGroups(spec) }).map((c) => c.size);
}

function checkGroup(group: CropGroup, where: string): CropGroup {
  const {
    count,
    size,
    scale: [lo, hi],
  } = group;
  if (!(Number.isInteger(count) && count >= 1 && count <= 64))
    throw new ConfigError(`crop count must be 1-64 in ${where}, got ${describe(count)}`);
  if (!(Number.isInteger(size) && size >= 8 && size <= 1024))
    throw new ConfigError(`crop size must be 8-1024 in ${where}, got ${describe(size)}`);
  if (!(lo > 0 && lo <= hi && hi <= 1))
    throw new ConfigError(`crop scale must satisfy 0 < min <= max <= 1 in ${where}`);
  return group;
}

function describe(value: unknown): string {
  return Array.isArray(value)
    ? `an array of ${value.length}`
    : value === null
      ? 'null'
      : `${typeof value} ${String(value).slice(0, 40)}`;
}

/** One entry per crop, in output order: the size and scale range of each. */
export function cropList(config: {
  readonly crops: readonly CropGroup[];
}): ReadonlyArray<Readonly<Omit<CropGroup, 'count'>>> {
  // Asked for once per crop of every sample: kept per crop-group list (configs are not changed once made).
  let list = cropLists.get(config.crops);
  if (!list) {
    list = config.crops.flatMap((g) => Array.from({ length: g.count }, () => ({ size: g.size, scale: g.scale })));
    cropLists.set(config.crops, list);
  }
  return list;
}

const cropLists = new WeakMap<readonly CropGroup[], Array<Omit<CropGroup, 'count'>>>();
