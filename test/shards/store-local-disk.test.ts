// The local store on a disk that fills up or turns read-only: one-line typed errors that name the path, and the
// last committed object intact. A real 64 KiB tmpfs when this process may mount one (tests run as root here);
// otherwise the same errno is injected through node:fs/promises, which the store writes through.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AccessDeniedError, ConfigError, StoreUnavailableError } from '../../src/errors.js';
import { getBytes, openStore, type Store } from '../../src/shards/store.js';

/** An errno every file opened for writing fails with, when no tmpfs can be mounted. */
const injected = vi.hoisted(() => ({ errno: null as null | 'ENOSPC' | 'EROFS' }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  // Worded as libuv words them, so the store cannot tell these from the real thing.
  const TEXT = { ENOSPC: 'no space left on device', EROFS: 'read-only file system' };
  const fail = (syscall: string, path: string) =>
    Object.assign(new Error(`${injected.errno}: ${TEXT[injected.errno!]}, ${syscall} '${path}'`), {
      code: injected.errno!,
      syscall,
      path,
    });
  const open = (async (path: string, flags?: string, mode?: number) => {
    if (injected.errno === 'EROFS' && flags === 'w') throw fail('open', path);
    const handle = await real.open(path, flags, mode);
    if (injected.errno === 'ENOSPC' && flags === 'w') {
      handle.writeFile = async () => Promise.reject(fail('write', path));
      handle.write = (async () => Promise.reject(fail('write', path))) as typeof handle.write;
    }
    return handle;
  }) as typeof real.open;
  return { ...real, open, default: { ...real, open } };
});

let dir: string;
let mounted = false;
let store: Store;
const COMMITTED = Buffer.from('{"unit":0,"committed":true}');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'ignore' });
    mounted = true;
  } catch {
    mounted = false; // not permitted: errors are injected instead
  }
  store = await openStore(join(dir, 'data'));
  await store.put('units/000000.json', COMMITTED);
});
afterAll(async () => {
  injected.errno = null;
  if (mounted) execFileSync('umount', [dir], { stdio: 'ignore' });
  await rm(dir, { recursive: true, force: true });
});

async function expectIntact(): Promise<void> {
  expect(Buffer.from(await getBytes(store, 'units/000000.json')).equals(COMMITTED)).toBe(true);
  const units = await readdir(join(dir, 'data', 'units'));
  expect(units).toEqual(['000000.json']); // no temp file left behind
}

describe(`local store on a full or read-only disk`, () => {
  it('disk full: a one-line error naming the file, the committed object intact, no temp file left', async () => {
    if (!mounted) injected.errno = 'ENOSPC';
    const big = Buffer.alloc(256 * 1024, 7); // four times the tmpfs
    for (const body of [big, Readable.from([big.subarray(0, 100_000), big.subarray(100_000)])]) {
      const err = (await store.put('units/000000.json', body).catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect(err.message).toBe(
        `disk full: cannot write ${join(dir, 'data', 'units', '000000.json')}; committed data is intact, free space and rerun`,
      );
      await expectIntact();
    }
    injected.errno = null;
  });

  it('read-only: a typed one-line error that says so and names the file, the committed object intact', async () => {
    if (mounted) execFileSync('mount', ['-o', 'remount,ro', dir], { stdio: 'ignore' });
    else injected.errno = 'EROFS';
    try {
      const err = (await store.put('units/000000.json', Buffer.from('x')).catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(AccessDeniedError);
      expect(err.message).not.toContain('\n');
      expect(err.message).toMatch(/read-only/i);
      expect(err.message).toContain(join(dir, 'data', 'units', '000000.json'));
      expect((await readFile(join(dir, 'data', 'units', '000000.json'))).equals(COMMITTED)).toBe(true);
      await expectIntact();
    } finally {
      injected.errno = null;
      if (mounted) execFileSync('mount', ['-o', 'remount,rw', dir], { stdio: 'ignore' });
    }
  });
});

describe('local store in a folder that takes no new files', () => {
  it('says it cannot write there, naming the path, not that an object is missing', async () => {
    // procfs refuses to create files with ENOENT: what `--out /proc/version` met.
    const err = (await (await openStore('/proc')).put('version', Buffer.from('x')).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toMatch(/^cannot write version at \/proc\/version: ENOENT/);
  });
});
