/**
 * WebGPU kernel benchmark: opens the device as `train` does (src/train/webgpu/device.ts: f16, subgroups and
 * subgroup matrices where offered), prints what it got, then times the engine's kernels on RegNet shapes
 * (bench/webgpu-kernel-cases.ts) and prints ms per run and achieved TFLOP/s (GB/s of compulsory traffic too,
 * the rate that bounds BatchNorm and the grouped convolutions).
 *
 * How a kernel is timed: its dispatches are recorded once (GpuRunner.record) `--per-submit` times into one
 * command buffer, as the engine records a step; after a warm-up submission the recording is submitted N times
 * between two `onSubmittedWorkDone` waits, N chosen so the timed span lasts about `--target-ms`. The figure is
 * wall time over N x per-submit runs, so it includes the GPU's gaps between dispatches but not compilation.
 *
 *   npx tsx bench/webgpu-kernels.ts [--models regnety_200mf,regnety_400mf] [--batch 256,64] [--size 224]
 *        [--precisions f32,f16] [--only conv] [--target-ms 250] [--iters N] [--per-submit 8]
 *        [--gemm 4096] [--json out.jsonl] [--budget-s S] [--quick]
 *
 * `--budget-s`: start no kernel after S seconds (the rest is listed as not run), so that a lent GPU's short
 * run always reaches the next part. The square GEMM is timed once per precision, with the first model and batch.
 *
 * GEMM tiles: openDevice self-checks the subgroup-matrix GEMM where the device offers subgroup matrices
 * (src/train/webgpu/gemm-select.ts). The GEMM and convolution rows are timed on the tiled core, and again on
 * subgroup matrices (`[sgm ...]` rows) for the shapes the chosen config fits; without a choice the GEMM rows say
 * why (`not offered` on lavapipe).
 *
 * `--quick` (lavapipe, CI machines): one model at batch 2 and 32 px, GEMM 128, a few runs: it checks that every
 * kernel compiles and runs, in seconds; its figures say nothing about a GPU. f16 rows run only where the device
 * granted `shader-f16`.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { describeDevice, ENGINE_FEATURES, openDevice, type GpuContext } from '../src/train/webgpu/device.js';
import { WebGpuUnavailableError } from '../src/train/webgpu/errors.js';
import { matrixGemmChoice, useMatrixGemm, type MatrixGemmChoice } from '../src/train/webgpu/kernels/gemm.js';
import { describeMatrixConfig } from '../src/train/webgpu/kernels/matrix-gemm.js';
import { GpuRunner, type Dtype, type Recording } from '../src/train/webgpu/runner.js';
import { kernelCases, type KernelCase } from './webgpu-kernel-cases.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string' },
    batch: { type: 'string' },
    size: { type: 'string' },
    precisions: { type: 'string', default: 'f32,f16' },
    only: { type: 'string' },
    'target-ms': { type: 'string' },
    iters: { type: 'string' },
    'per-submit': { type: 'string' },
    gemm: { type: 'string' },
    crops: { type: 'string', default: '8' },
    json: { type: 'string' },
    'budget-s': { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
});

const quick = values.quick!;
const opts = {
  models: (values.models ?? (quick ? 'regnety_200mf' : 'regnety_200mf,regnety_400mf')).split(','),
  batches: (values.batch ?? (quick ? '2' : '256,64')).split(',').map(Number),
  size: Number(values.size ?? (quick ? 32 : 224)),
  precisions: values.precisions!.split(',') as Dtype[],
  only: values.only?.split(','),
  targetMs: Number(values['target-ms'] ?? (quick ? 5 : 250)),
  iters: values.iters ? Number(values.iters) : undefined,
  perSubmit: Number(values['per-submit'] ?? (quick ? 1 : 8)),
  gemmSide: Number(values.gemm ?? (quick ? 128 : 4096)),
  crops: Number(values.crops),
  budgetMs: values['budget-s'] ? Number(values['budget-s']) * 1000 : Infinity,
};

interface Timing {
  /** Milliseconds per run of the kernel's dispatches. */
  ms: number;
  /** Runs timed (submissions x per-submit). */
  runs: number;
}

/** Wall time per run: N submissions between two queue drains, N from one calibration submission. */
async function time(runner: GpuRunner, rec: Recording, perSubmit: number): Promise<Timing> {
  rec.submit(); // warm-up: first use of the pipelines and bind groups
  await runner.sync();
  let t0 = performance.now();
  rec.submit();
  await runner.sync();
  const one = performance.now() - t0;
  const n = opts.iters ?? Math.max(2, Math.min(2000, Math.ceil(opts.targetMs / Math.max(one, 1e-3))));
  t0 = performance.now();
  for (let i = 0; i < n; i++) rec.submit();
  await runner.sync();
  return { ms: (performance.now() - t0) / (n * perSubmit), runs: n * perSubmit };
}

function selected(c: KernelCase): boolean {
  return !opts.only || opts.only.some((s) => c.name.includes(s) || c.family === s);
}

const firstLine = (err: unknown) => (err instanceof Error ? err.message : String(err)).split('\n')[0];
const fmt = (v: number, digits: number, width: number) => v.toFixed(digits).padStart(width);

/** Which GEMM core a row times: the tiled one, or subgroup matrices with the configs chosen at open. */
type Tiles = { kind: 'tiled' } | { kind: 'matrix'; choice: MatrixGemmChoice; label: string };

