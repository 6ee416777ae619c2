/**
 * The augmentation options a command or pipeline stage can set: the crop recipe (checked once, where it is
 * given), colour-jitter strength and blur probability; and `augment preview`'s own.
 */
import { int, num, text, type OptionValues } from '../options/declare.js';
import { parseCrops, SWAV_BLUR_P, SWAV_CROPS, SWAV_JITTER_STRENGTH } from '../crops.js';
import { AUGMENT_LIMITS } from './config.js';

/** A crop spec is checked where it enters (flag or pipeline key): a bad one is a usage error naming the group. */
const checkCrops = (spec: string): string => {
  parseCrops(spec);
  return spec;
};

export const CROPS_OPTION = text({
  default: SWAV_CROPS,
  placeholder: 'spec',
  description: 'crop groups COUNTxSIZE@MIN-MAX,...',
  check: checkCrops,
});

export const AUGMENT_OPTIONS = {
  crops: CROPS_OPTION,
  jitterStrength: num({
    min: 0,
    max: 2.5,
    default: SWAV_JITTER_STRENGTH,
    placeholder: 's',
    description: 'colour distortion strength (1: SwAV; 0.5 suits tiny models)',
  }),
  blur: num({
    min: AUGMENT_LIMITS.blurP[0],
    max: AUGMENT_LIMITS.blurP[1],
    default: SWAV_BLUR_P,
    placeholder: 'p',
    description: 'Gaussian blur probability (SwAV 0.5; 0 for crops of about 32 px)',
  }),
} as const;

export type AugmentValues = OptionValues<typeof AUGMENT_OPTIONS>;

/** `wildstream augment preview`'s options (besides the store options). */
export const PREVIEW_OPTIONS = {
  out: text({
    required: true,
    minLength: 1,
    placeholder: 'file',
    description: 'PNG file to write: a path, file:///abs/path or s3://bucket/key',
  }),
  seed: int({ min: 0, max: 2 ** 32 - 1, default: 0, description: 'stream and augmentation seed' }),
  epoch: int({ min: 0, default: 0, description: 'epoch' }),
  record: int({ min: 0, default: 0, description: 'which record of the epoch' }),
  crops: CROPS_OPTION,
} as const;

export type PreviewValues = OptionValues<typeof PREVIEW_OPTIONS>;
