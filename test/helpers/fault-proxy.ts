/**
 * An HTTP proxy on 127.0.0.1 (port 0) in front of an S3 server (s3rver) that injects the faults real object
 * stores and networks produce, on a seeded fraction of requests or on exactly the requests a test queues:
 *
 * - `error500`: 500 InternalError with an S3 XML body; the request never reaches the server.
 * - `slowdown503`: 503 SlowDown with an S3 XML body; the request never reaches the server.
 * - `reset`: the server handles the request, then the connection is reset (RST) halfway through the response
 *   body (before the headers when there is no body), so a PUT may have landed although the client saw a reset.
 * - `truncate`: the headers promise the whole Content-Length, half the body follows, then a clean close.
 * - `stall`: accept and never answer (`stall-headers`), or send the headers and half the body and then nothing
 *   (`stall-body`); the seeded stream chooses one when `stall` is drawn.
 * - `latency`: the answer is delayed by a random time in `latencyMs`.
 *
 * The SDK signs the Host header; the proxy forwards headers unchanged, so signatures still verify.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { prng } from '../../src/rng.js';

export type FaultKind =
  'error500' | 'slowdown503' | 'reset' | 'truncate' | 'stall' | 'stall-headers' | 'stall-body' | 'latency';
export const FAULT_KINDS: readonly FaultKind[] = ['error500', 'slowdown503', 'reset', 'truncate', 'stall', 'latency'];

export interface ProxiedRequest {
  index: number;
  method: string;
  path: string;
  range?: string;
}

export interface FaultProxyOptions {
  /** The server behind the proxy, `http://127.0.0.1:port`. */
  upstream: string;
  /** Fraction of requests that get a fault drawn from `kinds`. @default 0 */
  rate?: number;
  /** Faults drawn at `rate`. @default FAULT_KINDS */
  kinds?: readonly FaultKind[];
  /** Seed of the draws (in request-arrival order). @default 1 */
  seed?: number;
  /** Added delay of a `latency` fault, uniform in [lo, hi] ms. @default [50, 300] */
  latencyMs?: [number, number];
  /** How a drawn fault's kind is chosen: at random, or each of `kinds` in turn (so a few faults meet them all). @default 'random' */
  pick?: 'random' | 'cycle';
  /** Only requests this accepts are candidates for drawn faults. @default every request */
  filter?: (req: ProxiedRequest) => boolean;
}

export interface FaultProxy {
  endpoint: string;
  /** Requests seen (each with the fault it got), and faults injected by kind. */
  readonly stats: {
    requests: number;
    injected: Partial<Record<FaultKind, number>>;
    seen: Array<ProxiedRequest & { fault: FaultKind | null }>;
  };
  /** The next `count` requests that `match` accepts get `kind`, whatever the rate. */
  inject(kind: FaultKind, count?: number, match?: (req: ProxiedRequest) => boolean): void;
  setRate(rate: number): void;
  /** Drops queued faults and forgets the requests seen. */
  clear(): void;
  stop(): Promise<void>;
}

interface Upstream {
  status: number;
  message: string;
  headers: string[];
  body: Buffer;
}

