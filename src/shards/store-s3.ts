/**
 * A store on any S3-compatible server. Every request (GET whole or ranged, PUT, multipart parts, LIST pages,
 * HEAD, DELETE) runs under the one retry and timeout policy of `retry.ts`, with each response body read inside
 * the retried attempt; the SDK's own retry is off so attempts do not multiply. A whole-object `get` resumes a
 * cut body with a ranged GET from the byte it reached. Errors are mapped to the typed errors in `errors.ts`.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type GetObjectCommandOutput,
} from '@aws-sdk/client-s3';
import {
  AccessDeniedError,
  BucketNotFoundError,
  ConfigError,
  NotFoundError,
  StoreUnavailableError,
  WildstreamError,
} from '../errors.js';
import {
  backoffMs,
  gaveUp,
  idleGuard,
  isRetryable,
  readBody,
  retryPolicy,
  sleep,
  TransientError,
  withRetry,
  type Attempt,
  type RetryPolicy,
} from './retry.js';
import { checkS3Key } from './key-limits.js';
import { ListingGuard, servedWindow, sliceServed } from './s3-answers.js';
import {
  checkKey,
  checkRange,
  joinKey,
  parseS3Url,
  type ObjectInfo,
  type PutBody,
  type RangeOptions,
  type Store,
  type StoreOptions,
} from './store-contract.js';

/** Bodies above this go through multipart upload, in parts of this size (S3's minimum part is 5 MiB). */
const PART_SIZE = 8 * 1024 * 1024;
/** Parts uploaded at once: bounds memory to about this many parts. */
const PARTS_IN_FLIGHT = 4;

export class S3Store implements Store {
  readonly url: string;
  readonly bucket: string;
  readonly prefix: string;
  /** Exposed so tests and benchmarks can count requests with middleware. */
  readonly client: S3Client;
  readonly policy: RetryPolicy;
  private readonly pageSize: number;

  constructor(location: string, options: StoreOptions = {}) {
    ({ bucket: this.bucket, prefix: this.prefix } = parseS3Url(location));
    this.url = `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ''}`;
    this.policy = retryPolicy(options);
    this.client = makeClient(options, this.policy);
    this.pageSize = options.listPageSize ?? 1000;
  }

  /** The object's whole key; a key S3 would refuse (checkKey, over 1024 bytes) throws before any request. */
  private fullKey(key: string): string {
    return checkS3Key(this.bucket, joinKey(this.prefix, checkKey(key)));
  }

  private where(key: string): string {
    return `s3://${this.bucket}/${joinKey(this.prefix, key)}`;
  }

  /** One request under the retry policy; `fn` must finish reading any body it needs. */
  private retry<T>(key: string, fn: (attempt: Attempt) => Promise<T>): Promise<T> {
    const where = this.where(key);
    return withRetry(this.policy, where, fn, (err) => mapS3Error(err, where));
  }

  async put(key: string, body: PutBody): Promise<void> {
    const Key = this.fullKey(key);
    if (body instanceof Uint8Array && body.byteLength <= PART_SIZE) return this.putWhole(key, Key, body);
    // A stream can be read once, so it is cut into parts kept until each is stored: any part can be retried.
    const parts = partsOf(body instanceof Uint8Array ? Readable.from([Buffer.from(body)]) : body, PART_SIZE);
    const first = await parts.next();
    const second = first.done ? first : await parts.next();
    if (second.done) return this.putWhole(key, Key, first.done ? Buffer.alloc(0) : first.value);
    await this.multipart(key, Key, [first.value, second.value], parts);
  }

