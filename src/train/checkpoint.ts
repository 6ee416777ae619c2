/**
 * Checkpoints: one object per checkpoint, `checkpoints/step-<step>.ckpt`, so a store's atomic `put` makes
 * it whole or absent. Layout: "WSCKPT01", u32 LE header length, the JSON header (step, config, stream
 * cursor, queue fill, and a table of tensors), the float32 LE payload, then the sha256 of header + payload,
 * which is how a truncated or damaged checkpoint is recognised (and skipped for the previous one).
 * Tensors stream out one at a time, so memory never holds a second copy of the model.
 *
 * Only finite state is written: a NaN, an infinity or a value on its way there (past STATE_LIMIT) in any
 * weight, BatchNorm statistic, momentum slot or queue entry stops the save (NonFiniteStateError), and a
 * checkpoint holding one reads as damaged, so a diverged run never replaces its last usable checkpoint.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import * as tf from '@tensorflow/tfjs-core';
import type { StreamCursor } from '../augment/stream.js';
import { ConfigError, WildstreamError } from '../errors.js';
import { checkpointKey, CHECKPOINTS_DIR } from '../shards/keys.js';
import type { Store } from '../shards/store.js';
import type { SwavModel } from './model.js';
import type { ParamSet } from './params.js';
import {
  checkLayout,
  checkStepName,
  Damage,
  damaged,
  FORMAT_VERSION,
  headerLength,
  InvalidCheckpointError,
  MAGIC,
  parseHeader,
  PREAMBLE,
  TRAILER,
  type CheckpointHeader,
  type TensorEntry,
} from './checkpoint-format.js';

export {
  InvalidCheckpointError,
  NewerCheckpointError,
  readCheckpointHeader,
  type CheckpointHeader,
  type DatasetIdentity,
  type TensorEntry,
} from './checkpoint-format.js';

/** The model's state holds NaN or an infinity: it must not become a checkpoint. */
export class NonFiniteStateError extends WildstreamError {
  override readonly code = 'WS_ERR_NON_FINITE_STATE';
  constructor(
    message: string,
    readonly tensors: string[],
  ) {
    super(message);
  }
}

/** The folder of a run's checkpoints in its store. */
export const CHECKPOINT_DIR = CHECKPOINTS_DIR;
const PREFIX = `${CHECKPOINT_DIR}/`;

export interface Checkpoint {
  key: string;
  header: CheckpointHeader;
  /** Tensor values and shapes by `${group}:${name}`. */
  values: Map<string, Float32Array>;
  shapes: Map<string, number[]>;
}

export { checkpointKey };

/** Steps of the checkpoints in the store, newest first. */
export async function listCheckpoints(store: Store): Promise<Array<{ key: string; step: number }>> {
  const out: Array<{ key: string; step: number }> = [];
  for await (const o of store.list(PREFIX)) {
    const m = /^checkpoints\/step-(\d{9})\.ckpt$/.exec(o.key);
    if (m) out.push({ key: o.key, step: Number(m[1]) });
  }
  return out.sort((a, b) => b.step - a.step);
}

function entries(model: SwavModel): Array<{ group: TensorEntry['group']; name: string; tensor: tf.Tensor }> {
  return [
    ...[...model.ps.vars].map(([name, tensor]) => ({ group: 'param' as const, name, tensor })),
    ...[...model.lars.slots].map(([name, tensor]) => ({ group: 'slot' as const, name, tensor })),
    ...model.queue.map((tensor, i) => ({ group: 'queue' as const, name: String(i), tensor })),
  ];
}

/**
 * Largest magnitude a checkpointed value may have: 2^64, the square root of float32's maximum (3.4e38). A
 * weight or BatchNorm variance past it is one squaring away from infinity (a diverged run's variances go
 * 1e15, 1e29, +Inf in successive steps), and no trained network holds such values.
 */
export const STATE_LIMIT = 2 ** 64;

/**
 * The `group:name` of every tensor of the model's state holding a NaN, an infinity or a value past
 * STATE_LIMIT. Per tensor, sum(x * 0) + max|x| is NaN when x has a non-finite element and its peak
 * magnitude otherwise: one reduction per tensor and a single read back for the whole model.
 */
export function unsafeTensors(model: SwavModel): string[] {
  const list = entries(model).filter(({ tensor }) => tensor.size > 0);
  const probes = list.map(({ tensor }) => tf.tidy(() => tf.add(tf.sum(tf.mul(tensor, 0)), tf.max(tf.abs(tensor)))));
  try {
    const peaks = tf.tidy(() => tf.stack(probes)).dataSync();
    return list.filter((_, i) => !(peaks[i]! < STATE_LIMIT)).map(({ group, name }) => `${group}:${name}`);
  } finally {
    tf.dispose(probes);
  }
}

