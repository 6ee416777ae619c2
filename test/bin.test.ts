/**
 * bin/wildstream.js picks what to run: in a checkout (it has .git) the TypeScript sources through tsx, so an
 * edit runs at once and a build left behind never does; in an installed package the built dist/ (see also
 * package.test.ts, which runs the packed package's CLI). Checked on a stand-in package whose two entries say
 * which one ran.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';

const run = promisify(execFile);
let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-bin-'));
  await mkdir(join(dir, 'bin'));
  await mkdir(join(dir, 'src'));
  await mkdir(join(dir, 'dist'));
  await copyFile('bin/wildstream.js', join(dir, 'bin/wildstream.js'));
  await symlink(join(process.cwd(), 'node_modules'), join(dir, 'node_modules'));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  const entry = (which: string, typed: boolean) =>
    `export async function main(argv${typed ? ': string[]' : ''}) {\n  console.log('${which}', argv.slice(2).join(' '));\n  return 0;\n}\n`;
  await writeFile(join(dir, 'src/cli.ts'), entry('sources', true));
  await writeFile(join(dir, 'dist/cli.js'), entry('dist', false));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const wildstream = async (...args: string[]) =>
  (await run(process.execPath, [join(dir, 'bin/wildstream.js'), ...args])).stdout.trim();

it('runs the sources in a checkout, even beside a build, and the build in an installed package', async () => {
  await mkdir(join(dir, '.git'));
  expect(await wildstream('train', '--steps', '1')).toBe('sources train --steps 1');
  await rm(join(dir, '.git'), { recursive: true });
  expect(await wildstream('train', '--steps', '1')).toBe('dist train --steps 1');
  // Installed without a build (a package packed by hand): the sources still run.
  await rm(join(dir, 'dist'), { recursive: true });
  expect(await wildstream('--version')).toBe('sources --version');
}, 60_000);
