/**
 * One small storage interface for datasets and checkpoints, chosen by URL from a table of schemes
 * (as mosaicml-streaming's `storage/upload.py` does): `file:///abs`, a plain path, or `s3://bucket/prefix`.
 *
 * Keys are relative, `/`-separated and validated, so a hostile key can never escape a local root.
 * `put` is atomic: a reader sees the whole object or nothing, which is what makes a unit's record a commit point.
 * A remote store sends every request through one retry and timeout policy (`retry.ts`, set by StoreOptions); a
 * fault that outlasts it is a StoreUnavailableError naming the object and the last cause.
 */
import { ConfigError, shown, UnsupportedStoreError } from '../errors.js';
import { checkLocalRoom, checkS3Room } from './key-limits.js';
import { longestKeys } from './keys.js';
import { localRoot, parseS3Url, type Store, type StoreOptions } from './store-contract.js';

export * from './store-contract.js';
export { KeyTooLongError } from './key-limits.js';

type StoreFactory = (location: string, options: StoreOptions) => Promise<Store>;

/** The scheme table. Loaded lazily so `file:` users never load the AWS SDK. */
const FACTORIES: Record<string, StoreFactory> = {
  file: async (location, options) => new (await import('./store-local.js')).LocalStore(location, options),
  s3: async (location, options) => new (await import('./store-s3.js')).S3Store(location, options),
};

/**
 * Opens the store a URL names. A plain path (absolute or relative) is a local store. `keys`: what the caller
 * writes below the URL, which must fit the store's key length limits (checkStoreUrl).
 */
export async function openStore(url: string, options: StoreOptions = {}, keys?: readonly string[]): Promise<Store> {
  return FACTORIES[checkStoreUrl(url, keys)]!(url, options);
}

/**
 * Checks a store URL without opening it (no SDK loaded, no request) and returns its scheme: what openStore
 * refuses, a pipeline refuses before any stage runs. That includes a prefix or path too long for `keys` below it
 * (key-limits.ts): by default every key a job writes (longestKeys), so a too long prefix is refused before any
 * work, not at the first checkpoint. Throws ConfigError (UnsupportedStoreError for a scheme no store has,
 * KeyTooLongError for a prefix without room) naming the URL.
 */
export function checkStoreUrl(url: string, keys?: readonly string[]): string {
  if (typeof url !== 'string' || url.trim() === '') throw new ConfigError('store URL must be a non-empty string');
  const match = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url);
  const scheme = match ? match[1]!.toLowerCase() : 'file';
  if (!Object.hasOwn(FACTORIES, scheme)) {
    throw new UnsupportedStoreError(
      `unsupported store URL scheme "${scheme}:" in ${url}; use a path, file:///abs/path or s3://bucket/prefix`,
    );
  }
  checkUrlShape(url, match !== null);
  // Validated here, at the boundary, before the SDK loads: a bad prefix fails at once, not after writes.
  if (scheme === 's3') checkS3Room(url, parseS3Url(url).prefix, keys ?? longestKeys());
  else checkLocalRoom(url, localRoot(url), keys ?? longestKeys(true));
  return scheme;
}

/** Schemes of remote storage (ours and other tools'), which a plain path never starts with by intent. */
const REMOTE_SCHEMES = new Set(['s3', 's3a', 'gs', 'gcs', 'az', 'abfs', 'abfss', 'http', 'https', 'hf', 'oci']);

/**
 * Refuses what a store URL would silently turn into something else. A query or fragment: `file:` URLs drop it
 * (`file:///d?x` wrote to /d) and S3 would keep it as part of the key prefix; a store takes its settings from
 * options, never from its URL. A scheme without `//` (`s3:/bkt/x`, `s3:bkt`): it would be a local folder named
 * `s3:`, so a typo would keep the data on this machine while the user thinks it went to S3. A path starting
 * with `~`, which no shell expanded.
 */
function checkUrlShape(url: string, isUrl: boolean): void {
  if ((isUrl || /^file:/i.test(url)) && /[?#]/.test(url)) {
    throw new ConfigError(
      `store URL ${url} has a query string or fragment ("?" or "#"), which a store does not take; pass settings as options (--s3-endpoint, ...)`,
    );
  }
  // Only a shell expands `~`: `out: ~/data` in a pipeline file (or `--out=~/data`) made a folder named `~` here.
  if (!isUrl && /^~(\/|$)/.test(url)) {
    throw new ConfigError(
      `store path ${url} starts with "~", which only a shell expands: write $HOME${url.slice(1)} as an absolute path, or ./${url} for a folder named "~"`,
    );
  }
  // Only schemes of remote storage: a local folder may well be named `run:2` or `backup-T10:00`.
  const scheme = /^([a-z][a-z0-9+.-]*):(?!\/\/)/i.exec(url)?.[1];
  if (!isUrl && scheme !== undefined && REMOTE_SCHEMES.has(scheme.toLowerCase())) {
    throw new ConfigError(
      `store URL ${url} is malformed: write ${scheme}://..., or ./${url} for a local folder of that name`,
    );
  }
}

/** Reads a whole object into memory; for small objects such as unit records. */
export async function getBytes(store: Store, key: string): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of await store.get(key)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Refuses what is not a Store (a URL string, null) with a ConfigError naming it (`who`): a store is opened
 * with `openStore(url)`. Else a plain JavaScript caller gets a TypeError from deep inside a read.
 */
export function checkStore(store: unknown, who: string): void {
  const s = store as Partial<Store> | null;
  if (s !== null && typeof s === 'object' && typeof s.list === 'function' && typeof s.getRange === 'function') return;
  const hint = typeof store === 'string' ? `: open it with \`await openStore(${JSON.stringify(store)})\`` : '';
  throw new ConfigError(`${who} must be a Store from openStore(url), got ${shown(store)}${hint}`);
}
