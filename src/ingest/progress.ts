/**
 * Progress for ingest: a bar on a TTY (units, images/s, kept, failed), one JSON log line every few seconds
 * otherwise, so logs from CI or Kubernetes stay readable.
 */
import cliProgress from 'cli-progress';
import type { IngestProgress } from './job.js';

export interface ProgressReporter {
  update(progress: IngestProgress): void;
  stop(): void;
}

export function progressReporter(stream: NodeJS.WriteStream = process.stderr, intervalMs = 5000): ProgressReporter {
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream,
        format: 'ingest [{bar}] {value}/{total} units | {rate} img/s | kept {kept} | dup {dup} | failed {failed}',
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(p) {
        const fields = { rate: rate(p), kept: p.kept, dup: p.duplicates, failed: p.failed };
        if (!started) bar.start(p.unitsTotal, 0, fields);
        started = true;
        bar.update(p.unitsDone + p.unitsSkipped, fields);
      },
      stop: () => bar.stop(),
    };
  }
  let last = 0;
  let latest: IngestProgress | undefined;
  const line = (p: IngestProgress) =>
    stream.write(`${JSON.stringify({ event: 'ingest_progress', ...p, imagesPerSecond: Number(rate(p)) })}\n`);
  return {
    update(p) {
      latest = p;
      if (Date.now() - last >= intervalMs) {
        last = Date.now();
        line(p);
      }
    },
    stop() {
      if (latest) line(latest);
    },
  };
}

function rate(p: IngestProgress): string {
  return p.elapsedSeconds > 0 ? (p.urls / p.elapsedSeconds).toFixed(1) : '0.0';
}
