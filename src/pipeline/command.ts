/** `wildstream run <pipeline.yaml> [--set key.path=value]...` */
import { Command } from 'commander';
import { runPipeline, type CommandRunner } from './run.js';

/** The `run` command; `cli` runs each stage's command line (the CLI passes its own `main`). */
export function runCommand(cli: CommandRunner): Command {
  return new Command('run')
    .description('run a pipeline file: ingest, train, export, report (rerun to continue after an interruption)')
    .argument('<pipeline>', 'pipeline YAML file (see pipelines/demo.yaml)')
    .option('--set <key=value...>', 'override a setting, e.g. --set train.steps=100', (v: string, all: string[] = []) => [...all, v])
    .action(async (file: string, opts: { set?: string[] }) => {
      await runPipeline(file, opts.set ?? [], cli);
    });
}
