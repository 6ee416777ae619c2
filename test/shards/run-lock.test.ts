/**
 * The run lock of a store (src/shards/run-lock.ts): a second run is refused while the first lives, a lease
 * whose process is gone (this host) or that went unrenewed past its TTL (another host) is taken over, a run
 * that finds its lease taken stops before writing, `wildstream train` refuses a held `--out`, and ingest jobs
 * (the local executor, a retry pass) refuse a dataset another job holds.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getBytes, openStore, type Store } from '../../src/shards/store.js';
import { listCheckpoints } from '../../src/train/checkpoint.js';
import { INGEST_RUN, lockRun, RunLockedError, TRAIN_RUN, type RunLease } from '../../src/shards/run-lock.js';
import { runIngest } from '../../src/ingest/local.js';
import { listUnits } from '../../src/shards/dataset.js';
import { ingestArgs, runCli, tinyTrainArgs } from '../helpers/cli.js';
import { startFixture, type Fixture } from '../helpers/fixture-server.js';
import { writePhotoDataset } from '../helpers/dataset.js';

let dir: string;
beforeAll(async () => void (dir = await mkdtemp(join(tmpdir(), 'ws-run-lock-'))));
afterAll(async () => rm(dir, { recursive: true, force: true }));

const fresh = async (name: string) => openStore(join(dir, name));
const put = (store: Store, lease: RunLease) => store.put(TRAIN_RUN.key, Buffer.from(JSON.stringify(lease)));
const read = async (store: Store) =>
  JSON.parse(Buffer.from(await getBytes(store, TRAIN_RUN.key)).toString()) as RunLease;
const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
const lease = (o: Partial<RunLease>): RunLease => ({
  run: 'other',
  host: 'gpu-node-7',
  pid: 4242,
  started: ago(60_000),
  renewed: ago(1_000),
  ...o,
});
/** The pid of a process that has exited. */
const deadPid = () => spawnSync(process.execPath, ['-e', '']).pid;
const quick = { settleMs: 10 };

