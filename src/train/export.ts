/**
 * `wildstream export`: a checkpoint's backbone (eval mode: running BatchNorm statistics) as a TensorFlow.js
 * graph model, `model.json` + the weights file it names (`weights-<hash>.bin`), which `tf.loadGraphModel` runs
 * on any backend. Input: NHWC float32 images normalised with the metadata's mean/std; output `features`:
 * [N, width of the last stage].
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import { IMAGENET_MEAN, IMAGENET_STD } from '../crops.js';
import { ConfigError } from '../errors.js';
import { weightsKey } from '../shards/keys.js';
import { getBytes, type Store } from '../shards/store.js';
import { GraphBuilder } from './graph.js';
import type { ParamSet } from './params.js';
import { regnetBody, type RegNetOps } from './regnet.js';
import type { RegNetSpec } from './regnet-spec.js';
import { MODEL_JSON, parseModelJson, WEIGHTS_FILE, type BackboneMetadata, type ModelJson } from './model-folder.js';

interface Node {
  name: string;
  channels: number;
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

/**
 * Writes the backbone held in `ps` to `out` as a graph model, all at once as a reader sees it: first its weights
 * under a name of their own (`weights-<hash>.bin`, which model.json's weightsManifest names, so tfjs and
 * loadBackbone open that file), then model.json, the commit point (a store's put is atomic), then the weights
 * files no model.json names any more. A failure before model.json is written leaves the folder's previous export
 * whole, beside an unused weights file that the next export removes. Two exports into one folder at the same
 * time are not supported: the last model.json wins and the other's clean-up may remove the weights it names.
 */
export async function exportBackbone(
  out: Store,
  ps: ParamSet,
  spec: RegNetSpec,
  meta: Omit<BackboneMetadata, 'featureDim' | 'mean' | 'std'>,
): Promise<BackboneMetadata> {
  const g = new GraphBuilder();
  const features = regnetBody(graphOps(g, ps), spec, { name: g.placeholder('images', [-1, -1, -1, 3]), channels: 3 });
  const metadata: BackboneMetadata = { ...meta, featureDim: features.channels, mean: IMAGENET_MEAN, std: IMAGENET_STD };
  const serialised = g.serialise('weights.bin', metadata as unknown as Record<string, unknown>);
  const { weights } = serialised;
  const modelJson = serialised.modelJson as ModelJson;
  const file = weightsKey(createHash('sha256').update(weights).digest('hex'));
  modelJson.weightsManifest[0]!.paths = [file];
  await out.put(file, weights);
  await out.put(MODEL_JSON, Buffer.from(JSON.stringify(modelJson)));
  await removeStaleWeights(out, file);
  return metadata;
}

/**
 * Deletes the weights files (WEIGHTS_FILE) of `store` other than `keep` and those its model.json names now:
 * a previous export's, or one a failed export left. Best effort: the export is already whole, an unused file
 * harms no reader, and the next export tries again; so a failure here is not the export's.
 */
async function removeStaleWeights(store: Store, keep: string): Promise<void> {
  try {
    const named = new Set([keep]);
    const json = parseModelJson(store, await getBytes(store, MODEL_JSON));
    for (const group of json.weightsManifest) for (const path of group.paths) named.add(path);
    const stale: string[] = [];
    for await (const { key } of store.list('weights')) if (WEIGHTS_FILE.test(key) && !named.has(key)) stale.push(key);
    for (const key of stale) await store.delete(key);
  } catch {
    // Left for the next export (see above).
  }
}
