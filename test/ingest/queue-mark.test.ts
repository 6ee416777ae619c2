import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { clearQueued, markQueued, refuseQueued } from '../../src/ingest/queue-mark.js';
import { openStore } from '../../src/shards/store.js';

let dir: string;
beforeAll(async () => void (dir = await mkdtemp(join(tmpdir(), 'ws-qmark-'))));
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('the queue mark', () => {
  it('a producer of another job adds its entry and removes only its own: the first job still refuses local runs', async () => {
    const store = await openStore(join(dir, 'two'));
    await markQueued(store, 'redis://a:6379/0', { firstUnit: 0, units: 4 });
    await markQueued(store, 'redis://b:6379/0', { firstUnit: 4, units: 2 }); // an --append producer
    await clearQueued(store, { firstUnit: 4 }); // its units all committed
    await expect(refuseQueued(store)).rejects.toThrow(
      /has units queued on redis:\/\/a:6379\/0 by a producer that stopped/,
    );
    await clearQueued(store, { firstUnit: 0 });
    await expect(refuseQueued(store)).resolves.toBeUndefined();
    expect(await store.head('queue.json')).toBeNull();
  });

  it('a mark that does not read (null, not JSON, no job list) refuses with the ConfigError, never a crash', async () => {
    await mkdir(join(dir, 'bad'));
    const store = await openStore(join(dir, 'bad'));
    for (const body of ['null', '', 'garbage{', '123', '[]', '{}', '{"jobs":[null]}', '{"jobs":[{"queue":1}]}']) {
      await writeFile(join(dir, 'bad', 'queue.json'), body);
      const refused = await refuseQueued(store).catch((e: unknown) => e);
      expect(refused, body).toBeInstanceOf(ConfigError);
      expect((refused as Error).message, body).toMatch(/has units queued on its queue/);
    }
  });
});
