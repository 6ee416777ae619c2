/**
 * What uploading one step's crops costs (batch 256, crops 2x224 + 6x96 by default: ~480 MB of f32), on the
 * CPU of the machine running it, by route:
 *   copy          the loader's SharedArrayBuffer view copied into an ordinary Float32Array (the CPU copy
 *                 Dawn for Node 0.6.2 needs before queue.writeBuffer, which crashes on a shared view)
 *   writeBuffer   that copy then queue.writeBuffer into the crop buffers, waited to completion
 *   ring          mapAsync(WRITE) staging buffers filled straight from the shared view, unmapped, then
 *                 copyBufferToBuffer into the crop buffers in one command buffer, waited to completion
 *
 *   npx tsx bench/webgpu-upload.ts [batch] [repeats]
 */
import { openDevice } from '../src/train/webgpu/device.js';

const batch = Number(process.argv[2] ?? 256);
const repeats = Number(process.argv[3] ?? 5);
const sizes = [224, 224, 96, 96, 96, 96, 96, 96];
const ctx = await openDevice();
const { device } = ctx;
const crops = sizes.map((s) => {
  const data = new Float32Array(new SharedArrayBuffer(batch * s * s * 3 * 4));
  for (let i = 0; i < data.length; i += 1024) data[i] = i % 7;
  return data;
});
const bytes = crops.reduce((n, c) => n + c.byteLength, 0);
const STORAGE = 0x80 | 0x4 | 0x8;
const targets = crops.map((c) => device.createBuffer({ size: c.byteLength, usage: STORAGE }));
const plain = crops.map((c) => new Float32Array(c.length));
const ring = crops.map((c) => device.createBuffer({ size: c.byteLength, usage: 0x2 | 0x4, mappedAtCreation: true })); // MAP_WRITE|COPY_SRC

const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
async function time(name: string, f: () => Promise<void> | void): Promise<void> {
  const ms: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    await f();
    ms.push(performance.now() - t0);
  }
  console.log(
    `${name}: ${median(ms).toFixed(1)} ms per step (median of ${repeats}; ${(bytes / 2 ** 20).toFixed(0)} MiB)`,
  );
}

await time('copy (shared view -> Float32Array)', () => crops.forEach((c, i) => plain[i]!.set(c)));
const issue: number[] = [];
await time('copy + writeBuffer, to completion', async () => {
  const t0 = performance.now();
  crops.forEach((c, i) => {
    plain[i]!.set(c);
    device.queue.writeBuffer(targets[i]!, 0, plain[i]!.buffer, 0, c.byteLength);
  });
  issue.push(performance.now() - t0);
  await device.queue.onSubmittedWorkDone();
});
console.log(`  of which the copy and writeBuffer calls (CPU time in step): ${median(issue).toFixed(1)} ms`);
let mapped = true;
const fill: number[] = [];
const remap: number[] = [];
await time('ring: mapped fill + copyBufferToBuffer, to completion', async () => {
  const m0 = performance.now();
  if (!mapped) await Promise.all(ring.map((b) => b.mapAsync(0x2)));
  remap.push(performance.now() - m0);
  const t0 = performance.now();
  crops.forEach((c, i) => {
    new Float32Array(ring[i]!.getMappedRange()).set(c);
    ring[i]!.unmap();
  });
  fill.push(performance.now() - t0);
  const enc = device.createCommandEncoder();
  crops.forEach((c, i) => enc.copyBufferToBuffer(ring[i]!, 0, targets[i]!, 0, c.byteLength));
  device.queue.submit([enc.finish()]);
  await device.queue.onSubmittedWorkDone();
  mapped = false;
});
console.log(`  of which mapAsync(WRITE) of an idle ring: ${median(remap).toFixed(1)} ms`);
console.log(`  of which the fill of the mapped ranges (CPU time in step): ${median(fill).toFixed(1)} ms`);
// Check the ring route delivered the bytes.
const check = device.createBuffer({ size: 4096, usage: 0x1 | 0x8 });
const enc = device.createCommandEncoder();
enc.copyBufferToBuffer(targets[2]!, 0, check, 0, 4096);
device.queue.submit([enc.finish()]);
await check.mapAsync(0x1);
const got = new Float32Array(check.getMappedRange());
console.log(`ring data check: ${got[0] === crops[2]![0] && got[1000] === crops[2]![1000] ? 'ok' : 'WRONG'}`);
ctx.destroy();
