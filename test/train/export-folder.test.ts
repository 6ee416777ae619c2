/**
 * The model folder as readers see it: an export changes it all at once or not at all (local and S3 stores), a
 * loader reading beside an export gets one whole model, and a damaged folder is one ConfigError naming the
 * folder, the file and what to do. Models here are tiny and built from seeds (no training).
 */
import { cp, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, StoreUnavailableError } from '../../src/errors.js';
import { getBytes, openStore, type Store } from '../../src/shards/store.js';
import { startBackend } from '../../src/train/backend.js';
import { InvalidCheckpointError } from '../../src/train/checkpoint.js';
import { exportBackbone } from '../../src/train/export.js';
import { loadBackbone } from '../../src/train/model-folder.js';
import { ParamSet } from '../../src/train/params.js';
import { buildRegnet } from '../../src/train/regnet.js';
import { regnetSpec } from '../../src/train/regnet-spec.js';
import { runCli } from '../helpers/cli.js';
import { startS3 } from '../helpers/s3-server.js';

/** Two models of one architecture (a mix of them loads, but computes the other) and one of another. */
const MODELS = {
  a: { seed: 1, model: 'custom:3,16,8,2,16', step: 100 },
  b: { seed: 2, model: 'custom:3,16,8,2,16', step: 200 },
  c: { seed: 3, model: 'custom:2,8,8,2,8', step: 300 },
} as const;
type Name = keyof typeof MODELS;

let dir: string;
const path = (...p: string[]) => join(dir, ...p);
let input: tf.Tensor4D;
/** Each model's features of `input`, from an export of its own into an empty folder. */
const reference = {} as Record<Name, number[]>;

async function exportModel(out: Store, name: Name): Promise<void> {
  const { seed, model, step } = MODELS[name];
  const spec = regnetSpec(model);
  const ps = new ParamSet(seed);
  try {
    buildRegnet(ps, spec);
    await exportBackbone(out, ps, spec, { model, step, inputSize: 32 });
  } finally {
    ps.dispose();
  }
}

/** What a reader of the folder gets: the step model.json says, and the features the weights compute. */
async function read(store: Store): Promise<{ step: number; features: number[] }> {
  const backbone = await loadBackbone(store);
  const out = backbone.embed(input);
  const features = Array.from(out.dataSync());
  out.dispose();
  backbone.model.dispose();
  return { step: backbone.metadata.step, features };
}

/** Asserts that `store` holds model `name`, whole: its step and its own features. */
async function expectModel(store: Store, name: Name): Promise<void> {
  const got = await read(store);
  expect(got.step).toBe(MODELS[name].step);
  expect(got.features.length).toBe(reference[name].length);
  const gap = Math.max(...got.features.map((v, i) => Math.abs(v - reference[name][i]!)));
  expect(gap, `features of ${name}`).toBeLessThan(1e-5);
}

async function keys(store: Store): Promise<string[]> {
  const out: string[] = [];
  for await (const { key } of store.list('')) out.push(key);
  return out.sort();
}

/** `store`, except that a put of `key` fails as a full disk or a lost connection would. */
function failingPut(store: Store, key: string): Store {
  return {
    url: store.url,
    put: async (k, body) => {
      if (k === key) throw new StoreUnavailableError(`injected failure writing ${k}`);
      return store.put(k, body);
    },
    get: (k) => store.get(k),
    getRange: (k, start, end, options) => store.getRange(k, start, end, options),
    head: (k) => store.head(k),
    list: (prefix) => store.list(prefix),
    delete: (k) => store.delete(k),
  };
}

/** Rewrites an export in `store` into the layout of exports before weights names carried a hash: weights.bin. */
async function toLegacyLayout(store: Store): Promise<void> {
  const json = JSON.parse(Buffer.from(await getBytes(store, 'model.json')).toString('utf8'));
  const [file] = json.weightsManifest[0].paths;
  await store.put('weights.bin', await getBytes(store, file));
  json.weightsManifest[0].paths = ['weights.bin'];
  await store.put('model.json', Buffer.from(JSON.stringify(json)));
  await store.delete(file);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-export-folder-'));
  await startBackend('cpu');
  input = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 11) as tf.Tensor4D;
  for (const name of Object.keys(MODELS) as Name[]) {
    const store = await openStore(path('ref', name));
    await exportModel(store, name);
    reference[name] = (await read(store)).features;
  }
  // The two seeds of one architecture compute different features: a mix of them would show.
  const gap = Math.max(...reference.a.map((v, i) => Math.abs(v - reference.b[i]!)));
  expect(gap).toBeGreaterThan(1e-3);
}, 60_000);

