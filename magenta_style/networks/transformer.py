"""The multi-style transformer (image stylization) network, exactly Magenta's.

    contract_conv1  9x9 / int(32a), stride 1    ┐
    contract_conv2  3x3 / int(64a), stride 2    │ each: reflect pad, conv (no bias),
    contract_conv3  3x3 / int(128a), stride 2   │ conditional instance norm, ReLU
    residual1..5    two 3x3 / int(128a) convs, ReLU after the first, identity added
    expand_conv1    nearest x2, 3x3 / int(64a)  │
    expand_conv2    nearest x2, 3x3 / int(32a)  │
    expand_conv3    9x9 / 3, instance norm, sigmoid

All convolution weights are shared by the styles; a style is one row of every
gamma/beta table. Layer and weight names mirror Magenta's checkpoint keys
(`transformer/contract/conv1/weights` <-> `contract_conv1/weights`); see
`checkpoints.py` for the exact map.
"""
import keras
import tensorflow as tf

from magenta_style.networks import kernels
from magenta_style.networks import layers

# The two stride-2 convolutions: H and W must be multiples of this for the output
# to have the input's size.
SIZE_MULTIPLE = 4
# The smallest padded side for which every reflect padding in the network is valid
# (the 9x9 convs pad by 4; the 3x3 convs at 1/4 resolution pad by 1).
MIN_PADDED_SIZE = 8

RESIDUAL_BLOCKS = 5


def layer_widths(alpha):
    """Channel widths (contract1, contract2, contract3) for width multiplier `alpha`."""
    return int(alpha * 32), int(alpha * 64), int(alpha * 128)


