// SIGKILL the CLI mid-job several times, rerun, and compare with an uninterrupted run.
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listUnits } from '../../src/shards/dataset.js';
import { inspectDataset } from '../../src/ingest/outstanding.js';
import { recordKey } from '../../src/shards/keys.js';
import { openStore } from '../../src/shards/store.js';
import { BIN, runCli } from '../helpers/cli.js';
import { startFixture, type Fixture } from '../helpers/fixture-server.js';
import { photoJpeg } from '../../src/fixtures/images.js';
import { datasetKeys } from '../helpers/dataset.js';

let fixture: Fixture;
let dir: string;
let list: string;
beforeAll(async () => {
  fixture = await startFixture([
    [
      /^\/slow\/(\d+)\.jpg$/,
      async (_q, res, m) => {
        await sleep(40);
        res
          .writeHead(200, { 'content-type': 'image/jpeg' })
          .end(await photoJpeg(Number(m[1]), { width: 200, height: 150 }));
      },
    ],
    [
      /^\/slower\/(\d+)\.jpg$/,
      async (_q, res, m) => {
        await sleep(300);
        res
          .writeHead(200, { 'content-type': 'image/jpeg' })
          .end(await photoJpeg(Number(m[1]), { width: 200, height: 150 }));
      },
    ],
  ]);
  dir = await mkdtemp(join(tmpdir(), 'ws-resume-'));
  const urls = [
    ...Array.from({ length: 30 }, (_, i) => `${fixture.base}/slow/${i + 500}.jpg`),
    `${fixture.base}/status/404`,
    `${fixture.base}/truncated.jpg`,
    'ftp://nope.test/x.jpg',
    `${fixture.base}/slow/500.jpg`, // an exact copy of row 0
  ];
  list = join(dir, 'list.txt');
  await writeFile(list, urls.join('\n'));
});
afterAll(async () => {
  await fixture?.close();
  await rm(dir, { recursive: true, force: true });
});

const args = (out: string) => [
  'ingest',
  list,
  '--out',
  out,
  '--unit-size',
  '4',
  '--concurrency',
  '2',
  '--allow-address',
  '127.0.0.1',
];

const keysOf = datasetKeys;

/** Starts the CLI and SIGKILLs it once `units/` holds `afterUnits` records (plus a small extra delay). */
async function killMidway(out: string, afterUnits: number, extraMs: number): Promise<void> {
  const child = spawn(process.execPath, [BIN, ...args(out)], { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && child.exitCode === null) {
    const units = await readdir(join(out, 'units')).catch(() => []);
    if (units.length >= afterUnits) break;
    await sleep(20);
  }
  await sleep(extraMs);
  child.kill('SIGKILL');
  await exited;
}

describe('resume after SIGKILL', () => {
  it('gives the same kept images as an uninterrupted run, none lost or twice', async () => {
    const straight = join(dir, 'straight');
    const done = await runCli(args(straight));
    expect(done.code, done.stderr).toBe(0);
    const expected = await keysOf(straight);
    expect(expected).toHaveLength(30);

    const resumed = join(dir, 'resumed');
    for (const [units, extra] of [
      [0, 600],
      [2, 30],
      [5, 90],
    ] as const)
      await killMidway(resumed, units, extra);
    const partial = await listUnits(await openStore(resumed));
    expect(partial.length).toBeLessThan(9); // the kills did land before the end
    const final = await runCli(args(resumed));
    expect(final.code, final.stderr).toBe(0);
    expect(JSON.parse(final.stdout.trim().split('\n').at(-1)!)).toMatchObject({ resumed: true });

    const keys = await keysOf(resumed);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys).toEqual(expected);
    const a = await inspectDataset(await openStore(straight));
    const b = await inspectDataset(await openStore(resumed));
    expect({ ...b, bytes: 0 }).toEqual({ ...a, bytes: 0 });
    expect(b).toMatchObject({
      shards: 9,
      records: 30,
      duplicates: { exact: 1, near: 0 },
      failed: { http_404: 1, decode_error: 1, url_scheme: 1 },
    });
  });

  it('SIGINT and SIGTERM say how many units are committed and exit 130/143; a rerun resumes', async () => {
    const slow = join(dir, 'slower.txt');
    await writeFile(slow, Array.from({ length: 12 }, (_, i) => `${fixture.base}/slower/${i + 600}.jpg`).join('\n'));
    for (const [signal, code] of [
      ['SIGINT', 130],
      ['SIGTERM', 143],
    ] as const) {
      const out = join(dir, `signal-${signal}`);
      const child = spawn(
        process.execPath,
        [BIN, 'ingest', slow, '--out', out, '--unit-size', '2', '--concurrency', '1', '--allow-address', '127.0.0.1'],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr += d));
      const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
      const committed = async () =>
        (await readdir(join(out, 'units')).catch(() => [])).filter((f) => /^\d{6}\.json$/.test(f)).length;
      while ((await committed()) < 1) await sleep(20);
      child.kill(signal);
      expect(await exited, stderr).toBe(code);
      const last = stderr.trim().split('\n').at(-1)!;
      expect(last).toMatch(
        new RegExp(`^wildstream: stopped by ${signal}: [1-5] of 6 units committed; rerun the same command to resume$`),
      );
      expect(Number(/: (\d) of 6/.exec(last)![1])).toBe(await committed());
    }
    const out = join(dir, 'signal-SIGINT');
    const rerun = await runCli([
      'ingest',
      slow,
      '--out',
      out,
      '--unit-size',
      '2',
      '--concurrency',
      '1',
      '--allow-address',
      '127.0.0.1',
    ]);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(JSON.parse(rerun.stdout.trim().split('\n').at(-1)!)).toMatchObject({ resumed: true, keptInJob: 12 });
    const keys = await keysOf(out);
    expect(keys).toEqual(Array.from({ length: 12 }, (_, i) => recordKey(Math.floor(i / 2), i % 2)));
  }, 120_000);

  it('refuses a different list on the same store unless --append', async () => {
    const out = join(dir, 'append');
    expect((await runCli(args(out))).code).toBe(0);
    const other = join(dir, 'other.txt');
    await writeFile(other, `${fixture.base}/slow/900.jpg\n`);
    const refused = await runCli(['ingest', other, '--out', out, '--allow-address', '127.0.0.1']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/already holds a dataset .* --append/);
    const appended = await runCli(['ingest', other, '--out', out, '--allow-address', '127.0.0.1', '--append']);
    expect(appended.code, appended.stderr).toBe(0);
    const units = await listUnits(await openStore(out));
    expect(units.map((u) => u.unit)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(units.at(-1)!.records).toBe(1);
  });

  it('rejects bad options with exit 2 before any work', async () => {
    for (const bad of [
      ['--concurrency', '0'],
      ['--unit-size', 'x'],
      ['--format', 'gif'],
      ['--allow-address', 'nonsense'],
    ]) {
      const result = await runCli(['ingest', list, '--out', join(dir, 'bad'), ...bad]);
      expect(result.code, bad.join(' ')).toBe(2);
      expect(result.stderr.trim().split('\n')[0]).toMatch(/error|wildstream:/);
    }
  });
});
