/**
 * Rerunning a finished pipeline skips the output stages (export, embed, report) whose outputs are already what
 * the run would write again. After such a stage ends, a stamp in the run's store (train.out, `pipeline/`)
 * records what it was made from and what it wrote:
 *   from     a hash of the stage's settings, every object of the run's store (checkpoints, metrics: so the
 *            checkpoint export picks and the curves) and the dataset's committed unit records
 *   outputs  each output object's key, size and etag (size + mtime locally, the ETag on S3)
 * A rerun skips the stage when both match: the same inputs, and the outputs still there as written. Anything
 * else (a new checkpoint, another setting, a deleted or edited output, a stamp of an older format) runs it. The
 * stamp is removed before the stage runs, so a stage interrupted halfway is never taken for finished.
 */
import { createHash } from 'node:crypto';
import { NotFoundError } from '../errors.js';
import { stampKey, STAMPS_DIR, type StampedStage } from '../shards/keys.js';
import { openFile } from '../shards/output.js';
import { getBytes, openStore, type Store, type StoreOptions } from '../shards/store.js';

const STAMPS = `${STAMPS_DIR}/`;

/** A stage's output: a folder (a store: every object in it) or one file, opened with `options`. */
export type Output = ({ folder: string } | { file: string }) & { options?: StoreOptions };

type Objects = Array<[key: string, size: number, etag: string]>;

interface Stamp {
  version: 1;
  from: string;
  outputs: Record<string, Objects>;
}

export interface FinishedStages {
  /**
   * Runs `work` unless the stamp of `name` says it was made from `settings` and the same run and dataset and
   * its `outputs` are as it wrote them; then stamps it. Resolves to whether it skipped.
   */
  run(name: StampedStage, settings: unknown, outputs: Output[], work: () => Promise<unknown>): Promise<boolean>;
  /** The objects of an output (or of something a stage reads) as they are now: key, size, etag; empty when missing. */
  snapshot(o: Output): Promise<Objects>;
}

/**
 * The finished-stage check of a pipeline whose train stage writes `runUrl` and reads `datasetUrl`. Read after
 * training (the run's store must not change while the output stages run).
 */
export async function finishedStages(
  runUrl: string,
  datasetUrl: string,
  options: StoreOptions = {},
): Promise<FinishedStages> {
  const run = await openStore(runUrl, options);
  const inputs = {
    run: (await objects(run, '')).filter(([key]) => !key.startsWith(STAMPS)),
    units: await objects(await openStore(datasetUrl, options), 'units/'),
  };
  return {
    snapshot,
    async run(name, settings, outputs, work) {
      const key = stampKey(name);
      const from = createHash('sha256').update(JSON.stringify({ settings, inputs })).digest('hex');
      const stamp = await readStamp(run, key);
      if (stamp?.from === from && (await sameOutputs(stamp, outputs))) return true;
      await run.delete(key);
      await work();
      const written: Stamp = { version: 1, from, outputs: {} };
      for (const o of outputs) written.outputs[where(o)] = await snapshot(o);
      await run.put(key, Buffer.from(`${JSON.stringify(written)}\n`));
      return false;
    },
  };
}

const where = (o: Output) => ('folder' in o ? o.folder : o.file);

async function objects(store: Store, prefix: string): Promise<Objects> {
  const out: Objects = [];
  for await (const { key, size, etag } of store.list(prefix)) out.push([key, size, etag]);
  return out;
}

/** An output's objects now; empty when it is missing. */
async function snapshot(o: Output): Promise<Objects> {
  if ('folder' in o) return objects(await openStore(o.folder, o.options), '');
  const file = await openFile(o.file, o.options);
  const info = await file.store.head(file.key);
  return info ? [[info.key, info.size, info.etag]] : [];
}

async function sameOutputs(stamp: Stamp, outputs: Output[]): Promise<boolean> {
  for (const o of outputs) {
    const was = stamp.outputs[where(o)];
    const now = await snapshot(o);
    if (!was || now.length === 0 || JSON.stringify(was) !== JSON.stringify(now)) return false;
  }
  return true;
}

/** The stage's stamp, or null when there is none or it is not one this version wrote. */
async function readStamp(store: Store, key: string): Promise<Stamp | null> {
  try {
    const stamp = JSON.parse(Buffer.from(await getBytes(store, key)).toString('utf8')) as Partial<Stamp>;
    return stamp.version === 1 && typeof stamp.from === 'string' && typeof stamp.outputs === 'object'
      ? (stamp as Stamp)
      : null;
  } catch (err) {
    if (err instanceof NotFoundError || err instanceof SyntaxError) return null;
    throw err;
  }
}
