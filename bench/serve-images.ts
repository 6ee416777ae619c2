/**
 * Child process for bench/ingest.ts: generates N distinct photo-like JPEGs of 0.3-3 MP and serves them at
 * /img/<i>.jpg on 127.0.0.1, printing {"port", "bytes"} when ready. Kept out of the measured process.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { photoJpeg, prng } from '../src/fixtures/images.js';

const count = Number(process.argv[2] ?? 100);
const rand = prng(42);
const images: Buffer[] = [];
for (let i = 0; i < count; i++) {
  const megapixels = 0.3 + rand() * 2.7;
  const aspect = 0.75 + rand() * 0.6;
  const width = Math.round(Math.sqrt(megapixels * 1e6 * aspect));
  images.push(await photoJpeg(10_000 + i, { width, height: Math.round((megapixels * 1e6) / width) }, 88));
}
const server = createServer((req, res) => {
  const m = /^\/img\/(\d+)\.jpg$/.exec(req.url ?? '');
  const body = m ? images[Number(m[1])] : undefined;
  if (!body) return void res.writeHead(404).end();
  res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length }).end(body);
});
server.listen(0, '127.0.0.1', () => {
  const bytes = images.reduce((n, b) => n + b.length, 0);
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port, bytes })}\n`);
});
