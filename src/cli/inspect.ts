/** `wildstream inspect <store>`: a dataset's committed shards, records, bytes, failures and duplicates. */
import { flag } from '../options/declare.js';
import { inspectDataset } from '../shards/dataset.js';
import { STORE_OPTIONS, storeOptionsOf } from '../shards/options.js';
import { openStore } from '../shards/store.js';
import { defineCommand } from './define.js';

export const INSPECT_OPTIONS = { ...STORE_OPTIONS, json: flag({ description: 'print one JSON object' }) } as const;

export const inspectCommand = () =>
  defineCommand({
    name: 'inspect',
    description: 'summarise a dataset: committed shards, records, bytes, failures and duplicates',
    args: [['<store>', 'dataset location: a path, file:///abs/path or s3://bucket/prefix']],
    options: INSPECT_OPTIONS,
    run: async ([url], o) => {
      const summary = await inspectDataset(await openStore(url, storeOptionsOf(o)));
      if (o.json) {
        process.stdout.write(`${JSON.stringify(summary)}\n`);
        return;
      }
      const lines = [
        `shards      ${summary.shards}`,
        `records     ${summary.records}`,
        `bytes       ${summary.bytes}`,
        `duplicates  exact ${summary.duplicates.exact}, near ${summary.duplicates.near}`,
        `failed      ${
          Object.entries(summary.failed)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ') || 'none'
        }`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    },
  });