const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length']);

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(options.upstream);
  const rand = prng(options.seed ?? 1);
  const kinds = options.kinds ?? FAULT_KINDS;
  const [latLo, latHi] = options.latencyMs ?? [50, 300];
  let rate = options.rate ?? 0;
  const queued: Array<{ kind: FaultKind; left: number; match: (req: ProxiedRequest) => boolean }> = [];
  const stats: FaultProxy['stats'] = { requests: 0, injected: {}, seen: [] };
  const sockets = new Set<Socket>();
  let drawn = 0;

  const choose = (req: ProxiedRequest): FaultKind | null => {
    const planned = queued.find((q) => q.left > 0 && q.match(req));
    if (planned) {
      planned.left--;
      return planned.kind;
    }
    if (rate <= 0 || (options.filter && !options.filter(req))) return null;
    if (rand() >= rate) return null;
    return kinds[options.pick === 'cycle' ? drawn++ % kinds.length : Math.floor(rand() * kinds.length)]!;
  };

  const server = http.createServer(async (req, res) => {
    const info: ProxiedRequest = {
      index: stats.requests++,
      method: req.method!,
      path: req.url!,
      range: req.headers.range,
    };
    let kind = choose(info);
    if (kind === 'stall') kind = rand() < 0.5 ? 'stall-headers' : 'stall-body';
    if (kind) stats.injected[kind] = (stats.injected[kind] ?? 0) + 1;
    stats.seen.push({ ...info, fault: kind });
    const socket = req.socket;
    try {
      if (kind === 'error500' || kind === 'slowdown503') {
        await drain(req);
        const [status, code, text] =
          kind === 'error500'
            ? [500, 'InternalError', 'We encountered an internal error. Please try again.']
            : [503, 'SlowDown', 'Please reduce your request rate.'];
        const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${text}</Message><RequestId>fault-${info.index}</RequestId></Error>`;
        res.writeHead(status, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(xml) }).end(xml);
        return;
      }
      if (kind === 'stall-headers') {
        await drain(req);
        return; // never answered; the client must give up, and stop() closes the socket
      }
      if (kind === 'latency') await new Promise((r) => setTimeout(r, latLo + rand() * (latHi - latLo)));
      const up = await forward(target, req);
      if (kind === 'reset' || kind === 'truncate' || kind === 'stall-body') {
        const half = up.body.subarray(0, Math.floor(up.body.length / 2));
        if (up.body.length < 2 || req.method === 'HEAD') {
          if (kind === 'reset') socket.resetAndDestroy();
          else if (kind === 'truncate') socket.end(); // closed before any answer
          return;
        }
        await writeRaw(socket, rawHead(up, up.body.length), half);
        if (kind === 'reset') socket.resetAndDestroy();
        else if (kind === 'truncate') socket.end();
        return; // stall-body: the rest never comes
      }
      const headers: string[] = [];
      for (let i = 0; i < up.headers.length; i += 2) {
        if (!HOP.has(up.headers[i]!.toLowerCase())) headers.push(up.headers[i]!, up.headers[i + 1]!);
      }
      const length = req.method === 'HEAD' ? headerOf(up, 'content-length') : String(up.body.length);
      if (length !== undefined) headers.push('Content-Length', length);
      res.writeHead(up.status, up.message, headers).end(req.method === 'HEAD' ? undefined : up.body);
    } catch {
      socket.destroy();
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stats,
    inject(kind, count = 1, match = () => true) {
      queued.push({ kind, left: count, match });
    },
    setRate(r) {
      rate = r;
    },
    clear() {
      queued.length = 0;
      stats.seen.length = 0;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function drain(req: http.IncomingMessage): Promise<void> {
  return new Promise((resolve, reject) => {
    req.on('end', resolve).on('error', reject).resume();
  });
}

/** Sends the request on to the server and buffers its whole answer. */
function forward(target: URL, req: http.IncomingMessage): Promise<Upstream> {
  return new Promise((resolve, reject) => {
    const out = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            message: res.statusMessage ?? '',
            headers: res.rawHeaders,
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    out.on('error', reject);
    req.pipe(out);
  });
}

function headerOf(up: Upstream, name: string): string | undefined {
  for (let i = 0; i < up.headers.length; i += 2) if (up.headers[i]!.toLowerCase() === name) return up.headers[i + 1];
  return undefined;
}

/** The status line and headers of `up`, promising `length` body bytes. */
function rawHead(up: Upstream, length: number): string {
  const lines = [`HTTP/1.1 ${up.status} ${up.message}`];
  for (let i = 0; i < up.headers.length; i += 2) {
    if (!HOP.has(up.headers[i]!.toLowerCase())) lines.push(`${up.headers[i]}: ${up.headers[i + 1]}`);
  }
  lines.push(`Content-Length: ${length}`, 'Connection: close');
  return `${lines.join('\r\n')}\r\n\r\n`;
}

function writeRaw(socket: Socket, head: string, body: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.write(head);
    socket.write(body, (err) => (err ? reject(err) : setTimeout(resolve, 20))); // let the bytes leave before the fault
  });
}
