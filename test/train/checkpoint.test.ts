import { createHash } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/shards/store.js';
import { startBackend } from '../../src/train/backend.js';
import { NotFoundError } from '../../src/errors.js';
import { pipelineNames, type OptionNames } from '../../src/options/declare.js';
import { checkpointSettings } from '../../src/train/auto-config.js';
import { CollapseWatch } from '../../src/train/collapse.js';
import {
  checkpointAt,
  InvalidCheckpointError,
  listCheckpoints,
  loadCheckpoint,
  NewerCheckpointError,
  saveCheckpoint,
} from '../../src/train/checkpoint.js';
import { parseHeader } from '../../src/train/checkpoint-format.js';
import { START } from '../../src/augment/stream.js';
import { defaultTrainConfig, type TrainConfig } from '../../src/train/config.js';
import { readMetrics } from '../../src/train/metrics.js';
import { learningRate } from '../../src/train/optim.js';
import { resolveResume, scheduleChange } from '../../src/train/resume.js';
import { SwavModel } from '../../src/train/model.js';
import { DEFAULT_SWAV } from '../../src/train/swav.js';
import { trainOnStore as train } from '../../src/jobs/train.js';
import { TrainingDivergedError } from '../../src/train/trainer.js';
import { writePhotoDataset } from '../helpers/dataset.js';
import { faultyStore } from '../helpers/faulty-store.js';
import { forgeCheckpoint, type Parts } from '../helpers/forge-checkpoint.js';

let dir: string;
let data: Store;

function tiny(over: Partial<TrainConfig> = {}, lr?: number): TrainConfig {
  const base = defaultTrainConfig({
    model: 'custom:2,8,8,2,8',
    batchSize: 8,
    crops: '2x16@0.3-1',
    steps: 4,
    swav: { ...DEFAULT_SWAV, prototypes: 8, hidden: 16, dim: 8, freezePrototypesSteps: 1, cropsForAssign: [0, 1] },
    ...over,
  });
  // a constant rate: a huge one takes BatchNorm variances past float32's range within a few steps
  return lr === undefined ? base : { ...base, schedule: { ...base.schedule, baseLr: lr, finalLr: lr } };
}

const run = (
  out: Store,
  config: TrainConfig,
  over: { resume?: boolean; log?: string[]; every?: number; names?: OptionNames } = {},
) =>
  train({
    data,
    out,
    config,
    backend: 'wasm',
    threads: 1,
    logEvery: 1,
    checkpointEvery: over.every ?? 2,
    keep: 5,
    resume: over.resume ?? true,
    log: (l) => over.log?.push(l),
    names: over.names,
  });

/** Every checkpoint in the store verifies (finite state included): what a diverged run must leave. */
async function allVerify(store: Store): Promise<number[]> {
  const steps: number[] = [];
  for (const c of await listCheckpoints(store)) steps.push((await loadCheckpoint(store, c.key)).header.step);
  return steps;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ws-ckpt-'));
  data = await openStore(join(dir, 'data'));
  await writePhotoDataset(data, { units: 2, perUnit: 8 });
  await startBackend('wasm');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * A finished run of tiny({ steps }) under run()'s defaults (2 steps: a checkpoint at step 2; 4 steps: at steps 2
 * and 4; metrics of every step), trained once per length and copied for each test that starts from one: a copy
 * holds what the test's own run would write (same data, config and seed), without training the same steps again.
 */
const finished = new Map<number, Promise<string>>();
async function finishedRun(steps: 2 | 4, name: string): Promise<{ root: string; out: Store }> {
  if (!finished.has(steps))
    finished.set(
      steps,
      (async () => {
        const source = join(dir, `finished-${steps}`);
        await run(await openStore(source), tiny({ steps }));
        return source;
      })(),
    );
  const root = join(dir, name);
  await cp(await finished.get(steps)!, root, { recursive: true });
  return { root, out: await openStore(root) };
}

/** Reruns as a diverged run's message says (its --lr, and --no-resume when it asks for it). */
function follow(out: Store, message: string, steps: number) {
  const lr = Number(/rerun with (?:--no-resume )?--lr ([\d.e+-]+) or lower/.exec(message)![1]);
  return run(out, tiny({ steps }, lr), { resume: !/--no-resume --lr/.test(message) });
}

