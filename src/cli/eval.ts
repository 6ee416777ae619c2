/** `wildstream eval knn --model <dir> --train <dir> --test <dir>`: k-NN top-1 of a backbone (labels only here). */
import { Command } from 'commander';
import { KNN_OPTIONS } from '../eval/options.js';
import { knnJob } from '../jobs/outputs.js';
import { FLAG_NAMES } from '../options/declare.js';
import { defineCommand } from './define.js';

export function evalCommand(): Command {
  const knn = defineCommand({
    name: 'knn',
    description: 'k-NN top-1 of a backbone on labelled folders (train/<class>/*.jpg, test/<class>/*.jpg)',
    options: KNN_OPTIONS,
    run: (_, o) => knnJob(o, FLAG_NAMES),
  });
  return new Command('eval').description('evaluate a backbone').addCommand(knn);
}
