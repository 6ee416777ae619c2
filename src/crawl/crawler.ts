/**
 * The crawl: breadth-first over HTML pages of the allowed hosts (up to a depth and a page count), never the
 * same normalised URL twice, honouring robots.txt for pages and images, per-host connections and spacing
 * (HostGate) and robots meta tags. Redirects are followed as new frontier entries (each hop checked against
 * the hosts and robots), at most MAX_REDIRECTS hops in a row as ingest's fetcher follows them: a longer chain
 * ends as `too_many_redirects` instead of spending the page budget. Images found are kept with their caption
 * and page; images whose robots.txt disallows them are dropped without ever being requested. Progress is
 * committed in units (state.ts).
 */
import { defined } from '../defaults.js';
import { ConfigError } from '../errors.js';
import { MAX_REDIRECTS, type Fetcher } from '../ingest/fetch.js';
import { noFollow, optsOutOfImages, robotsDirectives } from '../ingest/robots-directives.js';
import type { Store } from '../shards/store.js';
import { normaliseUrl, readPage, refreshTarget, type PageContent, type PageLimits } from './html.js';
import type { HostGate } from '../ingest/host-gate.js';
import { isHtmlResponse } from './mime.js';
import { followsHost } from './hosts.js';
import type { RobotsCache } from './robots.js';
import {
  commitCrawlUnit,
  loadCrawl,
  markCrawlDone,
  type CrawlState,
  type FoundImage,
  type FrontierEntry,
} from './state.js';

export interface CrawlOptions {
  seeds: string[];
  /** @default 1000 */
  maxPages?: number;
  /** Link hops from a seed. @default 3 */
  maxDepth?: number;
  /** Hosts (host[:port]) whose pages are followed. @default the seeds' hosts */
  hosts?: string[];
  /** Pages fetched at once, over all hosts. @default 16 */
  concurrency?: number;
  /** Pages per committed unit. @default 100 */
  pagesPerUnit?: number;
  limits?: PageLimits;
  onPage?: (url: string, status: string) => void;
}

export interface CrawlResult {
  /** Pages visited (fetched or refused), over all committed units and this run. */
  pages: number;
  /** Of those, pages fetched and read as HTML. */
  fetched: number;
  images: FoundImage[];
  /** Pages and images skipped or failed, by reason, over all committed units and this run. Image reasons
   * start with `image_` (html.ts and candidates.ts name them). */
  skipped: Record<string, number>;
  resumed: boolean;
}

export interface Deps {
  store: Store;
  fetcher: Fetcher;
  robots: RobotsCache;
  gate: HostGate;
}

export async function crawl(deps: Deps, options: CrawlOptions): Promise<CrawlResult> {
  const o = { maxPages: 1000, maxDepth: 3, concurrency: 16, pagesPerUnit: 100, ...defined(options) };
  const seeds = checkSeeds(o.seeds);
  const hosts = new Set(o.hosts ?? seeds.map((s) => new URL(s).host));
  const state = await loadCrawl(deps.store, {
    seeds,
    maxPages: o.maxPages,
    maxDepth: o.maxDepth,
    hosts: [...hosts].sort(),
  });
  const resumed = state.units > 0;
  const run = new CrawlRun(deps, o, hosts, state);
  if (!state.done) await run.go(state.frontier ?? seeds.map((url) => ({ url, depth: 0 })));
  const fetched = [...state.visited.values()].filter((status) => status === 'ok').length;
  return { pages: state.visited.size, fetched, images: [...state.images.values()], skipped: run.skipped, resumed };
}

/**
 * The seeds as normalised URLs. One that is no http(s) URL (a typo in a seed file: `example.org/gallery`) is
 * refused by name rather than dropped, which would leave its site uncrawled without a word.
 */
function checkSeeds(given: readonly string[]): string[] {
  if (given.length === 0) throw new ConfigError('no seed URLs given');
  const seeds = given.map((s) => normaliseUrl(s, s));
  const bad = given.filter((_, i) => seeds[i] === null);
  if (bad.length > 0) {
    const named = bad.slice(0, 3).map((s) => JSON.stringify(s));
    const more = bad.length > 3 ? ` and ${bad.length - 3} more` : '';
    throw new ConfigError(
      `seeds that are no http(s) URL: ${named.join(', ')}${more} (expected e.g. https://example.org/)`,
    );
  }
  return seeds as string[];
}

/**
 * A page's links, led by its Refresh header's target: browsers go there as they go to a meta refresh's (HTML
 * "initialise the document" runs the same refresh steps on the header, before any `<base>` is parsed, so it
 * resolves against the page URL).
 */
function withRefresh(page: PageContent, refresh: string | undefined, pageUrl: string): string[] {
  const target = refresh === undefined ? null : refreshTarget(refresh);
  const url = target === null ? null : normaliseUrl(target, pageUrl, page.encoding);
  return url === null ? page.links : [url, ...page.links];
}

class CrawlRun {
  readonly skipped: Record<string, number>;
  private unitSkipped: Record<string, number> = {};
  private queue: FrontierEntry[] = [];
  private readonly queued = new Set<string>();
  private readonly inflight = new Map<string, FrontierEntry>();
  private unitPages: Array<{ url: string; status: string }> = [];
  private unitImages: FoundImage[] = [];
  /** Pages visited or queued: past maxPages nothing more is queued (BFS would never reach it), which bounds
   * the frontier kept in memory and in each committed unit. */
  private admitted = 0;

  constructor(
    private readonly d: Deps,
    private readonly o: Required<Omit<CrawlOptions, 'hosts' | 'limits' | 'onPage'>> & CrawlOptions,
    private readonly hosts: Set<string>,
    private readonly state: CrawlState,
  ) {
    this.skipped = { ...state.skipped };
  }

