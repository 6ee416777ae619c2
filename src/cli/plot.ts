/** `wildstream plot <ckpt-store> --out <png>`: a run's loss and learning-rate curves. */
import { PLOT_RUN_OPTIONS, plotJob } from '../jobs/outputs.js';
import { defineCommand } from './define.js';

export const plotCommand = () =>
  defineCommand({
    name: 'plot',
    description: "draw a run's loss and learning-rate curves as a PNG",
    args: [['<ckpt-store>', 'checkpoint store of a training run']],
    options: PLOT_RUN_OPTIONS,
    run: ([ckpt], o) => plotJob(ckpt, o),
  });
