/**
 * Evaluation inputs: folders of images (one sub-folder per class for k-NN) and the standard eval transform
 * (torchvision's Resize(size / 0.875) + CenterCrop(size), ImageNet normalisation), decoded with sharp.
 */
import { readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import sharp from 'sharp';
import { ConfigError } from '../errors.js';

const IMAGE = /\.(jpe?g|png|webp|gif|tiff?|avif)$/i;

export interface LabelledFile {
  path: string;
  /** Path relative to the root, `/`-separated: the record key. */
  key: string;
  /** First folder under the root (the class), or '' for files at the root. */
  label: string;
}

/** Every image file under `root`, sorted by key. */
export async function listImages(root: string): Promise<LabelledFile[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    throw new ConfigError(`cannot read image folder ${root}: ${err.code ?? err.message}`);
  });
  const files = entries
    .filter((e) => e.isFile() && IMAGE.test(e.name))
    .map((e) => {
      const key = relative(root, join(e.parentPath, e.name)).split(sep).join('/');
      return { path: join(e.parentPath, e.name), key, label: key.includes('/') ? key.split('/')[0]! : '' };
    });
  return files.sort((a, b) => (a.key < b.key ? -1 : 1));
}

/** Normalised NHWC float32 pixels of a centre crop, or null when the bytes do not decode. */
export async function evalPixels(
  bytes: Uint8Array,
  size: number,
  mean: number[],
  std: number[],
): Promise<Float32Array | null> {
  const r = Math.round(size / 0.875);
  const off = Math.floor((r - size) / 2);
  try {
    const raw = await sharp(bytes, { failOn: 'error', limitInputPixels: 100_000_000 })
      .rotate()
      .removeAlpha()
      .toColourspace('srgb')
      .resize(r, r, { fit: 'cover' })
      .extract({ left: off, top: off, width: size, height: size })
      .raw()
      .toBuffer();
    const out = new Float32Array(size * size * 3);
    for (let i = 0; i < out.length; i++) out[i] = (raw[i]! / 255 - mean[i % 3]!) / std[i % 3]!;
    return out;
  } catch {
    return null;
  }
}
