/**
 * One data-parallel training thread: its own tfjs backend and its own copy of the model, stepping on its
 * rows of every batch. The step's hooks (StepSharing) meet the other workers in shared memory, so every
 * worker computes the same codes, gradients, statistics and queue, and applies the same update: weights
 * stay bit-identical across workers. Started by ParallelStepper through worker-entry.mjs.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { startBackend, type BackendName } from '../backend.js';
import type { TrainConfig } from '../config.js';
import { SwavModel } from '../model.js';
import type { ParamSet } from '../params.js';
import { stopGradient } from '../layers.js';
import { sinkhorn } from '../swav.js';
import { lastUpdates, type StepSharing } from './sharing.js';
import { Barrier, sumShare, type SharedBuffers } from './shared.js';
import { exportState, importState, type ModelState } from './state.js';

export interface WorkerInit {
  config: TrainConfig;
  backend: BackendName;
  rank: number;
  workers: number;
  buffers: SharedBuffers;
}

export type WorkerRequest =
  | { type: 'load'; state: ModelState }
  | { type: 'state' }
  | { type: 'step'; step: number; start: number; rows: number; total: number; crops: Float32Array[]; sizes: number[] };

export type WorkerReply =
  | { ok: true; type: 'ready'; params: number }
  | { ok: true; type: 'loaded' }
  | { ok: true; type: 'state'; state: ModelState }
  | { ok: true; type: 'stepped'; loss: number; lr: number }
  | { ok: false; error: { name: string; message: string } };

/** Where each variable's floats sit in a slot: model variables in creation order (the same in every worker). */
function layoutOf(ps: ParamSet): Map<string, { offset: number; size: number }> {
  const layout = new Map<string, { offset: number; size: number }>();
  let offset = 0;
  for (const [name, v] of ps.vars) {
    layout.set(name, { offset, size: v.size });
    offset += v.size;
  }
  return layout;
}

/** The hooks for one step on rows [start, start + rows) of a batch of `total`. */
class WorkerSharing implements StepSharing {
  private readonly barrier: Barrier;
  private readonly maxRows: number;
  private readonly layout: Map<string, { offset: number; size: number }>;
  start = 0;
  rows = 0;
  total = 0;

  constructor(
    private readonly init: WorkerInit,
    private readonly model: SwavModel,
  ) {
    this.barrier = new Barrier(init.buffers.control, init.workers);
    this.maxRows = init.config.batchSize;
    this.layout = layoutOf(model.ps);
  }

  get params(): number {
    return [...this.layout.values()].reduce((n, e) => n + e.size, 0);
  }

  /** Writes this worker's rows of a [rows, width] tensor into region `a`, waits for all, returns all rows. */
  private allRows(buffer: SharedArrayBuffer, a: number, local: tf.Tensor2D): tf.Tensor2D {
    const width = local.shape[1];
    const region = new Float32Array(buffer, 4 * a * this.maxRows * width, this.total * width);
    region.set(local.dataSync(), this.start * width);
    this.barrier.wait();
    return tf.tensor2d(region.slice(), [this.total, width]);
  }

  codes = (a: number, scores: tf.Tensor2D, queued: tf.Tensor2D | undefined): tf.Tensor2D => {
    const { epsilon, sinkhornIters } = this.init.config.swav;
    const all = this.allRows(this.init.buffers.scores, a, scores); // a fresh tensor: no gradient flows back
    // The queue's scores are a function of the prototypes: codes must not pass a gradient to them.
    const codes = sinkhorn(queued ? stopGradient(tf.concat([queued, all], 0)) : all, epsilon, sinkhornIters);
    return tf.slice(codes, [(queued?.shape[0] ?? 0) + this.start, 0], [this.rows, -1]);
  };