  async go(frontier: FrontierEntry[]): Promise<void> {
    this.admitted = this.state.visited.size;
    for (const f of frontier) this.enqueue(f);
    const running = new Set<Promise<void>>();
    while (this.queue.length > 0 || running.size > 0) {
      while (
        this.queue.length > 0 &&
        running.size < this.o.concurrency &&
        this.state.visited.size + this.inflight.size < this.o.maxPages
      ) {
        const entry = this.queue.shift()!;
        this.inflight.set(entry.url, entry);
        const task: Promise<void> = this.visit(entry).finally(() => running.delete(task));
        running.add(task);
      }
      if (running.size === 0) break;
      await Promise.race(running);
      if (this.unitPages.length >= this.o.pagesPerUnit) await this.commit();
    }
    await this.commit();
    await markCrawlDone(this.d.store, {
      pages: this.state.visited.size,
      images: this.state.images.size,
      skipped: this.skipped,
    });
    this.state.done = true;
  }

  private enqueue(f: FrontierEntry): void {
    if (f.depth > this.o.maxDepth || this.state.visited.has(f.url) || this.queued.has(f.url)) return;
    if (!followsHost(this.hosts, new URL(f.url))) return void this.count('external_link');
    if (this.admitted >= this.o.maxPages) return void this.count('beyond_max_pages');
    this.admitted++;
    this.queued.add(f.url);
    this.queue.push(f);
  }

  private count(reason: string, n = 1): void {
    this.skipped[reason] = (this.skipped[reason] ?? 0) + n;
    this.unitSkipped[reason] = (this.unitSkipped[reason] ?? 0) + n;
  }

  private async visit(entry: FrontierEntry): Promise<void> {
    let status = 'ok';
    try {
      status = await this.fetchPage(entry);
    } catch (err) {
      status = `error: ${(err as Error).message}`;
    }
    this.inflight.delete(entry.url);
    this.state.visited.set(entry.url, status);
    this.unitPages.push({ url: entry.url, status });
    if (status !== 'ok') this.count(status);
    this.o.onPage?.(entry.url, status);
  }

  private async fetchPage(entry: FrontierEntry): Promise<string> {
    const refused = await this.refusal(entry.url);
    if (refused) return refused;
    // The page's X-Robots-Tag weighs as its meta tags do (Google's spec gives them the same directives):
    // `noindex` keeps its images out but not its links, `nofollow` its links.
    const got = await this.d.fetcher.fetch(entry.url, 'text/html,application/xhtml+xml', { robotsTag: false });
    if (!got.ok) return got.reason === 'redirect' && got.location ? this.follow(entry, got.location) : got.reason;
    if (!isHtmlResponse(got.contentType, got.bytes)) return 'not_html';
    const page = readPage(got.bytes, got.contentType, entry.url, this.o.limits);
    const header = robotsDirectives(got.robotsTags ?? []);
    if (page.truncated) this.count('page_truncated');
    if (!page.noFollow && !noFollow(header))
      for (const url of withRefresh(page, got.refresh, entry.url)) this.enqueue({ url, depth: entry.depth + 1 });
    if (optsOutOfImages(header)) return 'robots_tag';
    if (page.optedOut) return 'robots_meta';
    for (const [reason, n] of Object.entries(page.skipped)) this.count(`image_${reason}`, n);
    for (const image of page.images) {
      const refused = this.state.images.has(image.url) ? null : await this.refusal(image.url);
      // Asked again after the wait: a page crawled meanwhile may have taken the image (its robots.txt wait is
      // shared), and the first to take it keeps it, as a resumed crawl's replay of the units keeps the first.
      if (this.state.images.has(image.url)) {
        this.count('image_found_before');
        continue;
      }
      if (refused) {
        this.count(`image_${refused}`);
        continue;
      }
      const found = { ...image, source_page: entry.url };
      this.state.images.set(image.url, found);
      this.unitImages.push(found);
    }
    return 'ok';
  }

  /**
   * Queues a redirect's target as a page at the same depth, one hop further along its chain; past MAX_REDIRECTS
   * hops the chain ends here, as ingest's fetcher ends it (the hop count travels with the queued entry, so
   * concurrent pages and a resumed crawl count each chain on its own).
   */
  private follow(entry: FrontierEntry, location: string): string {
    const redirects = (entry.redirects ?? 0) + 1;
    if (redirects > MAX_REDIRECTS) return 'too_many_redirects';
    this.enqueue({ url: normaliseUrl(location, entry.url) ?? location, depth: entry.depth, redirects });
    return 'redirect';
  }

  /** null when robots.txt says yes, else why not (RobotsCache.refusal); its Crawl-delay (if any) becomes the host's spacing. */
  private async refusal(url: string): Promise<string | null> {
    const refused = await this.d.robots.refusal(url);
    const delay = await this.d.robots.delayMs(url);
    if (delay > 0) this.d.gate.setDelay(new URL(url).host, delay);
    return refused;
  }

  private async commit(): Promise<void> {
    if (this.unitPages.length === 0 && this.state.units > 0) return;
    const frontier = [...this.inflight.values(), ...this.queue];
    // Taken before the write: pages finishing while it is under way belong to the next unit, not to none.
    const pages = this.unitPages,
      images = this.unitImages,
      skipped = this.unitSkipped;
    this.unitPages = [];
    this.unitImages = [];
    this.unitSkipped = {};
    await commitCrawlUnit(this.d.store, {
      unit: this.state.units,
      pages,
      images,
      frontier,
      skipped,
      committedAt: new Date().toISOString(),
    });
    this.state.units++;
  }
}
