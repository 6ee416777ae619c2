/**
 * The multi-crop recipe: crop groups plus the photometric augmentations, with SwAV's defaults (the crop spec
 * and the values train shares live in the base module crops.ts; re-exported here for augment's callers).
 * Flip p 0.5, jitter applied with p 0.8, greyscale p 0.2, blur sigma 0.1-2 (facebookresearch/swav `main_swav.py`).
 */
import { isChannelTriple } from '../crop-tensor.js';
import { defined } from '../defaults.js';
import { ConfigError } from '../errors.js';
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

/** Merges user overrides onto the defaults and checks every probability and range; crops may be a spec string. */
export function augmentConfig(overrides: AugmentOptions = {}): AugmentConfig {
  const c: AugmentConfig = {
    ...DEFAULT_AUGMENT,
    ...defined(overrides),
    crops: cropGroups(overrides.crops === undefined ? DEFAULT_AUGMENT.crops : overrides.crops),
  };
  for (const name of ['flipP', 'jitterP', 'greyP', 'blurP'] as const) {
    if (!(c[name] >= 0 && c[name] <= 1))
      throw new ConfigError(`${name} must be a probability in [0, 1], got ${c[name]}`);
  }
  for (const name of ['brightness', 'contrast', 'saturation'] as const) {
    if (!(c[name] >= 0)) throw new ConfigError(`${name} must be >= 0, got ${c[name]}`);
  }
  if (!(c.hue >= 0 && c.hue <= 0.5)) throw new ConfigError(`hue must be in [0, 0.5], got ${c.hue}`);
  if (!(c.ratio[0] > 0 && c.ratio[0] <= c.ratio[1])) throw new ConfigError(`ratio must be 0 < min <= max`);
  if (!(c.blurSigma[0] > 0 && c.blurSigma[0] <= c.blurSigma[1] && c.blurSigma[1] <= 32)) {
    throw new ConfigError(`blurSigma must be 0 < min <= max <= 32`);
  }
  if (!isChannelTriple(c.mean, false))
    throw new ConfigError(`mean must be 3 finite numbers (R, G, B), got ${String(c.mean)}`);
  if (!isChannelTriple(c.std, true))
    throw new ConfigError(`std must be 3 finite positive numbers (R, G, B), got ${String(c.std)}`);
  return c;
}
