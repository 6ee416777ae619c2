/**
 * Evaluation inputs: folders of images (one sub-folder per class for k-NN) and the standard eval transform
 * (torchvision's Resize(size / 0.875) + CenterCrop(size), ImageNet normalisation), decoded by the one image rule every stage reads by (../shards/image-rule.ts).
 */
import { readdir, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../errors.js';
import { imageRefusalOf, openImage, type ImageRefusal } from '../shards/image-rule.js';
import { MANIFEST_KEY, UNITS_DIR } from '../shards/keys.js';

/** The file name endings of the images of a folder; other files are not read. */
export const IMAGE_EXTENSIONS: readonly string[] = ['jpg', 'jpeg', 'png', 'webp', 'gif', 'tif', 'tiff', 'avif'];

/** A file name of an image (IMAGE_EXTENSIONS, any case). */
export const IMAGE_NAME = new RegExp(`\\.(${IMAGE_EXTENSIONS.join('|')})$`, 'i');

export interface LabelledFile {
  path: string;
  /** Path relative to the root, `/`-separated: the record key. */
  key: string;
  /** First folder under the root (the class), or '' for files at the root. */
  label: string;
}

/** The image files of a folder, and the entries that could not be followed. */
export interface ImageListing {
  /** Every image file under the root (symbolic links followed), sorted by key. */
  files: LabelledFile[];
  /** Keys of symbolic links named like images whose target is missing or unreadable: images that failed. */
  broken: string[];
  /** Keys of symbolic links to a folder that contains them (a loop), not followed. */
  loops: string[];
}

/**
 * A local folder given as a path or a `file://` URL, as a path. A folder of images is read from the local
 * disk only: another URL (s3://) is a ConfigError.
 */
export function localFolder(location: string): string {
  if (/^file:/i.test(location)) {
    try {
      return fileURLToPath(location);
    } catch (err) {
      throw new ConfigError(`${location} is not a usable file URL (${(err as Error).message})`);
    }
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location))
    throw new ConfigError(`${location}: a folder of images must be local (a path or file:///abs/path)`);
  return location;
}

/**
 * Every image file under `root` (a path or a file:// URL), sorted by key. Symbolic links are followed, as
 * torchvision's ImageFolder follows them: a link to an image is that image, a link to a folder is walked; a
 * link whose target is missing is listed in `broken` (when named like an image), and one that leads back to a
 * folder it is inside of is listed in `loops` and not followed. Throws a ConfigError when a folder cannot be
 * read.
 */
export async function listImages(root: string): Promise<ImageListing> {
  const top = localFolder(root);
  const out: ImageListing = { files: [], broken: [], loops: [] };
  const unreadable = (dir: string) => (err: NodeJS.ErrnoException) => {
    throw new ConfigError(`cannot read image folder ${dir === top ? root : dir}: ${err.code ?? err.message}`);
  };
  // `inside`: the real paths of the folder being read and of every folder above it, up to the root.
  const walk = async (dir: string, prefix: string, inside: ReadonlySet<string>): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(unreadable(dir));
    for (const e of entries) {
      const path = join(dir, e.name);
      const key = `${prefix}${e.name}`;
      let [file, folder] = [e.isFile(), e.isDirectory()];
      if (e.isSymbolicLink()) {
        const target = await stat(path).catch(() => null);
        if (!target) {
          if (IMAGE_NAME.test(e.name)) out.broken.push(key);
          continue;
        }
        [file, folder] = [target.isFile(), target.isDirectory()];
      }
      if (file && IMAGE_NAME.test(e.name)) {
        out.files.push({ path, key, label: prefix === '' ? '' : prefix.slice(0, prefix.indexOf('/')) });
      } else if (folder) {
        const real = await realpath(path).catch(unreadable(path));
        if (inside.has(real)) out.loops.push(key);
        else await walk(path, `${key}/`, new Set([...inside, real]));
      }
    }
  };
  await walk(top, '', new Set([await realpath(top).catch(unreadable(top))]));
  out.files.sort((a, b) => (a.key < b.key ? -1 : 1));
  out.broken.sort();
  return out;
}

/** What a k-NN folder holds, read as torchvision's ImageFolder reads one: one folder per class. */
export interface ClassListing extends ImageListing {
  /** Images directly in the root, outside every class folder: not used (they have no class). */
  unlabelled: string[];
}

/**
 * The images of a folder of class folders (`<root>/<class>/**\/<image>`), labelled by their class folder.
 * Images at the root beside class folders have no class: they are left out and listed in `unlabelled` (the
 * caller warns). Throws a ConfigError naming the folder and the layout expected when its images are all at
 * its root (no class folder), or when it is a dataset store (whose records carry no label). `what` names the
 * folder in messages (`the train folder`).
 */
export async function listClassImages(root: string, what = 'the folder'): Promise<ClassListing> {
  const all = await listImages(root);
  const atRoot = all.files.filter((f) => f.label === '');
  const files = all.files.filter((f) => f.label !== '');
  const layout = `k-NN reads one folder per class, <folder>/<class>/<image> (as torchvision's ImageFolder does)`;
  if (files.length === 0 && atRoot.length > 0)
    throw new ConfigError(
      `${what} ${root} has ${atRoot.length} image${atRoot.length === 1 ? '' : 's'} but no class folder: ${layout}`,
    );
  if (files.length === 0) {
    const top = localFolder(root);
    const isDataset = async (name: string) => (await stat(join(top, name)).catch(() => null)) !== null;
    if ((await isDataset(MANIFEST_KEY)) || (await isDataset(UNITS_DIR)))
      throw new ConfigError(`${what} ${root} is a dataset store, whose images carry no labels: ${layout}`);
  }
  return { ...all, files, unlabelled: atRoot.map((f) => f.key) };
}

/** Normalised NHWC float32 pixels of a centre crop, or the reason the image rule refuses the bytes. */
export async function evalPixels(
  bytes: Uint8Array,
  size: number,
  mean: number[],
  std: number[],
): Promise<Float32Array | { error: ImageRefusal }> {
  const r = Math.round(size / 0.875);
  const off = Math.floor((r - size) / 2);
  try {
    const opened = openImage(bytes);
    if ('error' in opened) return opened;
    const raw = await opened.image
      .resize(r, r, { fit: 'cover' })
      .extract({ left: off, top: off, width: size, height: size })
      .raw()
      .toBuffer();
    const out = new Float32Array(size * size * 3);
    for (let i = 0; i < out.length; i++) out[i] = (raw[i]! / 255 - mean[i % 3]!) / std[i % 3]!;
    return out;
  } catch (err) {
    return { error: imageRefusalOf(err) };
  }
}
