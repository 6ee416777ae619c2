/** `wildstream worker --queue <redis-url>`: processes ingest units from a BullMQ queue until stopped. */
import { WORKER_OPTIONS } from '../ingest/options.js';
import { runWorker } from '../ingest/queue.js';
import { defineCommand } from './define.js';

export const workerCommand = () =>
  defineCommand({
    name: 'worker',
    description: 'process ingest units from a BullMQ queue until stopped (SIGINT/SIGTERM); run any number, anywhere',
    options: WORKER_OPTIONS,
    run: async (_, o) => {
      const controller = new AbortController();
      const stop = () => controller.abort();
      process.on('SIGINT', stop).on('SIGTERM', stop);
      try {
        await runWorker(o.queue, {
          concurrency: o.concurrency,
          lockMs: o.lockMs,
          signal: controller.signal,
          onEvent: (e) => process.stdout.write(`${JSON.stringify(e)}\n`),
        });
      } finally {
        process.off('SIGINT', stop).off('SIGTERM', stop);
      }
    },
  });
