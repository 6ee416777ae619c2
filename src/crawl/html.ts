/**
 * What a crawler takes from one HTML page, with htmlparser2's streaming parser (no DOM, bounded work):
 * links (`<a href>`, `<area href>`, and the target of a `<meta http-equiv=refresh>`, where browsers go next),
 * images, `<base href>`, and the directives of `<meta name="robots">` and `<meta name="wildstream">` (read as
 * X-Robots-Tag's are: robots-directives.ts; a meta tag naming another crawler is not for this one). URLs are
 * resolved as the URL standard does for the page's encoding (url.ts), after decoding the bytes as browsers do
 * (charset.ts).
 *
 * Images: each `<img>` (its largest candidate, lazy-load attributes first: candidates.ts), each `<source>` of
 * a `<picture>`, `og:image` and `twitter:image`, also inside `<noscript>` (htmlparser2 tokenises its content
 * as markup, as a browser without scripting does). Captions where the standards attach them: an `<img>`'s
 * alt; a `<picture>`'s `<source>`s take the alt of its `<img>`; an `og:image` takes the `og:image:alt` that
 * follows it (Open Graph structured properties), `twitter:image` its `twitter:image:alt`; else the enclosing
 * `<figure>`'s figcaption. Every image candidate not taken is counted by reason in `skipped`.
 *
 * Links: each with the caption it gives an image it turns out to point to (a thumbnail linking to the full-size
 * file): its accessible name, else the enclosing figure's figcaption, as for an `<img>` (links.ts).
 */
import { Parser } from 'htmlparser2';
import { noFollow, optsOutOfImages, robotsDirectives, ROBOTS_AGENT } from '../ingest/robots-directives.js';
import { pickImage } from './candidates.js';
import { decodePage } from './charset.js';
import { PageLinks, type LinkRef } from './links.js';
import { resolveUrl } from './url.js';

export { normaliseUrl } from './url.js';

export interface PageImage {
  url: string;
  caption: string | null;
}

export interface PageContent {
  links: string[];
  /** The caption of each link that has one (see the module comment), for what turns out to be an image. */
  linkCaptions: Map<string, string>;
  images: PageImage[];
  /** `noindex`, `none`, `noimageindex`, `noai` or `noimageai` in a robots meta tag: the page is not mined. */
  optedOut: boolean;
  /** `nofollow` or `none` in a robots meta tag: its links are not followed. */
  noFollow: boolean;
  /** Links or images past the limits, dropped. */
  truncated: boolean;
  /**
   * Image candidates not taken, by reason: candidates.ts's reasons and `duplicate_on_page` (an image URL
   * already taken from this page).
   */
  skipped: Record<string, number>;
  /** The encoding the page was read in (WHATWG name). */
  encoding: string;
}

export interface PageLimits {
  /** Distinct links taken from one page, those that turn out to be images included. @default 1000 */
  maxLinks?: number;
  /**
   * Distinct image candidates taken from one page's markup (`<img>`, `<source>`, `og:image`). An image the
   * page links to is one of its links instead: it costs the crawl a request, which maxLinks and the crawl's
   * maxPages bound, while a markup candidate costs it none. @default 1000
   */
  maxImages?: number;
}

const OG_IMAGE = new Set(['og:image', 'og:image:url']);
const TWITTER_IMAGE = new Set(['twitter:image', 'twitter:image:src']);

/** A page's bytes as fetched: decoded by its BOM, Content-Type charset or meta charset, then extracted. */
export function readPage(
  bytes: Uint8Array,
  contentType: string | null,
  pageUrl: string,
  limits: PageLimits = {},
): PageContent {
  const { text, encoding } = decodePage(bytes, contentType);
  return extractPage(text, pageUrl, limits, encoding);
}

