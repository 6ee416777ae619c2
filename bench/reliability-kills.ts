/**
 * The kill half of bench/reliability.ts: SIGKILLs of `ingest`, `worker` and `train` at seeded random moments,
 * then a plain rerun, compared with an uninterrupted run of the same job.
 *
 * Invariants: every unit committed once (one record per unit, its shard's rows equal its record), no
 * duplicate keys, the same kept images (sha256 set) as the uninterrupted run; training weights identical.
 */
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { patternJpeg } from '../src/fixtures/images.js';
import { prng } from '../src/rng.js';
import { listUnits } from '../src/shards/dataset.js';
import { ShardReader } from '../src/shards/reader.js';
import { openStore } from '../src/shards/store.js';
import { listCheckpoints, loadCheckpoint } from '../src/train/checkpoint.js';
import { ingestArgs, spawnCli, startCli, tinyTrainArgs } from '../test/helpers/cli.js';
import { writePhotoDataset } from '../test/helpers/dataset.js';

export interface KillRow {
  command: string;
  kills: number;
  /** Kills that landed while the process was still working (the others found it finished). */
  landed: number;
  /** Runs (kills excluded) that exited non-zero. */
  failedRuns: number;
  /** Images or keys missing or duplicated against the uninterrupted run, or weights that differ. */
  lost: number;
  detail: string;
}

const start = (args: string[]): ChildProcess => startCli(args, { output: 'ignore' });

function finish(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('close', (code) => resolve(code)));
}

/** Runs `args` to its exit (a slow machine's run is never cut short); its exit code. */
const run = async (args: string[]): Promise<number | null> => (await spawnCli(args, { timeoutMs: 2 ** 31 - 1 })).code;

/** Starts `args` `kills` times, SIGKILLing each after a random delay in [minMs, maxMs]; returns kills that landed. */
async function killRepeatedly(
  args: string[],
  kills: number,
  rand: () => number,
  minMs: number,
  maxMs: number,
): Promise<number> {
  let landed = 0;
  for (let k = 0; k < kills; k++) {
    const child = start(args);
    await sleep(minMs + rand() * (maxMs - minMs));
    if (child.exitCode === null && child.kill('SIGKILL')) landed++;
    await finish(child);
  }
  return landed;
}

/** sha256 of every kept image, keys, and unit-record consistency of a local dataset. */
async function contents(out: string): Promise<{ shas: string[]; keys: string[]; badUnits: number }> {
  const store = await openStore(out);
  const shas: string[] = [],
    keys: string[] = [];
  let badUnits = 0;
  const units = await listUnits(store);
  if (new Set(units.map((u) => u.unit)).size !== units.length) badUnits++;
  for (const u of units) {
    let rows = 0;
    for await (const r of (await ShardReader.open(store, u.shard, { size: u.bytes })).records()) {
      shas.push(Buffer.from(r.sha256).toString('hex'));
      keys.push(r.key);
      rows++;
    }
    if (rows !== u.records) badUnits++;
  }
  return { shas: shas.sort(), keys, badUnits };
}

/** Missing plus extra images, duplicate keys and inconsistent units of `got` against `want`. */
function compareDatasets(
  want: Awaited<ReturnType<typeof contents>>,
  got: Awaited<ReturnType<typeof contents>>,
): { lost: number; detail: string } {
  const missing = want.shas.filter((s) => !got.shas.includes(s)).length;
  const extra = got.shas.length - (want.shas.length - missing);
  const dupKeys = got.keys.length - new Set(got.keys).size;
  return {
    lost: missing + extra + dupKeys + got.badUnits,
    detail: `${got.shas.length}/${want.shas.length} images, ${missing} missing, ${extra} extra, ${dupKeys} duplicate keys, ${got.badUnits} bad units`,
  };
}

