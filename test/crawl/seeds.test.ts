// Crawl seeds given on the command line are URLs as the URL standard parses them, as ingest's lists are.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { patternJpeg } from '../../src/fixtures/images.js';
import { runCli } from '../helpers/cli.js';

let dir: string;
let server: Server;
let port: number;
const hits: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-seeds-'));
  const jpeg = await patternJpeg(1, { width: 96, height: 96 });
  server = createServer((req, res) => {
    hits.push(req.url!);
    if (req.url === '/') return void res.writeHead(200, { 'content-type': 'text/html' }).end('<img src="/i.jpg">');
    if (req.url === '/i.jpg') return void res.writeHead(200, { 'content-type': 'image/jpeg' }).end(jpeg);
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server.close();
  await rm(dir, { recursive: true, force: true });
});

it('takes http:host/path and http:\\\\host\\path seeds as the http URLs they are, not as file names', async () => {
  const seeds = [`http:127.0.0.1:${port}/`, `http:\\\\127.0.0.1:${port}\\`];
  for (const [i, seed] of seeds.entries()) {
    const r = await runCli(['crawl', seed, '--out', join(dir, `s${i}`), '--allow-address', '127.0.0.1']);
    expect(r.stderr, seed).not.toMatch(/neither an http\(s\) URL nor a readable file/);
    const done = JSON.parse(r.stdout.split('\n').find((l) => l.includes('crawl_done'))!);
    expect(done, seed).toMatchObject({ pages: 1, fetched: 1, images: 1 });
    expect(r.stdout, seed).toMatch(/"event":"ingest_done".*"kept":1/);
  }
  expect(hits.filter((h) => h === '/')).toHaveLength(2);
}, 120_000);
