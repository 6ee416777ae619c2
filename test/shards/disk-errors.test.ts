// Every local write path (the store's mkdir, temp file write, fsync and rename; the shard staged in
// <dataset>/.staging/) reports a full, over-quota, read-only or forbidden disk with one message, naming the path.
// No mount needed: the errno is injected into the fs calls the code makes, and the staged shard is written to
// /dev/full, where every write fails with a real ENOSPC.
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { AccessDeniedError, StoreUnavailableError } from '../../src/errors.js';
import { getBytes, openStore } from '../../src/shards/store.js';
import { UnitWriter } from '../../src/shards/unit-writer.js';
import { makeRecord } from '../helpers/records.js';

type Step = 'mkdir' | 'open' | 'write' | 'fsync' | 'rename' | 'staging';
const inject = vi.hoisted(() => ({ at: null as null | string, errno: 'ENOSPC' }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  // Worded as libuv words them, so the code cannot tell these from the real thing.
  const fail = (syscall: string, path: unknown) =>
    Object.assign(new Error(`${inject.errno}: injected, ${syscall} '${String(path)}'`), {
      code: inject.errno,
      syscall,
      path: String(path),
    });
  const reject = (syscall: string, path: unknown) => async () => Promise.reject(fail(syscall, path));
  const open = (async (path: string, flags?: string, mode?: number) => {
    if (inject.at === 'open' && flags === 'w') throw fail('open', path);
    const handle = await real.open(path, flags, mode);
    if (flags === 'w' && inject.at === 'write') {
      handle.writeFile = reject('write', path);
      handle.write = reject('write', path) as typeof handle.write;
    }
    if (flags === 'w' && inject.at === 'fsync') handle.sync = reject('fsync', path);
    return handle;
  }) as typeof real.open;
  const rename = (async (from: string, to: string) => {
    if (inject.at === 'rename') throw fail('rename', from);
    return real.rename(from, to);
  }) as typeof real.rename;
  const mkdir = (async (path: string, options?: object) => {
    if (inject.at === 'mkdir') throw fail('mkdir', path);
    return real.mkdir(path, options);
  }) as typeof real.mkdir;
  const mocked = { ...real, open, rename, mkdir };
  return { ...mocked, default: mocked };
});

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const createWriteStream = ((path: string, options?: object) =>
    real.createWriteStream(inject.at === 'staging' ? '/dev/full' : path, options)) as typeof real.createWriteStream;
  const mocked = { ...real, createWriteStream };
  return { ...mocked, default: mocked };
});

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-disk-errors-'));
});
afterEach(() => {
  inject.at = null;
  inject.errno = 'ENOSPC';
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const FULL = '; committed data is intact, free space and rerun';

describe('a full disk under the local store', () => {
  it.each<[Step, string]>([
    ['mkdir', ''], // the store root, the first folder made
    ['open', 'units/000000.json'],
    ['write', 'units/000000.json'],
    ['fsync', 'units/000000.json'],
    ['rename', 'units/000000.json'],
  ])('at %s: "disk full" naming "%s", the committed object intact, no temp file left', async (step, named) => {
    const root = join(dir, `store-${step}`);
    const store = await openStore(root);
    if (step !== 'mkdir') await store.put('units/000000.json', Buffer.from('committed'));
    inject.at = step;
    const err = (await store.put('units/000000.json', Buffer.from('new')).catch((e: unknown) => e)) as Error;
    inject.at = null;
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err.message).toBe(`disk full: cannot write ${join(root, named)}${FULL}`);
    if (step === 'mkdir') return;
    expect(Buffer.from(await getBytes(store, 'units/000000.json')).toString()).toBe('committed');
    expect(await readdir(join(root, 'units'))).toEqual(['000000.json']);
  });

  it('says "disk quota exceeded" for EDQUOT, and permission denied for EACCES, as typed errors', async () => {
    const store = await openStore(join(dir, 'quota'));
    inject.at = 'write';
    inject.errno = 'EDQUOT';
    await expect(store.put('a/b.bin', Buffer.from('x'))).rejects.toThrow(
      `disk quota exceeded: cannot write ${join(dir, 'quota', 'a', 'b.bin')}${FULL}`,
    );
    inject.at = 'open';
    inject.errno = 'EACCES';
    const err = (await store.put('a/b.bin', Buffer.from('x')).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(AccessDeniedError);
    expect(err.message).toBe(`cannot write ${join(dir, 'quota', 'a', 'b.bin')}: permission denied`);
  });
});

describe.runIf(existsSync('/dev/full'))('a disk that fills while a shard is staged', () => {
  it('says "disk full" naming the staged file, as the store does, and commits nothing', async () => {
    const root = join(dir, 'staging');
    const store = await openStore(root);
    const unit = await UnitWriter.open(store, 0);
    inject.at = 'staging';
    for (let i = 0; i < 50; i++) await unit.add(i, makeRecord(i, 20_000)).catch(() => {}); // may fail early
    const err = (await unit.commit({ inputs: 50 }).catch((e: unknown) => e)) as Error;
    inject.at = null;
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err.message).toMatch(
      new RegExp(`^disk full: cannot write ${root}/\\.staging/[^/]+/shard-[0-9a-f]+\\.arrow${FULL}$`),
    );
    expect(await store.head('units/000000.json')).toBeNull();
  });

  it('says "disk full" where the staging folder cannot be made', async () => {
    const root = join(dir, 'staging-mkdir');
    const store = await openStore(root);
    inject.at = 'mkdir';
    const err = (await UnitWriter.open(store, 0).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err.message).toBe(`disk full: cannot write ${root}${FULL}`);
  });
});
