// makeDirs: creates what is missing, always ends, and names what is in the way.
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccessDeniedError, ConfigError, StoreUnavailableError } from '../../src/errors.js';
import { makeDirs } from '../../src/shards/make-dirs.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-make-dirs-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('makeDirs', () => {
  it('creates missing levels, and racing callers all succeed', async () => {
    const deep = join(dir, 'a', 'b', 'c');
    await Promise.all(Array.from({ length: 6 }, () => makeDirs(deep)));
    expect((await stat(deep)).isDirectory()).toBe(true);
    await makeDirs(deep); // exists already
  });

  it('names a file in the way as a ConfigError', async () => {
    await writeFile(join(dir, 'file'), 'x');
    for (const target of [join(dir, 'file'), join(dir, 'file', 'sub', 'deeper')]) {
      const err = await makeDirs(target).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toBe(`cannot create ${target}: ${join(dir, 'file')} is a file, not a directory`);
    }
  });

  it.runIf(existsSync('/proc/self'))(
    "ends with an error where the file system refuses (Node's recursive mkdir spins forever under /proc)",
    async () => {
      const t0 = Date.now();
      const err = await makeDirs('/proc/ws-make-dirs/x').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as Error).message).toMatch(/^cannot create \/proc\/ws-make-dirs: the file system refuses/);
      expect(Date.now() - t0).toBeLessThan(2000);
    },
  );

  it.runIf(process.getuid?.() === 0 && existsSync('/sys/kernel'))(
    'says permission denied where mkdir is not permitted',
    async () => {
      const err = await makeDirs('/sys/ws-make-dirs').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AccessDeniedError);
    },
  );
});
