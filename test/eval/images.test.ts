// Listing evaluation folders: symbolic links followed as torchvision's ImageFolder follows them (a missing
// target counted, a loop not followed), file:// URLs taken as paths, and k-NN's one folder per class enforced.
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { listClassImages, listImages } from '../../src/eval/images.js';

let dir: string;
const path = (...p: string[]) => join(dir, ...p);

async function put(...files: string[]): Promise<void> {
  for (const f of files) {
    await mkdir(join(f, '..'), { recursive: true });
    await writeFile(f, 'bytes');
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-images-'));
  await put(path('real', 'cat', '1.jpg'), path('real', 'dog', '2.png'), path('real', 'dog', 'deep', '3.webp'));
  // links: to an image file, to a class folder, to nothing, and back up to the root (a loop)
  await put(path('links', 'cat', 'own.jpg'));
  await symlink(path('real', 'cat', '1.jpg'), path('links', 'cat', 'linked.jpg'));
  await symlink(path('real', 'dog'), path('links', 'dog'));
  await symlink(path('real', 'gone.jpg'), path('links', 'cat', 'gone.jpg'));
  await symlink(path('real', 'gone'), path('links', 'gone-folder'));
  await symlink(path('links'), path('links', 'cat', 'loop'));
  await put(path('flat', '1.jpg'), path('flat', '2.jpg'), path('flat', 'notes.txt'));
  await put(path('mixed', 'a', '1.jpg'), path('mixed', 'b', '2.jpg'), path('mixed', 'stray.jpg'));
  await put(
    path('store', 'dataset.json'),
    path('store', 'units', '000000.json'),
    path('store', 'shards', '000000.arrow'),
  );
  await mkdir(path('empty'));
  await mkdir(path('hollow', 'a'), { recursive: true });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('listImages', () => {
  it('follows symbolic links to images and to folders; a link to nothing is a broken image, a loop is not followed', async () => {
    // Before: only Dirent.isFile() entries were kept, so a folder of links read as empty.
    const l = await listImages(path('links'));
    expect(l.files.map((f) => [f.key, f.label])).toEqual([
      ['cat/linked.jpg', 'cat'],
      ['cat/own.jpg', 'cat'],
      ['dog/2.png', 'dog'],
      ['dog/deep/3.webp', 'dog'],
    ]);
    expect(l.files[0]!.path).toBe(path('links', 'cat', 'linked.jpg'));
    expect(l.broken).toEqual(['cat/gone.jpg']); // a broken link to a folder names no image: not counted
    expect(l.loops).toEqual(['cat/loop']);
  });

  it('takes a file:// URL as the folder it names', async () => {
    // Before: the URL string went to readdir, ENOENT.
    const byUrl = await listImages(pathToFileURL(path('real')).href);
    expect(byUrl.files.map((f) => f.key)).toEqual(['cat/1.jpg', 'dog/2.png', 'dog/deep/3.webp']);
    expect(byUrl.files[0]!.path).toBe(path('real', 'cat', '1.jpg'));
  });

  it('refuses a folder that cannot be read, or that is not local, with a ConfigError', async () => {
    await expect(listImages(path('nowhere'))).rejects.toThrow(
      new ConfigError(`cannot read image folder ${path('nowhere')}: ENOENT`),
    );
    await expect(listImages('s3://bucket/images')).rejects.toThrow(/a folder of images must be local/);
  });
});

describe('listClassImages', () => {
  it('labels images by their class folder', async () => {
    const l = await listClassImages(path('links'));
    expect(l.files.map((f) => f.label)).toEqual(['cat', 'cat', 'dog', 'dog']);
    expect(l.unlabelled).toEqual([]);
  });

  it('refuses a folder whose images are all at its root, naming it and the layout expected', async () => {
    // Before: every image got label '' and the k-NN scored 1 (or 0 against a labelled test folder).
    const err = await listClassImages(path('flat'), 'the train folder').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toBe(
      `the train folder ${path('flat')} has 2 images but no class folder: k-NN reads one folder per class, <folder>/<class>/<image> (as torchvision's ImageFolder does)`,
    );
  });

  it('refuses a dataset store, whose records carry no label', async () => {
    await expect(listClassImages(path('store'), 'the train folder')).rejects.toThrow(
      new ConfigError(
        `the train folder ${path('store')} is a dataset store, whose images carry no labels: k-NN reads one folder per class, <folder>/<class>/<image> (as torchvision's ImageFolder does)`,
      ),
    );
  });

  it('leaves out images at the root beside class folders, listing them; an empty folder lists nothing', async () => {
    const l = await listClassImages(path('mixed'));
    expect(l.files.map((f) => f.key)).toEqual(['a/1.jpg', 'b/2.jpg']);
    expect(l.unlabelled).toEqual(['stray.jpg']);
    // No image at all is no layout fault: the caller says the folder has no image (a NoDataError).
    for (const name of ['empty', 'hollow']) expect((await listClassImages(path(name))).files).toEqual([]);
  });
});
