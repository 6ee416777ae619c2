/**
 * No command writes its output over what it reads: an output that is an input, lies inside an input dataset,
 * model folder or run, or (a folder output) holds one is refused before any work, on one line with exit 2, and
 * the input is left as it was. checkOutputApart is the one check; the CLI cases show each command uses it.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { patternJpeg } from '../../src/fixtures/images.js';
import {
  checkOutputApart,
  DATASET_FILES,
  DATASET_OR_IMAGES,
  IMAGE_FILES,
  MODEL_FILES,
  RUN_FILES,
  type Owns,
} from '../../src/jobs/output-apart.js';
import { exportJob } from '../../src/jobs/outputs.js';
import { pipelineNames } from '../../src/options/declare.js';
import { openStore } from '../../src/shards/store.js';
import { startBackend } from '../../src/train/backend.js';
import { exportBackbone } from '../../src/train/export.js';
import { ParamSet } from '../../src/train/params.js';
import { buildRegnet } from '../../src/train/regnet.js';
import { regnetSpec } from '../../src/train/regnet-spec.js';
import { runCli } from '../helpers/cli.js';

let dir: string;
const path = (...p: string[]) => join(dir, ...p);

/** What a file of the fixture held at the start, to show that a refused command changed nothing. */
const ORIGINALS: Record<string, string> = {
  'ds/shards/000000.arrow': 'shard bytes',
  'ds/units/000000.json': '{"unit":0}',
  'run/metrics/step-000000100.jsonl': '{"step":100}\n',
  'run/checkpoints/step-000000100.ckpt': 'checkpoint bytes',
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-output-apart-'));
  for (const [file, text] of Object.entries(ORIGINALS)) {
    await mkdir(join(path(file), '..'), { recursive: true });
    await writeFile(path(file), text);
  }
  await mkdir(path('imgs'));
  await writeFile(path('imgs', 'a.jpg'), await patternJpeg(1, { width: 32, height: 32 }));
  await symlink(path('ds'), path('ds-link'));
  await startBackend('cpu');
  const spec = regnetSpec('custom:2,8,8,2,8');
  const ps = new ParamSet(1);
  buildRegnet(ps, spec);
  await exportBackbone(await openStore(path('model')), ps, spec, { model: 'custom:2,8,8,2,8', step: 1, inputSize: 16 });
  ps.dispose();
  ORIGINALS['model/model.json'] = await readFile(path('model', 'model.json'), 'utf8');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Owns all of a place: the path comparisons alone decide. */
const ALL: Owns = () => true;

/** The ConfigError message checkOutputApart refuses with, or undefined when it lets the output be. */
async function refusal(out: string, input: string, owns?: Owns, inputOwns = ALL): Promise<string | undefined> {
  const output = { key: 'out', location: out, ...(owns ? { owns } : {}) };
  return checkOutputApart('embed', output, [{ location: input, what: 'the input', owns: inputOwns }])
    .then(() => undefined)
    .catch((err: unknown) => {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    });
}

describe('checkOutputApart', () => {
  it('refuses an output that is an input or lies inside one, however the two are written', async () => {
    const cwdRelative = relative(process.cwd(), path('ds', 'e.arrow'));
    for (const [out, input] of [
      [path('ds'), path('ds')],
      [path('ds', 'shards', '000000.arrow'), path('ds')],
      [`${path('ds')}//shards/./x.arrow`, `${path('ds')}/`],
      [cwdRelative, path('ds')],
      [pathToFileURL(path('ds', 'e.arrow')).href, path('ds')],
      [path('ds', 'e.arrow'), pathToFileURL(path('ds')).href],
      // Through a symbolic link, and below it into folders that do not exist yet.
      [path('ds-link', 'new', 'e.arrow'), path('ds')],
      [path('ds', 'e.arrow'), path('ds-link')],
      ['s3://bkt/runs/r1/curves.png', 's3://bkt/runs/r1'],
      ['s3://bkt/runs/r1', 's3://bkt/runs/r1/'],
    ]) {
      expect(await refusal(out!, input!), `${out} in ${input}`).toMatch(/^--out \S+ (is|lies inside) the input \S+/);
    }
  });

  it('refuses a folder output that holds an input, and lets a file output sit above one', async () => {
    expect(await refusal(dir, path('ds'), ALL)).toMatch(/^--out \S+ holds the input \S+, where embed would write its/);
    expect(await refusal('s3://bkt/runs', 's3://bkt/runs/r1', ALL)).toMatch(/holds the input/);
    expect(await refusal(path('e.arrow'), path('ds'))).toBeUndefined();
  });

  it('lets outputs beside their inputs be, names compared whole (r1 is not r10)', async () => {
    for (const [out, input] of [
      [path('ds2', 'e.arrow'), path('ds')],
      [path('dsx.arrow'), path('ds')],
      ['s3://bkt/runs/r10/curves.png', 's3://bkt/runs/r1'],
      ['s3://other/runs/r1/curves.png', 's3://bkt/runs/r1'],
      ['s3://bkt/runs/r1/x.png', path('runs', 'r1')],
    ]) {
      expect(await refusal(out!, input!), `${out} in ${input}`).toBeUndefined();
    }
  });

  it('refuses only where an input keeps its files, or a folder output would write its own', async () => {
    const run = path('runs', 'r1');
    // Beside a store's own files: the layouts users keep (curves and models in the run, embeddings by the data).
    for (const [out, input, owns, inputOwns] of [
      [path('runs', 'r1', 'curves.png'), run, undefined, RUN_FILES],
      [path('runs', 'r1', 'model'), run, MODEL_FILES, RUN_FILES],
      [dir, run, MODEL_FILES, RUN_FILES], // export --out . beside runs/
      [dir, path('ds'), RUN_FILES, DATASET_FILES], // train --out . beside ds/
      [path('ds', 'embeddings.arrow'), path('ds'), undefined, DATASET_OR_IMAGES],
      [path('imgs', 'embeddings.arrow'), path('imgs'), undefined, DATASET_OR_IMAGES],
      [path('model', 'e.arrow'), path('model'), undefined, MODEL_FILES],
    ] as const) {
      expect(await refusal(out, input, owns, inputOwns), `${out} by ${input}`).toBeUndefined();
    }
    // Where they are kept or written.
    for (const [out, input, owns, inputOwns] of [
      [path('runs', 'r1', 'metrics', 'x.png'), run, undefined, RUN_FILES],
      [path('runs', 'r1', 'checkpoints', 'm'), run, MODEL_FILES, RUN_FILES],
      [path('ds', 'units', 'e.arrow'), path('ds'), undefined, DATASET_OR_IMAGES],
      [path('imgs', 'b.png'), path('imgs'), undefined, DATASET_OR_IMAGES],
      [path('imgs', 'report'), path('imgs'), RUN_FILES, IMAGE_FILES],
      [path('model', 'model.json'), path('model'), undefined, MODEL_FILES],
      [path('model', 'weights-0123456789abcdef.bin'), path('model'), undefined, MODEL_FILES],
      [dir, path('checkpoints'), RUN_FILES, DATASET_FILES], // train --out . over a dataset named checkpoints/
    ] as const) {
      expect(await refusal(out, input, owns, inputOwns), `${out} by ${input}`).toMatch(/^--out /);
    }
  });

  it("names the option as the caller's names word it, on one line", async () => {
    const refused = checkOutputApart(
      'embed',
      { key: 'out', location: path('model', 'model.json') },
      [{ location: path('model'), what: 'the model folder', owns: MODEL_FILES }],
      pipelineNames('embed'),
    );
    await expect(refused).rejects.toThrow(
      /^embed\.out \S+ lies inside the model folder \S+, which embed reads.*give embed\.out a place outside it$/,
    );
  });

  it("names export's output as a pipeline's export stage names it", async () => {
    // A pipeline's export stage was refused as "--out ...", a flag its file does not have.
    const o = { out: path('run', 'checkpoints', 'model'), init: false, storeAttempts: 5, storeIdleTimeout: 60 };
    await expect(exportJob(path('run'), o, pipelineNames('export'))).rejects.toThrow(
      /^export\.out \S+ lies inside the run \S+, which export reads.*give export\.out a place outside it$/,
    );
  });
});

describe('every command refuses to write over its inputs (exit 2, one line, nothing changed)', () => {
  const cases: Array<[string, string[], RegExp]> = [
    [
      'embed into a shard of its dataset',
      ['embed', 'ds', '--model', 'model', '--out', 'ds/shards/000000.arrow'],
      /^wildstream: --out ds\/shards\/000000\.arrow lies inside the dataset or image folder ds, which embed reads/,
    ],
    [
      "embed over its model's model.json",
      ['embed', 'imgs', '--model', 'model', '--out', 'model/model.json'],
      /^wildstream: --out model\/model\.json lies inside the model folder model, which embed reads/,
    ],
    [
      'embed through a link into its dataset',
      ['embed', 'ds', '--model', 'model', '--out', 'ds-link/units/000000.json'],
      /lies inside the dataset or image folder ds, which embed reads/,
    ],
    [
      'plot over a metrics file of its run',
      ['plot', 'run', '--out', 'run/metrics/step-000000100.jsonl'],
      /^wildstream: --out run\/metrics\/step-000000100\.jsonl lies inside the run run, which plot reads/,
    ],
    [
      'export into its run',
      ['export', 'run', '--out', 'run/checkpoints'],
      /^wildstream: --out run\/checkpoints lies inside the run run, which export reads/,
    ],
    [
      'train into its dataset',
      ['train', '--data', 'ds', '--out', 'ds/shards/run', '--steps', '1'],
      /^wildstream: --out ds\/shards\/run lies inside the dataset ds, which train reads/,
    ],
    [
      'augment preview over a unit record',
      ['augment', 'preview', 'ds', '--out', 'ds/units/000000.json'],
      /^wildstream: --out ds\/units\/000000\.json lies inside the dataset ds, which augment preview reads/,
    ],
  ];

  it.each(cases)('%s', async (_, args, message) => {
    const r = await runCli(args, {}, 60_000, dir);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    for (const [file, text] of Object.entries(ORIGINALS)) expect(await readFile(path(file), 'utf8'), file).toBe(text);
    expect((await readdir(path('run'))).sort()).toEqual(['checkpoints', 'metrics']);
  });
});
