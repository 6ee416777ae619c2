// Outcomes a user can act on: kept-nothing and empty-list warnings (exit 3), per-unit failure records,
// `--retry-failed` (once, resumable, never twice), and a progress bar that notes never overwrite.
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli.js';
import { photoJpeg } from '../../src/fixtures/images.js';
import { progressReporter } from '../../src/ingest/progress.js';
import { inspectDataset, matchesReason } from '../../src/ingest/outstanding.js';
import { listUnits } from '../../src/shards/dataset.js';
import { httpStatusOf, readFailures } from '../../src/shards/failures.js';
import { recordKey } from '../../src/shards/keys.js';
import { openStore } from '../../src/shards/store.js';
import { BIN, runCli } from '../helpers/cli.js';
import { startFixture, type Fixture } from '../helpers/fixture-server.js';
import { datasetKeys } from '../helpers/dataset.js';

let fixture: Fixture;
let dir: string;
const hits = new Map<string, number>();

beforeAll(async () => {
  fixture = await startFixture([
    // Fails with 503 on the first request for each n, then serves image n (slowly for /once-slow).
    [
      /^\/once(-slow)?\/(\d+)\.jpg$/,
      async (req, res, m) => {
        const n = (hits.get(req.url!) ?? 0) + 1;
        hits.set(req.url!, n);
        if (n === 1) return void res.writeHead(503).end();
        if (m[1]) await sleep(300);
        res
          .writeHead(200, { 'content-type': 'image/jpeg' })
          .end(await photoJpeg(Number(m[2]), { width: 160, height: 120 }));
      },
    ],
  ]);
  dir = await mkdtemp(join(tmpdir(), 'ws-outcomes-'));
});
afterAll(async () => {
  await fixture?.close();
  await rm(dir, { recursive: true, force: true });
});