/** @param encoding the document's encoding, which URL queries are percent-encoded in. @default 'UTF-8' */
export function extractPage(html: string, pageUrl: string, limits: PageLimits = {}, encoding = 'UTF-8'): PageContent {
  const maxLinks = limits.maxLinks ?? 1000,
    maxImages = limits.maxImages ?? 1000;
  let base = pageUrl,
    baseSet = false;
  const resolve = (raw: string) => resolveUrl(raw, base, encoding);
  const links = new PageLinks(maxLinks, resolve);
  const images = new Map<string, PageImage>();
  const out: PageContent = {
    links: [],
    linkCaptions: new Map(),
    images: [],
    optedOut: false,
    noFollow: false,
    truncated: false,
    skipped: {},
    encoding,
  };
  const skip = (reason: string) => void (out.skipped[reason] = (out.skipped[reason] ?? 0) + 1);
  const figures: Array<{ pending: PageImage[]; links: LinkRef[]; caption: string }> = [];
  const pictures: Array<{ sources: PageImage[] }> = [];
  let inCaption = false;
  let lastOg: PageImage | null = null,
    lastTwitter: PageImage | null = null;

  /** The image for a picked URL (the one already taken if it repeats), or null. */
  const addImage = (picked: { url: string | null; skipped: string[] }, caption: string | null): PageImage | null => {
    picked.skipped.forEach(skip);
    if (!picked.url) return null;
    const text = caption?.replace(/\s+/g, ' ').trim() || null;
    const seen = images.get(picked.url);
    if (seen) {
      skip('duplicate_on_page');
      seen.caption ??= text;
      return seen;
    }
    if (images.size >= maxImages) {
      out.truncated = true;
      return null;
    }
    const image = { url: picked.url, caption: text };
    images.set(picked.url, image);
    figures[figures.length - 1]?.pending.push(image);
    return image;
  };
  const fromMeta = (content: string | undefined) => {
    if (!content?.trim()) return addImage({ url: null, skipped: ['no_url'] }, null);
    const r = resolve(content);
    return addImage('url' in r ? { url: r.url, skipped: [] } : { url: null, skipped: [r.skip] }, null);
  };
  const setCaption = (image: PageImage | null, alt: string | undefined) => {
    if (image && !image.caption) image.caption = alt?.replace(/\s+/g, ' ').trim() || null;
  };

  const onRobots = (content: string) => {
    const directives = robotsDirectives([content]);
    if (optsOutOfImages(directives)) out.optedOut = true;
    if (noFollow(directives)) out.noFollow = true;
  };
  /** A link in a figure that its content and title leave unnamed takes the figcaption, as an `<img>` does. */
  const inFigure = (ref: LinkRef | null) => {
    if (ref) figures[figures.length - 1]?.links.push(ref);
  };
  const onMeta = (a: Record<string, string>) => {
    if (a['http-equiv']?.toLowerCase() === 'refresh') {
      const target = refreshTarget(a.content ?? '');
      if (target !== null) links.add(target);
    }
    const key = (a.property ?? a.name ?? '').toLowerCase();
    if (OG_IMAGE.has(key)) lastOg = fromMeta(a.content);
    else if (TWITTER_IMAGE.has(key)) lastTwitter = fromMeta(a.content);
    else if (key === 'og:image:alt') setCaption(lastOg, a.content);
    else if (key === 'twitter:image:alt') setCaption(lastTwitter, a.content);
    if (key === 'robots' || key === ROBOTS_AGENT) onRobots(a.content ?? '');
  };
  const onImg = (a: Record<string, string>) => {
    addImage(pickImage(a, resolve), a.alt ?? null);
    links.imageAlt(a.alt);
    const picture = pictures[pictures.length - 1];
    if (!picture) return;
    for (const source of picture.sources) setCaption(source, a.alt);
    picture.sources = [];
  };

  const parser = new Parser(
    {
      onopentag(name, a) {
        if (name === 'base' && a.href !== undefined && !baseSet) {
          baseSet = true; // only the first base element with an href counts
          const r = resolveUrl(a.href, pageUrl, encoding);
          if ('url' in r) base = r.url;
          links.baseKnown();
        } else if (name === 'a') inFigure(links.openAnchor(a.href, a.title));
        else if (name === 'area' && a.href) inFigure(links.add(a.href, a.alt || a.title));
        else if (name === 'img') onImg(a);
        else if (name === 'source' && pictures.length > 0) {
          const image = addImage(pickImage({ ...a, src: undefined }, resolve), null);
          if (image && !image.caption) pictures[pictures.length - 1]!.sources.push(image);
        } else if (name === 'picture') pictures.push({ sources: [] });
        else if (name === 'meta') onMeta(a);
        else if (name === 'figure') figures.push({ pending: [], links: [], caption: '' });
        else if (name === 'figcaption') inCaption = true;
        else if (name === 'noscript') links.noscriptTag(true);
      },
      ontext(text) {
        if (inCaption && figures.length > 0) figures[figures.length - 1]!.caption += text;
        links.text(text);
      },
      onclosetag(name) {
        if (name === 'a') links.closeAnchor();
        else if (name === 'noscript') links.noscriptTag(false);
        else if (name === 'figcaption') inCaption = false;
        else if (name === 'picture') pictures.pop();
        else if (name === 'figure') {
          const fig = figures.pop()!;
          for (const image of fig.pending) setCaption(image, fig.caption);
          for (const ref of fig.links) links.name(ref, fig.caption);
        }
      },
    },
    { decodeEntities: true },
  );
  parser.end(html);
  const found = links.result();
  out.links = found.links;
  out.linkCaptions = found.captions;
  out.truncated ||= links.truncated;
  out.images = [...images.values()];
  return out;
}

const isAsciiSpace = (c: string | undefined) => c !== undefined && ' \t\n\f\r'.includes(c);

/**
 * The URL a `<meta http-equiv=refresh>` sends the reader to, as written (HTML "shared declarative refresh
 * steps"), or null where it names none (`5`: reload this page) or is invalid. Browsers go there, so for a
 * crawler it is a link: a page that only refreshes to its gallery would otherwise end the crawl there.
 */
export function refreshTarget(content: string): string | null {
  const rest = afterRefreshTime(content);
  return rest === null ? null : refreshUrl(rest);
}

/** What follows the time and its separator (`0; `, `5,`, `1.5 `), or null where nothing valid follows. */
function afterRefreshTime(content: string): string | null {
  let pos = 0;
  const skipSpace = () => {
    while (isAsciiSpace(content[pos])) pos++;
  };
  skipSpace();
  const timeStart = pos;
  while (/[0-9]/.test(content[pos] ?? '')) pos++;
  if (pos === timeStart && content[pos] !== '.') return null;
  while (/[0-9.]/.test(content[pos] ?? '')) pos++;
  if (pos >= content.length) return null;
  if (!(content[pos] === ';' || content[pos] === ',' || isAsciiSpace(content[pos]))) return null;
  skipSpace();
  if (content[pos] === ';' || content[pos] === ',') pos++;
  skipSpace();
  return pos < content.length ? content.slice(pos) : null;
}

/** The URL of `url=...`, `'...'` or `...`: a `u` that starts no whole `url=` is part of the URL, quotes and all. */
function refreshUrl(rest: string): string | null {
  const prefix = /^url[\t\n\f\r ]*=[\t\n\f\r ]*/i.exec(rest);
  if (!prefix && /^u/i.test(rest)) return rest;
  const value = prefix ? rest.slice(prefix[0].length) : rest;
  const quote = value[0] === '"' || value[0] === "'" ? value[0] : '';
  const url = quote ? value.slice(1).split(quote)[0]! : value;
  return url === '' ? null : url;
}
