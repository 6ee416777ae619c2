// SIGTERM ends `wildstream train` within 5 s whatever it is waiting on: new units of an empty dataset it
// follows, or a shard read that an S3 proxy accepted and never answers. A step completed since the last
// checkpoint is saved; with none, nothing is written. (A stop between steps, and the resume that follows to
// the same weights, is trainer.test.ts's SIGTERM case.)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/shards/store.js';
import { listCheckpoints } from '../../src/train/checkpoint.js';
import { spawnCli, tinyTrainArgs } from '../helpers/cli.js';
import { writePhotoDataset } from '../helpers/dataset.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { startS3, type S3Fixture } from '../helpers/s3-server.js';

const TINY = tinyTrainArgs(
  { freezePrototypes: 2 },
  ...['--log-every', '1', '--steps', '100', '--checkpoint-every', '100'],
);

let dir: string;
let s3: S3Fixture;
let proxy: FaultProxy;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-signals-'));
  s3 = await startS3(['sig']);
  proxy = await startFaultProxy({ upstream: s3.endpoint });
  Object.assign(process.env, s3.env);
  await writePhotoDataset(await openStore('s3://sig/ds', { s3Endpoint: s3.endpoint }), { units: 3, perUnit: 16 });
}, 60_000);
afterAll(async () => {
  await proxy?.stop();
  await s3?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Runs `train`, sends SIGTERM once `ready()` holds, and times the exit (`exitMs`). */
const trainThenStop = (
  args: string[],
  ready: (out: { stdout: string; stderr: string }) => boolean,
  env: Record<string, string> = {},
) => spawnCli(['train', ...args], { env, stopWhen: ready, timeoutMs: 150_000 });

describe('train: SIGTERM in every wait', () => {
  it('while following a dataset with no units yet', async () => {
    const out = join(dir, 'follow-out');
    const r = await trainThenStop(['--data', join(dir, 'nothing'), '--out', out, '--follow', ...TINY], ({ stdout }) =>
      /waiting for new units/.test(stdout),
    );
    expect(r.stdout).toMatch(/following: no committed units in file:\/\/.*nothing yet; waiting for new units/);
    expect(r.code, r.stderr).toBe(143);
    expect(r.exitMs).toBeLessThan(5000);
    expect(r.stderr).toMatch(/stopped by SIGTERM before its first step; no checkpoint was written; rerun to resume/);
    expect(await listCheckpoints(await openStore(out))).toEqual([]);
  }, 160_000);

  it('while the loader is blocked on a shard read that never answers, saving the steps done', async () => {
    // Epoch 0's reads (3 footers, 6 batches) are answered; every later ranged shard GET is accepted and never answered.
    let shardReads = 0;
    proxy.inject(
      'stall-headers',
      1_000_000,
      (req) => req.method === 'GET' && req.range !== undefined && req.path.includes('/shards/') && ++shardReads > 9,
    );
    const out = join(dir, 'stalled-out');
    const stalled = () => (proxy.stats.injected['stall-headers'] ?? 0) > 0;
    let since = 0;
    const r = await trainThenStop(
      ['--data', 's3://sig/ds', '--out', out, '--s3-endpoint', proxy.endpoint, ...TINY],
      // Half a second after the first stall, the loader has used up what it read and waits on the stalled GET.
      () => stalled() && (since ||= performance.now()) < performance.now() - 500,
      s3.env,
    );
    proxy.clear();
    expect(r.code, r.stderr).toBe(143);
    expect(r.exitMs).toBeLessThan(5000);
    const saved = await listCheckpoints(await openStore(out));
    expect(saved).toHaveLength(1);
    expect(saved[0]!.step).toBeGreaterThan(0);
    expect(saved[0]!.step).toBeLessThan(6); // epoch 0 holds 6 batches, and the stall came before the last
    expect(r.stderr).toMatch(new RegExp(`stopped by SIGTERM at step ${saved[0]!.step}; ${saved[0]!.key} written`));
  }, 160_000);

  it('while the first read of the dataset never answers (before training starts)', async () => {
    const before = proxy.stats.injected['stall-headers'] ?? 0; // earlier tests' stalls stay counted
    proxy.inject('stall-headers', 1_000_000);
    const out = join(dir, 'startup-out');
    const r = await trainThenStop(
      ['--data', 's3://sig/ds', '--out', out, '--s3-endpoint', proxy.endpoint, ...TINY],
      () => (proxy.stats.injected['stall-headers'] ?? 0) > before,
      s3.env,
    );
    proxy.clear();
    expect(r.code, r.stderr).toBe(143);
    expect(r.exitMs).toBeLessThan(5000);
    expect(r.stderr).toMatch(/stopped by SIGTERM before training started; nothing was changed/);
  }, 160_000);
});
