/** `wildstream embed <input> --model <dir> --out <file>`: backbone embeddings of a dataset or a folder of images. */
import { EMBED_OPTIONS } from '../eval/options.js';
import { embedJob } from '../jobs/outputs.js';
import { FLAG_NAMES } from '../options/declare.js';
import { defineCommand } from './define.js';

export const embedCommand = () =>
  defineCommand({
    name: 'embed',
    description: 'compute backbone embeddings for a dataset store or a folder of images (Arrow IPC file out)',
    args: [['<input>', 'dataset store, or a local folder of images']],
    options: EMBED_OPTIONS,
    run: ([input], o) => embedJob(input, o, FLAG_NAMES),
  });