/** Names the first few tensors of a list, and how many more there are. */
export function someOf(names: string[], shown = 3): string {
  return names.slice(0, shown).join(', ') + (names.length > shown ? ` and ${names.length - shown} more` : '');
}

/**
 * Writes the model's state at `step` with the stream cursor that follows it (and what lives outside the model:
 * a mixed-precision GPU stepper's loss scale, the collapse watch's count). Non-finite state is refused with a
 * NonFiniteStateError before anything is written.
 */
export async function saveCheckpoint(
  store: Store,
  model: SwavModel,
  step: number,
  cursor: StreamCursor,
  extra: Pick<CheckpointHeader, 'lossScale' | 'precision' | 'dataset' | 'collapse'> = {},
): Promise<string> {
  const bad = unsafeTensors(model);
  if (bad.length > 0) {
    throw new NonFiniteStateError(
      `the state at step ${step} is not finite (NaN, infinity or beyond 2^64 in ${someOf(bad)}); no checkpoint was written`,
      bad,
    );
  }
  const list = entries(model);
  let offset = 0;
  const tensors = list.map(({ group, name, tensor }) => {
    const e = { name, group, shape: tensor.shape, offset };
    offset += tensor.size * 4;
    return e;
  });
  const header: CheckpointHeader = {
    version: FORMAT_VERSION,
    step,
    config: model.config,
    cursor,
    queueFilled: model.queueFilled,
    createdAt: new Date().toISOString(),
    tensors,
    ...(extra.lossScale && { lossScale: extra.lossScale }),
    ...(extra.precision && { precision: extra.precision }),
    ...(extra.dataset && { dataset: extra.dataset }),
    ...(extra.collapse && { collapse: extra.collapse }),
  };
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.length);
  async function* body(): AsyncGenerator<Buffer> {
    const hash = createHash('sha256').update(json);
    yield Buffer.concat([MAGIC, length, json]);
    for (const { tensor } of list) {
      const data = Buffer.from(((await tensor.data()) as Float32Array).slice().buffer); // own copy: backends may reuse theirs
      hash.update(data);
      yield data;
    }
    yield hash.digest();
  }
  const key = checkpointKey(step);
  await store.put(key, Readable.from(body()));
  return key;
}

/**
 * Reads and verifies one checkpoint; damage of any kind is an InvalidCheckpointError naming it (a
 * NewerCheckpointError for a later format). The format is checked before the checksum, so a later format
 * with another trailer is never mistaken for damage.
 */
export async function loadCheckpoint(store: Store, key: string): Promise<Checkpoint> {
  const bytes = await readAll(store, key);
  try {
    const headerEnd = PREAMBLE + headerLength(bytes.subarray(0, PREAMBLE), bytes.length);
    const header = parseHeader(bytes.subarray(PREAMBLE, headerEnd));
    checkStepName(key, header);
    const digest = createHash('sha256')
      .update(bytes.subarray(PREAMBLE, bytes.length - TRAILER))
      .digest();
    if (!digest.equals(bytes.subarray(bytes.length - TRAILER)))
      throw new Damage('checksum mismatch (truncated or damaged)');
    const payload = bytes.subarray(headerEnd, bytes.length - TRAILER);
    checkLayout(header, payload.length);
    const values = new Map<string, Float32Array>();
    const shapes = new Map(header.tensors.map((t) => [`${t.group}:${t.name}`, t.shape]));
    for (const t of header.tensors) {
      const end = t.offset + t.shape.reduce((a, b) => a * b, 1) * 4;
      const value = new Float32Array(payload.buffer.slice(payload.byteOffset + t.offset, payload.byteOffset + end));
      if (!value.every((v) => Math.abs(v) < STATE_LIMIT))
        throw new Damage(
          `tensor ${t.group}:${t.name} holds NaN, infinity or values beyond 2^64 (saved by a diverged run)`,
        );
      values.set(`${t.group}:${t.name}`, value);
    }
    return { key, header, values, shapes };
  } catch (err) {
    throw err instanceof Damage ? damaged(store, key, err) : err;
  }
}

