/**
 * The wildstream command line: the one place that wires the stages together.
 *
 *   ingest (URL lists) -> shards -> augment (multi-crop stream) -> train -> checkpoints
 *   checkpoints -> export (tfjs graph model) -> embed / eval knn;  checkpoints -> plot
 *
 * Exit codes: 0 ok, 1 a broken run (one-line reason), 2 bad usage (unknown option, bad value),
 * 128 + signal number when a run stopped on SIGINT/SIGTERM after saving its state.
 */
import { Command, CommanderError } from 'commander';
import { intArg, storeOptions, withStoreOptions } from './cli-options.js';
import { parseCrops, SWAV_CROPS } from './augment/config.js';
import { renderPreview } from './augment/preview.js';
import { ConfigError, ExitCodeError, oneLine } from './errors.js';
import { ingestCommand, workerCommand } from './ingest/command.js';
import { crawlCommand } from './crawl/command.js';
import { inspectDataset } from './shards/dataset.js';
import { putFile } from './shards/output.js';
import { openStore } from './shards/store.js';
import { embedCommand, evalCommand } from './eval/commands.js';
import { runCommand } from './pipeline/command.js';
import { exportCommand, plotCommand, trainCommand } from './train/commands.js';

function inspectCommand(): Command {
  return withStoreOptions(
    new Command('inspect')
      .description('summarise a dataset: committed shards, records, bytes, failures and duplicates')
      .argument('<store>', 'dataset location: a path, file:///abs/path or s3://bucket/prefix')
      .option('--json', 'print one JSON object'),
  ).action(async (url: string, opts) => {
    const summary = await inspectDataset(await openStore(url, storeOptions(opts)));
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(summary)}\n`);
      return;
    }
    const lines = [
      `shards      ${summary.shards}`,
      `records     ${summary.records}`,
      `bytes       ${summary.bytes}`,
      `duplicates  exact ${summary.duplicates.exact}, near ${summary.duplicates.near}`,
      `failed      ${Object.entries(summary.failed).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  });
}

function augmentCommand(): Command {
  const preview = withStoreOptions(
    new Command('preview')
      .description("render one record's multi-crop views (de-normalised) next to the original as a PNG")
      .argument('<store>', 'dataset location')
      .requiredOption('--out <file>', 'PNG file to write: a path, file:///abs/path or s3://bucket/key')
      .option('--seed <n>', 'stream and augmentation seed', intArg(0, 2 ** 32 - 1), 0)
      .option('--epoch <n>', 'epoch', intArg(0), 0)
      .option('--record <n>', 'which record of the epoch', intArg(0), 0)
      .option('--crops <spec>', 'crop groups', SWAV_CROPS),
  ).action(async (url: string, opts) => {
    const store = await openStore(url, storeOptions(opts));
    const { png, key } = await renderPreview(store, { seed: opts.seed, epoch: opts.epoch, record: opts.record, augment: { crops: parseCrops(opts.crops) } });
    await putFile(opts.out, png, storeOptions(opts));
    process.stdout.write(`${JSON.stringify({ event: 'preview', key, out: opts.out })}\n`);
  });
  return new Command('augment').description('look at the multi-crop augmentation').addCommand(preview);
}

export function buildProgram(): Command {
  const program = new Command('wildstream')
    .description('Label-free vision pretraining on uncurated web images (SwAV + RegNet on TensorFlow.js)')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  program.addCommand(runCommand(main));
  program.addCommand(ingestCommand());
  program.addCommand(crawlCommand());
  program.addCommand(workerCommand());
  program.addCommand(inspectCommand());
  program.addCommand(augmentCommand());
  program.addCommand(trainCommand());
  program.addCommand(exportCommand());
  program.addCommand(plotCommand());
  program.addCommand(embedCommand());
  program.addCommand(evalCommand());
  const exitOverride = (cmd: Command): void => {
    cmd.exitOverride();
    cmd.commands.forEach(exitOverride);
  };
  program.commands.forEach(exitOverride);
  return program;
}

/** Runs the CLI and returns the exit code instead of exiting, so tests can call it in-process. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram().parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return ['commander.helpDisplayed', 'commander.help', 'commander.version'].includes(err.code) ? 0 : 2;
    }
    process.stderr.write(`wildstream: ${oneLine(err)}\n`);
    if (err instanceof ExitCodeError) return err.exitCode;
    return err instanceof ConfigError ? 2 : 1;
  }
}

