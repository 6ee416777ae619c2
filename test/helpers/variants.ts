/** Near-duplicate variants of a generated photo, as a web would serve them. */
import sharp from 'sharp';
import { photoPixels } from '../../src/fixtures/images.js';

export const VARIANTS = ['half', 'q50', 'crop4', 'bright8', 'webp', 'png'] as const;
export type Variant = (typeof VARIANTS)[number];

export async function variant(
  seed: number,
  kind: Variant,
  width = 320,
  height = 240,
): Promise<{ body: Buffer; type: string }> {
  const base = () => sharp(photoPixels(seed, { width, height }), { raw: { width, height, channels: 3 } });
  switch (kind) {
    case 'half':
      return {
        body: await base()
          .resize(width / 2)
          .jpeg({ quality: 90 })
          .toBuffer(),
        type: 'image/jpeg',
      };
    case 'q50':
      return { body: await base().jpeg({ quality: 50 }).toBuffer(), type: 'image/jpeg' };
    case 'crop4': {
      const dx = Math.round(width * 0.02);
      const dy = Math.round(height * 0.02);
      return {
        body: await base()
          .extract({ left: dx, top: dy, width: width - 2 * dx, height: height - 2 * dy })
          .jpeg()
          .toBuffer(),
        type: 'image/jpeg',
      };
    }
    case 'bright8':
      return { body: await base().modulate({ brightness: 1.08 }).jpeg().toBuffer(), type: 'image/jpeg' };
    case 'webp':
      return { body: await base().webp({ quality: 80 }).toBuffer(), type: 'image/webp' };
    case 'png':
      return { body: await base().png().toBuffer(), type: 'image/png' };
  }
}