/** The CLI in this process (no start-up cost): exit code and what it wrote. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const text = { stdout: '', stderr: '' };
  const spies = (['stdout', 'stderr'] as const).map((name) =>
    vi
      .spyOn(process[name], 'write')
      .mockImplementation((chunk: string | Uint8Array) => ((text[name] += String(chunk)), true)),
  );
  try {
    const code = await main(['node', 'wildstream', ...args]);
    return { code, ...text };
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
}

const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').at(-1)!);
const requests = (path: string) => fixture.log.filter((p) => p === path).length;

const keysOf = datasetKeys;

describe('a job that keeps nothing', () => {
  it('warns with the top reason and its fix, exits 3, and --retry-failed with the fix recovers every URL', async () => {
    const list = join(dir, 'private.txt');
    await writeFile(list, [1, 2, 3].map((i) => `${fixture.base}/img/${i + 700}.jpg`).join('\n'));
    const out = join(dir, 'private');
    const r = await runCli(['ingest', list, '--out', out]);
    expect(r.code, r.stderr).toBe(3);
    const warning = r.stderr
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('wildstream:'));
    expect(warning).toHaveLength(1);
    expect(warning[0]).toMatch(
      /kept no image: 3 URLs failed, most with blocked_address \(3 of 3\).*--allow-private-network.*--retry-failed/,
    );
    expect(lastJson(r.stdout)).toMatchObject({
      kept: 0,
      keptInJob: 0,
      warnings: [{ code: 'kept_nothing', reason: 'blocked_address' }],
    });

    // A plain rerun skips the committed units and still says why nothing is kept.
    const again = await cli(['ingest', list, '--out', out, '--allow-address', '127.0.0.1']);
    expect(again.code).toBe(3);
    expect(lastJson(again.stdout)).toMatchObject({ unitsSkipped: 1, warnings: [{ code: 'kept_nothing' }] });

    const retried = await cli(['ingest', list, '--out', out, '--allow-address', '127.0.0.1', '--retry-failed']);
    expect(retried.code, retried.stderr).toBe(0);
    expect(lastJson(retried.stdout)).toMatchObject({ kept: 3, keptInJob: 3, warnings: [] });
    expect(await keysOf(out)).toHaveLength(3);
  }, 60_000);

  it('an empty list warns and exits 3', async () => {
    const list = join(dir, 'empty.txt');
    await writeFile(list, '# nothing here\n\n');
    const r = await cli(['ingest', list, '--out', join(dir, 'empty')]);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/^wildstream: the URL lists hold no rows/m);
    expect(lastJson(r.stdout)).toMatchObject({ urls: 0, warnings: [{ code: 'empty_list' }] });
  });
});

describe('failure records and --retry-failed', () => {
  const urls = () => [
    `${fixture.base}/img/801.jpg`,
    `${fixture.base}/once/802.jpg`,
    `${fixture.base}/status/404`,
    'ftp://example.test/x.jpg',
    `${fixture.base}/once/803.jpg`,
    `${fixture.base}/img/801.jpg`, // the same image as row 0: a duplicate, never a failure
  ];
  const args = (list: string, out: string, ...more: string[]) => [
    'ingest',
    list,
    '--out',
    out,
    '--unit-size',
    '2',
    '--retries',
    '0',
    '--allow-address',
    '127.0.0.1',
    ...more,
  ];

  it('lists each failed URL with reason, status and row, and a retry keeps each recovered image once', async () => {
    const list = join(dir, 'flaky.txt');
    await writeFile(list, urls().join('\n'));
    const out = join(dir, 'flaky');
    const first = await cli(args(list, out));
    expect(first.code, first.stderr).toBe(0);
    expect(lastJson(first.stdout)).toMatchObject({
      kept: 1,
      failedByReason: { http_503: 2, http_404: 1, url_scheme: 1 },
      warnings: [],
    });

    const store = await openStore(out);
    const units = await listUnits(store);
    expect(units.map((u) => u.failures ?? null)).toEqual([
      'failures/000000.jsonl',
      'failures/000001.jsonl',
      'failures/000002.jsonl',
    ]);
    const failures = (await Promise.all(units.map((u) => readFailures(store, u.failures!)))).flat();
    expect(failures).toEqual([
      { row: 1, url: `${fixture.base}/once/802.jpg`, reason: 'http_503', status: 503 },
      { row: 2, url: `${fixture.base}/status/404`, reason: 'http_404', status: 404 },
      { row: 3, url: 'ftp://example.test/x.jpg', reason: 'url_scheme', status: null },
      { row: 4, url: `${fixture.base}/once/803.jpg`, reason: 'http_503', status: 503 },
    ]);

    const retry = await cli(args(list, out, '--retry-failed'));
    expect(retry.code, retry.stderr).toBe(0);
    expect(lastJson(retry.stdout)).toMatchObject({
      unitsTotal: 1,
      unitsDone: 1,
      urls: 2,
      kept: 2,
      keptInJob: 3,
      failedByReason: {},
    });
    expect((await listUnits(store)).map((u) => u.unit)).toEqual([0, 1, 2, 3]); // the pass's unit follows the job's
    // Row 0 kept by the job (unit 0); rows 1 and 4 recovered by the pass, inputs 0 and 1 of its unit 3.
    expect(await keysOf(out)).toEqual([recordKey(0, 0), recordKey(3, 0), recordKey(3, 1)]);
    expect(await keysOf(out)).toEqual(['000000-00000', '000003-00000', '000003-00001']); // the documented form
    expect(requests('/status/404')).toBe(1); // a 404 is final by default
    // inspect counts the URLs failed now: the two the pass recovered are no longer failures.
    const inspected = await cli(['inspect', out, '--json']);
    expect(lastJson(inspected.stdout).failed).toEqual({ http_404: 1, url_scheme: 1 });

    const fetched = fixture.log.length;
    const again = await cli(args(list, out, '--retry-failed'));
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(
      /warning: nothing to retry: 2 URLs failed for reasons not retried \((http_404 x1, url_scheme x1|url_scheme x1, http_404 x1)\)/,
    );
    expect(fixture.log.length).toBe(fetched);
    expect((await listUnits(store)).map((u) => u.unit)).toEqual([0, 1, 2, 3]);

    // Named reasons are retried on request; a row that fails again is listed by its pass, under its own row.
    const named = await cli(args(list, out, '--retry-failed', '--retry-reasons', 'http_4xx'));
    expect(named.code, named.stderr).toBe(0);
    expect(requests('/status/404')).toBe(2);
    const last = (await listUnits(store)).at(-1)!;
    expect(last.unit).toBe(4);
    expect(await readFailures(store, last.failures!)).toEqual([
      { row: 2, url: `${fixture.base}/status/404`, reason: 'http_404', status: 404 },
    ]);
    expect(await keysOf(out)).toHaveLength(3);
    expect((await inspectDataset(store)).failed).toEqual({ http_404: 1, url_scheme: 1 }); // row 2 once, as it is now
  }, 90_000);

  it('a retry SIGKILLed mid-pass and rerun refetches no recovered URL and duplicates no key', async () => {
    const list = join(dir, 'slow.txt');
    await writeFile(list, Array.from({ length: 6 }, (_, i) => `${fixture.base}/once-slow/${900 + i}.jpg`).join('\n'));
    const out = join(dir, 'slow');
    const slowArgs = [
      'ingest',
      list,
      '--out',
      out,
      '--unit-size',
      '1',
      '--concurrency',
      '1',
      '--retries',
      '0',
      '--allow-address',
      '127.0.0.1',
    ];
    expect((await cli(slowArgs)).code).toBe(3); // every URL failed once: nothing kept yet

    const child = spawn(process.execPath, [BIN, ...slowArgs, '--retry-failed'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const units = async () => (await readdir(join(out, 'units'))).filter((f) => /^\d{6}\.json$/.test(f)).length;
    for (let i = 0; i < 1500 && (await units()) < 8; i++) await sleep(10);
    child.kill('SIGKILL');
    await exited;
    const committed = await units();
    expect(committed).toBeGreaterThanOrEqual(7);
    expect(committed).toBeLessThan(12); // killed mid-pass
    // Mid-pass, each committed unit of the pass settled its row (the slow URLs fail once, then serve).
    expect((await inspectDataset(await openStore(out))).failed).toEqual({ http_503: 12 - committed });

    const rerun = await cli([...slowArgs, '--retry-failed']);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(lastJson(rerun.stdout)).toMatchObject({ resumed: true, keptInJob: 6 });
    expect(rerun.stderr).toMatch(
      /^wildstream: warning: resumed retry pass 1 \(reasons [^)]*http_5xx[^)]*\), which an earlier run left unfinished; run --retry-failed again for a new pass$/m,
    );
    for (let i = 0; i < 6; i++) expect(requests(`/once-slow/${900 + i}.jpg`), `row ${i}`).toBeLessThanOrEqual(3);
    const keys = await keysOf(out);
    expect(keys).toEqual(Array.from({ length: 6 }, (_, i) => recordKey(6 + i, 0))); // the pass's units 6-11, one row each
    const manifest = JSON.parse(await readFile(join(out, 'dataset.json'), 'utf8'));
    expect(manifest.jobs.map((j: { pass?: number }) => j.pass ?? 0)).toEqual([0, 1]);
  }, 90_000);

  it('derives HTTP statuses and matches reason patterns', () => {
    expect([
      httpStatusOf('http_404'),
      httpStatusOf('http_503'),
      httpStatusOf('timeout'),
      httpStatusOf('http_12'),
    ]).toEqual([404, 503, null, null]);
    expect(matchesReason('http_502', ['http_5xx'])).toBe(true);
    expect(matchesReason('http_404', ['http_5xx'])).toBe(false);
    expect(matchesReason('timeout', ['http_5xx', 'timeout'])).toBe(true);
  });

  it('refuses unknown retry reasons and --retry-failed on a store without the job', async () => {
    const list = join(dir, 'flaky.txt');
    const bad = await cli(args(list, join(dir, 'flaky'), '--retry-failed', '--retry-reasons', 'timout'));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/"timout" is not a failure reason/);
    const none = await cli(args(list, join(dir, 'nothing-here'), '--retry-failed'));
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/holds no job made from these lists and options/);
  });
});

describe('progress on a terminal', () => {
  it('notes and the lines after stop never land on the bar line', () => {
    let text = '';
    const stream = Object.assign(
      new Writable({
        write: (chunk, _enc, done) => {
          text += String(chunk);
          done();
        },
      }),
      { isTTY: true, columns: 120 },
    );
    const reporter = progressReporter(stream as unknown as NodeJS.WriteStream);
    const progress = {
      unitsTotal: 4,
      unitsDone: 1,
      unitsSkipped: 0,
      urls: 10,
      kept: 7,
      failed: 3,
      duplicates: 0,
      elapsedSeconds: 1,
    };
    reporter.update(progress);
    const before = text.length;
    reporter.note('wildstream: no worker has taken a unit');
    // The note starts at column 1 of a cleared line (ESC[1G, ESC[2K) and ends the line.
    expect(text.slice(before)).toMatch(/^\x1b\[1G\x1b\[2Kwildstream: no worker has taken a unit\n/);
    reporter.stop();
    expect(text.endsWith('\n')).toBe(true); // the message after an interrupt starts on a line of its own
    const stopped = text.length;
    reporter.update({ ...progress, unitsDone: 2 });
    expect(text.length).toBe(stopped); // work still draining after an interrupt draws nothing
  });
});
