"""Low-level kernels of the stylization network's layers (layers.py), as plain functions.

Each is the same arithmetic as the straightforward op sequence, rewritten for speed
on the CPU and for TFLite and XLA; docs/speed.md has the measurements.

- `instance_norm`: instance normalisation as one FusedBatchNormV3 (training mode),
  with per-example scale, offset and activation folded in.
- `mirror_pad`, `reflect_indices`: reflect/symmetric padding as one gather, with
  MirrorPad's own gradient; reflect indices for any pad size (a constant for static
  sizes, see `static_or_dynamic_shape`).
- `space_to_depth_conv`: a large kernel with few outputs computed on 2x2 blocks.
- `upsample_by_2_conv`, `interleave_phases`: nearest x2 upsampling + reflect pad +
  3x3 conv computed at the input's resolution, one phase per output parity, with a
  hand-written gradient for the phase crops.
- `autodiff_gradients`: a block in which those two trace with TensorFlow's own
  gradients instead (what an export saves).
- `custom_gradients_released`: a block whose traced custom gradients are unregistered at
  its end, so the graphs traced in it can be freed.

All take and return float tensors [B, H, W, C] (NHWC) unless said otherwise.
"""
import contextlib
import threading

import numpy as np
import tensorflow as tf

# Magenta's variance epsilon for instance norm; kept for numerical parity.
INSTANCE_NORM_EPSILON = 1e-5


_TRACING = threading.local()


@contextlib.contextmanager
def autodiff_gradients():
    """Within this block (in this thread), mirror_pad and interleave_phases trace with
    TensorFlow's own gradients of their ops instead of their hand-written ones; the
    values are the same.

    For exports: a SavedModel stores each tf.custom_gradient as a gradient function, and
    tf.saved_model.load registers those in TensorFlow's process-wide gradient registry,
    which then keeps the whole loaded model alive. Every load of an export made with
    them leaked ~165 MB (a tiny model: its ~160 restored functions). Gradients through
    an export (hub.KerasLayer(trainable=True)) still work, at autodiff's speed.
    """
    previous = getattr(_TRACING, "autodiff", False)
    _TRACING.autodiff = True
    try:
        yield
    finally:
        _TRACING.autodiff = previous


@contextlib.contextmanager
def custom_gradients_released():
    """Unregisters, when the block ends, the custom gradients traced within it.

    Each tf.custom_gradient traced into a graph (ours; TensorFlow's own, such as the
    all-reduce that Keras' optimizer runs under a tf.distribute strategy) is registered
    in TensorFlow's process-wide gradient registry under a fresh "CustomGradient-N" name,
    and that entry holds the traced graph: without this, every training run in a process
    (a notebook, the test suite) kept its whole step graph, ~300 MB for a 32 px run of the
    tiny test model. Use it around work whose traced functions are dropped at its end:
    their gradients cannot be asked for again. TensorFlow keeps the registry private; if
    it changes shape, this does nothing.
    """
    registry = _custom_gradient_registry()
    before = set(registry) if registry is not None else set()
    try:
        yield
    finally:
        if registry is not None:
            for name in set(registry) - before:
                if name.startswith("CustomGradient-"):
                    registry.pop(name, None)


def _custom_gradient_registry():
    """TensorFlow's {op type: gradient} registry dict, or None if not found."""
    from tensorflow.python.framework import ops  # pylint: disable=import-outside-toplevel
    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


def _with_gradient(forward_and_gradient, x):
    """forward_and_gradient(x) -> (y, gradient function), as for tf.custom_gradient;
    returns y, differentiated by that gradient function unless autodiff_gradients is on."""
    if getattr(_TRACING, "autodiff", False):
        return forward_and_gradient(x)[0]
    return tf.custom_gradient(forward_and_gradient)(x)


