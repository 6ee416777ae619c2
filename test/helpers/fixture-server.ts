/**
 * A real node:http server on 127.0.0.1:0 serving generated images and misbehaving routes, with a request
 * log. Used by the ingest tests and benchmark.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { photoJpeg, photoPixels } from '../../src/fixtures/images.js';

export interface Fixture {
  base: string;
  log: string[];
  close(): Promise<void>;
}

type Route = (req: IncomingMessage, res: ServerResponse, match: RegExpExecArray) => void | Promise<void>;

const SIZE = { width: 320, height: 240 };

export async function fixtureImages() {
  const photo = await photoJpeg(1, SIZE);
  const raw = photoPixels(2, SIZE);
  const rawImage = () => sharp(raw, { raw: { ...SIZE, channels: 3 } });
  return {
    photo,
    cmyk: await rawImage().toColourspace('cmyk').jpeg().toBuffer(),
    png16: await rawImage().toColourspace('rgb16').png().toBuffer(),
    grey: await rawImage().greyscale().png().toBuffer(),
    alpha: await rawImage().ensureAlpha(0.5).png().toBuffer(),
    rotated: await sharp(await photoJpeg(3, { width: 300, height: 200 }))
      .withMetadata({ orientation: 6 })
      .jpeg()
      .toBuffer(),
    animated: await sharp([await photoJpeg(4, SIZE), await photoJpeg(5, SIZE)], { join: { animated: true } })
      .gif()
      .toBuffer(),
    svg: Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="300"><rect width="300" height="300" fill="red"/></svg>',
    ),
    bomb: pngBomb(60_000, 60_000),
  };
}

/** A tiny PNG whose header claims width x height: rejected from the header, never decoded. */
function pngBomb(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.alloc(1 + width * 3);
  const idat = deflateSync(Buffer.concat(Array.from({ length: 64 }, () => row)));
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', ihdr),
    chunk('IDAT', idat),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

export async function startFixture(extra: Array<[RegExp, Route]> = []): Promise<Fixture> {
  const img = await fixtureImages();
  const counts = new Map<string, number>();
  const send = (res: ServerResponse, body: Buffer, type = 'image/jpeg', headers: Record<string, string> = {}) => {
    res.writeHead(200, { 'content-type': type, 'content-length': body.length, ...headers });
    res.end(body);
  };
  const timers = new Set<NodeJS.Timeout>();
  const routes: Array<[RegExp, Route]> = [
    ...extra,
    [/^\/img\/(\d+)\.jpg$/, async (_q, res, m) => send(res, await photoJpeg(Number(m[1]), SIZE))],
    [/^\/photo\.jpg$/, (_q, res) => send(res, img.photo)],
    [/^\/cmyk\.jpg$/, (_q, res) => send(res, img.cmyk)],
    [/^\/16bit\.png$/, (_q, res) => send(res, img.png16, 'image/png')],
    [/^\/grey\.png$/, (_q, res) => send(res, img.grey, 'image/png')],
    [/^\/alpha\.png$/, (_q, res) => send(res, img.alpha, 'image/png')],
    [/^\/rotated\.jpg$/, (_q, res) => send(res, img.rotated)],
    [/^\/animated\.gif$/, (_q, res) => send(res, img.animated, 'image/gif')],
    [/^\/image\.svg$/, (_q, res) => send(res, img.svg, 'image/svg+xml')],
    [/^\/bomb\.png$/, (_q, res) => send(res, img.bomb, 'image/png')],
    [/^\/truncated\.jpg$/, (_q, res) => send(res, img.photo.subarray(0, Math.floor(img.photo.length / 2)))],
    [
      /^\/html-as-jpeg\.jpg$/,
      (_q, res) => send(res, Buffer.from('<!doctype html><html><body>not an image</body></html>')),
    ],
    [/^\/misnamed\.txt$/, (_q, res) => send(res, img.photo, 'text/plain')],
    [/^\/noai\.jpg$/, (_q, res) => send(res, img.photo, 'image/jpeg', { 'x-robots-tag': 'noai, noimageai' })],
    [/^\/status\/(\d+)$/, (_q, res, m) => void res.writeHead(Number(m[1])).end()],
    [
      /^\/flaky\/(\d+)\/(\w+)$/,
      (req, res, m) => {
        // Fails with status m[1] (with Retry-After: 0) on the first request per key, then serves the photo.
        const n = (counts.get(req.url!) ?? 0) + 1;
        counts.set(req.url!, n);
        if (n === 1) return void res.writeHead(Number(m[1]), { 'retry-after': '0' }).end();
        send(res, img.photo);
      },
    ],
    [
      /^\/redirect\/(\d+)$/,
      (_q, res, m) => {
        const n = Number(m[1]);
        res.writeHead(302, { location: n > 1 ? `/redirect/${n - 1}` : '/photo.jpg' }).end();
      },
    ],
    [/^\/loop$/, (_q, res) => void res.writeHead(302, { location: '/loop' }).end()],
    [
      /^\/to-metadata$/,
      (_q, res) => void res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' }).end(),
    ],
    [/^\/to-ftp$/, (_q, res) => void res.writeHead(302, { location: 'ftp://127.0.0.1/x.jpg' }).end()],
    [
      /^\/slow-body$/,
      (_q, res) => {
        res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': img.photo.length });
        res.write(img.photo.subarray(0, 100));
        const t = setInterval(() => res.write(Buffer.alloc(1)), 3000);
        timers.add(t);
        res.on('close', () => clearInterval(t));
      },
    ],
    [
      /^\/endless$/,
      (_q, res) => {
        res.writeHead(200, { 'content-type': 'image/jpeg' });
        const chunk = Buffer.alloc(64 * 1024, 7);
        const pump = () => {
          while (res.write(chunk));
        };
        res.on('drain', pump);
        pump();
      },
    ],
    [
      /^\/wrong-length$/,
      (_q, res) => {
        // Declares more than it sends, then drops the connection.
        res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': img.photo.length + 5000 });
        res.write(img.photo, () => res.destroy());
      },
    ],
    [/^\/hang$/, () => {}],
  ];
  const log: string[] = [];
  const server: Server = createServer((req, res) => {
    log.push(req.url!);
    const path = req.url!.split('?')[0]!;
    for (const [re, route] of routes) {
      const m = re.exec(path);
      if (m) {
        Promise.resolve(route(req, res, m)).catch(() => res.destroy());
        return;
      }
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    log,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearInterval(t);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