afterAll(async () => {
  input?.dispose();
  await rm(dir, { recursive: true, force: true });
});

/**
 * An export whose model.json cannot be written leaves the previous export whole and no file of its own (a new
 * folder, a folder of this version's layout, a folder of weights.bin); the next export replaces it whole and
 * removes the weights the replaced model.json named.
 */
async function exportIsAtomic(open: (name: string) => Promise<Store>): Promise<void> {
  for (const [before, after] of [
    ['a', 'b'],
    ['a', 'c'],
  ] as const) {
    for (const legacy of [false, true]) {
      const store = await open(`${before}-${after}-${legacy ? 'legacy' : 'current'}`);
      await exportModel(store, before);
      if (legacy) await toLegacyLayout(store);
      const old = await keys(store);
      await expect(exportModel(failingPut(store, 'model.json'), after)).rejects.toThrow(/injected failure/);
      await expectModel(store, before);
      // The failed export removed the weights file it wrote: no file is left that no export names.
      expect(await keys(store)).toEqual(old);
      // A failed weights write changes nothing either (the weights name is the hash of the model's bytes).
      const [weights] = (await keys(await openStore(path('ref', after)))).filter((k) => k !== 'model.json');
      await expect(exportModel(failingPut(store, weights!), after)).rejects.toThrow(/injected failure/);
      await expectModel(store, before);
      expect(await keys(store)).toEqual(old);

      await exportModel(store, after);
      await expectModel(store, after);
      expect(await keys(store)).toEqual(['model.json', expect.stringMatching(/^weights-[0-9a-f]{16}\.bin$/)]);
    }
  }
  // A new folder: the failed export leaves no model.json, so no model rather than a mix.
  const fresh = await open('fresh');
  await expect(exportModel(failingPut(fresh, 'model.json'), 'a')).rejects.toThrow(/injected failure/);
  await expect(loadBackbone(fresh)).rejects.toThrow(/holds no exported model \(no model\.json\)/);
  await exportModel(fresh, 'a');
  await expectModel(fresh, 'a');
}

describe('export into a model folder', () => {
  it('changes a local folder all at once or not at all', async () => {
    await exportIsAtomic((name) => openStore(path('atomic', name)));
  }, 60_000);

  it('changes an S3 folder all at once or not at all', async () => {
    const s3 = await startS3(['models']);
    const saved = { ...process.env };
    try {
      Object.assign(process.env, s3.env);
      await exportIsAtomic((name) => openStore(`s3://models/${name}`, { s3Endpoint: s3.endpoint }));
    } finally {
      process.env = saved;
      await s3.stop();
    }
  }, 120_000);

  it('gives a reader one whole model when an export replaces the folder between its reads', async () => {
    for (const legacy of [false, true]) {
      const inner = await openStore(path('race', String(legacy)));
      await exportModel(inner, 'a');
      if (legacy) await toLegacyLayout(inner);
      let raced = false;
      // The first weights read comes after model.json was read: an export of c runs to its end before it.
      const racing: Store = {
        ...failingPut(inner, ''),
        get: async (k) => {
          if (k.startsWith('weights') && !raced) {
            raced = true;
            await exportModel(inner, 'c');
          }
          return inner.get(k);
        },
      };
      await expectModel(racing, 'c');
      expect(raced).toBe(true);
    }
  }, 60_000);

  it('writes a folder that tfjs loadGraphModel loads from its URL, following the weights file model.json names', async () => {
    const folder = path('ref', 'a');
    const requested: string[] = [];
    const fetchFunc = async (url: string | URL | Request) => {
      const name = basename(new URL(url instanceof Request ? url.url : url).pathname);
      requested.push(name);
      return new Response(await readFile(join(folder, name)));
    };
    const model = await loadGraphModel('http://models.test/a/model.json', { fetchFunc });
    expect(requested).toEqual(['model.json', expect.stringMatching(/^weights-[0-9a-f]{16}\.bin$/)]);
    const out = model.execute({ images: input }, 'features') as tf.Tensor;
    expect(Math.max(...Array.from(out.dataSync(), (v, i) => Math.abs(v - reference.a[i]!)))).toBeLessThan(1e-5);
    out.dispose();
    model.dispose();
  }, 60_000);
});

