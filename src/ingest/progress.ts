/**
 * Progress for ingest: a bar on a TTY (units, images/s, kept, failed), one JSON log line every few seconds
 * otherwise, so logs from CI or Kubernetes stay readable. Lines for a person (notices, warnings, the message of
 * an interrupted run) go through `note`, or are written after `stop`, which ends the bar's line: never onto it.
 */
import { clearLine, cursorTo } from 'node:readline';
import cliProgress from 'cli-progress';
import type { IngestProgress } from './summary.js';

export interface ProgressReporter {
  update(progress: IngestProgress): void;
  /** Writes one line for a person on its own line, the bar redrawn below it. */
  note(line: string): void;
  /** Ends the bar (its line kept, the cursor on a new line) or writes the last log line. Idempotent. */
  stop(): void;
}

export function progressReporter(stream: NodeJS.WriteStream = process.stderr, intervalMs = 5000): ProgressReporter {
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream,
        format: 'ingest [{bar}] {value}/{total} units | {rate} img/s | kept {kept} | dup {dup} | failed {failed}',
        hideCursor: true,
        forceRedraw: true, // a note clears the bar's line; the next frame must draw it again
      },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    let stopped = false; // updates after stop (from work still draining after an interrupt) draw nothing
    return {
      update(p) {
        if (stopped) return;
        const fields = { rate: rate(p), kept: p.kept, dup: p.duplicates, failed: p.failed };
        if (!started) bar.start(p.unitsTotal, 0, fields);
        started = true;
        bar.update(p.unitsDone + p.unitsSkipped, fields);
      },
      note(line) {
        if (started && !stopped) {
          cursorTo(stream, 0);
          clearLine(stream, 0);
        }
        stream.write(`${line}\n`);
      },
      stop() {
        bar.stop();
        stopped = true;
      },
    };
  }
  let last = 0;
  let latest: IngestProgress | undefined;
  let stopped = false;
  const line = (p: IngestProgress) =>
    stream.write(`${JSON.stringify({ event: 'ingest_progress', ...p, imagesPerSecond: Number(rate(p)) })}\n`);
  return {
    note: (text) => stream.write(`${text}\n`),
    update(p) {
      if (stopped) return;
      latest = p;
      if (Date.now() - last >= intervalMs) {
        last = Date.now();
        line(p);
      }
    },
    stop() {
      if (latest && !stopped) line(latest);
      stopped = true;
    },
  };
}

function rate(p: IngestProgress): string {
  return p.elapsedSeconds > 0 ? (p.urls / p.elapsedSeconds).toFixed(1) : '0.0';
}
