import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import asc from 'assemblyscript/asc';
import { expect, it } from 'vitest';

/** The committed crop.wasm is what `npm run build:wasm` makes of the committed source, flag for flag. */
it('crop.wasm is built from the current kernel source', async () => {
  const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { scripts: Record<string, string> };
  const args = pkg.scripts['build:wasm']!.split(/\s+/).slice(1);
  const dir = await mkdtemp(join(tmpdir(), 'ws-wasm-'));
  try {
    const out = join(dir, 'crop.wasm');
    args[args.indexOf('-o') + 1] = out;
    const { error, stderr } = await asc.main(args);
    expect(error, stderr.toString()).toBeNull();
    expect(Buffer.compare(await readFile(out), await readFile('src/augment/wasm/crop.wasm')), 'run `npm run build:wasm` and commit crop.wasm').toBe(0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);
