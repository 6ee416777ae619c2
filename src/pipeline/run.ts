/**
 * `wildstream run <pipeline.yaml>`: runs the file's stages in order (ingest or crawl, train, export, embed,
 * report) by calling the same typed stage functions as the individual commands. Every stage resumes on its own
 * (committed units, checkpoints), so rerunning an interrupted pipeline continues where it stopped. With
 * `train.follow`, training starts while ingest is still committing units. A rerun of a finished pipeline skips
 * export, embed and report while their outputs were made from the same checkpoints, data and settings
 * (finished.ts). Ctrl-C (or SIGTERM, SIGHUP) ends the pipeline as interrupted (exit 128 + the signal's number),
 * never as a failed stage.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { constants, homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, ExitCodeError, InterruptedError, oneLine } from '../errors.js';
import { demoPortOf, startDemoSite, type DemoSite } from '../fixtures/site.js';
import { crawlJob } from '../jobs/crawl.js';
import { ingestJob } from '../jobs/ingest.js';
import { embedJob, exportJob } from '../jobs/outputs.js';
import { trainJob } from '../jobs/training.js';
import { pipelineNames, type OptionNames } from '../options/declare.js';
import { makeDirs } from '../shards/make-dirs.js';
import { storeOptionsOf } from '../shards/options.js';
import { finishedStages } from './finished.js';
import { reportStores, writeReport, type StageRunner } from './report.js';
import { datasetOf, loadPipeline, type Pipeline } from './schema.js';

export async function runPipeline(file: string, sets: string[]): Promise<void> {
  const p = await loadPipeline(file, sets); // everything is validated before any work starts
  const stops = new PipelineStop();
  const stage: StageRunner = (name, work) => stops.run(name, work);
  const site = p.site === 'demo' ? await startDemoSite({ port: await previousDemoPort(p) }) : null;
  try {
    const ingest = p.ingest
      ? () => stage('ingest', () => ingestStage(p, site))
      : p.crawl
        ? () => stage('crawl', () => crawlJob(p.crawl!.seeds, p.crawl!))
        : null;
    const train = p.train
      ? (stop?: AbortSignal) =>
          stage('train', () => trainJob({ ...p.train!, data: datasetOf(p) }, { names: pipelineNames('train'), stop }))
      : null;
    if (p.train?.follow && ingest && train) {
      // Both run to their end (on a signal, both save their state) before the pipeline reports. A producer
      // that fails stops the following trainer (it checkpoints the steps done), which would otherwise wait
      // for units that can no longer come; the pipeline then ends with the producer's failure.
      const producer = new AbortController();
      const name = p.ingest ? 'ingest' : 'crawl';
      const producing = ingest().catch((err: unknown) => {
        producer.abort(`the ${name} stage it follows ended without finishing`);
        throw err;
      });
      const failed = (await Promise.allSettled([producing, train(producer.signal)])).find(
        (r) => r.status === 'rejected',
      );
      if (failed) throw failed.reason;
    } else for (const run of [ingest, train]) if (run) await run();
    // Export needs train, embed and report need export: with no export there is nothing to skip.
    const done = p.export ? await finishedStages(p.train!.out, datasetOf(p), storeOptionsOf(p.train!)) : null;
    const skipped = (name: string, outs: string[]) =>
      process.stdout.write(
        `${name}: skipped, ${outs.join(' and ')} already made from these checkpoints, data and settings ` +
          `(delete ${outs.length > 1 ? 'them' : 'it'} to redo)\n`,
      );
    if (p.export) {
      const { baseline, ...e } = p.export;
      const from = p.train!.out;
      const outs = [e.out, ...(baseline ? [baseline] : [])];
      const names = pipelineNames('export');
      const work = async () => {
        await stage('export', () => exportJob(from, e, names));
        if (baseline)
          await stage('export', () => exportJob(from, { ...e, out: baseline, init: true }, baselineNames(names)));
      };
      const folders = outs.map((folder) => ({ folder, options: storeOptionsOf(e) }));
      if (await done!.run('export', p.export, folders, work)) skipped('export', outs);
    }
    if (p.embed) {
      const e = {
        ...p.embed,
        model: p.embed.model ?? p.export!.out,
        backend: p.embed.backend ?? p.train?.backend ?? 'auto',
      };
      const model = await done!.snapshot({ folder: e.model, options: storeOptionsOf(e) });
      const work = () => stage('embed', () => embedJob(datasetOf(p), e, pipelineNames('embed')));
      if (await done!.run('embed', { e, model }, [{ file: e.out, options: storeOptionsOf(e) }], work))
        skipped('embed', [e.out]);
    }
    if (p.report) {
      const r = p.report;
      // What the report reads besides the run and the dataset: both exported models and any labelled folders.
      const stores = reportStores(p);
      const models = [p.export!.out, p.export!.baseline].filter((f) => f !== undefined);
      const labelled = [r.knn?.train, r.knn?.test].filter((f) => f !== undefined);
      const read = await Promise.all([
        ...models.map((folder) => done!.snapshot({ folder, options: stores.models })),
        ...labelled.map((folder) => done!.snapshot({ folder })),
      ]);
      const work = () => writeReport(p, stage);
      const settings = { site: p.site, train: p.train, export: p.export, report: r, read }; // all but embed's
      if (await done!.run('report', settings, [{ folder: r.out, options: stores.run }], work))
        skipped('report', [r.out]);
    }
  } finally {
    stops.finish();
    await site?.close();
  }
}

/** The export stage's names with its output named `export.baseline`: the baseline export's `out` is that key. */
function baselineNames(names: OptionNames): OptionNames {
  const key = (k: string) => (k === 'out' ? 'baseline' : k);
  return { of: (k) => names.of(key(k)), set: (k, value) => names.set(key(k), value) };
}

