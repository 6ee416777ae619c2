/**
 * A store on any S3-compatible server. Retries (throttling, 5xx, connection resets) are the SDK's standard
 * retry strategy: exponential backoff with full jitter, `maxAttempts` in all. Timeouts are always set so an
 * unreachable endpoint fails instead of hanging. Errors are mapped to the typed errors in `errors.ts`.
 */
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import {
  AccessDeniedError,
  BucketNotFoundError,
  ConfigError,
  NotFoundError,
  StoreUnavailableError,
  WildstreamError,
} from '../errors.js';
import { checkKey, checkRange, joinKey, type ObjectInfo, type PutBody, type RangeOptions, type Store, type StoreOptions } from './store.js';

/** Bodies above this go through multipart upload (lib-storage), in parts of this size. */
const PART_SIZE = 8 * 1024 * 1024;

export class S3Store implements Store {
  readonly url: string;
  readonly bucket: string;
  readonly prefix: string;
  /** Exposed so tests and benchmarks can count requests with middleware. */
  readonly client: S3Client;
  private readonly pageSize: number;

  constructor(location: string, options: StoreOptions = {}) {
    const match = /^s3:\/\/([^/]+)\/?(.*)$/i.exec(location);
    if (!match || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(match[1]!)) {
      throw new ConfigError(`invalid S3 URL ${location}: expected s3://bucket/prefix with a valid bucket name`);
    }
    this.bucket = match[1]!;
    this.prefix = match[2]!.replace(/\/+$/, '');
    this.url = `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ''}`;
    this.client = makeClient(options);
    this.pageSize = options.listPageSize ?? 1000;
  }

  private fullKey(key: string): string {
    return joinKey(this.prefix, checkKey(key));
  }

  async put(key: string, body: PutBody): Promise<void> {
    const Key = this.fullKey(key);
    await this.call(key, async () => {
      if (body instanceof Uint8Array && body.byteLength <= PART_SIZE) {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: body }));
        return;
      }
      // Multipart is still atomic: the object appears only at CompleteMultipartUpload.
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key, Body: body instanceof Uint8Array ? Buffer.from(body) : body },
        partSize: PART_SIZE,
        queueSize: 4,
        leavePartsOnError: false,
      });
      await upload.done();
    });
  }

  async get(key: string): Promise<Readable> {
    const out = await this.call(key, () =>
      this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) })),
    );
    return out.Body as Readable;
  }

  async getRange(key: string, start: number, end: number, options: RangeOptions = {}): Promise<Uint8Array> {
    checkRange(start, end);
    // Explicit `a-b` ranges only: suffix ranges are unreliable on some servers (s3rver).
    const bytes = await this.call(key, async () => {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key), Range: `bytes=${start}-${end}` }),
      );
      const body = await out.Body!.transformToByteArray();
      // Servers may answer with more than was asked (s3rver sends the whole object for `bytes=0-0`); the
      // Content-Range (or its absence: the whole object) says where the body starts, so take our slice.
      const served = /^bytes (\d+)-\d+\//.exec(out.ContentRange ?? '');
      const offset = start - (served ? Number(served[1]) : 0);
      return offset >= 0 ? body.subarray(offset, offset + end - start + 1) : body;
    });
    if (bytes.byteLength !== end - start + 1) {
      throw new StoreUnavailableError(
        `range ${start}-${end} of ${key} returned ${bytes.byteLength} bytes, expected ${end - start + 1}`,
      );
    }
    if (!options.shared) return bytes;
    const shared = new Uint8Array(new SharedArrayBuffer(bytes.byteLength));
    shared.set(bytes);
    return shared;
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const out = await this.call(key, () =>
        this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) })),
      );
      return { key, size: out.ContentLength ?? 0, etag: out.ETag ?? '' };
    } catch (err) {
      if (err instanceof NotFoundError) return null;
      throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const full = joinKey(this.prefix, prefix);
    const strip = this.prefix ? this.prefix.length + 1 : 0;
    let token: string | undefined;
    do {
      const page = await this.call(prefix || '/', () =>
        this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: full, ContinuationToken: token, MaxKeys: this.pageSize }),
        ),
      );
      for (const item of page.Contents ?? []) {
        yield { key: item.Key!.slice(strip), size: item.Size ?? 0, etag: item.ETag ?? '' };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    await this.call(key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) })));
  }

  private async call<T>(key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw mapS3Error(err, `s3://${this.bucket}/${joinKey(this.prefix, key)}`);
    }
  }
}

function makeClient(options: StoreOptions): S3Client {
  // The SDK warns on every run under Node 20 that *future* releases will need Node 22; the lockfile pins one
  // that supports Node 20, so the warning only adds noise to every CLI run.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const endpoint = options.s3Endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  if (endpoint !== undefined && !/^https?:\/\/[^/]+/i.test(endpoint)) {
    throw new ConfigError(`invalid S3 endpoint ${JSON.stringify(endpoint)}: expected http(s)://host[:port]`);
  }
  return new S3Client({
    endpoint,
    region: options.s3Region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    forcePathStyle: options.s3PathStyle ?? endpoint !== undefined,
    maxAttempts: options.maxAttempts ?? 4,
    retryMode: 'standard',
    requestHandler: {
      connectionTimeout: options.connectTimeoutMs ?? 5000,
      requestTimeout: options.requestTimeoutMs ?? 30000,
    },
  });
}

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
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
  if (name === 'CredentialsProviderError') {
    return new AccessDeniedError(`no S3 credentials found for ${where}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE`, { cause: err });
  }
  if (['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'Forbidden'].includes(name) || status === 403) {
    return new AccessDeniedError(`access denied to ${where}: ${detail}`, { cause: err });
  }
  return new StoreUnavailableError(`S3 request for ${where} failed: ${e.code ?? name ?? ''} ${detail}`.replace(/\s+/g, ' '), {
    cause: err,
  });
}
