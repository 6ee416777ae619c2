/**
 * The wildstream command line: the one place that wires the stages together.
 *
 *   ingest  -> shards <- augment -> train
 *
 * Exit codes: 0 ok, 1 a broken run (one-line reason), 2 bad usage (unknown option, bad value).
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ConfigError, oneLine } from './errors.js';
import { inspectDataset } from './shards/dataset.js';
import { openStore, type StoreOptions } from './shards/store.js';

/** Adds the options every command that opens a store shares. */
export function withStoreOptions(cmd: Command): Command {
  return cmd
    .option('--s3-endpoint <url>', 'S3-compatible endpoint (default: AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL)')
    .option('--s3-path-style', 'path-style S3 addressing (default: on when an endpoint is set)')
    .option('--s3-region <region>', 'S3 region (default: AWS_REGION or us-east-1)');
}

export function storeOptions(opts: { s3Endpoint?: string; s3PathStyle?: boolean; s3Region?: string }): StoreOptions {
  return { s3Endpoint: opts.s3Endpoint, s3PathStyle: opts.s3PathStyle, s3Region: opts.s3Region };
}

/** A commander argument parser for integers in [min, max]; bad values are usage errors (exit 2). */
export function intArg(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}

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

export function buildProgram(): Command {
  const program = new Command('wildstream')
    .description('Label-free vision pretraining on uncurated web images (SwAV + RegNet on TensorFlow.js)')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  program.addCommand(inspectCommand());
  for (const cmd of program.commands) cmd.exitOverride();
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
    return err instanceof ConfigError ? 2 : 1;
  }
}

export { Option };
