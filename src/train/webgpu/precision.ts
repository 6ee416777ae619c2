/**
 * The WebGPU engine's numeric precision, chosen once per run:
 *   f32    every buffer f32; no loss scaling (an f32 gradient does not underflow where f16 would)
 *   mixed  f16 weight copies and activations inside kernels, f32 accumulation, f32 master weights, momentum
 *          and BatchNorm statistics, dynamic loss scaling (kernels/loss-scale.ts)
 * Mixed needs the device feature `shader-f16`; unset, the precision is mixed where the device offers it.
 */
import { ConfigError } from '../../errors.js';
import { FLAG_NAMES, type OptionNames } from '../../options/declare.js';
import type { GpuDeviceInfo } from './device.js';

export const PRECISIONS = ['f32', 'mixed'] as const;
export type Precision = (typeof PRECISIONS)[number];

/**
 * The precision a run uses on `info`'s device: the one asked for, or mixed where f16 is offered. `names` names
 * the option in the error (the command's flags by default).
 */
export function resolvePrecision(
  requested: Precision | undefined,
  info: GpuDeviceInfo,
  names: OptionNames = FLAG_NAMES,
): Precision {
  const f16 = info.features['shader-f16'];
  if (requested === undefined) return f16 ? 'mixed' : 'f32';
  if (!PRECISIONS.includes(requested))
    throw new ConfigError(`precision must be one of ${PRECISIONS.join(', ')}, got ${JSON.stringify(requested)}`);
  if (requested === 'mixed' && !f16)
    throw new ConfigError(
      `precision mixed needs the WebGPU feature shader-f16, which ${info.description || info.device || 'this adapter'} does not offer: use ${names.set('precision', 'f32')}`,
    );
  return requested;
}

/** One line for the training log: the precision, whether it was chosen, and what the device offers for it. */
export function describePrecision(
  p: Precision,
  requested: Precision | undefined,
  info: GpuDeviceInfo,
  from: 'asked' | 'checkpoint' = 'asked',
): string {
  const why = requested
    ? from === 'checkpoint'
      ? 'kept from the checkpoint resumed'
      : 'as asked'
    : `chosen: shader-f16 ${info.features['shader-f16'] ? 'offered' : 'not offered'}`;
  const what =
    p === 'mixed'
      ? 'f16 weight copies and activations, f32 accumulation, f32 masters, momentum and BatchNorm statistics, dynamic loss scaling'
      : 'f32 throughout, no loss scaling';
  return `precision ${p} (${why}): ${what}`;
}
