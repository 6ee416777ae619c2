import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patternJpeg } from '../../src/fixtures/images.js';
import { RedisDedupe } from '../../src/ingest/dedupe-redis.js';
import { runIngest, type IngestOptions } from '../../src/ingest/job.js';
import { runQueuedIngest, runWorker } from '../../src/ingest/queue.js';
import { listUnits } from '../../src/shards/dataset.js';
import { ShardReader } from '../../src/shards/reader.js';
import { openStore } from '../../src/shards/store.js';
import { BIN, runCli } from '../helpers/cli.js';

/** A real redis-server on loopback (`.ci/run` installs and starts it); db 15 is flushed by these tests. */
const REDIS = process.env.WILDSTREAM_TEST_REDIS ?? 'redis://127.0.0.1:6379/15';
let dir: string;
let server: Server;
let base: string;
let redis: Redis;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-queue-'));
  redis = new Redis(REDIS, { maxRetriesPerRequest: 1 });
  await redis.flushdb();
  const images = await Promise.all(Array.from({ length: 35 }, (_, i) => patternJpeg(i, { width: 96, height: 80 })));
  server = createServer(async (req, res) => {
    const m = /^\/(\d+)\.jpg$/.exec(req.url ?? '');
    if (!m) return void res.writeHead(404).end();
    await sleep(120); // slow enough that a unit is still running when its worker is killed
    res.writeHead(200, { 'content-type': 'image/jpeg' }).end(images[Number(m[1]) % 35]);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // 40 URLs: images 35-39 are exact copies of 0-4 (other URLs), in other units than their originals.
  await writeFile(join(dir, 'urls.txt'), Array.from({ length: 40 }, (_, i) => `${base}/${i}.jpg`).join('\n'));
});

afterAll(async () => {
  redis.disconnect();
  server.close();
  await rm(dir, { recursive: true, force: true });
});

