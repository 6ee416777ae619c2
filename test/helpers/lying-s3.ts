/**
 * A minimal S3 server on 127.0.0.1 (port 0), path-style and without signature checks, whose objects a test
 * sets directly, and whose answers a test may rewrite (`lie`) to play a faulty server or gateway: another
 * Content-Range window than asked, a short body, a listing that repeats. It serves GET (with `Range` and
 * `If-Match`), HEAD and ListObjectsV2 (`prefix`, `max-keys`, `continuation-token`), the requests a reader makes.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface S3Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** Sends this many bytes of `body` (its whole length promised) and then drops the connection. */
  cutAfter?: number;
}

export interface S3Request {
  method: string;
  /** `bucket/key` of an object request, or the bucket of a listing. */
  path: string;
  range?: string;
  /** The continuation token of a listing request. */
  token?: string;
}

export interface LyingS3 {
  endpoint: string;
  /** Objects by `bucket/key`. */
  readonly objects: Map<string, Buffer>;
  /** Requests seen, in order. */
  readonly seen: S3Request[];
  /** Rewrites answers while set: gets each request and its honest answer, returns what is sent. */
  lie: ((req: S3Request, answer: S3Answer) => S3Answer) | null;
  stop(): Promise<void>;
}

const etagOf = (body: Buffer) => `"${createHash('md5').update(body).digest('hex')}"`;

export async function startLyingS3(): Promise<LyingS3> {
  const objects = new Map<string, Buffer>();
  const state: LyingS3 = {
    endpoint: '',
    objects,
    seen: [],
    lie: null,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server = http.createServer((req, res) => {
    req.resume();
    const url = new URL(req.url!, 'http://x');
    const path = decodeURIComponent(url.pathname.slice(1)).replace(/^([^/]+)\/$/, '$1'); // `bucket/` lists
    const request: S3Request = {
      method: req.method!,
      path,
      ...(req.headers.range ? { range: req.headers.range } : {}),
      ...(url.searchParams.has('continuation-token') ? { token: url.searchParams.get('continuation-token')! } : {}),
    };
    state.seen.push(request);
    let answer =
      url.searchParams.get('list-type') === '2'
        ? listing(objects, path, url.searchParams)
        : object(objects.get(path), req.headers.range, req.headers['if-match']);
    if (state.lie) answer = state.lie(request, answer);
    res.writeHead(answer.status, { ...answer.headers, 'content-length': String(answer.body.length) });
    if (answer.cutAfter === undefined || req.method === 'HEAD')
      res.end(req.method === 'HEAD' ? undefined : answer.body);
    else res.write(answer.body.subarray(0, answer.cutAfter), () => req.socket.destroy());
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

function error(status: number, code: string): S3Answer {
  const xml = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${code}</Message></Error>`;
  return { status, headers: { 'content-type': 'application/xml' }, body: Buffer.from(xml) };
}

/** S3's answer for an object: whole, or the asked range clamped to its end (206 with Content-Range). */
function object(body: Buffer | undefined, range: string | undefined, ifMatch: string | undefined): S3Answer {
  if (!body) return error(404, 'NoSuchKey');
  const etag = etagOf(body);
  if (ifMatch && ifMatch !== etag) return error(412, 'PreconditionFailed');
  const asked = /^bytes=(\d+)-(\d*)$/.exec(range ?? '');
  if (!asked) return { status: 200, headers: { etag }, body };
  const start = Number(asked[1]);
  const end = Math.min(asked[2] ? Number(asked[2]) : body.length - 1, body.length - 1);
  if (start >= body.length) return error(416, 'InvalidRange');
  const headers = { etag, 'content-range': `bytes ${start}-${end}/${body.length}` };
  return { status: 206, headers, body: body.subarray(start, end + 1) };
}

/** One ListObjectsV2 page; the continuation token is the last key listed, base64. */
function listing(objects: Map<string, Buffer>, bucket: string, q: URLSearchParams): S3Answer {
  const prefix = q.get('prefix') ?? '';
  const max = Number(q.get('max-keys') ?? 1000);
  const after = Buffer.from(q.get('continuation-token') ?? '', 'base64').toString();
  const keys = [...objects.keys()]
    .filter((k) => k.startsWith(`${bucket}/`))
    .map((k) => k.slice(bucket.length + 1))
    .filter((k) => k.startsWith(prefix) && k > after)
    .sort();
  const page = keys.slice(0, max);
  const next =
    keys.length > max
      ? `<NextContinuationToken>${Buffer.from(page.at(-1)!).toString('base64')}</NextContinuationToken>`
      : '';
  const contents = page
    .map((k) => {
      const body = objects.get(`${bucket}/${k}`)!;
      return `<Contents><Key>${k}</Key><ETag>${etagOf(body)}</ETag><Size>${body.length}</Size></Contents>`;
    })
    .join('');
  const xml =
    `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>${bucket}</Name><Prefix>${prefix}</Prefix>` +
    `<KeyCount>${page.length}</KeyCount><MaxKeys>${max}</MaxKeys><IsTruncated>${keys.length > max}</IsTruncated>` +
    `${contents}${next}</ListBucketResult>`;
  return { status: 200, headers: { 'content-type': 'application/xml' }, body: Buffer.from(xml) };
}
