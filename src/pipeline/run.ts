/**
 * `wildstream run <pipeline.yaml>`: runs the file's stages in order (ingest or crawl, train, export, embed,
 * report) through the same code paths as the individual commands. Every stage resumes on its own (committed units,
 * checkpoints), so rerunning an interrupted pipeline continues where it stopped. With `train.follow`,
 * training starts while ingest is still committing units. Ctrl-C (or SIGTERM) ends the pipeline as
 * interrupted (exit 128 + the signal's number), never as a failed stage.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExitCodeError, InterruptedError } from '../errors.js';
import { startDemoSite, type DemoSite } from '../fixtures/site.js';
import { datasetOf, loadPipeline, type Pipeline } from './schema.js';
import { writeReport } from './report.js';
import { makeDirs } from '../shards/make-dirs.js';

/**
 * Runs one command line (`['node', 'wildstream', command, ...flags]`) to its exit code: the CLI's `main`, handed in
 * by the CLI so that the pipeline does not import it.
 */
export type CommandRunner = (argv: readonly string[]) => Promise<number>;

export async function runPipeline(file: string, sets: string[], cli: CommandRunner): Promise<void> {
  const p = await loadPipeline(file, sets); // everything is validated before any work starts
  const stops = new PipelineStop(cli);
  const stage = (name: string, argv: string[]) => stops.run(name, argv);
  const site = p.site === 'demo' ? await startDemoSite() : null;
  try {
    const ingest = p.ingest ? async () => stage('ingest', await ingestArgs(p, site))
      : p.crawl ? () => stage('crawl', ['crawl', ...p.crawl!.seeds, '--out', p.crawl!.out, ...flags(p.crawl!, ['seeds', 'out'])]) : null;
    const train = p.train ? () => stage('train', trainArgs(p)) : null;
    if (p.train?.follow && ingest && train) {
      // Both run to their end (on a signal, both save their state) before the pipeline reports.
      const failed = (await Promise.allSettled([ingest(), train()])).find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    } else for (const run of [ingest, train]) if (run) await run();
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
    stops.finish();
    await site?.close();
  }
}

/**
 * Runs stages and watches for SIGINT/SIGTERM. A stage that handles signals itself (train) saves its state
 * and returns; the pipeline then ends as interrupted with the same exit code. During a stage that does
 * not, the pipeline exits at once: nothing it writes can be partial (puts are atomic, units commit whole).
 */
class PipelineStop {
  private received: NodeJS.Signals | null = null;
  private readonly running = new Set<string>();
  private readonly handler = (signal: NodeJS.Signals) => this.onSignal(signal);

  constructor(private readonly cli: CommandRunner) {
    process.on('SIGINT', this.handler).on('SIGTERM', this.handler);
  }

  async run(name: string, argv: string[]): Promise<void> {
    if (this.received) throw this.interrupted();
    this.running.add(name);
    try {
      const code = await this.cli(['node', 'wildstream', ...argv]);
      if (this.received) throw this.interrupted();
      if (code !== 0) throw new StageError(`stage ${name} failed (exit ${code}); fix the cause and rerun: finished work is kept`, code);
    } finally {
      this.running.delete(name);
    }
  }

  finish(): void {
    process.off('SIGINT', this.handler).off('SIGTERM', this.handler);
  }

  private interrupted(): InterruptedError {
    const during = this.running.size > 0 ? ` during stage ${[...this.running].join(' and ')}` : '';
    return new InterruptedError(`pipeline interrupted by ${this.received}${during}; rerun the same \`wildstream run\` to resume: ` +
      'committed units, checkpoints and finished outputs are kept', 128 + (this.received === 'SIGINT' ? 2 : 15));
  }

  private onSignal(signal: NodeJS.Signals): void {
    if (this.received) return; // a second signal: the stage's own handler exits at once
    this.received = signal;
    if (process.listenerCount(signal) > 1) return; // the running stage stops itself and returns
    const stop = this.interrupted();
    process.stderr.write(`wildstream: ${stop.message}\n`);
    process.exit(stop.exitCode);
  }
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
    const list = join(await localBeside(i.out), 'demo-urls.txt');
    await makeDirs(dirname(list));
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

/** The local folder holding a store (the URL list goes beside it), or a temporary one for a remote store. */
async function localBeside(store: string): Promise<string> {
  if (/^file:/i.test(store)) return resolve(fileURLToPath(store), '..');
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(store)) return resolve(store, '..');
  return mkdtemp(join(tmpdir(), 'wildstream-demo-'));
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

