import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patternJpeg } from '../../src/fixtures/images.js';
import { decodeImage } from '../../src/ingest/decode.js';
import type { Deduper, PendingDuplicate } from '../../src/ingest/dedupe.js';
import { IndexLostError, RedisDedupe } from '../../src/ingest/dedupe-redis.js';
import { ingestUnit, type IngestOptions } from '../../src/ingest/job.js';
import { runIngest } from '../../src/ingest/local.js';
import { runRetry } from '../../src/ingest/retry.js';
import { dedupePrefix, QUEUE_NAME, runQueuedIngest, runWorker, unitJobId } from '../../src/ingest/queue.js';
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
/** A promise and its resolve (Promise.withResolvers is Node 22's). */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
/** Held by /gate/N.jpg requests until opened; `gateHit` resolves when the first one arrives. */
let gate = signal();
let gateHit = signal();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-queue-'));
  redis = new Redis(REDIS, { maxRetriesPerRequest: 1 });
  await redis.flushdb();
  const images = await Promise.all(Array.from({ length: 35 }, (_, i) => patternJpeg(i, { width: 96, height: 80 })));
  server = createServer(async (req, res) => {
    const m = /^\/(slow\/|gone\/|gate\/)?(\d+)\.jpg$/.exec(req.url ?? '');
    if (!m) return void res.writeHead(404).end();
    if (m[1] === 'gone/') return void res.writeHead(503).end();
    if (m[1] === 'gate/') {
      gateHit.resolve();
      await gate.promise;
    } else await sleep(m[1] ? 20_000 : 120); // slow enough that a unit is still running when its worker is killed
    res.writeHead(200, { 'content-type': 'image/jpeg' }).end(images[Number(m[2]) % 35]);
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
      const done = JSON.parse(r.stdout.trim().split('\n').pop()!);
      expect(done).toMatchObject({ event: 'ingest_done', urls: 40, kept: 35, duplicates: 5 });
      // 8 units, and a confirmation pass when unit 7 found copies of the killed unit's images before its redo
      expect(done.unitsDone).toBe(done.unitsTotal);
      expect([8, 9]).toContain(done.unitsTotal);
      // The killed worker's unit was finished by another worker, after its lock expired.
      const others = workers.slice(1).flatMap((w) => w.events);
      expect(others.some((e) => e.event === 'unit_done' && e.unit === killedUnit)).toBe(true);
      expect(others.find((e) => e.event === 'unit_start' && e.unit === killedUnit)?.attempt).toBe(2);
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
    expect(await a.check(sha(1), 0x0123456789abcdefn, 1, 0)).toBeNull();
    expect(await a.check(sha(1), 0x0123456789abcdefn, 1, 1)).toBe('exact'); // the same image twice in one unit
    expect(await b.check(sha(1), 0x0123456789abcdefn, 2, 0)).toMatchObject({ pending: 'exact' }); // unit 1 uncommitted
    expect(await b.check(sha(2), 0x0123456789abcdefn ^ 0b1011n, 2, 0)).toMatchObject({ pending: 'near' }); // 3 bits apart
    expect(await b.check(sha(3), 0x0123456789abcdefn ^ 0xffffn, 2, 0)).toBeNull(); // 16 bits apart
    expect(await retry.check(sha(1), 0x0123456789abcdefn, 1, 0)).toBeNull(); // unit 1 again, after its worker died
    expect(await b.check(sha(1), 0x0123456789abcdefn, 2, 0)).toMatchObject({ pending: 'exact' });
    await retry.afterCommit(1);
    expect(await b.check(sha(1), 0x0123456789abcdefn, 2, 0)).toBe('exact');
    expect(await b.check(sha(4), 0x0123456789abcdefn ^ 0b1011n, 2, 0)).toBe('near');
  });

  it('the shared index: a copy of an image an uncommitted unit holds is pending, final once that attempt commits it', async () => {
    const sha = (n: number) => new Uint8Array(32).fill(n);
    const h = 0x0f0f0f0f12345678n,
      far = 0x7777000011112222n;
    const dead = new RedisDedupe(redis, 'test:pending', 8),
      other = new RedisDedupe(redis, 'test:pending', 8),
      redo = new RedisDedupe(redis, 'test:pending', 8);
    expect(await dead.check(sha(1), h, 1, 0)).toBeNull();
    expect(await dead.check(sha(3), far, 1, 1)).toBeNull();
    const exact = await other.check(sha(1), h, 2, 0);
    const near = await other.check(sha(2), h ^ 0b101n, 2, 0);
    const lost = await other.check(sha(3), far, 2, 0);
    expect([exact, near, lost]).toMatchObject([{ pending: 'exact' }, { pending: 'near' }, { pending: 'exact' }]);
    const pending = [exact, near, lost] as PendingDuplicate[];
    expect(await other.confirm(pending)).toEqual([null, null, null]); // unit 1 has committed nothing
    // Unit 1's worker died; the redo keeps image 1, fails image 3's row, and commits.
    expect(await redo.check(sha(1), h, 1, 0)).toBeNull();
    await redo.afterCommit(1);
    expect(await other.confirm(pending)).toEqual(['exact', 'near', null]); // image 3 is in no shard: not a duplicate
    await dead.afterCommit(7); // a mark for another unit changes nothing
    expect(await other.confirm([lost as PendingDuplicate])).toEqual([null]);
  });

  it('the shared index: a claim asked again (a reply lost, the script resent) answers alike; release withdraws it', async () => {
    const sha = (n: number) => new Uint8Array(32).fill(n);
    const h = 0x1357913579135791n;
    const a = new RedisDedupe(redis, 'test:again', 8),
      b = new RedisDedupe(redis, 'test:again', 8);
    expect(await a.check(sha(1), h, 1, 4)).toBeNull();
    expect(await a.check(sha(1), h, 1, 4)).toBeNull(); // the same row: its own claim, not a duplicate
    expect(await a.check(sha(1), h, 1, 5)).toBe('exact'); // another row of the unit
    expect(await a.check(sha(2), h ^ 1n, 1, 6)).toBe('near');
    await a.release([{ sha256: sha(1), phash: h, row: 4 }]);
    await a.afterCommit(1);
    expect(await b.check(sha(1), h, 2, 0)).toBeNull(); // unit 1 committed without image 1: unit 2 keeps it
    expect(await redis.get('test:again:sha:' + Buffer.from(sha(1)).toString('hex'))).toMatch(/^2:/);
  });

  it('a unit whose index answers are lost keeps its images once, and withdraws claims it never heard back about', async () => {
    const index = new RedisDedupe(redis, 'test:lost-reply', 8);
    let calls = 0;
    // The script runs, then the connection drops before its reply: the first reply of each row never arrives,
    // and every reply about row 1 never does.
    const flaky: Deduper = {
      async check(sha256, phash, unit, row) {
        const verdict = await index.check(sha256, phash, unit, row);
        if (calls++ % 2 === 0 || row === 1) throw new Error('read ECONNRESET');
        return verdict;
      },
      release: (unsure) => index.release(unsure),
      afterCommit: (unit) => index.afterCommit(unit),
    };
    const rows = [3, 4, 5].map((i, index) => ({
      index,
      url: `${base}/${i}.jpg`,
      caption: null,
      sourcePage: null,
      extra: {},
    }));
    const out = join(dir, 'lost-reply');
    const record = await ingestUnit({
      out,
      unit: 0,
      rows,
      extraColumns: [],
      options: { fetch: { allowAddresses: ['127.0.0.1'] } },
      dedupe: flaky,
    });
    expect(record).toMatchObject({ records: 2, failed: { internal_error: 1 }, duplicates: { exact: 0, near: 0 } });
    // Image 4 (row 1) is in no shard, so another unit's copy of it is kept, not dropped against a stray claim.
    const image4 = await decodeImage(await patternJpeg(4, { width: 96, height: 80 }), {});
    if (!image4.ok) throw new Error('fixture image 4 does not decode');
    expect(await new RedisDedupe(redis, 'test:lost-reply', 8).check(image4.sha256, image4.phash, 1, 0)).toBeNull();
  });

  it('a unit whose index was lost mid-unit (flushed, then seeded again) refuses its commit: no image kept twice', async () => {
    const sha = new Uint8Array(32).fill(7),
      phash = 0x1122334455667788n;
    const producer = new RedisDedupe(redis, 'test:epoch', 8);
    const early = new RedisDedupe(redis, 'test:epoch', 8, true);
    await expect(early.check(sha, phash, 1, 0)).rejects.toBeInstanceOf(IndexLostError); // not seeded yet
    await producer.newEpoch({ keep: true });
    const a = new RedisDedupe(redis, 'test:epoch', 8, true);
    expect(await a.check(sha, phash, 1, 0)).toBeNull(); // unit 1 keeps the image
    await a.beforeCommit(); // nothing lost yet: it may commit
    await producer.newEpoch({ keep: true }); // a producer started again keeps the epoch its units run in
    await a.beforeCommit();

    await redis.flushdb(); // Redis restarted without persistence: unit 1's claim is gone
    await expect(a.check(new Uint8Array(32).fill(8), 1n, 1, 0)).rejects.toThrow(/lost or seeded again/);
    await producer.newEpoch(); // the producer seeded the index again (no unit committed) and started an epoch
    const b = new RedisDedupe(redis, 'test:epoch', 8, true);
    expect(await b.check(sha, phash, 2, 0)).toBeNull(); // unit 2 keeps the same image: unit 1's claim was lost ...
    await expect(a.beforeCommit()).rejects.toBeInstanceOf(IndexLostError); // ... so unit 1 must not commit
    await b.beforeCommit();
    const noClaims = new RedisDedupe(redis, 'test:epoch', 8, true);
    await noClaims.beforeCommit(); // a unit that claimed nothing (every URL failed) has nothing to lose
    await redis.flushdb();
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

describe('distributed ingest: Redis state and the dataset', () => {
  const list = async (name: string, urls: string[]) => {
    await writeFile(join(dir, name), urls.join('\n'));
    return join(dir, name);
  };
  const opts = (lists: string[], out: string, extra: Partial<IngestOptions> = {}): IngestOptions => ({
    lists,
    out: join(dir, out),
    unitSize: 2,
    fetch: { allowAddresses: ['127.0.0.1'] },
    ...extra,
  });
  /** Runs `body` with an in-process worker on the test DB (its events into `events`), stopped after. */
  async function withWorker<T>(body: () => Promise<T>, events: Array<Record<string, unknown>> = []): Promise<T> {
    const controller = new AbortController();
    const worker = runWorker(REDIS, { signal: controller.signal, onEvent: (e) => events.push(e) });
    try {
      return await body();
    } finally {
      controller.abort('SIGTERM');
      await worker;
    }
  }
  const quick = { noWorkerNoticeMs: 600_000 };
  let queue: Queue;
  beforeAll(() => void (queue = new Queue(QUEUE_NAME, { connection: redis.duplicate() })));
  afterAll(() => queue.close());

  it('a queued --append, or a local job resumed with --queue, dedupes against the committed units (as local)', async () => {
    const a = await list(
      'seed-a.txt',
      [0, 1, 2, 3].map((i) => `${base}/${i}.jpg`),
    );
    const b = await list(
      'seed-b.txt',
      [35, 36, 37, 5].map((i) => `${base}/${i}.jpg`),
    ); // 35-37: copies of 0-2
    await runIngest(opts([a], 'seed-local'));
    await runIngest(opts([a], 'seed-queued'));
    const local = await runIngest(opts([b], 'seed-local', { append: true }));
    const queued = await withWorker(() => runQueuedIngest(opts([b], 'seed-queued', { append: true }), REDIS, quick));
    expect(local).toMatchObject({ kept: 1, duplicates: 3 });
    expect({ ...queued, elapsedSeconds: 0 }).toEqual({ ...local, elapsedSeconds: 0 });
    expect((await shas(join(dir, 'seed-queued'))).shas).toEqual((await shas(join(dir, 'seed-local'))).shas);
    // A local job interrupted after its first unit, resumed with --queue: the rest dedupes against unit 0.
    const c = await list(
      'seed-c.txt',
      [6, 7, 8, 41, 9].map((i) => `${base}/${i}.jpg`),
    ); // 41 copies 6
    const stop = new AbortController();
    await runIngest(
      opts([c], 'seed-resumed', {
        signal: stop.signal,
        onProgress: (p) => void (p.unitsDone >= 1 && stop.abort('SIGINT')),
      }),
    ).catch(() => {});
    await redis.flushdb(); // and Redis lost its data meanwhile
    const resumed = await withWorker(() => runQueuedIngest(opts([c], 'seed-resumed'), REDIS, quick));
    expect(resumed).toMatchObject({ keptInJob: 4, duplicates: 1 });
  }, 120_000);

  it('a dataset deleted and made again at the same --out neither sees the old claims nor waits on its jobs', async () => {
    const l = await list(
      'again.txt',
      [10, 11, 12, 13, 14].map((i) => `${base}/${i}.jpg`),
    );
    const first = await withWorker(() => runQueuedIngest(opts([l], 'again'), REDIS, quick));
    expect(first).toMatchObject({ kept: 5 });
    const oldId = JSON.parse(await readFile(join(dir, 'again', 'dataset.json'), 'utf8')).id;
    // Claims an interrupted job would leave behind, by a unit the next dataset's units never are.
    const stale = new RedisDedupe(redis, dedupePrefix(oldId), 8);
    for (const sha of (await shas(join(dir, 'again'))).shas) await stale.check(Buffer.from(sha, 'hex'), 1n, 99, 0);
    await rm(join(dir, 'again'), { recursive: true });
    // Same list, same options, same --out: every unit runs again rather than waiting on the old jobs...
    const timeout = () => AbortSignal.timeout(60_000);
    const again = await withWorker(() => runQueuedIngest(opts([l], 'again', { signal: timeout() }), REDIS, quick));
    expect(again).toMatchObject({ unitsDone: 3, kept: 5, duplicates: 0 });
    const newId = JSON.parse(await readFile(join(dir, 'again', 'dataset.json'), 'utf8')).id;
    expect(newId).toMatch(/^[0-9a-f-]{36}$/);
    expect(newId).not.toBe(oldId);
    // ...and another unit size (units numbered otherwise than the old claims) keeps every image too.
    await rm(join(dir, 'again'), { recursive: true });
    const resized = await withWorker(() =>
      runQueuedIngest(opts([l], 'again', { unitSize: 5, signal: timeout() }), REDIS, quick),
    );
    expect(resized).toMatchObject({ unitsDone: 1, kept: 5, duplicates: 0 });
    // The same list for another --out runs too, rather than waiting on the first dataset's finished jobs.
    const other = await withWorker(() =>
      runQueuedIngest(opts([l], 'again-other', { unitSize: 5, signal: timeout() }), REDIS, quick),
    );
    expect(other).toMatchObject({ unitsDone: 1, kept: 5 });
    // Once every unit is committed the producer leaves no job and no index of the dataset in Redis.
    expect(await redis.keys(`wildstream:dedupe:${newId}:*`)).toEqual([]);
    expect(await redis.keys(`bull:${QUEUE_NAME}:${newId}-*`)).toEqual([]);
  }, 120_000);

  it('enqueues again the units whose jobs vanished from Redis', async () => {
    const l = await list(
      'vanish.txt',
      [15, 16, 17, 18].map((i) => `${base}/${i}.jpg`),
    );
    const notices: string[] = [];
    const producer = runQueuedIngest(opts([l], 'vanish', { signal: AbortSignal.timeout(90_000) }), REDIS, {
      noWorkerNoticeMs: 600_000,
      onNotice: (m) => notices.push(m),
    });
    const queue = new Queue(QUEUE_NAME, { connection: redis.duplicate() });
    try {
      for (let i = 0; i < 200 && (await queue.getWaitingCount()) < 2; i++) await sleep(100);
      expect(await queue.getWaitingCount()).toBe(2);
      await redis.flushdb();
      const summary = await withWorker(() => producer);
      expect(summary).toMatchObject({ unitsDone: 2, kept: 4 });
      expect(notices.join('\n')).toMatch(/2 queued units vanished from Redis .*enqueueing them again/);
    } finally {
      await queue.close();
    }
  }, 120_000);

  it("keeps a copy dropped against a dead worker's claim when the redone unit fails that row (the confirmation pass)", async () => {
    // Unit 0: gone/10 (503 now; a worker that died had fetched and claimed image 10 from it), 11. Unit 1: 45 (a
    // copy of image 10), 12. Without the confirmation pass image 10 would be in no shard.
    const l = await list('confirm.txt', [`${base}/gone/10.jpg`, `${base}/11.jpg`, `${base}/45.jpg`, `${base}/12.jpg`]);
    const producer = runQueuedIngest(opts([l], 'confirm', { signal: AbortSignal.timeout(90_000) }), REDIS, quick);
    const queue = new Queue(QUEUE_NAME, { connection: redis.duplicate() });
    try {
      for (let i = 0; i < 200 && (await queue.getWaitingCount()) < 2; i++) await sleep(100);
      const id = JSON.parse(await readFile(join(dir, 'confirm', 'dataset.json'), 'utf8')).id;
      const image10 = await decodeImage(await patternJpeg(10, { width: 96, height: 80 }), {});
      if (!image10.ok) throw new Error('fixture image 10 does not decode');
      const dead = new RedisDedupe(redis, dedupePrefix(id), 8, true); // as the dead worker's unit 0 claimed it
      expect(await dead.check(image10.sha256, image10.phash, 0, 0)).toBeNull();
      const summary = await withWorker(() => producer);
      expect(summary).toMatchObject({
        unitsTotal: 3, // the job's 2 units and the confirmation pass's
        unitsDone: 3,
        kept: 3,
        duplicates: 0,
        failed: 1,
        failedByReason: { http_503: 1 },
      });
      const kept = (await shas(join(dir, 'confirm'))).shas;
      expect(kept).toContain(Buffer.from(image10.sha256).toString('hex'));
      // A rerun finds nothing left to confirm, and `inspect` counts no unconfirmed row.
      const rerun = await withWorker(() => runQueuedIngest(opts([l], 'confirm'), REDIS, quick));
      expect(rerun).toMatchObject({ unitsDone: 0, keptInJob: 3 });
      const inspect = await runCli(['inspect', join(dir, 'confirm')]);
      expect(inspect.stdout).not.toMatch(/duplicate_unconfirmed/);
    } finally {
      await queue.close();
    }
  }, 120_000);

  it('a queued job stopped before its confirmation pass has it run by a local rerun, or by --retry-failed', async () => {
    const l = await list('confirm-local.txt', [`${base}/gone/20.jpg`, `${base}/21.jpg`, `${base}/55.jpg`]);
    const image20 = await decodeImage(await patternJpeg(20, { width: 96, height: 80 }), {});
    if (!image20.ok) throw new Error('fixture image 20 does not decode');
    const stopQueued = async (out: string) => {
      const stop = new AbortController();
      const producer = runQueuedIngest(
        opts([l], out, {
          signal: stop.signal,
          // Stopped the moment every unit is committed: before the confirmation pass starts.
          onProgress: (p) => void (p.unitsDone === 2 && stop.abort('SIGINT')),
        }),
        REDIS,
        quick,
      );
      const queue = new Queue(QUEUE_NAME, { connection: redis.duplicate() });
      for (let i = 0; i < 200 && (await queue.getWaitingCount()) < 2; i++) await sleep(100);
      await queue.close();
      const id = JSON.parse(await readFile(join(dir, out, 'dataset.json'), 'utf8')).id;
      await new RedisDedupe(redis, dedupePrefix(id), 8, true).check(image20.sha256, image20.phash, 0, 0);
      await expect(withWorker(() => producer)).rejects.toThrow(/stopped by SIGINT: 2 of 2 units committed/);
    };
    await stopQueued('confirm-local');
    const local = await runIngest(opts([l], 'confirm-local'));
    expect(local).toMatchObject({ unitsTotal: 3, unitsDone: 1, kept: 1, keptInJob: 2 });
    expect(local.failedByReason).not.toHaveProperty('duplicate_unconfirmed');
    await stopQueued('confirm-retry');
    const retried = await runRetry(opts([l], 'confirm-retry'));
    expect(retried).toMatchObject({ kept: 1, keptInJob: 2 });
  }, 120_000);

  it('a run that would write units refuses a dataset whose queued units a stopped producer left to workers', async () => {
    const l = await list('marked.txt', [`${base}/24.jpg`, `${base}/25.jpg`, `${base}/26.jpg`]);
    const stop = new AbortController();
    const producer = runQueuedIngest(opts([l], 'marked', { signal: stop.signal }), REDIS, quick);
    const queue = new Queue(QUEUE_NAME, { connection: redis.duplicate() });
    for (let i = 0; i < 200 && (await queue.getWaitingCount()) < 2; i++) await sleep(100);
    await queue.close();
    stop.abort('SIGINT');
    await expect(producer).rejects.toThrow(/stopped by SIGINT: 0 of 2 units committed/);
    const refused =
      /has units queued on redis:\/\/127\.0\.0\.1:6379\/15 by a producer that stopped .* rerun the job with --queue/;
    await expect(runIngest(opts([l], 'marked'))).rejects.toThrow(refused);
    await expect(runRetry(opts([l], 'marked'))).rejects.toThrow(refused);
    const crawl = await runCli(['crawl', `${base}/`, '--out', join(dir, 'marked'), '--allow-address', '127.0.0.1']);
    expect(crawl.code, crawl.stderr).toBe(2);
    expect(crawl.stderr).toMatch(refused);
    // Rerun with the queue: workers finish the units, the mark goes, and local runs go on as before.
    expect(await withWorker(() => runQueuedIngest(opts([l], 'marked'), REDIS, quick))).toMatchObject({ keptInJob: 3 });
    expect(await runIngest(opts([l], 'marked'))).toMatchObject({ unitsDone: 0, keptInJob: 3 });
  }, 90_000);

  it('a worker that lost its unit (paused past --lock-ms, the unit taken over) does not commit it', async () => {
    [gate, gateHit] = [signal(), signal()];
    const l = await list('fence.txt', [`${base}/22.jpg`, `${base}/gate/23.jpg`]);
    const events: Array<Record<string, unknown>> = [];
    const stop = new AbortController();
    const worker = runWorker(REDIS, { signal: stop.signal, lockMs: 2000, onEvent: (e) => events.push(e) });
    try {
      const producer = runQueuedIngest(opts([l], 'fence', { signal: AbortSignal.timeout(60_000) }), REDIS, quick);
      await gateHit.promise;
      // What another worker taking the unit over does to its lock: this worker's token no longer holds it.
      const id = JSON.parse(await readFile(join(dir, 'fence', 'dataset.json'), 'utf8')).id;
      const [lockKey] = await redis.keys(`bull:${QUEUE_NAME}:${id}-*-0:lock`);
      await redis.set(lockKey!, 'another-worker', 'PX', 60_000);
      gate.resolve();
      await until(() => events.some((e) => e.event === 'unit_lost'));
      expect(events.find((e) => e.event === 'unit_lost')?.error).toMatch(/unit 0: this worker lost the unit's lock/);
      expect(await listUnits(await openStore(join(dir, 'fence')))).toEqual([]);
      await redis.del(lockKey!); // the other worker "dies": the unit is redone and committed once
      expect(await producer).toMatchObject({ unitsDone: 1, kept: 2 });
    } finally {
      stop.abort('SIGTERM');
      await worker;
    }
  }, 90_000);

  it('refuses a Redis DB the server lacks, in the producer and the worker', async () => {
    const url = 'redis://127.0.0.1:6379/9999';
    const p = await runCli(['ingest', join(dir, 'urls.txt'), '--out', join(dir, 'nodb'), '--queue', url]);
    expect(p.code, p.stderr).toBe(2);
    expect(p.stderr.trim()).toMatch(
      /^wildstream: cannot select Redis DB 9999 at 127\.0\.0\.1:6379: ERR .*out of range$/,
    );
    const w = await runCli(['worker', '--queue', url]);
    expect(w.code, w.stderr).toBe(2);
    expect(w.stdout).not.toMatch(/worker_ready/);
    expect(w.stderr).toMatch(/cannot select Redis DB 9999/);
  }, 60_000);

  /** The queue job of unit 0 of the dataset at `out` (its manifest's id and first job), once it exists. */
  async function queuedJob(queue: Queue, out: string) {
    for (let i = 0; i < 200; i++, await sleep(100)) {
      const manifest = await readFile(join(dir, out, 'dataset.json'), 'utf8').catch(() => null);
      if (!manifest) continue;
      const { id, jobs } = JSON.parse(manifest);
      const job = jobs[0] && (await queue.getJob(unitJobId(id, jobs[0].fingerprint, 0)));
      if (job) return job;
    }
    throw new Error(`no queued unit 0 for ${out}`);
  }
  const urlsOf = async (out: string) => {
    const store = await openStore(join(dir, out));
    const urls: string[] = [];
    for (const u of await listUnits(store))
      for await (const r of (await ShardReader.open(store, u.shard, { size: u.bytes })).records()) urls.push(r.url);
    return urls;
  };

  it('units a stopped producer left queued are refused once their dataset is deleted and made again there', async () => {
    const a = await list('stale-a.txt', [`${base}/26.jpg`, `${base}/27.jpg`]);
    const b = await list('stale-b.txt', [`${base}/28.jpg`, `${base}/29.jpg`]);
    const stop = new AbortController();
    const old = runQueuedIngest(opts([a], 'stale', { signal: stop.signal }), REDIS, quick);
    const oldJob = await queuedJob(queue, 'stale');
    stop.abort('SIGINT');
    await expect(old).rejects.toThrow(/stopped by SIGINT: 0 of 1 unit committed/);
    const oldId = JSON.parse(await readFile(join(dir, 'stale', 'dataset.json'), 'utf8')).id;
    await rm(join(dir, 'stale'), { recursive: true });
    // The worker takes the old unit first (it was queued first); the new dataset gets list b's rows only.
    const events: Array<Record<string, unknown>> = [];
    const timeout = AbortSignal.timeout(60_000);
    const summary = await withWorker(
      () => runQueuedIngest(opts([b], 'stale', { signal: timeout }), REDIS, quick),
      events,
    );
    expect(summary).toMatchObject({ unitsDone: 1, urls: 2, kept: 2 });
    expect((await urlsOf('stale')).sort()).toEqual([`${base}/28.jpg`, `${base}/29.jpg`]);
    const refused = /^unit 0: queued for a dataset no longer at .*stale .*; not committed, and dropped$/;
    expect(events.find((e) => e.event === 'unit_stale')?.error).toMatch(refused);
    expect(await oldJob.getState()).toBe('failed');
    expect((await queue.getJob(oldJob.id!))?.failedReason).toMatch(refused);
    // The refused unit claimed nothing, in the old dataset's index or the new one's.
    expect(await redis.keys(`wildstream:dedupe:${oldId}:sha:*`)).toEqual([]);
  }, 90_000);

  it('a unit whose dataset is deleted and made again while it runs is not committed into the new one', async () => {
    [gate, gateHit] = [signal(), signal()];
    const a = await list('stale-run-a.txt', [`${base}/30.jpg`, `${base}/gate/31.jpg`]);
    const b = await list('stale-run-b.txt', [`${base}/32.jpg`]);
    const events: Array<Record<string, unknown>> = [];
    await withWorker(async () => {
      const stop = new AbortController();
      const old = runQueuedIngest(opts([a], 'stale-run', { signal: stop.signal }), REDIS, quick);
      await gateHit.promise; // the worker holds unit 0, image 30 claimed
      stop.abort('SIGINT');
      await expect(old).rejects.toThrow(/stopped by SIGINT/);
      await rm(join(dir, 'stale-run'), { recursive: true });
      const again = runQueuedIngest(opts([b], 'stale-run', { signal: AbortSignal.timeout(60_000) }), REDIS, quick);
      await queuedJob(queue, 'stale-run'); // the new dataset's manifest is written
      gate.resolve();
      expect(await again).toMatchObject({ unitsDone: 1, kept: 1 });
    }, events);
    expect(await urlsOf('stale-run')).toEqual([`${base}/32.jpg`]);
    expect(events.find((e) => e.event === 'unit_stale')?.error).toMatch(/gives unit 0 to another job/);
  }, 90_000);

  it('a unit BullMQ failed for stalling (its workers died) fails the producer, naming why; a rerun redoes it', async () => {
    const l = await list('stalled.txt', [`${base}/33.jpg`]);
    const producer = runQueuedIngest(opts([l], 'stalled', { signal: AbortSignal.timeout(30_000) }), REDIS, quick);
    const queued = await queuedJob(queue, 'stalled');
    // A worker that takes the unit and dies (nothing renews its lock), seen by a stall check allowing no stall.
    const dead = new Worker(QUEUE_NAME, null, {
      connection: redis.duplicate({ maxRetriesPerRequest: null }),
      lockDuration: 300,
      stalledInterval: 300,
      maxStalledCount: 0,
    });
    try {
      expect((await dead.getNextJob('dead'))?.id).toBe(queued.id);
      // BullMQ skips a queue's stall check for a stalledInterval after the last (the earlier tests' workers: 15 s).
      await redis.del(`bull:${QUEUE_NAME}:stalled-check`);
      await dead.startStalledCheckTimer(); // moves it back to wait marked to fail; the next take fails it
      let failed: unknown;
      for (let i = 0; i < 100 && !(await queued.isFailed()); i++, await sleep(100)) {
        failed = await dead.getNextJob('next', { block: false });
      }
      expect(failed).toBeUndefined();
      await expect(producer).rejects.toThrow(
        /^unit 0 failed 1 time after its worker was lost mid-unit 1 time: job stalled more than allowable limit; rerun to retry it$/,
      );
    } finally {
      await dead.close();
    }
    const events: Array<Record<string, unknown>> = [];
    expect(await withWorker(() => runQueuedIngest(opts([l], 'stalled'), REDIS, quick), events)).toMatchObject({
      unitsDone: 1,
      kept: 1,
    });
    // Enqueued afresh: no attempt or stall of the failed job is counted against the rerun.
    expect(events.find((e) => e.event === 'unit_start')?.attempt).toBe(1);
  }, 60_000);

  it('a stopped worker gives its unit back at once, uncommitted, and exits with 128 + the signal', async () => {
    const l = await list('stop.txt', [`${base}/slow/20.jpg`, `${base}/slow/21.jpg`]);
    const stopProducer = new AbortController();
    const producer = runQueuedIngest(opts([l], 'stop', { signal: stopProducer.signal }), REDIS, quick).catch(
      (err: Error) => err,
    );
    const w = startWorker();
    const exited = new Promise<number | null>((resolve) => w.child.once('exit', (code) => resolve(code)));
    try {
      await until(() => w.events.some((e) => e.event === 'unit_start'), 120_000);
      const t0 = Date.now();
      w.child.kill('SIGTERM');
      expect(await exited).toBe(143);
      expect(Date.now() - t0).toBeLessThan(8000); // a download takes 20 s
      expect(w.events.map((e) => e.event)).toContain('unit_released');
      expect(w.events.map((e) => e.event)).not.toContain('unit_done');
      const manifest = JSON.parse(await readFile(join(dir, 'stop', 'dataset.json'), 'utf8'));
      const queue = new Queue(QUEUE_NAME, { connection: redis.duplicate() });
      try {
        const job = await queue.getJob(unitJobId(manifest.id, manifest.jobs[0].fingerprint, 0));
        expect(await job!.getState()).toBe('waiting');
        expect(job!.attemptsMade).toBe(0);
      } finally {
        await queue.close();
      }
      expect(await listUnits(await openStore(join(dir, 'stop')))).toEqual([]);
    } finally {
      w.child.kill('SIGKILL');
      stopProducer.abort('SIGINT');
      await producer;
    }
  }, 180_000);
});
