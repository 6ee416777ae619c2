/**
 * A crawl's progress in the dataset store, so a stopped crawl continues: every `pagesPerUnit` pages a unit is
 * committed (`crawl/units/<n>.json`: the pages visited, the images found, and the frontier at that moment, each
 * entry with its depth, redirect hops and the page whose link led to it);
 * `crawl/done.json` marks the end. Loading replays the units: visited = all their pages, images = all their
 * images, frontier = the last unit's frontier less what was visited.
 */
import { ConfigError } from '../errors.js';
import { CRAWL_CONFIG_KEY, CRAWL_DONE_KEY, CRAWL_UNITS_DIR, crawlUnitKey } from '../shards/keys.js';
import { getBytes, type Store } from '../shards/store.js';

export interface FrontierEntry {
  url: string;
  depth: number;
  /** Redirect hops that led here from the last page that was not a redirect (absent: none, as in units of older
   * crawls). Saved with the frontier so that a resumed crawl still ends an endless chain. */
  redirects?: number;
  /** The page whose link led here (through any redirects): absent for a seed, and in units of older crawls. */
  referrer?: Referrer;
}

/** What a link carries from its page, for a link that turns out to be an image: it is kept as that page's. */
export interface Referrer {
  page: string;
  /** The link's caption (links.ts), the image's caption; absent when the link has none. */
  caption?: string;
  /** Why the page's own images are not kept (`robots_meta`, `robots_tag`), when it opts out: nor are these. */
  optedOut?: string;
}

export interface FoundImage {
  url: string;
  caption: string | null;
  source_page: string;
}

export interface CrawlUnit {
  unit: number;
  pages: Array<{ url: string; status: string }>;
  images: FoundImage[];
  frontier: FrontierEntry[];
  /** Pages and images skipped or failed during this unit, by reason (absent in units of older crawls). */
  skipped?: Record<string, number>;
  committedAt: string;
}

export interface CrawlState {
  units: number;
  visited: Map<string, string>;
  images: Map<string, FoundImage>;
  frontier: FrontierEntry[] | null;
  /** The committed units' skip counts, summed. */
  skipped: Record<string, number>;
  done: boolean;
}

const json = async <T>(store: Store, key: string): Promise<T> =>
  JSON.parse(Buffer.from(await getBytes(store, key)).toString('utf8')) as T;

export async function loadCrawl(store: Store, config: object): Promise<CrawlState> {
  const saved = (await store.head(CRAWL_CONFIG_KEY)) ? await json<object>(store, CRAWL_CONFIG_KEY) : null;
  if (saved && JSON.stringify(saved) !== JSON.stringify(config)) {
    throw new ConfigError(
      `${store.url} holds a crawl with other seeds or options (${JSON.stringify(saved)}); use another --out`,
    );
  }
  if (!saved) await store.put(CRAWL_CONFIG_KEY, Buffer.from(JSON.stringify(config)));
  const state: CrawlState = {
    units: 0,
    visited: new Map(),
    images: new Map(),
    frontier: null,
    skipped: {},
    done: false,
  };
  const keys: string[] = [];
  for await (const o of store.list(`${CRAWL_UNITS_DIR}/`))
    if (/^crawl\/units\/\d{6,}\.json$/.test(o.key)) keys.push(o.key);
  // By unit number: a name past 999999 has more digits, so the shorter name is the earlier unit.
  for (const key of keys.sort((a, b) => a.length - b.length || (a < b ? -1 : 1))) {
    const unit = await json<CrawlUnit>(store, key);
    for (const p of unit.pages) state.visited.set(p.url, p.status);
    for (const i of unit.images) if (!state.images.has(i.url)) state.images.set(i.url, i);
    for (const [reason, n] of Object.entries(unit.skipped ?? {}))
      state.skipped[reason] = (state.skipped[reason] ?? 0) + n;
    state.frontier = unit.frontier;
    state.units++;
  }
  state.frontier = state.frontier?.filter((f) => !state.visited.has(f.url)) ?? null;
  state.done = (await store.head(CRAWL_DONE_KEY)) !== null;
  return state;
}

export async function commitCrawlUnit(store: Store, unit: CrawlUnit): Promise<void> {
  await store.put(crawlUnitKey(unit.unit), Buffer.from(JSON.stringify(unit)));
}

export async function markCrawlDone(store: Store, summary: object): Promise<void> {
  await store.put(CRAWL_DONE_KEY, Buffer.from(JSON.stringify(summary)));
}
