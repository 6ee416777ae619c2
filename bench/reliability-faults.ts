/**
 * The storage-fault half of bench/reliability.ts: ingest, worker, inspect, train and embed against s3rver
 * behind test/helpers/fault-proxy.ts (500, 503 SlowDown, resets mid-body, truncated bodies, stalls, latency
 * on a seeded fraction of requests), each compared with the same command run fault-free.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { listUnits } from '../src/shards/dataset.js';
import { ShardReader } from '../src/shards/reader.js';
import { openStore } from '../src/shards/store.js';
import { listCheckpoints, loadCheckpoint } from '../src/train/checkpoint.js';
import { ingestArgs, runCli, startCli, tinyTrainArgs, type CliResult } from '../test/helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../test/helpers/fault-proxy.js';
import type { S3Fixture } from '../test/helpers/s3-server.js';

export interface FaultRow {
  command: string;
  runs: number;
  requests: number;
  faults: number;
  failedRuns: number;
  lost: number;
  detail: string;
}

interface Ctx {
  s3: S3Fixture;
  proxy: FaultProxy;
  work: string;
  list: string;
}

/** Runs the CLI to its exit against s3rver, behind the fault proxy when `faulty`. */
function cli(ctx: Ctx, faulty: boolean, args: string[], extraEnv: Record<string, string> = {}): Promise<CliResult> {
  const store = faulty
    ? ['--s3-endpoint', ctx.proxy.endpoint, '--store-idle-timeout', '2']
    : ['--s3-endpoint', ctx.s3.endpoint];
  return runCli([...args, ...store], { ...ctx.s3.env, ...extraEnv }, 2 ** 31 - 1);
}

const direct = (ctx: Ctx, url: string) => openStore(url, { s3Endpoint: ctx.s3.endpoint });

async function keysOf(ctx: Ctx, url: string): Promise<string[]> {
  const store = await direct(ctx, url);
  const keys: string[] = [];
  for (const unit of await listUnits(store)) {
    for await (const r of (await ShardReader.open(store, unit.shard, { size: unit.bytes })).records())
      keys.push(`${r.key}:${Buffer.from(r.sha256).toString('hex')}`);
  }
  return keys.sort();
}

function diffKeys(want: string[], got: string[]): number {
  const g = new Set(got);
  return want.filter((k) => !g.has(k)).length + (got.length - g.size) + Math.max(0, got.length - want.length);
}

/** Runs `body` `runs` times and returns its row, counting the proxy's requests and faults in between. */
async function measure(
  ctx: Ctx,
  command: string,
  runs: number,
  body: (round: number) => Promise<{ failed: boolean; lost: number; detail: string }>,
): Promise<FaultRow> {
  const injected = () => Object.values(ctx.proxy.stats.injected).reduce((a, b) => a + (b ?? 0), 0);
  const [r0, f0] = [ctx.proxy.stats.requests, injected()];
  let failedRuns = 0,
    lost = 0;
  const details: string[] = [];
  for (let round = 0; round < runs; round++) {
    const result = await body(round);
    failedRuns += Number(result.failed);
    lost += result.lost;
    if (result.detail) details.push(result.detail);
  }
  return {
    command,
    runs,
    requests: ctx.proxy.stats.requests - r0,
    faults: injected() - f0,
    failedRuns,
    lost,
    detail: details.slice(0, 3).join('; '),
  };
}

const INGEST = (ctx: Ctx, out: string) => ingestArgs(ctx.list, out);
const TINY = tinyTrainArgs({ freezePrototypes: 1 }, '--checkpoint-every', '2');

