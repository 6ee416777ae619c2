/**
 * The report stage opens every store as the stage that wrote it does: a pipeline whose stores name their S3
 * endpoint in the file (`s3_endpoint:`), with no endpoint in the environment, writes its report there.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { writeReport } from '../../src/pipeline/report.js';
import { validatePipeline } from '../../src/pipeline/schema.js';
import { openStore } from '../../src/shards/store.js';
import { writePhotoDataset } from '../helpers/dataset.js';
import { startS3, type S3Fixture } from '../helpers/s3-server.js';

let s3: S3Fixture;
const saved = { ...process.env };
beforeAll(async () => {
  s3 = await startS3(['stages']);
  // Credentials only: the endpoint comes from the pipeline file. One that reaches nothing stands for AWS.
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
    AWS_MAX_ATTEMPTS: '1',
  });
  await writeRun(s3.endpoint);
});
afterAll(async () => {
  process.env = saved;
  await s3?.stop();
});

it('opens the dataset, the run and the report folder with the store options the pipeline file gives', async () => {
  const endpoint = { s3_endpoint: s3.endpoint };
  const p = validatePipeline(
    {
      train: { data: 's3://stages/ds', out: 's3://stages/run', ...endpoint },
      export: { out: 's3://stages/model', ...endpoint },
      report: { out: 's3://stages/report' },
    },
    'p.yaml',
  );

  await writeReport(p, (_name, work) => work().then(() => {}));
  const report = await openStore('s3://stages/report', { s3Endpoint: s3.endpoint });
  const keys: string[] = [];
  for await (const { key } of report.list('')) keys.push(key);
  expect(keys).toEqual(expect.arrayContaining(['contact-sheet.png', 'curves.png', 'multicrop-preview.png']));
}, 60_000);

it('removes the evaluation images it generated in a temporary folder for a remote report, even when k-NN fails', async () => {
  const tmp = await mkdtemp(join(tmpdir(), 'ws-report-tmp-'));
  const savedTmp = process.env.TMPDIR;
  process.env.TMPDIR = tmp; // where os.tmpdir() puts the generated images
  try {
    const endpoint = { s3_endpoint: s3.endpoint };
    const p = validatePipeline(
      {
        site: 'demo',
        train: { data: 's3://stages/ds', out: 's3://stages/run', backend: 'cpu', ...endpoint },
        export: { out: 's3://stages/no-model', ...endpoint },
        report: { out: 's3://stages/report-demo', eval_images: 4 },
      },
      'p.yaml',
    );
    // No model was exported: k-NN fails after the images were generated.
    await expect(writeReport(p, (_name, work) => work().then(() => {}))).rejects.toThrow(/no-model/);
    expect(await readdir(tmp)).toEqual([]); // a wildstream-eval-* folder stayed on every run
  } finally {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
    await rm(tmp, { recursive: true, force: true });
  }
}, 60_000);

/** A one-unit dataset and a run's metrics on the S3 server at `endpoint`, as ingest and train leave them. */
async function writeRun(endpoint: string): Promise<void> {
  await writePhotoDataset(await openStore('s3://stages/ds', { s3Endpoint: endpoint }), {
    units: 1,
    perUnit: 4,
    width: 64,
    height: 48,
  });
  const metric = (step: number) =>
    JSON.stringify({ step, epoch: 0, loss: 3, lr: 0.5, imagesPerSec: 9, dataWaitPct: 1, backend: 'wasm', time: '' });
  const run = await openStore('s3://stages/run', { s3Endpoint: endpoint });
  await run.put('metrics/step-000000002.jsonl', Buffer.from(`${metric(1)}\n${metric(2)}\n`));
}
