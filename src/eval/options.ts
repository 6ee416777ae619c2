/** The options of `embed` and `eval knn`: which exported backbone, at what input size, on which backend. */
import { ConfigError } from '../errors.js';
import { choice, int, text, type OptionNames, type OptionSet, type OptionValues } from '../options/declare.js';
import { STORE_OPTIONS } from '../shards/options.js';
import { BACKENDS } from '../train/backend.js';

/** The backbone and how it runs, shared by `embed` and `eval knn`. */
export const BACKBONE_OPTIONS = {
  ...STORE_OPTIONS,
  model: text({
    required: true,
    minLength: 1,
    placeholder: 'dir',
    description: 'exported backbone (from `wildstream export`)',
  }),
  size: int({ min: 8, max: 4096, description: 'input side', defaultText: 'the training crop size' }),
  batch: int({ min: 1, max: 4096, default: 32, description: 'images per forward pass' }),
  backend: choice(BACKENDS, {
    default: 'auto',
    placeholder: 'name',
    description:
      'tfjs backend of the forward pass; the WebGPU engine trains only, so webgpu (and auto, without tensorflow) runs it on wasm',
  }),
} as const;

/** `embed`'s options (its input, a dataset store or a folder of images, is positional). */
export const EMBED_OPTIONS = {
  ...BACKBONE_OPTIONS,
  out: text({
    required: true,
    minLength: 1,
    placeholder: 'file',
    description: 'Arrow IPC file to write (key, embedding): a path, file:///abs/path or s3://bucket/key',
  }),
} as const;

/** `eval knn`'s options. */
export const KNN_OPTIONS = {
  ...BACKBONE_OPTIONS,
  train: text({
    required: true,
    minLength: 1,
    placeholder: 'dir',
    description: 'folder of class folders to vote with',
  }),
  test: text({ required: true, minLength: 1, placeholder: 'dir', description: 'folder of class folders to classify' }),
  k: int({ min: 1, max: 10000, default: 20, description: 'neighbours' }),
} as const;

export type EmbedValues = OptionValues<typeof EMBED_OPTIONS>;
export type KnnValues = OptionValues<typeof KNN_OPTIONS>;

/**
 * Checks a library caller's value of option `key` as its declaration checks a flag or a pipeline key (the same
 * bounds, so a value the CLI refuses is refused here too): a ConfigError naming the option (by `names`, else
 * by its key) and what it takes. `undefined` passes: the default applies.
 */
export function checkOption(set: OptionSet, key: string, value: unknown, names?: OptionNames): void {
  if (value === undefined) return;
  const d = set[key]!;
  const parsed = d.schema.safeParse(value);
  if (parsed.success) return;
  // `integer 1 to 64` -> `an integer from 1 to 64`; `number >= 0` -> `a number >= 0`.
  const bounds = d.bounds?.replace(/^(\w+) (?=\S+ to )/, '$1 from ');
  const wanted = bounds ? `${/^[aeiou]/.test(bounds) ? 'an' : 'a'} ${bounds}` : parsed.error.issues[0]!.message;
  const got = typeof value === 'string' ? JSON.stringify(value) : String(value);
  throw new ConfigError(`${names?.of(key) ?? key} must be ${wanted}, got ${got}`);
}
