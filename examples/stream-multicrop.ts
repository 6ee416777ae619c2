/**
 * Multi-crop batches from a dataset in your own training loop: take a few, stop, and resume from the saved
 * cursor, checking that the resumed loader gives the very batch an uninterrupted one would have given next.
 *
 *   npx tsx examples/stream-multicrop.ts ./data/dataset [batches before the stop, default 2]
 *
 * The dataset is any store `wildstream ingest` or `crawl` wrote (a path, file:///abs/path or s3://bucket/prefix).
 * Prints one JSON line; exits 1 if the resumed batch differs, 2 if the count is not an integer >= 1.
 */
import {
  cropFloats,
  MultiCropLoader,
  openStore,
  type LoaderOptions,
  type MultiCropBatch,
  type StreamCursor,
} from 'wildstream';

const [location = './data/dataset', stopArg = '2'] = process.argv.slice(2);
const stopAfter = Number(stopArg);
// The stream has no end (epoch after epoch): a count the loop never reaches (0, -1, "abc") would never stop it.
if (!(Number.isSafeInteger(stopAfter) && stopAfter >= 1)) {
  console.error(`usage: npx tsx examples/stream-multicrop.ts <dataset> [batches >= 1, default 2]; got ${stopArg}`);
  process.exit(2);
}
const store = await openStore(location);
const options: LoaderOptions = {
  batchSize: 4,
  seed: 7,
  threads: 2,
  // Crop groups as COUNTxSIZE@MIN-MAX area scale: two global views and four local ones.
  augment: { crops: '2x64@0.3-1,4x32@0.05-0.3' },
};

/** Stands in for a training step: reads every crop tensor of the batch (NHWC float32, normalised). */
function step(batch: MultiCropBatch): number[] {
  return batch.crops.map((crop) => {
    const data = cropFloats(crop); // the floats themselves here; a uint8 loader's bytes would be normalised
    return data.reduce((sum, v) => sum + v, 0) / data.length;
  });
}

// 1. The loop: one step per batch; the cursor after each batch goes wherever you keep your checkpoint.
let checkpoint = '';
let taken = 0;
for await (const batch of new MultiCropLoader(store, options)) {
  step(batch);
  checkpoint = JSON.stringify(batch.cursor); // a cursor is plain JSON
  batch.release(); // its buffers go back to the loader for a later batch
  if (++taken === stopAfter) break; // leaving the loop stops the loader's worker threads
}

// 2. Later, perhaps in another process: a loader started from the cursor continues with the next batch.
const cursor = JSON.parse(checkpoint) as StreamCursor;
const resumed = await batchAt(new MultiCropLoader(store, { ...options, cursor }), 0);

// 3. The check: the batch an uninterrupted loader gives after `stopAfter` batches is the same one.
const expected = await batchAt(new MultiCropLoader(store, options), stopAfter);
const same =
  resumed.keys.join() === expected.keys.join() &&
  resumed.crops.every(
    (data, i) => data.length === expected.crops[i]!.length && data.every((v, j) => v === expected.crops[i]![j]),
  );

console.log(JSON.stringify({ stoppedAfter: taken, cursor, next: resumed.keys, shapes: resumed.shapes, same }));
if (!same) process.exitCode = 1;

/** The keys and a copy of the crops of the loader's batch number `index` (0-based); the loader stops after it. */
async function batchAt(
  loader: MultiCropLoader,
  index: number,
): Promise<{ keys: string[]; crops: Float32Array[]; shapes: number[][] }> {
  let i = 0;
  for await (const batch of loader) {
    if (i++ < index) {
      batch.release();
      continue;
    }
    const shapes = batch.crops.map(({ size }) => [batch.keys.length, size, size, 3]);
    const copy = { keys: [...batch.keys], crops: batch.crops.map((crop) => cropFloats(crop).slice()), shapes };
    batch.release();
    return copy;
  }
  throw new Error(`the dataset gave fewer than ${index + 1} batches`);
}