def padded_size(size, minimum=MIN_PADDED_SIZE):
    """The side a generator computes for an input side `size`: at least `minimum`, rounded up
    to a multiple of SIZE_MULTIPLE. int -> int, or int32 tensor -> int32 tensor.

    The one definition of the padding: both networks (`minimum` 8 here, 4 for boe.py's),
    tiling and stylize's size checks follow it.
    """
    size = tf.maximum(size, minimum) if tf.is_tensor(size) else max(int(size), minimum)
    return -(-size // SIZE_MULTIPLE) * SIZE_MULTIPLE


def pad_inputs(images, style, minimum=MIN_PADDED_SIZE):
    """Reflect-pads images (and per-pixel style maps) at the bottom/right to `padded_size`.

    Args:
      images: [B, H, W, C] tensor.
      style: the network's style argument; per-pixel maps [B, H, W, S] are padded like
        the image so that they stay aligned with it when each layer resizes them to its
        resolution, ids and weight rows pass unchanged.
      minimum: the smallest padded side (see `padded_size`).

    Returns:
      (padded images, style, H, W): H and W the input's, to crop back to (Python ints
      where the static shape has them, else int32 scalars).
    """
    _, height, width, _ = kernels.static_or_dynamic_shape(images)
    padded_height, padded_width = padded_size(height, minimum), padded_size(width, minimum)
    if isinstance(height, int) and isinstance(width, int) and (
            (height, width) == (padded_height, padded_width)):
        return images, style, height, width  # A static size that needs no padding.
    rows = kernels.reflect_indices(height, 0, padded_height - height)
    cols = kernels.reflect_indices(width, 0, padded_width - width)
    images = tf.gather(tf.gather(images, rows, axis=1), cols, axis=2)
    # A style made of several tensors (the arbitrary model's (mix, bottlenecks)): its maps
    # are padded, everything else passes.
    style = tf.nest.map_structure(
        lambda s: tf.gather(tf.gather(s, rows, axis=1), cols, axis=2) if s.shape.rank == 4 else s,
        style)
    return images, style, height, width


@keras.saving.register_keras_serializable(package="magenta_style")
class StyleTransferNetwork(keras.Model):
    """Feed-forward stylization network conditioned on a style id, mix or map.

    Call arguments:
      images: float32 [B, H, W, 3] in [0, 1], any H, W >= 1.
      style: int32 ids [B], float32 weights [B, num_styles] (one mix per example,
        not normalised), or float32 per-pixel weight maps [B, H, W, num_styles]; see
        `layers.ConditionalInstanceNorm`.
      strength: optional float32 [B] in [0, 1]; 1 (default) is the full style and
        0 returns the input. In between, every instance norm's (gamma, beta) is
        blended toward the plain (1, 0) by `strength` and the result is mixed with
        the input by the same amount. Not available with magenta_compatible=True.

    Returns float32 [B, H, W, 3] in [0, 1]. By default the input is reflect-padded
    at the bottom/right to a multiple of 4 (and at least 8) and the output cropped
    back, so any size gives the same size out and sizes that are multiples of 4 are
    computed exactly as Magenta does. With `magenta_compatible=True` nothing is
    padded and the output size is Magenta's (e.g. 93x129 in -> 96x132 out).

    `structure()` lists the stages in call order; `forward` runs them (all of the
    network between padding and cropping).
    """

    # The smallest padded side (see `padded_size`); tiling pads windows' images by it.
    min_padded_size = MIN_PADDED_SIZE

    def __init__(self, num_styles, alpha=1.0, magenta_compatible=False, contract_norm=None,
                 style_norm=None, **kwargs):
        super().__init__(**kwargs)
        self.num_styles = int(num_styles)
        self.alpha = float(alpha)
        self.magenta_compatible = bool(magenta_compatible)
        # Norm specs (layers.make_norm); None: conditional instance norm everywhere. The
        # arbitrary-style model (arbitrary.py) puts a batch norm in the contract layers and
        # a predicted style norm in the others: the same network otherwise.
        self.contract_norm = contract_norm
        self.style_norm = style_norm
        w1, w2, w3 = layer_widths(self.alpha)
        n, policy = self.num_styles, self.dtype_policy
        self.contract_conv1 = layers.ConvInstanceNorm(w1, 9, n, 1, norm=contract_norm,
                                                      name="contract_conv1", dtype=policy)
        self.contract_conv2 = layers.ConvInstanceNorm(w2, 3, n, 2, norm=contract_norm,
                                                      name="contract_conv2", dtype=policy)
        self.contract_conv3 = layers.ConvInstanceNorm(w3, 3, n, 2, norm=contract_norm,
                                                      name="contract_conv3", dtype=policy)
        # Named attributes (not a list) keep the object-based checkpoint keys readable:
        # `transformer/residual3/conv1/...` rather than `.../residual_blocks/2/...`.
        for i in range(1, RESIDUAL_BLOCKS + 1):
            setattr(self, f"residual{i}", layers.ResidualBlock(n, 3, norm=style_norm,
                                                               name=f"residual{i}", dtype=policy))
        self.expand_conv1 = layers.UpsampleConvInstanceNorm(w2, 3, n, 2, norm=style_norm,
                                                            name="expand_conv1", dtype=policy)
        self.expand_conv2 = layers.UpsampleConvInstanceNorm(w1, 3, n, 2, norm=style_norm,
                                                            name="expand_conv2", dtype=policy)
        # Magenta routes the last conv through `upsampling` with stride 1 too, hence
        # the `.../conv3/conv/...` names; it is normalised before the sigmoid.
        self.expand_conv3 = layers.UpsampleConvInstanceNorm(3, 9, n, 1, activation="sigmoid",
                                                            norm=style_norm, name="expand_conv3",
                                                            dtype=policy)

    def build(self, images_shape, style_shape=None, strength_shape=None):
        pass  # Sublayers build on the first call (see `build_transformer`).

    def structure(self):
        """The stages in call order: tuple of layers.Stage (conv, residual, upsample)."""
        stages = []
        for conv in (self.contract_conv1, self.contract_conv2, self.contract_conv3):
            stages.append(layers.Stage("conv", (conv,), ((conv.kernel_size, conv.strides, 1),)))
        for i in range(1, RESIDUAL_BLOCKS + 1):
            block = getattr(self, f"residual{i}")
            k = block.kernel_size
            stages.append(layers.Stage("residual", (block,), ((k, 1, 1), (k, 1, 1))))
        for expand in (self.expand_conv1, self.expand_conv2, self.expand_conv3):
            stages.append(layers.Stage("upsample", (expand,),
                                       ((expand.kernel_size, 1, expand.factor),)))
        return tuple(stages)

    def forward(self, images, style, strength=None, moments=None):
        """The stages alone, on an already padded batch (no padding, cropping or input mix).

        Args:
          images: [B, H, W, 3] in [0, 1], H and W >= 8 and multiples of 4 (or any
            size Magenta's network accepts, as with magenta_compatible).
          style, strength: as `call`, maps of the images' size.
          moments: optional, the callable form of layers.ConditionalInstanceNorm's.

        Returns:
          [B, H, W, 3] in [0, 1], the model's compute dtype.
        """
        h = tf.cast(images, self.compute_dtype)
        for stage in self.structure():
            h = stage.layers[0](h, style, strength, moments=moments)
        return h

    def call(self, images, style, strength=None):
        if strength is not None and self.magenta_compatible:
            raise ValueError("strength needs magenta_compatible=False (output size = input size)")
        x = tf.cast(images, self.compute_dtype)
        style = tf.nest.map_structure(tf.convert_to_tensor, style)
        if not self.magenta_compatible:
            x, style, height, width = pad_inputs(x, style)
        h = self.forward(x, style, strength)
        if not self.magenta_compatible:
            h = h[:, :height, :width, :]
        out = tf.cast(h, tf.float32)
        if strength is not None:
            # The network's style-specific scale/shift alone cannot reach the photo at
            # strength 0 (a plain instance norm before the sigmoid fixes each channel's
            # mean and contrast), so the content is also mixed back in by (1 - strength).
            s = tf.reshape(tf.cast(strength, tf.float32), [-1, 1, 1, 1])
            out = s * out + (1.0 - s) * tf.cast(images, tf.float32)
        return out

    def compute_output_shape(self, images_shape, style_shape=None, strength_shape=None):
        return images_shape[:3] + (3,)

    def get_config(self):
        return {**super().get_config(), "num_styles": self.num_styles, "alpha": self.alpha,
                "magenta_compatible": self.magenta_compatible,
                "contract_norm": self.contract_norm, "style_norm": self.style_norm}


def build_transformer(model_config, magenta_compatible=False):
    """Returns a StyleTransferNetwork for `model_config` with all weights created.

    Args:
      model_config: config.ModelConfig (num_styles, alpha).
      magenta_compatible: reproduce Magenta's output size for sizes that are not
        multiples of 4 instead of cropping to the input size.
    """
    model = StyleTransferNetwork(model_config.num_styles, model_config.alpha,
                                 magenta_compatible=magenta_compatible)
    model(tf.zeros([1, 16, 16, 3]), tf.zeros([1], tf.int32))
    return model


# Compute dtypes offered for inference. Weights, instance norms and the output stay float32.
COMPUTE_DTYPES = ("float32", "bfloat16")


def with_compute_dtype(model, compute_dtype):
    """`model` computing its convolutions in `compute_dtype` ("float32" or "bfloat16").

    The one such function, for every model `stylizer.load` returns:
    - a Keras generator (this StyleTransferNetwork or a boe.BoeGenerator) already in
      `compute_dtype` is returned as it is; otherwise a copy is rebuilt from its
      get_config under Keras' "mixed_bfloat16" (or "float32") policy, holding copies
      of its float32 weights. In bfloat16 the convolutions run in bfloat16
      (AVX512_BF16/AMX CPUs and GPUs have fast units for it); the instance norms and
      the output stay float32. Inference only (the copy does not share variables).
    - an export (stylizer.ExportedModel) computes in what it was exported with, so it
      must already be in `compute_dtype`.

    Raises:
      ValueError: unknown compute_dtype, or an export made with another one (the
        message names --compute_dtype).
    """
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, "
                         f"got {compute_dtype!r}")
    if model.compute_dtype == compute_dtype:
        return model
    if hasattr(model, "with_compute_dtype"):  # arbitrary.StyleImageModel: its transformer.
        return model.with_compute_dtype(compute_dtype)
    if not isinstance(model, keras.Model):
        raise ValueError(f"--compute_dtype={compute_dtype}: this model was exported to compute "
                         f"in {model.compute_dtype}; export again with "
                         f"--compute_dtype={compute_dtype} or pass the checkpoint")
    config = {**model.get_config(),
              "dtype": "mixed_bfloat16" if compute_dtype == "bfloat16" else "float32"}
    copy = type(model).from_config(config)
    copy(tf.zeros([1, 16, 16, 3]), example_style(model))
    copy.set_weights(model.get_weights())
    return copy


def example_style(model):
    """A style argument that builds `model` (a batch of 1): what its norms take."""
    if getattr(model, "style_norm", None) is None:
        return tf.zeros([1], tf.int32)
    norm = layers.make_norm(model.style_norm, model.num_styles)
    return norm.example_style()


def weight_names(model):
    """Sorted Keras paths of every weight, e.g. 'contract_conv1/InstanceNorm/beta'."""
    return sorted(v.path.split("/", 1)[1] for v in model.weights)

