/** `wildstream ingest <url-list...> --out <store>`: URL lists -> images in Arrow shards (resumable: rerun to continue). */
import { INGEST_OPTIONS } from '../ingest/options.js';
import { ingestJob } from '../jobs/ingest.js';
import { defineCommand } from './define.js';

export const ingestCommand = () =>
  defineCommand({
    name: 'ingest',
    description: 'download the images of URL lists into Arrow shards (resumable: rerun to continue)',
    args: [['<url-list...>', 'URL lists (.txt .csv .tsv .jsonl .parquet, .gz of text ones) or directories']],
    options: INGEST_OPTIONS,
    run: ([lists], o) => ingestJob(lists, o, { command: 'ingest' }),
  });