function startWorker(): { child: ChildProcess; events: Array<Record<string, unknown>> } {
  const child = spawn(process.execPath, [BIN, 'worker', '--queue', REDIS, '--lock-ms', '2000'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const events: Array<Record<string, unknown>> = [];
  let buf = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      events.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  return { child, events };
}

async function until(cond: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(25);
  }
}

async function shas(out: string): Promise<{ shas: string[]; keys: string[] }> {
  const store = await openStore(out);
  const shas: string[] = [],
    keys: string[] = [];
  for (const u of await listUnits(store)) {
    for await (const r of (await ShardReader.open(store, u.shard, { size: u.bytes })).records()) {
      shas.push(Buffer.from(r.sha256).toString('hex'));
      keys.push(r.key);
    }
  }
  return { shas: shas.sort(), keys };
}

describe('distributed ingest on BullMQ', () => {
  it('3 workers, one SIGKILLed mid-unit, give the same kept images as a local run, with no duplicate keys', async () => {
    const common = [join(dir, 'urls.txt'), '--allow-address', '127.0.0.1', '--unit-size', '5', '--concurrency', '1'];
    const workers = [startWorker(), startWorker(), startWorker()];
    try {
      // Generous start-up margins: on a loaded 2-core machine a CLI process takes tens of seconds to start.
      await until(() => workers.every((w) => w.events.some((e) => e.event === 'worker_ready')), 120_000);
      const producer = runCli(['ingest', ...common, '--out', join(dir, 'queued'), '--queue', REDIS], {}, 120_000);
      await until(() => workers[0]!.events.some((e) => e.event === 'unit_start'), 120_000);
      const killedUnit = workers[0]!.events.find((e) => e.event === 'unit_start')!.unit;
      workers[0]!.child.kill('SIGKILL');
      const r = await producer;
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toMatchObject({
        event: 'ingest_done',
        unitsTotal: 8,
        unitsDone: 8,
      });
      // The killed worker's unit was finished by another worker, after its lock expired.
      const others = workers.slice(1).flatMap((w) => w.events);
      expect(others.some((e) => e.event === 'unit_done' && e.unit === killedUnit)).toBe(true);
      expect(workers[0]!.events.some((e) => e.event === 'unit_done' && e.unit === killedUnit)).toBe(false);
    } finally {
      for (const w of workers) w.child.kill('SIGTERM');
    }
    const local = await runCli(['ingest', ...common, '--out', join(dir, 'local')]);
    expect(local.code, local.stderr).toBe(0);
    const [q, l] = [await shas(join(dir, 'queued')), await shas(join(dir, 'local'))];
    expect(q.shas).toHaveLength(35);
    expect(q.shas).toEqual(l.shas);
    expect(new Set(q.keys).size).toBe(q.keys.length);
    expect(new Set(q.shas).size).toBe(q.shas.length);
  }, 300_000);

  it('the shared index: exact and near duplicates across units, and a retried unit keeps its own images', async () => {
    const sha = (n: number) => new Uint8Array(32).fill(n);
    const a = new RedisDedupe(redis, 'test:idx', 8),
      b = new RedisDedupe(redis, 'test:idx', 8),
      retry = new RedisDedupe(redis, 'test:idx', 8);
    expect(await a.check(sha(1), 0x0123456789abcdefn, 1)).toBeNull();
    expect(await a.check(sha(1), 0x0123456789abcdefn, 1)).toBe('exact'); // the same image twice in one unit
    expect(await b.check(sha(1), 0x0123456789abcdefn, 2)).toBe('exact');
    expect(await b.check(sha(2), 0x0123456789abcdefn ^ 0b1011n, 2)).toBe('near'); // 3 bits apart
    expect(await b.check(sha(3), 0x0123456789abcdefn ^ 0xffffn, 2)).toBeNull(); // 16 bits apart
    expect(await retry.check(sha(1), 0x0123456789abcdefn, 1)).toBeNull(); // unit 1 again, after its worker died
    expect(await b.check(sha(1), 0x0123456789abcdefn, 2)).toBe('exact');
  });

  it('says when no worker has taken a unit, and sums up as a local run does (failedByReason included)', async () => {
    const list = join(dir, 'mixed.txt');
    await writeFile(list, [`${base}/1.jpg`, `${base}/missing`, `${base}/2.jpg`].join('\n'));
    const common = [list, '--allow-address', '127.0.0.1', '--unit-size', '2'];
    const producer = spawn(
      process.execPath,
      [BIN, 'ingest', ...common, '--out', join(dir, 'no-worker'), '--queue', REDIS, '--worker-notice', '1'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    producer.stdout!.on('data', (d) => (stdout += d));
    producer.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise((resolve) => producer.once('close', resolve));
    let worker: ReturnType<typeof startWorker> | undefined;
    try {
      await until(() => /no worker has taken a unit/.test(stderr), 90_000);
      expect(stderr).toMatch(
        /^wildstream: no worker has taken a unit in \d+ s; 2 units wait in the queue: start workers with `wildstream worker --queue redis:\/\/127\.0\.0\.1:6379\/15`/m,
      );
      worker = startWorker();
      expect(await exited, stderr).toBe(0);
    } finally {
      producer.kill('SIGKILL');
      worker?.child.kill('SIGTERM');
    }
    const local = await runCli(['ingest', ...common, '--out', join(dir, 'no-worker-local')]);
    expect(local.code, local.stderr).toBe(0);
    const [q, l] = [stdout, local.stdout].map((out) => ({
      ...JSON.parse(out.trim().split('\n').at(-1)!),
      elapsedSeconds: 0,
    }));
    expect(q).toEqual(l);
    expect(q).toMatchObject({ unitsDone: 2, kept: 2, failedByReason: { http_404: 1 }, keptInJob: 2, warnings: [] });
  }, 180_000);

  it('the same list through the local and the queued executor gives equal summaries, every failure reason included', async () => {
    const list = join(dir, 'executors.txt');
    // Kept, 404, a refused scheme, an exact copy of the first (36 serves image 1), kept: reasons and duplicates in every unit.
    await writeFile(
      list,
      [`${base}/1.jpg`, `${base}/missing`, 'ftp://example.test/a.jpg', `${base}/36.jpg`, `${base}/3.jpg`].join('\n'),
    );
    const options = (out: string): IngestOptions => ({
      lists: [list],
      out: join(dir, out),
      unitSize: 2,
      fetch: { allowAddresses: ['127.0.0.1'] },
    });
    const local = await runIngest(options('exec-local'));
    const controller = new AbortController();
    const worker = runWorker(REDIS, { signal: controller.signal });
    try {
      const queued = await runQueuedIngest(options('exec-queued'), REDIS, { noWorkerNoticeMs: 600_000 });
      expect({ ...queued, elapsedSeconds: 0 }).toEqual({ ...local, elapsedSeconds: 0 });
    } finally {
      controller.abort();
      await worker;
    }
    expect(local).toMatchObject({
      unitsTotal: 3,
      unitsDone: 3,
      urls: 5,
      kept: 2,
      duplicates: 1,
      failed: 2,
      failedByReason: { http_404: 1, url_scheme: 1 },
      keptInJob: 2,
    });
  }, 120_000);

  it('fails clearly on a malformed or unreachable Redis', async () => {
    const list = join(dir, 'urls.txt');
    const bad = await runCli(['ingest', list, '--out', join(dir, 'x'), '--queue', 'http://127.0.0.1:6379']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--queue must be a redis:\/\/ or rediss:\/\/ URL|--queue must look like redis/);
    const down = await runCli(['ingest', list, '--out', join(dir, 'x'), '--queue', 'redis://127.0.0.1:1/0']);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach Redis at 127\.0\.0\.1:1/);
    const worker = await runCli(['worker', '--queue', 'redis://127.0.0.1:6379/notadb']);
    expect(worker.code).toBe(2);
  }, 60_000);
});