/** A fixture image server, slow enough (60 ms an image) that kills land mid-unit. */
export async function slowImageServer(count: number): Promise<{ base: string; close: () => void }> {
  const images = await Promise.all(Array.from({ length: count }, (_, i) => patternJpeg(i, { width: 96, height: 80 })));
  const server = createServer(async (req, res) => {
    const m = /^\/(\d+)\.jpg$/.exec(req.url ?? '');
    if (!m) return void res.writeHead(404).end();
    await sleep(60);
    res.writeHead(200, { 'content-type': 'image/jpeg' }).end(images[Number(m[1]) % count]);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

export async function killIngest(work: string, base: string, kills: number, seed: number): Promise<KillRow> {
  const list = join(work, 'ingest-urls.txt');
  await writeFile(list, Array.from({ length: 80 }, (_, i) => `${base}/${i}.jpg`).join('\n'));
  const args = (out: string) => ingestArgs(list, out);
  let failedRuns = Number((await run(args(join(work, 'ingest-straight')))) !== 0);
  const landed = await killRepeatedly(args(join(work, 'ingest-killed')), kills, prng(seed), 200, 1500);
  failedRuns += Number((await run(args(join(work, 'ingest-killed')))) !== 0);
  const cmp = compareDatasets(
    await contents(join(work, 'ingest-straight')),
    await contents(join(work, 'ingest-killed')),
  );
  return { command: 'ingest', kills, landed, failedRuns, ...cmp };
}

/** Distributed ingest: a producer and two workers on Redis db 13; workers are killed and restarted. */
export async function killWorkers(work: string, base: string, kills: number, seed: number): Promise<KillRow> {
  const queue = 'redis://127.0.0.1:6379/13';
  const redis = new Redis(queue, { maxRetriesPerRequest: 1 });
  await redis.flushdb();
  redis.disconnect();
  const list = join(work, 'worker-urls.txt');
  await writeFile(list, Array.from({ length: 80 }, (_, i) => `${base}/${i}.jpg`).join('\n'));
  const common = [list, '--unit-size', '5', '--concurrency', '4', '--allow-address', '127.0.0.1'];
  let failedRuns = Number((await run(['ingest', ...common, '--out', join(work, 'worker-local')])) !== 0);
  const producer = start(['ingest', ...common, '--out', join(work, 'worker-queued'), '--queue', queue]);
  const worker = () => start(['worker', '--queue', queue, '--lock-ms', '2000']);
  const workers = [worker(), worker()];
  const rand = prng(seed);
  let landed = 0;
  for (let k = 0; k < kills; k++) {
    await sleep(300 + rand() * 1200);
    const i = Math.floor(rand() * workers.length);
    if (workers[i]!.exitCode === null && workers[i]!.kill('SIGKILL')) landed += producer.exitCode === null ? 1 : 0;
    await finish(workers[i]!);
    workers[i] = worker();
  }
  failedRuns += Number((await finish(producer)) !== 0);
  for (const w of workers) w.kill('SIGTERM');
  await Promise.all(workers.map(finish));
  const cmp = compareDatasets(await contents(join(work, 'worker-local')), await contents(join(work, 'worker-queued')));
  return { command: 'worker', kills, landed, failedRuns, ...cmp };
}

const TINY = tinyTrainArgs({ freezePrototypes: 2 }, '--log-every', '2');

async function weights(out: string): Promise<Map<string, Float32Array>> {
  const store = await openStore(out);
  const [latest] = await listCheckpoints(store);
  return (await loadCheckpoint(store, latest!.key)).values;
}

export async function killTrain(work: string, kills: number, seed: number, steps: number): Promise<KillRow> {
  const data = join(work, 'train-data');
  await writePhotoDataset(await openStore(data), { units: 3, perUnit: 16 });
  const args = (out: string) => [
    'train',
    '--data',
    data,
    '--out',
    out,
    ...TINY,
    '--steps',
    String(steps),
    '--checkpoint-every',
    '2',
  ];
  let failedRuns = Number((await run(args(join(work, 'train-straight')))) !== 0);
  const landed = await killRepeatedly(args(join(work, 'train-killed')), kills, prng(seed), 1500, 5000);
  failedRuns += Number((await run(args(join(work, 'train-killed')))) !== 0);
  const [a, b] = [await weights(join(work, 'train-straight')), await weights(join(work, 'train-killed'))];
  let max = 0; // NaN (a missing or non-finite weight) makes it NaN, which is not 0
  for (const [k, v] of a) {
    const w = b.get(k);
    for (let i = 0; i < v.length; i++) max = Math.max(max, w ? Math.abs(v[i]! - w[i]!) : Infinity);
  }
  return {
    command: 'train',
    kills,
    landed,
    failedRuns,
    lost: max === 0 ? 0 : 1,
    detail: `max weight difference ${max}`,
  };
}
