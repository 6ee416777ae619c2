/**
 * robots.txt per origin (robots-parser), fetched once through the crawler's own fetcher (same SSRF guard and
 * timeouts), as RFC 9309 says: a 4xx means no rules (allow all); a 5xx, 429, timeout or network error means
 * "unreachable" (disallow all); only the first 500 KiB are parsed. Bytes that are not text parse to no rules.
 * A robots.txt fetched is followed whatever its X-Robots-Tag says (2.3.1.1: rules downloaded successfully MUST
 * be followed; a `noindex` there only keeps the file itself out of search results). Paths are compared in
 * RFC 9309 2.2.2's normal form (`robotsPath`), which robots-parser does not apply itself.
 * A fetch this client refuses itself (OWN_REFUSALS) is no answer of the site: its URLs are refused under that
 * reason, so the user learns what to change rather than reading it as the site's rules.
 */
import { createRequire } from 'node:module';
import type { Fetcher } from '../ingest/fetch.js';

export const ROBOTS_MAX_BYTES = 500 * 1024;

interface Robot {
  isAllowed(url: string, ua?: string): boolean | undefined;
  getCrawlDelay(ua?: string): number | undefined;
}

// A CommonJS module whose typings declare an ES default export: load it as what it is.
const robotsParser = createRequire(import.meta.url)('robots-parser') as (url: string, text: string) => Robot;

/**
 * Robots fetch failures that are this client's own refusal, never reaching the site, so neither RFC 9309's
 * "unavailable" (allow all) nor "unreachable" (disallow all) applies: the rules stay unknown, and the origin's
 * URLs are refused under the same reason, which is what fetching them would give too (same guard, same origin).
 * - blocked_address: the SSRF guard refused the address (--allow-private-network / --allow-address lift it);
 *   also when robots.txt redirects to a refused address, where allowing it is what lets the rules be read.
 * - url_scheme, url_invalid: the robots URL cannot be requested at all (an origin undici rejects).
 * Everything else the site caused (status, timeouts, network errors): RFC 9309 as above.
 */
export const OWN_REFUSALS: ReadonlySet<string> = new Set(['blocked_address', 'url_scheme', 'url_invalid']);

/** The reason a URL is not to be fetched when robots.txt disallows it (or is unreachable). */
export const ROBOTS_DISALLOWED = 'robots_disallowed';

interface Rules {
  /** null when the URL may be fetched, else the reason it may not. */
  refusal(url: string): string | null;
  /** Seconds, or undefined. */
  delay: number | undefined;
}

export class RobotsCache {
  private readonly cache = new Map<string, Promise<Rules>>();

  constructor(
    private readonly fetcher: Fetcher,
    private readonly agent: string,
  ) {}

  async allowed(url: string): Promise<boolean> {
    return (await this.refusal(url)) === null;
  }

  /** null when robots.txt lets the URL be fetched, else why not: ROBOTS_DISALLOWED or one of OWN_REFUSALS. */
  async refusal(url: string): Promise<string | null> {
    return (await this.rules(url)).refusal(url);
  }

  /** Crawl-delay in milliseconds for the URL's origin, if it sets one. */
  async delayMs(url: string): Promise<number> {
    const d = (await this.rules(url)).delay;
    return d !== undefined && Number.isFinite(d) && d > 0 ? Math.min(d, 60) * 1000 : 0;
  }

  private rules(url: string): Promise<Rules> {
    const origin = new URL(url).origin;
    let rules = this.cache.get(origin);
    if (!rules) {
      rules = this.load(origin);
      this.cache.set(origin, rules);
    }
    return rules;
  }

  private async load(origin: string): Promise<Rules> {
    const robotsUrl = `${origin}/robots.txt`;
    const got = await this.fetcher.fetch(robotsUrl, 'text/plain', { robotsTag: false });
    if (!got.ok) {
      if (OWN_REFUSALS.has(got.reason)) return { refusal: () => got.reason, delay: undefined };
      const status = /^http_(\d+)$/.exec(got.reason)?.[1];
      const allowAll = status !== undefined && Number(status) >= 400 && Number(status) < 500 && status !== '429';
      return { refusal: () => (allowAll ? null : ROBOTS_DISALLOWED), delay: undefined };
    }
    const text = got.bytes.subarray(0, ROBOTS_MAX_BYTES).toString('utf8'); // the fetcher truncates there too
    const parsed = robotsParser(robotsUrl, normaliseRules(text));
    return {
      refusal: (u) => (parsed.isAllowed(normaliseUrlPath(u), this.agent) !== false ? null : ROBOTS_DISALLOWED),
      delay: parsed.getCrawlDelay(this.agent),
    };
  }
}

/** RFC 3986 2.3's unreserved characters: their percent-encoded and literal forms are the same URI. */
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * A path (and query) in the normal form RFC 9309 2.2.2 compares in: a percent-encoded unreserved character is
 * decoded (its table: `/foo/bar/%62%61%7A` matches `/foo/bar/baz`; `/%7Efoo` is `/~foo`), any other octet
 * stays encoded, in upper-case hex (`%e3` and `%E3` are one octet). Non-ASCII characters are encoded as UTF-8
 * by the URL parser (URLs) and by robots-parser (rules). A reserved character stays as written either way, so
 * a rule's `*` and `$` keep their meaning, and `%2A` or `%24` stays a literal character that is no wildcard.
 */
export function robotsPath(path: string): string {
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(c) ? c : `%${hex.toUpperCase()}`;
  });
}

/**
 * robots.txt with each allow and disallow rule's path in robotsPath's form, the rest as written. A line is
 * read as robots-parser reads it: a `#` starts a comment, the field name is what precedes the first `:`,
 * without surrounding whitespace, in any case.
 */
export function normaliseRules(text: string): string {
  return text.replace(/^([ \t]*(?:allow|disallow)[ \t]*:)([^#\r\n]*)/gim, (_, field: string, path: string) => {
    return field + robotsPath(path);
  });
}

/** The URL with its path and query in robotsPath's form, as the rules are. */
function normaliseUrlPath(url: string): string {
  const u = new URL(url);
  return `${u.origin}${robotsPath(u.pathname + u.search)}`;
}