  private async putWhole(key: string, Key: string, body: Uint8Array): Promise<void> {
    await this.retry(key, ({ signal }) =>
      this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: body }), { abortSignal: signal }),
    );
  }

  /** Multipart is still atomic: the object appears only at CompleteMultipartUpload. */
  private async multipart(key: string, Key: string, head: Buffer[], rest: AsyncIterator<Buffer>): Promise<void> {
    const Bucket = this.bucket;
    const created = await this.retry(key, ({ signal }) =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket, Key }), { abortSignal: signal }),
    );
    const UploadId = created.UploadId!;
    const etags: string[] = [];
    const inflight = new Set<Promise<void>>();
    const whole = createHash('md5');
    let size = 0;
    const upload = (Body: Buffer, PartNumber: number) => {
      whole.update(Body);
      size += Body.byteLength;
      const sending = this.retry(key, async ({ signal }) => {
        const out = await this.client.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body }), {
          abortSignal: signal,
        });
        etags[PartNumber - 1] = out.ETag!;
      });
      const tracked: Promise<void> = sending.finally(() => inflight.delete(tracked));
      tracked.catch(() => {}); // surfaced by the race or the final wait below
      inflight.add(tracked);
    };
    try {
      let number = 0;
      for (const part of head) upload(part, ++number);
      for (let next = await rest.next(); !next.done; next = await rest.next()) {
        while (inflight.size >= PARTS_IN_FLIGHT) await Promise.race(inflight);
        upload(next.value, ++number);
      }
      await Promise.all(inflight);
      const Parts = etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 }));
      await this.retry(key, async ({ signal, number: attempt }) => {
        try {
          await this.client.send(
            new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts } }),
            { abortSignal: signal },
          );
        } catch (err) {
          // A retried Complete whose first try landed finds the upload gone (NoSuchUpload on AWS, 500 on s3rver).
          if (attempt > 1 && (await this.landed(key, size, [multipartEtag(etags), `"${whole.copy().digest('hex')}"`])))
            return;
          throw err;
        }
      });
    } catch (err) {
      await Promise.allSettled(inflight);
      await this.client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId })).catch(() => {});
      throw err;
    }
  }

  /** True when `key` holds the object just uploaded: its size, and an ETag only those bytes give. */
  private async landed(key: string, size: number, etags: string[]): Promise<boolean> {
    const info = await this.head(key);
    return info !== null && info.size === size && etags.includes(info.etag);
  }

  async get(key: string): Promise<Readable> {
    const first = await this.openBody(key, 0);
    return Readable.from(this.resume(key, first), { objectMode: false });
  }

  /** GET from byte `offset` (0: the whole object), sent under the retry policy; the body is read by the caller. */
  private openBody(key: string, offset: number, total?: number, etag?: string): Promise<GetObjectCommandOutput> {
    const Range = offset > 0 ? `bytes=${offset}-${total! - 1}` : undefined;
    const Key = this.fullKey(key); // a bad key fails here, before the request, not inside its retries
    return this.retry(key, async ({ signal }) => {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, Range, IfMatch: etag }), {
        abortSignal: signal,
      });
      if (etag && out.ETag && out.ETag !== etag) {
        (out.Body as Readable | undefined)?.destroy();
        throw changedWhileRead(this.where(key));
      }
      return out;
    });
  }

  /**
   * The body of a whole-object GET; a cut, stalled or short body is resumed with a ranged GET from the byte
   * reached. Failures count while no byte arrives, so a long download survives many scattered faults.
   */
  private async *resume(key: string, first: GetObjectCommandOutput): AsyncGenerator<Uint8Array> {
    const total = first.ContentLength;
    const etag = first.ETag;
    let out = first;
    let offset = 0;
    let failures = 0;
    for (;;) {
      try {
        // A resumed answer must start at or before the byte reached (RFC 9110 §14.4), else bytes would be lost.
        let skip = offset > 0 ? offset - servedWindow(out, 0).from : 0;
        if (skip < 0) throw new TransientError(`resumed answer starts past byte ${offset}`, 'WS_BAD_RANGE');
        for await (let chunk of idleGuard(out.Body as Readable, this.policy.idleTimeoutMs)) {
          if (skip > 0) {
            const cut = Math.min(skip, chunk.byteLength);
            skip -= cut;
            chunk = chunk.subarray(cut);
            if (chunk.byteLength === 0) continue;
          }
          offset += chunk.byteLength;
          failures = 0;
          yield chunk;
        }
        if (total === undefined || offset >= total) return;
        throw new TransientError(`body ended after ${offset} of ${total} bytes`, 'WS_SHORT_BODY');
      } catch (err) {
        (out.Body as Readable | undefined)?.destroy(); // an answer refused unread still holds its socket
        if (!isRetryable(err)) throw mapS3Error(err, this.where(key));
        if (++failures >= this.policy.attempts) throw gaveUp(this.where(key), failures, err);
        await sleep(backoffMs(this.policy, failures));
        out = await this.openBody(key, offset, total, etag);
      }
    }
  }

  async getRange(key: string, start: number, end: number, options: RangeOptions = {}): Promise<Uint8Array> {
    checkRange(start, end);
    const Key = this.fullKey(key);
    // Explicit `a-b` ranges only: suffix ranges are unreliable on some servers (s3rver).
    const bytes = await this.retry(key, async ({ signal }) => {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key, Range: `bytes=${start}-${end}` }),
        { abortSignal: signal },
      );
      const body = await readBody(out.Body as Readable, out.ContentLength, this.policy.idleTimeoutMs, signal);
      // Servers may answer with more than was asked (s3rver sends the whole object for `bytes=0-0`) or, faulty,
      // with another window: the Content-Range (or its absence: the whole object) places the body.
      const served = servedWindow(out, body.byteLength);
      const bytes = sliceServed(body, served, start, end);
      if (bytes) return bytes;
      throw new NotFoundError(`range ${start}-${end} is beyond the end of ${this.where(key)} (${served.size} bytes)`);
    });
    if (!options.shared) return bytes;
    const shared = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
    shared.set(bytes);
    return shared;
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const Key = this.fullKey(key);
    try {
      const out = await this.retry(key, ({ signal }) =>
        this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }), { abortSignal: signal }),
      );
      return { key, size: out.ContentLength ?? 0, etag: out.ETag ?? '' };
    } catch (err) {
      if (err instanceof NotFoundError) return null;
      throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // No key is longer than S3 allows, so such a prefix names nothing: refused as a key that long is.
    const full = checkS3Key(this.bucket, joinKey(this.prefix, prefix));
    const strip = this.prefix ? this.prefix.length + 1 : 0;
    const guard = new ListingGuard(this.where(prefix));
    let token: string | undefined;
    do {
      // Named by the prefix listed (`s3://bkt/ds/units/`, or `s3://bkt/ds/` for all), never a made-up `//`.
      const page = await this.retry(prefix, ({ signal }) =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: full,
            ContinuationToken: token,
            MaxKeys: this.pageSize,
          }),
          { abortSignal: signal },
        ),
      );
      const items = new Map((page.Contents ?? []).map((item) => [item.Key!, item]));
      for (const key of guard.page([...items.keys()])) {
        const item = items.get(key)!;
        yield { key: key.slice(strip), size: item.Size ?? 0, etag: item.ETag ?? '' };
      }
      token = page.IsTruncated && page.NextContinuationToken ? guard.next(page.NextContinuationToken) : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    const Key = this.fullKey(key);
    await this.retry(key, ({ signal }) =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }), { abortSignal: signal }),
    );
  }
}

