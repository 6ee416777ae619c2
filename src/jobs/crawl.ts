/**
 * A crawl as `wildstream crawl` and a pipeline's crawl stage do it: crawl the sites politely, then ingest the
 * images found exactly as `ingest` does (fetch, decode, dedupe, units). Both halves resume: the crawl from its
 * committed units, the ingest from its committed units (the image candidates, its source, are rebuilt identically).
 */
import { readFile } from 'node:fs/promises';
import { crawl } from '../crawl/crawler.js';
import type { CrawlValues } from '../crawl/options.js';
import { crawlFoundNothing } from '../crawl/outcome.js';
import { RobotsCache, ROBOTS_MAX_BYTES } from '../crawl/robots.js';
import { crawlSource } from '../crawl/source.js';
import { ConfigError } from '../errors.js';
import { Fetcher, MAX_REDIRECTS } from '../ingest/fetch.js';
import { HostGate } from '../ingest/host-gate.js';
import { fetchOptionsOf } from '../ingest/options.js';
import { checkUrl } from '../ingest/url-list.js';
import type { IngestSummary } from '../ingest/summary.js';
import { storeOptionsOf } from '../shards/options.js';
import { INGEST_RUN, lockRun, type RunLock } from '../shards/run-lock.js';
import { openStore, type Store } from '../shards/store.js';
import { refuseQueued } from '../ingest/queue-mark.js';
import { ingestJob } from './ingest.js';

/** Crawls from `seeds` (page URLs, or files listing them one a line) and ingests what it finds into `o.out`. */
export async function crawlJob(seedArgs: string[], o: CrawlValues): Promise<IngestSummary> {
  const seeds = await readSeeds(seedArgs);
  const store = await openStore(o.out, storeOptionsOf(o));
  // One job writes a dataset at a time (ingest/dataset-lock.ts): the crawl's units too, so held across both halves.
  const lock = await lockRun(store, INGEST_RUN, { location: o.out });
  try {
    await refuseQueued(store); // as withDatasetLock does: workers may still commit a stopped producer's units
    return await crawlAndIngest(seeds, o, store, lock);
  } finally {
    await lock.release().catch(() => {});
  }
}

/** The crawl, then the ingest of what it found, holding `lock`. */
async function crawlAndIngest(seeds: string[], o: CrawlValues, store: Store, lock: RunLock): Promise<IngestSummary> {
  const gate = new HostGate(o.connectionsPerHost, o.delayMs);
  const fetchOptions = { ...fetchOptionsOf(o), connectionsPerOrigin: o.connectionsPerHost, gate };
  const fetcher = new Fetcher({ ...fetchOptions, maxRedirects: 0, maxBytes: o.maxPageBytes });
  // robots.txt: redirects followed (RFC 9309 asks for 5 hops), and only its first 500 KiB read and parsed.
  const robotsFetcher = new Fetcher({
    ...fetchOptions,
    maxRedirects: MAX_REDIRECTS,
    maxBytes: ROBOTS_MAX_BYTES,
    truncate: true,
  });
  const result = await crawl(
    { store, fetcher, robots: new RobotsCache(robotsFetcher, 'wildstream'), gate },
    {
      seeds,
      maxPages: o.maxPages,
      maxDepth: o.maxDepth,
      hosts: o.hosts,
      limits: { maxLinks: o.maxLinks, maxImages: o.maxLinks },
      pagesPerUnit: o.pagesPerUnit,
    },
  ).finally(() => Promise.all([fetcher.close(), robotsFetcher.close()]));
  const { pages, fetched, skipped, resumed } = result;
  process.stdout.write(
    `${JSON.stringify({ event: 'crawl_done', pages, fetched, images: result.images.length, skipped, resumed })}\n`,
  );
  // The candidates are the ingest job's source (crawl/source.ts): planned and committed as a list's rows are.
  return ingestJob(
    [],
    { ...o, connectionsPerOrigin: o.connectionsPerHost },
    {
      command: 'crawl',
      emptyList: crawlFoundNothing(result),
      extra: {
        fetch: { ...fetchOptions, maxBytes: o.maxBytes },
        source: crawlSource(result.images),
        datasetLock: lock,
      },
    },
  );
}

async function readSeeds(args: string[]): Promise<string[]> {
  const seeds: string[] = [];
  for (const arg of args) {
    if (checkUrl(arg) === null) seeds.push(arg);
    else {
      const text = await readFile(arg, 'utf8').catch(() => {
        throw new ConfigError(`seed "${arg}" is neither an http(s) URL nor a readable file`);
      });
      seeds.push(
        ...text
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => l && !l.startsWith('#')),
      );
    }
  }
  if (seeds.length === 0) throw new ConfigError('no seed URLs');
  return seeds.map(parsedSeed);
}

/**
 * A seed URL as the URL standard parses it, as ingest's lists and fetcher take a URL (checkUrl): `http:host/p`
 * and `http:\\host\p` are http://host/p. The crawler resolves each seed against itself, where such a URL would
 * be a relative path on its own host, so it gets the parsed href. Anything else is left for it to refuse.
 */
function parsedSeed(seed: string): string {
  return checkUrl(seed) === null ? new URL(seed).href : seed;
}
