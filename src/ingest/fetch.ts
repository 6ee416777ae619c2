/**
 * Downloads one image: undici Agent (per-origin connection cap, connect/headers/idle-body timeouts) with the
 * redirect interceptor composed on it, an overall deadline, Content-Encoding undone and a size cap on the
 * decoded bytes, a byte budget shared by all bodies in flight (body.ts), retries with exponential backoff + full jitter honouring Retry-After, and the SSRF guard
 * in the connector. Every failure is a reason string for the unit's histogram; nothing here throws.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, interceptors, type Dispatcher } from 'undici';
import { defined } from '../defaults.js';
import type { FailureReason } from '../shards/failures.js';
import type { HostGate } from './host-gate.js';
import { discard, readBody } from './body.js';
import { ByteBudget } from './byte-budget.js';
import { ACCEPT_ENCODING, DECODER_ALLOWANCE } from './content-encoding.js';
import { BLOCKED_CODE, guardedConnector, parseAllowList } from './net-guard.js';
import { optsOutOfImages, robotsDirectives } from './robots-directives.js';
import { checkUrl } from './url-list.js';

/**
 * Redirect hops followed before a request fails as `too_many_redirects` (RFC 9309 §2.3.1.2 asks for at least 5
 * for robots.txt; RFC 9110 §15.4 asks clients to detect endless chains). The crawler counts its hops with it too.
 */
export const MAX_REDIRECTS = 5;

export interface FetcherOptions {
  /** Connections per origin. @default 8 */
  connectionsPerOrigin?: number;
  /** @default 10000 */
  connectTimeoutMs?: number;
  /** Time to receive response headers. @default 15000 */
  headersTimeoutMs?: number;
  /** Longest silence while receiving the body. @default 15000 */
  bodyTimeoutMs?: number;
  /** Deadline for one attempt, headers and body together. @default 60000 */
  totalTimeoutMs?: number;
  /** Largest accepted body, counted after Content-Encoding is undone. @default 32 MiB */
  maxBytes?: number;
  /**
   * Bytes of response bodies held at once by all downloads of this fetcher; a download waits for room when it
   * would pass this, so memory stays bounded whatever the concurrency. Decoder memory (a brotli window of up
   * to 16 MiB) counts too, so it must be at least maxBytes + 16.25 MiB (`DECODER_ALLOWANCE`).
   * @default 256 MiB, or maxBytes + DECODER_ALLOWANCE when that is larger
   */
  byteBudget?: number;
  /** @default MAX_REDIRECTS */
  maxRedirects?: number;
  /** Retries after the first attempt on network errors, 408, 429 and 5xx. @default 2 */
  retries?: number;
  /** First backoff; doubles per retry, with full jitter. @default 500 */
  retryBaseMs?: number;
  /** A Retry-After longer than this gives up instead of waiting. @default 10000 */
  maxRetryDelayMs?: number;
  /** @default "wildstream/0.1 (+image dataset downloader)" */
  userAgent?: string;
  /** Allow loopback, private and link-local addresses (for tests and intranets). @default false */
  allowPrivateNetwork?: boolean;
  /** Non-public address ranges (IP or CIDR) allowed anyway, e.g. an intranet mirror. @default [] */
  allowAddresses?: string[];
  /** Keep the first maxBytes of a longer body instead of failing it (robots.txt: parse the first 500 KiB). */
  truncate?: boolean;
  /** Per-host politeness (connections and spacing) shared by every request through this fetcher (crawls). */
  gate?: HostGate | null;
}

export type FetchOutcome =
  /** `release`: with `hold`, frees the body's share of the byte budget; call it once the bytes are consumed. */
  /**
   * `robotsTags`: the response's X-Robots-Tag values, when it had any (the crawler reads a page's with its meta).
   * `refresh`: the Refresh header, when it had one (the crawler follows a page's as a browser does).
   */
  | {
      ok: true;
      bytes: Buffer;
      contentType: string | null;
      url: string;
      release?: () => void;
      robotsTags?: string[];
      refresh?: string;
    }
  /** `location`: where a 3xx pointed, when redirects are not followed (maxRedirects 0, as the crawler runs). */
  | { ok: false; reason: FailureReason; location?: string };

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
/**
 * The statuses whose content is the whole resource (RFC 9110 15.3: 200, and 203 a proxy's transformed copy).
 * Any other 2xx is recorded by its status: a 206 is a part of it (sent without a Range request, it is a cut
 * image or page), and 201, 202, 204, 205 carry no representation of the resource. With `truncate` (robots.txt)
 * every 2xx is read: RFC 9309 2.3.1.1 follows the rules of any successful download, a prefix included, and an
 * empty body has none.
 */
