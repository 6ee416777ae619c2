/**
 * The k-NN picture of the report: for a few query images, their nearest neighbours among the k-NN training
 * images by cosine similarity of backbone features, for each model compared (trained, random init). Borders
 * say whether a neighbour has the query's label, so learned features read at a glance: mostly green rows
 * for the trained backbone, mixed ones at initialisation.
 */
import { join } from 'node:path';
import sharp, { type OverlayOptions } from 'sharp';
import { renderSheet, svgText } from '../svg-text.js';
import type { Embeddings } from './embed.js';

export interface Neighbour {
  index: number;
  similarity: number;
}

/** The `k` rows of `pool` most cosine-similar to `query`, best first (ties by index). */
export function nearest(pool: Float32Array[], query: Float32Array, k: number): Neighbour[] {
  const norm = (v: Float32Array) => Math.hypot(...v) || 1;
  const qn = norm(query);
  return pool
    .map((row, index) => ({ index, similarity: row.reduce((s, v, j) => s + v * query[j]!, 0) / (norm(row) * qn) }))
    .sort((a, b) => b.similarity - a.similarity || a.index - b.index)
    .slice(0, k);
}

/** `per` test images of each label, in label order: the queries shown. */
export function pickQueries(labels: string[], per = 2): number[] {
  const seen = new Map<string, number[]>();
  labels.forEach((l, i) => {
    const list = seen.get(l) ?? [];
    if (list.length < per) seen.set(l, [...list, i]);
  });
  return [...seen.keys()].sort().flatMap((l) => seen.get(l)!);
}

export interface KnnModel {
  name: string;
  top1: number;
  train: Embeddings;
  test: Embeddings;
}

export interface KnnPictureOptions {
  /** Image folders the embeddings' keys are relative to. */
  trainDir: string;
  testDir: string;
  /** Neighbours per query. @default 5 */
  k?: number;
  /** Queries per label. @default 2 */
  perLabel?: number;
}

const T = 80,
  GAP = 8,
  SECTION = 28,
  TOP = 112,
  ROW = T + 2 * GAP;

/** The PNG: one row per query; per model, its k nearest training images with green (same label) or red borders. */
export async function knnPicture(models: KnnModel[], o: KnnPictureOptions): Promise<Buffer> {
  const k = o.k ?? 5;
  const ref = models[0]!;
  const queries = pickQueries(ref.test.labels, o.perLabel ?? 2);
  const blockWidth = k * (T + GAP);
  const width = GAP * 2 + 150 + T + models.length * (SECTION + blockWidth) + GAP;
  const height = TOP + queries.length * ROW + GAP;
  const tiles: OverlayOptions[] = [];
  const svg: string[] = [
    svgText(
      `Nearest neighbours (cosine similarity of backbone features) of ${queries.length} held-out images`,
      GAP,
      26,
    ),
    svgText('green border: same hidden class as the query (labels are used only here); red: another class', GAP, 50, {
      fill: '#444',
    }),
  ];
  const thumb = async (dir: string, key: string) =>
    sharp(join(dir, key)).resize(T, T, { fit: 'cover' }).png().toBuffer();
  const same = models.map(() => 0);
  for (const [r, q] of queries.entries()) {
    const y = TOP + r * ROW + GAP;
    const label = ref.test.labels[q]!;
    svg.push(svgText('query', GAP, y + 24, { fill: '#666' }), svgText(label, GAP, y + 50));
    tiles.push({ input: await thumb(o.testDir, ref.test.keys[q]!), left: GAP * 2 + 150 - GAP, top: y });
    for (const [m, model] of models.entries()) {
      const x0 = GAP * 2 + 150 + T + SECTION + m * (SECTION + blockWidth);
      const query = model.test.features[model.test.keys.indexOf(ref.test.keys[q]!)];
      if (!query) continue;
      for (const [j, n] of nearest(model.train.features, query, k).entries()) {
        const x = x0 + j * (T + GAP);
        const match = model.train.labels[n.index] === label;
        same[m]! += match ? 1 : 0;
        tiles.push({ input: await thumb(o.trainDir, model.train.keys[n.index]!), left: x, top: y });
        svg.push(
          `<rect x="${x - 2}" y="${y - 2}" width="${T + 4}" height="${T + 4}" fill="none" stroke="${match ? '#27ae60' : '#c0392b'}" stroke-width="4"/>`,
        );
      }
    }
  }
  for (const [m, model] of models.entries()) {
    const x = GAP * 2 + 150 + T + SECTION + m * (SECTION + blockWidth);
    svg.push(
      svgText(`${model.name}: k-NN top-1 ${model.top1.toFixed(3)}`, x, TOP - 34),
      svgText(`${same[m]} of ${queries.length * k} neighbours share the class`, x, TOP - 10, { fill: '#444' }),
    );
  }
  return renderSheet(width, height, tiles, svg);
}
