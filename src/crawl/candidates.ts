/**
 * Which URL of an `<img>` or `<source>` a crawler fetches. An element offers candidates in two layers: the
 * lazy-load attributes that scripts copy into `src`/`srcset` once the image scrolls into view (what the
 * visitor finally sees), and the eager `src`/`srcset` (often a placeholder while a lazy layer exists). The
 * lazy layer wins when it has a fetchable candidate; within a layer the largest candidate wins (srcset.ts).
 * Every candidate not fetchable is a counted reason, never silently lost.
 */
import { largestCandidate, parseSrcset, type SrcsetCandidate } from './srcset.js';
import type { Resolved } from './url.js';

/** Lazy-load attributes holding one URL, as the common lazy-load libraries and CMSs write them. */
export const LAZY_SRC_ATTRIBUTES = [
  'data-src',
  'data-lazy-src',
  'data-lazy',
  'data-lazyload',
  'data-original',
  'data-original-src',
  'data-echo',
  'data-url',
  'data-hi-res-src',
  'data-full-src',
  'data-orig-file',
  'data-actualsrc',
  'data-defer-src',
  'data-ks-lazyload',
  'data-pagespeed-lazy-src',
  'data-pagespeed-high-res-src',
] as const;

/** Lazy-load attributes holding a srcset. */
export const LAZY_SRCSET_ATTRIBUTES = [
  'data-srcset',
  'data-lazy-srcset',
  'data-original-set',
  'data-pagespeed-lazy-srcset',
] as const;

export interface Picked {
  /** The URL to fetch, or null if the element offers none. */
  url: string | null;
  /**
   * One reason per candidate not taken: url.ts's `data_uri`, `unsupported_scheme`, `bad_url`, and
   * `bad_srcset_candidate` (invalid descriptors), `lazy_placeholder` (the eager src a lazy layer replaces),
   * `no_url` (no candidate at all).
   */
  skipped: string[];
}

type Candidate = SrcsetCandidate & { url: string };

interface Layer {
  candidates: Candidate[];
  /** Whether any attribute of the layer had content, fetchable or not. */
  present: boolean;
}

/** Resolved `src` and `srcset` values of one layer; unfetchable ones and invalid srcset candidates counted. */
function layer(
  srcsets: Array<string | undefined>,
  srcs: Array<string | undefined>,
  resolve: (raw: string) => Resolved,
  skipped: string[],
): Layer {
  const out: Layer = { candidates: [], present: false };
  const take = (c: SrcsetCandidate) => {
    const r = resolve(c.url);
    if ('skip' in r) skipped.push(r.skip);
    else out.candidates.push({ ...c, url: r.url });
  };
  for (const srcset of srcsets) {
    if (!srcset?.trim()) continue;
    out.present = true;
    const parsed = parseSrcset(srcset);
    for (let i = 0; i < parsed.invalid; i++) skipped.push('bad_srcset_candidate');
    parsed.candidates.forEach(take);
  }
  for (const src of srcs) {
    if (!src?.trim()) continue; // `src=""` is no image (HTML: it would resolve to the page itself)
    out.present = true;
    take({ url: src, density: 1 });
  }
  return out;
}

export function pickImage(attrs: Record<string, string | undefined>, resolve: (raw: string) => Resolved): Picked {
  const skipped: string[] = [];
  const lazy = layer(
    LAZY_SRCSET_ATTRIBUTES.map((n) => attrs[n]),
    LAZY_SRC_ATTRIBUTES.map((n) => attrs[n]),
    resolve,
    skipped,
  );
  const eager = layer([attrs.srcset], [attrs.src], resolve, skipped);
  const lazyBest = largestCandidate(lazy.candidates);
  const url = (lazyBest ?? largestCandidate(eager.candidates))?.url ?? null;
  if (lazyBest && attrs.src?.trim()) {
    // The eager src a lazy loader replaces (a spinner, a blurred thumbnail): counted, not fetched.
    const src = resolve(attrs.src);
    if ('url' in src && !lazy.candidates.some((c) => c.url === src.url)) skipped.push('lazy_placeholder');
  }
  if (!lazy.present && !eager.present) skipped.push('no_url');
  return { url, skipped };
}
