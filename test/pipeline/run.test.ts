import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli.js';
import { openStore } from '../../src/shards/store.js';
import { runCli, spawnCli } from '../helpers/cli.js';
import { writePhotoDataset } from '../helpers/dataset.js';

const DEMO = resolve('pipelines/demo.yaml');
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-pipeline-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('wildstream run', () => {
  it('runs the demo pipeline end to end (shortened), and a rerun continues instead of redoing', async () => {
    const short = [
      '--set',
      'train.steps=4',
      '--set',
      'train.batch=8',
      '--set',
      'train.checkpoint_every=2',
      '--set',
      'train.log_every=2',
      '--set',
      'train.threads=1',
      '--set',
      'report.eval_images=16',
    ];
    // follow: training starts while ingest is still committing units (both stages run at once)
    const r = await runCli(['run', DEMO, ...short, '--set', 'train.follow=true'], {}, 300_000, dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/"event":"ingest_done".*"kept":511,"failed":3,"duplicates":16/);
    expect(r.stdout).toMatch(/step 4\/4 +epoch/);
    expect(r.stdout.indexOf('wildstream train: backend')).toBeLessThan(r.stdout.indexOf('"event":"ingest_done"'));
    expect(r.stdout).toMatch(/k-NN top-1: trained \d\.\d{3}, random init \d\.\d{3}/);
    for (const png of ['contact-sheet.png', 'multicrop-preview.png', 'curves.png', 'knn-neighbours.png']) {
      const meta = await sharp(await readFile(join(dir, 'data/report', png))).metadata();
      expect(meta.format, png).toBe('png');
      expect(meta.width! * meta.height!, png).toBeGreaterThan(2_000);
    }
    expect(r.stdout).toMatch(/"event":"embed","out":"data\/embeddings\.arrow","images":511/);
    const knn = JSON.parse(await readFile(join(dir, 'data/report/knn.json'), 'utf8'));
    expect(knn.trained).toMatchObject({ k: 8, train: 8, test: 8 });
    const inspect = await mainIn(['inspect', 'data/dataset', '--json'], dir); // in-process: what it reads is the point
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(JSON.parse(inspect.stdout)).toMatchObject({ shards: 11, records: 511, duplicates: { exact: 5, near: 11 } });

    const again = await runCli(['run', DEMO, ...short, '--set', 'train.steps=6'], {}, 300_000, dir);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/"unitsSkipped":11/);
    expect(again.stdout).toMatch(/resuming at step 4 from checkpoints\/step-000000004\.ckpt/);
    expect(again.stdout).toMatch(/step 6\/6/);
  }, 300_000);

  it('rejects a typo, a wrong type or a missing store before any work starts, naming the key', async () => {
    const cases: Array<[string, RegExp]> = [
      ['site: demo\ningest:\n  out: x\n  unit_sise: 5\n', /ingest\.unit_sise: unknown key/],
      ['site: demo\ningest:\n  out: x\ntrain:\n  out: y\n  batch: many\n', /train\.batch: .*expected number/i],
      ['ingest:\n  lists: [a.txt]\n  out: x\ntrain:\n  model: regnety_400mf\n', /train\.out: required, missing/],
      ['trian:\n  out: y\n', /trian: unknown key/],
      ['crawl:\n  seeds: []\n  out: x\n', /crawl\.seeds: /],
      ['site: demo\ningest:\n  out: x\nexport:\n  out: m\n', /export: needs a train stage/],
      ['crawl:\n  seeds: [http://a/]\n  out: x\n  max_pages: -1\n', /crawl\.max_pages: /],
      ['', /no stage to run/],
      ['site: demo\n', /no stage to run/],
      ['train:\n  data: d\n  out: y\n  steps: 5\n  epochs: 1\n', /train\.epochs: set steps or epochs, not both/],
      [
        'site: demo\ningest:\n  out: x\ntrain:\n  out: y\n  backend: wasm\n  precision: mixed\n',
        /train\.precision: applies to the webgpu backend, and train\.backend is wasm/,
      ],
      [
        'site: demo\ningest:\n  out: x\ntrain:\n  out: y\n  batch: 4\n  queue_length: 6\n',
        /train\.queue_length: 6 is not a multiple of train\.batch \(4\): the queue holds whole batches/,
      ],
      [
        'site: demo\ningest:\n  out: x\ntrain:\n  out: y\n  queue_length: 96\n',
        /train\.queue_length: 96 is not a multiple of train\.batch \(64\)/,
      ],
      [
        'site: demo\ningest:\n  out: x\ntrain:\n  out: y\n  queue_start: 50\n',
        /train\.queue_start: 50 needs a queue, and train\.queue_length is 0 \(no queue\): set it, or leave out train\.queue_start/,
      ],
      [
        'site: demo\ningest:\n  out: x\ntrain:\n  out: y\n  crops: 1x32\n',
        /train\.crops: SwAV needs at least two crops/,
      ],
      [
        'ingest:\n  lists: [a.txt]\n  out: x\n  queue: redis://127.0.0.1:6379/15\n  retry_failed: true\n',
        /ingest\.retry_failed=true runs here, not on a queue: drop ingest\.queue/,
      ],
      [
        'ingest:\n  lists: [a.txt]\n  out: x\n  retry_reasons: http_404\n',
        /ingest\.retry_reasons needs ingest\.retry_failed=true/,
      ],
    ];
    // In-process (main returns the exit code): the checks run before any work, so spawning a CLI per case adds only time.
    for (const [i, [yaml, message]] of cases.entries()) {
      const file = join(dir, `bad${i}.yaml`);
      await writeFile(file, yaml);
      const r = await mainIn(['run', file]);
      expect(r.code, yaml).toBe(2);
      expect(r.stderr, yaml).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    const bad = await mainIn(['run', DEMO, '--set', 'train.steps=lots'], join(dir, 'data'));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/train\.steps: .*expected number/i);
    expect((await readdir(join(dir, 'data'))).sort()).toEqual([
      'checkpoints',
      'dataset',
      'demo-urls.txt',
      'embeddings.arrow',
      'model',
      'model-init',
      'report',
    ]);
  }, 120_000);
});

