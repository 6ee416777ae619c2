// Ingest is deterministic: downloads finish in any order, yet a unit's records are written in list order and the
// first of two duplicates in the list is kept; a slow row neither stops later fetches nor lets them pile up.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InterruptedError } from '../../src/errors.js';
import { photoJpeg, prng } from '../../src/fixtures/images.js';
import type { Deduper } from '../../src/ingest/dedupe.js';
import { HELD_PER_SLOT, ingestUnit, type IngestOptions } from '../../src/ingest/job.js';
import { runIngest } from '../../src/ingest/local.js';
import { Reorder } from '../../src/ingest/reorder.js';
import { listUnits } from '../../src/shards/dataset.js';
import { readFailures } from '../../src/shards/failures.js';
import { recordKey } from '../../src/shards/keys.js';
import { ShardReader } from '../../src/shards/reader.js';
import { openStore } from '../../src/shards/store.js';
import { startFixture, type Fixture } from '../helpers/fixture-server.js';

let fixture: Fixture;
let dir: string;
/** Milliseconds the server waits before answering each request URL (path and query); 0 when absent. */
let delays = new Map<string, number>();
/** When each request URL arrived and was answered, since the server started. */
const arrived = new Map<string, number>();
const answered = new Map<string, number>();

beforeAll(async () => {
  fixture = await startFixture([
    [
      /^\/late\/(img|missing|html)-(\d+)$/,
      async (req, res, m) => {
        arrived.set(req.url!, performance.now());
        await sleep(delays.get(req.url!) ?? 0);
        answered.set(req.url!, performance.now());
        if (m[1] === 'missing') return void res.writeHead(404).end();
        if (m[1] === 'html') return void res.writeHead(200, { 'content-type': 'image/jpeg' }).end('<html></html>');
        res
          .writeHead(200, { 'content-type': 'image/jpeg' })
          .end(await photoJpeg(Number(m[2]), { width: 96, height: 80 }));
      },
    ],
  ]);
  dir = await mkdtemp(join(tmpdir(), 'ws-order-'));
});
afterAll(async () => {
  await fixture?.close();
  await rm(dir, { recursive: true, force: true });
});

const late = (name: string) => `${fixture.base}/late/${name}`;
const pathOf = (url: string) => url.slice(fixture.base.length);

async function ingest(name: string, urls: string[], o: Partial<IngestOptions> = {}) {
  const list = join(dir, `${name}.txt`);
  await writeFile(list, urls.join('\n'));
  const out = join(dir, name);
  const fetch = { allowAddresses: ['127.0.0.1'], connectionsPerOrigin: 64, retries: 0 };
  const summary = await runIngest({ lists: [list], out, fetch, unitSize: 1000, ...o });
  return { out, summary };
}

/** The committed records of a dataset in shard order: key, url and pixel digest. */
async function records(out: string) {
  const store = await openStore(out);
  const rows: Array<{ key: string; url: string; sha: string }> = [];
  for (const unit of await listUnits(store)) {
    for await (const r of (await ShardReader.open(store, unit.shard, { size: unit.bytes })).records())
      rows.push({ key: r.key, url: pathOf(r.url), sha: Buffer.from(r.sha256).toString('hex') });
  }
  return rows;
}

describe('a unit written in list order', () => {
  // Row 12 is an exact copy of row 2 (the same bytes); 5, 9 and 14 fail (404, not a URL we fetch, not an image).
  const N = 16;
  const urls = () =>
    Array.from({ length: N }, (_, p) => {
      if (p === 5) return late(`missing-${p}`);
      if (p === 9) return 'ftp://nope.test/x.jpg';
      if (p === 12) return late(`img-302?copy`);
      if (p === 14) return late(`html-${p}`);
      return late(`img-${300 + p}`);
    });
  const delayed = (order: (p: number) => number) =>
    new Map(urls().map((url, p) => [pathOf(url), order(p)] as [string, number]));
  const kept = Array.from({ length: N }, (_, p) => p).filter((p) => ![5, 9, 12, 14].includes(p));

  it('whatever order the downloads finish in, and the same for two fresh runs', async () => {
    // Run 1: the later in the list, the sooner the answer (completion order is the reverse of list order).
    delays = delayed((p) => (N - p) * 30);
    const a = await ingest('reverse', urls(), { concurrency: N });
    expect(answered.get('/late/img-302?copy')!).toBeLessThan(answered.get('/late/img-302')!);
    // Run 2: a seeded random order.
    const rand = prng(11);
    delays = delayed(() => Math.floor(rand() * 400));
    const b = await ingest('random', urls(), { concurrency: 6 });

    const ra = await records(a.out);
    expect(ra.map((r) => r.key)).toEqual(kept.map((p) => recordKey(0, p)));
    expect(ra.find((r) => r.key === recordKey(0, 2))!.url).toBe('/late/img-302'); // the first copy is kept
    expect(await records(b.out)).toEqual(ra);
    for (const { out, summary } of [a, b]) {
      expect(summary).toMatchObject({ kept: kept.length, duplicates: 1, failed: 3 });
      const [unit] = await listUnits(await openStore(out));
      expect(unit!.duplicates).toEqual({ exact: 1, near: 0 });
      const failures = await readFailures(await openStore(out), unit!.failures!);
      expect(failures.map((f) => [f.row, f.reason])).toEqual([
        [5, 'http_404'],
        [9, 'url_scheme'],
        [14, 'not_an_image'],
      ]);
    }
  });
});

