/**
 * A crawl's progress in the dataset store, so a stopped crawl continues: every `pagesPerUnit` pages a unit is
 * committed (`crawl/units/<n>.json`: the pages visited, the images found, and the frontier at that moment, each
 * entry with its depth and redirect hops);
 * `crawl/done.json` marks the end. Loading replays the units: visited = all their pages, images = all their
 * images, frontier = the last unit's frontier less what was visited.
 */
import { ConfigError } from '../errors.js';
import { getBytes, type Store } from '../shards/store.js';

export interface FrontierEntry {
  url: string;
  depth: number;
  /** Redirect hops that led here from the last page that was not a redirect (absent: none, as in units of older
   * crawls). Saved with the frontier so that a resumed crawl still ends an endless chain. */
  redirects?: number;
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

const unitKey = (n: number) => `crawl/units/${String(n).padStart(6, '0')}.json`;
const json = async <T>(store: Store, key: string): Promise<T> =>
  JSON.parse(Buffer.from(await getBytes(store, key)).toString('utf8')) as T;

export async function loadCrawl(store: Store, config: object): Promise<CrawlState> {
  const saved = (await store.head('crawl/config.json')) ? await json<object>(store, 'crawl/config.json') : null;
  if (saved && JSON.stringify(saved) !== JSON.stringify(config)) {
    throw new ConfigError(
      `${store.url} holds a crawl with other seeds or options (${JSON.stringify(saved)}); use another --out`,
    );
  }
  if (!saved) await store.put('crawl/config.json', Buffer.from(JSON.stringify(config)));
  const state: CrawlState = {
    units: 0,
    visited: new Map(),
    images: new Map(),
    frontier: null,
    skipped: {},
    done: false,
  };
  const keys: string[] = [];
  for await (const o of store.list('crawl/units/')) if (/^crawl\/units\/\d{6}\.json$/.test(o.key)) keys.push(o.key);
  for (const key of keys.sort()) {
    const unit = await json<CrawlUnit>(store, key);
    for (const p of unit.pages) state.visited.set(p.url, p.status);
    for (const i of unit.images) if (!state.images.has(i.url)) state.images.set(i.url, i);
    for (const [reason, n] of Object.entries(unit.skipped ?? {}))
      state.skipped[reason] = (state.skipped[reason] ?? 0) + n;
    state.frontier = unit.frontier;
    state.units++;
  }
  state.frontier = state.frontier?.filter((f) => !state.visited.has(f.url)) ?? null;
  state.done = (await store.head('crawl/done.json')) !== null;
  return state;
}

export async function commitCrawlUnit(store: Store, unit: CrawlUnit): Promise<void> {
  await store.put(unitKey(unit.unit), Buffer.from(JSON.stringify(unit)));
}

export async function markCrawlDone(store: Store, summary: object): Promise<void> {
  await store.put('crawl/done.json', Buffer.from(JSON.stringify(summary)));
}
