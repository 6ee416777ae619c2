/** `wildstream train --data <store> --out <store>`: SwAV pretraining (resumes from the newest checkpoint in --out). */
import { TRAIN_RUN_OPTIONS, trainJob } from '../jobs/training.js';
import { defineCommand } from './define.js';

export const trainCommand = () =>
  defineCommand({
    name: 'train',
    description: 'pretrain a RegNet with SwAV on a shard dataset (resumes from the newest checkpoint in --out)',
    options: TRAIN_RUN_OPTIONS,
    run: (_, o) => trainJob(o),
  });
