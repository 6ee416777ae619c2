// Training on data that can give nothing ends at once with what the dataset holds; a storage outage that
// outlasts the store's retries ends with the completed steps checkpointed and advice to rerun, and the rerun
// reaches the weights of an uninterrupted run.
import { mkdtemp, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/errors.js';
import { commitUnit, listUnits } from '../../src/shards/dataset.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { startBackend } from '../../src/train/backend.js';
import { listCheckpoints, loadCheckpoint } from '../../src/train/checkpoint.js';
import { defaultTrainConfig, type TrainConfig } from '../../src/train/config.js';
import { DEFAULT_SWAV } from '../../src/train/swav.js';
import { trainOnStore } from '../../src/jobs/train.js';
import { runCli, tinyTrainArgs } from '../helpers/cli.js';
import { writeDataset, writePhotoDataset } from '../helpers/dataset.js';
import { faultyStore } from '../helpers/faulty-store.js';

let dir: string;

const TINY = tinyTrainArgs({ crops: '2x32@0.3-1' }, '--steps', '4');

function tinyConfig(steps: number): TrainConfig {
  return defaultTrainConfig({
    model: 'custom:3,16,8,2,16',
    batchSize: 8,
    crops: '2x32@0.3-1,2x16@0.1-0.3',
    steps,
    swav: { ...DEFAULT_SWAV, prototypes: 16, hidden: 32, dim: 16, freezePrototypesSteps: 2 },
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-empty-'));
  await startBackend('wasm');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('train: a dataset with nothing to train on', () => {
  it('exits 1 within seconds, saying what the dataset holds: 0-record unit, truncated only shard, images that never decode', async () => {
    const zero = await openStore(join(dir, 'zero'));
    await writeDataset(zero, { units: 1, perUnit: 0 }); // what ingest commits when every URL of a unit failed
    const [unit] = await listUnits(zero);
    await commitUnit(zero, { ...unit!, inputs: 3, failed: { http_404: 2, dns_error: 1 } });
    await writeDataset(await openStore(join(dir, 'truncated')), { units: 1, perUnit: 20 });
    await truncate(join(dir, 'truncated', 'shards', '000000.arrow'), 4000);
    await writeDataset(await openStore(join(dir, 'junk')), { units: 2, perUnit: 10 }); // bytes that are no image

    const cases = [
      [
        'zero',
        /no record could be read: file:\/\/.*zero holds 1 committed unit with 0 records; its inputs failed: http_404 2, dns_error 1$/m,
      ],
      [
        'truncated',
        /no record could be read: file:\/\/.*truncated holds 1 committed unit with 20 records; unreadable: bad_shard 1 \(.*shorter than the \d+ bytes expected \(truncated\?\)\)$/m,
      ],
      [
        'junk',
        /no sample could be made: file:\/\/.*junk holds 2 committed units with 20 records; a whole epoch of 20 records gave no sample \(decode_error 20\)$/m,
      ],
    ] as const;
    // A hang is killed at 90 s (and fails); the runs start together, so each takes the CLI's start-up plus moments.
    const runs = await Promise.all(
      cases.map(([name]) =>
        runCli(['train', '--data', join(dir, name), '--out', join(dir, `${name}-out`), ...TINY], {}, 90_000),
      ),
    );
    runs.forEach((r, i) => {
      expect(r.code, `${cases[i]![0]}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(cases[i]![1]);
    });
  }, 120_000);
});

describe('train: a storage outage that outlasts the retries', () => {
  it('checkpoints the last completed step, says to rerun, and the rerun reaches the uninterrupted weights', async () => {
    const data = await openStore(join(dir, 'photos'));
    await writePhotoDataset(data, { units: 3, perUnit: 16 });
    const straight = await openStore(join(dir, 'straight'));
    await trainOnStore({
      data,
      out: straight,
      config: tinyConfig(8),
      backend: 'wasm',
      threads: 1,
      checkpointEvery: 100,
    });

    // Epoch 0's reads (3 shard footers, 6 record batches) are answered; later reads fail as a store's do
    // once its retries are spent.
    const down = new StoreUnavailableError(`${data.url}: connection refused (4 attempts)`);
    const outage = faultyStore(data, (method, _args, nth) => (method === 'getRange' && nth >= 9 ? down : undefined));
    const out = await openStore(join(dir, 'outage'));
    const failed = trainOnStore({
      data: outage,
      out,
      config: tinyConfig(8),
      backend: 'wasm',
      threads: 1,
      checkpointEvery: 100,
    });
    await expect(failed).rejects.toThrow(StoreUnavailableError);
    const err = await failed.catch((e: Error) => e);
    const saved = await listCheckpoints(out);
    expect(saved).toHaveLength(1);
    expect(saved[0]!.step).toBeGreaterThan(0);
    expect(saved[0]!.step).toBeLessThan(6); // epoch 0 is 6 batches; the loader reads ahead into epoch 1
    expect((err as Error).message).toBe(
      `${down.message}; training stopped at step ${saved[0]!.step}, ${saved[0]!.key} written; ` +
        'rerun the same command to resume once the store answers',
    );

    const resumed = await trainOnStore({
      data,
      out,
      config: tinyConfig(8),
      backend: 'wasm',
      threads: 1,
      checkpointEvery: 100,
    });
    expect(resumed.resumedFrom).toBe(saved[0]!.key);
    expect(maxDiff(await finalValues(straight), await finalValues(out))).toBeLessThan(1e-5);
  }, 120_000);
});

async function finalValues(store: Store): Promise<Map<string, Float32Array>> {
  const [latest] = await listCheckpoints(store);
  return (await loadCheckpoint(store, latest!.key)).values;
}

function maxDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  let max = 0;
  for (const [k, v] of a) v.forEach((x, i) => (max = Math.max(max, Math.abs(x - b.get(k)![i]!))));
  return max;
}
