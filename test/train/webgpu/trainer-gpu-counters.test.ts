/**
 * train() on the webgpu backend (a test double for the forward and backward pass, fixed-gradients.ts), in two
 * pieces: the resumed piece counts the loss scale's skipped and grown steps on from the checkpoint, and its
 * progress lines and metrics lines show the share of time spent waiting for the GPU and the loss scale. Same shapes as resume.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../../src/shards/store.js';
import { listCheckpoints, loadCheckpoint } from '../../../src/train/checkpoint.js';
import { readMetrics } from '../../../src/train/metrics.js';
import { resolveResume } from '../../../src/train/resume.js';
import { train } from '../../../src/train/trainer.js';
import type { GradientProgramFactory } from '../../../src/train/webgpu/stepper.js';
import { FixedGradients } from './fixed-gradients.js';
import { randomValues } from './gpu.js';
import { handMade, tinyConfig } from './train-case.js';

let dir: string;
beforeAll(async () => void (dir = await mkdtemp(join(tmpdir(), 'ws-webgpu-counters-'))));
afterAll(async () => rm(dir, { recursive: true, force: true }));

// The tiny model and seeded batches of train-case.ts: the shapes resume.test.ts compiles.
const config = tinyConfig(5, { freezePrototypesSteps: 1 });

/** One gradient element of 3.5e14: its squared norm overflows f32 at the first scale (2^16), not at 2^15. */
const overflowOnce: GradientProgramFactory = (r, spec) => {
  const p = new FixedGradients(r, spec);
  const g = randomValues(spec.layout.params.total, 77);
  g[0] = 3.5e14;
  p.set(g, 0.75);
  return p;
};

async function run(out: Store, until: number, log: string[], logEvery = 1) {
  const start = await resolveResume({ out, config, resume: true, log: () => {} });
  return train({
    batches: handMade(start.step, until),
    start,
    out,
    config,
    backend: 'webgpu',
    precision: 'mixed',
    logEvery,
    checkpointEvery: 3,
    gradientProgram: overflowOnce,
    log: (l) => log.push(l),
  });
}

describe('a resumed WebGPU run', () => {
  it('counts the loss scale on from its checkpoint, and shows its GPU wait beside the data wait', async () => {
    const out = await openStore(join(dir, 'pieces'));
    const first: string[] = [];
    expect((await run(out, 3, first)).step).toBe(3);
    const [ckpt] = await listCheckpoints(out);
    // Step 1 overflowed (skipped, scale halved); steps 2 and 3 were clean.
    expect((await loadCheckpoint(out, ckpt!.key)).header.lossScale).toEqual({
      scale: 32768,
      cleanRun: 2,
      skipped: 1,
      grown: 0,
    });
    const resumed: string[] = [];
    expect((await run(out, Infinity, resumed)).step).toBe(5);
    // Nothing overflowed after the resume: the one skip counted is the first piece's.
    expect(resumed.some((l) => /^step 5\/5 .*loss scale 32768 \(1 skipped, 0 grown\)/.test(l))).toBe(true);
    expect(resumed.filter((l) => /^step \d\/5 .* data-wait \d+% {2}gpu-wait \d+% {2}webgpu/.test(l))).toHaveLength(2);
    const [last] = await listCheckpoints(out);
    expect((await loadCheckpoint(out, last!.key)).header.lossScale).toMatchObject({ skipped: 1, grown: 0 });
    const metrics = await readMetrics(out);
    expect(metrics.map((m) => m.step)).toEqual([1, 2, 3, 4, 5]);
    expect(metrics.every((m) => m.gpuWaitPct! >= 0 && m.gpuWaitPct! <= 100)).toBe(true);
    // Logged every step: each process's first step is its own interval, and names its seconds.
    expect(metrics.map((m) => m.firstStepSeconds !== undefined)).toEqual([true, false, false, true, false]);
    expect(resumed.filter((l) => l.startsWith('first step'))).toEqual([expect.not.stringContaining('rates')]);
    // The metrics file keeps what the progress line shows of the loss scale, counted on across the resume.
    expect(metrics.map((m) => m.lossScale)).toEqual(
      [1, 2, 3, 4, 5].map(() => ({ scale: 32768, skipped: 1, grown: 0 })),
    );
  }, 120_000);

  it("times a process's first step apart: its own line, and the interval's rates count from the next step", async () => {
    const out = await openStore(join(dir, 'first'));
    const log: string[] = [];
    expect((await run(out, Infinity, log, 3)).step).toBe(5);
    const first = log.filter((l) => l.startsWith('first step'));
    expect(first).toEqual([
      expect.stringMatching(
        /^first step \d+\.\d s, \d+% of it waiting for the device .*; the rates of its interval count from the next step$/,
      ),
    ]);
    expect(log.indexOf(first[0]!)).toBeLessThan(log.findIndex((l) => l.startsWith('step 3/5')));
    const [m3, m5] = await readMetrics(out);
    // Steps 1-3: the interval holds the first step, whose seconds it names and its rates leave out.
    expect(m3).toMatchObject({ step: 3, firstStepSeconds: expect.any(Number) });
    expect(m3!.firstStepSeconds!).toBeGreaterThan(0);
    expect(m3!.imagesPerSec).toBeGreaterThan(0);
    expect(m3!.gpuWaitPct!).toBeGreaterThanOrEqual(0);
    expect(m5).toMatchObject({ step: 5 });
    expect(m5!.firstStepSeconds).toBeUndefined();
  }, 120_000);
});
