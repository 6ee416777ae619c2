/**
 * The crawl: breadth-first over HTML pages of the allowed hosts (up to a depth and a page count), never the
 * same normalised URL twice, honouring robots.txt for pages and images, per-host connections and spacing
 * (HostGate) and robots meta tags. Redirects are followed as new frontier entries (each hop checked against
 * the hosts and robots), at most MAX_REDIRECTS hops in a row as ingest's fetcher follows them: a longer chain
 * ends as `too_many_redirects` instead of spending the page budget. Images found are kept with their caption
 * and page; images whose robots.txt disallows them are dropped without ever being requested. Progress is
 * committed in units (state.ts).
 *
 * A link is requested before anyone knows what it is: one that turns out to be an image (mime.ts, by its
 * Content-Type and bytes, never its extension) is kept as an image of the page that linked it, as a browser
 * shows the full-size file a thumbnail links to, and goes where that page's `<img>`s go, with the link's
 * caption. A seed that turns out to be an image is kept as its own page's image, without a caption. Anything
 * else that is no HTML (a PDF, a video, an archive) is a page status.
 */
import { defined } from '../defaults.js';
import { ConfigError } from '../errors.js';
import { MAX_REDIRECTS, type Fetcher } from '../ingest/fetch.js';
import { noFollow, optsOutOfImages, robotsDirectives } from '../ingest/robots-directives.js';
import type { Store } from '../shards/store.js';
import { normaliseUrl, readPage, refreshTarget, type PageContent, type PageLimits } from './html.js';
import type { HostGate } from '../ingest/host-gate.js';
import { imageHead, responseKind, type ResponseKind } from './mime.js';
import { followsHost } from './hosts.js';
import type { RobotsCache } from './robots.js';
import {
  commitCrawlUnit,
  loadCrawl,
  markCrawlDone,
  type CrawlState,
  type FoundImage,
  type FrontierEntry,
  type Referrer,
} from './state.js';

/**
 * The status of a link kept as an image (not a skip). The crawl's image is a candidate, fetched again by ingest
 * (src/jobs/crawl.ts), as an `<img>`'s is: the crawl's output is a list of candidates (its committed units,
 * then ingest's `images.jsonl` source), and ingest fetches, decodes, dedupes and commits each row of it in its
 * own units under its own limits (--max-bytes, retries, X-Robots-Tag), resuming on its own. Passing the body on
 * would mean holding every linked image from crawl time until the ingest unit that takes it, in memory or in a
 * store of blobs, and a resumed crawl has only its units' candidates, not the bodies.
 */
export const LINKED_IMAGE = 'image';

/** The status of a link dropped for its page's opt-out (takeLinked), and that opt-out. */
const OPTED_OUT_LINKS = new Map([
  ['image_robots_meta', 'robots_meta'],
  ['image_robots_tag', 'robots_tag'],
]);

/**
 * What a page request accepts: pages first, then anything, as a browser's navigation does, so that a server
 * negotiating on Accept serves a linked image rather than a 406.
 */
const PAGE_ACCEPT = 'text/html,application/xhtml+xml;q=0.9,image/*;q=0.8,*/*;q=0.5';

