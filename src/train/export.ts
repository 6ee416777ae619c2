/**
 * `wildstream export`: a checkpoint's backbone (eval mode: running BatchNorm statistics) as a TensorFlow.js
 * graph model, `model.json` + the weights file it names (`weights-<hash>.bin`), which `tf.loadGraphModel` runs
 * on any backend. Input: NHWC float32 images normalised with the metadata's mean/std; output `features`:
 * [N, width of the last stage].
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import { IMAGENET_MEAN, IMAGENET_STD } from '../crops.js';
import { ConfigError, NotFoundError } from '../errors.js';
import { EXPORT_PENDING_KEY, weightsKey } from '../shards/keys.js';
import { getBytes, type Store } from '../shards/store.js';
import { GraphBuilder } from './graph.js';
import type { ParamSet } from './params.js';
import { regnetBody, type RegNetOps } from './regnet.js';
import type { RegNetSpec } from './regnet-spec.js';
import { MODEL_JSON, WEIGHTS_FILE, type BackboneMetadata, type ModelJson } from './model-folder.js';

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
 * files that the model.json it replaced named. Nothing else in the folder is touched: a folder without an export
 * may hold the user's files, even ones named like weights (`weights.bin`), and they stay. A failure before
 * model.json is written leaves the previous export whole and removes the weights file it wrote (a process killed
 * between the two puts leaves that file, named in export-pending.json, for the next export to remove). Throws a ConfigError, before writing anything, when the folder's
 * model.json is another program's (JSON, but not a wildstream backbone): replacing it would lose that model.
 * Two exports into one folder at the same time are not supported: the last model.json wins, and the other's
 * weights may stay behind.
 */
export async function exportBackbone(
  out: Store,
  ps: ParamSet,
  spec: RegNetSpec,
  meta: Omit<BackboneMetadata, 'featureDim' | 'mean' | 'std'>,
): Promise<BackboneMetadata> {
  // Read before anything is written: once model.json is replaced, nothing tells which weights were the export's.
  const replaced = await weightsOfExport(out);
  const g = new GraphBuilder();
  const features = regnetBody(graphOps(g, ps), spec, { name: g.placeholder('images', [-1, -1, -1, 3]), channels: 3 });
  const metadata: BackboneMetadata = { ...meta, featureDim: features.channels, mean: IMAGENET_MEAN, std: IMAGENET_STD };
  const serialised = g.serialise('weights.bin', metadata as unknown as Record<string, unknown>);
  const { weights } = serialised;
  const modelJson = serialised.modelJson as ModelJson;
  const file = weightsKey(createHash('sha256').update(weights).digest('hex'));
  modelJson.weightsManifest[0]!.paths = [file];
  // A file of this name already there holds these bytes (the name is their hash) and is not this export's to remove.
  const created = (await out.head(file)) === null;
  const stale = await pendingWeights(out);
  if (created) await out.put(EXPORT_PENDING_KEY, Buffer.from(JSON.stringify({ weights: file })));
  try {
    await out.put(file, weights);
    await out.put(MODEL_JSON, Buffer.from(JSON.stringify(modelJson)));
  } catch (err) {
    // A failure seen here is cleaned up here; only a kill leaves the marker for the next export.
    if (created) await removeUnused(out, file);
    if (created) await out.delete(EXPORT_PENDING_KEY).catch(() => {});
    throw err;
  }
  for (const key of [...replaced, ...stale].filter((k) => k !== file)) {
    // Best effort: the new export is already whole, and a file no model.json names harms no reader.
    await out.delete(key).catch(() => {});
  }
  if (created || stale.length > 0) await out.delete(EXPORT_PENDING_KEY).catch(() => {});
  return metadata;
}

/**
 * The weights file an export cut short (killed between its weights and its model.json) left, named by its
 * marker, unless model.json names it: nothing else would ever remove it, and a RegNet's weights are large.
 */
async function pendingWeights(store: Store): Promise<string[]> {
  const bytes = await getBytes(store, EXPORT_PENDING_KEY).catch(() => undefined);
  if (bytes === undefined) return [];
  let weights: unknown;
  try {
    weights = (JSON.parse(Buffer.from(bytes).toString('utf8')) as { weights?: unknown }).weights;
  } catch {
    return [];
  }
  if (typeof weights !== 'string' || !WEIGHTS_FILE.test(weights)) return [];
  return (await weightsOfExport(store)).includes(weights) ? [] : [weights];
}

/**
 * The weights files that the export in `store` names (its model.json's weightsManifest paths of the names an
 * export writes, WEIGHTS_FILE), or none when it holds no model.json. A damaged export is one to replace (as
 * loadBackbone's refusal says), so a model.json that is not JSON names none and one whose manifest is damaged
 * names what it can; a JSON model.json that is not a wildstream backbone is refused (see exportBackbone).
 */
async function weightsOfExport(store: Store): Promise<string[]> {
  const bytes = await getBytes(store, MODEL_JSON).catch((err: unknown) => {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  });
  if (bytes === undefined) return [];
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return [];
  }
  const record = (v: unknown): Record<string, unknown> | undefined =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  const meta = record(record(json)?.userDefinedMetadata);
  // The test loadBackbone tells a wildstream backbone by (parseModelJson).
  if (record(json)?.format !== 'graph-model' || !meta?.featureDim)
    throw new ConfigError(
      `${store.url} holds a ${MODEL_JSON} that is not a wildstream export, which exporting there would replace; ` +
        'export into another folder, or move it away first',
    );
  const manifest = record(json)!.weightsManifest;
  const paths: unknown[] = (Array.isArray(manifest) ? manifest : []).flatMap((group) => record(group)?.paths ?? []);
  return [...new Set(paths.filter((p): p is string => typeof p === 'string' && WEIGHTS_FILE.test(p)))];
}

/**
 * Removes `file`, written by an export whose model.json put failed, unless model.json names it after all (a put
 * reported failed may have landed: an S3 answer lost on its way back). Best effort: a file named by the hash of
 * its bytes that nothing names harms no reader.
 */
async function removeUnused(store: Store, file: string): Promise<void> {
  try {
    if (!(await weightsOfExport(store)).includes(file)) await store.delete(file);
  } catch {
    // Left in place (see above).
  }
}
