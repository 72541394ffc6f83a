"""The BOE patent's generator (CN109426858B): YUV-split sub-networks.

The RGB image is converted to Y, U, V with the patent's corrected first conversion
matrix (`color.rgb_to_yuv(..., "boe")`); each channel goes through its own
sub-network, which sees only that channel; the three outputs are converted back with
the exact inverse. The patent leaves kernel sizes, widths and the MUX interleaving
unstated and prints a singular conversion matrix; docs/boe.md lists each such gap and
how it was settled.

Sub-network of Fig. 11A (`yuv444`, all three channels) and the Y sub-network of
Fig. 11B, at resolution H -> H/2 -> H/4 -> H/2 -> H:

    conv1 32 -> ReLU -> IN1 -> pool1 | conv2 64 -> ReLU -> IN2 -> pool2 |
    conv3 128 -> ReLU -> IN3 -> composite1 | conv4 64 -> ReLU -> IN4 -> composite2 |
    conv5 1 -> tanh

U and V sub-networks of Fig. 11B (`yuv420`): the standard down-sampling layer `sd`
(2x2 stride-2 conv, ReLU) replaces {conv1, pool1, IN1}, and the standard
up-sampling layer `su` (2x2 stride-2 transposed conv, tanh) replaces {conv5,
composite2, IN4}; so the chroma planes are processed at half resolution and the
highest-resolution chroma convolutions are skipped. 2x2 with stride 2: every pixel
is covered by exactly one tap (a learnt space-to-depth / depth-to-space, no
checkerboard overlap), and both have fewer parameters than the 3x3 convs they
replace, so the chroma sub-networks are smaller and cheaper, as the patent says
(though only by 0.3% of their parameters and 2.7% of their MACs at alpha 1: the
skipped convolutions have one input or output channel; see docs/boe.md):

    sd 32 -> ReLU | conv2 64 -> ReLU -> IN2 -> pool2 | conv3 128 -> ReLU -> IN3 ->
    composite1 | conv4 64 -> ReLU | su 1 -> tanh

Widths are int(alpha * 32/64/128). All other convolutions are 3x3, stride 1, zero
"same" padding, with biases. Initialisation is Gaussian as the patent's S30: kernels
He-normal (std sqrt(2 / fan_in), so that activations are well above the norm's
epsilon), biases N(0, 0.01) (non-zero, so W / B is finite at step 0).

Layer order conv -> ReLU -> IN, not conv -> IN -> ReLU: instance norm subtracts the
per-channel mean, so a conv bias directly followed by IN cancels out and the output
would not depend on it; the weight-bias-ratio loss could then grow those inert
biases without changing the image. With the ReLU in
between, the bias decides where the unit switches on, the role the patent gives it.
The last conv has no IN after it and ends in tanh (the patent's "[-1, 1]" output
range, which its IN alone does not give).

Pooling ("first pooling layer") is max, average or demuxout (space-to-depth: an
image split into 4 smaller images, channels x4). Composite (up-sampling) layers are
Fig. 6B "MUX" (each group of 4 maps becomes 4 maps of 2x size, each a different
interleaving of the 4 inputs' pixels), Fig. 6A pixel shuffle (depth-to-space,
channels / 4) or bilinear interpolation.

Instance norm is "plain" (the patent's: no scale or offset, so one style per model)
or "conditional" (`layers.ConditionalInstanceNorm`: N styles, mixing, style maps and
strength, as the Magenta network).
"""
import keras
import numpy as np
import tensorflow as tf

from magenta_style.media import color
from magenta_style.networks import kernels
from magenta_style.networks import layers
from magenta_style.networks import transformer

# The two 2x down-samplings: H and W must be multiples of this inside the network.
SIZE_MULTIPLE = 4
KERNEL_SIZE = 3
# Widths the patent leaves unstated (docs/boe.md): C1 32, C2 64, C3 128, C4 64, C5 1
# (times alpha), as Magenta's network.
BASE_WIDTHS = (32, 64, 128)
BIAS_INIT_STDDEV = 0.01
VARIANTS = ("yuv444", "yuv420")
# The functions a plain conv stage ends in (layers.Stage.activation).
_ACTIVATIONS = {"relu": tf.nn.relu, "tanh": tf.tanh}