export async function faultRows(
  s3: S3Fixture,
  work: string,
  list: string,
  runs: number,
  rate: number,
  trainSteps: number,
): Promise<FaultRow[]> {
  const proxy = await startFaultProxy({ upstream: s3.endpoint, rate, seed: 7 });
  const ctx: Ctx = { s3, proxy, work, list };
  try {
    if ((await cli(ctx, false, INGEST(ctx, 's3://rel/clean'))).code !== 0)
      throw new Error('the fault-free ingest failed');
    const clean = await keysOf(ctx, 's3://rel/clean');
    const rows: FaultRow[] = [];
    rows.push(
      await measure(ctx, 'ingest (+ rerun)', runs, async (round) => {
        const out = `s3://rel/ingest-${round}`;
        const codes = [(await cli(ctx, true, INGEST(ctx, out))).code, (await cli(ctx, true, INGEST(ctx, out))).code];
        const lost = diffKeys(clean, await keysOf(ctx, out));
        return { failed: codes.some((c) => c !== 0), lost, detail: lost ? `${out}: ${lost} keys differ` : '' };
      }),
    );
    rows.push(await measure(ctx, 'worker', runs, (round) => workerRound(ctx, clean, round)));
    const cleanInspect = JSON.parse((await cli(ctx, false, ['inspect', 's3://rel/clean', '--json'])).stdout);
    rows.push(
      await measure(ctx, 'inspect', runs, async () => {
        const r = await cli(ctx, true, ['inspect', 's3://rel/clean', '--json']);
        const same =
          r.code === 0 &&
          JSON.stringify({ ...JSON.parse(r.stdout), store: 0 }) === JSON.stringify({ ...cleanInspect, store: 0 });
        return {
          failed: r.code !== 0,
          lost: r.code === 0 && !same ? 1 : 0,
          detail: r.code ? r.stderr.trim().split('\n').pop()! : '',
        };
      }),
    );
    const steps = ['--steps', String(trainSteps)];
    await cli(ctx, false, ['train', '--data', 's3://rel/clean', '--out', 's3://rel/run-clean', ...TINY, ...steps]);
    const want = await weights(ctx, 's3://rel/run-clean');
    rows.push(
      await measure(ctx, 'train', runs, async (round) => {
        const out = `s3://rel/run-${round}`;
        const r = await cli(ctx, true, ['train', '--data', 's3://rel/clean', '--out', out, ...TINY, ...steps]);
        const same = r.code === 0 && sameWeights(want, await weights(ctx, out));
        return {
          failed: r.code !== 0,
          lost: r.code === 0 && !same ? 1 : 0,
          detail: r.code ? r.stderr.trim().split('\n').pop()! : '',
        };
      }),
    );
    await cli(ctx, false, ['export', 's3://rel/run-clean', '--out', 's3://rel/model']);
    await cli(ctx, false, [
      'embed',
      's3://rel/clean',
      '--model',
      's3://rel/model',
      '--out',
      join(work, 'emb-clean.arrow'),
      '--backend',
      'wasm',
    ]);
    const emb = await readFile(join(work, 'emb-clean.arrow'));
    rows.push(
      await measure(ctx, 'embed', runs, async (round) => {
        const out = join(work, `emb-${round}.arrow`);
        const r = await cli(ctx, true, [
          'embed',
          's3://rel/clean',
          '--model',
          's3://rel/model',
          '--out',
          out,
          '--backend',
          'wasm',
        ]);
        const same = r.code === 0 && (await readFile(out)).equals(emb);
        return {
          failed: r.code !== 0,
          lost: r.code === 0 && !same ? 1 : 0,
          detail: r.code ? r.stderr.trim().split('\n').pop()! : '',
        };
      }),
    );
    return rows;
  } finally {
    await proxy.stop();
  }
}

/** A producer and two workers (which take the store, endpoint included, from the queued units). */
async function workerRound(
  ctx: Ctx,
  clean: string[],
  round: number,
): Promise<{ failed: boolean; lost: number; detail: string }> {
  const queue = 'redis://127.0.0.1:6379/12';
  const redis = new Redis(queue, { maxRetriesPerRequest: 1 });
  await redis.flushdb();
  redis.disconnect();
  const out = `s3://rel/queued-${round}`;
  const workers = [0, 1].map(() =>
    startCli(['worker', '--queue', queue, '--lock-ms', '3000'], { env: ctx.s3.env, output: 'ignore' }),
  );
  const exits = workers.map((w) => new Promise<number | null>((resolve) => w.once('close', (code) => resolve(code))));
  const producer = await cli(ctx, true, [...INGEST(ctx, out), '--queue', queue]);
  for (const w of workers) w.kill('SIGTERM');
  const codes = await Promise.all(exits);
  const lost = diffKeys(clean, await keysOf(ctx, out));
  const failed = producer.code !== 0 || codes.some((c) => c !== 0 && c !== 143);
  return {
    failed,
    lost,
    detail: failed ? `producer ${producer.code}: ${producer.stderr.trim().split('\n').pop()}; workers ${codes}` : '',
  };
}

async function weights(ctx: Ctx, url: string): Promise<Map<string, Float32Array>> {
  const store = await direct(ctx, url);
  const [latest] = await listCheckpoints(store);
  return (await loadCheckpoint(store, latest!.key)).values;
}

function sameWeights(a: Map<string, Float32Array>, b: Map<string, Float32Array>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w || w.length !== v.length || !w.every((x, i) => x === v[i])) return false;
  }
  return true;
}
