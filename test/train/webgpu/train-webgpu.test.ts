// train() on the webgpu backend, with the fixed-gradients double in place of the engine's forward and backward:
// the device and precision lines, the loss read at log intervals with the loss-scale counters, a run in pieces
// equal bit for bit to one in one go across the end of the frozen-prototypes phase, a finite source's last,
// partial batch skipped, and a resume on wasm.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openStore, type Store } from '../../../src/shards/store.js';
import { listCheckpoints } from '../../../src/train/checkpoint.js';
import { WebGpuStepper, type GradientProgramFactory } from '../../../src/train/webgpu/stepper.js';
import { FixedGradients } from './fixed-gradients.js';
import { randomValues } from './gpu.js';
import { latest, runOn, sameWeights, tinyConfig } from './train-case.js';

let dir: string;
beforeAll(async () => void (dir = await mkdtemp(join(tmpdir(), 'ws-train-webgpu-'))));
afterAll(async () => rm(dir, { recursive: true, force: true }));

const double: GradientProgramFactory = (r, spec) => {
  const p = new FixedGradients(r, spec);
  p.set(randomValues(spec.layout.params.total, 77), 0.75);
  return p;
};

const config = (steps: number) =>
  tinyConfig(steps, {
    freezePrototypesSteps: 2,
    schedule: { baseLr: 0.5, finalLr: 0.05, warmupSteps: 1, startWarmupLr: 0.2 },
  });

const run = (
  out: Store,
  steps: number,
  backend: 'webgpu' | 'wasm',
  log: string[] = [],
  until = Infinity,
  /** null: the default, the SwAV gradient program. */
  program: GradientProgramFactory | null = double,
) => runOn(out, config(steps), { backend, until, logEvery: 2, program, log });
const runDefaults = { backend: 'webgpu', logEvery: 2, program: double } as const;

