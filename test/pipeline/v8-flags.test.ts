import { readFile } from 'node:fs/promises';
import { expect, it } from 'vitest';
import { V8_FLAGS } from '../../src/v8-flags.js';

/** The CLI's V8 flags live in a shebang and in the demo script; both must carry src/v8-flags.ts's. */
it('the bin shebang and npm run demo pass the V8 flags', async () => {
  const shebang = (await readFile('bin/wildstream.js', 'utf8')).split('\n')[0]!;
  expect(shebang).toBe(`#!/usr/bin/env -S node ${V8_FLAGS.join(' ')}`);
  const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { scripts: Record<string, string> };
  expect(pkg.scripts.demo).toBe(`node ${V8_FLAGS.join(' ')} bin/wildstream.js run pipelines/demo.yaml`);
});
