// Rerunning a finished pipeline skips export, embed and report while their outputs are what the run would write
// again (same checkpoints, data and settings, outputs untouched), and redoes exactly the stages whose inputs or
// outputs changed.
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli.js';
import { openStore } from '../../src/shards/store.js';
import { writePhotoDataset } from '../helpers/dataset.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ws-pipeline-finished-'));
  await writePhotoDataset(await openStore(join(root, 'ds')), { units: 1, perUnit: 8 });
  await writeFile(
    join(root, 'p.yaml'),
    [
      ...['train:', '  data: ds', '  out: ck', '  model: custom:2,8,8,2,8', '  backend: wasm', '  batch: 8'],
      ...['  steps: 2', '  crops: 2x16@0.3-1', '  prototypes: 8', '  hidden: 16', '  dim: 8', '  threads: 1'],
      ...['  freeze_prototypes: 1', '  checkpoint_every: 2'],
      ...[
        'export:',
        '  out: model',
        '  baseline: model-init',
        'embed:',
        '  out: emb.arrow',
        'report:',
        '  out: report',
      ],
      '',
    ].join('\n'),
  );
}, 60_000);
afterAll(async () => rm(root, { recursive: true, force: true }));

/**
 * `wildstream run p.yaml` with `sets`, in this process (main returns the exit code) in `root`, collecting what it
 * writes: what is tested is the pipeline's choice of stages to redo, not the CLI process (run.test.ts spawns that),
 * and six CLI processes each loading tfjs cost more CPU than the runs themselves.
 */
async function run(...sets: string[]) {
  const r = { code: -1, stdout: '', stderr: '' };
  const back = process.cwd();
  process.chdir(root);
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((r.stdout += String(chunk)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((r.stderr += String(chunk)), true));
  try {
    r.code = await main(['node', 'wildstream', 'run', 'p.yaml', ...sets.flatMap((s) => ['--set', s])]);
  } finally {
    out.mockRestore();
    err.mockRestore();
    process.chdir(back);
  }
  expect(r.code, r.stderr).toBe(0);
  const ran = (stage: string) => new RegExp(`"event":"${stage}"`).test(r.stdout);
  const skipped = (stage: string) => new RegExp(`^${stage}: skipped, `, 'm').test(r.stdout);
  return { stdout: r.stdout, ran, skipped };
}

const mtime = async (file: string) => (await stat(join(root, file))).mtimeMs;

describe('wildstream run: a rerun of a finished pipeline', () => {
  it('skips the output stages, and redoes the ones whose inputs or outputs changed', async () => {
    const first = await run();
    expect(['export', 'embed'].map(first.ran)).toEqual([true, true]);
    expect(first.stdout).toMatch(/"event":"plot"/); // the report's curves
    const before = await Promise.all(['model/model.json', 'emb.arrow', 'report/curves.png'].map(mtime));

    const again = await run();
    expect(again.stdout).toMatch(/nothing to train/);
    expect(['export', 'embed', 'report'].map(again.skipped)).toEqual([true, true, true]);
    expect(again.stdout).toMatch(
      /^export: skipped, model and model-init already made from these checkpoints, data and settings \(delete them to redo\)$/m,
    );
    expect(['export', 'embed'].map(again.ran)).toEqual([false, false]);
    expect(await Promise.all(['model/model.json', 'emb.arrow', 'report/curves.png'].map(mtime))).toEqual(before);

    // An output deleted: only its stage runs again.
    await rm(join(root, 'emb.arrow'));
    const deleted = await run();
    expect([deleted.skipped('export'), deleted.ran('embed'), deleted.skipped('report')]).toEqual([true, true, true]);

    // A setting of one stage: only that stage runs again.
    const setting = await run('embed.batch=4');
    expect([setting.skipped('export'), setting.ran('embed'), setting.skipped('report')]).toEqual([true, true, true]);
    const report = await run('embed.batch=4', 'report.eval_images=8');
    expect([report.skipped('export'), report.skipped('embed'), report.skipped('report')]).toEqual([true, true, false]);

    // A new checkpoint: every output stage runs again.
    const longer = await run('embed.batch=4', 'train.steps=3');
    expect(longer.stdout).toMatch(/step 3\/3/);
    expect(['export', 'embed'].map(longer.ran)).toEqual([true, true]);
    expect(longer.skipped('report')).toBe(false);
  }, 240_000);
});
