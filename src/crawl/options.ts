/** The options of `wildstream crawl`: where to crawl and how politely, plus the ingest options it shares. */
import { FETCH_DECODE_OPTIONS, OUT_DATASET } from '../ingest/options.js';
import { checkHost } from './hosts.js';
import { flag, int, words, type OptionValues } from '../options/declare.js';

export const CRAWL_OPTIONS = {
  out: OUT_DATASET,
  ...FETCH_DECODE_OPTIONS,
  // A link is requested before it is known to be a page, an image or another file, so every request counts;
  // images in a page's markup cost the crawl no request and are bounded per page by maxLinks instead (see
  // CrawlOptions.maxPages and PageLimits).
  maxPages: int({
    min: 1,
    max: 100_000_000,
    default: 1000,
    description: 'links to fetch at most: pages, and the images and files they link to',
  }),
  maxDepth: int({ min: 0, max: 1000, default: 3, description: 'link hops from a seed (a linked image is one)' }),
  hosts: words({
    placeholder: 'list',
    description: 'comma-separated hosts (host[:port]) whose pages are followed',
    defaultText: "the seeds' hosts",
    check: checkHost,
  }),
  sameSite: flag({ description: "follow pages on the seeds' hosts only (the default)" }),
  delayMs: int({ min: 0, max: 3_600_000, default: 1000, description: 'minimum time between requests to one host' }),
  connectionsPerHost: int({ min: 1, max: 64, default: 2, description: 'requests in flight to one host' }),
  maxPageBytes: int({ min: 1024, default: 5 * 1024 * 1024, description: 'largest HTML page read' }),
  maxLinks: int({
    min: 1,
    max: 1_000_000,
    default: 1000,
    description: 'links taken from one page, and images from its markup, each at most this many',
  }),
  pagesPerUnit: int({
    min: 1,
    max: 1_000_000,
    default: 100,
    description: 'pages per committed crawl unit (the resume granularity)',
  }),
} as const;

export type CrawlValues = OptionValues<typeof CRAWL_OPTIONS>;
