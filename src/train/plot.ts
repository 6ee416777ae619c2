/**
 * `wildstream plot`: a run's loss and learning-rate curves (its metrics JSONL) as a PNG, drawn as SVG and
 * rasterised by sharp, so no plotting library or browser is needed. Both panels have step and value axes
 * with tick labels and a grid; the loss panel marks ln K (the collapse plateau), the prototype freeze,
 * collapse warnings, and the places where the run was interrupted and resumed: the curve is broken there,
 * not drawn through time nobody trained.
 */
import { renderSheet, svgText } from '../svg-text.js';
import type { MetricLine } from './metrics.js';

export interface PlotOptions {
  /** SwAV prototypes K: draws the ln K line. */
  prototypes?: number;
  /** Steps with frozen prototypes: shaded. */
  freezeSteps?: number;
}

const W = 1000,
  H = 340,
  PAD = { l: 90, r: 30, t: 46, b: 62 };
const GAP_FACTOR = 10;

/** About `count` round tick values (1, 2 or 5 times a power of ten apart) within [min, max]. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  const span = max - min || Math.abs(max) || 1;
  const raw = span / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [0.5, 1, 2, 5, 10]
    .map((m) => m * pow)
    .reduce((best, s) => (Math.abs(span / s - count) < Math.abs(span / best - count) ? s : best));
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step - 1e-9) * step; v <= max + step * 1e-9; v += step)
    ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/** Tick label with as many decimals as the tick spacing needs. */
function label(v: number, ticks: number[]): string {
  const step = ticks.length > 1 ? Math.abs(ticks[1]! - ticks[0]!) : Math.abs(v) || 1;
  if (step < 1e-3 || Math.abs(v) >= 1e6) return v === 0 ? '0' : v.toExponential(1);
  return v.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
}

/**
 * Indices where a new stretch of training starts: the logging process changed (a resume), or, for lines
 * without that mark, the clock jumped by more than ten times the usual interval.
 */
export function interruptions(lines: MetricLine[]): number[] {
  const times = lines.map((m) => Date.parse(m.time));
  const gaps = times
    .slice(1)
    .map((t, i) => t - times[i]!)
    .filter((g) => g > 0)
    .sort((a, b) => a - b);
  const usual = gaps[Math.floor(gaps.length / 2)] ?? 0;
  const cuts: number[] = [];
  for (let i = 1; i < lines.length; i++) {
    const [a, b] = [lines[i - 1]!, lines[i]!];
    const resumed =
      a.run && b.run ? a.run !== b.run : usual > 0 && times[i]! - times[i - 1]! > GAP_FACTOR * usual + 60_000;
    if (resumed || b.step <= a.step) cuts.push(i);
  }
  return cuts;
}

interface Panel {
  title: string;
  yTitle: string;
  values: number[];
  colour: string;
  /** Horizontal reference lines with a label. */
  refs?: Array<{ y: number; text: string }>;
  /** Shade the prototype freeze and circle collapse warnings. */
  marks?: boolean;
}

