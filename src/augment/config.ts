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

/** Parses `2x224@0.14-1,6x96@0.05-0.14` (count x size @ min-max area scale; the scale part is optional). */
export function parseCrops(spec: string): CropGroup[] {
  const groups = spec.split(',').map((part) => {
    const m = /^\s*(\d+)x(\d+)(?:@([\d.]+)-([\d.]+))?\s*$/.exec(part);
    if (!m) throw new ConfigError(`crop group "${part}" is not COUNTxSIZE[@MIN-MAX], e.g. 2x224@0.14-1`);
    const group: CropGroup = { count: Number(m[1]), size: Number(m[2]), scale: [Number(m[3] ?? 0.08), Number(m[4] ?? 1)] };
    if (group.count < 1 || group.count > 64) throw new ConfigError(`crop count must be 1-64 in "${part}"`);
    if (group.size < 8 || group.size > 1024) throw new ConfigError(`crop size must be 8-1024 in "${part}"`);
    const [lo, hi] = group.scale;
    if (!(lo > 0 && lo <= hi && hi <= 1)) throw new ConfigError(`crop scale must satisfy 0 < min <= max <= 1 in "${part}"`);
    return group;
  });
  if (groups.length === 0) throw new ConfigError('no crop groups');
  return groups;
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

/** Merges user overrides onto the defaults and checks every probability and range. */
export function augmentConfig(overrides: Partial<AugmentConfig> = {}): AugmentConfig {
  const c: AugmentConfig = { ...DEFAULT_AUGMENT, ...overrides };
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
