/**
 * The multi-crop recipe: crop groups plus the photometric augmentations, with SwAV's defaults (the crop spec
 * and the values train shares live in the base module crops.ts; re-exported here for augment's callers).
 * Flip p 0.5, jitter applied with p 0.8, greyscale p 0.2, blur sigma 0.1-2 (facebookresearch/swav `main_swav.py`).
 */
import { isChannelTriple } from '../crop-tensor.js';
import { defined } from '../defaults.js';
import { ConfigError, refuseUnknownKeys } from '../errors.js';
import {
  colourJitter,
  cropGroups,
  IMAGENET_MEAN,
  IMAGENET_STD,
  parseCrops,
  SWAV_BLUR_P,
  SWAV_CROPS,
  SWAV_JITTER_STRENGTH,
  type CropGroup,
  type CropSpec,
} from '../crops.js';

export {
  cropCount,
  cropGroups,
  cropList,
  cropSizes,
  parseCrops,
  SWAV_CROPS,
  type CropGroup,
  type CropSpec,
} from '../crops.js';

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

export const DEFAULT_AUGMENT: AugmentConfig = {
  crops: parseCrops(SWAV_CROPS),
  ratio: [3 / 4, 4 / 3],
  flipP: 0.5,
  jitterP: 0.8,
  ...colourJitter(SWAV_JITTER_STRENGTH),
  greyP: 0.2,
  blurP: SWAV_BLUR_P,
  blurSigma: [0.1, 2.0],
  mean: IMAGENET_MEAN,
  std: IMAGENET_STD,
};

/** What a caller sets: any field of AugmentConfig, the crops also as a spec string. */
export interface AugmentOptions extends Partial<Omit<AugmentConfig, 'crops'>> {
  /** @default SWAV_CROPS (2 global 224 px crops and 6 local 96 px crops) */
  crops?: CropSpec;
}

/**
 * The values each numeric field of AugmentConfig may take, inclusive, declared once (the `blur` option's
 * bounds come from here): `augmentConfig` refuses anything else, and any non-finite number. Probabilities are
 * 0-1. Jitter strengths up to 10 draw factors up to 11, which already turn all but the darkest levels white;
 * torchvision's hue shift is at most half a turn. Aspect ratios up to 1:100 either way, far past any
 * RandomResizedCrop recipe (torchvision's is 3:4 to 4:3); an infinite one made the draw NaN. Blur sigmas from
 * 0.01 px (below, no blur; one whose square underflows makes the kernel 0/0) to 32 px, wider than any crop
 * needs. Means and stds are of values on the 0-1 scale; a std below one level (1/255) would turn a one-level
 * step into more than a whole unit.
 */
export const AUGMENT_LIMITS = {
  flipP: [0, 1],
  jitterP: [0, 1],
  greyP: [0, 1],
  blurP: [0, 1],
  brightness: [0, 10],
  contrast: [0, 10],
  saturation: [0, 10],
  hue: [0, 0.5],
  ratio: [0.01, 100],
  blurSigma: [0.01, 32],
  mean: [0, 1],
  std: [1 / 255, 1],
} as const satisfies Record<Exclude<keyof AugmentConfig, 'crops'>, readonly [number, number]>;

/**
 * Merges user overrides onto the defaults and checks every value: each number finite and within
 * AUGMENT_LIMITS, ranges [min, max] with min <= max, mean and std 3 numbers (R, G, B); crops may be a spec
 * string. Anything else is a ConfigError naming the option.
 */
export function augmentConfig(overrides: AugmentOptions = {}): AugmentConfig {
  checkAugmentKeys(overrides);
  const c: AugmentConfig = {
    ...DEFAULT_AUGMENT,
    ...defined(overrides),
    crops: cropGroups(overrides.crops === undefined ? DEFAULT_AUGMENT.crops : overrides.crops),
  };
  for (const name of ['flipP', 'jitterP', 'greyP', 'blurP', 'brightness', 'contrast', 'saturation', 'hue'] as const) {
    if (!within(c[name], AUGMENT_LIMITS[name])) throw outOfRange(name, 'a number', c[name]);
  }
  for (const name of ['ratio', 'blurSigma'] as const) {
    const v: unknown = c[name];
    const pair = Array.isArray(v) && v.length === 2 && v.every((x) => within(x, AUGMENT_LIMITS[name]));
    if (!pair || !(v[0] <= v[1])) throw outOfRange(name, '[min, max] with min <= max, each', v);
  }
  if (!isChannelTriple(c.mean, false) || !c.mean.every((x) => within(x, AUGMENT_LIMITS.mean)))
    throw outOfRange('mean', '3 finite numbers (R, G, B), each', c.mean);
  if (!isChannelTriple(c.std, true) || !c.std.every((x) => within(x, AUGMENT_LIMITS.std)))
    throw outOfRange('std', '3 finite positive numbers (R, G, B), each', c.std);
  return c;
}

/**
 * Options come from users' JavaScript too: `augment` must be an object, and of AugmentConfig's fields only (a
 * misspelt `flip` for `flipP` would otherwise be dropped without a word, and the default silently used).
 */
function checkAugmentKeys(overrides: unknown): void {
  if (overrides === null || typeof overrides !== 'object' || Array.isArray(overrides)) {
    const got = overrides === null ? 'null' : Array.isArray(overrides) ? 'an array' : typeof overrides;
    throw new ConfigError(`augment options must be an object such as { crops: '${SWAV_CROPS}' }, got ${got}`);
  }
  refuseUnknownKeys(overrides, Object.keys(DEFAULT_AUGMENT), 'augment option');
}

function within(v: unknown, [min, max]: readonly [number, number]): boolean {
  return typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max;
}

function outOfRange(name: keyof typeof AUGMENT_LIMITS, what: string, got: unknown): ConfigError {
  const [min, max] = AUGMENT_LIMITS[name];
  const shown = typeof got === 'string' ? `"${got}"` : Array.isArray(got) ? got.map(String).join(',') : String(got);
  return new ConfigError(`${name} must be ${what} from ${name === 'std' ? '1/255' : min} to ${max}, got ${shown}`);
}
