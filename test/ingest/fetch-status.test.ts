/**
 * Statuses and redirect targets a fetch records rather than taking as an image: a 2xx that is not the whole
 * resource (RFC 9110 15.3), and a redirect to a scheme or URL that cannot be fetched, named as a list row's
 * URL would be (`url_scheme`, `url_invalid`), whether the fetcher follows redirects (ingest) or not (crawl).
 */
import { createServer, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Fetcher } from '../../src/ingest/fetch.js';

const jpeg = (res: ServerResponse, status: number, headers = {}) =>
  res.writeHead(status, { 'content-type': 'image/jpeg', ...headers }).end('\xff\xd8\xff');

const ROUTES: Record<string, (res: ServerResponse) => void> = {
  '/200': (res) => jpeg(res, 200),
  '/203': (res) => jpeg(res, 203),
  '/206': (res) => jpeg(res, 206, { 'content-range': 'bytes 0-2/90000' }),
  '/202': (res) => jpeg(res, 202),
  '/204': (res) => res.writeHead(204).end(),
  '/to-ftp': (res) => res.writeHead(302, { location: 'ftp://127.0.0.1/x.jpg' }).end(),
  '/to-file': (res) => res.writeHead(301, { location: 'file:///etc/passwd' }).end(),
  '/to-nowhere': (res) => res.writeHead(307, { location: 'http://[zz' }).end(),
};

let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer((req, res) => (ROUTES[req.url!] ?? ((r) => r.writeHead(404).end()))(res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => {
  server.closeAllConnections();
  server.close();
});

async function reasons(paths: string[], maxRedirects: number): Promise<Record<string, string>> {
  const fetcher = new Fetcher({ allowAddresses: ['127.0.0.1'], retries: 0, maxRedirects });
  try {
    const out: Record<string, string> = {};
    for (const p of paths) {
      const got = await fetcher.fetch(`${base}${p}`);
      out[p] = got.ok ? 'ok' : got.reason;
    }
    return out;
  } finally {
    await fetcher.close();
  }
}

describe('fetch statuses', () => {
  it('takes only a complete representation (200, 203); a 206 nobody asked for and bodiless 2xx are recorded', async () => {
    expect(await reasons(['/200', '/203', '/206', '/202', '/204'], 5)).toEqual({
      '/200': 'ok',
      '/203': 'ok',
      '/206': 'http_206',
      '/202': 'http_202',
      '/204': 'http_204',
    });
  });

  it('names a redirect to an unfetchable scheme or URL as a list row would be named, followed or not', async () => {
    const expected = { '/to-ftp': 'url_scheme', '/to-file': 'url_scheme', '/to-nowhere': 'url_invalid' };
    expect(await reasons(Object.keys(expected), 5)).toEqual(expected);
    expect(await reasons(Object.keys(expected), 0)).toEqual(expected);
  });
});
