/**
 * The checkpoint format, read in one place: "WSCKPT01", u32 LE header length, the JSON header, the float32
 * LE payload, the sha256 of header + payload. Every reader (a whole load, the settings a resume keeps, a
 * plot's annotations, export) validates the header here, so a file of another kind, a header of another
 * shape or a tensor table that does not match the payload is named damage, never a TypeError or a read of
 * whatever length four stray bytes say.
 */
import { z } from 'zod';
import { checkTrainConfig, TRAIN_CONFIG_SHAPE, type TrainConfig } from './config.js';
import type { StreamCursor } from '../augment/stream.js';
import { WildstreamError } from '../errors.js';
import type { Store } from '../shards/store.js';
import type { CollapseState } from './collapse.js';
import type { LossScaleState } from './webgpu/kernels/loss-scale.js';

export class InvalidCheckpointError extends WildstreamError {
  override readonly code: string = 'WS_ERR_INVALID_CHECKPOINT';
  /** The checkpoint at fault and what is wrong with it, when it is one checkpoint. */
  readonly key: string | undefined;
  readonly damage: string | undefined;
  constructor(message: string, options?: { key?: string; damage?: string }) {
    super(message);
    this.key = options?.key;
    this.damage = options?.damage;
  }
}

/**
 * A checkpoint of a later format than this code reads. It is unusable here but not damaged: a newer
 * wildstream reads it, so nothing may delete or overwrite it short of an explicit `--no-resume`.
 */
export class NewerCheckpointError extends InvalidCheckpointError {
  override readonly code = 'WS_ERR_NEWER_CHECKPOINT';
}

/** The format this code writes and reads (the header's `version`, the magic's last two digits). */
export const FORMAT_VERSION = 1;
export const MAGIC = Buffer.from(`WSCKPT${String(FORMAT_VERSION).padStart(2, '0')}`);
/** Magic and header length: the bytes before the header. */
export const PREAMBLE = 12;
/** The sha256 trailer. */
export const TRAILER = 32;

export interface TensorEntry {
  name: string;
  group: 'param' | 'slot' | 'queue';
  shape: number[];
  /** Byte offset within the payload. */
  offset: number;
}

export interface CheckpointHeader {
  version: 1;
  step: number;
  config: TrainConfig;
  cursor: StreamCursor;
  queueFilled: number;
  createdAt: string;
  tensors: TensorEntry[];
  /**
   * A mixed-precision WebGPU run's dynamic loss scale at this step (scale, clean run, and the skipped and
   * grown counts, which older checkpoints lack), so its resume scales, skips, grows and counts as an unbroken
   * run. Absent from other runs and from checkpoints written before it; other backends ignore it.
   */
  lossScale?: LossScaleState;
  /**
   * The WebGPU engine's precision in the run that wrote it, which a webgpu resume keeps unless told otherwise.
   * Absent from other backends' checkpoints and from those written before it.
   */
  precision?: 'f32' | 'mixed';
  /**
   * The dataset the run trained on (its cursor belongs to it): a resume on another one is refused. Absent from
   * checkpoints written before it and from runs given batches rather than a dataset; those resume as before.
   */
  dataset?: DatasetIdentity;
  /**
   * Where the collapse watch stood (collapse.ts): the log intervals in a row at ln K and the warnings given, so
   * that a resume counts on rather than from zero. Absent from checkpoints written before it: those resume with a
   * fresh count, as before.
   */
  collapse?: CollapseState;
}

/** Which dataset a run reads: its location, and the `id` of its dataset.json (kept when the dataset is moved). */
export interface DatasetIdentity {
  url: string;
  id?: string;
}

const int = z.number().int().min(0);
const num = z.number();
const cursor = z.object({
  epoch: int,
  group: int,
  offset: int,
  position: int,
  units: z.array(z.tuple([int, int])).nullable(),
  digest: z.string().optional(),
  // Kept (not stripped) so that the stream can refuse a resume under other order settings.
  order: z
    .object({ seed: num, rank: int, worldSize: z.number().int().min(1), windowShards: int, groupBatches: int })
    .optional(),
});
const header = z.looseObject({
  version: z.literal(FORMAT_VERSION),
  step: int,
  config: TRAIN_CONFIG_SHAPE,
  cursor,
  queueFilled: int,
  createdAt: z.string(),
  tensors: z.array(
    z.object({ name: z.string(), group: z.enum(['param', 'slot', 'queue']), shape: z.array(int), offset: num }),
  ),
  // skipped and grown came later: a header without them parses (its counts start at 0).
  lossScale: z
    .object({ scale: z.number().positive(), cleanRun: int, skipped: int.optional(), grown: int.optional() })
    .optional(),
  precision: z.enum(['f32', 'mixed']).optional(),
  dataset: z.object({ url: z.string(), id: z.string().optional() }).optional(),
  collapse: z
    .object({ window: z.array(z.object({ step: int, loss: num })), warned: z.boolean(), warnings: int })
    .optional(),
});

/** Damage found in a checkpoint's bytes: `newer` when the bytes are of a later format rather than broken. */
export class Damage extends Error {
  constructor(
    readonly why: string,
    readonly newer = false,
  ) {
    super(why);
  }
}

