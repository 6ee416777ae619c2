import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import asc from 'assemblyscript/asc';
import { expect, it } from 'vitest';
import { axisTaps, FIXED_ONE, pairedWeights } from '../../src/augment/taps.js';
import { prng } from '../../src/rng.js';

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

/** The bytes conversion alone, in a fresh instance of crop.wasm: exact against f32 steps in JS. */
it('toBytes rounds half up in f32, clamps, maps NaN to 0 and writes nothing past its length', async () => {
  const { WebAssembly: wasm } = globalThis as unknown as {
    WebAssembly: { instantiate(bytes: Uint8Array): Promise<{ instance: { exports: unknown } }> };
  };
  const { instance } = await wasm.instantiate(await readFile('src/augment/wasm/crop.wasm'));
  const k = instance.exports as {
    memory: { buffer: ArrayBuffer; grow(pages: number): number };
    toBytes(src: number, dst: number, n: number): void;
  };
  k.memory.grow(1);
  const f = Math.fround;
  const expected = (x: number) => (x > 0 ? Math.trunc(f(f(f(Math.min(x, 1)) * 255) + 0.5)) : 0);
  // Exact halves: floats whose f32 product with 255 is k + 0.5, which must round up.
  const halves = Array.from({ length: 255 }, (_, k) => f((k + 0.5) / 255)).filter((x, k) => f(x * 255) === k + 0.5);
  expect(halves.length).toBeGreaterThan(20);
  const rand = prng(8);
  // Past 1 by far (200 * 255 overflows i16, 1e30 i32) and below 0: the vectors clamp in the integer domain.
  const special = [NaN, -Infinity, Infinity, -0, 0, 1, -1e-9, 1 + 1e-6, 2.5, 200, 1e30, -200, -1e30, 254.5 / 255];
  const values = [...special, ...halves, ...Array.from({ length: 400 }, () => f(rand() * 1.2 - 0.1))];
  for (const n of [values.length, 16, 17, 31, 14, 3, 0]) {
    const src = 64,
      dst = src + values.length * 4 + 64;
    const floats = new Float32Array(k.memory.buffer, src, values.length);
    floats.set(values);
    const out = new Uint8Array(k.memory.buffer, dst, values.length + 32).fill(77);
    k.toBytes(src, dst, n);
    const got = Array.from(out.subarray(0, n));
    expect(got, `n ${n}`).toEqual(Array.from(floats.subarray(0, n), expected));
    expect(
      out.subarray(n).every((b) => b === 77),
      `past ${n}`,
    ).toBe(true);
  }
  expect(expected(halves[0]!)).toBe(Math.round(f(halves[0]! * 255)));
});
