/**
 * The RegNet backbone as a graph, recorded by running regnet.ts' own `regnetBody` with ops that build nodes
 * instead of computing: the same walk that defines the tfjs model defines the engine's, so the two cannot
 * drift apart. Recording is pure (no GPU): it gives the nodes in execution order and the parameters in the
 * order, with the names and shapes, that the tfjs ParamSet creates them.
 *
 * A ReLU is fused into the node it follows (BatchNorm or the residual add, the only places RegNet puts one):
 * the node then stands for relu(node), forward and backward.
 */
import { regnetBody, type RegNetOps } from '../../regnet.js';
import type { RegNetSpec } from '../../regnet-spec.js';
import { convShape, type ConvShape } from '../kernels/conv2d.js';

interface NodeBase {
  /** Position in execution order. */
  id: number;
  /**
   * The part of the network the node belongs to: 0 the stem (and the input images), 1..stages.length the
   * stages, stages.length + 1 the pool. Activation recomputation (recompute.ts) works segment by segment.
   */
  segment: number;
  /** NHWC [batch, height, width, channels]; [batch, channels] for the pooled features. */
  shape: readonly number[];
  /** Nodes that read this one's output. */
  uses: number;
}

export type GraphNode = NodeBase &
  (
    | { kind: 'input' }
    | { kind: 'conv'; name: string; x: GraphNode; conv: ConvShape }
    | { kind: 'bn'; name: string; x: GraphNode; relu: boolean }
    | { kind: 'se'; name: string; x: GraphNode; squeeze: number }
    | { kind: 'add'; a: GraphNode; b: GraphNode; relu: boolean }
    | { kind: 'pool'; x: GraphNode }
  );

export interface ParamShape {
  name: string;
  shape: readonly number[];
}

export interface BackboneGraph {
  /** Execution order: `nodes[0]` is the input images, the last node the pooled features. */
  nodes: GraphNode[];
  /** Trainable parameters (conv and SE weights, SE biases, BatchNorm gamma and beta), in ParamSet order. */
  params: ParamShape[];
  /** BatchNorm running statistics (`<bn>.mean`, `<bn>.var`, [C] each), in ParamSet order. */
  stats: ParamShape[];
}

type Variant = GraphNode extends infer N ? (N extends GraphNode ? Omit<N, keyof NodeBase> : never) : never;

/** Records the backbone for images of `batch` x `size` x `size` x 3 (NHWC). */
export function recordBackbone(spec: RegNetSpec, batch: number, size: number): BackboneGraph {
  const nodes: GraphNode[] = [];
  const params: ParamShape[] = [];
  const stats: ParamShape[] = [];
  let segment = 0;
  const add = (shape: readonly number[], v: Variant): GraphNode => {
    const node = { id: nodes.length, segment, shape, uses: 0, ...v } as GraphNode;
    for (const input of inputsOf(node)) input.uses++;
    nodes.push(node);
    return node;
  };
  const channels = (x: GraphNode) => x.shape[x.shape.length - 1]!;
  const ops: RegNetOps<GraphNode> = {
    conv: (name, x, out, k, stride, groups) => {
      const [b, h, w, c] = x.shape as [number, number, number, number];
      const conv = convShape({ batch: b, inH: h, inW: w, inC: c, outC: out, kernel: k, stride, groups });
      params.push({ name: `${name}.w`, shape: [k, k, c / groups, out] });
      return add([b, conv.outH, conv.outW, out], { kind: 'conv', name, x, conv });
    },
    bn: (name, x) => {
      const c = channels(x);
      params.push({ name: `${name}.gamma`, shape: [c] }, { name: `${name}.beta`, shape: [c] });
      stats.push({ name: `${name}.mean`, shape: [c] }, { name: `${name}.var`, shape: [c] });
      return add(x.shape, { kind: 'bn', name, x, relu: false });
    },
    relu: (x) => {
      if ((x.kind !== 'bn' && x.kind !== 'add') || x.relu || x.uses > 0)
        throw new Error(`engine: a ReLU must follow a BatchNorm or an add directly, not a ${x.kind}`);
      x.relu = true;
      return x;
    },
    se: (name, x, squeeze) => {
      const c = channels(x);
      params.push(
        { name: `${name}.reduce.w`, shape: [c, squeeze] },
        { name: `${name}.reduce.b`, shape: [squeeze] },
        { name: `${name}.expand.w`, shape: [squeeze, c] },
        { name: `${name}.expand.b`, shape: [c] },
      );
      return add(x.shape, { kind: 'se', name, x, squeeze });
    },
    add: (a, b) => {
      if (a.shape.join() !== b.shape.join()) throw new Error(`engine: add of ${a.shape} and ${b.shape}`);
      return add(a.shape, { kind: 'add', a, b, relu: false });
    },
    pool: (x) => {
      segment++;
      return add([x.shape[0]!, channels(x)], { kind: 'pool', x });
    },
    channels,
    stage: (_prefix, x, body) => {
      segment++;
      return body(ops, x);
    },
  };
  const input = add([batch, size, size, 3], { kind: 'input' });
  regnetBody(ops, spec, input);
  return { nodes, params, stats };
}

/** The nodes a node reads. */
export function inputsOf(node: GraphNode): GraphNode[] {
  switch (node.kind) {
    case 'input':
      return [];
    case 'add':
      return [node.a, node.b];
    default:
      return [node.x];
  }
}
