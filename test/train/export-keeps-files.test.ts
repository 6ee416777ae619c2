/**
 * An export changes only what is its own: model.json and the weights file it names, and the weights files that
 * the model.json it replaces named. Other files of the folder stay, even ones named like weights (a user's
 * `weights.bin` beside which they export), and another program's model.json is refused, not replaced.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { openStore, type Store } from '../../src/shards/store.js';
import { startBackend } from '../../src/train/backend.js';
import { exportBackbone } from '../../src/train/export.js';
import { loadBackbone } from '../../src/train/model-folder.js';
import { ParamSet } from '../../src/train/params.js';
import { buildRegnet } from '../../src/train/regnet.js';
import { regnetSpec } from '../../src/train/regnet-spec.js';

const MODEL = 'custom:2,8,8,2,8';
let dir: string;

async function exportSeed(out: Store, seed: number): Promise<void> {
  const spec = regnetSpec(MODEL);
  const ps = new ParamSet(seed);
  try {
    buildRegnet(ps, spec);
    await exportBackbone(out, ps, spec, { model: MODEL, step: seed, inputSize: 16 });
  } finally {
    ps.dispose();
  }
}

/** A folder holding `files` (name -> text), and its store. */
async function folderWith(name: string, files: Record<string, string>): Promise<{ path: string; store: Store }> {
  const path = join(dir, name);
  await mkdir(path, { recursive: true });
  for (const [file, text] of Object.entries(files)) await writeFile(join(path, file), text);
  return { path, store: await openStore(path) };
}

const weightsOf = async (path: string) =>
  JSON.parse(await readFile(join(path, 'model.json'), 'utf8')).weightsManifest[0].paths as string[];

const USER_FILES = { 'weights.bin': 'precious', 'weights-0123456789abcdef.bin': 'p2', 'notes.txt': 'mine' };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-export-keeps-'));
  await startBackend('cpu');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('an export cut short', () => {
  it('leaves its weights file to the next export, which removes it (and nothing else)', async () => {
    const { path, store } = await folderWith('killed', USER_FILES);
    await exportSeed(store, 1);
    const first = await weightsOf(path);
    // What an export killed between its weights and its model.json leaves: the marker and an unnamed file.
    const orphan = 'weights-fedcba9876543210.bin';
    await writeFile(join(path, orphan), 'cut short');
    await writeFile(join(path, 'export-pending.json'), JSON.stringify({ weights: orphan }));
    await exportSeed(store, 2);
    const files = await readdir(path);
    expect(files).not.toContain(orphan);
    expect(files).not.toContain('export-pending.json');
    expect(files).not.toContain(first[0]);
    for (const [file, text] of Object.entries(USER_FILES)) expect(await readFile(join(path, file), 'utf8')).toBe(text);
    expect((await loadBackbone(store)).metadata.step).toBe(2);
  });
});

describe('export into a folder that holds other files', () => {
  it('keeps every file of a folder that holds no export, even those named like weights files', async () => {
    const { path, store } = await folderWith('no-export', USER_FILES);
    await exportSeed(store, 1);
    for (const [file, text] of Object.entries(USER_FILES)) expect(await readFile(join(path, file), 'utf8')).toBe(text);
    expect((await loadBackbone(store)).metadata.step).toBe(1);
  }, 30_000);

  it('removes only the weights file the replaced model.json named', async () => {
    const { path, store } = await folderWith('replace', {});
    await exportSeed(store, 1);
    const [first] = await weightsOf(path);
    for (const [file, text] of Object.entries(USER_FILES)) await writeFile(join(path, file), text);
    await exportSeed(store, 2);
    const [second] = await weightsOf(path);
    expect(second).not.toBe(first);
    expect((await readdir(path)).sort()).toEqual(['model.json', second, ...Object.keys(USER_FILES)].sort());
    for (const [file, text] of Object.entries(USER_FILES)) expect(await readFile(join(path, file), 'utf8')).toBe(text);
  }, 30_000);

  it('exporting the same model again keeps its weights file', async () => {
    const { path, store } = await folderWith('again', {});
    await exportSeed(store, 3);
    await exportSeed(store, 3);
    expect((await readdir(path)).sort()).toEqual(['model.json', ...(await weightsOf(path))].sort());
    expect((await loadBackbone(store)).metadata.step).toBe(3);
  }, 30_000);

  it("refuses a folder whose model.json is another program's, writing nothing", async () => {
    const layers = JSON.stringify({ format: 'layers-model', weightsManifest: [{ paths: ['weights.bin'] }] });
    const { path, store } = await folderWith('foreign', { 'model.json': layers, 'weights.bin': 'theirs' });
    const err = await exportSeed(store, 1).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/holds a model\.json that is not a wildstream export/);
    expect((await readdir(path)).sort()).toEqual(['model.json', 'weights.bin']);
    expect(await readFile(join(path, 'model.json'), 'utf8')).toBe(layers);
  });

  it('replaces a damaged export whose model.json is not JSON, keeping the other files', async () => {
    const { path, store } = await folderWith('damaged', { 'model.json': '{"modelTop', 'weights.bin': 'precious' });
    await exportSeed(store, 4);
    expect((await loadBackbone(store)).metadata.step).toBe(4);
    expect(await readFile(join(path, 'weights.bin'), 'utf8')).toBe('precious');
  }, 30_000);
});
