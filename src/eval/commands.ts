/** `wildstream embed` and `wildstream eval knn`: use an exported backbone (labels only for evaluation). */
import { Command, Option } from 'commander';
import { intArg, storeOptions, withStoreOptions } from '../cli-options.js';
import { openStore } from '../shards/store.js';
import { BACKENDS, startBackend, type BackendName } from '../train/backend.js';
import { loadBackbone } from '../train/export.js';
import { embed, writeEmbeddings } from './embed.js';
import { knnAccuracy } from './knn.js';

const common = (cmd: Command) =>
  withStoreOptions(cmd)
    .requiredOption('--model <dir>', 'exported backbone (from `wildstream export`)')
    .option('--size <n>', 'input side (default: the training crop size)', intArg(8, 4096))
    .option('--batch <n>', 'images per forward pass', intArg(1, 4096), 32)
    .addOption(new Option('--backend <name>', 'tfjs backend').choices([...BACKENDS]).default('auto'));

export function embedCommand(): Command {
  return common(
    new Command('embed')
      .description('compute backbone embeddings for a dataset store or a folder of images (Arrow IPC file out)')
      .argument('<input>', 'dataset store, or a local folder of images')
      .requiredOption('--out <file>', 'Arrow IPC file to write (key, embedding): a path, file:///abs/path or s3://bucket/key'),
  ).action(async (input: string, opts) => {
    await startBackend(opts.backend as BackendName);
    const backbone = await loadBackbone(await openStore(opts.model, storeOptions(opts)));
    const result = await embed(backbone, input, { size: opts.size, batch: opts.batch, store: storeOptions(opts) });
    await writeEmbeddings(opts.out, result, storeOptions(opts));
    process.stdout.write(`${JSON.stringify({ event: 'embed', out: opts.out, images: result.keys.length, failed: result.failed, dim: backbone.metadata.featureDim })}\n`);
  });
}

export function evalCommand(): Command {
  const knn = common(
    new Command('knn')
      .description('k-NN top-1 of a backbone on labelled folders (train/<class>/*.jpg, test/<class>/*.jpg)')
      .requiredOption('--train <dir>', 'folder of class folders to vote with')
      .requiredOption('--test <dir>', 'folder of class folders to classify')
      .option('--k <n>', 'neighbours', intArg(1, 10000), 20),
  ).action(async (opts) => {
    await startBackend(opts.backend as BackendName);
    const backbone = await loadBackbone(await openStore(opts.model, storeOptions(opts)));
    const [train, test] = [await embed(backbone, opts.train, opts), await embed(backbone, opts.test, opts)];
    const result = knnAccuracy(train, test, opts.k);
    process.stdout.write(`${JSON.stringify({ event: 'knn', model: backbone.metadata.model, step: backbone.metadata.step, ...result, failed: train.failed + test.failed })}\n`);
  });
  return new Command('eval').description('evaluate a backbone').addCommand(knn);
}