def instance_norm(x, gamma, beta, epsilon=INSTANCE_NORM_EPSILON, moments=None, activation=None):
    """activation((x - mean) / sqrt(variance + epsilon) * gamma + beta), statistics per example
    and channel.

    One FusedBatchNormV3 (training mode) instead of Magenta's tf.nn.moments +
    tf.nn.batch_normalization: batch-norm statistics of one example are its instance-norm
    statistics, and the fused kernel (and its fused gradient) reads the tensor about 3
    times instead of about 10 (2-2.7x faster for the layer on the CPU; outputs differ by
    ~1e-5 from the two-pass moments, well inside the 1e-4 Magenta parity tolerance). The
    batch is moved into the channel axis ([B, H, W, C] -> [1, H, W, B * C]) so that one
    op normalises every example when B is dynamic (serving); a static batch (training)
    runs one op per example instead, and B = 1 needs neither.

    Per-example gamma and beta ([B, 1, 1, C]: style ids and weights) are the fused op's
    scale and offset over the folded channels, and the activation runs on the folded
    tensor too, where oneDNN's remapper fuses a ReLU into the norm: no separate
    multiply, add and activation passes. Per-pixel maps cannot be folded; they are
    applied after a unit-scale normalisation, so a one-hot map equals the gathered style
    to rounding (~1e-6), not bit for bit.

    Args:
      x: float32 [B, H, W, C] (C static).
      gamma, beta: float32 [B, 1, 1, C] (or [1, 1, 1, C], broadcast over the batch), or
        per-pixel maps [B, H, W, C].
      epsilon: the variance epsilon (1e-5 in Magenta; used exactly, no clamping).
      moments: optional (mean, variance), float32 [B, 1, 1, C], used instead of x's
        own statistics (tiling passes the whole image's).
      activation: optional elementwise callable applied last (None: identity).

    Returns:
      float32 [B, H, W, C].
    """
    activation = activation or tf.identity
    if moments is not None:
        # Given statistics: gamma folded into the scale, one multiply-add over x (the
        # formula tiling has always used; it differs from the fused path by rounding only).
        mean, variance = moments
        return activation(tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon))
    batch, height, width, channels = static_or_dynamic_shape(x)
    per_example = all(t.shape.rank == 4 and t.shape[1] == 1 and t.shape[2] == 1
                      for t in (gamma, beta))
    if per_example:
        gamma = tf.broadcast_to(gamma, [batch, 1, 1, channels])
        beta = tf.broadcast_to(beta, [batch, 1, 1, channels])
    # What the fused op folds in: per-example (gamma, beta) and the activation, or nothing.
    folds = (gamma, beta) if per_example else (None, None)
    fold_activation = activation if per_example else None
    static_batch = x.shape[0]
    if static_batch is not None and static_batch > 1:
        # A static batch (training): one fused op per example on tf.split's views, then
        # one concat, instead of two transposes around one op (norm forward + backward
        # 1.1-1.2x faster at B = 2..16 on the CPU).
        params = (zip(tf.split(gamma, static_batch), tf.split(beta, static_batch))
                  if per_example else [(None, None)] * static_batch)
        y = tf.concat([_fused_norm(xb, epsilon, gb, bb, fold_activation)
                       for xb, (gb, bb) in zip(tf.split(x, static_batch), params)], axis=0)
    elif static_batch == 1:
        y = _fused_norm(x, epsilon, *folds, fold_activation)
    else:
        folded = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, height, width, batch * channels])
        y = _fused_norm(folded, epsilon, *folds, fold_activation)
        y = tf.transpose(tf.reshape(y, [height, width, batch, channels]), [2, 0, 1, 3])
    return y if per_example else activation(y * gamma + beta)


def _fused_norm(x, epsilon, gamma=None, beta=None, activation=None):
    """One FusedBatchNormV3 over x [1, H, W, K]: unit scale, or per-example gamma/beta
    [B, 1, 1, C] (B * C = K) as its scale/offset and then `activation`."""
    if gamma is None:
        channels = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
        scale = tf.ones([channels], tf.float32)
        offset = tf.zeros([channels], tf.float32)
    else:
        scale, offset = tf.reshape(gamma, [-1]), tf.reshape(beta, [-1])
    empty = tf.constant([], tf.float32)
    # The raw op, not tf.compat.v1.nn.fused_batch_norm: that wrapper raises epsilon to
    # 1.001e-5 (a cuDNN limit that 1e-5 meets exactly).
    y = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=scale, offset=offset, mean=empty, variance=empty, epsilon=epsilon,
        exponential_avg_factor=1.0, data_format="NHWC", is_training=True)[0]
    return y if activation is None else activation(y)


def reflect_indices(size, before, after):
    """Indices that reflect-pad an axis of length `size` by any amount (int32 [before+size+after]).

    Unlike tf.pad(mode="REFLECT"), the pad may exceed size - 1 (the pattern repeats),
    so 1-pixel images work too. Python ints give a numpy array (a static shape costs no
    graph ops), tensors an int32 tensor.
    """
    if _all_ints(size, before, after):
        i = np.arange(-before, size + after)
        period = max(2 * (size - 1), 1)
        j = np.mod(i, period)
        return (np.minimum(j, period - j) * int(size > 1)).astype(np.int32)
    i = tf.range(-before, size + after)
    period = tf.maximum(2 * (size - 1), 1)
    j = tf.math.floormod(i, period)
    return tf.minimum(j, period - j) * tf.cast(size > 1, tf.int32)


def _all_ints(*values):
    return all(isinstance(v, int) for v in values)