async function runCase(runner: GpuRunner, c: KernelCase, row: Record<string, unknown>, tiles: Tiles): Promise<void> {
  const name = tiles.kind === 'matrix' ? `${c.name} [${tiles.label}]` : c.name;
  const head = `${name.padEnd(44)} ${String(row.model).padEnd(14)} ${String(row.batch).padStart(4)} ${row.dtype}`;
  // The kernels read the process's GEMM choice when they are generated, i.e. while the case builds.
  useMatrixGemm(tiles.kind === 'matrix' ? tiles.choice : {});
  const built = await c.build(runner).finally(() => useMatrixGemm({}));
  const { dispatches, tensors } = built;
  try {
    // A shape the config does not fit (a grouped convolution's few channels) is tiled either way: no second row.
    if (tiles.kind === 'matrix' && !dispatches.some((d) => d.kernel.key.includes(':sgm-'))) return;
    const rec = await runner.record(Array.from({ length: opts.perSubmit }, () => dispatches).flat());
    const t = await time(runner, rec, opts.perSubmit);
    const tflops = c.flops / (t.ms * 1e9);
    const gbps = c.bytes / (t.ms * 1e6);
    console.log(
      `${head} ${fmt(t.ms, 3, 9)} ms ${c.flops ? fmt(tflops, 3, 8) : '       -'} TFLOP/s ${fmt(gbps, 1, 8)} GB/s  (${t.runs} runs)`,
    );
    if (values.json)
      appendFileSync(
        values.json,
        `${JSON.stringify({ ...row, kernel: c.name, tiles: tiles.kind === 'matrix' ? tiles.label : 'tiled', ...t, tflops, gbps, flops: c.flops, bytes: c.bytes })}\n`,
      );
  } finally {
    runner.release(...tensors);
    runner.trim();
  }
}

/**
 * The device with every engine feature the adapter offers; if the driver refuses that device, again with one
 * feature fewer at a time (subgroup matrices first), so that a one-shot run on a lent GPU still times something.
 */
async function open(): Promise<GpuContext> {
  for (let n: number = ENGINE_FEATURES.length; ; n--) {
    try {
      return await openDevice({ features: ENGINE_FEATURES.slice(0, n) });
    } catch (err) {
      if (!(err instanceof WebGpuUnavailableError && err.reason === 'no-device') || n === 0) throw err;
      console.log(`device refused with ${ENGINE_FEATURES.slice(0, n).join(', ')}: ${firstLine(err)}`);
    }
  }
}

async function main(): Promise<void> {
  const ctx = await open();
  console.log(`device: ${describeDevice(ctx.info)}`);
  console.log(`device info: ${JSON.stringify(ctx.info)}`);
  // The tiled rows come first and stay tiled; the subgroup-matrix rows set the choice for their own build.
  const choice = matrixGemmChoice();
  useMatrixGemm({});
  const chosen = Object.values(choice);
  const matrixTiles: Tiles | null = chosen.length
    ? {
        kind: 'matrix',
        choice,
        label: chosen.map((c) => describeMatrixConfig(c).replace('subgroup-matrix', 'sgm')).join(', '),
      }
    : null;
  const notOffered = ctx.info.gemm?.summary.replace(/^gemm tiles: /, '') ?? 'no self-check';
  if (values.json) writeFileSync(values.json, `${JSON.stringify({ device: ctx.info })}\n`);
  const runner = new GpuRunner(ctx);
  const precisions = opts.precisions.filter((p) => {
    if (p === 'f16' && !ctx.info.features['shader-f16']) {
      console.log('f16: shader-f16 was not granted on this device; f16 rows skipped');
      return false;
    }
    return true;
  });
  console.log(
    `kernel bench: size ${opts.size}, ${opts.perSubmit} runs per submission, ~${opts.targetMs} ms per timing; ms per run`,
  );
  let [failed, skipped] = [0, 0];
  const started = performance.now();
  // Batch outermost, precision innermost: a budget cut short leaves whole batches out, never one precision.
  for (const [bi, batch] of opts.batches.entries())
    for (const [mi, model] of opts.models.entries())
      for (const dtype of precisions) {
        const gemmSide = bi === 0 && mi === 0 ? opts.gemmSide : 0;
        for (const c of kernelCases({ model, batch, size: opts.size, dtype, gemmSide, crops: opts.crops })) {
          if (!selected(c)) continue;
          if (performance.now() - started > opts.budgetMs) {
            skipped++;
            continue;
          }
          // One refused or failing kernel is reported and the others still run.
          const row = { model, batch, size: opts.size, dtype };
          const variants: Tiles[] = [{ kind: 'tiled' }];
          if (matrixTiles && c.family !== 'bn') variants.push(matrixTiles);
          for (const tiles of variants)
            await runCase(runner, c, row, tiles).catch((err: unknown) => {
              failed++;
              const label = tiles.kind === 'matrix' ? ` [${tiles.label}]` : '';
              console.log(
                `${(c.name + label).padEnd(44)} ${model.padEnd(14)} ${batch} ${dtype} FAILED: ${firstLine(err)}`,
              );
            });
          if (!matrixTiles && c.family === 'gemm')
            console.log(
              `${`${c.name} [subgroup-matrix]`.padEnd(44)} ${model.padEnd(14)} ${String(batch).padStart(4)} ${dtype} not offered (${notOffered})`,
            );
        }
      }
  if (skipped) console.log(`budget of ${opts.budgetMs / 1000} s spent: ${skipped} kernel timings not run`);
  ctx.destroy();
  if (failed) {
    console.log(`${failed} kernel(s) failed`);
    process.exitCode = 1;
  }
}

await main();
