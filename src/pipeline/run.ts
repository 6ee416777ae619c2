/**
 * `wildstream run <pipeline.yaml>`: runs the file's stages in order (ingest or crawl, train, export, embed,
 * report) through the same code paths as the individual commands. Every stage resumes on its own (committed units,
 * checkpoints), so rerunning an interrupted pipeline continues where it stopped. With `train.follow`,
 * training starts while ingest is still committing units.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { main } from '../cli.js';
import { ExitCodeError } from '../errors.js';
import { startDemoSite, type DemoSite } from '../fixtures/site.js';
import { datasetOf, loadPipeline, type Pipeline } from './schema.js';
import { writeReport } from './report.js';

export async function runPipeline(file: string, sets: string[]): Promise<void> {
  const p = await loadPipeline(file, sets); // everything is validated before any work starts
  const site = p.site === 'demo' ? await startDemoSite() : null;
  try {
    const ingest = p.ingest ? async () => stage('ingest', await ingestArgs(p, site))
      : p.crawl ? () => stage('crawl', ['crawl', ...p.crawl!.seeds, '--out', p.crawl!.out, ...flags(p.crawl!, ['seeds', 'out'])]) : null;
    const train = p.train ? () => stage('train', trainArgs(p)) : null;
    if (p.train?.follow && ingest && train) await Promise.all([ingest(), train()]);
    else for (const run of [ingest, train]) if (run) await run();
    if (p.export) {
      const from = p.train!.out;
      await stage('export', ['export', from, '--out', p.export.out]);
      if (p.export.baseline) await stage('export', ['export', from, '--out', p.export.baseline, '--init']);
    }
    if (p.embed) {
      await stage('embed', ['embed', '--model', p.export!.out, datasetOf(p), '--out', p.embed.out, ...flags(p.embed, ['out']), '--backend', p.train?.backend ?? 'auto']);
    }
    if (p.report) await writeReport(p, (argv) => stage(argv[0]!, argv));
  } finally {
    await site?.close();
  }
}

async function stage(name: string, argv: string[]): Promise<void> {
  const code = await main(['node', 'wildstream', ...argv]);
  if (code !== 0) throw new StageError(`stage ${name} failed (exit ${code}); fix the cause and rerun: finished work is kept`, code);
}

/** A stage's command failed (it has printed why); the pipeline ends with the stage's exit code. */
class StageError extends ExitCodeError {
  override readonly code = 'WS_ERR_STAGE';
}

/** The ingest command line; with the demo site, its URL list is written next to the dataset first. */
async function ingestArgs(p: Pipeline, site: DemoSite | null): Promise<string[]> {
  const i = p.ingest!;
  const lists = [...(i.lists ?? [])];
  const extra: string[] = [];
  if (site) {
    const list = resolve(i.out, '..', 'demo-urls.txt');
    await mkdir(dirname(list), { recursive: true });
    await writeFile(list, `${site.urls.join('\n')}\n`);
    lists.push(list);
    extra.push('--allow-address', '127.0.0.1');
  }
  return ['ingest', ...lists, '--out', i.out, ...extra, ...flags(i, ['lists', 'out'])];
}

function trainArgs(p: Pipeline): string[] {
  const t = p.train!;
  return ['train', '--data', datasetOf(p), '--out', t.out, ...flags(t, ['data', 'out'])];
}

/** snake_case settings -> CLI flags: true -> `--flag`, arrays -> repeated values, others -> `--flag value`. */
function flags(settings: Record<string, unknown>, skip: string[]): string[] {
  return Object.entries(settings).flatMap(([key, value]) => {
    if (skip.includes(key) || value === undefined || value === false) return [];
    const flag = `--${key.replace(/_/g, '-')}`;
    if (value === true) return [flag];
    return Array.isArray(value) ? [flag, ...value.map(String)] : [flag, String(value)];
  });
}

