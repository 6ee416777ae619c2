/**
 * What a crawl that found no image tells its user, in crawl terms (the user gave seeds, not a URL list): the
 * pages visited and fetched, the image candidates skipped, and the top reasons for both, each with its fix
 * where an option of ours decides it (blocked_address: --allow-private-network) or what the site said.
 */
import { MAX_REDIRECTS } from '../ingest/fetch.js';
import { hintFor, plural, type IngestWarning } from '../ingest/summary.js';
import type { CrawlResult } from './crawler.js';

/** Reasons named in the message at most. */
const TOP = 3;

/** The crawler's own reasons (crawler.ts, robots.ts, html.ts), with or without the `image_` prefix. */
const CRAWL_HINTS: Record<string, string> = {
  external_link: 'links to other hosts are not followed: name the hosts to follow with --hosts',
  beyond_max_pages: 'the crawl stopped at --max-pages: raise it',
  page_truncated: 'pages were cut at --max-page-bytes: raise it',
  too_large: 'pages exceed --max-page-bytes: raise it',
  robots_disallowed: "the site's robots.txt disallows them, or could not be read, which RFC 9309 takes as disallow all",
  robots_meta: 'the pages opt out with a robots meta tag (noindex, none, noimageindex, noai, noimageai)',
  robots_tag: 'the site opts out with X-Robots-Tag',
  not_html:
    'the seeds or links are neither HTML pages nor images (PDFs, videos, archives); ingest image URLs with `wildstream ingest`',
  not_an_image: 'links typed as images hold no image the image rule reads (an error page sent as image/jpeg)',
  svg_refused: 'the linked images are SVG, which the image rule refuses',
  redirect: 'the pages redirect: the targets are followed as new pages when their hosts are allowed (--hosts)',
  too_many_redirects: `the pages redirect more than ${MAX_REDIRECTS} times in a row: seed the final page instead`,
  url_scheme: 'the URLs are not http(s)',
  url_invalid: 'the URLs cannot be requested',
  data_uri: 'the images are inline data: URIs',
  unsupported_scheme: 'the image URLs are not http(s)',
  found_before: 'the images were found on an earlier page',
};

/** Fetch reasons whose ingest hint (summary.ts) reads the same for a crawl. */
const FETCH_REASON = /^(http_\d{3}|blocked_address|dns_error|connection_error|timeout|body_error)$/;

/** The `empty_list` warning of a crawl's ingest: why the crawl handed it no image. */
export function crawlFoundNothing(
  result: Pick<CrawlResult, 'pages' | 'fetched' | 'images' | 'skipped'>,
): IngestWarning {
  const imageSkips = Object.entries(result.skipped)
    .filter(([k]) => k.startsWith('image_'))
    .reduce((n, [, v]) => n + v, 0);
  const top = Object.entries(result.skipped)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, TOP);
  const why = top.map(([reason, n]) => {
    const hint = crawlHint(reason);
    return `${reason} ${n}${hint ? ` (${hint})` : ''}`;
  });
  const seen = `${result.fetched} of ${plural(result.pages, 'page')} fetched, ${plural(result.images.length + imageSkips, 'image')} found, ${imageSkips} skipped`;
  return {
    code: 'empty_list',
    ...(top[0] ? { reason: top[0][0] } : {}),
    message: `the crawl found no image to ingest: ${seen}${why.length ? `; top reasons: ${why.join('; ')}` : ''}`,
  };
}

/** What a crawl skip reason means, or undefined when it speaks for itself. */
export function crawlHint(reason: string): string | undefined {
  const base = reason.replace(/^image_/, '');
  return CRAWL_HINTS[reason] ?? CRAWL_HINTS[base] ?? (FETCH_REASON.test(base) ? hintFor(base).text : undefined);
}
