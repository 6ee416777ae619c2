/**
 * One small storage interface for datasets and checkpoints, chosen by URL from a table of schemes
 * (as mosaicml-streaming's `storage/upload.py` does): `file:///abs`, a plain path, or `s3://bucket/prefix`.
 *
 * Keys are relative, `/`-separated and validated, so a hostile key can never escape a local root.
 * `put` is atomic: a reader sees the whole object or nothing, which is what makes a unit's record a commit point.
 * A remote store sends every request through one retry and timeout policy (`retry.ts`, set by StoreOptions); a
 * fault that outlasts it is a StoreUnavailableError naming the object and the last cause.
 */
import { ConfigError, UnsupportedStoreError } from '../errors.js';
import { parseS3Url, type Store, type StoreOptions } from './store-contract.js';

export * from './store-contract.js';

type StoreFactory = (location: string, options: StoreOptions) => Promise<Store>;

/** The scheme table. Loaded lazily so `file:` users never load the AWS SDK. */
const FACTORIES: Record<string, StoreFactory> = {
  file: async (location, options) => new (await import('./store-local.js')).LocalStore(location, options),
  s3: async (location, options) => new (await import('./store-s3.js')).S3Store(location, options),
};

/** Opens the store a URL names. A plain path (absolute or relative) is a local store. */
export async function openStore(url: string, options: StoreOptions = {}): Promise<Store> {
  if (typeof url !== 'string' || url.trim() === '') throw new ConfigError('store URL must be a non-empty string');
  const match = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url);
  const scheme = match ? match[1]!.toLowerCase() : 'file';
  const factory = FACTORIES[scheme];
  if (!factory) {
    throw new UnsupportedStoreError(
      `unsupported store URL scheme "${scheme}:" in ${url}; use a path, file:///abs/path or s3://bucket/prefix`,
    );
  }
  // Validated here, at the boundary, before the SDK loads: a bad prefix fails at once, not after writes.
  if (scheme === 's3') parseS3Url(url);
  return factory(url, options);
}

/** Reads a whole object into memory; for small objects such as unit records. */
export async function getBytes(store: Store, key: string): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of await store.get(key)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
