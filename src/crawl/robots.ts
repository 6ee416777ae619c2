/**
 * robots.txt per origin (robots-parser), fetched once through the crawler's own fetcher (same SSRF guard and
 * timeouts), as RFC 9309 says: a 4xx means no rules (allow all); a 5xx, 429, timeout or network error means
 * "unreachable" (disallow all); only the first 500 KiB are parsed. Bytes that are not text parse to no rules.
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

interface Rules {
  allowed(url: string): boolean;
  /** Seconds, or undefined. */
  delay: number | undefined;
}

export class RobotsCache {
  private readonly cache = new Map<string, Promise<Rules>>();

  constructor(private readonly fetcher: Fetcher, private readonly agent: string) {}

  async allowed(url: string): Promise<boolean> {
    return (await this.rules(url)).allowed(url);
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
    const got = await this.fetcher.fetch(robotsUrl, 'text/plain');
    if (!got.ok) {
      const status = /^http_(\d+)$/.exec(got.reason)?.[1];
      const allowAll = status !== undefined && Number(status) >= 400 && Number(status) < 500 && status !== '429';
      return { allowed: () => allowAll, delay: undefined };
    }
    const text = got.bytes.subarray(0, ROBOTS_MAX_BYTES).toString('utf8'); // the fetcher truncates there too
    const parsed = robotsParser(robotsUrl, text);
    return { allowed: (u) => parsed.isAllowed(u, this.agent) !== false, delay: parsed.getCrawlDelay(this.agent) };
  }
}