/** The signals that stop a pipeline, as they stop each command: a closed terminal (SIGHUP) too. */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Runs stages and watches for SIGINT/SIGTERM/SIGHUP. A stage that handles signals itself (train) saves its state
 * and returns; the pipeline then ends as interrupted with the same exit code. During a stage that does
 * not, the pipeline exits at once: nothing it writes can be partial (puts are atomic, units commit whole).
 */
class PipelineStop {
  private received: NodeJS.Signals | null = null;
  private readonly running = new Set<string>();
  private readonly handler = (signal: NodeJS.Signals) => this.onSignal(signal);

  constructor() {
    // Without SIGHUP here, a train stage it stopped (state saved) was reported as failed ("fix the cause"), and
    // a stage that does not handle it (ingest) died without a word.
    for (const s of STOP_SIGNALS) process.on(s, this.handler);
  }

  async run(name: string, work: () => Promise<unknown>): Promise<void> {
    if (this.received) throw this.interrupted();
    this.running.add(name);
    try {
      await work();
    } catch (err) {
      // The stage's own one-line reason first, as its command prints it; then how the pipeline ends.
      process.stderr.write(`wildstream: ${oneLine(err)}\n`);
      if (this.received) throw this.interrupted();
      const code = err instanceof ExitCodeError ? err.exitCode : err instanceof ConfigError ? 2 : 1;
      throw new StageError(`stage ${name} failed (exit ${code}); fix the cause and rerun: finished work is kept`, code);
    } finally {
      this.running.delete(name);
    }
    if (this.received) throw this.interrupted();
  }
  finish(): void {
    for (const s of STOP_SIGNALS) process.off(s, this.handler);
  }

  private interrupted(): InterruptedError {
    const during = this.running.size > 0 ? ` during stage ${[...this.running].join(' and ')}` : '';
    return new InterruptedError(
      `pipeline interrupted by ${this.received}${during}; rerun the same \`wildstream run\` to resume: ` +
        'committed units, checkpoints and finished outputs are kept',
      128 + (constants.signals[this.received ?? 'SIGTERM'] ?? 15),
    );
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

const DEMO_LIST = 'demo-urls.txt';

/**
 * The port of the demo site when an earlier run wrote this dataset's URL list, so that a rerun serves the same
 * URLs (the same ingest job, which resumes); 0 (any free port) on a first run.
 */
async function previousDemoPort(p: Pipeline): Promise<number> {
  const out = p.ingest?.out;
  if (!out) return 0;
  const list = await readFile(join(localBeside(out), DEMO_LIST), 'utf8').catch(() => '');
  return demoPortOf(list) ?? 0;
}

/** The ingest stage; with the demo site, its URL list is written next to the dataset first. */
async function ingestStage(p: Pipeline, site: DemoSite | null): Promise<unknown> {
  const i = p.ingest!;
  const { lists = [], ...o } = i;
  const how = { command: 'ingest' as const, names: pipelineNames('ingest') };
  if (!site) return ingestJob(lists, o, how);
  const list = join(localBeside(i.out), DEMO_LIST);
  await makeDirs(dirname(list));
  await writeFile(list, `${site.urls.join('\n')}\n`);
  return ingestJob([...lists, list], { ...o, allowAddress: [...(o.allowAddress ?? []), '127.0.0.1'] }, how);
}

/**
 * The local folder holding a store (the URL list goes beside it); for a remote store, a folder of this
 * machine's cache named by the store's URL. Found again by a rerun, so the list and its port stay the same: a
 * temporary folder gave each run a new port, so a new URL list, and a rerun of an interrupted demo into S3 was
 * refused as another job's dataset.
 */
function localBeside(store: string): string {
  if (/^file:/i.test(store)) return resolve(fileURLToPath(store), '..');
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(store)) return resolve(store, '..');
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  const id = createHash('sha256').update(store.replace(/\/+$/, '')).digest('hex').slice(0, 16);
  return join(cache, 'wildstream', 'demo', id);
}