const COMPLETE_STATUS = new Set([200, 203]);
/**
 * The statuses a client redirects on when Location is given (RFC 9110 15.4: 301, 302, 303, 307, 308, and
 * 300 whose Location names the server's preferred choice), as undici's redirect interceptor follows them. Any
 * other 3xx, and one of these without a Location, is an answer to record by its status (a 304 is "not
 * modified", no redirect); only a followable one past the hop limit is `too_many_redirects`.
 */
const REDIRECT_STATUS = new Set([300, 301, 302, 303, 307, 308]);

export class Fetcher {
  private readonly dispatcher: Dispatcher;
  private readonly agent: Agent;
  private readonly o: Required<FetcherOptions>;
  private readonly budget: ByteBudget;

  constructor(options: FetcherOptions = {}) {
    this.o = {
      connectionsPerOrigin: 8,
      connectTimeoutMs: 10_000,
      headersTimeoutMs: 15_000,
      bodyTimeoutMs: 15_000,
      totalTimeoutMs: 60_000,
      maxBytes: 32 * 1024 * 1024,
      maxRedirects: MAX_REDIRECTS,
      retries: 2,
      retryBaseMs: 500,
      maxRetryDelayMs: 10_000,
      userAgent: 'wildstream/0.1 (+image dataset downloader)',
      allowPrivateNetwork: false,
      allowAddresses: [],
      gate: null,
      truncate: false,
      byteBudget: 256 * 1024 * 1024,
      ...defined(options),
    };
    const perDownload = this.o.maxBytes + DECODER_ALLOWANCE;
    if (options.byteBudget === undefined) this.o.byteBudget = Math.max(this.o.byteBudget, perDownload);
    this.budget = new ByteBudget(this.o.byteBudget, perDownload);
    const connect = { timeout: this.o.connectTimeoutMs };
    this.agent = new Agent({
      connections: this.o.connectionsPerOrigin,
      headersTimeout: this.o.headersTimeoutMs,
      bodyTimeout: this.o.bodyTimeoutMs,
      connect: this.o.allowPrivateNetwork ? connect : guardedConnector(connect, parseAllowList(this.o.allowAddresses)),
    });
    this.dispatcher = this.agent.compose(interceptors.redirect({ maxRedirections: this.o.maxRedirects }));
  }

  /**
   * `accept`: the Accept header (images by default; the crawler asks for HTML and robots.txt). `hold`: the body
   * stays counted in the byte budget until the outcome's `release` is called (ingest holds it until decoded, so
   * bodies queued for the decoder are bounded too). `robotsTag`: refuse a response whose X-Robots-Tag opts out
   * (`robots_tag`); false where the body is read for its own sake and not used (robots.txt: RFC 9309 2.3.1.1
   * says rules downloaded successfully are followed, and a robots.txt's `noindex` only keeps that file out of
   * search results) and for pages, whose header directives the crawler weighs with their meta tags. `peek`:
   * given the response's Content-Type, the bytes to keep of a body whose rest is not wanted (the crawler
   * needs only an image's signature to know a link leads to one), or undefined to read it all as usual.
   *
   * The URL is what the URL standard parses it to, as checkUrl decides for a list row (`http:host/p` and
   * `http:\\host\p` are http://host/p to it, and to browsers): checkUrl's reason when it cannot be fetched.
   */
  async fetch(
    url: string,
    accept = 'image/*',
    { hold = false, robotsTag = true, peek }: { hold?: boolean; robotsTag?: boolean; peek?: Peek } = {},
  ): Promise<FetchOutcome> {
    const bad = checkUrl(url);
    if (bad) return { ok: false, reason: bad };
    const target = new URL(url);
    for (let attempt = 0; ; attempt++) {
      const gate = this.o.gate;
      const run = () => this.attempt(target, url, { accept, hold, robotsTag, peek });
      const result = gate ? await gate.run(target.host, run) : await run();
      const delay = 'retryAfterMs' in result ? result.retryAfterMs : undefined;
      if (!('retry' in result) || attempt >= this.o.retries) return result.outcome;
      const backoff = Math.random() * this.o.retryBaseMs * 2 ** attempt;
      if (delay !== undefined && delay > this.o.maxRetryDelayMs) return result.outcome;
      await sleep(Math.max(backoff, delay ?? 0));
    }
  }

