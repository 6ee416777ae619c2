/**
 * The offline demo of ingest: starts the built-in fixture website on 127.0.0.1, ingests its URL list into
 * ./data (local store) through the real CLI code path, then prints what the dataset holds.
 *
 *   npm run demo            (rerun it: committed units are skipped)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { main } from '../src/cli.js';
import { startDemoSite } from '../src/fixtures/site.js';

const out = resolve(process.argv[2] ?? 'data');
const site = await startDemoSite();
try {
  await mkdir(out, { recursive: true });
  const list = resolve(out, 'demo-urls.txt');
  await writeFile(list, `${site.urls.join('\n')}\n`);
  const common = ['--allow-address', '127.0.0.1', '--unit-size', '50'];
  let code = await main(['node', 'wildstream', 'ingest', list, '--out', resolve(out, 'dataset'), ...common]);
  if (code === 0) code = await main(['node', 'wildstream', 'inspect', resolve(out, 'dataset')]);
  process.exitCode = code;
} finally {
  await site.close();
}
