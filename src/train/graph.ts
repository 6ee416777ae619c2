/**
 * A small writer of TensorFlow GraphDef JSON, the `graph-model` format that `tf.loadGraphModel` of
 * @tensorflow/tfjs-converter executes (the same format `tensorflowjs_converter` produces). Only the ops the
 * exported backbone needs; attribute encodings follow the converter's op tables (op_list/*.json).
 */
import type * as tf from '@tensorflow/tfjs-core';

interface NodeDef {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, unknown>;
}

export interface WeightEntry {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  data: Float32Array | Int32Array;
}

const FLOAT = { type: 'DT_FLOAT' };
const b64 = (s: string) => Buffer.from(s).toString('base64');
const ints = (xs: number[]) => ({ list: { i: xs.map(String) } });

export class GraphBuilder {
  readonly nodes: NodeDef[] = [];
  readonly weights: WeightEntry[] = [];
  private names = new Set<string>();

  private add(node: NodeDef): string {
    if (this.names.has(node.name)) throw new Error(`graph node ${node.name} defined twice`);
    this.names.add(node.name);
    this.nodes.push(node);
    return node.name;
  }

  placeholder(name: string, shape: number[]): string {
    return this.add({
      name,
      op: 'Placeholder',
      attr: { dtype: FLOAT, shape: { shape: { dim: shape.map((size) => ({ size: String(size) })) } } },
    });
  }

  /** A constant whose value travels in the weights file. */
  constant(name: string, data: Float32Array | Int32Array, shape: number[]): string {
    const dtype = data instanceof Int32Array ? 'int32' : 'float32';
    this.weights.push({ name, shape, dtype, data });
    const dt = dtype === 'int32' ? 'DT_INT32' : 'DT_FLOAT';
    return this.add({
      name,
      op: 'Const',
      attr: {
        value: { tensor: { dtype: dt, tensorShape: { dim: shape.map((size) => ({ size: String(size) })) } } },
        dtype: { type: dt },
      },
    });
  }

  fromTensor(name: string, t: tf.Tensor): string {
    return this.constant(name, t.dataSync() as Float32Array, t.shape);
  }

  conv2d(name: string, x: string, filter: string, stride: number): string {
    return this.add({
      name,
      op: 'Conv2D',
      input: [x, filter],
      attr: {
        T: FLOAT,
        strides: ints([1, stride, stride, 1]),
        padding: { s: b64('SAME') },
        data_format: { s: b64('NHWC') },
        dilations: ints([1, 1, 1, 1]),
      },
    });
  }

  batchNorm(
    name: string,
    x: string,
    scale: string,
    offset: string,
    mean: string,
    variance: string,
    epsilon: number,
  ): string {
    return this.add({
      name,
      op: 'FusedBatchNormV3',
      input: [x, scale, offset, mean, variance],
      attr: { T: FLOAT, epsilon: { f: epsilon }, data_format: { s: b64('NHWC') } },
    });
  }

  unary(op: 'Relu' | 'Sigmoid' | 'Identity', name: string, x: string): string {
    return this.add({ name, op, input: [x], attr: { T: FLOAT } });
  }

  binary(op: 'AddV2' | 'Mul' | 'MatMul', name: string, a: string, b: string): string {
    return this.add({
      name,
      op,
      input: [a, b],
      attr: op === 'MatMul' ? { T: FLOAT, transpose_a: { b: false }, transpose_b: { b: false } } : { T: FLOAT },
    });
  }

  mean(name: string, x: string, axes: number[], keepDims: boolean): string {
    const axis = this.constant(`${name}/axes`, Int32Array.from(axes), [axes.length]);
    return this.add({
      name,
      op: 'Mean',
      input: [x, axis],
      attr: { T: FLOAT, keep_dims: { b: keepDims }, Tidx: { type: 'DT_INT32' } },
    });
  }

  /** Splits the last axis of an NHWC tensor; returns the outputs' names. */
  split(name: string, x: string, parts: number): string[] {
    const axis = this.constant(`${name}/axis`, Int32Array.from([3]), []);
    this.add({ name, op: 'Split', input: [axis, x], attr: { T: FLOAT, num_split: { i: String(parts) } } });
    return Array.from({ length: parts }, (_, i) => (i === 0 ? name : `${name}:${i}`));
  }

  concat(name: string, xs: string[]): string {
    const axis = this.constant(`${name}/axis`, Int32Array.from([3]), []);
    return this.add({
      name,
      op: 'ConcatV2',
      input: [...xs, axis],
      attr: { T: FLOAT, N: { i: String(xs.length) }, Tidx: { type: 'DT_INT32' } },
    });
  }

  /** model.json (topology + weights manifest) and the weights file's bytes. */
  serialise(weightsFile: string, metadata: Record<string, unknown>): { modelJson: object; weights: Buffer } {
    const weights = Buffer.concat(
      this.weights.map((w) => Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength)),
    );
    return {
      modelJson: {
        format: 'graph-model',
        generatedBy: 'wildstream',
        convertedBy: 'wildstream',
        modelTopology: { node: this.nodes, library: {}, versions: { producer: 1 } },
        weightsManifest: [
          { paths: [weightsFile], weights: this.weights.map(({ name, shape, dtype }) => ({ name, shape, dtype })) },
        ],
        userDefinedMetadata: metadata,
      },
      weights,
    };
  }
}