  /** Most bytes of bodies this fetcher has held at once (the byte budget bounds it). */
  get peakBodyBytes(): number {
    return this.budget.peak;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** `url`: as the caller gave it, which the outcome reports; `target`: what is requested. */
  private async attempt(target: URL, url: string, how: RequestHow): Promise<Attempt> {
    // A deadline cleared when the attempt ends: a stray abort after completion would error a finished body.
    const deadline = new Deadline(this.o.totalTimeoutMs);
    try {
      return await this.request(target, url, how, deadline);
    } finally {
      deadline.clear();
    }
  }

  private async request(target: URL, url: string, how: RequestHow, deadline: Deadline): Promise<Attempt> {
    const { accept, hold } = how;
    let response: Dispatcher.ResponseData;
    try {
      response = await this.dispatcher.request({
        origin: target.origin,
        path: `${target.pathname}${target.search}`,
        method: 'GET',
        headers: { 'user-agent': this.o.userAgent, accept, 'accept-encoding': ACCEPT_ENCODING },
        signal: deadline,
      });
    } catch (err) {
      return failure(networkReason(err, deadline, 'request'));
    }
    const { statusCode, headers, body } = response;
    const complete = this.o.truncate ? statusCode >= 200 && statusCode < 300 : COMPLETE_STATUS.has(statusCode);
    if (!complete) {
      await discard(body); // never leave an unconsumed body holding the connection
      return this.notOk(statusCode, headers, target);
    }
    const robotsTags = headerValues(headers, 'x-robots-tag');
    if (how.robotsTag && optedOut(robotsTags)) {
      await discard(body);
      return { outcome: { ok: false, reason: 'robots_tag' } };
    }
    const contentEncoding = header(headers, 'content-encoding');
    const declared = Number(header(headers, 'content-length') ?? NaN);
    const contentType = header(headers, 'content-type');
    const peeked = how.peek?.(contentType);
    const max = peeked === undefined ? this.o.maxBytes : Math.min(peeked, this.o.maxBytes);
    const truncate = this.o.truncate || peeked !== undefined;
    if (declared > max && !truncate && !contentEncoding) {
      await discard(body);
      return { outcome: { ok: false, reason: 'too_large' } };
    }
    let read: Awaited<ReturnType<typeof readBody>>;
    try {
      read = await readBody(body, {
        max,
        truncate,
        contentEncoding,
        declaredLength: declared,
        budget: this.budget,
        hold,
      });
    } catch (err) {
      return failure(networkReason(err, deadline, 'body'));
    }
    if (!read.ok) return { outcome: { ok: false, reason: read.reason } };
    const refresh = header(headers, 'refresh');
    return {
      outcome: {
        ok: true,
        bytes: read.bytes,
        contentType,
        url,
        release: read.release,
        ...(robotsTags.length > 0 && { robotsTags }),
        ...(refresh !== null && { refresh }),
      },
    };
  }

  /**
   * A response whose content is not the resource: a redirect not followed (REDIRECT_STATUS with a Location),
   * or a failure named by its status, retried where a later attempt may pass.
   */
  private notOk(statusCode: number, headers: Dispatcher.ResponseData['headers'], target: URL): Attempt {
    const location = header(headers, 'location');
    if (REDIRECT_STATUS.has(statusCode) && location) {
      // The interceptor follows these itself: one reaching here is past the hop limit, or the limit is 0 (the
      // crawler queues the target as a page of its own, checked against its hosts and robots.txt).
      if (this.o.maxRedirects > 0) return { outcome: { ok: false, reason: 'too_many_redirects' } };
      const to = resolveUrl(location, target.href);
      // A target that cannot be fetched fails as the interceptor would fail it, so no hop is counted as taken.
      const bad = to === undefined ? 'url_invalid' : checkUrl(to);
      return { outcome: bad ? { ok: false, reason: bad } : { ok: false, reason: 'redirect', location: to } };
    }
    const reason: FailureReason = `http_${statusCode}`;
    if (!RETRY_STATUS.has(statusCode)) return { outcome: { ok: false, reason } };
    return { outcome: { ok: false, reason }, retry: true, retryAfterMs: retryAfter(header(headers, 'retry-after')) };
  }
}

/** How `fetch` was asked to request a URL. */
/** From a response's Content-Type, how many bytes of its body to keep, or undefined for all (Fetcher.fetch). */
export type Peek = (contentType: string | null) => number | undefined;

interface RequestHow {
  accept: string;
  hold: boolean;
  robotsTag: boolean;
  peek?: Peek | undefined;
}

type Attempt = { outcome: FetchOutcome; retry?: true; retryAfterMs?: number };

/**
 * An attempt's overall deadline, as the EventEmitter signal undici's `request` accepts (documented beside
 * AbortSignal): with an AbortSignal each request costs undici 7 noticeably more CPU (about a third more on a
 * loopback download).
 */
class Deadline extends EventEmitter {
  expired = false;
  private readonly timer: NodeJS.Timeout;