def layer_widths(alpha):
    """Channel widths (conv1, conv2, conv3) for width multiplier `alpha`."""
    return tuple(int(alpha * n) for n in BASE_WIDTHS)


def _bias_init():
    return keras.initializers.RandomNormal(stddev=BIAS_INIT_STDDEV)


@keras.saving.register_keras_serializable(package="magenta_style")
class Demuxout(keras.layers.Layer):
    """The patent's "demuxout" pooling: space-to-depth, [B, H, W, C] -> [B, H/f, W/f, f*f*C].

    Each output channel group holds one of the f*f sub-sampled images (no value is
    lost; `PixelShuffle` with the same factor is its exact inverse).
    """

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, inputs):
        return tf.nn.space_to_depth(inputs, self.factor)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="magenta_style")
class PixelShuffle(keras.layers.Layer):
    """Fig. 6A composite layer: depth-to-space, [B, H, W, f*f*C] -> [B, fH, fW, C].

    Every f*f input maps are interleaved into one output map in a fixed pixel order
    (TensorFlow's: sub-pixel (i, j) of output channel c is input channel
    (i * f + j) * C + c).
    """

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, inputs):
        return tf.nn.depth_to_space(inputs, self.factor)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def mux_channel_order(channels):
    """Input-channel indices (int32 [4 * channels]) that `MuxComposite` gathers.

    Entry `p * channels + 4g + k` is input channel `4g + (p + k) % 4`: sub-pixel p
    (row-major in the 2x2 block) of output map 4g + k comes from input map
    4g + (p + k) mod 4, the cyclic shift k of group g (Fig. 6B draws four interleavings
    but gives no rule; these four cyclic shifts are our reading, see docs/boe.md).
    """
    if channels % 4:
        raise ValueError(f"the MUX composite layer needs a multiple of 4 channels, got {channels}")
    p, g, k = np.meshgrid(np.arange(4), np.arange(channels // 4), np.arange(4), indexing="ij")
    return (4 * g + (p + k) % 4).reshape(-1).astype(np.int32)


@keras.saving.register_keras_serializable(package="magenta_style")
class MuxComposite(keras.layers.Layer):
    """Fig. 6B "MUX" composite layer, factor 2: [B, H, W, C] -> [B, 2H, 2W, C], C % 4 == 0.

    Every group of 4 input maps yields 4 output maps of twice the height and width;
    output k of a group holds the 4 inputs' pixels in the k-th cyclic interleaving
    (see `mux_channel_order`), so every output map is a permutation of its group's
    pixels and the following activation "selects" among the interleavings. Written as
    a channel gather and one depth-to-space (both TFLite built-ins).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def call(self, inputs):
        order = mux_channel_order(int(inputs.shape[-1]))
        return tf.nn.depth_to_space(tf.gather(inputs, order, axis=-1), 2)


@keras.saving.register_keras_serializable(package="magenta_style")
class BilinearUpsample(keras.layers.Layer):
    """Bilinear interpolation by an integer `factor`: [B, H, W, C] -> [B, fH, fW, C]."""

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, inputs):
        shape = tf.shape(inputs)
        out = tf.image.resize(inputs, [shape[1] * self.factor, shape[2] * self.factor],
                              method="bilinear")
        return tf.cast(out, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="magenta_style")
class InstanceNorm(keras.layers.Layer):
    """The patent's instance norm: (x - mean) / sqrt(var + eps) per example and channel.

    No learnt scale or offset. Statistics over H and W, epsilon 1e-5 as
    ConditionalInstanceNorm; always float32. Call: [B, H, W, C] -> float32 [B, H, W, C],
    with optional `moments` as ConditionalInstanceNorm's.
    """

    def __init__(self, epsilon=kernels.INSTANCE_NORM_EPSILON, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def norm_layers(self):
        return (self,)

    def call(self, inputs, moments=None):
        x = tf.cast(inputs, tf.float32)
        given = layers.resolve_moments(moments, self, x)
        mean, variance = given or tf.nn.moments(x, axes=[1, 2], keepdims=True)
        return tf.nn.batch_normalization(x, mean, variance, None, None, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def _pool(kind, name, policy):
    if kind == "max":
        return keras.layers.MaxPooling2D(2, 2, name=name, dtype=policy)
    if kind == "avg":
        return keras.layers.AveragePooling2D(2, 2, name=name, dtype=policy)
    if kind == "demuxout":
        return Demuxout(2, name=name, dtype=policy)
    raise ValueError(f"pooling must be max, avg or demuxout, got {kind!r}")


def _composite(kind, name, policy):
    if kind == "mux":
        return MuxComposite(name=name, dtype=policy)
    if kind == "shuffle":
        return PixelShuffle(2, name=name, dtype=policy)
    if kind == "bilinear":
        return BilinearUpsample(2, name=name, dtype=policy)
    raise ValueError(f"composite must be mux, shuffle or bilinear, got {kind!r}")


@keras.saving.register_keras_serializable(package="magenta_style")
class BoeSubNetwork(keras.layers.Layer):
    """One channel's sub-network (see the module docstring), [B, H, W, 1] -> [B, H, W, 1].

    Args:
      widths: (w1, w2, w3) channel widths of conv1/sd, conv2 (and conv4), conv3.
      chroma420: the Fig. 11B U/V form (sd/su instead of conv1, pool1, IN1 and conv5,
        composite2, IN4).
      norm: "plain" or "conditional".
      num_styles: rows of the conditional norms' tables (plain: 1).
      pooling: "max", "avg" or "demuxout".
      composite: "mux", "shuffle" or "bilinear".

    Call: `inputs` [B, H, W, 1] (H, W multiples of 4), `style` and `strength` as
    ConditionalInstanceNorm (unused with plain norm), optional `moments` (the callable
    form of ConditionalInstanceNorm's). Returns [B, H, W, 1] in [-1, 1].

    Weights: `conv1..conv5` (or `sd`, `conv2..conv4`, `su`) with `kernel` and `bias`;
    with conditional norm `InstanceNormK/{beta,gamma}`.
    """

    def __init__(self, widths, chroma420=False, norm="plain", num_styles=1, pooling="max",
                 composite="mux", **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(int(w) for w in widths)
        self.chroma420 = bool(chroma420)
        self.norm = str(norm)
        self.num_styles = int(num_styles)
        self.pooling = str(pooling)
        self.composite = str(composite)
        if self.norm not in ("plain", "conditional"):
            raise ValueError(f"norm must be plain or conditional, got {norm!r}")
        w1, w2, w3 = self.widths
        policy = self.dtype_policy

        def conv(filters, name, kernel_size=KERNEL_SIZE, strides=1):
            return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                                       kernel_initializer="he_normal",
                                       bias_initializer=_bias_init(), name=name, dtype=policy)

        def norm_layer(k):
            # "InstanceNorm" in the name: finetuning selects these tables by it.
            if self.norm == "conditional":
                return layers.ConditionalInstanceNorm(self.num_styles, name=f"InstanceNorm{k}")
            return InstanceNorm(name=f"InstanceNorm{k}")

        if self.chroma420:
            self.sd = conv(w1, "sd", kernel_size=2, strides=2)
        else:
            self.conv1 = conv(w1, "conv1")
            self.norm1 = norm_layer(1)
            self.pool1 = _pool(self.pooling, "pool1", policy)
        self.conv2 = conv(w2, "conv2")
        self.norm2 = norm_layer(2)
        self.pool2 = _pool(self.pooling, "pool2", policy)
        self.conv3 = conv(w3, "conv3")
        self.norm3 = norm_layer(3)
        self.composite1 = _composite(self.composite, "composite1", policy)
        self.conv4 = conv(w2, "conv4")
        if self.chroma420:
            self.su = keras.layers.Conv2DTranspose(
                1, 2, strides=2, padding="same", kernel_initializer="he_normal",
                bias_initializer=_bias_init(), name="su", dtype=policy)
        else:
            self.norm4 = norm_layer(4)
            self.composite2 = _composite(self.composite, "composite2", policy)
            self.conv5 = conv(1, "conv5")

    def build(self, inputs_shape, style_shape=None, strength_shape=None):
        pass  # Sublayers build on the first call.

    def conv_layers(self):
        """The convolutions in call order (their kernels and biases are the parameters)."""
        names = (("sd", "conv2", "conv3", "conv4", "su") if self.chroma420
                 else ("conv1", "conv2", "conv3", "conv4", "conv5"))
        return [getattr(self, n) for n in names]

    def structure(self):
        """The stages in call order: tuple of layers.Stage (conv, norm, pool, composite)."""

        def conv(layer, activation):
            k, s = layer.kernel_size[0], layer.strides[0]
            if isinstance(layer, keras.layers.Conv2DTranspose):
                geometry = ((1, 1, s),)  # 2x2 stride 2: each input pixel fills its own block.
            else:
                geometry = ((1 if k == s else k, s, 1),)
            return layers.Stage("conv", (layer,), geometry, activation=activation)

        def norm(layer):
            return layers.Stage("norm", (layer,))

        def composite(layer):
            # Bilinear x2 reads one input pixel beyond its own on each side.
            reach = ((3, 1, 1),) if self.composite == "bilinear" else ()
            return layers.Stage("composite", (layer,), reach + ((1, 1, 2),))

        pool = lambda layer: layers.Stage("pool", (layer,), ((1, 2, 1),))
        if self.chroma420:
            stages = [conv(self.sd, "relu")]
        else:
            stages = [conv(self.conv1, "relu"), norm(self.norm1), pool(self.pool1)]
        stages += [conv(self.conv2, "relu"), norm(self.norm2), pool(self.pool2),
                   conv(self.conv3, "relu"), norm(self.norm3), composite(self.composite1),
                   conv(self.conv4, "relu")]
        if self.chroma420:
            stages.append(conv(self.su, "tanh"))
        else:
            stages += [norm(self.norm4), composite(self.composite2), conv(self.conv5, "tanh")]
        return tuple(stages)

    def stages(self, inputs, style, strength=None, moments=None):
        """Every stage's output in call order: list of (layer name, tensor).

        Runs `structure()`. The last entry is the sub-network's output. Tests read the IN
        outputs and the resolutions from it; `call` returns its last tensor.
        """
        out = []
        h = tf.cast(inputs, self.compute_dtype)
        for stage in self.structure():
            layer = stage.layers[0]
            if stage.kind == "norm":
                if self.norm == "conditional":
                    h = layer(h, style, strength, moments=moments)
                else:
                    h = layer(h, moments=moments)
                h = tf.cast(h, self.compute_dtype)
            else:
                h = layer(h)
                if stage.activation:
                    h = _ACTIVATIONS[stage.activation](h)
            out.append((layer.name, h))
        return out

    def call(self, inputs, style, strength=None, moments=None):
        return self.stages(inputs, style, strength, moments)[-1][1]

    def compute_output_shape(self, inputs_shape, style_shape=None, strength_shape=None):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "widths": list(self.widths),
                "chroma420": self.chroma420, "norm": self.norm, "num_styles": self.num_styles,
                "pooling": self.pooling, "composite": self.composite}


@keras.saving.register_keras_serializable(package="magenta_style")
class BoeGenerator(keras.Model):
    """The BOE generator of Fig. 11A (`variant="yuv444"`) or 11B (`"yuv420"`).

    Call arguments (the same as transformer.StyleTransferNetwork):
      images: float32 [B, H, W, 3] RGB in [0, 1], any H, W >= 1.
      style: int32 ids [B], float32 weights [B, num_styles] or per-pixel maps
        [B, H, W, num_styles]. With plain norm (one style) it is accepted and unused.
      strength: optional float32 [B] in [0, 1]; 0 returns the input, 1 the full
        style. Conditional norm: every norm's (gamma, beta) is blended toward (1, 0)
        and the output mixed with the input, as the Magenta network. Plain norm: there
        is no scale/offset to blend, so strength is only the output/input mix.

    Returns float32 [B, H, W, 3] in [0, 1]. The input is mapped to [-1, 1], converted
    to the patent's YUV, reflect-padded at the bottom/right to a multiple of 4 (at
    least 4), run through the three sub-networks (tanh outputs in [-1, 1]), converted
    back with the exact inverse matrix, mapped to [0, 1] by (x + 1) / 2, clipped and
    cropped back to H x W.
    """

    def __init__(self, num_styles=1, alpha=1.0, variant="yuv444", norm="plain", pooling="max",
                 composite="mux", **kwargs):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.num_styles = int(num_styles)
        self.alpha = float(alpha)
        self.variant = variant
        self.norm = norm
        self.pooling = pooling
        self.composite = composite
        if norm == "plain" and self.num_styles != 1:
            raise ValueError(f"plain instance norm has one style, got num_styles={num_styles}")
        widths = layer_widths(self.alpha)
        policy = self.dtype_policy
        common = dict(norm=norm, num_styles=self.num_styles, pooling=pooling,
                      composite=composite, dtype=policy)
        self.y_net = BoeSubNetwork(widths, chroma420=False, name="y_net", **common)
        chroma = variant == "yuv420"
        self.u_net = BoeSubNetwork(widths, chroma420=chroma, name="u_net", **common)
        self.v_net = BoeSubNetwork(widths, chroma420=chroma, name="v_net", **common)

    # Consumers ask this of every model (tiling, stylize): output size = input size.
    magenta_compatible = False
    # The smallest padded side (transformer.padded_size): 4, both down-samplings' grid.
    min_padded_size = SIZE_MULTIPLE

    def build(self, images_shape, style_shape=None, strength_shape=None):
        pass  # Sublayers build on the first call (see `build_boe`).

    def subnetworks(self):
        return [self.y_net, self.u_net, self.v_net]

    def kernels_and_biases(self):
        """([kernel variables], [bias variables]) of every convolution of the generator.

        All of them, including sd/su of the 4:2:0 chroma sub-networks: these are what the
        weight-bias-ratio loss covers. Each bias acts before a ReLU or the final tanh
        (never directly before an IN), so every one of them changes the output.
        """
        convs = [c for net in self.subnetworks() for c in net.conv_layers()]
        return [c.kernel for c in convs], [c.bias for c in convs]

    def structure(self):
        """One "branch" stage: YUV channel i through sub-network i (layers.Stage)."""
        nets = tuple(self.subnetworks())
        return (layers.Stage("branch", nets, branches=tuple(net.structure() for net in nets)),)

    def forward(self, images, style, strength=None, moments=None):
        """The generator on an already padded batch (no padding, cropping or input mix).

        Args:
          images: [B, H, W, 3] RGB in [0, 1], H and W multiples of 4.
          style, strength: as `call`, maps of the images' size.
          moments: optional, the callable form of layers.ConditionalInstanceNorm's.

        Returns:
          float32 [B, H, W, 3] in [0, 1].
        """
        norm_strength = strength if self.norm == "conditional" else None
        yuv = color.rgb_to_yuv(2.0 * tf.cast(images, tf.float32) - 1.0, "boe")
        (branch,) = self.structure()
        outs = [tf.cast(net(yuv[..., i:i + 1], style, norm_strength, moments=moments),
                        tf.float32) for i, net in enumerate(branch.layers)]
        out = color.yuv_to_rgb(tf.concat(outs, axis=-1), "boe")
        return tf.clip_by_value((out + 1.0) * 0.5, 0.0, 1.0)

    def call(self, images, style, strength=None):
        style = tf.convert_to_tensor(style)
        layers.style_kind(style)
        rgb = tf.cast(images, tf.float32)
        x, style, height, width = transformer.pad_inputs(rgb, style, SIZE_MULTIPLE)
        out = self.forward(x, style, strength)[:, :height, :width, :]
        if strength is not None:
            s = tf.reshape(tf.cast(strength, tf.float32), [-1, 1, 1, 1])
            out = s * out + (1.0 - s) * rgb
        return out

    def compute_output_shape(self, images_shape, style_shape=None, strength_shape=None):
        return images_shape[:3] + (3,)

    def get_config(self):
        return {**super().get_config(), "num_styles": self.num_styles, "alpha": self.alpha,
                "variant": self.variant, "norm": self.norm, "pooling": self.pooling,
                "composite": self.composite}


def build_boe(model_config):
    """Returns a BoeGenerator for a config.ModelConfig with a BOE generator, weights created."""
    variant = model_config.generator.split("_", 1)[1]
    model = BoeGenerator(model_config.num_styles, model_config.alpha, variant=variant,
                         norm=model_config.boe_norm, pooling=model_config.boe_pooling,
                         composite=model_config.boe_composite)
    model(tf.zeros([1, 16, 16, 3]), tf.zeros([1], tf.int32))
    return model
