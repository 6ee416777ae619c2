// Shard staging: where shards wait before upload, what a rerun cleans up, and a read-only destination.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runIngest } from '../../src/ingest/local.js';
import { openStaging, stagingRoot } from '../../src/shards/staging.js';
import { openStore } from '../../src/shards/store.js';
import { ShardWriter } from '../../src/shards/writer.js';
import { startFixture, type Fixture } from '../helpers/fixture-server.js';
import { makeRecord } from '../helpers/records.js';

let dir: string;
let fixture: Fixture;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-writer-'));
  fixture = await startFixture();
});
afterAll(async () => {
  await fixture?.close();
  await rm(dir, { recursive: true, force: true });
});

const host = hostname().replace(/[^A-Za-z0-9.]/g, '_');
/** A pid that surely ended: a child that has exited. */
const deadPid = () => spawnSync(process.execPath, ['-e', '0']).pid!;

describe('ShardWriter staging', () => {
  it('stages in the folder given and leaves nothing there after finish or abort', async () => {
    const staging = join(dir, 'stage-a');
    const store = await openStore(join(dir, 'ds-a'));
    const writer = new ShardWriter({ stagingDir: staging, maxBatchRows: 2 });
    for (let i = 0; i < 5; i++) await writer.add(makeRecord(i));
    expect((await readdir(staging)).filter((n) => n.endsWith('.arrow'))).toHaveLength(1); // staged while open
    expect(await writer.finish(store, 'shards/000000.arrow')).toMatchObject({ records: 5 });
    expect(await readdir(staging)).toEqual([]);
    const aborted = new ShardWriter({ stagingDir: staging, maxBatchRows: 1 });
    await aborted.add(makeRecord(9));
    await aborted.abort();
    expect(await readdir(staging)).toEqual([]);
  });

  it('stages a local dataset inside it and a remote one outside /tmp', async () => {
    const store = await openStore(join(dir, 'ds-b'));
    expect(stagingRoot(store)).toBe(join(dir, 'ds-b', '.staging'));
    const remote = await openStore('s3://bucket/prefix', { s3Endpoint: 'http://127.0.0.1:9' });
    expect(stagingRoot(remote).startsWith(tmpdir())).toBe(false);
  });

  it("removes a killed run's leftovers on this host, never a live process's or another host's fresh ones", async () => {
    const store = await openStore(join(dir, 'ds-c'));
    const root = stagingRoot(store);
    const leftover = async (name: string, ageMs = 0) => {
      await mkdir(join(root, name), { recursive: true });
      const file = join(root, name, 'shard-0.arrow');
      await writeFile(file, Buffer.alloc(1024));
      const when = new Date(Date.now() - ageMs);
      await utimes(file, when, when);
      await utimes(join(root, name), when, when);
    };
    await leftover(`${host}-${deadPid()}`);
    await leftover(`${host}-${process.ppid}`); // alive: the process that started this test worker
    await leftover('other-host-123'); // cannot be asked: kept while fresh
    await leftover('other-host-456', 48 * 3600_000); // untouched for two days
    const mine = await openStaging(store);
    expect(mine).toBe(join(root, `${host}-${process.pid}`));
    expect((await readdir(root)).sort()).toEqual(
      [`${host}-${process.pid}`, `${host}-${process.ppid}`, 'other-host-123'].sort(),
    );
  });
});

describe('ingest stages nowhere but where a rerun looks', () => {
  it('writes nothing to TMPDIR, and a rerun clears a killed run staging file', async () => {
    const tmp = join(dir, 'tmp');
    await mkdir(tmp);
    const out = join(dir, 'ds-ingest');
    const killed = join(out, '.staging', `${host}-${deadPid()}`);
    await mkdir(killed, { recursive: true });
    await writeFile(join(killed, 'shard-dead.arrow'), Buffer.alloc(4096));
    const list = join(dir, 'list.txt');
    await writeFile(list, Array.from({ length: 6 }, (_, i) => `${fixture.base}/img/${i}.jpg`).join('\n'));
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    try {
      expect(tmpdir()).toBe(tmp);
      const summary = await runIngest({ lists: [list], out, unitSize: 3, fetch: { allowPrivateNetwork: true } });
      expect(summary.kept).toBe(6);
    } finally {
      process.env.TMPDIR = saved;
    }
    expect(await readdir(tmp)).toEqual([]);
    // The killed run's folder went at the start, this run's own (staged shards all moved) at its end.
    expect(existsSync(join(out, '.staging'))).toBe(false);
  }, 60_000);
});

describe('a read-only destination', () => {
  let ro: string;
  let mounted = false;
  beforeAll(async () => {
    ro = join(dir, 'ro');
    await mkdir(ro);
    try {
      // A read-only tmpfs: root ignores file modes, but not a read-only mount.
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', ro], { stdio: 'ignore' });
      mounted = true;
    } catch {
      await import('node:fs/promises').then((fs) => fs.chmod(ro, 0o555)); // not root: modes apply
    }
  });
  afterAll(() => {
    if (mounted) execFileSync('umount', [ro]);
  });

  it('says that it cannot write there and why, not that dataset.json is missing', async () => {
    const list = join(dir, 'list-ro.txt');
    await writeFile(list, `${fixture.base}/img/1.jpg\n`);
    const run = runIngest({ lists: [list], out: join(ro, 'ds'), fetch: { allowPrivateNetwork: true } });
    await expect(run).rejects.toThrow(mounted ? `cannot write to ${join(ro, 'ds')}: read-only file system` : /denied/);
    await expect(
      runIngest({ lists: [list], out: join(ro, 'ds'), fetch: { allowPrivateNetwork: true } }),
    ).rejects.not.toThrow(/no such object/);
  });
});
