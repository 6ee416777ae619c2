/**
 * Reading a pipeline file and its `--set` overrides: a value that is not YAML is bad usage naming the --set
 * argument, no path reaches a prototype, and YAML merge keys are read (anchors under top-level `x-` keys).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { applySet, loadPipeline } from '../../src/pipeline/schema.js';
import { runCli } from '../helpers/cli.js';

let dir: string;
let file: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-pipeline-schema-'));
  file = join(dir, 'p.yaml');
  await writeFile(file, 'train:\n  data: ds\n  out: run\n  steps: 2\n');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The error `loadPipeline` refuses with (null if it accepts). */
const refusal = (sets: string[], f = file) =>
  loadPipeline(f, sets).then(
    () => null,
    (e: unknown) => e as Error,
  );

describe('--set', () => {
  it('refuses a value that is not YAML as bad usage (exit 2), naming the --set argument on one line', async () => {
    const err = await refusal(['train.steps=[1']);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.message).toBe('--set train.steps=[1: not a YAML value (Flow sequence must end with a ])');
    const r = await runCli(['run', file, '--set', 'train.steps=[1'], {}, 60_000, dir);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([
      'wildstream: --set train.steps=[1: not a YAML value (Flow sequence must end with a ])',
    ]);
  }, 60_000);

  it.each([
    ['__proto__.polluted=1', '__proto__'],
    ['train.__proto__.x=1', '__proto__'],
    ['constructor.prototype.polluted=1', 'constructor'],
    ['train.constructor.prototype.x=1', 'constructor'],
    ['train.prototype=1', 'prototype'],
  ])('refuses %s as an unknown key naming %s, and pollutes no prototype', async (set, key) => {
    const err = await refusal([set]);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.message).toBe(`--set ${set}: ${key}: unknown key`);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).x).toBeUndefined();
    const doc: Record<string, unknown> = {};
    expect(() => applySet(doc, set)).toThrow(ConfigError);
    expect(Object.keys(doc)).toEqual([]);
  });

  it('sets nested keys on own properties only', () => {
    const doc: Record<string, unknown> = { train: { steps: 2 } };
    applySet(doc, 'train.lr=0.5');
    applySet(doc, 'export.out=m');
    expect(doc).toEqual({ train: { steps: 2, lr: 0.5 }, export: { out: 'm' } });
  });
});

describe('pipeline stores', () => {
  it("refuses a later stage's bad store URL before any stage runs, naming its key", async () => {
    // Refused only when train opened it: after the whole ingest had run.
    const f = join(dir, 'stores.yaml');
    await writeFile(f, 'ingest:\n  lists: [u.txt]\n  out: ds\ntrain:\n  out: s3:/bkt/run\n');
    expect((await refusal([], f))!.message).toMatch(
      new RegExp(`^${f}: train\\.out: store URL s3:/bkt/run is malformed`),
    );
    for (const [set, key] of [
      ['export.out=s3://bkt/../m', 'export.out'],
      ['export.baseline=file:///m?x', 'export.baseline'],
      ['embed.out=s3://bkt/e.arrow?v=1', 'embed.out'],
      ['report.out=gs://bkt/r', 'report.out'],
    ] as const) {
      const err = await refusal(key === 'export.out' ? [set] : [set, 'export.out=m']);
      expect(err, set).toBeInstanceOf(ConfigError);
      expect(err!.message, set).toMatch(new RegExp(`^${file}: ${key.replace('.', '\\.')}: `));
    }
  });

  it('leaves room below a folder for its keys, and takes a file output as the one key it is', async () => {
    // 1000 bytes: too long a prefix for a run's checkpoints below it, a fine name for one Arrow file.
    const long = `s3://bkt/${'e'.repeat(994)}.arrow`;
    expect(Buffer.byteLength(long.slice('s3://bkt/'.length))).toBe(1000);
    expect(await refusal([`embed.out=${long}`, 'export.out=m'])).toBeNull();
    const err = await refusal([`train.out=${long}`]);
    expect(err?.message).toMatch(
      new RegExp(`^${file}: train\\.out: S3 prefix e+\\.arrow of s3://bkt/e+\\.arrow is 1000 bytes`),
    );
  });
});

