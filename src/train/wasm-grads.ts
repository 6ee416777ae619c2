/**
 * The wasm backend has no Conv2DBackpropFilter kernel, so tfjs cannot train a conv net on it out of the box
 * (FINDINGS). This replaces Conv2D's gradient with one built from kernels wasm has:
 *   input grad:  conv2dTranspose (Conv2DBackpropInput);
 *   filter grad: im2col as a depthwise conv with one-hot kh x kw filters (one output channel per tap, far
 *                faster on wasm than slicing), then a single matMul with the output gradient.
 * The result equals tfjs' own gradient (checked against the cpu backend in test/train/conv.test.ts).
 */
import * as tf from '@tensorflow/tfjs-core';

interface ConvAttrs {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number;
  dataFormat: 'NHWC' | 'NCHW';
  dilations: [number, number] | number;
}

export function conv2dFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: [number, number, number, number], attrs: Omit<ConvAttrs, 'dataFormat' | 'dilations'>): tf.Tensor4D {
  const [kh, kw, ci, co] = filterShape;
  const taps = kh * kw;
  return tf.tidy(() => {
    const oneHot = tf.tensor4d(
      Float32Array.from({ length: kh * kw * ci * taps }, (_, i) => {
        const m = i % taps, tap = Math.floor(i / (taps * ci)); // layout [kh, kw, ci, taps]
        return m === tap ? 1 : 0;
      }),
      [kh, kw, ci, taps],
    );
    const patches = tf.depthwiseConv2d(x, oneHot, attrs.strides, attrs.pad); // [n, h', w', ci * taps], ci-major
    const rows = patches.shape[0] * patches.shape[1] * patches.shape[2];
    const grad = tf.matMul(tf.reshape(patches, [rows, ci * taps]), tf.reshape(dy, [rows, co]), true, false); // [ci*taps, co]
    return tf.transpose(tf.reshape(grad, [ci, kh, kw, co]), [1, 2, 0, 3]) as tf.Tensor4D;
  });
}

export function registerWasmGradients(): void {
  tf.registerGradient({
    kernelName: tf.Conv2D,
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
      const a = attrs as unknown as ConvAttrs;
      const dil = Array.isArray(a.dilations) ? a.dilations : [a.dilations, a.dilations];
      if (a.dataFormat !== 'NHWC' || dil.some((d) => d !== 1)) throw new Error('wasm conv gradient: only NHWC, dilation 1');
      return {
        x: () => tf.conv2dTranspose(dy as tf.Tensor4D, filter, x.shape, a.strides, a.pad as 'same'),
        filter: () => conv2dFilterGrad(x, dy as tf.Tensor4D, filter.shape, a),
      };
    },
  });
}