/** Runs the CLI in this process (in `cwd`), collecting what it writes to stdout and stderr. */
async function mainIn(args: string[], cwd = process.cwd()): Promise<{ code: number; stdout: string; stderr: string }> {
  let [stdout, stderr] = ['', ''];
  const back = process.cwd();
  process.chdir(cwd);
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    stdout += String(chunk);
    return true;
  });
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const code = await main(['node', 'wildstream', ...args]);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    spy.mockRestore();
    process.chdir(back);
  }
}

/** Runs `wildstream run` and sends SIGINT (as Ctrl-C does) once stdout shows `marker`. */
const runUntil = (args: string[], marker: string, cwd: string) =>
  spawnCli(args, { cwd, stopWhen: ({ stdout }) => stdout.includes(marker), stopSignal: 'SIGINT' });

/** A pipeline of one short train stage on a tiny model, checkpointing every 2 steps. */
const TRAIN_ONLY = [
  'train:',
  '  data: ds',
  '  out: ck',
  '  model: custom:2,8,8,2,8',
  '  backend: wasm',
  '  batch: 8',
  '  steps: 400',
  '  crops: 2x16@0.3-1',
  '  prototypes: 8',
  '  hidden: 16',
  '  dim: 8',
  '  freeze_prototypes: 1',
  '  checkpoint_every: 2',
  '  log_every: 1',
  '  threads: 1',
  '',
].join('\n');

describe('wildstream run: Ctrl-C', () => {
  it('reports an interrupted stage as interrupted (exit 130), and a rerun resumes', async () => {
    const root = await mkdtemp(join(tmpdir(), 'ws-pipeline-int-'));
    try {
      await writePhotoDataset(await openStore(join(root, 'ds')), { units: 1, perUnit: 8 });
      await writeFile(join(root, 'p.yaml'), TRAIN_ONLY);
      const r = await runUntil(['run', 'p.yaml'], 'checkpoint checkpoints/', root);
      expect(r.code, r.stderr).toBe(130);
      expect(r.stderr).toMatch(
        /pipeline interrupted by SIGINT during stage train; rerun the same `wildstream run` to resume/,
      );
      expect(r.stderr).not.toMatch(/failed/);
      const at = Number(/"step":(\d+)/.exec(r.stdout.split('\n').find((l) => l.includes('"train_done"'))!)![1]);
      // The reruns in this process: the resume and the advice are the pipeline's (the interrupted run above is
      // the CLI process the signal stops).
      const again = await mainIn(['run', 'p.yaml', '--set', `train.steps=${at + 1}`], root);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toMatch(new RegExp(`resuming at step ${at} from`));
      // Finished: the advice names the pipeline key, not the flag of `wildstream train`.
      const done = await mainIn(['run', 'p.yaml', '--set', `train.steps=${at + 1}`], root);
      expect(done.code, done.stderr).toBe(0);
      expect(done.stdout + done.stderr).toMatch(
        /is at step \d+, already at or past train\.steps \d+: nothing to train \(raise train\.steps to go on\)/,
      );
      expect(done.stdout + done.stderr).not.toMatch(/--steps/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }, 180_000);

  it('reports a stage stopped by SIGHUP (a closed terminal) as interrupted, exit 129, not as failed', async () => {
    const root = await mkdtemp(join(tmpdir(), 'ws-pipeline-hup-'));
    try {
      await writePhotoDataset(await openStore(join(root, 'ds')), { units: 1, perUnit: 8 });
      await writeFile(join(root, 'p.yaml'), TRAIN_ONLY);
      const r = await spawnCli(['run', 'p.yaml'], {
        cwd: root,
        stopWhen: ({ stdout }) => stdout.includes('checkpoint checkpoints/'),
        stopSignal: 'SIGHUP',
      });
      expect(r.code, r.stderr).toBe(129);
      // It said "stage train failed (exit 129); fix the cause and rerun".
      expect(r.stderr).toMatch(/pipeline interrupted by SIGHUP during stage train; rerun the same `wildstream run`/);
      expect(r.stderr).not.toMatch(/failed/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }, 180_000);
});
