import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import {
  addEntry,
  groupUnits,
  inJob,
  nextUnit,
  planIngest,
  readManifest,
  retryPasses,
  type IngestPlan,
  type JobEntry,
  type Manifest,
} from '../../src/ingest/plan.js';
import { bytesPart, type IngestSource } from '../../src/ingest/source.js';
import type { UrlRow } from '../../src/ingest/url-list.js';
import { MANIFEST_KEY } from '../../src/shards/dataset.js';
import { openStore } from '../../src/shards/store.js';
import { writeDataset } from '../helpers/dataset.js';

let dir: string;
const path = (...p: string[]) => join(dir, ...p);
const urls = (n: number, from = 0) =>
  Array.from({ length: n }, (_, i) => `https://example.test/${from + i}.jpg`).join('\n');

/** The planned units as [unit, first row index, rows, committed]. */
async function unitsOf(plan: IngestPlan): Promise<Array<[number, number, number, boolean]>> {
  const out: Array<[number, number, number, boolean]> = [];
  for await (const u of plan.units()) out.push([u.unit, u.rows[0]!.index, u.rows.length, u.committed]);
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-plan-'));
  await writeFile(path('ten.txt'), urls(10));
  await writeFile(path('ten-renamed.txt'), urls(10));
  await writeFile(path('other.txt'), urls(5, 100));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('planIngest', () => {
  it('cuts the rows into units of unitSize, numbered from 0 on a new dataset, and registers the job first', async () => {
    const plan = await planIngest({ lists: [path('ten.txt')], out: path('a'), unitSize: 4 });
    expect(plan).toMatchObject({ resumed: false, skipped: 0, earlier: [], committed: [] });
    expect(plan.job).toMatchObject({
      rows: 10,
      units: 3,
      firstUnit: 0,
      lists: [{ name: 'ten.txt', bytes: urls(10).length }],
    });
    expect(await unitsOf(plan)).toEqual([
      [0, 0, 4, false],
      [1, 4, 4, false],
      [2, 8, 2, false],
    ]);
    // The job is in the manifest before any unit is written.
    expect((await readManifest(await openStore(path('a'))))!.jobs).toEqual([plan.job]);
  });

  it('gives a dataset an id when it is created, keeps it, and names a dataset made before ids', async () => {
    const options = { lists: [path('ten.txt')], out: path('id'), unitSize: 4 };
    const id = (await planIngest(options)).manifest.id;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect((await readManifest(await openStore(path('id'))))!.id).toBe(id);
    expect((await planIngest(options)).manifest.id).toBe(id); // a rerun resumes the same dataset
    expect((await planIngest({ ...options, lists: [path('other.txt')], append: true })).manifest.id).toBe(id);
    await rm(path('id'), { recursive: true });
    expect((await planIngest(options)).manifest.id).not.toBe(id); // made again: another dataset
    const store = await openStore(path('id'));
    const { id: _, ...unnamed } = (await readManifest(store))!;
    await store.put(MANIFEST_KEY, Buffer.from(JSON.stringify(unnamed)));
    const named = (await planIngest(options)).manifest.id;
    expect(named).toMatch(/^[0-9a-f-]{36}$/);
    expect((await readManifest(store))!.id).toBe(named);
  });

  it("identifies a job by its lists' contents and options: a rerun resumes it, marking committed units", async () => {
    const options = { lists: [path('ten.txt')], out: path('b'), unitSize: 4 };
    const first = await planIngest(options);
    await writeDataset(first.store, { units: 1, perUnit: 2, firstUnit: 0 });
    await writeDataset(first.store, { units: 1, perUnit: 2, firstUnit: 2 });
    const again = await planIngest(options);
    expect(again.resumed).toBe(true);
    expect(again.job).toEqual(first.job);
    expect(again.skipped).toBe(2);
    expect(again.earlier.map((u) => u.unit)).toEqual([0, 2]);
    expect(await unitsOf(again)).toEqual([
      [0, 0, 4, true],
      [1, 4, 4, false],
      [2, 8, 2, true],
    ]);
    // The same contents under another file name are the same job.
    const renamed = await planIngest({ ...options, lists: [path('ten-renamed.txt')] });
    expect(renamed.resumed).toBe(true);
    expect(renamed.job.fingerprint).toBe(first.job.fingerprint);
  });

  it('refuses a different job on an existing dataset without append; with append numbers it after the last', async () => {
    const base = { lists: [path('ten.txt')], out: path('c'), unitSize: 4 };
    const first = await planIngest(base);
    for (const other of [
      { lists: [path('other.txt')] },
      { unitSize: 3 },
      { dedupeRadius: 2 },
      { decode: { maxSide: 128 } },
    ]) {
      await expect(planIngest({ ...base, ...other }), JSON.stringify(other)).rejects.toThrow(ConfigError);
      await expect(planIngest({ ...base, ...other })).rejects.toThrow(
        /already holds a dataset made from other lists or options/,
      );
    }
    const appended = await planIngest({ ...base, lists: [path('other.txt')], append: true });
    expect(appended.job.fingerprint).not.toBe(first.job.fingerprint);
    expect(appended.job).toMatchObject({ firstUnit: 3, units: 2, rows: 5 });
    expect(await unitsOf(appended)).toEqual([
      [3, 0, 4, false],
      [4, 4, 1, false],
    ]);
  });

  it("plans a source that is not a list file (a crawl's candidates) the same way", async () => {
    const rows: UrlRow[] = Array.from({ length: 5 }, (_, index) => ({
      index,
      url: `https://example.test/${index}.jpg`,
      caption: null,
      sourcePage: 'https://example.test/',
      extra: { alt: `image ${index}` },
    }));
    const source: IngestSource = {
      parts: async () => [bytesPart('candidates.jsonl', Buffer.from(JSON.stringify(rows)))],
      rows: async function* () {
        yield* rows;
      },
      extraColumns: async () => ['alt'],
    };
    const plan = await planIngest({ lists: [], source, out: path('d'), unitSize: 2 });
    expect(plan.extraColumns).toEqual(['alt']);
    expect(plan.job).toMatchObject({ rows: 5, units: 3, lists: [{ name: 'candidates.jsonl' }] });
    expect(await unitsOf(plan)).toEqual([
      [0, 0, 2, false],
      [1, 2, 2, false],
      [2, 4, 1, false],
    ]);
    expect((await planIngest({ lists: [], source, out: path('d'), unitSize: 2 })).resumed).toBe(true);
  });

  it('refuses a manifest that is not one, naming it', async () => {
    const store = await openStore(path('e'));
    await store.put(MANIFEST_KEY, Buffer.from('{"format": "something else"}'));
    await expect(planIngest({ lists: [path('ten.txt')], out: path('e') })).rejects.toThrow(
      new RegExp(`${MANIFEST_KEY.replace('.', '\\.')} is not a wildstream dataset manifest`),
    );
  });
});

describe('retry passes in the manifest', () => {
  const entry = (over: Partial<JobEntry>): JobEntry => ({
    fingerprint: 'job',
    lists: [],
    options: {},
    rows: 10,
    firstUnit: 0,
    units: 3,
    createdAt: '2026-01-01T00:00:00Z',
    ...over,
  });

  it("numbers each entry after the last, and counts a job's passes (in pass order) as its own units", async () => {
    const store = await openStore(path('f'));
    const manifest: Manifest = { format: 'wildstream-dataset', version: 1, jobs: [] };
    expect(nextUnit(manifest)).toBe(0);
    const job = entry({});
    await addEntry(store, manifest, job);
    expect(nextUnit(manifest)).toBe(3);
    await addEntry(store, manifest, entry({ fingerprint: 'other', firstUnit: 3, units: 2 }));
    await addEntry(
      store,
      manifest,
      entry({ fingerprint: 'job-retry2', firstUnit: 5, units: 1, retryOf: 'job', pass: 2 }),
    );
    await addEntry(
      store,
      manifest,
      entry({ fingerprint: 'job-retry1', firstUnit: 6, units: 2, retryOf: 'job', pass: 1 }),
    );
    await addEntry(
      store,
      manifest,
      entry({ fingerprint: 'other-retry1', firstUnit: 8, units: 1, retryOf: 'other', pass: 1 }),
    );
    expect(nextUnit(manifest)).toBe(9);
    expect(retryPasses(manifest, job).map((p) => p.fingerprint)).toEqual(['job-retry1', 'job-retry2']);
    const member = inJob(manifest, job);
    expect(Array.from({ length: 10 }, (_, u) => u).filter(member)).toEqual([0, 1, 2, 5, 6, 7]);
    // What was written is what was planned.
    expect(await readManifest(store)).toEqual(manifest);
  });

  it('a rerun of a job counts its committed pass units as earlier work', async () => {
    const options = { lists: [path('ten.txt')], out: path('g'), unitSize: 4 };
    const plan = await planIngest(options);
    await writeDataset(plan.store, { units: 3, perUnit: 1, firstUnit: 0 });
    const pass = entry({
      fingerprint: `${plan.job.fingerprint}-retry1`,
      firstUnit: 3,
      units: 1,
      retryOf: plan.job.fingerprint,
      pass: 1,
    });
    await addEntry(plan.store, plan.manifest, pass);
    await writeDataset(plan.store, { units: 1, perUnit: 1, firstUnit: 3 });
    const again = await planIngest(options);
    expect(again.earlier.map((u) => u.unit)).toEqual([0, 1, 2, 3]);
    expect(again.skipped).toBe(3); // units of the job's own range
    expect((await unitsOf(again)).every(([, , , committed]) => committed)).toBe(true);
  });
});

describe('groupUnits', () => {
  it('puts row i in unit firstUnit + floor(i / unitSize), also when rows are missing', async () => {
    const rows = [0, 1, 5, 9, 10, 11].map((index) => ({ index }) as UrlRow);
    const out: Array<[number, number[]]> = [];
    for await (const [unit, group] of groupUnits(
      (async function* () {
        yield* rows;
      })(),
      4,
      7,
    )) {
      out.push([unit, group.map((r) => r.index)]);
    }
    expect(out).toEqual([
      [7, [0, 1]],
      [8, [5]],
      [9, [9, 10, 11]],
    ]);
  });
});
