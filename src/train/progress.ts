/**
 * Training progress on the console. On a terminal (stderr), a progress bar over the steps with the running
 * loss; the interval lines go to stdout as well unless stdout is that same terminal (the bar shows them).
 * In logs (no TTY), just the lines. Anything else printed while the bar is up (warnings, checkpoints, the
 * stop message) first clears the bar's line, so it never lands on the bar; the bar redraws below it.
 */
import { clearLine, cursorTo } from 'node:readline';
import type { Writable } from 'node:stream';
import cliProgress from 'cli-progress';

export interface TrainProgress {
  /** A line of the run's log (stdout). */
  log(line: string): void;
  /** After every step. */
  step(step: number, steps: number, loss: number, lr: number): void;
  /** A message for the person at the terminal (stderr), such as what a signal does. */
  note(line: string): void;
  /** Ends the bar (its line is left as the final state). */
  stop(): void;
}

/** What the progress writes to; a terminal when `isTTY`. */
export interface ProgressStreams {
  out: Writable & { isTTY?: boolean };
  err: Writable & { isTTY?: boolean };
}

/** The interval lines the bar replaces on a terminal. */
const INTERVAL = /^step \d+\/\d+ /;

export function trainProgress(streams: ProgressStreams = { out: process.stdout, err: process.stderr }): TrainProgress {
  const { out, err } = streams;
  const print = (stream: Writable, line: string) => stream.write(`${line}\n`);
  if (!err.isTTY)
    return { log: (line) => print(out, line), step: () => {}, note: (line) => print(err, line), stop: () => {} };
  const bar = new cliProgress.SingleBar(
    {
      stream: err,
      hideCursor: true,
      format: 'train [{bar}] {value}/{total} steps | loss {loss} | lr {lr} | eta {eta_formatted}',
    },
    cliProgress.Presets.shades_classic,
  );
  let active = false;
  /**
   * Clears the bar's line so `line` starts at column 0; the bar redraws on its next update, on the line
   * below. cli-progress returns to the cursor position saved at its start when it stops, so that is saved
   * again here (ESC 7), where the bar now is.
   */
  const above = (stream: Writable, line: string) => {
    if (!active) return print(stream, line);
    clearLine(err, 0);
    cursorTo(err, 0);
    print(stream, line);
    err.write('\x1b7');
  };
  return {
    log(line) {
      if (active && out.isTTY && INTERVAL.test(line)) return;
      above(out, line);
    },
    step(step, steps, loss, lr) {
      if (!active) bar.start(steps, step - 1, { loss: '-', lr: '-' });
      active = true;
      bar.update(step, { loss: loss.toFixed(4), lr: lr.toPrecision(3) });
    },
    note: (line) => above(err, line),
    stop() {
      if (!active) return;
      bar.stop(); // draws the final state and ends the bar's line
      active = false;
    },
  };
}
