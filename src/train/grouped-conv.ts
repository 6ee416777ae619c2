/**
 * Grouped convolution (tfjs has no `groups`) as one depthwise convolution and one matMul, with its gradient
 * in closed form from kernels every backend has (wasm lacks the depthwise gradients tfjs would use).
 *
 * For input channel c = G*gi + j of group G and output channel G*go + m, a depthwise conv with channel
 * multiplier go and filter F[.., c, m] = w[.., j, G*go + m] yields every product conv(x_c, w_jm); the grouped
 * output is their sum over j, a matMul of the [rows * groups, gi * go] result with a 0/1 matrix. That is
 * (9 + gi) multiply-adds per product instead of 9, in two large kernels, where splitting the channels costs
 * per group a strided copy of the input and a tiny conv (on wasm the copies dominated a RegNet step).
 *   dx: the same grouped conv of dy (zero-upsampled for stride > 1) with the filter flipped and each group's
 *       in/out channels swapped;
 *   dw: im2col of x (a depthwise conv with one-hot filters, one output channel per tap) times dy, one
 *       batched matMul over groups.
 * Padding is TF's 'same'; dilation 1. Checked against the split formulation in test/train/grouped-conv.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Output size and padding before the first element of a 'same' conv along one axis (TF's rule). */
function samePad(size: number, k: number, stride: number): { out: number; before: number } {
  const out = Math.ceil(size / stride);
  return { out, before: Math.floor(Math.max((out - 1) * stride + k - size, 0) / 2) };
}

/** The 0/1 matrix summing a [.., gi * go] row over gi: S[j * go + m, m] = 1. */
function sumOverInputs(gi: number, go: number): tf.Tensor2D {
  return tf.tensor2d(
    Float32Array.from({ length: gi * go * go }, (_, i) => (Math.floor(i / go) % go === i % go ? 1 : 0)),
    [gi * go, go],
  );
}

/** Forward grouped conv, w [k, k, gi, cout]; `pad` as depthwiseConv2d takes it. */
function groupedForward(
  x: tf.Tensor4D,
  w: tf.Tensor4D,
  stride: number,
  pad: 'same' | 'valid',
  groups: number,
): tf.Tensor4D {
  return tf.tidy(() => {
    const [k, , gi, cout] = w.shape;
    const go = cout / groups;
    const f = tf.reshape(tf.transpose(tf.reshape(w, [k, k, gi, groups, go]), [0, 1, 3, 2, 4]), [
      k,
      k,
      gi * groups,
      go,
    ]) as tf.Tensor4D;
    const d = tf.depthwiseConv2d(x, f, stride, pad); // [n, h', w', cin * go], index (G * gi + j) * go + m
    const [n, h, wd] = d.shape;
    const y = tf.matMul(tf.reshape(d, [n * h * wd * groups, gi * go]), sumOverInputs(gi, go));
    return tf.reshape(y, [n, h, wd, cout]);
  });
}

/** dL/dx: the transposed grouped conv, as a grouped conv of dy with the flipped, in/out-swapped filter. */
function groupedInputGrad(
  dy: tf.Tensor4D,
  w: tf.Tensor4D,
  xShape: number[],
  stride: number,
  groups: number,
): tf.Tensor4D {
  return tf.tidy(() => {
    const [k, , gi, cout] = w.shape;
    const go = cout / groups;
    const flipped = tf.reverse(w, [0, 1]);
    const wt = tf.reshape(tf.transpose(tf.reshape(flipped, [k, k, gi, groups, go]), [0, 1, 4, 3, 2]), [
      k,
      k,
      go,
      gi * groups,
    ]) as tf.Tensor4D;
    if (stride === 1 && k % 2 === 1) return groupedForward(dy, wt, 1, 'same', groups);
    // dx[p] = sum_t u[p + before - (k - 1) + t] * flipped[t], u = dy with stride - 1 zeros after each element.
    const [n, oh, ow, c] = dy.shape;
    let u: tf.Tensor4D = dy;
    if (stride > 1) {
      const spread = tf.pad(tf.reshape(dy, [n, oh, 1, ow, 1, c]), [
        [0, 0],
        [0, 0],
        [0, stride - 1],
        [0, 0],
        [0, stride - 1],
        [0, 0],
      ]);
      u = tf.reshape(spread, [n, oh * stride, ow * stride, c]);
    }
    const along = (size: number, length: number): [number, number, number] => {
      const { before } = samePad(size, k, stride);
      return [k - 1 - before, size + before - length, length]; // pad before, pad (or crop when < 0) after
    };
    const [ht, hb, hl] = along(xShape[1]!, oh * stride),
      [wl, wr, wlen] = along(xShape[2]!, ow * stride);
    if (hb < 0 || wr < 0) u = tf.slice(u, [0, 0, 0, 0], [n, hl + Math.min(hb, 0), wlen + Math.min(wr, 0), c]);
    u = tf.pad(u, [
      [0, 0],
      [ht, Math.max(hb, 0)],
      [wl, Math.max(wr, 0)],
      [0, 0],
    ]);
    return groupedForward(u, wt, 1, 'valid', groups);
  });
}

/** dL/dw: per group, im2col(x)^T dy, batched over groups. */
function groupedFilterGrad(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  wShape: number[],
  stride: number,
  groups: number,
): tf.Tensor4D {
  return tf.tidy(() => {
    const [k, , gi, cout] = wShape as [number, number, number, number];
    const go = cout / groups,
      taps = k * k,
      cin = x.shape[3];
    const oneHot = tf.tensor4d(
      Float32Array.from({ length: taps * cin * taps }, (_, i) => (i % taps === Math.floor(i / (taps * cin)) ? 1 : 0)),
      [k, k, cin, taps],
    );
    const patches = tf.depthwiseConv2d(x, oneHot, stride, 'same'); // [n, h', w', cin * taps], index (G * gi + j) * taps + t
    const rows = patches.size / (cin * taps);
    // A batched matMul over groups: wasm copies a tensor's whole buffer for every slice it cuts (Slice reads
    // the input through readSync), so per-group 2-D matMuls on split operands cost far more.
    const pt = tf.reshape(tf.transpose(tf.reshape(patches, [rows, cin * taps])), [groups, gi * taps, rows]);
    const dyG = tf.transpose(tf.reshape(dy, [rows, groups, go]), [1, 0, 2]);
    const r = tf.matMul(pt, dyG); // [groups, gi * taps, go]
    return tf.reshape(tf.transpose(tf.reshape(r, [groups, gi, taps, go]), [2, 1, 0, 3]), [k, k, gi, cout]);
  });
}

/**
 * Grouped k x k conv of x [n, h, w, groups * gi] with w [k, k, gi, cout], 'same' padding; gradients for both
 * inputs.
 */
export function groupedConvDepthwise(x: tf.Tensor4D, w: tf.Tensor4D, stride: number, groups: number): tf.Tensor4D {
  const op = tf.customGrad(((xi: tf.Tensor4D, wi: tf.Tensor4D, save: tf.GradSaveFunc) => {
    save([xi, wi]);
    return {
      value: groupedForward(xi, wi, stride, 'same', groups),
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => {
        const [xs, ws] = saved as [tf.Tensor4D, tf.Tensor4D];
        return [
          groupedInputGrad(dy, ws, xs.shape, stride, groups),
          groupedFilterGrad(xs, dy, ws.shape, stride, groups),
        ];
      },
    };
  }) as never) as unknown as (x: tf.Tensor4D, w: tf.Tensor4D) => tf.Tensor4D;
  return op(x, w);
}
