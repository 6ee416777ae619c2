/**
 * `wildstream crawl <seed-url|seed-list>... --out <store>`: crawl the sites politely, then ingest the images
 * found exactly as `ingest` does (fetch, decode, dedupe, units). Both halves resume: the crawl from its
 * committed units, the ingest from its committed units (the image list is rebuilt identically).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { intArg, storeOptions } from '../cli-options.js';
import { ConfigError } from '../errors.js';
import { Fetcher } from '../ingest/fetch.js';
import { fetchOptionsFrom, ingestFromOptions, withIngestOptions } from '../ingest/command.js';
import { openStore } from '../shards/store.js';
import { crawl } from './crawler.js';
import { HostGate } from '../ingest/host-gate.js';
import { RobotsCache, ROBOTS_MAX_BYTES } from './robots.js';
import { crawlFoundNothing } from './outcome.js';
import { makeDirs } from '../shards/make-dirs.js';

export function crawlCommand(): Command {
  return withIngestOptions(
    new Command('crawl')
      .description('crawl sites for images (robots.txt, per-host limits), then ingest them (resumable: rerun to continue)')
      .argument('<seed...>', 'seed page URLs, or files listing them one a line')
      .requiredOption('--out <store>', 'output dataset: a path, file:///abs/path or s3://bucket/prefix')
      .option('--max-pages <n>', 'pages to fetch at most', intArg(1, 100_000_000), 1000)
      .option('--max-depth <n>', 'link hops from a seed', intArg(0, 1000), 3)
      .option('--hosts <list>', 'comma-separated hosts (host[:port]) whose pages are followed (default: the seeds\' hosts)')
      .option('--same-site', "follow pages on the seeds' hosts only (the default)")
      .option('--delay-ms <n>', 'minimum time between requests to one host', intArg(0, 3_600_000), 1000)
      .option('--connections-per-host <n>', 'requests in flight to one host', intArg(1, 64), 2)
      .option('--max-page-bytes <n>', 'largest HTML page read', intArg(1024), 5 * 1024 * 1024)
      .option('--max-links <n>', 'links and images taken from one page', intArg(1, 1_000_000), 1000)
      .option('--pages-per-unit <n>', 'pages per committed crawl unit (the resume granularity)', intArg(1, 1_000_000), 100),
  ).action(async (seedArgs: string[], opts) => {
    const seeds = await readSeeds(seedArgs);
    const store = await openStore(opts.out, storeOptions(opts));
    const gate = new HostGate(opts.connectionsPerHost, opts.delayMs);
    const fetchOptions = { ...fetchOptionsFrom(opts), connectionsPerOrigin: opts.connectionsPerHost, gate };
    const fetcher = new Fetcher({ ...fetchOptions, maxRedirects: 0, maxBytes: opts.maxPageBytes });
    // robots.txt: redirects followed (RFC 9309 allows 5 hops), and only its first 500 KiB read and parsed.
    const robotsFetcher = new Fetcher({ ...fetchOptions, maxRedirects: 5, maxBytes: ROBOTS_MAX_BYTES, truncate: true });
    const result = await crawl(
      { store, fetcher, robots: new RobotsCache(robotsFetcher, 'wildstream'), gate },
      { seeds, maxPages: opts.maxPages, maxDepth: opts.maxDepth, hosts: opts.hosts?.split(',').map((h: string) => h.trim()).filter(Boolean), limits: { maxLinks: opts.maxLinks, maxImages: opts.maxLinks }, pagesPerUnit: opts.pagesPerUnit },
    ).finally(() => Promise.all([fetcher.close(), robotsFetcher.close()]));
    process.stdout.write(`${JSON.stringify({ event: 'crawl_done', pages: result.pages, fetched: result.fetched, images: result.images.length, skipped: result.skipped, resumed: result.resumed })}\n`);
    const list = await writeImageList(opts.out, result.images);
    await ingestFromOptions([list], { ...opts, connectionsPerOrigin: opts.connectionsPerHost }, { fetch: { ...fetchOptions, maxBytes: opts.maxBytes } },
      { command: 'crawl', emptyList: crawlFoundNothing(result) });
  });
}

async function readSeeds(args: string[]): Promise<string[]> {
  const seeds: string[] = [];
  for (const arg of args) {
    if (/^https?:\/\//i.test(arg)) seeds.push(arg);
    else {
      const text = await readFile(arg, 'utf8').catch(() => {
        throw new ConfigError(`seed "${arg}" is neither an http(s) URL nor a readable file`);
      });
      seeds.push(...text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')));
    }
  }
  if (seeds.length === 0) throw new ConfigError('no seed URLs');
  return seeds;
}

/** The found images as a JSONL URL list (url, caption, source_page), next to a local dataset or in tmp. */
async function writeImageList(out: string, images: Array<{ url: string; caption: string | null; source_page: string }>): Promise<string> {
  const dir = /^[a-z][a-z0-9+.-]*:\/\//i.test(out) && !out.startsWith('file://') ? join(tmpdir(), 'wildstream-crawl') : join(out.replace(/^file:\/\//, ''), 'crawl');
  await makeDirs(dir);
  const file = join(dir, 'images.jsonl');
  await writeFile(file, images.map((i) => JSON.stringify(i)).join('\n') + (images.length ? '\n' : ''));
  return file;
}
