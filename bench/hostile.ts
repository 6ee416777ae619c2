/**
 * Hostile-input benchmark: runs every case of bench/hostile-inputs.ts through the real CLI and prints each
 * outcome, the expected one, and the peak RSS (GNU time's maximum resident set size of the CLI process).
 *
 *   npx tsx bench/hostile.ts [--timeout 10] [--limit-s 300] [--json bench/out/hostile.json]
 *
 * Ingest runs once over all URL cases at its default concurrency and memory settings, one URL per unit
 * (`--unit-size 1`), so each unit record tells one case's outcome; `--timeout`/`--retries 1` only shorten
 * the wait on cases that stall. Crawl runs once per page case (seed page only). A case whose unit is never
 * committed before the wall-clock limit counts as hung. Only 127.0.0.1 is reached: the fixture server
 * listens there and the bench allows just that address, so SSRF spellings of 127.0.0.2 must be refused.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { V8_FLAGS } from '../src/v8-flags.js';
import { hostileSet, type HostileSet } from './hostile-inputs.js';

const { values } = parseArgs({
  options: {
    timeout: { type: 'string', default: '10' },
    'limit-s': { type: 'string', default: '300' },
    json: { type: 'string', default: 'bench/out/hostile.json' },
  },
});
const BIN = new URL('../bin/wildstream.js', import.meta.url).pathname;

interface Outcome {
  name: string;
  expected: string;
  outcome: string;
  /** `ok`: matches the expectation; `classified`: some reason, no expectation; `MISMATCH`; `HUNG`. */
  verdict: 'ok' | 'classified' | 'MISMATCH' | 'HUNG';
  rssMiB?: number;
}

/** Runs the CLI under GNU time; resolves with its exit code, stderr tail and peak RSS, killing it at the limit. */
function runCli(
  args: string[],
  limitMs: number,
): Promise<{ code: number | null; rssMiB: number; stderr: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn('/usr/bin/time', ['-f', 'maxrss_kb=%M', process.execPath, ...V8_FLAGS, BIN, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-20_000)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, limitMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      const kb = Number(/maxrss_kb=(\d+)/.exec(stderr)?.[1] ?? NaN);
      resolve({ code, rssMiB: kb / 1024, stderr, timedOut });
    });
  });
}

function serve(set: HostileSet, log: string[]): Promise<{ base: string; port: number; close: () => void }> {
  const server = createServer((req, res) => {
    const path = req.url!.split('?')[0]!;
    log.push(path);
    const route = set.routes.get(path);
    if (!route) return void res.writeHead(404).end();
    try {
      route(req, res);
    } catch {
      res.destroy();
    }
  });
  server.maxHeadersCount = 0;
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        base: `http://127.0.0.1:${port}`,
        port,
        close: () => {
          server.closeAllConnections();
          server.close();
        },
      });
    }),
  );
}

/** One unit per URL: the unit's record says kept, duplicate or the failure reason(s). */
function unitOutcome(
  record: { records: number; failed: Record<string, number>; duplicates: { exact: number; near: number } } | undefined,
): string {
  if (!record) return 'uncommitted';
  if (record.records > 0) return 'kept';
  if (record.duplicates.exact + record.duplicates.near > 0) return 'duplicate';
  const reasons = Object.keys(record.failed);
  return reasons.length ? reasons.join('+') : 'no_outcome';
}

