/**
 * Augment benchmark: SwAV multi-crop samples/s (one sample = one image -> 2x224 + 6x96 crops: normalised
 * floats, or with `--dtype uint8` the bytes before normalisation that a GPU trainer uploads)
 *   - one worker: decode (src/augment/decode.ts, as the workers do) + crops in this thread, one image at a time;
 *   - the pool: MultiCropLoader over a local dataset of the same images, all cores;
 *   - torchvision + PIL running SwAV's own transform on the same JPEGs, when python3-torchvision is installed.
 * Per core = samples / CPU-seconds (this process, all threads; the python child's own CPU time for torchvision).
 * Goal (issue 4): >= 200 samples/s per core and >= 2x torchvision per core.
 *
 *   npx tsx bench/augment.ts [--images 400] [--batch 32] [--epochs 6] [--dtype float32|uint8]
 *
 * Both are reported cold and warm, because V8 takes a few thousand samples to settle: multiCrop is called
 * once a sample, so TurboFan optimises it late, and its inlined code deoptimises and recompiles as rare
 * branches and new object shapes turn up (`--trace-deopt`: 50-120 ms of recompiles per 400-sample epoch
 * through the 4th-8th epochs of a pool run, on V8's background threads, which the per-core figure counts).
 * A training run lasts millions of samples, so the warm figures are the ones to compare. The one worker
 * crops every image twice (with other draws) and reports each pass; the pool runs `--epochs` passes and
 * reports the rate after its first batch, after its first epoch and over the whole run.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { augmentConfig, cropList } from '../src/augment/config.js';
import { DecodeBuffer, decodeJpeg, decodeWithSharp } from '../src/augment/decode.js';
import { imageMemory } from '../src/augment/kernels.js';
import { MultiCropLoader } from '../src/augment/loader.js';
import { checkCropDtype } from '../src/crop-tensor.js';
import { multiCrop } from '../src/augment/multicrop.js';
import { photoJpeg, prng } from '../src/fixtures/images.js';
import { openStore } from '../src/shards/store.js';
import { writeDataset } from '../test/helpers/dataset.js';
import { clock, timed, type Elapsed } from './timed.js';

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '400' },
    batch: { type: 'string', default: '32' },
    epochs: { type: 'string', default: '6' },
    dtype: { type: 'string', default: 'float32' },
  },
});
const cropDtype = checkCropDtype(values.dtype);
const epochs = Number(values.epochs);
const count = Number(values.images);
const dir = await mkdtemp(join(tmpdir(), 'ws-bench-augment-'));

const rate = (n: number, t: { cpu: number; wall: number }) =>
  `${(n / t.cpu).toFixed(1)} samples/s per core (${(n / t.wall).toFixed(1)} wall)`;

try {
  // Images as ingest stores them: photo-like JPEGs, longest side 512 (q90).
  const rand = prng(1);
  const images = await Promise.all(
    Array.from({ length: count }, (_, i) => photoJpeg(i, { width: 512, height: 256 + Math.floor(rand() * 256) })),
  );
  const mb = images.reduce((n, b) => n + b.length, 0) / 1e6;
  console.log(
    `augment bench: ${count} JPEGs, 512 x 256-512 (${mb.toFixed(1)} MB); crops 2x224 + 6x96, ${cropDtype}; ${availableParallelism()} cores, ${cpus()[0]?.model}`,
  );
  const config = augmentConfig();

  // Wall time of each part too (one thread, so close to its CPU time): where a sample's time goes. Crops are
  // written into the same buffers each time, as a worker writes them into the batch's shared buffers, and
  // images are decoded straight into the kernels' input memory, as a worker decodes them.
  const pixels = new DecodeBuffer(imageMemory);
  const outputs = cropList(config).map(({ size }) =>
    cropDtype === 'uint8' ? new Uint8Array(size * size * 3) : new Float32Array(size * size * 3),
  );
  const onePass = async (epoch: number) => {
    const part = { decode: 0, crops: 0 };
    const t = await timed(async () => {
      for (let i = 0; i < count; i++) {
        const t0 = performance.now();
        const decoded = decodeJpeg(images[i]!, pixels) ?? (await decodeWithSharp(images[i]!));
        if ('error' in decoded) throw new Error(decoded.error);
        const t1 = performance.now();
        multiCrop(decoded.rgb, decoded.width, decoded.height, config, { seed: 0, epoch, record: i }, outputs);
        part.decode += t1 - t0;
        part.crops += performance.now() - t1;
      }
    });
    return {
      t,
      perSample: `decode ${(part.decode / count).toFixed(2)} ms, crops ${(part.crops / count).toFixed(2)} ms`,
    };
  };
  const cold = await onePass(0),
    one = await onePass(1);
  console.log(`one worker (this thread), cold: ${rate(count, cold.t)}; per sample: ${cold.perSample}`);
  console.log(`one worker (this thread), warm: ${rate(count, one.t)}; per sample: ${one.perSample}`);

  const store = await openStore(join(dir, 'ds'));
  await writeDataset(store, {
    units: 4,
    perUnit: Math.ceil(count / 4),
    batchRows: 64,
    image: (i) => images[i % count]!,
  });
  const total = 4 * Math.ceil(count / 4) * epochs;
  // Steady state starts at the first batch: thread start-up (each thread loads tsx, the decoders and the kernels)
  // is a one-off cost, reported separately as the time to the first batch.
  let samples = 0,
    first = 0,
    firstEpoch = 0;
  let steady: (() => Elapsed) | null = null;
  const later: { clock?: () => Elapsed } = {};
  const pool = await timed(async () => {
    for await (const batch of new MultiCropLoader(store, { batchSize: Number(values.batch), epochs, cropDtype })) {
      samples += batch.keys.length;
      batch.release(); // as the trainer does once a step has read the batch
      if (!steady) [steady, first] = [clock(), samples];
      if (!later.clock && batch.epoch >= 1) [later.clock, firstEpoch] = [clock(), samples];
    }
  });
  if (samples !== total) throw new Error(`pool produced ${samples} of ${total} samples`);
  const run = steady!();
  console.log(
    `pool (${availableParallelism()} threads, batches of ${values.batch}, ${epochs} epochs), after the first batch: ${rate(samples - first, run)}`,
  );
  if (later.clock) console.log(`pool after the first epoch (warm): ${rate(samples - firstEpoch, later.clock())}`);
  console.log(`pool, whole run: ${rate(samples, pool)}; first batch after ${(pool.wall - run.wall).toFixed(2)} s`);

  const jpegDir = join(dir, 'jpeg');
  await mkdir(jpegDir);
  await Promise.all(images.map((b, i) => writeFile(join(jpegDir, `${i}.jpg`), b)));
  // Debian's python3-torchvision lives under the system interpreter, which a pyenv `python3` may shadow.
  const python = process.env.PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
  const py = spawnSync(python, [new URL('./torchvision_swav.py', import.meta.url).pathname, jpegDir], {
    encoding: 'utf8',
  });
  if (py.status !== 0) {
    console.log(
      `torchvision: not run (${(py.stderr || py.error?.message || '').trim().split('\n').pop()}); apt-get install python3-torchvision`,
    );
  } else {
    const tv = JSON.parse(py.stdout.trim().split('\n').pop()!) as { samples: number; cpu: number; wall: number };
    console.log(`torchvision + PIL, SwAV transform, one process: ${rate(tv.samples, tv)}`);
    console.log(
      `one worker (warm) / torchvision per core: ${(count / one.t.cpu / (tv.samples / tv.cpu)).toFixed(2)}x   (goal >= 2x)`,
    );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
