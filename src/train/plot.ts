/**
 * `wildstream plot`: loss and learning-rate curves of a run (its metrics JSONL) as a PNG, drawn as SVG and
 * rasterised by sharp (librsvg), so no plotting library or browser is needed.
 */
import sharp from 'sharp';
import type { MetricLine } from './metrics.js';

const W = 900, H = 300, PAD = { l: 70, r: 20, t: 30, b: 40 };

function panel(title: string, points: Array<[number, number]>, y0: number, colour: string): string {
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [xMin, xMax] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
  let [yMin, yMax] = [Math.min(...ys), Math.max(...ys)];
  if (yMax - yMin < 1e-12) [yMin, yMax] = [yMin - 1e-3 - Math.abs(yMin) * 0.05, yMax + 1e-3 + Math.abs(yMax) * 0.05];
  const sx = (x: number) => PAD.l + ((x - xMin) / (xMax - xMin)) * (W - PAD.l - PAD.r);
  const sy = (y: number) => y0 + H - PAD.b - ((y - yMin) / (yMax - yMin)) * (H - PAD.t - PAD.b);
  const path = points.map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
  const ticks = [0, 0.5, 1].map((f) => yMin + f * (yMax - yMin));
  return [
    `<text x="${PAD.l}" y="${y0 + 20}" font-size="15" font-family="sans-serif">${title}</text>`,
    `<rect x="${PAD.l}" y="${y0 + PAD.t}" width="${W - PAD.l - PAD.r}" height="${H - PAD.t - PAD.b}" fill="none" stroke="#999"/>`,
    ...ticks.map((t) => `<text x="${PAD.l - 6}" y="${sy(t) + 4}" font-size="11" text-anchor="end" font-family="sans-serif">${t.toPrecision(3)}</text>`),
    `<text x="${PAD.l}" y="${y0 + H - 12}" font-size="11" font-family="sans-serif">step ${xMin}</text>`,
    `<text x="${W - PAD.r}" y="${y0 + H - 12}" font-size="11" text-anchor="end" font-family="sans-serif">step ${xMax}</text>`,
    `<path d="${path}" fill="none" stroke="${colour}" stroke-width="2"/>`,
  ].join('\n');
}

/** A PNG with the loss curve above the learning-rate curve. */
export async function plotCurves(lines: MetricLine[]): Promise<Buffer> {
  if (lines.length === 0) throw new Error('no metrics to plot yet (they are written with each checkpoint)');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${2 * H}">
<rect width="100%" height="100%" fill="white"/>
${panel('SwAV loss', lines.map((m) => [m.step, m.loss]), 0, '#c0392b')}
${panel('learning rate', lines.map((m) => [m.step, m.lr]), H, '#2471a3')}
</svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}
