/** `wildstream crawl <seed-url|seed-list>... --out <store>`: crawl sites politely, then ingest the images found. */
import { CRAWL_OPTIONS } from '../crawl/options.js';
import { crawlJob } from '../jobs/crawl.js';
import { defineCommand } from './define.js';

export const crawlCommand = () =>
  defineCommand({
    name: 'crawl',
    description:
      'crawl sites for images (robots.txt, per-host limits), then ingest them (resumable: rerun to continue)',
    args: [['<seed...>', 'seed page URLs, or files listing them one a line']],
    options: CRAWL_OPTIONS,
    run: ([seeds], o) => crawlJob(seeds, o),
  });
