import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileIn, openFile, putFile } from '../../src/shards/output.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-output-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('one-file outputs', () => {
  it('splits a path or URL into the store of its folder and the file name', async () => {
    expect(await openFile('s3://bucket/run/emb.arrow')).toMatchObject({
      key: 'emb.arrow',
      url: 's3://bucket/run/emb.arrow',
    });
    expect(await openFile('s3://bucket/emb.arrow')).toMatchObject({ key: 'emb.arrow', url: 's3://bucket/emb.arrow' });
    expect((await openFile('emb.arrow')).url).toBe(`file://${join(process.cwd(), 'emb.arrow')}`);
    expect((await openFile(`${pathToFileURL(dir).href}/a/b.png`)).url).toBe(`file://${dir}/a/b.png`);
    for (const bad of ['s3://bucket', 's3://bucket/', 'out/', 'out/..'])
      await expect(openFile(bad), bad).rejects.toThrow(/expected/);
    // The root folder's files have one slash before their name.
    expect((await openFile('file:///emb.arrow')).url).toBe('file:///emb.arrow');
  });

  it('refuses a file URL with a query string or fragment instead of writing it into the file name', async () => {
    for (const url of [`${pathToFileURL(dir).href}/e.arrow?x=1`, 's3://bucket/run/e.arrow#v2'])
      await expect(openFile(url), url).rejects.toThrow(/query string or fragment/);
  });

  it('writes through the store, creating folders, and joins folder URLs', async () => {
    const url = await putFile(join(dir, 'new', 'deeper', 'x.json'), Buffer.from('{}'));
    expect(url).toBe(`file://${dir}/new/deeper/x.json`);
    expect(await readFile(join(dir, 'new', 'deeper', 'x.json'), 'utf8')).toBe('{}');
    expect(fileIn('s3://b/report', 'knn.json')).toBe('s3://b/report/knn.json');
    expect(fileIn('data/report/', 'knn.json')).toBe('data/report/knn.json');
  });
});
