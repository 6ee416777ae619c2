// `npm run build`: src/ -> dist/ as ESM JavaScript with .d.ts, then the files the code loads at run time
// through `new URL(..., import.meta.url)` (the crop kernels' .wasm, the worker threads' .mjs entry), copied to
// the same place under dist/. dist/ is made anew, so a removed source leaves no stale module behind.
import { execFileSync } from 'node:child_process';
import { cpSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [src, dist] = [join(root, 'src'), join(root, 'dist')];
/** Run-time assets: everything under src/ that is not TypeScript (AssemblyScript sources stay behind too). */
const isAsset = (name) => !name.endsWith('.ts');

rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
let copied = 0;
for (const entry of readdirSync(src, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !isAsset(entry.name)) continue;
  const from = join(entry.parentPath, entry.name);
  cpSync(from, join(dist, relative(src, from)));
  copied++;
}
process.stdout.write(
  `built ${relative(process.cwd(), dist) || '.'}: JavaScript, declarations and ${copied} run-time assets\n`,
);
