/**
 * The package as a user gets it: `npm pack` (which builds dist/ through `prepack`), the tarball unpacked into
 * a fresh project's node_modules as `npm install` puts it, then plain Node imports it by name, TypeScript
 * checks and compiles the README's example against its declarations, and the compiled example runs.
 *
 * The project's dependencies are links to this checkout's installed ones (only the `dependencies` of
 * package.json, so an import of a dev-only package from dist/ fails here as it would for a user): a real
 * `npm install` of the tarball copies ~420 MB of them, two minutes on a 2-core machine.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../src/shards/store.js';
import { writePhotoDataset } from './helpers/dataset.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');

describe('the README', () => {
  it('shows lines of the example file as they are', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Use it from TypeScript'));
    const excerpt = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    expect(excerpt).toBeTruthy();
    expect(await readFile(join(ROOT, 'examples/stream-multicrop.ts'), 'utf8')).toContain(excerpt);
  });
});

describe('the npm package', () => {
  let tmp: string;
  let project: string;
  let packed: string[];

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'ws-package-'));
    await run('npm', ['pack', '--silent', '--pack-destination', tmp], { cwd: ROOT, maxBuffer: 16 << 20 });
    const tarball = join(
      tmp,
      (await readdir(tmp)).find((f) => f.endsWith('.tgz'))!,
    );
    packed = (await run('tar', ['-tzf', tarball], { maxBuffer: 16 << 20 })).stdout
      .split('\n')
      .filter(Boolean)
      .map((f) => f.replace(/^package\//, ''));
    project = join(tmp, 'consumer');
    const installed = join(project, 'node_modules', 'wildstream');
    await mkdir(installed, { recursive: true });
    await run('tar', ['-xzf', tarball, '--strip-components=1', '-C', installed]);
    const { dependencies } = JSON.parse(await readFile(join(installed, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
    };
    for (const name of Object.keys(dependencies)) {
      await mkdir(dirname(join(project, 'node_modules', name)), { recursive: true });
      await symlink(join(ROOT, 'node_modules', name), join(project, 'node_modules', name), 'dir');
    }
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  }, 300_000);

  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('holds the built entry, its declarations, the run-time assets and the CLI, and no tests', () => {
    for (const file of [
      'dist/index.js',
      'dist/index.d.ts',
      'dist/augment/worker.js',
      'dist/augment/worker-entry.mjs',
      'dist/augment/wasm/crop.wasm',
      'bin/wildstream.js',
      'src/cli.ts',
    ]) {
      expect(packed).toContain(file);
    }
    expect(packed.filter((f) => /^(test|bench|examples)\//.test(f))).toEqual([]);
  });

  it('is imported by name from plain Node ESM, and only through its entry', async () => {
    const script = `
      const ws = await import('wildstream');
      const internal = await import('wildstream/dist/cli.js').then(() => 'importable', (e) => e.code);
      console.log(JSON.stringify({ at: import.meta.resolve('wildstream'), loader: typeof ws.MultiCropLoader, store: typeof ws.openStore,
        train: typeof ws.train, config: ws.ConfigError.name, internal }));`;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: project });
    const out = JSON.parse(stdout);
    expect(out.at).toBe(`file://${join(project, 'node_modules/wildstream/dist/index.js')}`);
    expect(out).toMatchObject({
      loader: 'function',
      store: 'function',
      train: 'function',
      config: 'ConfigError',
      internal: 'ERR_PACKAGE_PATH_NOT_EXPORTED',
    });
  }, 120_000);

  it("type-checks the README's example against its declarations; compiled, it streams, stops and resumes on the next batch", async () => {
    await cp(join(ROOT, 'examples/stream-multicrop.ts'), join(project, 'src/stream-multicrop.ts'));
    // Each line below is an error only if the declarations carry real types (an unresolved one is `any`).
    await writeFile(
      join(project, 'src/types.ts'),
      `
      import { MultiCropLoader, openStore, type MultiCropBatch, type StreamCursor } from 'wildstream';
      const store = await openStore('./data');
      // @ts-expect-error batchSize is a number
      new MultiCropLoader(store, { batchSize: '4' });
      // @ts-expect-error a crop spec is a string or crop groups
      new MultiCropLoader(store, { batchSize: 4, augment: { crops: 4 } });
      // @ts-expect-error a cursor has no step
      export const cursor: StreamCursor = { epoch: 0, group: 0, offset: 0, position: 0, units: null, step: 1 };
      export const sizes = (b: MultiCropBatch): number[] => b.crops.map((c) => c.size);
    `,
    );
    await writeFile(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          outDir: 'out',
          rootDir: 'src',
          typeRoots: [join(ROOT, 'node_modules/@types')],
          types: ['node'],
          skipLibCheck: true,
        },
        include: ['src'],
      }),
    );
    const tsc = await run(process.execPath, [TSC, '-p', project], { cwd: project }).catch((e: { stdout: string }) => e);
    expect(tsc.stdout).toBe('');

    const data = join(tmp, 'data');
    await writePhotoDataset(await openStore(data), { units: 2, perUnit: 8 });
    const { stdout } = await run(process.execPath, [join(project, 'out/stream-multicrop.js'), data, '2'], {
      cwd: project,
    });
    const out = JSON.parse(stdout);
    expect(out).toMatchObject({ stoppedAfter: 2, cursor: { epoch: 0, position: 8 }, same: true });
    expect(out.next).toHaveLength(4);
    expect(out.shapes).toEqual([
      [4, 64, 64, 3],
      [4, 64, 64, 3],
      [4, 32, 32, 3],
      [4, 32, 32, 3],
      [4, 32, 32, 3],
      [4, 32, 32, 3],
    ]);
  }, 240_000);

  it("runs the installed package's CLI from its built JavaScript (dist/), not the sources through tsx", async () => {
    const installed = join(project, 'node_modules/wildstream');
    const version = () => run(process.execPath, [join(installed, 'bin/wildstream.js'), '--version'], { cwd: project });
    const want = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')).version;
    expect((await version()).stdout.trim()).toBe(want);
    // Without the sources' entry it still runs: dist/ is what runs.
    await rename(join(installed, 'src/cli.ts'), join(installed, 'src/cli.ts.away'));
    try {
      expect((await version()).stdout.trim()).toBe(want);
    } finally {
      await rename(join(installed, 'src/cli.ts.away'), join(installed, 'src/cli.ts'));
    }
  }, 120_000);
});