  constructor(ms: number) {
    super();
    this.timer = setTimeout(() => {
      this.expired = true;
      this.emit('abort');
    }, ms);
  }

  clear(): void {
    clearTimeout(this.timer);
  }
}

function failure(reason: FailureReason): Attempt {
  const retryable = reason === 'connection_error' || reason === 'timeout' || reason === 'body_error';
  return retryable ? { outcome: { ok: false, reason }, retry: true } : { outcome: { ok: false, reason } };
}

function resolveUrl(location: string, base: string): string | undefined {
  try {
    return new URL(location, base).href;
  } catch {
    return undefined;
  }
}

function header(headers: Dispatcher.ResponseData['headers'], name: string): string | null {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : (value ?? null);
}

/** Each value of a header the response repeats, apart (X-Robots-Tag: a crawler name scopes its own value only). */
function headerValues(headers: Dispatcher.ResponseData['headers'], name: string): string[] {
  const value = headers[name];
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date. */
export function retryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * True when X-Robots-Tag (each header's value, or one value) opts the image out of indexing or AI use, for
 * every crawler or for wildstream by name: robots-directives.ts reads it as it reads a page's robots meta tag.
 */
export function optedOut(values: string | readonly string[] | null): boolean {
  if (values === null) return false;
  return optsOutOfImages(robotsDirectives(typeof values === 'string' ? [values] : values));
}

/** `phase`: a socket closed or reset before the response headers is a connection error, after them a body error. */
function networkReason(err: unknown, deadline: Deadline, phase: 'request' | 'body'): FailureReason {
  const e = err as { code?: string; name?: string; cause?: { code?: string } };
  const code = e.code ?? e.cause?.code ?? '';
  if (code === BLOCKED_CODE || e.cause?.code === BLOCKED_CODE) return 'blocked_address';
  if (deadline.expired || e.name === 'TimeoutError' || /TIMEOUT/.test(code)) return 'timeout';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'dns_error';
  if (code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' || code === 'UND_ERR_SOCKET' || code === 'ECONNRESET')
    return phase === 'body' ? 'body_error' : 'connection_error';
  if (/redirect/i.test((err as Error).message ?? '')) return 'too_many_redirects';
  // A redirect to ftp:, file:, data: ... is a scheme refused, as checkUrl refuses it in a list.
  if (code === 'UND_ERR_INVALID_ARG' && /URL protocol/i.test((err as Error).message ?? '')) return 'url_scheme';
  if (code === 'UND_ERR_INVALID_ARG' || code === 'ERR_INVALID_URL') return 'url_invalid';
  return 'connection_error';
}