const newer = (format: number) =>
  new Damage(`written by a newer wildstream (format ${format}, this reads ${FORMAT_VERSION})`, true);

/**
 * The header's length from a checkpoint's first 12 bytes, checked against the object's size; throws Damage
 * for another kind of file, a later format, or a length that does not fit (truncated, or not a checkpoint).
 */
export function headerLength(preamble: Uint8Array, size: number): number {
  const bytes = Buffer.from(preamble.buffer, preamble.byteOffset, preamble.byteLength);
  if (size < PREAMBLE + TRAILER || bytes.length < PREAMBLE)
    throw new Damage(`too short for a checkpoint (${size} bytes)`);
  const format = /^WSCKPT(\d\d)$/.exec(bytes.subarray(0, 8).toString('latin1'));
  if (!format) throw new Damage('not a wildstream checkpoint');
  if (Number(format[1]) > FORMAT_VERSION) throw newer(Number(format[1]));
  if (!bytes.subarray(0, 8).equals(MAGIC)) throw new Damage('not a wildstream checkpoint');
  const length = bytes.readUInt32LE(8);
  if (length === 0) throw new Damage('unreadable header (empty)');
  if (length > size - PREAMBLE - TRAILER) {
    throw new Damage(`header length ${length} does not fit in the ${size} bytes there are (truncated or damaged)`);
  }
  return length;
}

/** Parses and validates a header's JSON; throws Damage naming what is wrong. */
export function parseHeader(json: Uint8Array): CheckpointHeader {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(json.buffer, json.byteOffset, json.byteLength).toString('utf8'));
  } catch {
    throw new Damage('unreadable header (not JSON)');
  }
  const version = (value as { version?: unknown } | null)?.version;
  if (typeof version === 'number' && version > FORMAT_VERSION) throw newer(version);
  const parsed = header.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Damage(
      `header of another shape (${issue.path.length ? issue.path.join('.') : 'the header'}: ${issue.message})`,
    );
  }
  try {
    checkTrainConfig(parsed.data.config as TrainConfig);
  } catch (err) {
    throw new Damage(`header holds an invalid config (${(err as Error).message})`);
  }
  return parsed.data as CheckpointHeader;
}

/**
 * Checks the tensor table tiles the payload as the writer lays it out: each tensor where the previous one
 * ends, the last at the payload's end (a negative or stray offset is a damaged table, not a NaN).
 */
export function checkLayout(h: CheckpointHeader, payloadLength: number): void {
  let end = 0;
  const seen = new Set<string>();
  for (const t of h.tensors) {
    const id = `${t.group}:${t.name}`;
    if (seen.has(id)) throw new Damage(`tensor table damaged: ${id} appears twice`);
    seen.add(id);
    if (t.offset !== end)
      throw new Damage(
        `tensor table damaged: ${id} starts at byte ${t.offset} of the payload, the previous tensor ends at ${end}`,
      );
    end += t.shape.reduce((a, b) => a * b, 1) * 4;
  }
  if (end !== payloadLength)
    throw new Damage(`tensor table damaged: it covers ${end} bytes, the payload holds ${payloadLength}`);
}

/** A checkpoint's damage as the error every reader throws. */
export function damaged(store: Store, key: string, damage: Damage): InvalidCheckpointError {
  const Kind = damage.newer ? NewerCheckpointError : InvalidCheckpointError;
  return new Kind(`checkpoint ${key} in ${store.url} is unusable: ${damage.why}`, { key, damage: damage.why });
}

/**
 * Checks that a checkpoint's header is of the step its file name says (`step-<9 digits>.ckpt`): one renamed to
 * another step would resume, or export, at a step it does not hold. Throws Damage naming both.
 */
export function checkStepName(key: string, header: CheckpointHeader): void {
  const m = /step-(\d+)\.ckpt$/.exec(key);
  if (m && Number(m[1]) !== header.step)
    throw new Damage(`its header is of step ${header.step}, its file name of step ${Number(m[1])} (renamed?)`);
}

/** Reads and validates only a checkpoint's header (a few KB, whatever the model's size). */
export async function readCheckpointHeader(store: Store, key: string): Promise<CheckpointHeader> {
  const size = (await store.head(key))?.size ?? 0;
  try {
    const length = headerLength(size >= PREAMBLE ? await store.getRange(key, 0, PREAMBLE - 1) : new Uint8Array(), size);
    const header = parseHeader(await store.getRange(key, PREAMBLE, PREAMBLE + length - 1));
    checkStepName(key, header);
    return header;
  } catch (err) {
    throw err instanceof Damage ? damaged(store, key, err) : err;
  }
}

/** The refusal when no checkpoint of a store is usable: each one and its damage, then what to do. */
export function everyDamaged(store: Store, errors: InvalidCheckpointError[], advice: string): InvalidCheckpointError {
  const each = errors.map((e) => (e.key ? `${e.key} (${e.damage})` : e.message)).join('; ');
  return new InvalidCheckpointError(`every checkpoint in ${store.url} is damaged: ${each}. ${advice}`);
}