def _mirror_indices(size, before, after, mode):
    """int32 [before + size + after]: the rows (or columns) tf.pad(mode=mode) reads; numpy
    for Python ints that pad validly, else a tensor."""
    if mode == "REFLECT":
        if _all_ints(size, before, after) and size > max(before, after):
            return reflect_indices(size, before, after)
        # tf.pad's limit, which its gradient (MirrorPadGrad) needs too. Within it one
        # reflection suffices: a few ops, where reflect_indices' periodic form (any pad)
        # takes a dozen, in every dynamic-size graph (exports, stylize) once per pad.
        limit = max(before, after) if _all_ints(before, after) else tf.maximum(before, after)
        with tf.control_dependencies([tf.debugging.Assert(
                size > limit, ["reflect padding needs more pixels than the pad"])]):
            last = tf.identity(size) - 1
        return last - tf.abs(last - tf.abs(tf.range(-before, size + after)))
    if _all_ints(size, before, after):
        return np.concatenate([np.arange(before - 1, -1, -1), np.arange(size),
                               np.arange(size - 1, size - 1 - after, -1)]).astype(np.int32)
    return tf.concat([tf.range(before - 1, -1, -1), tf.range(size),
                      tf.range(size - 1, size - 1 - after, -1)], axis=0)


def static_or_dynamic_shape(x):
    """[B, H, W, C] of x: each a Python int where the static shape knows it, else an
    int32 scalar tensor. Static sizes keep index arithmetic out of the graph (training's
    fixed crops trace about half the ops of a dynamic-size graph)."""
    static = x.shape.as_list()
    if None not in static:
        return static
    dynamic = tf.unstack(tf.shape(x), num=len(static))  # One op, not a slice per axis.
    return [d if d is not None else dynamic[i] for i, d in enumerate(static)]


def mirror_pad(x, rows, cols, mode="REFLECT"):
    """tf.pad(x, [[0, 0], rows, cols, [0, 0]], mode) (REFLECT or SYMMETRIC), faster.

    One gather of whole pixels (C values each) from x viewed as [B, H * W, C], with
    the indices of the padded image, instead of MirrorPad: the same values, 1.8-5x
    faster for the pad on this CPU (512x512x32 pad 1: 47 vs 83 ms; 256x256x64: 16 vs
    39 ms; 128x128x128: 10 vs 21 ms, under load), and MirrorPad was ~12 % of an
    inference call. The gradient is MirrorPad's own (MirrorPadGrad): a gather's
    (a scatter-add) would be slower. With a static H, W and pads the indices are one
    constant.

    Args:
      x: [B, H, W, C] (C static), any dtype; H, W > the pad for REFLECT.
      rows, cols: (before, after), python ints or int32 scalars.
      mode: "REFLECT" or "SYMMETRIC".

    Returns:
      [B, H + sum(rows), W + sum(cols), C], x's dtype.
    """
    (top, bottom), (left, right) = rows, cols
    if _all_ints(top, bottom, left, right) and top == bottom == left == right == 0:
        return x
    batch, height, width, channels = static_or_dynamic_shape(x)
    row_index = _mirror_indices(height, top, bottom, mode)
    col_index = _mirror_indices(width, left, right, mode)
    if isinstance(row_index, np.ndarray) and isinstance(col_index, np.ndarray):
        index = np.reshape(row_index[:, None] * width + col_index[None, :], [-1])
    else:
        index = tf.reshape(tf.convert_to_tensor(row_index)[:, None] * width
                           + tf.convert_to_tensor(col_index)[None, :], [-1])

    def pad(x):
        y = tf.gather(tf.reshape(x, [batch, height * width, channels]), index, axis=1)

        def grad(dy):
            paddings = tf.stack([[0, 0], [top, bottom], [left, right], [0, 0]])
            return tf.raw_ops.MirrorPadGrad(input=dy, paddings=paddings, mode=mode)
        return tf.reshape(y, [batch, height + top + bottom, width + left + right,
                              channels]), grad
    return _with_gradient(pad, x)


