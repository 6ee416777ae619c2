/**
 * The wildstream command line: one file per command under cli/, each parsing its declared options and calling
 * its stage's typed function.
 *
 *   ingest (URL lists) / crawl -> shards -> augment (multi-crop stream) -> train -> checkpoints
 *   checkpoints -> export (tfjs graph model) -> embed / eval knn;  checkpoints -> plot;  run: a pipeline file
 *
 * Exit codes: 0 ok, 1 a broken run (one-line reason), 2 bad usage (unknown option, bad value), 3 an ingest or
 * crawl whose job holds no image, 128 + signal number when a run stopped on a signal after saving its state.
 */
import { Command, CommanderError } from 'commander';
import { augmentCommand } from './cli/augment.js';
import { crawlCommand } from './cli/crawl.js';
import { embedCommand } from './cli/embed.js';
import { evalCommand } from './cli/eval.js';
import { exportCommand } from './cli/export.js';
import { ingestCommand } from './cli/ingest.js';
import { inspectCommand } from './cli/inspect.js';
import { plotCommand } from './cli/plot.js';
import { runCommand } from './cli/run.js';
import { trainCommand } from './cli/train.js';
import { workerCommand } from './cli/worker.js';
import { ConfigError, ExitCodeError, oneLine } from './errors.js';

export function buildProgram(): Command {
  const program = new Command('wildstream')
    .description('Label-free vision pretraining on uncurated web images (SwAV + RegNet on TensorFlow.js)')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  for (const cmd of [
    runCommand(),
    ingestCommand(),
    crawlCommand(),
    workerCommand(),
    inspectCommand(),
    augmentCommand(),
    trainCommand(),
    exportCommand(),
    plotCommand(),
    embedCommand(),
    evalCommand(),
  ])
    program.addCommand(cmd);
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
      // Help asked for (--help, `help`, --version) is a success; help shown for a missing command or
      // subcommand (commander's exitCode 1) is bad usage, which exits 2 as any other.
      return err.exitCode === 0 ? 0 : 2;
    }
    process.stderr.write(`wildstream: ${oneLine(err)}\n`);
    if (err instanceof ExitCodeError) return err.exitCode;
    return err instanceof ConfigError ? 2 : 1;
  }
}
