/**
 * Weighted k-NN classification on L2-normalised features, the protocol of Wu et al. 2018 used by DINO and
 * VISSL: the k most cosine-similar training samples vote with weight exp(similarity / T).
 */
export interface KnnResult {
  top1: number;
  k: number;
  train: number;
  test: number;
}

function normalise(rows: Float32Array[]): Float32Array[] {
  return rows.map((r) => {
    const n = Math.hypot(...r) || 1;
    return r.map((v) => v / n);
  });
}

export function knnAccuracy(
  train: { features: Float32Array[]; labels: string[] },
  test: { features: Float32Array[]; labels: string[] },
  k = 20,
  temperature = 0.07,
): KnnResult {
  if (train.features.length === 0 || test.features.length === 0)
    throw new Error('k-NN needs at least one train and one test sample');
  const a = normalise(train.features),
    b = normalise(test.features);
  const kk = Math.min(k, a.length);
  let correct = 0;
  b.forEach((q, t) => {
    const sims = a
      .map((x, i) => ({ i, s: x.reduce((acc, v, j) => acc + v * q[j]!, 0) }))
      .sort((x, y) => y.s - x.s)
      .slice(0, kk);
    const votes = new Map<string, number>();
    for (const { i, s } of sims)
      votes.set(train.labels[i]!, (votes.get(train.labels[i]!) ?? 0) + Math.exp(s / temperature));
    const best = [...votes].sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1))[0]![0];
    if (best === test.labels[t]) correct++;
  });
  return { top1: correct / b.length, k: kk, train: a.length, test: b.length };
}
