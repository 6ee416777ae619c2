// Metric parts as `plot` reads them: a damaged or hand-edited line is named and left out, never a crash with a
// bare JSON error, nor a point drawn at NaN.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/shards/store.js';
import { readMetrics, writeMetricsPart, type MetricLine } from '../../src/train/metrics.js';

let dir: string;
let out: Store;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-metrics-'));
  out = await openStore(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const line = (step: number): MetricLine => ({
  step,
  epoch: 0,
  loss: 4 - step / 10,
  lr: 0.1,
  imagesPerSec: 10,
  dataWaitPct: 5,
  backend: 'wasm',
  time: new Date(Date.UTC(2026, 0, 1, 0, step)).toISOString(),
});

describe('readMetrics', () => {
  it('leaves out lines that are not metric lines, naming each part and line', async () => {
    await writeMetricsPart(out, 2, [line(1), line(2)]);
    const damaged = [
      JSON.stringify(line(3)),
      '{"step":4,"epoch":1,"lo', // cut short
      '{"step":5}', // no loss or lr
      'null',
      JSON.stringify({ ...line(6), loss: null }), // NaN as JSON writes it
      JSON.stringify(line(7)),
    ];
    await out.put('metrics/step-000000007.jsonl', Buffer.from(`${damaged.join('\n')}\n`));
    const skipped: string[] = [];
    const lines = await readMetrics(out, (why) => skipped.push(why));
    expect(lines.map((m) => m.step)).toEqual([1, 2, 3, 7]);
    expect(skipped).toHaveLength(4);
    expect(skipped[0]).toMatch(/^metrics\/step-000000007\.jsonl line 2 is not a metric line \(.+\); skipped$/);
    expect(skipped.slice(1)).toEqual([
      'metrics/step-000000007.jsonl line 3 is not a metric line (loss undefined); skipped',
      'metrics/step-000000007.jsonl line 4 is not a metric line (not a JSON object); skipped',
      'metrics/step-000000007.jsonl line 5 is not a metric line (loss null); skipped',
    ]);
  });
});