describe('pipeline outputs', () => {
  it('refuses two stages writing one place, however the path is spelled', async () => {
    // export.baseline = export.out replaced the trained model by the initial one without a word.
    const f = join(dir, 'same.yaml');
    await writeFile(f, `train:\n  data: ds\n  out: run\nexport:\n  out: ${dir}/m\n  baseline: file://${dir}/m/\n`);
    const err = await refusal([], f);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.message).toBe(
      `${f}: export.baseline: file://${dir}/m/ is also export.out; give each stage its own output`,
    );
    expect((await refusal([`train.out=${dir}/./m/`], f))!.message).toMatch(/: export\.out: .* is also train\.out;/);
    expect(await refusal([`export.baseline=${dir}/m-init`], f)).toBeNull();
    // train.data is read, not written: not a second output (though train may not write into what it reads).
    expect(await refusal([`export.baseline=${dir}/m-init`, `train.data=${dir}/m`], f)).toBeNull();
  });
});

describe('pipeline outputs over what their stage reads', () => {
  // Each was refused only when its stage started: after the whole ingest (and training) had run.
  const base = 'ingest:\n  lists: [u.txt]\n  out: ds\ntrain:\n  out: run\nexport:\n  out: m\n';
  const cases: Array<[string, string[], string]> = [
    [
      'embed.out inside ingest.out',
      ['embed.out=ds/shards/e.arrow'],
      'embed.out ds/shards/e.arrow lies inside the dataset (ingest.out) ds, which the embed stage reads',
    ],
    [
      'embed.out inside the model it reads',
      ['embed.out=m/model.json'],
      'embed.out m/model.json lies inside the model folder (export.out) m, which the embed stage reads',
    ],
    [
      'embed.out inside embed.model',
      ['embed.out=other/weights.bin', 'embed.model=other'],
      'embed.out other/weights.bin lies inside the model folder (embed.model) other, which the embed stage reads',
    ],
    [
      'train.out inside ingest.out',
      ['train.out=ds/units/run'],
      'train.out ds/units/run lies inside the dataset (ingest.out) ds, which the train stage reads',
    ],
    [
      'train.out that is train.data',
      ['train.data=data', 'train.out=data'],
      'train.out data is the dataset (train.data) data, which the train stage reads',
    ],
    [
      'export.out inside train.out',
      ['export.out=run/checkpoints/model'],
      'export.out run/checkpoints/model lies inside the run (train.out) run, which the export stage reads',
    ],
    [
      'train.out holding ingest.out where the run keeps its files',
      ['ingest.out=run/metrics/ds'],
      'train.out run holds the dataset (ingest.out) run/metrics/ds, where the train stage would write its files',
    ],
    [
      'report.out inside the model folder',
      ['report.out=m/weights.bin'],
      'report.out m/weights.bin lies inside the model folder (export.out) m, which the report stage reads',
    ],
    [
      'report.out holding a k-NN folder',
      ['report.out=r', 'report.knn.train=r/eval/train', 'report.knn.test=t'],
      'report.out r holds the k-NN train folder (report.knn.train) r/eval/train, where the report stage would write its files',
    ],
    [
      "embed.out on a file of report.out's",
      ['embed.out=rep/knn.json', 'report.out=rep'],
      'embed.out rep/knn.json lies inside the output of the report stage (report.out) rep, which the report stage writes',
    ],
  ];

  it.each(cases)('refuses %s before any stage runs, naming the settings as the file does', async (_, sets, message) => {
    const f = join(dir, 'apart.yaml');
    await writeFile(f, base);
    const err = await refusal(sets, f);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.message).toBe(
      `${f}: ${message}, and writing there could overwrite it; give ${message.split(' ')[0]} a place outside it`,
    );
  });

  it('lets outputs beside their inputs be, and the shipped pipelines validate', async () => {
    const f = join(dir, 'apart-ok.yaml');
    await writeFile(f, base);
    expect(await refusal(['embed.out=ds-e.arrow', 'report.out=report', 'export.baseline=m-init'], f)).toBeNull();
    // Beside a store's own files: a run folder holding its models and report, embeddings by the dataset.
    const nested = ['export.out=run/model', 'export.baseline=run/model-init', 'report.out=run/report'];
    expect(await refusal([...nested, 'embed.out=ds/embeddings.arrow', 'train.out=.'], f)).toBeNull();
    for (const shipped of ['pipelines/demo.yaml', 'pipelines/web-to-s3.yaml'])
      expect(await refusal([], resolve(shipped)), shipped).toBeNull();
  });
});

