/**
 * A crawl's redirect chains end after MAX_REDIRECTS hops, as ingest's fetcher ends them: each hop is queued as a
 * page, so without a count an endless chain (/chain/0 -> /chain/1 -> ...) spends the whole --max-pages budget.
 * The count travels with the queued page, through a crawl unit's saved frontier to a resumed crawl.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { crawl, type CrawlOptions } from '../../src/crawl/crawler.js';
import { RobotsCache } from '../../src/crawl/robots.js';
import { Fetcher, MAX_REDIRECTS } from '../../src/ingest/fetch.js';
import { HostGate } from '../../src/ingest/host-gate.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { faultyStore } from '../helpers/faulty-store.js';

let dir: string;
let server: Server;
let base: string;
/** Requests for /chain/N, in order. */
let chainHits: string[];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-crawl-redirects-'));
  server = createServer((req, res) => {
    const n = /^\/chain\/(\d+)$/.exec(req.url!)?.[1];
    if (n !== undefined) {
      chainHits.push(req.url!);
      return void res.writeHead(302, { location: `/chain/${Number(n) + 1}` }).end();
    }
    if (req.url === '/start')
      return void res.writeHead(200, { 'content-type': 'text/html' }).end('<a href="/chain/0">in</a>');
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
beforeEach(() => {
  chainHits = [];
});
afterAll(async () => {
  server.close();
  await rm(dir, { recursive: true, force: true });
});

/** Crawls into `store` as `wildstream crawl` does: pages fetched without following redirects, no spacing. */
async function crawlInto(store: Store, options: CrawlOptions) {
  const fetcher = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxRedirects: 0 });
  const deps = { store, fetcher, robots: new RobotsCache(fetcher, 'test'), gate: new HostGate(2, 0) };
  return crawl(deps, options).finally(() => fetcher.close());
}

const chain = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `/chain/${from + i}`);

describe('crawl redirect chains', () => {
  it('end as too_many_redirects after the hops ingest follows, leaving the page budget to real pages', async () => {
    // Ingest's fetcher on the same chain: the requests it makes before it gives up are the crawl's limit too.
    const fetcher = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0 });
    const got = await fetcher.fetch(`${base}/chain/0`).finally(() => fetcher.close());
    expect(got).toMatchObject({ ok: false, reason: 'too_many_redirects' });
    const ingestHits = chainHits.length;
    expect(ingestHits).toBe(MAX_REDIRECTS + 1);

    chainHits = [];
    const store = await openStore(join(dir, 'chain'));
    const result = await crawlInto(store, { seeds: [`${base}/start`], maxPages: 30 });
    expect(chainHits).toEqual(chain(0, MAX_REDIRECTS)); // the same requests as ingest's, then no more
    expect(result.skipped).toEqual({ redirect: MAX_REDIRECTS, too_many_redirects: 1 });
    expect(result.pages).toBe(1 + ingestHits); // /start and the chain: 30 allowed, 24 left unspent
  });

  it('count hops per chain: two chains crawled at once each get the whole limit', async () => {
    const store = await openStore(join(dir, 'two'));
    const result = await crawlInto(store, {
      seeds: [`${base}/chain/0`, `${base}/chain/20`],
      maxPages: 100,
      concurrency: 2,
    });
    expect([...chainHits].sort()).toEqual([...chain(0, MAX_REDIRECTS), ...chain(20, 20 + MAX_REDIRECTS)].sort());
    expect(result.skipped).toEqual({ redirect: 2 * MAX_REDIRECTS, too_many_redirects: 2 });
  });

  it('carry the hop count through a crawl unit to a resumed crawl', async () => {
    const inner = await openStore(join(dir, 'resume'));
    // Unit 2 (the page /chain/2) fails to commit: the crawl stops with /chain/2, two hops in, on its frontier.
    const failing = faultyStore(inner, (method, args) =>
      method === 'put' && args[0] === 'crawl/units/000002.json' ? new Error('disk full') : undefined,
    );
    const options = { seeds: [`${base}/chain/0`], maxPages: 30, pagesPerUnit: 1 };
    await expect(crawlInto(failing, options)).rejects.toThrow('disk full');
    expect(chainHits).toEqual(chain(0, 2));

    chainHits = [];
    const result = await crawlInto(inner, options);
    expect(result.resumed).toBe(true);
    // Resumed at /chain/2 with its two hops counted: three more, then the chain ends where a fresh one would.
    expect(chainHits).toEqual(chain(2, MAX_REDIRECTS));
    expect(result.skipped).toEqual({ redirect: MAX_REDIRECTS, too_many_redirects: 1 });
  });
});