/** AWS's ETag of a multipart object: the MD5 of the parts' binary MD5s, a dash, the number of parts. */
function multipartEtag(partEtags: string[]): string {
  const md5s = Buffer.concat(partEtags.map((etag) => Buffer.from(etag.replace(/"/g, ''), 'hex')));
  return `"${createHash('md5').update(md5s).digest('hex')}-${partEtags.length}"`;
}

/** Cuts a byte stream into buffers of exactly `size` bytes (the last may be shorter; none is empty). */
async function* partsOf(body: Readable, size: number): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let filled = 0;
  for await (const raw of body) {
    let chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw as Uint8Array);
    while (filled + chunk.byteLength >= size) {
      const take = size - filled;
      pending.push(chunk.subarray(0, take));
      yield Buffer.concat(pending, size);
      pending = [];
      filled = 0;
      chunk = chunk.subarray(take);
    }
    if (chunk.byteLength > 0) {
      pending.push(chunk);
      filled += chunk.byteLength;
    }
  }
  if (filled > 0) yield Buffer.concat(pending, filled);
}

function makeClient(options: StoreOptions, policy: RetryPolicy): S3Client {
  // The SDK warns on every run under Node 20 that *future* releases will need Node 22; the lockfile pins one
  // that supports Node 20, so the warning only adds noise to every CLI run.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const endpoint = options.s3Endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  if (endpoint !== undefined) checkEndpoint(endpoint);
  return new S3Client({
    endpoint,
    region: regionOf(options),
    forcePathStyle: options.s3PathStyle ?? endpoint !== undefined,
    // Retries are ours (retry.ts): the SDK's would multiply the attempts and cannot see body faults.
    maxAttempts: 1,
    requestHandler: {
      connectionTimeout: policy.connectTimeoutMs,
      // An idle timeout on the socket in every phase (upload, waiting for headers, body). `requestTimeout` is
      // not one: it only logs a warning unless throwOnRequestTimeout is set, and stops at the headers.
      socketTimeout: policy.idleTimeoutMs,
    },
  });
}

/**
 * An endpoint the SDK can parse: http(s), a host, a port in range. Checked here as a ConfigError (exit 2): the
 * SDK failed each request with "ERR_INVALID_URL Invalid URL" instead (`http://host:99999`), a broken run.
 */
function checkEndpoint(endpoint: string): void {
  let url: URL | null = null;
  try {
    url = new URL(endpoint);
  } catch {
    // reported below with what is expected
  }
  if (!url || !/^https?:$/.test(url.protocol) || url.hostname === '' || !/^https?:\/\/[^/]+/i.test(endpoint))
    throw new ConfigError(`invalid S3 endpoint ${JSON.stringify(endpoint)}: expected http(s)://host[:port]`);
}

/**
 * The region: the option, else AWS_REGION or AWS_DEFAULT_REGION (an empty variable counts as unset), else
 * us-east-1. An empty or malformed one is refused naming it: the SDK said only "Region is missing".
 */
function regionOf(options: StoreOptions): string {
  const region =
    options.s3Region ?? (process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || undefined) ?? 'us-east-1';
  // Names only (AWS's us-east-1, R2's auto, a Ceph zonegroup's default_zg): no space, slash or control character.
  if (!/^[\w.-]+$/.test(region))
    throw new ConfigError(`invalid S3 region ${JSON.stringify(region)}: expected a name such as us-east-1`);
  return region;
}

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/** A resumed read met another object under the key than its first bytes came from. */
function changedWhileRead(where: string, cause?: unknown): StoreUnavailableError {
  return new StoreUnavailableError(`${where} changed while it was being read; retry the command`, { cause });
}

/** Maps SDK and network errors to typed errors with a one-line message naming the object. */
export function mapS3Error(err: unknown, where: string): Error {
  if (err instanceof WildstreamError) return err;
  const e = (err ?? {}) as SdkError;
  const name = e.name ?? '';
  const status = e.$metadata?.httpStatusCode;
  const detail = (e.message || name || 'unknown error').split('\n')[0];
  if (name === 'NoSuchBucket') return new BucketNotFoundError(`bucket does not exist: ${where}`, { cause: err });
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) {
    return new NotFoundError(`no such object: ${where}`, { cause: err });
  }
  // Only a resumed read sends If-Match: the object was replaced since its first bytes were read.
  if (name === 'PreconditionFailed' || status === 412) return changedWhileRead(where, err);
  if (name === 'InvalidRange' || status === 416)
    return new NotFoundError(`range beyond the end of ${where}`, { cause: err });
  if (name === 'CredentialsProviderError') {
    return new AccessDeniedError(
      `no S3 credentials found for ${where}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE`,
      { cause: err },
    );
  }
  if (['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'Forbidden'].includes(name) || status === 403) {
    return new AccessDeniedError(`access denied to ${where}: ${detail}`, { cause: err });
  }
  return new StoreUnavailableError(
    `S3 request for ${where} failed: ${e.code ?? name ?? ''} ${detail}`.replace(/\s+/g, ' '),
    {
      cause: err,
    },
  );
}
