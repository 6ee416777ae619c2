/**
 * `wildstream export`: a checkpoint's backbone (eval mode: running BatchNorm statistics) as a TensorFlow.js
 * graph model, `model.json` + `weights.bin`, which `tf.loadGraphModel` runs on any backend. Input: NHWC
 * float32 images normalised with the metadata's mean/std; output `features`: [N, width of the last stage].
 */
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel, type GraphModel } from '@tensorflow/tfjs-converter';
import { IMAGENET_MEAN, IMAGENET_STD } from '../crops.js';
import { ConfigError, NotFoundError } from '../errors.js';
import { getBytes, type Store } from '../shards/store.js';
import { GraphBuilder } from './graph.js';
import type { ParamSet } from './params.js';
import { regnetBody, type RegNetOps } from './regnet.js';
import type { RegNetSpec } from './regnet-spec.js';

interface Node {
  name: string;
  channels: number;
}

export interface BackboneMetadata {
  model: string;
  step: number;
  featureDim: number;
  /** Side of the square input the backbone was trained around (the largest crop). */
  inputSize: number;
  mean: number[];
  std: number[];
}

function graphOps(g: GraphBuilder, ps: ParamSet): RegNetOps<Node> {
  const value = (name: string) => {
    const v = ps.vars.get(name);
    if (!v) throw new ConfigError(`the checkpoint has no variable ${name}`);
    return v;
  };
  const weight = (name: string) => g.fromTensor(name, value(name));
  return {
    conv(name, x, out, k, stride, groups) {
      if (groups === 1) return { name: g.conv2d(name, x.name, weight(`${name}.w`), stride), channels: out };
      // No grouped Conv2D in tfjs: split channels, one conv per group, concat (as the training graph does).
      const w = tf.split(value(`${name}.w`), groups, 3);
      const xs = g.split(`${name}/split`, x.name, groups);
      const ys = xs.map((xi, i) => g.conv2d(`${name}/g${i}`, xi, g.fromTensor(`${name}.w/g${i}`, w[i]!), stride));
      tf.dispose(w);
      return { name: g.concat(name, ys), channels: out };
    },
    bn: (name, x) => ({
      name: g.batchNorm(
        name,
        x.name,
        weight(`${name}.gamma`),
        weight(`${name}.beta`),
        weight(`${name}.mean`),
        weight(`${name}.var`),
        1e-5,
      ),
      channels: x.channels,
    }),
    relu: (x) => ({ name: g.unary('Relu', `${x.name}/relu`, x.name), channels: x.channels }),
    se(name, x, squeeze) {
      const pooled = g.mean(`${name}/pool`, x.name, [1, 2], true);
      const fc = (part: string, input: string, cin: number, cout: number) => {
        const w = g.constant(`${name}.${part}.w`, value(`${name}.${part}.w`).dataSync() as Float32Array, [
          1,
          1,
          cin,
          cout,
        ]);
        return g.binary(
          'AddV2',
          `${name}/${part}`,
          g.conv2d(`${name}/${part}/conv`, input, w, 1),
          weight(`${name}.${part}.b`),
        );
      };
      const hidden = g.unary('Relu', `${name}/reduce/relu`, fc('reduce', pooled, x.channels, squeeze));
      const gate = g.unary('Sigmoid', `${name}/gate`, fc('expand', hidden, squeeze, x.channels));
      return { name: g.binary('Mul', `${name}/scaled`, x.name, gate), channels: x.channels };
    },
    add: (a, b) => ({ name: g.binary('AddV2', `${a.name}/add`, a.name, b.name), channels: a.channels }),
    pool: (x) => ({ name: g.mean('features', x.name, [1, 2], false), channels: x.channels }),
    channels: (x) => x.channels,
  };
}

/** Writes model.json and weights.bin of the backbone held in `ps` to `out`. */
export async function exportBackbone(
  out: Store,
  ps: ParamSet,
  spec: RegNetSpec,
  meta: Omit<BackboneMetadata, 'featureDim' | 'mean' | 'std'>,
): Promise<BackboneMetadata> {
  const g = new GraphBuilder();
  const features = regnetBody(graphOps(g, ps), spec, { name: g.placeholder('images', [-1, -1, -1, 3]), channels: 3 });
  const metadata: BackboneMetadata = { ...meta, featureDim: features.channels, mean: IMAGENET_MEAN, std: IMAGENET_STD };
  const { modelJson, weights } = g.serialise('weights.bin', metadata as unknown as Record<string, unknown>);
  await out.put('weights.bin', weights);
  await out.put('model.json', Buffer.from(JSON.stringify(modelJson)));
  return metadata;
}

export interface Backbone {
  model: GraphModel;
  metadata: BackboneMetadata;
  /** Features of normalised NHWC images. */
  embed(images: tf.Tensor4D): tf.Tensor2D;
}

/** What to run to put a backbone in a model folder: the tail of loadBackbone's refusals. */
const EXPORT_HINT = 'export a trained run into it with `wildstream export <run> --out <dir>`';

/**
 * Loads an exported backbone with tfjs-converter's loadGraphModel. Throws a ConfigError naming the folder and
 * the export command when `store` holds no model.json (or its weights file), or a model.json that is not one
 * of `wildstream export`'s.
 */
export async function loadBackbone(store: Store): Promise<Backbone> {
  const json = JSON.parse(Buffer.from(await exportedFile(store, 'model.json')).toString('utf8'));
  if (json.format !== 'graph-model' || !json.userDefinedMetadata?.featureDim) {
    throw new ConfigError(`${store.url} holds no wildstream backbone (its model.json is not one); ${EXPORT_HINT}`);
  }
  const bytes = await exportedFile(store, json.weightsManifest[0].paths[0]);
  const weightData = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const model = await loadGraphModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest[0].weights,
      weightData,
      format: json.format,
    }),
  );
  return {
    model,
    metadata: json.userDefinedMetadata as BackboneMetadata,
    embed: (images) => model.execute({ images }, 'features') as tf.Tensor2D,
  };
}

/** A file of an exported model; a missing one is the user's folder holding no export, so a ConfigError. */
async function exportedFile(store: Store, key: string): Promise<Uint8Array> {
  try {
    return await getBytes(store, key);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    throw new ConfigError(`${store.url} holds no exported model (no ${key}); ${EXPORT_HINT}`, { cause: err });
  }
}
