#!/usr/bin/env node
/**
 * Bundles the GPU benches for a machine with no node_modules (the lent H200; scripts/gpu/h200.sh runs them):
 *   .gpurun/webgpu-kernels.mjs, .gpurun/train.mjs, .gpurun/webgpu-curves.mjs   the three GPU benches, one ESM file each
 *   .gpurun/node_modules/webgpu/{index.js,package.json}  Dawn for Node's loader, left external: it `require`s
 *                                                   dist/<platform>-<arch>/dawn.node beside itself at run time
 *   .gpurun/dawn.node.xz                            that binary for linux-x64, xz-compressed (21 MB -> ~5 MB);
 *                                                   h200.sh unpacks it into node_modules/webgpu/dist/linux-x64/
 *   .gpurun/torch_swav_train.py                     the PyTorch side (bench/train.ts runs it from bench/)
 *   .gpurun/BUILD                                   the commit bundled (git describe --dirty) and when
 * External too, never bundled: the optional tfjs backends that load only when asked for (tfjs-node, tfjs-node-gpu,
 * tfjs-backend-webgpu: not installed here). sharp and the augment pool are not imported by these benches.
 *
 *   node scripts/gpu/bundle.mjs        (from the project root; .gpurun/ is git-ignored)
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { build } from 'esbuild';

const OUT = '.gpurun';
const ENTRIES = {
  'webgpu-kernels': 'bench/webgpu-kernels.ts',
  train: 'bench/train.ts',
  'webgpu-curves': 'bench/webgpu-curves.ts',
};
const EXTERNAL = ['webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-backend-webgpu'];
// CommonJS parts of the bundle (tfjs, seedrandom, ...) call require and read __dirname, which ESM lacks.
const BANNER = [
  "import { createRequire as __wsCreateRequire } from 'node:module';",
  "import { fileURLToPath as __wsFileURLToPath } from 'node:url';",
  "import { dirname as __wsDirname } from 'node:path';",
  'const require = __wsCreateRequire(import.meta.url);',
  'const __filename = __wsFileURLToPath(import.meta.url);',
  'const __dirname = __wsDirname(__filename);',
].join('\n');

mkdirSync(OUT, { recursive: true });
const result = await build({
  entryPoints: ENTRIES,
  outdir: OUT,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: EXTERNAL,
  banner: { js: BANNER },
  logLevel: 'warning',
  metafile: true,
});
for (const [file, { bytes }] of Object.entries(result.metafile.outputs))
  console.log(`${file}: ${(bytes / 2 ** 20).toFixed(2)} MiB`);

// Dawn's loader, with only the linux-x64 binary (the GPU machine is x86-64), compressed.
const require = createRequire(import.meta.url);
const webgpuDir = dirname(require.resolve('webgpu/package.json'));
const loaderDir = join(OUT, 'node_modules', 'webgpu');
// A binary unpacked by an earlier `h200.sh --local` here would travel too (21 MB of the 64 MiB carry): drop it.
rmSync(join(loaderDir, 'dist'), { recursive: true, force: true });
mkdirSync(loaderDir, { recursive: true });
for (const f of ['index.js', 'package.json']) copyFileSync(join(webgpuDir, f), join(loaderDir, f));
const dawn = join(webgpuDir, 'dist', 'linux-x64', 'dawn.node');
const packed = join(OUT, 'dawn.node.xz');
if (!existsSync(packed) || statSync(packed).mtimeMs < statSync(dawn).mtimeMs)
  writeFileSync(packed, execFileSync('xz', ['-T2', '-6', '-c', dawn], { maxBuffer: 256 * 2 ** 20 }));
console.log(`${packed}: ${(statSync(packed).size / 2 ** 20).toFixed(1)} MiB`);

copyFileSync('bench/torch_swav_train.py', join(OUT, 'torch_swav_train.py'));
// What was bundled, printed by h200.sh beside the figures: the commit, and whether the tree had changes.
const commit = execFileSync('git', ['describe', '--always', '--dirty'], { encoding: 'utf8' }).trim();
writeFileSync(join(OUT, 'BUILD'), `${commit} bundled ${new Date().toISOString()}\n`);