def space_to_depth_conv(padded, kernel):
    """tf.nn.conv2d(padded, kernel, 1, "VALID") computed on 2x2 blocks (space_to_depth).

    oneDNN runs a large kernel with a handful of output channels (the final 9x9
    32 -> 3 conv) far below its peak. On 2x2 blocks of the input the same conv is a
    5x5 conv from 4 Cin to 4 Cout channels (output phase (a, b) of block (I, J) is
    output pixel (2I + a, 2J + b); each phase's 9x9 taps sit in a 10x10 window of
    blocks, zero elsewhere), then depth_to_space: 1.23x the MACs but 2.7-2.8x faster
    for the layer at 512 px on the CPU; the values differ by summation order only
    (~2e-6).

    padded [B, Hp, Wp, Cin] with Hp, Wp EVEN (the caller pads odd sizes by one more
    row/column, which only outputs it crops read), kernel [k, k, Cin, Cout] (k odd)
    -> [B, Hp - k + 1, Wp - k + 1, Cout].
    """
    k, cin, cout = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    n = (k + 1) // 2  # blocks a phase's window spans
    # select[I, r, a, u] = 1 where output phase a reads tap u at block I, offset r:
    # 2 I + r = a + u.
    select = np.zeros([n, 2, 2, k], np.float32)
    for i in range(n):
        for r in (0, 1):
            for a in (0, 1):
                if 0 <= 2 * i + r - a < k:
                    select[i, r, a, 2 * i + r - a] = 1.0
    select = tf.constant(select, kernel.dtype)
    # [I, J, r, c, Cin, a, b, Cout]: space_to_depth's and depth_to_space's channel orders.
    # (An einsum with constant selectors, as in upsample_by_2_conv: TFLite folds it.)
    blocked = tf.reshape(tf.einsum("iraU,jcbV,UVxy->ijrcxaby", select, select, kernel),
                         [n, n, 4 * cin, 4 * cout])
    return tf.nn.depth_to_space(tf.nn.conv2d(tf.nn.space_to_depth(padded, 2), blocked,
                                             strides=1, padding="VALID"), 2)


def interleave_phases(joint, filters):
    """[B, H + 1, W + 1, 4F] -> [B, 2H, 2W, F]: output phase (a, b) is channel block
    2a + b of `joint`'s window at rows a .. a + H - 1, columns b .. b + W - 1.

    Static-bound crops (TFLite converts them at any size) and a hand-written gradient:
    autodiff of the four crops writes four full-size StridedSliceGrad tensors and sums
    them (the layer's forward + backward was 1.2-1.4x slower than four per-phase convs);
    this one zero-pads each phase's quarter once (1.1x faster than per-phase convs).
    """
    def interleave(joint):
        crops = {0: slice(None, -1), 1: slice(1, None)}
        phases = [joint[:, crops[a], crops[b], (2 * a + b) * filters:(2 * a + b + 1) * filters]
                  for a in (0, 1) for b in (0, 1)]

        def grad(upstream):
            blocks = tf.nn.space_to_depth(upstream, 2)
            return tf.concat([
                tf.pad(blocks[..., (2 * a + b) * filters:(2 * a + b + 1) * filters],
                       [[0, 0], [a, 1 - a], [b, 1 - b], [0, 0]])
                for a in (0, 1) for b in (0, 1)], axis=-1)

        return tf.nn.depth_to_space(tf.concat(phases, axis=-1), 2), grad

    return _with_gradient(interleave, joint)


# Nearest x2 then a 3-tap conv with reflect pad 1, per output phase a in {0, 1}: the two
# taps at the input's resolution (rows) as sums of the three original taps (columns).
PHASE_TAPS = (((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)),   # even outputs: x[i-1]*k0 + x[i]*(k1+k2)
              ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0)))   # odd outputs: x[i]*(k0+k1) + x[i+1]*k2


def upsample_by_2_conv(inputs, kernel):
    """conv(reflect_pad(nearest_upsample_x2(inputs), 1)) for a 3x3 stride-1 `kernel`.

    Computed at the input's resolution: output pixel (2i + a, 2j + b) sees input rows
    i - 1 + a .. i + a and columns j - 1 + b .. j + b only, so each of the four
    output phases (a, b) is a 2x2 convolution whose taps are sums of the 3x3 taps
    (`PHASE_TAPS`), and reflect padding of the upsampled image is replicate
    (SYMMETRIC) padding of the input. One 2x2 conv with the four phase kernels as
    4 x filters outputs runs on the input replicate-padded by 1 ([H + 1, W + 1]);
    phase (a, b) is its window at offset (a, b) (`interleave_phases`). 16 instead of
    36 MACs per output pixel and channel (2.25x fewer), the big upsampled tensor and
    its mirror pad are never formed, and only the summation order differs (~1e-6).
    All ops are TFLite builtins and XLA-differentiable.

    inputs [B, H, W, Cin] (H, W >= 1), kernel [3, 3, Cin, filters] -> [B, 2H, 2W,
    filters], inputs' dtype.
    """
    taps = tf.constant(PHASE_TAPS, tf.float32)  # [phase a, 2x2 tap u, 3x3 tap i]
    filters = kernel.shape[3]
    kernel = tf.cast(kernel, tf.float32)
    # [u, v, Cin, (a, b, filters)]: depth_to_space's channel order of the phases.
    phases = tf.reshape(tf.einsum("aui,bvj,ijcf->uvcabf", taps, taps, kernel),
                        [2, 2, kernel.shape[2], 4 * filters])
    padded = mirror_pad(inputs, (1, 1), (1, 1), mode="SYMMETRIC")
    joint = tf.nn.conv2d(padded, tf.cast(phases, padded.dtype), strides=1, padding="VALID")
    return interleave_phases(joint, filters)
