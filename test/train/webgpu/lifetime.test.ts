/**
 * One process opening and destroying WebGPU devices one after another, as a test file or a library user does
 * (train, then train again), with garbage collections between. A Dawn instance dropped with its device is
 * destroyed by such a collection while Dawn's and lavapipe's threads still wait on its locks, and glibc aborts
 * the process ("The futex facility returned an unexpected error code"; webgpu 0.6.2, within 5 to 10 runs):
 * openDevice keeps one instance per process.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openStore } from '../../../src/shards/store.js';
import { runOn, tinyConfig } from './train-case.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let dir: string;
beforeAll(async () => void (dir = await mkdtemp(join(tmpdir(), 'ws-webgpu-lifetime-'))));
afterAll(async () => rm(dir, { recursive: true, force: true }));

it('twelve webgpu runs in one process, each on its own device, collected between, end well', async () => {
  for (let i = 0; i < 12; i++) {
    const out = await openStore(join(dir, `run-${i}`));
    const log: string[] = [];
    const summary = await runOn(out, tinyConfig(2, { freezePrototypesSteps: 1 }), {
      backend: 'webgpu',
      logEvery: 1,
      program: null,
      log,
    });
    expect(summary.step).toBe(2);
    expect(log[0]).toMatch(/^WebGPU /);
    gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
    gc();
  }
}, 600_000);
