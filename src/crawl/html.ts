/**
 * What a crawler takes from one HTML page, with htmlparser2's streaming parser (no DOM, bounded work):
 * links (`<a href>`), images (`<img src>`, the largest `srcset` candidate, `<picture><source srcset>`,
 * `og:image`/`twitter:image`) with a caption (alt text, else the enclosing figure's figcaption), `<base href>`,
 * and `<meta name="robots">` directives. URLs are resolved against the base and normalised.
 */
import { Parser } from 'htmlparser2';

export interface PageImage {
  url: string;
  caption: string | null;
}

export interface PageContent {
  links: string[];
  images: PageImage[];
  /** `noindex`, `noai` or `noimageai` in a robots meta tag: the page is not mined. */
  optedOut: boolean;
  /** `nofollow` or `none`: its links are not followed. */
  noFollow: boolean;
  /** Links or images past the limits, dropped. */
  truncated: boolean;
}

export interface PageLimits {
  /** @default 1000 */
  maxLinks?: number;
  /** @default 1000 */
  maxImages?: number;
}

const OPT_OUT = /\b(noindex|noai|noimageai|none)\b/i;

/** A URL without its fragment, with a lower-case scheme and host and no default port; null if not http(s). */
export function normaliseUrl(raw: string, base: string): string | null {
  try {
    const u = new URL(raw.trim(), base);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
    u.hash = '';
    return u.href;
  } catch {
    return null;
  }
}

/** The widest (`w`) or densest (`x`) candidate of a srcset. */
export function largestSrcset(srcset: string): string | null {
  let best: { url: string; size: number } | null = null;
  for (const part of srcset.split(/,\s+/)) {
    const [url, descriptor = '1x'] = part.trim().split(/\s+/);
    if (!url) continue;
    const size = Number.parseFloat(descriptor) * (descriptor.endsWith('w') ? 1 : 10_000);
    if (!best || size > best.size) best = { url, size: Number.isFinite(size) ? size : 0 };
  }
  return best?.url ?? null;
}

export function extractPage(html: string, pageUrl: string, limits: PageLimits = {}): PageContent {
  const maxLinks = limits.maxLinks ?? 1000, maxImages = limits.maxImages ?? 1000;
  let base = pageUrl;
  const links = new Set<string>();
  const images = new Map<string, PageImage>();
  const out: PageContent = { links: [], images: [], optedOut: false, noFollow: false, truncated: false };
  const figures: Array<{ pending: PageImage[]; caption: string }> = [];
  let inCaption = false;
  const addImage = (raw: string | null | undefined, caption: string | null) => {
    const url = raw ? normaliseUrl(raw, base) : null;
    if (!url || images.has(url)) return;
    if (images.size >= maxImages) return void (out.truncated = true);
    const image = { url, caption: caption?.trim() || null };
    images.set(url, image);
    if (!image.caption) figures[figures.length - 1]?.pending.push(image);
  };
  const parser = new Parser({
    onopentag(name, a) {
      if (name === 'base' && a.href && base === pageUrl) base = normaliseUrl(a.href, pageUrl) ?? pageUrl;
      else if (name === 'a' && a.href) {
        const url = normaliseUrl(a.href, base);
        if (url && !links.has(url)) links.size < maxLinks ? links.add(url) : (out.truncated = true);
      } else if (name === 'img') addImage(a.srcset ? largestSrcset(a.srcset) ?? a.src : a.src, a.alt ?? null);
      else if (name === 'source' && a.srcset) addImage(largestSrcset(a.srcset), null);
      else if (name === 'meta') {
        const key = (a.property ?? a.name ?? '').toLowerCase();
        if (key === 'og:image' || key === 'twitter:image') addImage(a.content, null);
        if (key === 'robots' && OPT_OUT.test(a.content ?? '')) out.optedOut = true;
        if (key === 'robots' && /\b(nofollow|none)\b/i.test(a.content ?? '')) out.noFollow = true;
      } else if (name === 'figure') figures.push({ pending: [], caption: '' });
      else if (name === 'figcaption') inCaption = true;
    },
    ontext(text) {
      if (inCaption && figures.length > 0) figures[figures.length - 1]!.caption += text;
    },
    onclosetag(name) {
      if (name === 'figcaption') inCaption = false;
      if (name === 'figure') {
        const fig = figures.pop();
        for (const image of fig?.pending ?? []) image.caption = fig!.caption.replace(/\s+/g, ' ').trim() || null;
      }
    },
  }, { decodeEntities: true });
  parser.end(html);
  out.links = [...links];
  out.images = [...images.values()];
  return out;
}
