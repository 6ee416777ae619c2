/**
 * The wildstream command line: the one place that wires the stages together.
 *
 *   ingest (URL lists) -> shards -> augment (multi-crop stream) -> train -> checkpoints
 *   checkpoints -> export (tfjs graph model) -> embed / eval knn;  checkpoints -> plot
 *
 * Exit codes: 0 ok, 1 a broken run (one-line reason), 2 bad usage (unknown option, bad value),
 * 128 + signal number when a run stopped on SIGINT/SIGTERM after saving its state.
 */
import { Command, CommanderError, Option } from 'commander';
import { intArg, storeOptions, withStoreOptions } from './cli-options.js';
import { writeFile } from 'node:fs/promises';
import { parseCrops, SWAV_CROPS } from './augment/config.js';
import { renderPreview } from './augment/preview.js';
import { ConfigError, InterruptedError, oneLine } from './errors.js';
import { runIngest } from './ingest/job.js';
import { progressReporter } from './ingest/progress.js';
import { inspectDataset } from './shards/dataset.js';
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

function ingestCommand(): Command {
  return withStoreOptions(
    new Command('ingest')
      .description('download the images of URL lists into Arrow shards (resumable: rerun to continue)')
      .argument('<url-list...>', 'URL lists (.txt .csv .tsv .jsonl .parquet, .gz of text ones) or directories')
      .requiredOption('--out <store>', 'output dataset: a path, file:///abs/path or s3://bucket/prefix')
      .option('--url-col <name>', 'column holding the URL', 'url')
      .option('--caption-col <name>', 'column holding the caption', 'caption')
      .option('--concurrency <n>', 'downloads in flight', intArg(1, 4096), 64)
      .option('--unit-size <n>', 'URLs per unit (one shard each)', intArg(1, 10_000_000), 10_000)
      .option('--max-side <n>', 'resize so the longest side is at most N (no upscaling)', intArg(16, 16384), 512)
      .option('--min-side <n>', 'resize so the shortest side is N (no upscaling); overrides --max-side', intArg(16, 16384))
      .option('--min-image-size <n>', 'drop images whose shorter side is below N', intArg(1, 16384), 64)
      .option('--max-aspect-ratio <x>', 'drop images with long/short side above X', Number, 4)
      .addOption(new Option('--format <fmt>', 'output encoding').choices(['jpeg', 'webp']).default('jpeg'))
      .option('--quality <q>', 'encoder quality', intArg(1, 100), 90)
      .option('--dedupe-radius <bits>', 'pHash Hamming radius for near duplicates (0: off)', intArg(0, 16), 8)
      .option('--timeout <seconds>', 'deadline for one download attempt', intArg(1, 3600), 60)
      .option('--retries <n>', 'retries on network errors, 408, 429, 5xx', intArg(0, 10), 2)
      .option('--max-bytes <n>', 'largest accepted download', intArg(1), 32 * 1024 * 1024)
      .option('--connections-per-origin <n>', 'parallel connections to one origin', intArg(1, 1024), 8)
      .option('--user-agent-contact <text>', 'contact (URL or e-mail) added to the User-Agent')
      .option('--append', 'add a different list to an existing dataset')
      .option('--allow-private-network', 'allow loopback, private and link-local addresses (tests, intranets)')
      .option('--allow-address <cidr...>', 'allow just these non-public addresses or ranges (e.g. 127.0.0.1 10.1.0.0/16)'),
  ).action(async (lists: string[], opts) => {
    if (!(opts.maxAspectRatio >= 1)) throw new ConfigError(`--max-aspect-ratio must be a number >= 1`);
    const reporter = progressReporter();
    const summary = await runIngest({
      lists,
      out: opts.out,
      store: storeOptions(opts),
      list: { urlCol: opts.urlCol, captionCol: opts.captionCol },
      decode: {
        maxSide: opts.maxSide,
        minSide: opts.minSide,
        minImageSize: opts.minImageSize,
        maxAspectRatio: opts.maxAspectRatio,
        format: opts.format,
        quality: opts.quality,
      },
      fetch: {
        totalTimeoutMs: opts.timeout * 1000,
        retries: opts.retries,
        maxBytes: opts.maxBytes,
        connectionsPerOrigin: opts.connectionsPerOrigin,
        allowPrivateNetwork: Boolean(opts.allowPrivateNetwork),
        allowAddresses: opts.allowAddress ?? [],
        userAgent: `wildstream/0.1 (+image dataset downloader${opts.userAgentContact ? `; ${opts.userAgentContact}` : ''})`,
      },
      concurrency: opts.concurrency,
      unitSize: opts.unitSize,
      dedupeRadius: opts.dedupeRadius,
      append: Boolean(opts.append),
      onProgress: (p) => reporter.update(p),
    }).finally(() => reporter.stop());
    process.stdout.write(`${JSON.stringify({ event: 'ingest_done', ...summary })}\n`);
  });
}

function augmentCommand(): Command {
  const preview = withStoreOptions(
    new Command('preview')
      .description("render one record's multi-crop views (de-normalised) next to the original as a PNG")
      .argument('<store>', 'dataset location')
      .requiredOption('--out <file>', 'PNG file to write')
      .option('--seed <n>', 'stream and augmentation seed', intArg(0, 2 ** 32 - 1), 0)
      .option('--epoch <n>', 'epoch', intArg(0), 0)
      .option('--record <n>', 'which record of the epoch', intArg(0), 0)
      .option('--crops <spec>', 'crop groups', SWAV_CROPS),
  ).action(async (url: string, opts) => {
    const store = await openStore(url, storeOptions(opts));
    const { png, key } = await renderPreview(store, { seed: opts.seed, epoch: opts.epoch, record: opts.record, augment: { crops: parseCrops(opts.crops) } });
    await writeFile(opts.out, png);
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
  program.addCommand(runCommand());
  program.addCommand(ingestCommand());
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
    if (err instanceof InterruptedError || (err as { exitCode?: unknown }).exitCode) return (err as { exitCode: number }).exitCode;
    return err instanceof ConfigError ? 2 : 1;
  }
}

