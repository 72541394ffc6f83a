"""Keras layers of the stylization network.

- `ConditionalInstanceNorm`: instance norm whose scale/offset (gamma/beta) are
  gathered or mixed, per example or per pixel, from per-style tables.
- `ConvInstanceNorm`: reflect-padded, bias-free convolution, conditional
  instance norm and activation (Magenta's `ops.conv2d` under its arg_scope).
- `NearestUpsample`: integer-factor nearest-neighbour upsampling written as
  broadcast + reshape, which XLA can differentiate on every backend
  (tf.image.resize's nearest mode has no XLA gradient kernel on CPU).
- `Stage`: one step of a generator's forward pass, as the networks describe their
  structure (`structure()`) to schedulers such as tiling.py.

Every layer holding an instance norm takes `moments=`: statistics computed elsewhere
(e.g. over a whole image that is run tile by tile) instead of its input's own.

The arithmetic underneath (the fused instance norm, mirror padding as a gather, the
2x2-block and per-phase convolutions) is kernels.py's; the layers own the weights,
their names and configs, and choose among the kernels.

Reference: Dumoulin, Shlens, Kudlur, "A Learned Representation for Artistic
Style", ICLR 2017.
"""
import dataclasses

import keras
import tensorflow as tf

from magenta_style.networks import kernels

# Magenta initialises every conv kernel from N(0, 0.01).
KERNEL_INIT_STDDEV = 0.01


