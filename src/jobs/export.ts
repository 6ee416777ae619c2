/**
 * Exporting a trained backbone, what `wildstream export CKPT --out DIR` runs: read a checkpoint of a training
 * run, rebuild the RegNet from its config, and write it as a TensorFlow.js graph model.
 */
import { cropSizes } from '../crops.js';
import { checkOptionsObject, ConfigError, shown } from '../errors.js';
import { checkStore, type Store } from '../shards/store.js';
import { startBackend, type BackendName } from '../train/backend.js';
import {
  checkpointAt,
  checkTensors,
  latestCheckpoint,
  paramTensors,
  restoreParams,
  type Checkpoint,
  type InvalidCheckpointError,
} from '../train/checkpoint.js';
import { everyDamaged } from '../train/checkpoint-format.js';
import { exportBackbone } from '../train/export.js';
import type { BackboneMetadata } from '../train/model-folder.js';
import { ParamSet } from '../train/params.js';
import { buildRegnet } from '../train/regnet.js';
import { regnetSpec } from '../train/regnet-spec.js';

export interface ExportOptions {
  /** The checkpoint store of a training run (its `out`: `checkpoints/step-<step>.ckpt`). */
  checkpoints: Store;
  /**
   * Where `model.json` and the weights file it names (`weights-<hash>.bin`) are written (a store at the model's
   * folder). The folder changes all at once as a reader sees it: model.json is written last, and the weights
   * files of the export it replaces are removed after it.
   */
  out: Store;
  /** The checkpoint of this step. @default the newest that verifies and holds a whole backbone */
  step?: number;
  /** Export the run's initial weights instead (seeded from its config): the random-init baseline for evaluation. @default false */
  init?: boolean;
  /** The tfjs backend the weights are rebuilt on. @default 'cpu' */
  backend?: BackendName;
  /** Told of each damaged checkpoint skipped on the way to a usable one. @default nothing */
  log?: (line: string) => void;
}

/**
 * Writes a checkpoint's backbone (eval mode: running BatchNorm statistics) as a graph model that
 * `loadBackbone` or `tf.loadGraphModel` runs. Its input is float32 NHWC images [N, H, W, 3] normalised with
 * the returned `mean`/`std` (trained around `inputSize` px); its output `features` is [N, featureDim].
 * Throws a ConfigError when an option is not what it says (a store not a Store, `step` not an integer >= 0),
 * when the store has no checkpoint (or none of `step`, listing the steps it has) and an
 * InvalidCheckpointError naming each damage when every checkpoint is damaged.
 */
export async function exportCheckpoint(o: ExportOptions): Promise<BackboneMetadata> {
  checkOptionsObject(o, 'exportCheckpoint options');
  checkStore(o.checkpoints, "checkpoints (the run's store)");
  checkStore(o.out, "out (the model folder's store)");
  // `step: NaN` was looked up as a checkpoint name and reported missing ("no checkpoint of step NaN").
  if (o.step !== undefined && !(Number.isSafeInteger(o.step) && o.step >= 0))
    throw new ConfigError(`step must be an integer >= 0, got ${shown(o.step)}`);
  if (o.init !== undefined && typeof o.init !== 'boolean')
    throw new ConfigError(`init must be true or false, got ${shown(o.init)}`);
  if (o.log !== undefined && typeof o.log !== 'function')
    throw new ConfigError(`log must be a function, got ${shown(o.log)}`);
  await startBackend(o.backend ?? 'cpu');
  const ckpt =
    o.step === undefined
      ? await newestWhole(o.checkpoints, o.log ?? (() => {}))
      : await checkpointAt(o.checkpoints, o.step);
  const { config } = ckpt.header;
  const ps = new ParamSet(config.seed);
  try {
    const spec = regnetSpec(config.model);
    buildRegnet(ps, spec);
    if (!o.init) restoreParams(ps, ckpt);
    const inputSize = Math.max(...cropSizes(config.crops));
    return await exportBackbone(o.out, ps, spec, {
      model: config.model,
      step: o.init ? 0 : ckpt.header.step,
      inputSize,
    });
  } finally {
    ps.dispose();
  }
}

/** The newest checkpoint that verifies and holds a whole backbone of its own config. */
async function newestWhole(store: Store, log: (line: string) => void): Promise<Checkpoint> {
  const damaged: InvalidCheckpointError[] = [];
  const ckpt = await latestCheckpoint(
    store,
    (err) => {
      damaged.push(err);
      log(`warning: ${err.message}`);
    },
    (c) => {
      const ps = new ParamSet(c.header.config.seed);
      try {
        buildRegnet(ps, regnetSpec(c.header.config.model));
        checkTensors(c, paramTensors(ps));
      } finally {
        ps.dispose();
      }
    },
  );
  if (ckpt) return ckpt;
  if (damaged.length > 0) throw everyDamaged(store, damaged, 'Nothing to export: restore a good copy of one');
  throw new ConfigError(`no checkpoint in ${store.url}`);
}
