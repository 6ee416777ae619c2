/**
 * One process opening and destroying WebGPU devices one after another, as a test file or a library user does
 * (train, then train again). With a Dawn instance per device, dropped with it, a garbage collection destroyed
 * the instance while Dawn's and lavapipe's threads still waited on its locks: glibc aborted the process ("The
 * futex facility returned an unexpected error code") within 5 to 10 runs collected between (webgpu 0.6.2,
 * 3 of 3 tries), and on CI in resume.test.ts's idle wait for its child processes.
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
