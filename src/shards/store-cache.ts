/**
 * A read-through local cache for immutable objects (shards) of a remote store: the first read of a shard
 * downloads it whole into a local directory (atomically, so an interrupted download is never served), later
 * reads are local ranged reads. Mutable keys (unit records, the manifest) always go to the remote store.
 */
import type { Readable } from 'node:stream';
import { LocalStore } from './store-local.js';
import { getBytes, type ObjectInfo, type PutBody, type RangeOptions, type Store } from './store.js';

export class CachedStore implements Store {
  private readonly cache: LocalStore;
  private readonly downloads = new Map<string, Promise<void>>();

  constructor(
    private readonly remote: Store,
    cacheDir: string,
    /** Which keys are immutable and may be cached. */
    private readonly cacheable: (key: string) => boolean = (key) => key.endsWith('.arrow'),
  ) {
    this.cache = new LocalStore(cacheDir);
  }

  get url(): string {
    return this.remote.url;
  }

  put(key: string, body: PutBody): Promise<void> {
    return this.remote.put(key, body);
  }

  async get(key: string): Promise<Readable> {
    return (await this.local(key)) ? this.cache.get(key) : this.remote.get(key);
  }

  async getRange(key: string, start: number, end: number, options?: RangeOptions): Promise<Uint8Array> {
    return (await this.local(key))
      ? this.cache.getRange(key, start, end, options)
      : this.remote.getRange(key, start, end, options);
  }

  /**
   * A cached copy's info, else the remote's: null when the object is absent, as every store's head is (a head
   * that downloaded first threw NotFoundError for a missing shard, and fetched a whole shard to learn its size).
   */
  async head(key: string): Promise<ObjectInfo | null> {
    return (this.cacheable(key) && (await this.cache.head(key))) || this.remote.head(key);
  }

  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.remote.list(prefix);
  }

  async delete(key: string): Promise<void> {
    await this.remote.delete(key);
    if (this.cacheable(key)) await this.cache.delete(key);
  }

  /** True when `key` is (now) in the cache; downloads a cacheable key once, even under concurrent reads. */
  private async local(key: string): Promise<boolean> {
    if (!this.cacheable(key)) return false;
    if (await this.cache.head(key)) return true;
    let download = this.downloads.get(key);
    if (!download) {
      download = (async () => this.cache.put(key, await getBytes(this.remote, key)))();
      this.downloads.set(key, download);
      download.finally(() => this.downloads.delete(key)).catch(() => {});
    }
    await download;
    return true;
  }
}