def style_kind(style):
    """Classifies a style argument as "ids", "weights" or "maps" from its rank.

    Public: every conditional norm (this module's, networks/arbitrary.py's predicted
    one) and every generator's call take the same three kinds of style.

    Raises:
      ValueError: a rank other than 1, 2 or 4.
    """
    rank = style.shape.rank
    if rank == 1:
        return "ids"
    if rank == 2:
        return "weights"
    if rank == 4:
        return "maps"
    raise ValueError(
        "style must be int ids [B], float weights [B, num_styles] or per-pixel weight maps "
        f"[B, H, W, num_styles]; got a tensor of shape {style.shape}")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of a generator's forward pass, in call order (a network's `structure()`).

    The network's own forward pass runs through the same tuple of stages, so the
    layout is written once; schedulers (tiling.py) read it for the receptive field
    and the instance norms, and call the real layers.

    Attributes:
      kind: "conv" (a ConvInstanceNorm, or a plain conv + `activation`), "upsample"
        (UpsampleConvInstanceNorm), "residual" (ResidualBlock: input + its convs),
        "norm" (an instance norm alone), "pool", "composite" (an up-sampling layer),
        or "branch" (parallel sub-networks: input channel i goes through branch i,
        the outputs are concatenated).
      layers: the Keras layer(s) the stage calls; for "branch" one per branch.
      geometry: the spatial operations in order, each (kernel_size, stride, upsample):
        the input is up-sampled by `upsample`, then every output pixel reads a
        kernel_size x kernel_size window with `stride` (kernel 1: a pointwise op or
        one that reads only its own stride x stride block).
      activation: for a plain "conv": "relu" or "tanh" after the layer; else None.
      branches: for "branch": each branch's own tuple of Stage.
    """

    kind: str
    layers: tuple
    geometry: tuple = ()
    activation: str = None
    branches: tuple = ()

    @property
    def norms(self):
        """The instance norms inside the stage, in call order (they take `moments=`).

        Read from the layers' `norm_layers()`, so only once they are built (a
        ResidualBlock makes its convs on its first call).
        """
        if self.branches:
            return tuple(n for branch in self.branches for stage in branch for n in stage.norms)
        return tuple(n for layer in self.layers for n in getattr(layer, "norm_layers", tuple)())


def all_norms(stages):
    """The instance norms of `stages` in call order (branches one after another): tuple."""
    return tuple(n for stage in stages for n in stage.norms)


def resolve_moments(moments, norm, x):
    """`moments` as ConditionalInstanceNorm takes it, for `norm` and its float32 input `x`.

    Returns (mean, variance) or None (use x's own statistics).
    """
    if callable(moments):
        return moments(norm, x)
    return moments


def per_example(rows):
    """[B, C] -> [B, 1, 1, C] in one reshape. (Not [:, None, None, :]: in eager mode each
    slice is several ops, and tiling runs every layer eagerly on many windows.)"""
    return tf.reshape(rows, [-1, 1, 1, rows.shape[-1]])


@keras.saving.register_keras_serializable(package="magenta_style")
class ConditionalInstanceNorm(keras.layers.Layer):
    """Instance normalisation with per-style scale and offset (conditional instance norm).

    Each style s owns one row `gamma[s]`, `beta[s]` (shape `[num_styles, C]`, the
    style embedding). Statistics are taken per example and channel over H and W
    with epsilon 1e-5 as Magenta. The layer always runs in float32 (its dtype policy
    is forced to float32), also inside a mixed-precision model.

    Call arguments:
      inputs: [B, H, W, C] features (any float dtype; cast to float32). Output is float32.
      style: one of
        - int ids [B]: row `style[b]` is used for example b (Magenta's
          `conditional_instance_norm`);
        - float weights [B, num_styles]: example b uses `sum_s w[b, s] * table[s]`
          (Magenta's `weighted_instance_norm`, generalised from one vector per
          batch to one per example). Weights are not normalised;
        - float per-pixel weight maps [B, Hm, Wm, num_styles]: the mix varies over
          the image; maps are resized (bilinear) to the feature map's H x W.
      strength: optional float [B] in [0, 1] (default 1). Blends the mixed
        (gamma, beta) towards the style-neutral plain instance norm (1, 0).
        (StyleTransferNetwork also mixes its input back in, so that its
        strength 0 is the photo itself.)
      moments: optional precomputed statistics instead of the input's own: (mean,
        variance) float32 [B, 1, 1, C], or a callable(norm_layer, inputs) returning
        them or None (None: the input's own). The layers that hold norms pass the
        callable form to each of their norms, which is how tiling.py gives every norm
        the whole image's statistics.

    The mix is an elementwise weighted sum, not a matmul: TF32 matmuls on recent
    GPUs would round the tables, and a one-hot row must reproduce the gathered
    row bit for bit.

    Out-of-range ids fail with InvalidArgumentError (tf.gather on GPU would return
    zeros silently); a style tensor whose last axis is not num_styles fails with
    ValueError when traced.

    Example:
      cin = ConditionalInstanceNorm(num_styles=3)
      y = cin(x, tf.constant([0, 2]))                  # styles 0 and 2
      y = cin(x, tf.constant([[0.5, 0.0, 0.5]] * 2))   # a 50/50 mix
    """

    def __init__(self, num_styles, epsilon=kernels.INSTANCE_NORM_EPSILON, **kwargs):
        # Always float32, whatever the global policy: instance-norm statistics and the
        # style mix lose too much in float16/bfloat16. Callers under a mixed policy get
        # float32 out; the next layer casts it to its compute dtype.
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if int(num_styles) < 1:
            raise ValueError(f"num_styles must be >= 1, got {num_styles}")
        self.num_styles = int(num_styles)
        self.epsilon = float(epsilon)

    def build(self, inputs_shape, style_shape=None, strength_shape=None, moments_shape=None):
        channels = inputs_shape[-1]
        if channels is None:
            raise ValueError("ConditionalInstanceNorm needs a known channel count")
        shape = (self.num_styles, int(channels))
        # Names are the last component of Magenta's checkpoint keys (.../InstanceNorm/beta).
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros")
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer="ones")

    def mixed_params(self, style, feature_shape, strength=None):
        """The per-example (or per-pixel) gamma and beta this layer applies.

        Args:
          style: ids, weights or maps as in the class docstring.
          feature_shape: int32 [4], the shape of the features being normalised (maps
            are resized to its H x W).
          strength: optional float32 [B] in [0, 1]; blends (gamma, beta) toward (1, 0).

        Returns:
          (gamma, beta), float32, broadcastable to [B, H, W, C].
        """
        gamma, beta = self._style_params(style, feature_shape)
        if strength is not None:
            s = tf.reshape(tf.cast(strength, tf.float32), [-1, 1, 1, 1])
            gamma = s * gamma + (1.0 - s)
            beta = s * beta
        return gamma, beta

    def _style_params(self, style, feature_shape):
        gamma = tf.convert_to_tensor(self.gamma, tf.float32)
        beta = tf.convert_to_tensor(self.beta, tf.float32)
        kind = style_kind(style)
        if kind == "ids":
            ids = tf.cast(style, tf.int32)
            # One Assert, not tf.debugging's two assert_* (a dozen ops each): this runs in
            # every layer of every traced graph.
            valid = tf.reduce_all(tf.logical_and(ids >= 0, ids < self.num_styles))
            with tf.control_dependencies([tf.debugging.Assert(
                    valid, [f"style id must be >= 0 and < num_styles ({self.num_styles})",
                            ids])]):
                ids = tf.identity(ids)
            return per_example(tf.gather(gamma, ids)), per_example(tf.gather(beta, ids))
        if style.shape[-1] is not None and style.shape[-1] != self.num_styles:
            raise ValueError(
                f"style weights have {style.shape[-1]} entries in the last axis but the model "
                f"has num_styles={self.num_styles}")
        weights = tf.cast(style, tf.float32)
        if kind == "weights":
            # [B, S] x [S, C]: exact for one-hot rows (the other terms are exact zeros).
            return per_example(tf.matmul(weights, gamma)), per_example(tf.matmul(weights, beta))
        weights = tf.image.resize(weights, feature_shape[1:3], method="bilinear")
        # [B, H, W, S] x [S, C] as one matrix product: [B, H, W, C] of memory (never
        # [B, H, W, S, C]), and exact for one-hot pixels.
        mix = lambda table: tf.einsum("bhws,sc->bhwc", weights, table)
        return mix(gamma), mix(beta)

    def norm_layers(self):
        return (self,)

    def call(self, inputs, style, strength=None, moments=None, activation=None):
        x = tf.cast(inputs, tf.float32)
        gamma, beta = self.mixed_params(style, tf.shape(x), strength)
        return kernels.instance_norm(x, gamma, beta, self.epsilon,
                                     resolve_moments(moments, self, x), activation)

    def compute_output_shape(self, inputs_shape, style_shape=None, strength_shape=None):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "num_styles": self.num_styles, "epsilon": self.epsilon}


def make_norm(spec, num_styles):
    """The norm layer a conv layer applies.

    Args:
      spec: None for ConditionalInstanceNorm(num_styles, name="InstanceNorm"), or a dict
        {"class_name": registered Keras name such as "magenta_style>BatchNorm",
        "config": the layer's get_config()} (JSON-able, so it goes into get_config).
      num_styles: the style-table rows of the default norm.

    Returns:
      A Keras layer called `norm(x, style, strength, moments=..., activation=...)` with
      a `norm_layers()` method.
    """
    if spec is None:
        return ConditionalInstanceNorm(num_styles, name="InstanceNorm")
    cls = keras.saving.get_registered_object(spec["class_name"])
    if cls is None:
        raise ValueError(f"unknown norm layer {spec['class_name']!r} (its module must be imported)")
    return cls.from_config(dict(spec["config"]))


@keras.saving.register_keras_serializable(package="magenta_style")
class ConvInstanceNorm(keras.layers.Layer):
    """Reflect-padded bias-free conv -> ConditionalInstanceNorm -> activation.

    Magenta's `ops.conv2d` under its slim arg_scope: the input is reflect-padded by
    kernel_size // 2, convolved with VALID padding and no bias, normalised with a
    conditional instance norm (also before the final sigmoid) and activated.

    Call: `inputs` [B, H, W, Cin] (H, W > kernel_size // 2), `style` and optional
    `strength` and `moments` as in ConditionalInstanceNorm. Output
    [B, ceil(H / strides), ceil(W / strides), filters]. With `upsample_by_2=True`
    (3x3, stride 1 only) the input is first nearest-upsampled x2: output
    [B, 2H, 2W, filters], computed at the input's resolution.

    Weights: `weights` [k, k, Cin, filters] and the norm's `InstanceNorm/{beta,gamma}`,
    the same relative names as Magenta's checkpoints.

    `norm`: None (a ConditionalInstanceNorm named `InstanceNorm`), or another norm as
    `make_norm` takes it (Magenta's arbitrary-style model: slim's batch norm, or the
    norm whose gamma/beta a style predictor gives; see networks/arbitrary.py).
    """

    def __init__(self, filters, kernel_size, num_styles, strides=1, activation="relu",
                 norm=None, **kwargs):
        super().__init__(**kwargs)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.num_styles = int(num_styles)
        self.strides = int(strides)
        self.activation = activation
        self._activation_fn = keras.activations.get(activation)
        self.norm_spec = norm
        self.norm = make_norm(norm, num_styles)

    def build(self, inputs_shape, style_shape=None, strength_shape=None):
        shape = (self.kernel_size, self.kernel_size, int(inputs_shape[-1]), self.filters)
        self.kernel = self.add_weight(
            name="weights", shape=shape,
            initializer=keras.initializers.RandomNormal(stddev=KERNEL_INIT_STDDEV))

    def norm_layers(self):
        """The instance norms this layer calls, in order: (norm,), or () for a norm that
        takes no statistics from the image (a batch norm at inference)."""
        return self.norm.norm_layers()

    def call(self, inputs, style, strength=None, upsample_by_2=False, moments=None):
        if upsample_by_2:
            h = self._upsample_by_2_conv(inputs)
        else:
            p = self.kernel_size // 2
            kernel = tf.cast(self.kernel, inputs.dtype)
            if (self.strides == 1 and self.kernel_size >= 5 and self.filters < 8
                    and inputs.shape[-1] is not None and inputs.shape[-1] >= 4 * self.filters):
                # Few outputs from many inputs (the last 9x9 conv): on 2x2 blocks. An odd
                # size is padded by one more reflected row/column (read only by the
                # outputs cropped here), never by a tf.pad of dynamic size, which stops
                # TFLite converting dynamic-size models.
                shape = kernels.static_or_dynamic_shape(inputs)
                padded = kernels.mirror_pad(inputs, (p, p + shape[1] % 2), (p, p + shape[2] % 2))
                h = kernels.space_to_depth_conv(padded, kernel)[:, :shape[1], :shape[2], :]
            else:
                padded = kernels.mirror_pad(inputs, (p, p), (p, p))
                h = tf.nn.conv2d(padded, kernel, strides=self.strides, padding="VALID")
        # The norm runs in float32 and applies the activation (which it can fuse); hand the
        # next layer this layer's compute dtype.
        h = self.norm(h, style, strength, moments=moments, activation=self._activation_fn)
        return tf.cast(h, self.compute_dtype)

    def _upsample_by_2_conv(self, inputs):
        """conv(reflect_pad(nearest_upsample_x2(inputs), 1)) with this layer's 3x3 stride-1
        kernel, computed at the input's resolution (kernels.upsample_by_2_conv).

        inputs [B, H, W, Cin] (H, W >= 1) -> [B, 2H, 2W, filters], compute dtype.
        """
        return kernels.upsample_by_2_conv(inputs, self.kernel)

    def compute_output_shape(self, inputs_shape, style_shape=None, strength_shape=None):
        def out(d):
            return None if d is None else (d - 1) // self.strides + 1
        return (inputs_shape[0], out(inputs_shape[1]), out(inputs_shape[2]), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "num_styles": self.num_styles, "strides": self.strides,
                "activation": self.activation, "norm": self.norm_spec}


@keras.saving.register_keras_serializable(package="magenta_style")
class NearestUpsample(keras.layers.Layer):
    """Nearest-neighbour upsampling by an integer `factor`: [B, H, W, C] -> [B, fH, fW, C].

    Equal to tf.image.resize(..., method="nearest") to an exact multiple, written with
    broadcast + reshape so that XLA can compile its gradient on CPU, GPU and TPU.
    """

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, inputs):
        if self.factor == 1:
            return inputs
        # broadcast_to + reshape rather than tf.repeat: same values, but the channel count
        # stays static, which dynamic-size TFLite conversion needs. At most 4-D, so no
        # Flex ops; XLA differentiates it on every backend.
        f = self.factor
        shape = tf.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]
        channels = inputs.shape[-1]
        x = tf.reshape(inputs, [batch * height, width, 1, channels])
        x = tf.broadcast_to(x, [batch * height, width, f, channels])
        x = tf.reshape(x, [batch, height, 1, width * f * channels])
        x = tf.broadcast_to(x, [batch, height, f, width * f * channels])
        return tf.reshape(x, [batch, height * f, width * f, channels])

    def compute_output_shape(self, inputs_shape):
        def out(d):
            return None if d is None else d * self.factor
        return (inputs_shape[0], out(inputs_shape[1]), out(inputs_shape[2]), inputs_shape[3])

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="magenta_style")
class UpsampleConvInstanceNorm(keras.layers.Layer):
    """Nearest upsampling by `factor`, then a stride-1 ConvInstanceNorm (Magenta's `ops.upsampling`).

    Resize-then-convolve instead of a transposed conv avoids checkerboard artifacts.
    Call: `inputs` [B, H, W, Cin], `style`, optional `strength` and `moments` (as
    ConditionalInstanceNorm's) -> [B, fH, fW, filters].
    Weights live under the inner block named `conv` (Magenta: `.../convK/conv/weights`).
    """

    def __init__(self, filters, kernel_size, num_styles, factor=2, activation="relu", norm=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.norm_spec = norm
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.num_styles = int(num_styles)
        self.factor = int(factor)
        self.activation = activation
        self.upsample = NearestUpsample(factor, name="upsample", dtype=self.dtype_policy)
        self.conv = ConvInstanceNorm(filters, kernel_size, num_styles, strides=1,
                                     activation=activation, norm=norm, name="conv",
                                     dtype=self.dtype_policy)

    def build(self, inputs_shape, style_shape=None, strength_shape=None):
        pass  # Sublayers build on first call.

    def norm_layers(self):
        return self.conv.norm_layers()

    def call(self, inputs, style, strength=None, moments=None):
        if self.factor == 2 and self.kernel_size == 3:
            # The same numbers without forming the upsampled image (see
            # ConvInstanceNorm._upsample_by_2_conv): 2.25x fewer MACs.
            return self.conv(inputs, style, strength, upsample_by_2=True, moments=moments)
        return self.conv(self.upsample(inputs), style, strength, moments=moments)

    def compute_output_shape(self, inputs_shape, style_shape=None, strength_shape=None):
        shape = self.upsample.compute_output_shape(inputs_shape)
        return shape[:3] + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "num_styles": self.num_styles, "factor": self.factor,
                "activation": self.activation, "norm": self.norm_spec}


@keras.saving.register_keras_serializable(package="magenta_style")
class ResidualBlock(keras.layers.Layer):
    """x + conv2(relu(conv1(x))), both 3x3 ConvInstanceNorm with C = channels of x.

    Magenta's `ops.residual_block`: ReLU after the first conv only, identity shortcut.
    Call: `inputs` [B, H, W, C], `style`, optional `strength` and `moments` (the
    callable form of ConditionalInstanceNorm's: one block holds two norms) -> [B, H, W, C].
    """

    def __init__(self, num_styles, kernel_size=3, norm=None, **kwargs):
        super().__init__(**kwargs)
        self.norm_spec = norm
        self.num_styles = int(num_styles)
        self.kernel_size = int(kernel_size)
        self.conv1 = None
        self.conv2 = None

    def build(self, inputs_shape, style_shape=None, strength_shape=None):
        channels = int(inputs_shape[-1])
        self.conv1 = ConvInstanceNorm(channels, self.kernel_size, self.num_styles,
                                      activation="relu", norm=self.norm_spec, name="conv1",
                                      dtype=self.dtype_policy)
        self.conv2 = ConvInstanceNorm(channels, self.kernel_size, self.num_styles,
                                      activation=None, norm=self.norm_spec, name="conv2",
                                      dtype=self.dtype_policy)

    def norm_layers(self):
        """The two convs' norms (once built)."""
        return self.conv1.norm_layers() + self.conv2.norm_layers()

    def call(self, inputs, style, strength=None, moments=None):
        h = self.conv1(inputs, style, strength, moments=moments)
        return inputs + self.conv2(h, style, strength, moments=moments)

    def compute_output_shape(self, inputs_shape, style_shape=None, strength_shape=None):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "num_styles": self.num_styles,
                "kernel_size": self.kernel_size, "norm": self.norm_spec}