describe('pipeline file keys', () => {
  it('refuses __proto__ and constructor keys of a file as unknown keys, without reaching a prototype', async () => {
    const f = join(dir, 'proto.yaml');
    await writeFile(f, 'train:\n  data: ds\n  out: run\n  __proto__: {polluted: 1}\n');
    expect((await refusal([], f))!.message).toBe(`${f}: train.__proto__: unknown key`);
    await writeFile(f, 'constructor: {}\ntrain:\n  data: ds\n  out: run\n');
    expect((await refusal([], f))!.message).toBe(`${f}: constructor: unknown key`);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('reads YAML merge keys, with anchors under a top-level x- key that is ignored', async () => {
    const f = join(dir, 'merge.yaml');
    await writeFile(
      f,
      [
        'x-defaults: &d',
        '  batch: 4',
        '  steps: 3',
        '  threads: 1',
        'train:',
        '  <<: *d',
        '  data: ds',
        '  out: run',
        '  steps: 5', // the stage's own key wins over the merged one
        'embed:',
        '  <<: [{ batch: 16 }, { backend: wasm }]',
        '  out: e.arrow',
        'export:',
        '  out: m',
      ].join('\n'),
    );
    const p = await loadPipeline(f);
    expect(p.train).toMatchObject({ batch: 4, steps: 5, threads: 1, data: 'ds', out: 'run' });
    expect(p.embed).toMatchObject({ batch: 16, backend: 'wasm', out: 'e.arrow' });
    expect(p).not.toHaveProperty('x-defaults');
    // a merged key the stage does not take is named as the stage's
    await writeFile(f, 'x-d: &d\n  batkh: 4\ntrain:\n  <<: *d\n  data: ds\n  out: run\n');
    expect((await refusal([], f))!.message).toBe(`${f}: train.batkh: unknown key (did you mean batch?)`);
  });
});

describe('list-valued keys', () => {
  it('take one string as a list of one (lists: urls.txt, as img2dataset takes one url_list), from a file and --set', async () => {
    const f = join(dir, 'one-list.yaml');
    await writeFile(f, 'ingest:\n  lists: urls.txt\n  out: ds\n  allow_address: 10.0.0.0/8\n');
    const p = await loadPipeline(f);
    expect(p.ingest).toMatchObject({ lists: ['urls.txt'], allowAddress: ['10.0.0.0/8'] });
    expect((await loadPipeline(f, ['ingest.lists=other.csv'])).ingest!.lists).toEqual(['other.csv']);
    expect((await loadPipeline(f, ['ingest.lists=[a.txt, b.txt]'])).ingest!.lists).toEqual(['a.txt', 'b.txt']);
    await writeFile(f, 'crawl:\n  seeds: http://example.org/\n  out: ds\n  hosts: example.org\n');
    expect((await loadPipeline(f)).crawl).toMatchObject({ seeds: ['http://example.org/'], hosts: ['example.org'] });
  });

  it('refuse another type with one line naming the key, what it takes and what it got', async () => {
    const f = join(dir, 'bad-list.yaml');
    const cases: Array<[string, string]> = [
      ['ingest:\n  lists: 5\n  out: ds\n', 'ingest.lists: expected a string or a list of strings, got a number'],
      ['ingest:\n  lists: {a: 1}\n  out: ds\n', 'ingest.lists: expected a string or a list of strings, got a mapping'],
      ['ingest:\n  lists:\n  out: ds\n', 'ingest.lists: expected a string or a list of strings, got null'],
      ['ingest:\n  lists: [5]\n  out: ds\n', 'ingest.lists.0: Invalid input: expected string, received number'],
      [
        'ingest:\n  lists: [u.txt]\n  out: ds\n  allow_address: 7\n',
        'ingest.allow_address: expected a string or a list of strings, got a number',
      ],
      ['crawl:\n  seeds: true\n  out: ds\n', 'crawl.seeds: expected a string or a list of strings, got a boolean'],
      ['crawl:\n  out: ds\n', 'crawl.seeds: required, missing'],
      ['crawl:\n  seeds: []\n  out: ds\n', 'crawl.seeds: Too small: expected array to have >=1 items'],
    ];
    for (const [yaml, message] of cases) {
      await writeFile(f, yaml);
      const err = await refusal([], f);
      expect(err, yaml).toBeInstanceOf(ConfigError);
      expect(err!.message).toBe(`${f}: ${message}`);
    }
  });
});
