/** `wildstream export <ckpt-store> --out <dir>`: a checkpoint's backbone as a TensorFlow.js graph model. */
import { EXPORT_RUN_OPTIONS, exportJob } from '../jobs/outputs.js';
import { defineCommand } from './define.js';

export const exportCommand = () =>
  defineCommand({
    name: 'export',
    description: "write a checkpoint's backbone as a TensorFlow.js graph model (model.json + weights-<hash>.bin)",
    args: [['<ckpt-store>', 'checkpoint store of a training run (its --out)']],
    options: EXPORT_RUN_OPTIONS,
    run: ([ckpt], o) => exportJob(ckpt, o),
  });