function panel(p: Panel, lines: MetricLine[], top: number, o: PlotOptions, cuts: number[]): string {
  const steps = lines.map((m) => m.step);
  const [x0, x1] = [Math.min(0, ...steps), Math.max(...steps, 1)];
  const ys = [...p.values, ...(p.refs ?? []).map((r) => r.y)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const pad = (y1 - y0) * 0.08 || Math.abs(y1) * 0.05 || 1;
  [y0, y1] = [y0 - pad, y1 + pad];
  const [left, right, ptop, bottom] = [PAD.l, W - PAD.r, top + PAD.t, top + H - PAD.b];
  const sx = (x: number) => left + ((x - x0) / (x1 - x0)) * (right - left);
  const sy = (y: number) => bottom - ((y - y0) / (y1 - y0)) * (bottom - ptop);
  const xt = niceTicks(x0, x1, 8),
    yt = niceTicks(y0, y1, 5).filter((t) => t >= y0 && t <= y1);
  const out: string[] = [svgText(p.title, left, top + 26, { size: 3 })];
  if (p.marks && o.freezeSteps && o.freezeSteps > 0) {
    out.push(
      `<rect x="${sx(x0)}" y="${ptop}" width="${sx(Math.min(o.freezeSteps, x1)) - sx(x0)}" height="${bottom - ptop}" fill="#dbe9f7"/>`,
    );
    out.push(svgText('prototypes frozen', sx(x0) + 6, ptop + 18, { fill: '#2c5d8f' }));
  }
  for (const t of xt)
    out.push(
      `<line x1="${sx(t)}" x2="${sx(t)}" y1="${ptop}" y2="${bottom}" stroke="#e3e3e3"/>`,
      svgText(label(t, xt), sx(t), bottom + 22, { anchor: 'middle' }),
    );
  for (const t of yt)
    out.push(
      `<line x1="${left}" x2="${right}" y1="${sy(t)}" y2="${sy(t)}" stroke="#e3e3e3"/>`,
      svgText(label(t, yt), left - 8, sy(t) + 7, { anchor: 'end' }),
    );
  out.push(
    `<rect x="${left}" y="${ptop}" width="${right - left}" height="${bottom - ptop}" fill="none" stroke="#555"/>`,
  );
  out.push(
    svgText('step', (left + right) / 2, bottom + 50, { anchor: 'middle' }),
    svgText(p.yTitle, 24, (ptop + bottom) / 2, { anchor: 'middle', vertical: true }),
  );
  for (const r of p.refs ?? []) {
    out.push(
      `<line x1="${left}" x2="${right}" y1="${sy(r.y)}" y2="${sy(r.y)}" stroke="#e67e22" stroke-width="2" stroke-dasharray="8 5"/>`,
    );
    out.push(svgText(r.text, right - 8, sy(r.y) - 8, { anchor: 'end', fill: '#b35900' }));
  }
  // One polyline per stretch of training; the interruption between two is drawn dotted and named.
  const starts = [0, ...cuts],
    ends = [...cuts, lines.length];
  starts.forEach((s, k) => {
    const pts = p.values.slice(s, ends[k]).map((v, i) => `${sx(steps[s + i]!).toFixed(1)},${sy(v).toFixed(1)}`);
    out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${p.colour}" stroke-width="2.5"/>`);
    if (pts.length === 1)
      out.push(`<circle cx="${pts[0]!.split(',')[0]}" cy="${pts[0]!.split(',')[1]}" r="3" fill="${p.colour}"/>`);
  });
  // Each break's label one line above the previous one's, so breaks a few steps apart stay readable.
  cuts.forEach((c, k) => {
    const [a, b] = [c - 1, c];
    out.push(
      `<line x1="${sx(steps[a]!)}" y1="${sy(p.values[a]!)}" x2="${sx(steps[b]!)}" y2="${sy(p.values[b]!)}" stroke="#888" stroke-width="2" stroke-dasharray="2 4"/>`,
    );
    out.push(
      `<line x1="${sx(steps[a]!)}" x2="${sx(steps[a]!)}" y1="${ptop}" y2="${bottom}" stroke="#888" stroke-dasharray="6 4"/>`,
    );
    out.push(svgText('interrupted, resumed', sx(steps[a]!) + 6, bottom - 10 - 16 * (k % 4), { fill: '#555' }));
  });
  if (p.marks) {
    lines.forEach((m, i) => {
      if ((m.collapseWarnings ?? 0) > (lines[i - 1]?.collapseWarnings ?? 0)) {
        out.push(
          `<circle cx="${sx(m.step)}" cy="${sy(p.values[i]!)}" r="7" fill="none" stroke="#c0392b" stroke-width="3"/>`,
        );
        out.push(svgText('collapse warning', sx(m.step), sy(p.values[i]!) - 14, { anchor: 'middle', fill: '#c0392b' }));
      }
    });
  }
  return out.join('\n');
}

/** A PNG with the loss curve above the learning-rate curve. */
export async function plotCurves(lines: MetricLine[], options: PlotOptions = {}): Promise<Buffer> {
  if (lines.length === 0) throw new Error('no metrics to plot yet (they are written with each checkpoint)');
  const cuts = interruptions(lines);
  const k = options.prototypes;
  const loss: Panel = {
    title: 'SwAV loss (mean per log interval)',
    yTitle: 'loss',
    values: lines.map((m) => m.loss),
    colour: '#c0392b',
    marks: true,
    refs: k
      ? [{ y: Math.log(k), text: `ln K = ln ${k} = ${Math.log(k).toFixed(3)}: uniform predictions (collapse)` }]
      : [],
  };
  const lr: Panel = { title: 'learning rate', yTitle: 'lr', values: lines.map((m) => m.lr), colour: '#2471a3' };
  return renderSheet(W, 2 * H, [], [panel(loss, lines, 0, options, cuts), panel(lr, lines, H, options, cuts)]);
}
