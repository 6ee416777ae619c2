/**
 * The wasm backend has no Conv2DBackpropFilter kernel (tfjs-backend-wasm 4.22), so tfjs cannot train a conv
 * net on it out of the box. This replaces Conv2D's gradient with one built from kernels wasm has:
 *   input grad:  conv2dTranspose (Conv2DBackpropInput);
 *   filter grad: im2col as a depthwise conv with one-hot kh x kw filters (one output channel per tap, far
 *                faster on wasm than slicing), then a single matMul with the output gradient.
 * wasm's matMul packs its right operand on every call and is several times slower with a transpose flag than
 * after an explicit transpose (about 10x for a 36864x32 by 32x16 product), hence the
 * explicit transposes and the choice of the narrower matrix as the right operand.
 * The result equals tfjs' own gradient (checked against the cpu backend in test/train/model.test.ts).
 */
import * as tf from '@tensorflow/tfjs-core';

interface ConvAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number;
  dataFormat: 'NHWC' | 'NCHW';
  dilations: [number, number] | number;
}

export function conv2dFilterGrad(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: [number, number, number, number],
  attrs: Omit<ConvAttrs, 'dataFormat' | 'dilations'>,
): tf.Tensor4D {
  const [kh, kw, ci, co] = filterShape;
  const taps = kh * kw;
  return tf.tidy(() => {
    const oneHot = tf.tensor4d(
      Float32Array.from({ length: kh * kw * ci * taps }, (_, i) => {
        const m = i % taps,
          tap = Math.floor(i / (taps * ci)); // layout [kh, kw, ci, taps]
        return m === tap ? 1 : 0;
      }),
      [kh, kw, ci, taps],
    );
    const patches = tf.depthwiseConv2d(x, oneHot, attrs.strides, attrs.pad); // [n, h', w', ci * taps], ci-major
    const rows = patches.shape[0] * patches.shape[1] * patches.shape[2];
    const grad = overRows(tf.reshape(patches, [rows, ci * taps]), tf.reshape(dy, [rows, co]) as tf.Tensor2D); // [ci*taps, co]
    return tf.transpose(tf.reshape(grad, [ci, kh, kw, co]), [1, 2, 0, 3]) as tf.Tensor4D;
  });
}

/** a^T b for tall a [rows, m] and b [rows, n], packing whichever of the two is narrower. */
function overRows(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return (
    a.shape[1] < b.shape[1] ? tf.transpose(tf.matMul(tf.transpose(b), a)) : tf.matMul(tf.transpose(a), b)
  ) as tf.Tensor2D;
}

/** x with its last two axes swapped, when `t`. */
function lastTwoSwapped(x: tf.Tensor, t: boolean): tf.Tensor {
  if (!t) return x;
  const perm = x.shape.map((_, i) => i);
  [perm[x.rank - 2], perm[x.rank - 1]] = [perm[x.rank - 1]!, perm[x.rank - 2]!];
  return tf.transpose(x, perm);
}

/** matMul(a, b, ta, tb) with the transposes done explicitly (see the header: wasm's flags are slow). */
function matMulExplicit(a: tf.Tensor, b: tf.Tensor, ta: boolean, tb: boolean): tf.Tensor {
  return tf.matMul(lastTwoSwapped(a, ta), lastTwoSwapped(b, tb));
}

export function registerWasmGradients(): void {
  // tfjs' own BatchMatMul gradient (the same products) passes transpose flags: the head's weight gradients
  // were several times slower with them (bench/profile-step.ts).
  tf.registerGradient({
    kernelName: tf.BatchMatMul,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved, attrs) => {
      const [a, b] = saved as [tf.Tensor, tf.Tensor];
      const { transposeA: ta, transposeB: tb } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
      const g = dy as tf.Tensor;
      if (!ta)
        return {
          a: () => matMulExplicit(g, b, false, !tb),
          b: () => (tb ? matMulExplicit(g, a, true, false) : matMulExplicit(a, g, true, false)),
        };
      return {
        a: () => (tb ? matMulExplicit(b, g, true, true) : matMulExplicit(b, g, false, true)),
        b: () => (tb ? matMulExplicit(g, a, true, true) : matMulExplicit(a, g, false, false)),
      };
    },
  });
  tf.registerGradient({
    kernelName: tf.Conv2D,
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
      const a = attrs as unknown as ConvAttrs;
      const dil = Array.isArray(a.dilations) ? a.dilations : [a.dilations, a.dilations];
      if (a.dataFormat !== 'NHWC' || dil.some((d) => d !== 1))
        throw new Error('wasm conv gradient: only NHWC, dilation 1');
      const [kh, kw, ci, co] = filter.shape;
      const strides = Array.isArray(a.strides) ? a.strides : [a.strides, a.strides];
      if (kh === 1 && kw === 1 && strides[0] === 1 && strides[1] === 1) {
        // A 1x1 stride-1 conv is a matMul over pixels: its gradients are two matMuls (most of RegNet's convs).
        const rows = x.size / ci;
        const dy2 = tf.reshape(dy as tf.Tensor, [rows, co]) as tf.Tensor2D;
        return {
          x: () => tf.reshape(tf.matMul(dy2, tf.transpose(tf.reshape(filter, [ci, co]))), x.shape),
          filter: () => tf.reshape(overRows(tf.reshape(x, [rows, ci]), dy2), filter.shape),
        };
      }
      return {
        x: () => tf.conv2dTranspose(dy as tf.Tensor4D, filter, x.shape, a.strides, a.pad as 'same'),
        filter: () => conv2dFilterGrad(x, dy as tf.Tensor4D, filter.shape, a),
      };
    },
  });
}
