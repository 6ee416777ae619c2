/**
 * Robots directives (indexing rules) as a page's `<meta name="robots">` and a response's `X-Robots-Tag` give
 * them, read by one parser so that a directive means the same in both places. The syntax is Google's "Robots
 * meta tag, data-nosnippet, and X-Robots-Tag specifications"
 * (https://developers.google.com/search/docs/crawling-indexing/robots-meta-tag), which other crawlers follow:
 * - directives are a comma-separated list, case-insensitive; several meta tags, or several X-Robots-Tag
 *   headers, add up, and where they conflict the more restrictive one applies;
 * - some directives take a value after a colon (`max-snippet: 20`, `max-image-preview: none`,
 *   `max-video-preview: -1`, `unavailable_after: 2025-06-25`): the value is that directive's, never a
 *   directive of its own (`max-image-preview:none` limits previews in search results; it is not `none`);
 * - an X-Robots-Tag may name a crawler before the directives (`otherbot: noindex, nofollow`): the name scopes
 *   the directives that follow it in that header value, up to the next name (MDN: `<indexing-rule>,
 *   <bot-name>: <indexing-rule>`); directives before any name are for every crawler. A meta tag names the
 *   crawler in its `name` attribute instead (`robots` is every crawler).
 * `noai` and `noimageai` are not Google's: they are the opt-out from AI training that DeviantArt proposed and
 * other sites adopted, honoured here for what this tool does.
 */

/** The crawler name directives may be scoped to (X-Robots-Tag `wildstream: noai`, `<meta name="wildstream">`). */
export const ROBOTS_AGENT = 'wildstream';

/** Directives whose `name: value` form is the directive with a value, not a crawler name and a directive. */
const VALUED = new Set(['max-snippet', 'max-image-preview', 'max-video-preview', 'unavailable_after']);

/**
 * Directives that keep a resource's images out of this tool's dataset, wherever they are given: on an image
 * (X-Robots-Tag) the image is refused; on a page (meta tag or, as Google allows, X-Robots-Tag) its images
 * are not taken.
 * - noindex: do not index (show in results) this page or resource; an image dataset is such an index.
 * - none: noindex and nofollow together.
 * - noimageindex: do not index the images on this page (on an image, the image itself).
 * - noai, noimageai: do not use the content, or its images, to train AI.
 */
const IMAGE_OPT_OUT = ['noindex', 'none', 'noimageindex', 'noai', 'noimageai'];
/** Directives that say a page's links are not to be followed: nofollow, and none (noindex, nofollow). */
const NO_FOLLOW = ['nofollow', 'none'];

/**
 * The directives that apply to `agent` in robots directive lists (each one X-Robots-Tag header value or one
 * meta tag's content), lower-cased, without values: those for every crawler, and those scoped to `agent` or
 * `*`. A valued directive is given by its name (`max-image-preview`).
 */
export function robotsDirectives(lists: Iterable<string>, agent = ROBOTS_AGENT): Set<string> {
  const out = new Set<string>();
  for (const list of lists) {
    let scope: string | null = null; // a name resets at each list: it scopes its own header value only
    for (const item of list.split(',')) {
      const parsed = parseItem(item.trim().toLowerCase());
      if (parsed.agent !== undefined) scope = parsed.agent;
      if (scope !== null && scope !== agent && scope !== '*') continue;
      for (const d of parsed.directives) out.add(d);
    }
  }
  return out;
}

/** True when the directives keep images out of the dataset (IMAGE_OPT_OUT). */
export function optsOutOfImages(directives: ReadonlySet<string>): boolean {
  return IMAGE_OPT_OUT.some((d) => directives.has(d));
}

/** True when the directives say a page's links are not followed (NO_FOLLOW). */
export function noFollow(directives: ReadonlySet<string>): boolean {
  return NO_FOLLOW.some((d) => directives.has(d));
}

/**
 * One comma-separated item: `agent: directive`, `valued-directive: value`, or bare directives. Bare words are
 * split at whitespace too (`noindex nofollow`, a common slip that crawlers accept), but never a value: the
 * text after a valued directive's colon is its value whatever it says.
 */
function parseItem(item: string): { agent?: string; directives: string[] } {
  // A name is a user-agent token (RFC 9309 2.2.1: letters, `_`, `-`) or `*`; "15:00" in a date is none.
  const colon = /^([a-z_*-][a-z0-9_.*-]*)\s*:\s*(.*)$/.exec(item);
  if (!colon) return { directives: words(item) };
  const [, name, rest] = colon as unknown as [string, string, string];
  if (VALUED.has(name)) return { directives: [name] };
  // Not a directive of ours with a value: a crawler name, scoping what follows (`otherbot: max-snippet: 5`).
  const inner = parseItem(rest);
  return { agent: name, directives: inner.directives };
}

function words(text: string): string[] {
  return text.split(/\s+/).filter((w) => w !== '');
}
