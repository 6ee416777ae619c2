/**
 * Training metrics: one JSON line per log interval, kept in the checkpoint store as parts written with each
 * checkpoint (`metrics/step-<step>.jsonl` holds the lines since the previous part). Object stores cannot
 * append, and tying parts to checkpoints means a resumed run never duplicates or loses a line.
 */
import { metricsArchiveDir, metricsArchiveKey, metricsKey, METRICS_DIR } from '../shards/keys.js';
import type { Store } from '../shards/store.js';
import { getBytes } from '../shards/store.js';

export interface MetricLine {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  imagesPerSec: number;
  /** Share of wall time the step loop waited for augmented batches. */
  dataWaitPct: number;
  /**
   * A GPU run: share of wall time the step loop waited for the device (steps in flight at their bound, and
   * loss reads). High means the GPU is the bottleneck, as it should be; absent on other backends.
   */
  gpuWaitPct?: number;
  backend: string;
  time: string;
  /** When the process that logged this line started training: a change marks an interruption (a resume). */
  run?: string;
  /**
   * Collapse warnings the run has given up to this line (the loss sat at ln K; see collapse.ts), counted across
   * resumes (the checkpoint carries the count; lines of runs from before it count from their process's start).
   */
  collapseWarnings?: number;
  /**
   * Mixed precision on a GPU: the dynamic loss scale at this line, and the steps skipped for an inf/NaN
   * gradient and the times the scale grew, counted over the run (a resume counts on from its checkpoint).
   */
  lossScale?: { scale: number; skipped: number; grown: number };
  /**
   * A GPU run's interval that holds the process's first step: that step's seconds (the device's first-use
   * work, such as compiling kernels). The interval's rates (imagesPerSec, dataWaitPct, gpuWaitPct) leave it out
   * when the interval holds further steps.
   */
  firstStepSeconds?: number;
}

const PREFIX = `${METRICS_DIR}/`;

async function listParts(store: Store): Promise<Array<{ key: string; step: number }>> {
  const parts: Array<{ key: string; step: number }> = [];
  for await (const o of store.list(PREFIX)) {
    const m = /^metrics\/step-(\d{9})\.jsonl$/.exec(o.key);
    if (m) parts.push({ key: o.key, step: Number(m[1]) });
  }
  return parts.sort((a, b) => a.step - b.step);
}

export async function writeMetricsPart(store: Store, step: number, lines: MetricLine[]): Promise<void> {
  if (lines.length > 0)
    await store.put(metricsKey(step), Buffer.from(lines.map((l) => `${JSON.stringify(l)}\n`).join('')));
}

/**
 * Every metric line of the run, in step order. A line that is not one (a part edited or damaged by hand, a
 * disk error) is left out and told to `onSkip` with its part and line number: the others still plot, and a
 * line without a loss never becomes a point drawn at NaN.
 */
export async function readMetrics(store: Store, onSkip: (why: string) => void = () => {}): Promise<MetricLine[]> {
  const lines: MetricLine[] = [];
  for (const { key } of await listParts(store)) {
    const text = Buffer.from(await getBytes(store, key)).toString('utf8');
    text.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      const why = notMetricLine(line);
      if (why) onSkip(`${key} line ${i + 1} is not a metric line (${why}); skipped`);
      else lines.push(JSON.parse(line) as MetricLine);
    });
  }
  return lines;
}

/** Why `line` is not a metric line (what plot and a report read from it), or null when it is one. */
function notMetricLine(line: string): string | null {
  let m: unknown;
  try {
    m = JSON.parse(line);
  } catch (err) {
    return (err as Error).message;
  }
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return 'not a JSON object';
  const o = m as Record<string, unknown>;
  if (!Number.isSafeInteger(o.step) || (o.step as number) < 0) return `step ${JSON.stringify(o.step)}`;
  for (const field of ['loss', 'lr'] as const)
    if (typeof o[field] !== 'number' || !Number.isFinite(o[field])) return `${field} ${JSON.stringify(o[field])}`;
  return null;
}

/** Removes parts written after `step` (a resumed run rewrites them from there). */
export async function dropMetricsAfter(store: Store, step: number): Promise<void> {
  for (const part of await listParts(store)) if (part.step > step) await store.delete(part.key);
}

/**
 * Moves every part to `metrics/archive/<started>/` (where readMetrics does not look), so a run that starts over
 * never overwrites the curves of the run before it. Returns the archive prefix, or null when there were none.
 */
export async function archiveMetrics(store: Store, started: Date): Promise<string | null> {
  const parts = await listParts(store);
  if (parts.length === 0) return null;
  for (const part of parts) await store.put(metricsArchiveKey(started, part.step), await getBytes(store, part.key));
  for (const part of parts) await store.delete(part.key);
  return metricsArchiveDir(started);
}

/** The interval's console line. */
export function formatLine(m: MetricLine, steps: number): string {
  return (
    `step ${m.step}/${steps}  epoch ${m.epoch}  loss ${m.loss.toFixed(4)}  lr ${m.lr.toPrecision(3)}  ` +
    `${m.imagesPerSec.toFixed(1)} img/s  data-wait ${m.dataWaitPct.toFixed(0)}%  ` +
    (m.gpuWaitPct === undefined ? '' : `gpu-wait ${m.gpuWaitPct.toFixed(0)}%  `) +
    m.backend +
    (m.lossScale
      ? `  loss scale ${m.lossScale.scale} (${m.lossScale.skipped} skipped, ${m.lossScale.grown} grown)`
      : '')
  );
}
