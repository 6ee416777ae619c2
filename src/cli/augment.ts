/** `wildstream augment preview <store> --out <png>`: one record's multi-crop views next to the original. */
import { Command } from 'commander';
import { parseCrops } from '../augment/config.js';
import { PREVIEW_OPTIONS } from '../augment/options.js';
import { renderPreview } from '../augment/preview.js';
import { STORE_OPTIONS, storeOptionsOf } from '../shards/options.js';
import { putFile } from '../shards/output.js';
import { openStore } from '../shards/store.js';
import { defineCommand } from './define.js';

export const PREVIEW_RUN_OPTIONS = { ...STORE_OPTIONS, ...PREVIEW_OPTIONS } as const;

export function augmentCommand(): Command {
  const preview = defineCommand({
    name: 'preview',
    description: "render one record's multi-crop views (de-normalised) next to the original as a PNG",
    args: [['<store>', 'dataset location']],
    options: PREVIEW_RUN_OPTIONS,
    run: async ([url], o) => {
      const store = await openStore(url, storeOptionsOf(o));
      const { png, key } = await renderPreview(store, {
        seed: o.seed,
        epoch: o.epoch,
        record: o.record,
        augment: { crops: parseCrops(o.crops) },
      });
      await putFile(o.out, png, storeOptionsOf(o));
      process.stdout.write(`${JSON.stringify({ event: 'preview', key, out: o.out })}\n`);
    },
  });
  return new Command('augment').description('look at the multi-crop augmentation').addCommand(preview);
}