describe('a GPU run resumed on another backend', () => {
  it("writes on the GPU run's precision and loss scale, so a webgpu resume after it continues them", async () => {
    const { root, out } = await finishedRun(2, 'carried');
    // As a mixed webgpu run writes its checkpoint: its precision, and its loss scale with the counters.
    const lossScale = { scale: 4096, cleanRun: 7, skipped: 3, grown: 1 };
    const at2 = join(root, 'checkpoints', 'step-000000002.ckpt');
    await forgeCheckpoint(at2, (p) => ({ header: { ...p.header, precision: 'mixed', lossScale } }));
    await run(out, tiny({ steps: 4 })); // on wasm, which has neither
    const { header } = await loadCheckpoint(out, 'checkpoints/step-000000004.ckpt');
    expect(header).toMatchObject({ step: 4, precision: 'mixed', lossScale });
  }, 30_000);
});

describe('checkpoints hold finite state only', () => {
  it('at lr 1e6 no checkpoint is written, the run fails, and rerunning at the advised rate trains', async () => {
    const out = await openStore(join(dir, 'huge'));
    const err = (await run(out, tiny({ steps: 4 }, 1e6), { every: 100 }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(TrainingDivergedError);
    expect(err.message).toMatch(
      /^training diverged: the state at step 4 is not finite \(NaN, infinity or beyond 2\^64 in param:\S+bn\.var/,
    );
    expect(err.message).toMatch(
      /no checkpoint was written; there is no finite checkpoint to resume from; rerun with --lr 0\.018 or lower \(this run: base lr 1000000\)$/,
    );
    expect(await listCheckpoints(out)).toEqual([]);
    expect(await follow(out, err.message, 8)).toMatchObject({ startStep: 0, step: 8 });
  }, 60_000);

  it("a pipeline's run names its stage keys in the advice", async () => {
    const out = await openStore(join(dir, 'huge-pipeline'));
    const names = pipelineNames('train');
    const err = (await run(out, tiny({ steps: 4 }, 1e6), { every: 100, names }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(TrainingDivergedError);
    expect(err.message).toMatch(/rerun with train\.lr=0\.018 or lower \(this run: base lr 1000000\)$/);
  }, 60_000);

  it('a diverging run that resumed keeps the checkpoint it started from, and the advice resumes from it', async () => {
    const { out } = await finishedRun(2, 'later');
    const before = await readFile(join(dir, 'later', 'checkpoints', 'step-000000002.ckpt'));
    const err = (await run(out, tiny({ steps: 5 }, 1e6), { every: 100 }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(TrainingDivergedError);
    expect(err.message).toMatch(
      /^training diverged: the state at step 5 is not finite .* the last finite checkpoint, checkpoints\/step-000000002\.ckpt \(step 2\), predates this run and is kept: rerun with --lr 0\.018 or lower/,
    );
    expect(await allVerify(out)).toEqual([2]);
    expect(await readFile(join(dir, 'later', 'checkpoints', 'step-000000002.ckpt'))).toEqual(before);
    expect(await follow(out, err.message, 6)).toMatchObject({
      resumedFrom: 'checkpoints/step-000000002.ckpt',
      step: 6,
    });
  }, 90_000);

  it('checkpoints written on the way to diverging verify, and the advice starts over', async () => {
    const out = await openStore(join(dir, 'during'));
    const err = (await run(out, tiny({ steps: 10 }, 1e6), { every: 1 }).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(TrainingDivergedError);
    const last =
      /the last finite checkpoint, checkpoints\/step-0*(\d+)\.ckpt \(step (\d+)\), is kept, but this run wrote it/.exec(
        err.message,
      )!;
    expect(err.message).toMatch(
      /^training diverged: the state at step \d+ is not finite .* rerun with --no-resume --lr 0\.018 or lower/,
    );
    const steps = await allVerify(out); // every checkpoint left verifies, the value-range check included
    expect(steps[0]).toBe(Number(last[2]));
    expect(await follow(out, err.message, 4)).toMatchObject({ startStep: 0, step: 4 });
  }, 90_000);

  it("resolves without a model for a run too large for tfjs' own memory (a webgpu run's): shapes need no plan", async () => {
    const out = await openStore(join(dir, 'no-plan'));
    const big = tiny({ batchSize: 32_768, crops: '2x224,6x96' });
    expect(() => new SwavModel(big)).toThrow(/needs ~.* more than the .* wasm heap/); // what the check must not do
    const weights = new SwavModel(big, { backend: 'webgpu' });
    try {
      await saveCheckpoint(out, weights, 3, START);
    } finally {
      weights.dispose();
    }
    const start = await resolveResume({ out, config: big, resume: true, log: () => {} });
    expect(start).toMatchObject({ step: 3, resumedFrom: 'checkpoints/step-000000003.ckpt' });
  });

  it('a checkpoint holding NaN (written before the check existed) reads as damaged', async () => {
    const { out } = await finishedRun(2, 'nan');
    const file = join(dir, 'nan', 'checkpoints', 'step-000000002.ckpt');
    const bytes = await readFile(file);
    const payload = 12 + bytes.readUInt32LE(8);
    bytes.writeFloatLE(Number.NaN, payload + 8);
    createHash('sha256')
      .update(bytes.subarray(12, bytes.length - 32))
      .digest()
      .copy(bytes, bytes.length - 32);
    await writeFile(file, bytes);
    await expect(loadCheckpoint(out, 'checkpoints/step-000000002.ckpt')).rejects.toThrow(
      /tensor param:\S+ holds NaN, infinity or values beyond 2\^64/,
    );
  }, 60_000);
});

describe('a stop while the resume is resolved', () => {
  it('changes nothing and calls no checkpoint damaged, though the model it judged with is disposed under it', async () => {
    const { out } = await finishedRun(4, 'stopped-resume');
    const before = (await listCheckpoints(out)).map((c) => c.key);
    expect(before.length).toBe(2);
    const config = tiny({ steps: 6 });
    const model = new SwavModel(config);
    const controller = new AbortController();
    // The stop arrives while the newest checkpoint is read; the caller then disposes its model (trainOnStore).
    const stopping = new Proxy(out, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== 'get' || typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          controller.abort(new Error('stopped'));
          model.dispose();
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const log: string[] = [];
    for (const resume of [true, false]) {
      const resolving = resolveResume({
        out: stopping,
        config,
        resume,
        log: (l) => log.push(l),
        model,
        signal: controller.signal,
      });
      await expect(resolving).rejects.toThrow('stopped');
    }
    expect(log).toEqual([]);
    expect((await listCheckpoints(out)).map((c) => c.key)).toEqual(before);
    expect((await readdir(join(dir, 'stopped-resume'))).sort()).toEqual(['checkpoints', 'metrics']);
  }, 60_000);
});

describe('a checkpoint write a kill cut short', () => {
  it('leaves a temp file the next run removes, saying so; the checkpoints stay', async () => {
    const { root, out } = await finishedRun(2, 'killed-write');
    await writeFile(join(root, 'checkpoints', 'step-000000004.ckpt.ws-tmp-0123456789ab'), 'partial');
    const log: string[] = [];
    await run(out, tiny({ steps: 4 }), { log });
    expect(log).toContain(
      'removed 1 unfinished checkpoint write(s) of a killed run: step-000000004.ckpt.ws-tmp-0123456789ab',
    );
    expect((await readdir(join(root, 'checkpoints'))).sort()).toEqual(['step-000000002.ckpt', 'step-000000004.ckpt']);
  }, 60_000);
});

describe('a kill between a checkpoint and its metrics', () => {
  it('loses no metric line: the rerun resumes from a checkpoint whose lines are written', async () => {
    const root = join(dir, 'killed-metrics');
    const killed = new Error('killed while writing step 4');
    const out = faultyStore(await openStore(root), (method, args) =>
      method === 'put' && String(args[0]).startsWith('metrics/step-000000004') ? killed : undefined,
    );
    await expect(run(out, tiny({ steps: 4 }))).rejects.toBe(killed);
    await run(await openStore(root), tiny({ steps: 4 }));
    expect((await readMetrics(await openStore(root))).map((m) => m.step)).toEqual([1, 2, 3, 4]);
  }, 60_000);
});

describe('damaged checkpoints', () => {
  it('every checkpoint damaged: refused, naming each, nothing changed; --no-resume starts over and archives the metrics', async () => {
    const { root, out } = await finishedRun(4, 'damaged');
    const ck = (step: number) => join(root, 'checkpoints', `step-00000000${step}.ckpt`);
    const four = await readFile(ck(4));
    await writeFile(ck(4), four.subarray(0, four.length - 1000)); // truncated
    const two = await readFile(ck(2));
    two.write('garbage!', 0); // bad magic
    await writeFile(ck(2), two);
    const metrics = await readMetrics(out);
    expect(metrics.map((m) => m.step)).toEqual([1, 2, 3, 4]);

    const err = (await run(out, tiny({ steps: 4 })).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(InvalidCheckpointError);
    expect(err.message).toMatch(
      /every checkpoint in file:\/\/\S+ is damaged: checkpoints\/step-000000004\.ckpt \(checksum mismatch \(truncated or damaged\)\); checkpoints\/step-000000002\.ckpt \(not a wildstream checkpoint\)/,
    );
    expect(err.message).toMatch(/--no-resume/);
    expect(await readFile(ck(2))).toEqual(two);
    expect((await readFile(ck(4))).length).toBe(four.length - 1000);
    expect(await readMetrics(out)).toEqual(metrics);

    const log: string[] = [];
    const fresh = await run(out, tiny({ steps: 2 }), { resume: false, log });
    expect(fresh).toMatchObject({ startStep: 0, step: 2 });
    expect(log.join('\n')).toMatch(/--no-resume: deleted 2 checkpoint\(s\) of the earlier run \(steps 4, 2\)/);
    const archived = /earlier run's metrics are kept under (metrics\/archive\/\S+\/)/.exec(log.join('\n'))![1]!;
    expect((await readdir(join(root, archived))).sort()).toEqual(['step-000000002.jsonl', 'step-000000004.jsonl']);
    expect((await readMetrics(out)).map((m) => m.step)).toEqual([1, 2]);
    expect(await allVerify(out)).toEqual([2]);
  }, 90_000);

  it('some damaged: resumes from the newest good one and names the skipped', async () => {
    const { out } = await finishedRun(4, 'partly');
    const file = join(dir, 'partly', 'checkpoints', 'step-000000004.ckpt');
    await writeFile(file, (await readFile(file)).subarray(0, 100));
    const log: string[] = [];
    const summary = await run(out, tiny({ steps: 4 }), { log });
    expect(summary).toMatchObject({ resumedFrom: 'checkpoints/step-000000002.ckpt', step: 4 });
    expect(log.join('\n')).toMatch(
      /resuming from checkpoints\/step-000000002\.ckpt, the newest checkpoint that verifies; removing the damaged checkpoints\/step-000000004\.ckpt/,
    );
    expect(await allVerify(out)).toEqual([4, 2]);
  }, 60_000);

  it('export of a missing step lists the steps there are', async () => {
    const out = await openStore(join(dir, 'partly'));
    await expect(checkpointAt(out, 7)).rejects.toThrow(/no checkpoint of step 7 in file:\/\/\S+; it has steps 2, 4$/);
    await expect(checkpointAt(await openStore(join(dir, 'none')), 7)).rejects.toThrow(/it has none/);
  });
});

describe('forged checkpoints: every damage is named, and an older good checkpoint is used', () => {
  const ck = (root: string, step: number) => join(root, 'checkpoints', `step-${String(step).padStart(9, '0')}.ckpt`);
  let source: string;
  beforeAll(async () => {
    source = (await finishedRun(4, 'forge-source')).root; // checkpoints at steps 2 and 4
  }, 60_000);

  /** A copy of the source run, and resumeState on it (what `train` does before its first step). */
  async function copy(name: string): Promise<{ root: string; out: Store }> {
    const root = join(dir, name);
    await cp(source, root, { recursive: true });
    return { root, out: await openStore(root) };
  }
  async function resume(out: Store, log: string[]) {
    const model = new SwavModel(tiny({ steps: 4 }));
    try {
      return await resolveResume({ out, config: tiny({ steps: 4 }), resume: true, log: (l) => log.push(l), model });
    } finally {
      model.dispose();
    }
  }
  const first = (h: any) => h.tensors[0] as { name: string; shape: number[]; offset: number };

  const cases: Array<[string, (p: Parts) => Partial<Parts> & { json?: string }, RegExp]> = [
    ['a header of null', () => ({ json: 'null' }), /header of another shape \(the header: .*expected object/],
    [
      'a header without tensors',
      ({ header }) => ({ header: { ...header, tensors: undefined } }),
      /header of another shape \(tensors: /,
    ],
    ['config: null', ({ header }) => ({ header: { ...header, config: null } }), /header of another shape \(config: /],
    [
      'a config of invalid values',
      ({ header }) => ({ header: { ...header, config: { ...header.config, model: 'no-such-net' } } }),
      /header holds an invalid config/,
    ],
    [
      'a tensor missing',
      ({ header, payload }) => {
        const gone = first(header).shape.reduce((a: number, b: number) => a * b, 1) * 4;
        const tensors = header.tensors.slice(1).map((t: any) => ({ ...t, offset: t.offset - gone }));
        return { header: { ...header, tensors }, payload: payload.subarray(gone) };
      },
      /tensor param:\S+ of shape \[[\d,]+\] is missing/,
    ],
    [
      'a tensor of another shape',
      ({ header }) => {
        header.tensors[0] = { ...first(header), shape: [1, ...first(header).shape] };
        return { header };
      },
      /tensor param:\S+ has shape \[1,[\d,]+\] where the model has \[/,
    ],
    [
      'a negative tensor offset',
      ({ header }) => {
        header.tensors[1].offset = -8;
        return { header };
      },
      /tensor table damaged: \S+ starts at byte -8 of the payload/,
    ],
  ];
  for (const [what, edit, damage] of cases) {
    it(`${what}: named, and the resume falls back to step 2`, async () => {
      const { root, out } = await copy(`forge-${what.replace(/\W+/g, '-')}`);
      await forgeCheckpoint(ck(root, 4), edit);
      const err = (await loadCheckpoint(out, 'checkpoints/step-000000004.ckpt').then(
        () => null,
        (e: unknown) => e,
      )) as Error | null;
      if (err) expect(err.message).not.toMatch(/NaN/); // layout damage is not a diverged run
      expect(await checkpointSettings(out)).toMatchObject({ prototypes: 8 });
      const log: string[] = [];
      expect(await resume(out, log)).toMatchObject({ step: 2, resumedFrom: 'checkpoints/step-000000002.ckpt' });
      expect(log.join('\n')).toMatch(
        new RegExp(`checkpoints/step-000000004\\.ckpt (in \\S+ )?is unusable: ${damage.source}`),
      );
    }, 30_000);
  }

  it('a checkpoint renamed to another step: named as of its header step, resume falls back, export --step refuses it', async () => {
    const { root, out } = await copy('renamed-step');
    await cp(ck(root, 2), ck(root, 6));
    await expect(checkpointAt(out, 6)).rejects.toThrow(/its header is of step 2, its file name of step 6/);
    expect((await checkpointAt(out, 4)).header.step).toBe(4);
    const log: string[] = [];
    expect(await resume(out, log)).toMatchObject({ step: 4 });
    expect(log.join('\n')).toMatch(
      /step-000000006\.ckpt in \S+ is unusable: its header is of step 2, its file name of step 6 \(renamed\?\)/,
    );
  }, 30_000);

  it('another file renamed to a checkpoint, or a length field of 4 GiB: named, no read of the length, fallback', async () => {
    const { root, out } = await copy('forge-shard');
    const shards = (await readdir(join(dir, 'data'), { recursive: true })).filter((f) => f.endsWith('.arrow'));
    await cp(join(dir, 'data', shards[0]!), ck(root, 6));
    const bytes = await readFile(ck(root, 4));
    bytes.writeUInt32LE(0xfffffff0, 8);
    await writeFile(ck(root, 4), bytes);
    expect(await checkpointSettings(out)).toMatchObject({ prototypes: 8 });
    const log: string[] = [];
    expect(await resume(out, log)).toMatchObject({ step: 2 });
    expect(log.join('\n')).toMatch(/step-000000006\.ckpt in \S+ is unusable: not a wildstream checkpoint/);
    expect(log.join('\n')).toMatch(
      /step-000000004\.ckpt in \S+ is unusable: header length 4294967280 does not fit in the \d+ bytes there are/,
    );
    // the store itself refuses a range past the object's end before allocating or reading it
    await expect(out.getRange('checkpoints/step-000000002.ckpt', 12, 12 + 0xfffffff0)).rejects.toThrow(NotFoundError);
  }, 30_000);

  for (const [what, edit] of [
    ['header version 2', ({ header }: Parts) => ({ header: { ...header, version: 2 } })],
    ['magic WSCKPT02', () => ({ magic: Buffer.from('WSCKPT02') })],
  ] as const) {
    it(`a checkpoint of a newer format (${what}) is refused, not deleted, not overwritten`, async () => {
      const { root, out } = await copy(`forge-newer-${what.replace(/\W+/g, '-')}`);
      await forgeCheckpoint(ck(root, 4), edit);
      const before = await readFile(ck(root, 4));
      const err = (await resume(out, []).catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(NewerCheckpointError);
      expect(err.message).toMatch(
        /checkpoints\/step-000000004\.ckpt in \S+ is unusable: written by a newer wildstream \(format 2, this reads 1\)\. Nothing was changed: .*--no-resume/,
      );
      const again = (await run(out, tiny({ steps: 6 })).catch((e: unknown) => e)) as Error; // a plain rerun
      expect(again).toBeInstanceOf(NewerCheckpointError);
      expect(await readFile(ck(root, 4))).toEqual(before);
      expect((await listCheckpoints(out)).map((c) => c.step)).toEqual([4, 2]);
    }, 30_000);
  }
});

describe('a run says what happens', () => {
  it('raising --steps on resume says the cosine is stretched and by how much the rate jumps', async () => {
    const out = await openStore(join(dir, 'stretch'));
    await run(out, tiny({ steps: 3 }), { every: 2 });
    const log: string[] = [];
    // the end-of-run checkpoint is at step 3; resume there with a longer horizon
    await run(out, tiny({ steps: 5 }), { log });
    const c = tiny();
    const [was, now] = [3, 5].map((total) =>
      Number(learningRate(3, { ...c.schedule, totalSteps: total }).toPrecision(3)),
    ) as [number, number];
    expect(now).toBeGreaterThan(was);
    expect(log.join('\n')).toContain(
      `resuming at step 3 with --steps 5 (was 3): the cosine schedule is stretched to end at step 5 (the rate is a function of step and --steps); lr jumps from ${was} to ${now} at step 3`,
    );

    const past: string[] = [];
    const s = await run(out, tiny({ steps: 4 }), { log: past });
    expect(s.step).toBe(5);
    expect(past.join('\n')).toMatch(/is at step 5, already at or past --steps 4: nothing to train/);
  }, 60_000);

  it('scheduleChange: null when nothing changed, names every changed setting otherwise', () => {
    const a = tiny({ steps: 100 });
    expect(scheduleChange(a, a, 50)).toBeNull();
    const b = { ...a, steps: 50, schedule: { ...a.schedule, baseLr: a.schedule.baseLr / 2 } };
    expect(scheduleChange(a, b, 40)).toMatch(
      /--steps 50 \(was 100\), --lr 0\.00937 \(was 0\.0187\): the cosine schedule is shortened .* lr drops from/,
    );
  });

  it('a warmup or prototype freeze as long as the run is a warning: the rate never reaches --lr, the prototypes never train', async () => {
    const config = tiny({ steps: 2 }, 0.1);
    const log: string[] = [];
    await run(
      await openStore(join(dir, 'long-warmup')),
      {
        ...config,
        schedule: { ...config.schedule, warmupSteps: 4 },
        swav: { ...config.swav, freezePrototypesSteps: 2 },
      },
      { log },
    );
    expect(log.filter((l) => l.startsWith('warning'))).toEqual([
      'warning: --warmup-steps 4 is not shorter than --steps 2: the rate climbs all run and never reaches --lr 0.1 (the last step trains at 0.025); lower --warmup-steps or raise --steps',
      'warning: --freeze-prototypes 2 is not shorter than --steps 2: the prototypes stay frozen all run and never train; lower --freeze-prototypes or raise --steps',
    ]);
    const quiet: string[] = [];
    await run(
      await openStore(join(dir, 'short-warmup')),
      { ...config, schedule: { ...config.schedule, warmupSteps: 1 } },
      { log: quiet },
    );
    expect(quiet.filter((l) => l.startsWith('warning'))).toEqual([]);
  }, 60_000);

  it('a batch larger than the dataset is a warning with the numbers', async () => {
    const small = await openStore(join(dir, 'small'));
    await writePhotoDataset(small, { units: 1, perUnit: 3 });
    const log: string[] = [];
    await train({
      data: small,
      out: await openStore(join(dir, 'small-out')),
      config: tiny({ steps: 1 }),
      backend: 'wasm',
      threads: 1,
      log: (l) => log.push(l),
    });
    expect(log.join('\n')).toMatch(
      /warning: --batch 8 is larger than the 3 committed record\(s\) in file:\/\/\S+: each batch holds every image 2 or 3 times \(as different crops\); use --batch 3 or less/,
    );
    const quiet: string[] = [];
    await train({
      data,
      out: await openStore(join(dir, 'big-out')),
      config: tiny({ steps: 1 }),
      backend: 'wasm',
      threads: 1,
      log: (l) => quiet.push(l),
    });
    expect(quiet.join('\n')).not.toMatch(/larger than/);
  }, 60_000);
});

describe('the loss scale in the header', () => {
  it('keeps the scale, clean run and the skipped and grown counts; a header without the counts (older) still loads', async () => {
    const out = await openStore(join(dir, 'loss-scale'));
    const model = new SwavModel(tiny());
    try {
      const lossScale = { scale: 1024, cleanRun: 3, skipped: 2, grown: 1 };
      const key = await saveCheckpoint(out, model, 1, START, { lossScale });
      const { header } = await loadCheckpoint(out, key);
      expect(header.lossScale).toEqual(lossScale);
      const json = (h: object) => Buffer.from(JSON.stringify(h));
      // Written before the counts were kept: scale and clean run only.
      expect(parseHeader(json({ ...header, lossScale: { scale: 1024, cleanRun: 3 } })).lossScale).toEqual({
        scale: 1024,
        cleanRun: 3,
      });
      const { lossScale: _, ...none } = header;
      expect(parseHeader(json(none)).lossScale).toBeUndefined();
      for (const bad of [{ skipped: -1 }, { grown: 0.5 }, { skipped: 'many' }])
        expect(() => parseHeader(json({ ...header, lossScale: { ...lossScale, ...bad } }))).toThrow(/lossScale/);
    } finally {
      model.dispose();
    }
  });
});

describe('the collapse watch in the header', () => {
  it('keeps the intervals at ln K and the warnings; a header without them (older) loads, and a resume counts from 0', async () => {
    const out = await openStore(join(dir, 'collapse-header'));
    const model = new SwavModel(tiny());
    try {
      const collapse = { window: [{ step: 2, loss: 2.07 }], warned: false, warnings: 1 };
      const key = await saveCheckpoint(out, model, 1, START, { collapse });
      const { header } = await loadCheckpoint(out, key);
      expect(header.collapse).toEqual(collapse);
      const json = (h: object) => Buffer.from(JSON.stringify(h));
      const { collapse: _, ...older } = header;
      const parsed = parseHeader(json(older));
      expect(parsed.collapse).toBeUndefined();
      const fresh = new CollapseWatch({ prototypes: 8, ...(parsed.collapse && { state: parsed.collapse }) }); // as train() builds it
      expect(fresh.state()).toEqual({ window: [], warned: false, warnings: 0 });
      for (const bad of [{ warnings: -1 }, { warned: 'yes' }, { window: [{ step: 1 }] }])
        expect(() => parseHeader(json({ ...header, collapse: { ...collapse, ...bad } }))).toThrow(/collapse/);
    } finally {
      model.dispose();
    }
  });
});

describe('the cursor in the header', () => {
  it("keeps the cursor's order settings, so a resume under others is refused; a cursor without them still loads", async () => {
    const out = await openStore(join(dir, 'cursor-order'));
    const model = new SwavModel(tiny());
    try {
      const order = { seed: 7, rank: 0, worldSize: 1, windowShards: 4, groupBatches: 8 };
      const cursor = { epoch: 1, group: 2, offset: 3, position: 40, units: [[0, 2]] as Array<[number, number]>, order };
      const key = await saveCheckpoint(out, model, 1, cursor);
      expect((await loadCheckpoint(out, key)).header.cursor).toEqual(cursor);
      const { header } = await loadCheckpoint(out, key);
      const json = (h: object) => Buffer.from(JSON.stringify(h));
      const { order: _, ...older } = cursor;
      expect(parseHeader(json({ ...header, cursor: older })).cursor.order).toBeUndefined();
      for (const bad of [{ worldSize: 0 }, { rank: -1 }, { groupBatches: 'eight' }])
        expect(() => parseHeader(json({ ...header, cursor: { ...cursor, order: { ...order, ...bad } } }))).toThrow(
          /cursor\.order/,
        );
    } finally {
      model.dispose();
    }
  });
});
