/** `wildstream worker --queue <redis-url>`: processes ingest units from a BullMQ queue until stopped. */
import { InterruptedError } from '../errors.js';
import { WORKER_OPTIONS } from '../ingest/options.js';
import { runWorker } from '../ingest/queue.js';
import { defineCommand } from './define.js';

export const workerCommand = () =>
  defineCommand({
    name: 'worker',
    description: 'process ingest units from a BullMQ queue until stopped (SIGINT/SIGTERM); run any number, anywhere',
    options: WORKER_OPTIONS,
    run: async (_, o) => {
      const stop = stopOnSignals();
      try {
        await runWorker(o.queue, {
          concurrency: o.concurrency,
          lockMs: o.lockMs,
          signal: stop.signal,
          onEvent: (e) => process.stdout.write(`${JSON.stringify(e)}\n`),
        });
      } finally {
        stop.dispose();
      }
      const name = stop.signal.reason === 'SIGTERM' ? 'SIGTERM' : 'SIGINT';
      throw new InterruptedError(
        `stopped by ${name}: the units in progress went back to the queue uncommitted, for any worker to take`,
        name === 'SIGTERM' ? 143 : 130,
      );
    },
  });

/**
 * SIGINT/SIGTERM stop the worker as they stop `ingest` (jobs/ingest.ts): the first aborts the units in
 * progress (runWorker puts them back in the queue) and ends the worker; a second exits at once (128 + the
 * signal's number), and so does the first if downloads in flight still hold the process 5 s later.
 */
function stopOnSignals(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals) => {
    const code = name === 'SIGTERM' ? 143 : 130;
    if (controller.signal.aborted) process.exit(code);
    controller.abort(name);
    setTimeout(() => process.exit(code), 5000).unref();
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  return { signal: controller.signal, dispose: () => process.off('SIGINT', onSignal).off('SIGTERM', onSignal) };
}
