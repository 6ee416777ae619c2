/**
 * bin/wildstream.js picks what to run: in an installed package (its real path inside node_modules) the built
 * dist/ (see also package.test.ts, which runs the packed package's CLI); anywhere else, a checkout say, the
 * TypeScript sources through tsx, so an edit runs at once and a build left behind never does. Checked on a
 * stand-in package whose two entries say which one ran, outside node_modules and then moved inside one.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';

const run = promisify(execFile);
let dir = '';
/** The stand-in package, before it is moved into a node_modules folder. */
let pkg = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-bin-'));
  pkg = join(dir, 'checkout');
  for (const sub of ['bin', 'src', 'dist']) await mkdir(join(pkg, sub), { recursive: true });
  await copyFile('bin/wildstream.js', join(pkg, 'bin/wildstream.js'));
  // tsx, found as the package finds it in either place.
  await symlink(join(process.cwd(), 'node_modules'), join(pkg, 'node_modules'));
  await writeFile(join(pkg, 'package.json'), JSON.stringify({ type: 'module' }));
  const entry = (which: string, typed: boolean) =>
    `export async function main(argv${typed ? ': string[]' : ''}) {\n  console.log('${which}', argv.slice(2).join(' '));\n  return 0;\n}\n`;
  await writeFile(join(pkg, 'src/cli.ts'), entry('sources', true));
  await writeFile(join(pkg, 'dist/cli.js'), entry('dist', false));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const wildstream = async (at: string, ...args: string[]) =>
  (await run(process.execPath, [join(at, 'bin/wildstream.js'), ...args])).stdout.trim();

it('runs the sources outside node_modules, even beside a build, and the build in an installed package', async () => {
  expect(await wildstream(pkg, 'train', '--steps', '1')).toBe('sources train --steps 1');
  const installed = join(dir, 'consumer/node_modules/wildstream');
  await mkdir(join(dir, 'consumer/node_modules'), { recursive: true });
  await rename(pkg, installed);
  expect(await wildstream(installed, 'train', '--steps', '1')).toBe('dist train --steps 1');
  // Installed without a build (a package packed by hand): the sources still run.
  await rm(join(installed, 'dist'), { recursive: true });
  expect(await wildstream(installed, '--version')).toBe('sources --version');
}, 60_000);