describe('the run lock of a checkpoint store', () => {
  it('refuses a second run while the first lives, naming it and what to do; released, the store is free', async () => {
    const out = await fresh('two');
    const first = await lockRun(out, TRAIN_RUN, quick);
    expect(await read(out)).toMatchObject({ host: hostname(), pid: process.pid, run: first.lease.run });
    const second = lockRun(out, TRAIN_RUN, { ...quick, location: '/runs/a' });
    await expect(second).rejects.toThrow(RunLockedError);
    await expect(second).rejects.toThrow(
      new RegExp(
        `^another training run holds /runs/a: run ${first.lease.run} \\(pid ${process.pid} on .*stop that process first, or give another --out$`,
      ),
    );
    await first.release();
    expect(await out.head(TRAIN_RUN.key)).toBeNull();
    await (await lockRun(out, TRAIN_RUN, quick)).release();
  });

  it('takes over at once the lease of a process of this host that is gone, whatever its age', async () => {
    const out = await fresh('dead');
    await put(out, lease({ host: hostname(), pid: deadPid(), renewed: new Date().toISOString() }));
    const lines: string[] = [];
    const lock = await lockRun(out, TRAIN_RUN, { ...quick, log: (l) => lines.push(l) });
    expect(lines).toEqual([
      expect.stringMatching(/^took over the lock of .*: run other \(pid \d+ .*\(its process is gone\)$/),
    ]);
    expect((await read(out)).run).toBe(lock.lease.run);
    await lock.release();
  });

  it("keeps another host's lease until its TTL has passed without a renewal, then takes it over", async () => {
    const out = await fresh('remote');
    await put(out, lease({ renewed: ago(60_000) }));
    await expect(
      lockRun(out, TRAIN_RUN, { ...quick, ttlMs: 120_000, names: { of: (k) => `train.${k}`, set: String } }),
    ).rejects.toThrow(
      /holds .*run other \(pid 4242 on gpu-node-7, .*it is stale 120 s after its last renewal; delete train\.lock there if that run is gone, or give another train\.out$/,
    );
    const lines: string[] = [];
    const lock = await lockRun(out, TRAIN_RUN, { ...quick, ttlMs: 30_000, log: (l) => lines.push(l) });
    expect(lines).toEqual([expect.stringMatching(/\(not renewed for 60 s\)$/)]);
    await lock.release();
    // A renewal time that is no time, or a TTL or more in the future, cannot hold the store.
    for (const renewed of ['soon', new Date(Date.now() + 3_600_000).toISOString()]) {
      await put(out, lease({ renewed }));
      const took: string[] = [];
      await (await lockRun(out, TRAIN_RUN, { ...quick, log: (l) => took.push(l) })).release();
      expect(took).toEqual([expect.stringMatching(/\(its renewal time ".*" is not a real one\)$/)]);
    }
  });

  it('takes a damaged or oversized lease object as none (it cannot name a holder), and escapes what a lease says', async () => {
    const out = await fresh('damaged');
    await out.put(TRAIN_RUN.key, Buffer.from('{"run": 7, '));
    const lines: string[] = [];
    const lock = await lockRun(out, TRAIN_RUN, { ...quick, log: (l) => lines.push(l) });
    expect(lines).toEqual([expect.stringMatching(/: its train\.lock is damaged \(not a lease\)$/)]);
    expect((await read(out)).run).toBe(lock.lease.run);
    await lock.release();
    // An object far larger than a lease is not read, and a lease's strings are shown escaped.
    await out.put(TRAIN_RUN.key, Buffer.alloc(1 << 20, 'a'));
    await (await lockRun(out, TRAIN_RUN, quick)).release();
    await put(out, lease({ run: '\u001b[2Jevil', host: 'vm\nline2' }));
    const refused = await lockRun(out, TRAIN_RUN, { ...quick, ttlMs: 60_000 }).catch((err: Error) => err.message);
    expect(refused).toMatch(/run "\\u001b\[2Jevil" \(pid 4242 on "vm\\nline2"/);
    await out.delete(TRAIN_RUN.key);
  });

  it('renews its lease; a run that finds another holding it stops before writing, and leaves that lease', async () => {
    const out = await fresh('lost');
    const lock = await lockRun(out, TRAIN_RUN, quick);
    const before = (await read(out)).renewed;
    await new Promise((r) => setTimeout(r, 5));
    await lock.renew();
    expect((await read(out)).renewed > before).toBe(true);
    lock.check();
    await put(out, lease({ run: 'thief' }));
    await lock.renew();
    expect(() => lock.check()).toThrow(/another run took over .* \(run thief .*\); this run stopped without writing$/);
    await lock.release();
    expect((await read(out)).run).toBe('thief');
  });

  it('wildstream train exits 1 on a held --out, before any checkpoint, and leaves the lease', async () => {
    const data = join(dir, 'data');
    await writePhotoDataset(await openStore(data), { units: 1, perUnit: 8 });
    const out = await fresh('cli');
    await put(out, lease({ host: hostname(), pid: process.pid, run: 'live' })); // this test process: alive
    const r = await runCli(['train', '--data', data, '--out', join(dir, 'cli'), ...tinyTrainArgs(), '--steps', '2']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/another training run holds .*cli: run live \(pid \d+ on /);
    expect(await listCheckpoints(out)).toEqual([]);
    expect((await read(out)).run).toBe('live');
  }, 60_000);
});

describe('the ingest lock of a dataset', () => {
  let fixture: Fixture;
  let list: string;
  beforeAll(async () => {
    fixture = await startFixture();
    list = join(dir, 'list.txt');
    await writeFile(list, Array.from({ length: 12 }, (_, i) => `${fixture.base}/img/${i}.jpg`).join('\n'));
  });
  afterAll(async () => fixture?.close());

  const options = (out: string) => ({
    lists: [list],
    out,
    unitSize: 3,
    fetch: { allowAddresses: ['127.0.0.1'] },
  });

  it('of two jobs started together on one dataset, one runs and the other is refused before writing', async () => {
    const out = join(dir, 'race');
    const runs = await Promise.allSettled([runIngest(options(out)), runIngest(options(out))]);
    const refused = runs.filter((r) => r.status === 'rejected');
    expect(runs.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(refused).toHaveLength(1);
    expect((refused[0] as PromiseRejectedResult).reason).toBeInstanceOf(RunLockedError);
    expect(String((refused[0] as PromiseRejectedResult).reason)).toMatch(
      /another ingest job holds .*race.*two jobs on one dataset would write the same units over each other's/,
    );
    expect((await listUnits(await openStore(out))).map((u) => u.records)).toEqual([3, 3, 3, 3]);
    expect(await (await openStore(out)).head(INGEST_RUN.key), 'the lease outlived the job').toBeNull();
    // Released, the dataset takes the next job: a rerun that skips every unit, and a retry pass.
    await expect(runIngest(options(out))).resolves.toMatchObject({ unitsSkipped: 4 });
  }, 60_000);

  it('wildstream ingest, its --retry-failed pass and crawl exit 1 on a held dataset and commit nothing', async () => {
    const out = await fresh('held');
    await out.put(INGEST_RUN.key, Buffer.from(JSON.stringify(lease({ host: hostname(), pid: process.pid }))));
    const crawl = ['crawl', `${fixture.base}/`, '--out', join(dir, 'held'), '--allow-address', '127.0.0.1'];
    for (const args of [
      ingestArgs(list, join(dir, 'held')),
      [...ingestArgs(list, join(dir, 'held')), '--retry-failed'],
      crawl,
    ]) {
      const r = await runCli(args);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/another ingest job holds .*held: run other \(pid \d+ on .*stop that process first/);
    }
    expect(await listUnits(out)).toEqual([]);
    expect(await out.head('dataset.json')).toBeNull();
    for await (const o of out.list('crawl/')) expect.fail(`the refused crawl wrote ${o.key}`);
  }, 60_000);
});