describe('a damaged model folder', () => {
  /** A copy of export `a` that `damage` changes, and the name of its weights file. */
  async function damaged(name: string, damage: (folder: string, weights: string) => Promise<void>): Promise<Store> {
    const folder = path('damaged', name);
    await cp(path('ref', 'a'), folder, { recursive: true });
    const json = JSON.parse(await readFile(join(folder, 'model.json'), 'utf8'));
    const weights: string = json.weightsManifest[0].paths[0];
    await damage(folder, join(folder, weights));
    return openStore(folder);
  }
  const editJson = (edit: (json: any) => void) => async (folder: string) => {
    const json = JSON.parse(await readFile(join(folder, 'model.json'), 'utf8'));
    edit(json);
    await writeFile(join(folder, 'model.json'), JSON.stringify(json));
  };
  const W = 'weights(-[0-9a-f]{16})?\\.bin';

  const cases: Array<[string, (folder: string, weights: string) => Promise<void>, RegExp]> = [
    [
      'weights cut short',
      (_, w) => truncate(w, 5000),
      new RegExp(`${W} holds 5000 bytes where the \\d+ tensors its model\\.json lists need \\d+ \\(cut short`),
    ],
    ['weights empty', (_, w) => truncate(w, 0), new RegExp(`${W} holds 0 bytes where .* \\(cut short`)],
    [
      'weights twice as long',
      async (_, w) => writeFile(w, Buffer.concat([await readFile(w), await readFile(w)])),
      new RegExp(`${W} holds \\d+ bytes where .* \\(too long: written partly, or by another export\\)`),
    ],
    [
      'weights of the right size with one bit flipped',
      async (_, w) => {
        const bytes = await readFile(w);
        bytes[bytes.length >> 1]! ^= 0x10;
        await writeFile(w, bytes);
      },
      new RegExp(`${W} does not hold the bytes its name is the hash of \\(damaged after it was written\\)`),
    ],
    ['weights missing', (_, w) => rm(w), new RegExp(`${W}, the weights file its model\\.json names, is missing`)],
    [
      'model.json cut short',
      async (folder) => truncate(join(folder, 'model.json'), 300),
      /its model\.json is not JSON \(Unterminated string in JSON/,
    ],
    [
      'no weightsManifest',
      editJson((j) => delete j.weightsManifest),
      /its model\.json has no weightsManifest \(a non-empty list of \{ paths, weights \}\)/,
    ],
    [
      'a path out of the folder',
      editJson((j) => (j.weightsManifest[0].paths = ['../a/weights.bin'])),
      /weightsManifest\[0\]\.paths that is not a non-empty list of file names of the folder/,
    ],
    [
      'a tensor without shape',
      editJson((j) => delete j.weightsManifest[0].weights[2].shape),
      /weightsManifest\[0\]\.weights\[2\] that is not a tensor's \{ name, shape, dtype \}/,
    ],
    [
      'a string tensor',
      editJson((j) => (j.weightsManifest[0].weights[0].dtype = 'string')),
      /has a tensor \S+ of dtype string, which wildstream export never writes/,
    ],
    ['no topology', editJson((j) => delete j.modelTopology), /has no modelTopology with a node list/],
    [
      'metadata without inputSize',
      editJson((j) => delete j.userDefinedMetadata.inputSize),
      /has userDefinedMetadata\.inputSize missing, not an integer >= 1/,
    ],
    [
      'a std of two numbers',
      editJson((j) => (j.userDefinedMetadata.std = [1, 1])),
      /has userDefinedMetadata\.std \[1,1\], not 3 positive numbers/,
    ],
  ];

  it.each(cases)('%s: one ConfigError naming the folder, the file and the fix', async (name, damage, what) => {
    const store = await damaged(name.replace(/\W+/g, '-'), damage);
    const err = await loadBackbone(store).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as Error).message;
    expect(message).toMatch(
      new RegExp(`^the model folder ${store.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is damaged: `),
    );
    expect(message).toMatch(what);
    expect(message).toMatch(/; export the run into it again with `wildstream export <run> --out <dir>`$/);
    expect(message).not.toMatch(/\n/);
  });

  it('the CLI prints it on one line and exits 2', async () => {
    const store = await damaged('cli', (_, w) => truncate(w, 5000));
    const r = await runCli(['embed', path('damaged'), '--model', store.url, '--out', path('x.arrow')]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/the model folder \S+ is damaged: weights(-[0-9a-f]{16})?\.bin holds 5000 bytes/);
  }, 60_000);
});

it('exports InvalidCheckpointError from the package entry, as exportCheckpoint documents', async () => {
  const ws = await import('../../src/index.js');
  expect(ws.InvalidCheckpointError).toBe(InvalidCheckpointError);
});