async function readAll(store: Store, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await store.get(key)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * The newest checkpoint that verifies, skipping (and reporting) damaged newer ones; null when none. `fits`
 * may check a loaded one further (that it holds the tensors a model needs): its InvalidCheckpointError is
 * damage like any other, any other error ends the search.
 */
export async function latestCheckpoint(
  store: Store,
  onSkip: (err: InvalidCheckpointError) => void,
  fits?: (ckpt: Checkpoint) => void,
): Promise<Checkpoint | null> {
  for (const { key } of await listCheckpoints(store)) {
    try {
      const ckpt = await loadCheckpoint(store, key);
      fits?.(ckpt);
      return ckpt;
    } catch (err) {
      if (!(err instanceof InvalidCheckpointError)) throw err;
      onSkip(err);
    }
  }
  return null;
}

/** The checkpoint of `step`; when there is none, a ConfigError listing the steps the store has. */
export async function checkpointAt(store: Store, step: number): Promise<Checkpoint> {
  const all = await listCheckpoints(store);
  const found = all.find((c) => c.step === step);
  if (found) return loadCheckpoint(store, found.key);
  const steps = all.map((c) => c.step).reverse();
  throw new ConfigError(
    `no checkpoint of step ${step} in ${store.url}; ` +
      (steps.length ? `it has step${steps.length > 1 ? 's' : ''} ${steps.join(', ')}` : 'it has none'),
  );
}

/** The tensors (id and shape) a model reads from a checkpoint: its parameters, the slots it holds, the queue. */
export function modelTensors(model: SwavModel, ckpt: Checkpoint): Array<[string, number[]]> {
  const slots = ckpt.header.tensors
    .filter((e) => e.group === 'slot')
    .map((t) => {
      const w = model.ps.vars.get(t.name);
      if (!w) throw tensorDamage(ckpt, `a momentum slot for unknown variable ${t.name}`);
      return [`slot:${t.name}`, w.shape] as [string, number[]];
    });
  return [
    ...paramTensors(model.ps),
    ...slots,
    ...model.queue.map((q, i) => [`queue:${i}`, q.shape] as [string, number[]]),
  ];
}

export const paramTensors = (ps: ParamSet): Array<[string, number[]]> =>
  [...ps.vars].map(([name, v]) => [`param:${name}`, v.shape]);

/** Throws damage naming the first tensor a checkpoint lacks, or holds with another shape than `wanted`. */
export function checkTensors(ckpt: Checkpoint, wanted: Array<[string, number[]]>): void {
  for (const [id, shape] of wanted) {
    const has = ckpt.shapes.get(id);
    if (!has || !ckpt.values.has(id)) throw tensorDamage(ckpt, `tensor ${id} of shape [${shape}] is missing`);
    if (JSON.stringify(has) !== JSON.stringify(shape))
      throw tensorDamage(ckpt, `tensor ${id} has shape [${has}] where the model has [${shape}]`);
  }
}

const tensorDamage = (ckpt: Checkpoint, why: string) =>
  new InvalidCheckpointError(`checkpoint ${ckpt.key} is unusable: ${why}`, { key: ckpt.key, damage: why });

const take = (ckpt: Checkpoint, id: string, shape: number[]): tf.Tensor => tf.tensor(ckpt.values.get(id)!, shape);

/** Copies the checkpoint's values into every variable of `ps` (a whole model, or just a backbone). */
export function restoreParams(ps: ParamSet, ckpt: Checkpoint): void {
  checkTensors(ckpt, paramTensors(ps));
  for (const [name, v] of ps.vars) assignFrom(v, take(ckpt, `param:${name}`, v.shape));
}

/** Copies a checkpoint's tensors into a model built from the same config; checks them all before changing any. */
export function restoreModel(model: SwavModel, ckpt: Checkpoint): void {
  checkTensors(ckpt, modelTensors(model, ckpt));
  restoreParams(model.ps, ckpt);
  for (const t of ckpt.header.tensors.filter((e) => e.group === 'slot')) {
    const w = model.ps.vars.get(t.name)!;
    const value = take(ckpt, `slot:${t.name}`, w.shape);
    model.lars.slots.get(t.name)?.dispose();
    model.lars.slots.set(t.name, tf.variable(value, false, `${w.name}.momentum`));
    value.dispose();
  }
  model.queue = model.queue.map((q, i) => {
    const next = take(ckpt, `queue:${i}`, q.shape) as tf.Tensor2D;
    q.dispose();
    return next;
  });
  model.queueFilled = ckpt.header.queueFilled;
}

function assignFrom(v: tf.Variable, value: tf.Tensor): void {
  v.assign(value);
  value.dispose();
}

/** Deletes all but the newest `keep` checkpoints. */
export async function pruneCheckpoints(store: Store, keep: number): Promise<void> {
  for (const { key } of (await listCheckpoints(store)).slice(keep)) await store.delete(key);
}