describe('a slow row', () => {
  it('does not stop later rows from being fetched while it is pending', async () => {
    const urls = [late('img-400'), ...Array.from({ length: 12 }, (_, i) => late(`img-${401 + i}`))];
    delays = new Map(urls.map((u, p) => [pathOf(u), p === 0 ? 2000 : 100]));
    const t0 = performance.now();
    const { out } = await ingest('slow', urls, { concurrency: 4 });
    const wall = performance.now() - t0;
    // Every later row was requested (and answered) before the slow one answered: none waited behind it.
    const slowDone = answered.get('/late/img-400')!;
    for (const u of urls.slice(1)) expect(answered.get(pathOf(u))!, u).toBeLessThan(slowDone);
    expect(wall).toBeLessThan(2000 + 12 * 100); // one at a time would take at least this long
    expect((await records(out)).map((r) => r.key)).toEqual(urls.map((_, p) => recordKey(0, p)));
  });

  it('lets at most a bounded number of finished rows wait for it', async () => {
    const concurrency = 2;
    const urls = [late('img-500'), ...Array.from({ length: 40 }, (_, i) => late(`img-${501 + i}`))];
    delays = new Map(urls.map((u, p) => [pathOf(u), p === 0 ? 2000 : 5]));
    arrived.clear();
    await ingest('bounded', urls, { concurrency });
    const slowDone = answered.get('/late/img-500')!;
    const before = urls.slice(1).filter((u) => arrived.get(pathOf(u))! < slowDone).length;
    // The feeder adds a row while fewer than HELD_PER_SLOT x concurrency finished rows wait and the queue has
    // under 2x concurrency: the rows started past the slow one reach the hold bound and stay under that plus 2x.
    expect(before).toBeGreaterThanOrEqual(HELD_PER_SLOT * concurrency);
    expect(before).toBeLessThan((HELD_PER_SLOT + 2) * concurrency);
  });

  it('is stopped with the run: the unit is not committed', async () => {
    const urls = [late('img-600'), ...Array.from({ length: 6 }, (_, i) => late(`img-${601 + i}`))];
    delays = new Map(urls.map((u, p) => [pathOf(u), p === 0 ? 1500 : 20]));
    const stop = new AbortController();
    setTimeout(() => stop.abort('SIGINT'), 400);
    await expect(ingest('stopped', urls, { concurrency: 4, signal: stop.signal })).rejects.toThrow(InterruptedError);
    await sleep(1800); // the slow row ends and the unit's own run finishes: it must not commit
    expect(answered.has('/late/img-600')).toBe(true);
    expect(await listUnits(await openStore(join(dir, 'stopped')))).toEqual([]);
  });
});

describe('settling', () => {
  it('asks the dedupe index in list order, and an index that throws (twice: it is asked again) fails that row only', async () => {
    const urls = Array.from({ length: 8 }, (_, p) => late(`img-${700 + p}`));
    delays = new Map(urls.map((u, p) => [pathOf(u), (8 - p) * 40]));
    const asked: string[] = [];
    const dedupe: Deduper = {
      check(sha256) {
        asked.push(Buffer.from(sha256).toString('hex'));
        if (asked.at(-1) === asked[2]) throw new Error('index gone');
        return null;
      },
    };
    const out = join(dir, 'unit-task');
    const rows = urls.map((url, index) => ({ index, url, caption: null, sourcePage: null, extra: {} }));
    const fetch = { allowAddresses: ['127.0.0.1'], connectionsPerOrigin: 64, retries: 0 };
    const record = await ingestUnit({
      out,
      unit: 0,
      rows,
      extraColumns: [],
      options: { fetch, concurrency: 8 },
      dedupe,
    });
    expect(record.failed).toEqual({ internal_error: 1 });
    const written = await records(out);
    expect(written.map((r) => r.key)).toEqual([0, 1, 3, 4, 5, 6, 7].map((p) => recordKey(0, p)));
    expect(asked.filter((h) => h === asked[2])).toHaveLength(2);
    expect(written.map((r) => r.sha)).toEqual(asked.filter((h) => h !== asked[2]));
  });

  it('never waits for a position that was not put, and stops at a settle that throws', async () => {
    const settled: number[] = [];
    const gap = new Reorder<string>(async (p) => void settled.push(p));
    for (const p of [3, 0, 2]) gap.put(p, `row ${p}`);
    await expect(gap.drained(4)).rejects.toThrow('position 1 of 4 never finished');
    expect(settled).toEqual([0]);

    const broken = new Reorder<string>(async (p) => {
      if (p === 1) throw new Error('disk full');
      settled.push(p);
    });
    for (const p of [2, 1, 3]) broken.put(p, `row ${p}`);
    const room = broken.room(1); // three held: waits, until the failure releases it
    broken.put(0, 'row 0');
    await room;
    await expect(broken.drained(4)).rejects.toThrow('disk full');
    expect(broken.failed).toBe(true);
    expect(settled).toEqual([0, 0]);
  });
});
