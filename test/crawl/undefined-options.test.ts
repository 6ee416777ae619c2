/** An option present but `undefined` means "the default" in crawl(), as if the key were absent. */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { crawl, type CrawlOptions } from '../../src/crawl/crawler.js';
import { RobotsCache } from '../../src/crawl/robots.js';
import { Fetcher } from '../../src/ingest/fetch.js';
import { HostGate } from '../../src/ingest/host-gate.js';
import { openStore } from '../../src/shards/store.js';

describe('explicit undefined options take the defaults', () => {
  it('crawl', async () => {
    const site: Record<string, string> = { '/': '<a href="/2">2</a><img src="/a.jpg">', '/2': '<img src="/b.jpg">' };
    const server = createServer((req, res) => {
      const html = site[req.url!];
      res.writeHead(html ? 200 : 404, { 'content-type': 'text/html' }).end(html ?? '');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const dir = await mkdtemp(join(tmpdir(), 'ws-crawl-undef-'));
    const fetcher = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxRedirects: 0 });
    const unset: Omit<CrawlOptions, 'seeds'> = {
      maxPages: undefined,
      maxDepth: undefined,
      hosts: undefined,
      concurrency: undefined,
      pagesPerUnit: undefined,
      limits: undefined,
      onPage: undefined,
    };
    try {
      const deps = {
        store: await openStore(dir),
        fetcher,
        robots: new RobotsCache(fetcher, 'test'),
        gate: new HostGate(2, 0),
      };
      const result = await crawl(deps, { ...unset, seeds: [`${base}/`] });
      expect(result.images.map((i) => new URL(i.url).pathname).sort()).toEqual(['/a.jpg', '/b.jpg']);
    } finally {
      await fetcher.close();
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