describe('train --backend webgpu', () => {
  it('engine double: device, precision and loss-scale lines; N steps in one go = in pieces; resumes on wasm', async () => {
    const one = await openStore(join(dir, 'one'));
    const log: string[] = [];
    const s = await run(one, 5, 'webgpu', log);
    expect(s.step).toBe(5);
    expect(s.loss).toBeCloseTo(0.75, 6);
    expect(log.some((l) => /^WebGPU .*precision mixed/.test(l))).toBe(true);
    expect(log.some((l) => /loss scale 65536 \(0 skipped, 0 grown\)/.test(l))).toBe(true);
    // The memory line is the GPU's (the stepper's buffers), not the tfjs cpu plan of a step that never runs there.
    expect(log.filter((l) => /^GPU memory: [\d.]+ MiB.* \(state [\d.]+ MiB, crops [\d.]+ MiB/.test(l)).length).toBe(1);
    expect(log.filter((l) => /^memory: /.test(l))).toEqual([]);
    const pieces = await openStore(join(dir, 'pieces'));
    expect((await run(pieces, 5, 'webgpu', [], 3)).step).toBe(3); // the batches end at 3
    // A finite source's last, partial batch: skipped with a line (drop_last), not a failure.
    const partial = await openStore(join(dir, 'partial'));
    const dropped: string[] = [];
    const p = await runOn(partial, config(5), { ...runDefaults, log: dropped, until: 3, partialLast: true });
    expect(p.step).toBe(2);
    expect(dropped).toContain(
      'skipped a batch of 2 images after step 2: the WebGPU step is recorded for batches of 4 (as drop_last)',
    );
    await run(pieces, 5, 'webgpu');
    sameWeights(await latest(one), await latest(pieces));
    const s2 = await run(one, 7, 'wasm');
    expect(s2.step).toBe(7);
    expect(s2.resumedFrom).toMatch(/step-000000005/);
  });

  it('a resume keeps the precision its checkpoint was trained in, unless told otherwise', async () => {
    const out = await openStore(join(dir, 'precision'));
    const on = (steps: number, precision?: 'f32' | 'mixed') => {
      const log: string[] = [];
      const done = runOn(out, config(steps), { backend: 'webgpu', logEvery: 2, program: double, log, precision });
      return done.then(async () => ({
        line: log.find((l) => l.startsWith('WebGPU ')),
        saved: (await latest(out)).header,
      }));
    };
    expect((await on(3, 'f32')).saved.precision).toBe('f32');
    const kept = await on(5);
    expect(kept.line).toMatch(/; precision f32 \(kept from the checkpoint resumed\): f32 throughout/);
    expect([kept.saved.step, kept.saved.precision]).toEqual([5, 'f32']);
    const asked = await on(6, 'mixed');
    expect(asked.line).toMatch(/; precision mixed \(as asked\)/);
    expect([asked.saved.step, asked.saved.precision]).toEqual([6, 'mixed']);
  });

  it('a stop while the engine starts ends the run there: no step, no new checkpoint, the device freed', async () => {
    const out = await openStore(join(dir, 'stopped-at-start'));
    await run(out, 3, 'webgpu');
    const controller = new AbortController();
    // The program is made after the state's upload and before the pipelines compile: a stop arriving then.
    const stopping: GradientProgramFactory = (r, spec) => {
      controller.abort();
      return double(r, spec);
    };
    const log: string[] = [];
    const s = await runOn(out, config(5), {
      backend: 'webgpu',
      logEvery: 2,
      program: stopping,
      log,
      signal: controller.signal,
    });
    expect([s.stopped, s.startStep, s.step, s.checkpoint]).toEqual(['signal', 3, 3, null]);
    expect(s.resumedFrom).toMatch(/step-000000003/);
    expect(log.filter((l) => /^(WebGPU|step) /.test(l))).toEqual([]);
    expect((await listCheckpoints(out)).map((c) => c.step)).toEqual([3]);
    expect((await run(out, 5, 'webgpu')).step).toBe(5); // and the next run starts as usual
  });

  it("SwAV queue on 8-bit crops: the losses follow the wasm trainer's as it fills and joins at its start step; pieces = one go", async () => {
    // Batch 4, queue 8: full after step 1, in the assignment from step 3 (its start step) on. The crops come as
    // bytes (as the loader makes them for webgpu): the GPU decodes them in its step, wasm with cropFloats.
    const queued = { ...tinyConfig(6, { freezePrototypesSteps: 1 }), queue: { length: 8, startStep: 3 } };
    const losses = async (name: string, backend: 'webgpu' | 'wasm', until = Infinity) => {
      const log: string[] = [];
      const o = { backend, logEvery: 1, program: null, log, until, cropDtype: 'uint8' } as const;
      await runOn(await openStore(join(dir, name)), queued, backend === 'webgpu' ? { ...o, precision: 'f32' } : o);
      expect(log.some((l) => /, crops 2x16@0\.3-1, queue 8 from step 3, /.test(l))).toBe(true);
      return log.filter((l) => l.startsWith('step ')).map((l) => Number(/loss ([\d.]+)/.exec(l)![1]));
    };
    const wasm = await losses('queue-wasm', 'wasm');
    // The source says its crops are bytes: the trainer has the engine stage them at start (its memory check).
    const start = vi.spyOn(WebGpuStepper, 'start');
    const gpu = await losses('queue-one', 'webgpu');
    expect(start.mock.calls.map(([, options]) => options.cropDtype)).toEqual(['uint8']);
    start.mockRestore();
    expect(gpu.length).toBe(6);
    gpu.forEach((loss, i) => expect(Math.abs(loss - wasm[i]!) / wasm[i]!, `step ${i + 1}`).toBeLessThan(1e-3));
    expect(await losses('queue-pieces', 'webgpu', 2)).toHaveLength(2);
    await losses('queue-pieces', 'webgpu');
    const [one, pieces] = [
      await latest(await openStore(join(dir, 'queue-one'))),
      await latest(await openStore(join(dir, 'queue-pieces'))),
    ];
    expect([...one.values.keys()].filter((k) => k.startsWith('queue')).length).toBe(2);
    sameWeights(one, pieces);
    // The queue crosses backends with its checkpoint, both ways.
    const seventh = { ...queued, steps: 7 };
    for (const [name, backend] of [
      ['queue-one', 'wasm'],
      ['queue-wasm', 'webgpu'],
    ] as const) {
      const out = await openStore(join(dir, name));
      const s = await runOn(out, seventh, { backend, logEvery: 1, program: null, cropDtype: 'uint8' });
      expect([s.resumedFrom, s.step]).toEqual([expect.stringMatching(/step-000000006/), 7]);
      expect((await latest(out)).header.queueFilled).toBe(8);
    }
  }, 900_000);

  it('with the SwAV gradient program: a finite loss that moves, a checkpoint, and a resume on wasm', async () => {
    const out = await openStore(join(dir, 'engine'));
    const log: string[] = [];
    const s = await run(out, 3, 'webgpu', log, Infinity, null);
    expect(s.step).toBe(3);
    const losses = log.filter((l) => l.startsWith('step ')).map((l) => Number(/loss ([\d.]+)/.exec(l)![1]));
    expect(losses.length).toBe(2);
    for (const loss of losses) expect(loss).toBeGreaterThan(0);
    expect(losses[0]).not.toBe(0.75); // not the double's
    expect((await run(out, 4, 'wasm', [], Infinity, null)).step).toBe(4);
  }, 900_000); // lavapipe compiles every pipeline of the real program first: 60 s was too little in a loaded CI run
});