  reduce(grads: Record<string, tf.Tensor>, ps: ParamSet): void {
    const { buffers, rank, workers } = this.init;
    const updates = lastUpdates(ps.pendingUpdates ?? []);
    const params = this.params;
    const mine = new Float32Array(buffers.slots, 4 * rank * params, params);
    // Gradients of this worker's mean loss, weighted by its share of the rows, sum to the whole batch's;
    // running statistics weighted the same way average over the workers.
    const weight = this.rows / this.total;
    const put = (name: string, t: tf.Tensor) => {
      const { offset } = this.layout.get(name)!;
      const data = t.dataSync();
      for (let i = 0; i < data.length; i++) mine[offset + i] = data[i]! * weight;
    };
    for (const [name, g] of Object.entries(grads)) put(name, g);
    const names = new Map([...ps.vars].map(([name, v]) => [v, name]));
    for (const [v, next] of updates) put(names.get(v)!, next);
    this.barrier.wait();
    sumShare(buffers, rank, workers);
    this.barrier.wait();
    const sum = new Float32Array(buffers.sum);
    const take = (name: string, shape: number[]) => {
      const { offset, size } = this.layout.get(name)!;
      return tf.tensor(sum.slice(offset, offset + size), shape);
    };
    for (const [name, g] of Object.entries(grads)) {
      grads[name] = take(name, g.shape);
      g.dispose();
    }
    ps.pendingUpdates = [...updates].map(([v, next]) => {
      next.dispose();
      return [v, take(names.get(v)!, v.shape)];
    });
  }

  gather(embeddings: tf.Tensor2D[]): tf.Tensor2D[] {
    const all = embeddings.map((e, a) => {
      const width = e.shape[1];
      const region = new Float32Array(this.init.buffers.embeddings, 4 * a * this.maxRows * width, this.total * width);
      region.set(e.dataSync(), this.start * width);
      return region;
    });
    this.barrier.wait();
    const out = all.map((region, a) => tf.tensor2d(region.slice(), [this.total, embeddings[a]!.shape[1]]));
    tf.dispose(embeddings);
    return out;
  }
}

async function main(): Promise<void> {
  const init = workerData as WorkerInit;
  const port = parentPort!;
  const reply = (r: WorkerReply, transfer: ArrayBuffer[] = []) => port.postMessage(r, transfer);
  const fail = (err: unknown) => {
    const e = err instanceof Error ? err : new Error(String(err));
    reply({ ok: false, error: { name: e.name, message: e.message } });
  };
  let model: SwavModel, sharing: WorkerSharing;
  try {
    await startBackend(init.backend);
    model = new SwavModel(init.config, { threads: init.workers });
    sharing = new WorkerSharing(init, model);
  } catch (err) {
    fail(err);
    return;
  }
  port.on('message', (req: WorkerRequest) => {
    try {
      if (req.type === 'load') {
        importState(model, req.state);
        reply({ ok: true, type: 'loaded' });
      } else if (req.type === 'state') {
        const state = exportState(model);
        const arrays = [...state.vars, ...state.slots].map(([, d]) => d).concat(state.queue);
        reply(
          { ok: true, type: 'state', state },
          arrays.map((d) => d.buffer as ArrayBuffer),
        );
      } else {
        reply({ ok: true, type: 'stepped', ...step(model, sharing, req) });
      }
    } catch (err) {
      fail(err);
    }
  });
  reply({ ok: true, type: 'ready', params: sharing.params });
}

function step(
  model: SwavModel,
  sharing: WorkerSharing,
  req: Extract<WorkerRequest, { type: 'step' }>,
): { loss: number; lr: number } {
  Object.assign(sharing, { start: req.start, rows: req.rows, total: req.total });
  const crops = req.crops.map((data, i) => tf.tensor4d(data, [req.rows, req.sizes[i]!, req.sizes[i]!, 3]));
  try {
    const { loss, lr } = model.step(crops, req.step, { sharing });
    return { loss: (loss * req.rows) / req.total, lr }; // this worker's share of the batch's mean loss
  } finally {
    tf.dispose(crops);
  }
}

await main();
