/** `wildstream augment preview <store> --out <png>`: one record's multi-crop views next to the original. */
import { Command } from 'commander';
import { AUGMENT_OPTIONS, PREVIEW_OPTIONS } from '../augment/options.js';
import { renderPreview } from '../augment/preview.js';
import { checkOutputApart, DATASET_FILES } from '../jobs/output-apart.js';
import { STORE_OPTIONS, storeOptionsOf } from '../shards/options.js';
import { putFile } from '../shards/output.js';
import { openStore } from '../shards/store.js';
import { augmentOf, defaultTrainConfig } from '../train/config.js';
import { defineCommand } from './define.js';

/**
 * The store options, preview's own, and the augmentation options train takes (the same declarations), so a
 * preview can be drawn with the augmentation a run trains with.
 */
export const PREVIEW_RUN_OPTIONS = { ...STORE_OPTIONS, ...PREVIEW_OPTIONS, ...AUGMENT_OPTIONS } as const;

export function augmentCommand(): Command {
  const preview = defineCommand({
    name: 'preview',
    description: "render one record's multi-crop views (de-normalised) next to the original as a PNG",
    args: [['<store>', 'dataset location']],
    options: PREVIEW_RUN_OPTIONS,
    run: async ([url], o) => {
      const dataset = { location: url, what: 'the dataset', owns: DATASET_FILES };
      await checkOutputApart('augment preview', { key: 'out', location: o.out }, [dataset]);
      const store = await openStore(url, storeOptionsOf(o));
      const { png, key } = await renderPreview(store, {
        seed: o.seed,
        epoch: o.epoch,
        record: o.record,
        // As train turns these options into its augmentation (and the pipeline's report does).
        augment: augmentOf(defaultTrainConfig({ crops: o.crops, jitterStrength: o.jitterStrength, blurP: o.blur })),
      });
      await putFile(o.out, png, storeOptionsOf(o));
      process.stdout.write(`${JSON.stringify({ event: 'preview', key, out: o.out })}\n`);
    },
  });
  return new Command('augment').description('look at the multi-crop augmentation').addCommand(preview);
}
