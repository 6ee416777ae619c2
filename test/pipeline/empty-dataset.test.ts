/**
 * A pipeline whose ingest or crawl stage makes a dataset that holds no image stops there with exit 3, as
 * `wildstream ingest` and `wildstream crawl` exit: the train stage never starts on nothing.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ExitCodeError } from '../../src/errors.js';
import { runPipeline } from '../../src/pipeline/run.js';

let dir: string;
let server: Server;
let base: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-pipeline-empty-'));
  // A page without images, a page whose one image is gone, and nothing else (robots.txt is a 404: allow all).
  server = createServer((req, res) => {
    const html: Record<string, string> = { '/bare': '<p>no images</p>', '/gone': '<img src="/gone.jpg">' };
    const page = html[req.url!];
    if (page) return void res.writeHead(200, { 'content-type': 'text/html' }).end(page);
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.close();
  await rm(dir, { recursive: true, force: true });
});

/** The first stage of each case; its dataset holds no image. */
const firstStages: Array<[string, () => Promise<string[]>]> = [
  [
    'ingest (every URL failed)',
    async () => {
      await writeFile(join(dir, 'gone.txt'), `${base}/gone.jpg\n`);
      return ['ingest:', `  lists: [${join(dir, 'gone.txt')}]`, '  retries: 0'];
    },
  ],
  ['crawl (found no image)', async () => ['crawl:', `  seeds: [${base}/bare]`, '  delay_ms: 0']],
  ['crawl (every image failed)', async () => ['crawl:', `  seeds: [${base}/gone]`, '  delay_ms: 0', '  retries: 0']],
];

describe('a pipeline whose dataset holds no image', () => {
  it.each(firstStages.map(([name, stage], i) => [name, stage, i] as const))(
    'stops at %s with exit 3 before training',
    async (_name, stage, i) => {
      const out = join(dir, `ds${i}`),
        trained = join(dir, `run${i}`);
      const file = join(dir, `p${i}.yaml`);
      const yaml = [...(await stage()), `  out: ${out}`, '  allow_address: 127.0.0.1', 'train:', `  out: ${trained}`];
      await writeFile(file, `${yaml.join('\n')}\n`);
      const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
      const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
      const ran = runPipeline(file, []).finally(() => (stderr.mockRestore(), stdout.mockRestore()));
      const err = await ran.then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ExitCodeError);
      expect((err as ExitCodeError).exitCode).toBe(3);
      expect((err as Error).message).toMatch(/^stage (ingest|crawl) failed \(exit 3\)/);
      expect(existsSync(out)).toBe(true); // the stage's units are committed: a rerun resumes
      expect(existsSync(trained)).toBe(false);
    },
    60_000,
  );
});

describe('a pipeline whose train stage follows an ingest that fails', () => {
  it('stops the following trainer and ends with the ingest stage exit 3 and a line saying why', async () => {
    await writeFile(join(dir, 'gone-follow.txt'), `${base}/gone.jpg\n`);
    const out = join(dir, 'ds-follow'),
      trained = join(dir, 'run-follow');
    const file = join(dir, 'follow.yaml');
    const yaml = [
      'ingest:',
      `  lists: [${join(dir, 'gone-follow.txt')}]`,
      '  retries: 0',
      `  out: ${out}`,
      '  allow_address: 127.0.0.1',
      'train:',
      `  out: ${trained}`,
      '  follow: true',
      '  model: custom:4,16,8,2,16',
      '  batch: 4',
      '  steps: 2',
      '  crops: 2x32,2x16',
      '  backend: wasm',
      '  threads: 1',
    ];
    await writeFile(file, `${yaml.join('\n')}\n`);
    const lines: string[] = [];
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation((s) => (lines.push(String(s)), true));
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const started = Date.now();
    const err = await runPipeline(file, [])
      .finally(() => (stderr.mockRestore(), stdout.mockRestore()))
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(ExitCodeError);
    expect((err as ExitCodeError).exitCode).toBe(3);
    expect((err as Error).message).toMatch(/^stage ingest failed \(exit 3\)/);
    expect(lines.join('')).toMatch(/train stopped .*\(the ingest stage it follows ended without finishing\)/);
    expect(Date.now() - started).toBeLessThan(45_000); // not a trainer polling for units that cannot come
  }, 60_000);
});