async function ingestCases(
  set: HostileSet,
  base: string,
  port: number,
  work: string,
): Promise<{ results: Outcome[]; rssMiB: number; wall: number }> {
  const list = join(work, 'urls.jsonl');
  const rows = set.urls.map((c) => (c.row ? c.row(c.url(base, port)) : JSON.stringify({ url: c.url(base, port) })));
  await writeFile(list, rows.join('\n') + '\n');
  const out = join(work, 'ingest');
  const t0 = performance.now();
  const run = await runCli(
    [
      'ingest',
      list,
      '--out',
      out,
      '--unit-size',
      '1',
      '--allow-address',
      '127.0.0.1',
      '--timeout',
      values.timeout!,
      '--retries',
      '1',
    ],
    Number(values['limit-s']) * 1000,
  );
  const wall = (performance.now() - t0) / 1000;
  if (run.code !== 0 && !run.timedOut)
    process.stderr.write(`ingest exited ${run.code}: ${run.stderr.split('\n').slice(-5).join(' | ')}\n`);
  const records = new Map<number, Parameters<typeof unitOutcome>[0]>();
  for (const f of await readdir(join(out, 'units')).catch(() => [] as string[])) {
    if (!f.endsWith('.json')) continue;
    const record = JSON.parse(await readFile(join(out, 'units', f), 'utf8'));
    records.set(record.unit, record);
  }
  const results = set.urls.map((c, i): Outcome => {
    const outcome = unitOutcome(records.get(i));
    const expected = c.expect ? String(c.expect) : '(any reason)';
    const verdict =
      outcome === 'uncommitted'
        ? 'HUNG'
        : c.expect
          ? c.expect.test(outcome)
            ? 'ok'
            : 'MISMATCH'
          : outcome === 'no_outcome'
            ? 'MISMATCH'
            : 'classified';
    return { name: c.name, expected, outcome, verdict };
  });
  return { results, rssMiB: run.rssMiB, wall };
}

async function crawlCase(
  c: HostileSet['pages'][number],
  base: string,
  log: string[],
  work: string,
  index: number,
): Promise<Outcome> {
  const out = join(work, `crawl-${index}`);
  const from = log.length;
  const run = await runCli(
    [
      'crawl',
      `${base}${c.seed}`,
      '--out',
      out,
      '--max-depth',
      '0',
      '--delay-ms',
      '0',
      '--allow-address',
      '127.0.0.1',
      '--timeout',
      values.timeout!,
      '--retries',
      '1',
    ],
    120_000,
  );
  const text = await readFile(join(out, 'crawl', 'images.jsonl'), 'utf8').catch(() => '');
  const images = text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  const problem = run.timedOut
    ? 'hung'
    : run.code !== 0
      ? `exit ${run.code}: ${
          run.stderr
            .trim()
            .split('\n')
            .filter((l) => !l.startsWith('maxrss'))
            .pop() ?? ''
        }`
      : c.check(images, log.slice(from));
  const outcome = problem ?? `${images.length} images`;
  return {
    name: c.name,
    expected: 'check passes',
    outcome,
    verdict: run.timedOut ? 'HUNG' : problem ? 'MISMATCH' : 'ok',
    rssMiB: run.rssMiB,
  };
}

function print(results: Outcome[]): void {
  const w = Math.max(...results.map((r) => r.name.length));
  for (const r of results) {
    const rss = r.rssMiB !== undefined ? `  ${r.rssMiB.toFixed(0)} MiB` : '';
    process.stdout.write(
      `${r.verdict.padEnd(10)} ${r.name.padEnd(w)}  ${r.outcome.slice(0, 90)}  (expected ${r.expected})${rss}\n`,
    );
  }
}

const set = await hostileSet();
const log: string[] = [];
const server = await serve(set, log);
const work = await mkdtemp(join(tmpdir(), 'ws-hostile-'));
try {
  const ingest = await ingestCases(set, server.base, server.port, work);
  print(ingest.results);
  const crawls: Outcome[] = [];
  for (const [i, c] of set.pages.entries()) crawls.push(await crawlCase(c, server.base, log, work, i));
  print(crawls);
  const all = [...ingest.results, ...crawls];
  const count = (v: Outcome['verdict']) => all.filter((r) => r.verdict === v).length;
  const summary = {
    date: new Date().toISOString(),
    kinds: all.length,
    ingestCases: ingest.results.length,
    crawlCases: crawls.length,
    classified: all.length - count('HUNG'),
    asExpected: count('ok'),
    mismatched: count('MISMATCH'),
    hung: count('HUNG'),
    ingestPeakRssMiB: Math.round(ingest.rssMiB),
    ingestWallS: Math.round(ingest.wall),
    crawlPeakRssMiB: Math.round(Math.max(0, ...crawls.map((c) => c.rssMiB ?? 0))),
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  await mkdir(join(values.json!, '..'), { recursive: true });
  await writeFile(values.json!, JSON.stringify({ summary, results: all }, null, 1));
} finally {
  server.close();
  await rm(work, { recursive: true, force: true });
}
