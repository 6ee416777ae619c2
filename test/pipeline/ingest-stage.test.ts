/**
 * A pipeline's ingest stage takes every ingest option: a URL/TEXT parquet (LAION's column names) ingested with
 * url_col/caption_col, webp output at a max side, unit size and no near-dedupe, as `wildstream ingest` would.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPipeline } from '../../src/pipeline/run.js';
import { listUnits } from '../../src/shards/dataset.js';
import { ShardReader } from '../../src/shards/reader.js';
import { getBytes, openStore } from '../../src/shards/store.js';
import { startFixture, type Fixture } from '../helpers/fixture-server.js';
import { startS3 } from '../helpers/s3-server.js';

let dir: string;
let fixture: Fixture;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-pipeline-ingest-'));
  fixture = await startFixture();
});
afterAll(async () => {
  await fixture.close();
  await rm(dir, { recursive: true, force: true });
});

describe('pipeline ingest stage', () => {
  it('ingests a URL/TEXT parquet with url_col and caption_col, in webp at max_side', async () => {
    const { parquetWriteBuffer } = await import('hyparquet-writer');
    const urls = [1, 2, 3].map((i) => `${fixture.base}/img/${i}.jpg`);
    await writeFile(
      join(dir, 'laion.parquet'),
      Buffer.from(
        parquetWriteBuffer({
          columnData: [
            { name: 'URL', data: urls, type: 'STRING' },
            { name: 'TEXT', data: ['one', 'two', 'three'], type: 'STRING' },
          ],
        }),
      ),
    );
    const out = join(dir, 'ds');
    await writeFile(
      join(dir, 'p.yaml'),
      [
        'ingest:',
        `  lists: [${join(dir, 'laion.parquet')}]`,
        `  out: ${out}`,
        '  url_col: URL',
        '  caption_col: TEXT',
        '  format: webp',
        '  max_side: 64',
        '  unit_size: 2',
        '  dedupe_radius: 0',
        '  allow_address: 127.0.0.1',
        '',
      ].join('\n'),
    );
    await runPipeline(join(dir, 'p.yaml'), []);
    const store = await openStore(out);
    const units = await listUnits(store);
    expect(units.map((u) => u.records)).toEqual([2, 1]);
    const records = [];
    for (const u of units)
      for await (const r of (await ShardReader.open(store, u.shard, { size: u.bytes })).records()) records.push(r);
    // Within a unit, records are written in list order, whatever order their downloads finish in.
    expect(records.map((r) => [r.url, r.caption])).toEqual(urls.map((u, i) => [u, ['one', 'two', 'three'][i]]));
    expect(records.every((r) => r.mime === 'image/webp' && Math.max(r.width, r.height) === 64)).toBe(true);
  }, 60_000);

  it('without caption_col reads no caption from a TEXT column (the option reaches the stage)', async () => {
    await writeFile(
      join(dir, 'q.yaml'),
      [
        'ingest:',
        `  lists: [${join(dir, 'laion.parquet')}]`,
        `  out: ${join(dir, 'ds2')}`,
        '  url_col: URL',
        '  allow_address: [127.0.0.1]',
        '',
      ].join('\n'),
    );
    await runPipeline(join(dir, 'q.yaml'), []);
    const store = await openStore(join(dir, 'ds2'));
    const [unit] = await listUnits(store);
    const captions = [];
    for await (const r of (await ShardReader.open(store, unit!.shard, { size: unit!.bytes })).records())
      captions.push(r.caption);
    expect(captions).toEqual([null, null, null]);
  }, 60_000);

  it('resumes the demo site ingested into S3 on a rerun: the site comes back on the port of its URL list', async () => {
    // The list went to a new temporary folder on each run, so a rerun served the site on a new port, a new
    // list, and the interrupted (or finished) dataset was refused as another job's.
    const s3 = await startS3(['demo']);
    const env = { ...process.env };
    Object.assign(process.env, { ...s3.env, XDG_CACHE_HOME: join(dir, 'cache') });
    try {
      const file = join(dir, 'demo-s3.yaml');
      await writeFile(file, `site: demo\ningest:\n  out: s3://demo/ds\n  unit_size: 200\n  max_side: 32\n`);
      await runPipeline(file, []);
      await runPipeline(file, []); // threw "already holds a dataset made from other lists or options"
      const store = await openStore('s3://demo/ds');
      expect(await listUnits(store)).toHaveLength(3);
      const manifest = JSON.parse(Buffer.from(await getBytes(store, 'dataset.json')).toString()) as {
        jobs: unknown[];
      };
      expect(manifest.jobs).toHaveLength(1);
    } finally {
      process.env = env;
      await s3.stop();
    }
  }, 120_000);
});
