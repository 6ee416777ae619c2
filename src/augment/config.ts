/**
 * The multi-crop recipe: crop groups plus the photometric augmentations, with SwAV's defaults
 * (facebookresearch/swav `main_swav.py`: 2x224 at scale 0.14-1, 6x96 at 0.05-0.14; colour distortion with
 * strength 1 = jitter 0.8/0.8/0.8/0.2 applied with p 0.8, greyscale p 0.2; Gaussian blur p 0.5, sigma 0.1-2).
 */
import { ConfigError } from '../errors.js';

export interface CropGroup {
  count: number;
  /** Output side in pixels (square crops). */
  size: number;
  /** RandomResizedCrop area fraction range. */
  scale: [number, number];
}

export interface AugmentConfig {
  crops: CropGroup[];
  /** Aspect-ratio range, sampled log-uniformly. */
  ratio: [number, number];
  flipP: number;
  jitterP: number;
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
  greyP: number;
  blurP: number;
  blurSigma: [number, number];
  mean: [number, number, number];
  std: [number, number, number];
}

export const SWAV_CROPS = '2x224@0.14-1,6x96@0.05-0.14';

export const DEFAULT_AUGMENT: AugmentConfig = {
  crops: parseCrops(SWAV_CROPS),
  ratio: [3 / 4, 4 / 3],
  flipP: 0.5,
  jitterP: 0.8,
  brightness: 0.8,
  contrast: 0.8,
  saturation: 0.8,
  hue: 0.2,
  greyP: 0.2,
  blurP: 0.5,
  blurSigma: [0.1, 2.0],
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
};

/** A crop recipe: a spec string such as `2x224@0.14-1,6x96@0.05-0.14`, or the groups it parses to. */
export type CropSpec = string | readonly CropGroup[];

/** What a caller sets: any field of AugmentConfig, the crops also as a spec string. */
export interface AugmentOptions extends Partial<Omit<AugmentConfig, 'crops'>> {
  /** @default SWAV_CROPS (2 global 224 px crops and 6 local 96 px crops) */
  crops?: CropSpec;
}

/** Parses `2x224@0.14-1,6x96@0.05-0.14` (count x size @ min-max area scale; the scale part is optional). */
export function parseCrops(spec: string): CropGroup[] {
  if (typeof spec !== 'string') throw new ConfigError(`a crop spec must be a string such as "${SWAV_CROPS}", got ${describe(spec)}`);
  return spec.split(',').map((part) => {
    const m = /^\s*(\d+)x(\d+)(?:@([\d.]+)-([\d.]+))?\s*$/.exec(part);
    if (!m) throw new ConfigError(`crop group "${part}" is not COUNTxSIZE[@MIN-MAX], e.g. 2x224@0.14-1`);
    return checkGroup({ count: Number(m[1]), size: Number(m[2]), scale: [Number(m[3] ?? 0.08), Number(m[4] ?? 1)] }, `"${part}"`);
  });
}

/** The crop groups of a spec string or of an array of groups (each checked and copied); anything else is a ConfigError. */
export function cropGroups(spec: CropSpec): CropGroup[] {
  if (typeof spec === 'string') return parseCrops(spec);
  if (!Array.isArray(spec)) {
    throw new ConfigError(`crops must be a spec string such as "${SWAV_CROPS}" or an array of { count, size, scale }, got ${describe(spec)}`);
  }
  if (spec.length === 0) throw new ConfigError('no crop groups');
  return spec.map((g: unknown, i) => {
    const { count, size, scale } = (g ?? {}) as Partial<CropGroup>;
    if (!Array.isArray(scale) || scale.length !== 2) throw new ConfigError(`crop group ${i} needs scale: [min, max], got ${describe(g)}`);
    return checkGroup({ count: count as number, size: size as number, scale: [scale[0], scale[1]] }, `crop group ${i}`);
  });
}

function checkGroup(group: CropGroup, where: string): CropGroup {
  const { count, size, scale: [lo, hi] } = group;
  if (!(Number.isInteger(count) && count >= 1 && count <= 64)) throw new ConfigError(`crop count must be 1-64 in ${where}, got ${describe(count)}`);
  if (!(Number.isInteger(size) && size >= 8 && size <= 1024)) throw new ConfigError(`crop size must be 8-1024 in ${where}, got ${describe(size)}`);
  if (!(lo > 0 && lo <= hi && hi <= 1)) throw new ConfigError(`crop scale must satisfy 0 < min <= max <= 1 in ${where}`);
  return group;
}

function describe(value: unknown): string {
  return Array.isArray(value) ? `an array of ${value.length}` : value === null ? 'null' : `${typeof value} ${String(value).slice(0, 40)}`;
}

/** One entry per crop, in output order: the size and scale range of each. */
export function cropList(config: Pick<AugmentConfig, 'crops'>): ReadonlyArray<Readonly<Omit<CropGroup, 'count'>>> {
  // Asked for once per crop of every sample: kept per crop-group list (configs are not changed once made).
  let list = cropLists.get(config.crops);
  if (!list) {
    list = config.crops.flatMap((g) => Array.from({ length: g.count }, () => ({ size: g.size, scale: g.scale })));
    cropLists.set(config.crops, list);
  }
  return list;
}

const cropLists = new WeakMap<readonly CropGroup[], Array<Omit<CropGroup, 'count'>>>();

/** Merges user overrides onto the defaults and checks every probability and range; crops may be a spec string. */
export function augmentConfig(overrides: AugmentOptions = {}): AugmentConfig {
  const c: AugmentConfig = { ...DEFAULT_AUGMENT, ...overrides, crops: cropGroups(overrides.crops === undefined ? DEFAULT_AUGMENT.crops : overrides.crops) };
  for (const name of ['flipP', 'jitterP', 'greyP', 'blurP'] as const) {
    if (!(c[name] >= 0 && c[name] <= 1)) throw new ConfigError(`${name} must be a probability in [0, 1], got ${c[name]}`);
  }
  for (const name of ['brightness', 'contrast', 'saturation'] as const) {
    if (!(c[name] >= 0)) throw new ConfigError(`${name} must be >= 0, got ${c[name]}`);
  }
  if (!(c.hue >= 0 && c.hue <= 0.5)) throw new ConfigError(`hue must be in [0, 0.5], got ${c.hue}`);
  if (!(c.ratio[0] > 0 && c.ratio[0] <= c.ratio[1])) throw new ConfigError(`ratio must be 0 < min <= max`);
  if (!(c.blurSigma[0] > 0 && c.blurSigma[0] <= c.blurSigma[1] && c.blurSigma[1] <= 32)) {
    throw new ConfigError(`blurSigma must be 0 < min <= max <= 32`);
  }
  if (!c.std.every((s) => s > 0)) throw new ConfigError('std must be positive');
  return c;
}
