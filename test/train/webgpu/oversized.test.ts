// A model whose f32 weights exceed the device's largest binding is refused from its configuration, before the
// tfjs model is built (regnety_16gf took ~115 s to build on lavapipe before its refusal came).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trainOnStore } from '../../../src/jobs/train.js';
import { TRAIN_RUN } from '../../../src/shards/run-lock.js';
import { openStore } from '../../../src/shards/store.js';
import { startBackend } from '../../../src/train/backend.js';
import { defaultTrainConfig } from '../../../src/train/config.js';
import { SwavModel } from '../../../src/train/model.js';
import { DEFAULT_SWAV } from '../../../src/train/swav.js';
import { refuseOversizedConfig } from '../../../src/train/webgpu/stepper.js';
import { writePhotoDataset } from '../../helpers/dataset.js';

const MiB = 2 ** 20;
let dir: string;
beforeAll(async () => void (dir = await mkdtemp(join(tmpdir(), 'ws-oversized-'))));
afterAll(async () => void (await rm(dir, { recursive: true, force: true })));

describe('refuseOversizedConfig', () => {
  it("counts the model's trainable parameters from its configuration, as the built model does", async () => {
    await startBackend('cpu');
    const config = defaultTrainConfig({
      model: 'custom:3,16,8,2,16',
      batchSize: 4,
      crops: '2x32,2x16',
      swav: { ...DEFAULT_SWAV, prototypes: 16, hidden: 32, dim: 16 },
    });
    const model = new SwavModel(config);
    const params = model.ps.count();
    model.dispose();
    expect(() => refuseOversizedConfig(config, 4 * params)).not.toThrow();
    expect(() => refuseOversizedConfig(config, 4 * params - 1)).toThrow(
      `model custom:3,16,8,2,16 has ${(params / 1e6).toFixed(1)} M parameters`,
    );
    const big = defaultTrainConfig({ model: 'regnety_16gf', batchSize: 2, crops: '2x32,2x16' });
    expect(() => refuseOversizedConfig(big, 128 * MiB)).toThrow(
      /^model regnety_16gf has 8\d\.\d M parameters: their f32 buffer of 3\d\d\.\d MiB is above the device's 128\.0 MiB per buffer binding/,
    );
  });

  it('refuses regnety_16gf on the device before building it, and leaves no run lock', async () => {
    const backend = await startBackend('webgpu').catch(() => null);
    if (!backend || backend.bindingLimit === undefined || backend.bindingLimit >= 400 * MiB) return; // no small device here
    const data = await openStore(join(dir, 'data'));
    await writePhotoDataset(data, { units: 1, perUnit: 4 });
    const out = await openStore(join(dir, 'out'));
    const config = defaultTrainConfig({ model: 'regnety_16gf', batchSize: 2, crops: '2x32,2x16', steps: 1 });
    const t0 = Date.now();
    await expect(trainOnStore({ data, out, config, backend: 'webgpu', threads: 1 })).rejects.toThrow(
      /^model regnety_16gf has .* per buffer binding, whatever the batch/,
    );
    // Building the model alone took ~115 s on lavapipe; the refusal comes from the configuration.
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(await out.head(TRAIN_RUN.key)).toBeNull();
  }, 120_000);
});
