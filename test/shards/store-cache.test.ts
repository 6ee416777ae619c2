/** The read-through cache keeps the Store contract: head says null for a missing object, as every store does. */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CachedStore } from '../../src/shards/store-cache.js';
import { getBytes, openStore } from '../../src/shards/store.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-cache-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('heads a missing shard as null and a present one without downloading it, then serves reads from the cache', async () => {
  const remote = await openStore(join(dir, 'remote'));
  const cacheDir = join(dir, 'cache');
  const cached = new CachedStore(remote, cacheDir);
  // head threw NotFoundError here: it downloaded the shard first, and a missing one failed the download.
  expect(await cached.head('shards/000009.arrow')).toBeNull();
  await remote.put('shards/000000.arrow', Buffer.from('0123456789'));
  expect(await cached.head('shards/000000.arrow')).toMatchObject({ key: 'shards/000000.arrow', size: 10 });
  expect(await readdir(cacheDir).catch(() => [])).toEqual([]); // a head fetched the whole shard
  expect(Buffer.from(await cached.getRange('shards/000000.arrow', 2, 4)).toString()).toBe('234');
  await remote.delete('shards/000000.arrow');
  expect(Buffer.from(await getBytes(cached, 'shards/000000.arrow')).toString()).toBe('0123456789'); // cached
  expect(await cached.head('shards/000000.arrow')).toMatchObject({ size: 10 });
});
