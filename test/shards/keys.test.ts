// Every key a stage writes below a store's prefix is one that a builder of shards/keys.ts makes, so the up-front
// length check (longestKeys) reserves room for it. The writers of train, crawl and pipeline run here against a
// real store and the keys they wrote are compared with the builders': a writer that names a key itself fails
// here instead of passing the check and failing at S3 hours into a run.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitCrawlUnit, loadCrawl, markCrawlDone } from '../../src/crawl/state.js';
import { finishedStages } from '../../src/pipeline/finished.js';
import { utf8Bytes } from '../../src/shards/key-limits.js';
import * as keys from '../../src/shards/keys.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { archiveMetrics, writeMetricsPart, type MetricLine } from '../../src/train/metrics.js';
import { WEIGHTS_FILE } from '../../src/train/model-folder.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-keys-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function keysIn(store: Store): Promise<string[]> {
  const out: string[] = [];
  for await (const { key } of store.list('')) out.push(key);
  return out;
}

const longest = Math.max(...keys.longestKeys().map(utf8Bytes));

describe('the keys stages write are made by keys.ts', () => {
  it('train: checkpoints, metric parts and their archive', async () => {
    const store = await openStore(join(dir, 'run'));
    const line: MetricLine = {
      step: 7,
      epoch: 0,
      loss: 1,
      lr: 0.1,
      imagesPerSec: 1,
      dataWaitPct: 0,
      backend: 'cpu',
      time: '2026-01-01T00:00:00.000Z',
    };
    await writeMetricsPart(store, 7, [line]);
    expect(await keysIn(store)).toEqual([keys.metricsKey(7)]);
    const started = new Date();
    expect(await archiveMetrics(store, started)).toBe(keys.metricsArchiveDir(started));
    expect(await keysIn(store)).toEqual([keys.metricsArchiveKey(started, 7)]);
  });

  it('crawl: its settings, units and end mark', async () => {
    const store = await openStore(join(dir, 'crawl'));
    await loadCrawl(store, { seeds: ['http://example.test/'] });
    await commitCrawlUnit(store, { unit: 7, pages: [], images: [], frontier: [], committedAt: '' });
    await markCrawlDone(store, {});
    expect((await keysIn(store)).sort()).toEqual(
      [keys.CRAWL_CONFIG_KEY, keys.crawlUnitKey(7), keys.CRAWL_DONE_KEY].sort(),
    );
  });

  it('pipeline: the stamps of finished output stages', async () => {
    const run = join(dir, 'stamps');
    const done = await finishedStages(run, join(dir, 'no-dataset'));
    for (const stage of keys.STAMPED_STAGES) await done.run(stage, {}, [], async () => {});
    expect((await keysIn(await openStore(run))).sort()).toEqual(keys.STAMPED_STAGES.map(keys.stampKey).sort());
  });

  it('export: the weights file name is one the reader takes', () => {
    expect(keys.weightsKey('0123456789abcdef'.repeat(4))).toMatch(WEIGHTS_FILE);
  });

  it('the longest key is no shorter than any of them at the largest numbers a run reaches', () => {
    for (const key of [keys.checkpointKey(999_999_999), keys.metricsArchiveKey(new Date(), 999_999_999)])
      expect(utf8Bytes(key)).toBeLessThanOrEqual(longest);
  });
});