export interface CrawlOptions {
  seeds: string[];
  /**
   * Links requested at most (seeds, followed links and redirect hops), whatever each turns out to be: an HTML
   * page, an image it links to (then kept as an image), or another file. What a link is, is known only from
   * its response, and that request is what this budget bounds. Images found in a page's markup (`<img>`,
   * `og:image`) cost the crawl no request and are bounded per page by `limits.maxImages` instead.
   * @default 1000
   */
  maxPages?: number;
  /** Link hops from a seed; an image a page links to is one hop from it, as a linked page is. @default 3 */
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
  /** Links visited (fetched or refused: pages, linked images, other files), over all committed units and this run. */
  pages: number;
  /** Of those, pages fetched and read as HTML (linked images are in `images`). */
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
  /** The queue's entries by URL (until fetched): a later link may give one a referrer that keeps its image. */
  private readonly queued = new Map<string, FrontierEntry>();
  /** Linked images whose own X-Robots-Tag opted out: no other page's link takes them either. */
  private readonly refusedImages = new Set<string>();
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
        this.queued.delete(entry.url);
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
    if (f.depth > this.o.maxDepth) return;
    // Queued or being fetched: its referrer is read once the response is in, so a better one still counts.
    const pending = this.queued.get(f.url) ?? this.inflight.get(f.url);
    if (pending) {
      if (this.keepsImage(f, pending.referrer?.optedOut)) pending.referrer = f.referrer;
      return;
    }
    if (this.state.visited.has(f.url) && !this.keepsImage(f, OPTED_OUT_LINKS.get(this.state.visited.get(f.url)!)))
      return;
    if (!followsHost(this.hosts, new URL(f.url))) return void this.count('external_link');
    // A link to an image taken already (an `<img>` of its page, or one linked before) spends no request.
    if (f.referrer && this.state.images.has(f.url)) return void this.count('image_found_before');
    if (this.admitted >= this.o.maxPages) return void this.count('beyond_max_pages');
    this.admitted++;
    this.queued.set(f.url, f);
    this.queue.push(f);
  }

  /**
   * Whether `f`'s link keeps an image that an earlier link kept out for its page's opt-out (`before`): a page
   * opting out of its images (noimageindex) keeps them out of that page only, and another page's link to one
   * counts (the image's own X-Robots-Tag keeps it out from everywhere: refusedImages).
   */
  private keepsImage(f: FrontierEntry, before: string | undefined): boolean {
    return Boolean(before && f.referrer && !f.referrer.optedOut && !this.refusedImages.has(f.url));
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
    if (status !== 'ok' && status !== LINKED_IMAGE) this.count(status);
    this.o.onPage?.(entry.url, status);
  }

  private async fetchPage(entry: FrontierEntry): Promise<string> {
    // Taken since it was queued (an `<img>` of a page crawled meanwhile): not requested again.
    if (entry.referrer && this.state.images.has(entry.url)) return 'image_found_before';
    const refused = await this.refusal(entry.url);
    if (refused) return refused;
    // The page's X-Robots-Tag weighs as its meta tags do (Google's spec gives them the same directives):
    // `noindex` keeps its images out but not its links, `nofollow` its links.
    const got = await this.d.fetcher.fetch(entry.url, PAGE_ACCEPT, { robotsTag: false, peek: imageHead });
    if (!got.ok) return got.reason === 'redirect' && got.location ? this.follow(entry, got.location) : got.reason;
    const header = robotsDirectives(got.robotsTags ?? []);
    const kind = responseKind(got.contentType, got.bytes);
    // A seed that is itself an image is its own page, as a browser opening it shows the image alone.
    if (kind !== 'html') return this.takeLinked(entry.url, entry.referrer ?? { page: entry.url }, kind, header);
    const page = readPage(got.bytes, got.contentType, entry.url, this.o.limits);
    if (page.truncated) this.count('page_truncated');
    const optedOut = optsOutOfImages(header) ? 'robots_tag' : page.optedOut ? 'robots_meta' : null;
    // The page's own images first: a link of its to one of them then finds it taken (never requested, no page
    // spent), and the image keeps the caption its `<img>` gives it, whatever the timing.
    if (!optedOut) await this.takeImages(page, entry.url);
    if (!page.noFollow && !noFollow(header))
      for (const url of withRefresh(page, got.refresh, entry.url)) {
        const caption = page.linkCaptions.get(url);
        const referrer: Referrer = { page: entry.url, ...(caption && { caption }), ...(optedOut && { optedOut }) };
        this.enqueue({ url, depth: entry.depth + 1, referrer });
      }
    return optedOut ?? 'ok';
  }

  /** The images of a page's markup, each kept once over the crawl unless robots.txt refuses it. */
  private async takeImages(page: PageContent, pageUrl: string): Promise<void> {
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
      this.keep({ ...image, source_page: pageUrl });
    }
  }

  /**
   * A linked response that is no page: an image is kept as its referrer's (robots.txt, the host and the
   * address guard were checked for this URL and each redirect hop before the request), under the same
   * de-duplication and opt-outs as the referrer's `<img>`s; an image the image rule refuses from its bytes is
   * `image_<reason>`; anything else `not_html`.
   */
  private takeLinked(url: string, referrer: Referrer, kind: ResponseKind, header: ReadonlySet<string>): string {
    if (kind === 'other') return 'not_html';
    if (kind !== 'image') return `image_${kind}`;
    if (referrer.optedOut) return `image_${referrer.optedOut}`;
    if (optsOutOfImages(header)) {
      this.refusedImages.add(url);
      return 'image_robots_tag'; // what ingest's fetch would refuse it for
    }
    if (this.state.images.has(url)) return 'image_found_before';
    this.keep({ url, caption: referrer.caption ?? null, source_page: referrer.page });
    return LINKED_IMAGE;
  }

  private keep(found: FoundImage): void {
    this.state.images.set(found.url, found);
    this.unitImages.push(found);
  }

  /**
   * Queues a redirect's target as a page at the same depth, one hop further along its chain; past MAX_REDIRECTS
   * hops the chain ends here, as ingest's fetcher ends it (the hop count travels with the queued entry, so
   * concurrent pages and a resumed crawl count each chain on its own).
   */
  private follow(entry: FrontierEntry, location: string): string {
    const redirects = (entry.redirects ?? 0) + 1;
    if (redirects > MAX_REDIRECTS) return 'too_many_redirects';
    const url = normaliseUrl(location, entry.url) ?? location;
    this.enqueue({ url, depth: entry.depth, redirects, ...(entry.referrer && { referrer: entry.referrer }) });
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
