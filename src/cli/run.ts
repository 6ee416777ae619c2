/** `wildstream run <pipeline.yaml> [--set key.path=value]...`: a pipeline file's stages in order. */
import { Command } from 'commander';
import { runPipeline } from '../pipeline/run.js';

export function runCommand(): Command {
  return new Command('run')
    .description('run a pipeline file: ingest, train, export, report (rerun to continue after an interruption)')
    .argument('<pipeline>', 'pipeline YAML file (see pipelines/demo.yaml)')
    .option(
      '--set <key=value...>',
      'override a setting, e.g. --set train.steps=100',
      (v: string, all: string[] = []) => [...all, v],
    )
    .action(async (file: string, opts: { set?: string[] }) => {
      await runPipeline(file, opts.set ?? []);
    });
}
