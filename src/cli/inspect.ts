/**
 * `wildstream inspect <store>`: a dataset's committed shards, records, bytes, failures and duplicates, and the
 * problems checkDataset finds (a missing or truncated shard, a corrupt dataset.json), which make it exit 1;
 * `--verify` reads every shard too (verify.ts), for damage at a shard's committed size.
 */
import { flag } from '../options/declare.js';
import { InvalidShardError } from '../errors.js';
import { inspectDataset } from '../ingest/outstanding.js';
import type { DatasetSummary } from '../shards/dataset.js';
import { STORE_OPTIONS, storeOptionsOf } from '../shards/options.js';
import { openStore } from '../shards/store.js';
import { defineCommand } from './define.js';

export const INSPECT_OPTIONS = {
  ...STORE_OPTIONS,
  json: flag({ description: 'print one JSON object' }),
  verify: flag({
    description:
      "also read every shard whole: its bytes must hash to its unit record's sha256, and its record batches and rows match the record",
  }),
} as const;

export const inspectCommand = () =>
  defineCommand({
    name: 'inspect',
    description:
      'summarise a dataset (committed shards, records, bytes, failures, duplicates) and check it: exits 1 when a shard is missing or truncated, or dataset.json is corrupt (with --verify: or a shard is damaged inside, or holds other counts than its unit record)',
    args: [['<store>', 'dataset location: a path, file:///abs/path or s3://bucket/prefix']],
    options: INSPECT_OPTIONS,
    run: async ([url], o) => {
      const summary = await inspectDataset(await openStore(url, storeOptionsOf(o)), { verify: o.verify });
      process.stdout.write(o.json ? `${JSON.stringify(summary)}\n` : text(summary));
      if (summary.problems.length > 0) throw damaged(url, summary.problems);
    },
  });

/** The summary as aligned lines, problems last. */
function text(summary: DatasetSummary): string {
  const failed = Object.entries(summary.failed).map(([k, v]) => `${k} ${v}`);
  const lines = [
    `shards      ${summary.shards}`,
    `records     ${summary.records}`,
    `bytes       ${summary.bytes}`,
    `duplicates  exact ${summary.duplicates.exact}, near ${summary.duplicates.near}`,
    `failed      ${failed.join(', ') || 'none'}`,
    `problems    ${summary.problems.length === 0 ? 'none' : summary.problems.length}`,
    ...summary.problems.map((p) => `  ${p}`),
  ];
  return `${lines.join('\n')}\n`;
}

/** The one-line error (exit 1, as ingest refuses such a dataset) for a dataset with problems, printed above. */
function damaged(url: string, problems: readonly string[]): InvalidShardError {
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more, listed above)` : '';
  return new InvalidShardError(`damaged dataset at ${url}: ${problems[0]}${more}`);
}
