import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import asc from 'assemblyscript/asc';
import { expect, it } from 'vitest';
import { axisTaps, FIXED_ONE, pairedWeights } from '../../src/augment/taps.js';

/** The committed crop.wasm is what `npm run build:wasm` makes of the committed source, flag for flag. */
it('crop.wasm is built from the current kernel source', async () => {
  const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { scripts: Record<string, string> };
  const args = pkg.scripts['build:wasm']!.split(/\s+/).slice(1);
  const dir = await mkdtemp(join(tmpdir(), 'ws-wasm-'));
  try {
    const out = join(dir, 'crop.wasm');
    args[args.indexOf('-o') + 1] = out;
    const { error, stderr } = await asc.main(args);
    expect(error, stderr.toString()).toBeNull();
    expect(
      Buffer.compare(await readFile(out), await readFile('src/augment/wasm/crop.wasm')),
      'run `npm run build:wasm` and commit crop.wasm',
    ).toBe(0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);

/** The column pass's integer weights: each output's sum is exactly one, each weight within one step of its float. */
it('fixed-point column weights sum to exactly one and stay within a rounding step', () => {
  let outputs = 0;
  for (const [length, out] of [
    [512, 224],
    [500, 96],
    [37, 96],
    [96, 96],
    [1, 9],
    [333, 17],
  ] as const) {
    const t = axisTaps(0, length, out);
    const pairs = pairedWeights(t),
      n = (t.taps + 1) >> 1;
    expect(pairs.length).toBe(out * n * 2);
    for (let o = 0; o < out; o++) {
      let sum = 0;
      for (let k = 0; k < n * 2; k++) {
        const w = pairs[o * n * 2 + k]!;
        sum += w;
        // the one corrected weight may move by the others' rounding (at most half a step each)
        const exact = k < t.taps ? t.weights[o * t.taps + k]! * FIXED_ONE : 0;
        expect(Math.abs(w - exact)).toBeLessThanOrEqual(k < t.taps ? 0.5 + t.taps / 2 : 0);
      }
      expect(sum).toBe(FIXED_ONE);
      outputs++;
    }
  }
  expect(outputs).toBe(224 + 96 * 3 + 9 + 17);
});
