"""Magenta's arbitrary-image-stylization model (Ghiasi et al. 2017), exactly Magenta's.

"Exploring the structure of a real-time, arbitrary neural artistic stylization network";
Magenta's `arbitrary_image_stylization` (`build_model`, `nza_model`), the network behind
TF Hub's `magenta/arbitrary-image-stylization-v1-256`.

    style image [B, Hs, Ws, 3] in [0, 1]
      -> InceptionV3 up to Mixed_6e (inception_v3.py) -> spatial mean [B, 768]
      -> `Conv` (1x1, bias, linear) -> style bottleneck [B, 100]
    for each of the 13 style-normalised layers of the transformer:
      beta = `StyleNorm/Conv` (1x1, bias, linear), gamma = `StyleNorm/Conv_1`
    content image [B, H, W, 3] in [0, 1]
      -> transformer.StyleTransferNetwork with
           contract conv1-3: batch norm (beta only, moving statistics, epsilon 1e-3);
           residual1-5, expand conv1-3: instance norm (epsilon 1e-5) with the predicted
           gamma/beta (`PredictedInstanceNorm`); sigmoid output
      -> [B, H, W, 3] in [0, 1]

The transformer is the project's one network definition (`structure()`, padding, tiling);
only its norms differ. Its `style` argument is the pair `(mix, bottlenecks)`: per-example
weights [B, K] (or int ids [B], or per-pixel maps [B, H, W, K]) over K bottlenecks
[K, 100] (or per example [B, K, 100]). Weights mix the bottlenecks before the heads
(Magenta's own arithmetic: a one-hot row gives the style's bottleneck exactly); maps mix
the K heads' outputs per pixel, which is the same thing since the heads are affine and
each pixel's weights sum to 1.

Strength (Magenta's `arbitrary_image_stylization_with_weights`): the bottleneck fed is
`content_bottleneck * (1 - w) + style_bottleneck * w`, the content bottleneck being the
content image's own, prepared as a style image (`prepare_style_image`). Strength 0 is the
content-as-style stylization, not the photo.

Weights are keyed by Magenta's TF1 names (`checkpoint_keys`): `InceptionV3/...`,
`Conv/{weights,biases}`, `style_params/transformer/<layer>/StyleNorm/Conv{,_1}/...`,
`transformer/...`.
"""
import keras
import numpy as np
import tensorflow as tf

from magenta_style import config
from magenta_style.networks import batch_norm
from magenta_style.networks import inception_v3
from magenta_style.networks import kernels
from magenta_style.networks import layers
from magenta_style.networks import losses
from magenta_style.networks import transformer

# Magenta's `style_prediction_bottleneck`.
BOTTLENECK = 100
# Magenta's and TF Hub's style image size (shorter side), and the default of
# --style_image_size.
DEFAULT_STYLE_IMAGE_SIZE = config.DEFAULT_STYLE_IMAGE_SIZE
STYLE_PARAMS_SCOPE = "style_params"
# The norm specs (layers.make_norm) of the arbitrary transformer.
CONTRACT_NORM = {"class_name": "magenta_style>BatchNorm",
                 "config": {"name": "BatchNorm", "epsilon": batch_norm.SLIM_EPSILON,
                            "decay": 0.999}}
STYLE_NORM = {"class_name": "magenta_style>PredictedInstanceNorm",
              "config": {"name": "StyleNorm", "bottleneck": BOTTLENECK}}
# Magenta's 13 style-normalised layers, in call order (nza_model.style_normalization_activations).
STYLE_NORM_LAYERS = tuple(
    [f"residual/residual{i}/conv{j}" for i in range(1, 6) for j in (1, 2)]
    + ["expand/conv1/conv", "expand/conv2/conv", "expand/conv3/conv"])


# The loss weights of Magenta's arbitrary_image_stylization_train.py (config.py's).
DEFAULT_CONTENT_WEIGHTS = dict(config.MAGENTA_CONTENT_WEIGHTS)
DEFAULT_STYLE_WEIGHTS = dict(config.ARBITRARY_STYLE_WEIGHTS)
DEFAULT_TOTAL_VARIATION_WEIGHT = config.ARBITRARY_DEFAULTS["total_variation_weight"]


class StyleImageError(ValueError):
    """A style image the predictor cannot take; the message is one line."""


@keras.saving.register_keras_serializable(package="magenta_style")
class PointwiseConv(keras.layers.Layer):
    """slim.conv2d with a 1x1 kernel, bias and no activation, on vectors.

    Call: x float32 [..., Din] -> [..., units] = x W + b. Weights: `weights`
    [1, 1, Din, units] (slim's shape) and `biases` [units].
    """

    def __init__(self, units, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, inputs_shape):
        self.kernel = self.add_weight(
            name="weights", shape=(1, 1, int(inputs_shape[-1]), self.units),
            initializer=keras.initializers.TruncatedNormal(stddev=0.01))
        self.bias = self.add_weight(name="biases", shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        x = tf.cast(inputs, tf.float32)
        return tf.tensordot(x, self.kernel[0, 0], axes=[[-1], [0]]) + self.bias

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="magenta_style")
class PredictedInstanceNorm(layers.ConditionalInstanceNorm):
    """Instance norm (epsilon 1e-5) whose gamma/beta come from a style bottleneck.

    Magenta's `ops.conditional_style_norm` fed by `style_params`: beta = `Conv`(b),
    gamma = `Conv_1`(b), two 1x1 convolutions with bias of the 100-d bottleneck b.
    Everything else (per-pixel maps, tiling's `moments=`, the fused kernel, an N-style
    `strength` that blends toward (1, 0)) is layers.ConditionalInstanceNorm's.

    Call arguments: as ConditionalInstanceNorm's, with `style` the pair (mix,
    bottlenecks): mix int ids [B], float weights [B, K] or maps [B, H, W, K];
    bottlenecks float32 [K, bottleneck] or [B, K, bottleneck].

    Weights: `Conv/{weights,biases}` (beta) and `Conv_1/{weights,biases}` (gamma),
    [1, 1, bottleneck, C] and [C].
    """

    def __init__(self, bottleneck=BOTTLENECK, epsilon=kernels.INSTANCE_NORM_EPSILON,
                 num_styles=1, **kwargs):
        super().__init__(num_styles=1, epsilon=epsilon, **kwargs)
        self.bottleneck = int(bottleneck)
        self.beta_head = PointwiseConv(0, name="Conv")  # Sized in build.
        self.gamma_head = PointwiseConv(0, name="Conv_1")

    def build(self, inputs_shape, *args, **kwargs):
        channels = inputs_shape[-1]
        if channels is None:
            raise ValueError("PredictedInstanceNorm needs a known channel count")
        self.beta_head.units = self.gamma_head.units = int(channels)

    def example_style(self):
        """A (mix, bottlenecks) pair for a batch of 1 (to build a network)."""
        return tf.ones([1, 1]), tf.zeros([1, self.bottleneck])

    def heads(self, bottlenecks):
        """(gamma, beta) [..., C] of bottlenecks [..., bottleneck]."""
        return self.gamma_head(bottlenecks), self.beta_head(bottlenecks)

    def _style_params(self, style, feature_shape):
        mix, bottlenecks = style
        bottlenecks = tf.cast(bottlenecks, tf.float32)
        kind = layers.style_kind(mix)
        count = bottlenecks.shape[-2]
        if kind == "ids":
            mix = tf.one_hot(tf.cast(mix, tf.int32), count if count is not None
                             else tf.shape(bottlenecks)[-2])
        mix = tf.cast(mix, tf.float32)
        if kind != "maps":
            # [B, K, 1] * [(B,) K, D] summed over K: the mixed bottleneck, then the heads.
            mixed = tf.reduce_sum(mix[:, :, None] * bottlenecks, axis=-2)
            gamma, beta = self.heads(mixed)
            return layers.per_example(gamma), layers.per_example(beta)
        gammas, betas = self.heads(bottlenecks)  # [(B,) K, C]
        channels = gammas.shape[-1]
        weights = tf.image.resize(mix, feature_shape[1:3], method="bilinear")
        gamma_map = beta_map = 0.0
        for k in range(mix.shape[-1]):
            w = weights[..., k:k + 1]
            gamma_map += w * tf.reshape(gammas[..., k, :], [-1, 1, 1, channels])
            beta_map += w * tf.reshape(betas[..., k, :], [-1, 1, 1, channels])
        return gamma_map, beta_map

    def get_config(self):
        config = super().get_config()
        config.pop("num_styles", None)
        return {**config, "bottleneck": self.bottleneck}


@keras.saving.register_keras_serializable(package="magenta_style")
class StylePredictor(keras.layers.Layer):
    """Style image -> style bottleneck: InceptionV3 to Mixed_6e, spatial mean, 1x1 `Conv`.

    Call: style_images float32 [B, H, W, 3] in [0, 1], H and W >= 43
    (inception_v3.MIN_INPUT_SIZE), `training` (batch statistics in InceptionV3) ->
    float32 [B, bottleneck].
    """

    def __init__(self, bottleneck=BOTTLENECK, **kwargs):
        super().__init__(**kwargs)
        self.bottleneck = int(bottleneck)
        self.inception = inception_v3.InceptionV3Base("Mixed_6e", name="InceptionV3")
        self.conv = PointwiseConv(self.bottleneck, name="Conv")

    def build(self, style_images_shape):
        pass  # The sublayers build on their first call (see InceptionV3Base.build).

    def call(self, style_images, training=None):
        features = self.inception(style_images, training=training)
        return self.conv(tf.reduce_mean(features, axis=[1, 2]))

    def checkpoint_keys(self):
        keys = self.inception.checkpoint_keys()
        keys.update({"Conv/weights": self.conv.kernel, "Conv/biases": self.conv.bias})
        return keys

    def get_config(self):
        return {**super().get_config(), "bottleneck": self.bottleneck}


@keras.saving.register_keras_serializable(package="magenta_style")
class ArbitraryStyleNetwork(keras.Model):
    """Magenta's arbitrary-style model: `predictor` (style image -> bottleneck) and
    `transformer` (content + bottlenecks -> stylized).

    Call: content float32 [B, H, W, 3] in [0, 1] and style images float32
    [B, Hs, Ws, 3] in [0, 1] (Hs, Ws >= 43; resize them first, see
    `prepare_style_image`) -> float32 [B, H, W, 3] in [0, 1]: Magenta's `build_model`
    output (as the transformer, H x W in and out unless magenta_compatible).
    `training=True` uses batch statistics in InceptionV3 and the contract layers.

    Attributes:
      predictor: StylePredictor.
      transformer: transformer.StyleTransferNetwork with this model's norms.
    """

    def __init__(self, alpha=1.0, bottleneck=BOTTLENECK, magenta_compatible=False, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.bottleneck = int(bottleneck)
        self.magenta_compatible = bool(magenta_compatible)
        style_norm = {"class_name": STYLE_NORM["class_name"],
                      "config": dict(STYLE_NORM["config"], bottleneck=self.bottleneck)}
        self.predictor = StylePredictor(self.bottleneck, name="style_predictor")
        self.transformer = transformer.StyleTransferNetwork(
            1, self.alpha, magenta_compatible=self.magenta_compatible,
            contract_norm=CONTRACT_NORM, style_norm=style_norm, name="transformer")

    def build(self, content_shape=None, style_images_shape=None):
        pass  # See `build_arbitrary`.

    def predict_style(self, style_images, training=None):
        """float32 [B, Hs, Ws, 3] in [0, 1] -> style bottlenecks float32 [B, bottleneck]."""
        return self.predictor(style_images, training=training)

    def transfer(self, images, bottlenecks, training=None):
        """Stylizes example b of images [B, H, W, 3] with bottlenecks[b] ([B, bottleneck])."""
        bottlenecks = tf.convert_to_tensor(bottlenecks, tf.float32)
        ones = tf.ones_like(bottlenecks[:, :1])
        return self.transformer(images, (ones, bottlenecks[:, None, :]), training=training)

    def call(self, content, style_images, training=None):
        return self.transfer(content, self.predict_style(style_images, training=training),
                             training=training)

    def checkpoint_keys(self):
        """{Magenta TF1 key: variable} of every weight (built model only)."""
        keys = self.predictor.checkpoint_keys()
        keys.update(transformer_keys(self.transformer))
        return keys

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "bottleneck": self.bottleneck,
                "magenta_compatible": self.magenta_compatible}


def transformer_keys(network):
    """{Magenta key: variable} of the arbitrary transformer's weights.

    'residual1/conv1/weights' -> 'transformer/residual/residual1/conv1/weights';
    'residual1/conv1/StyleNorm/Conv/weights' ->
    'style_params/transformer/residual/residual1/conv1/StyleNorm/Conv/weights'.
    """
    keys = {}
    for variable in network.weights:
        parts = variable.path.split("/")
        start = next(i for i, p in enumerate(parts)
                     if p.startswith(("contract_conv", "residual", "expand_conv")))
        head, rest = parts[start], parts[start + 1:]
        stage = ["residual", head] if head.startswith("residual") else head.split("_", 1)
        key = "/".join(["transformer"] + stage + rest)
        if "/StyleNorm/" in key:
            key = f"{STYLE_PARAMS_SCOPE}/{key}"
        keys[key] = variable
    return keys


def build_arbitrary(alpha=1.0, bottleneck=BOTTLENECK, magenta_compatible=False):
    """An ArbitraryStyleNetwork with every weight created (Keras' initializers)."""
    model = ArbitraryStyleNetwork(alpha, bottleneck, magenta_compatible)
    size = 64  # >= inception_v3.MIN_INPUT_SIZE
    bottlenecks = model.predict_style(tf.zeros([1, size, size, 3]))
    model.transfer(tf.zeros([1, 16, 16, 3]), bottlenecks)
    return model


def mix_with_content(style_bottlenecks, content_bottlenecks, strength):
    """Magenta's strength: content * (1 - w) + style * w, per example.

    style_bottlenecks, content_bottlenecks float32 [B, D]; strength float [B] or scalar.
    """
    w = tf.reshape(tf.cast(strength, tf.float32), [-1, 1])
    return content_bottlenecks * (1.0 - w) + style_bottlenecks * w


def prepared_size(height, width, size):
    """(h, w) of an image resized so that its shorter side is `size` (0: unchanged).

    As Magenta's `image_utils.resize_image`: the aspect ratio kept, sides rounded to
    the nearest integer. Works on ints and on int32 tensors.
    """
    if not size:
        return height, width
    if tf.is_tensor(height):
        h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
        scale = float(size) / tf.minimum(h, w)
        return (tf.cast(tf.round(h * scale), tf.int32), tf.cast(tf.round(w * scale), tf.int32))
    scale = size / min(height, width)
    return int(np.round(height * scale)), int(np.round(width * scale))


def prepare_style_image(images, size=DEFAULT_STYLE_IMAGE_SIZE):
    """Resizes style images so that their shorter side is `size` (0: as given).

    Magenta's `image_utils.resize_image` (what `arbitrary_image_stylization_with_weights`
    applies to style images and to the content image fed as its own style): TF1's
    bilinear resize (no half-pixel centres), aspect ratio kept.

    images float32 [B, H, W, 3] in [0, 1] -> float32 [B, h, w, 3].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    if not size:
        return images
    shape = tf.shape(images)
    h, w = prepared_size(shape[1], shape[2], size)
    return tf.raw_ops.ResizeBilinear(images=images, size=tf.stack([h, w]), align_corners=False,
                                     half_pixel_centers=False)


def check_style_size(height, width, source="style image"):
    """Raises StyleImageError when the predictor cannot take an H x W style image."""
    if min(height, width) < inception_v3.MIN_INPUT_SIZE:
        raise StyleImageError(
            f"{source} is {width}x{height} after --style_image_size; the style predictor needs "
            f"at least {inception_v3.MIN_INPUT_SIZE} px on each side")


def total_loss(vgg, content, style_images, stylized, content_weights=None, style_weights=None,
               total_variation_weight=DEFAULT_TOTAL_VARIATION_WEIGHT):
    """Magenta's `arbitrary_image_stylization_losses.total_loss`, per example.

    Content loss against the content image, style loss against the Grams of each
    example's own style image, total variation of the stylized image.

    Args:
      vgg: vgg.VGG16Features (called on [0, 1] images).
      content, style_images, stylized: float32 [B, H, W, 3] in [0, 1] (style images
        may have another size).
      content_weights, style_weights: {end point: weight}; default the training script's.
      total_variation_weight: float >= 0.

    Returns:
      (total float32 [B], terms {name: float32 [B]}) as losses.total_loss; its
      `batch_means` are the scalars Magenta logs.
    """
    style_grams = {name: losses.gram_matrix(f) for name, f in vgg(style_images).items()}
    return losses.total_loss(
        vgg(content), vgg(stylized), style_grams,
        content_weights=DEFAULT_CONTENT_WEIGHTS if content_weights is None else content_weights,
        style_weights=DEFAULT_STYLE_WEIGHTS if style_weights is None else style_weights,
        stylized_images=stylized, total_variation_weight=total_variation_weight)


# How `strength` reads for a StyleImageModel: Magenta's interpolation toward the content
# image's own bottleneck ("magenta", the arbitrary model's meaning), or the N-style
# network's blend toward the plain instance norm and the photo ("nstyle", the style bank).
STRENGTH_MODES = ("magenta", "nstyle")


class StyleImageModel(tf.Module):
    """The arbitrary network bound to S style images: called like an N-style network.

    `model(images, style, strength=None)` with images float32 [B, H, W, 3] in [0, 1],
    style int ids [B], weights [B, S] (normalized here to sum to 1 per example) or
    per-pixel maps [B, H, W, S] over the S style images, and optional strength float32
    [B] in [0, 1] -> float32 [B, H, W, 3] in [0, 1]. It has the attributes, `structure()`
    and `forward()` that inference (batching, style maps, tiling, caps) reads from
    transformer.StyleTransferNetwork, so one inference path serves both kinds.
    `network` may also be an export (stylizer.ExportedArbitraryNetwork: the same
    predict_style, transformer call on (mix, bottlenecks) and attributes, no tiling or
    per-pixel maps).

    Attributes:
      network: the ArbitraryStyleNetwork.
      bottlenecks: float32 [S, bottleneck], the style images' bottlenecks.
      num_styles: S.
      strength_mode: one of STRENGTH_MODES.
      style_image_size: the shorter side the content is resized to before it is fed as
        its own style (Magenta strength), 0: as given.
    """

    min_padded_size = transformer.MIN_PADDED_SIZE

    def __init__(self, network, bottlenecks, style_image_size=DEFAULT_STYLE_IMAGE_SIZE,
                 strength_mode="magenta", content_bottleneck=None, transformer_network=None):
        super().__init__(name="style_image_model")
        if strength_mode not in STRENGTH_MODES:
            raise ValueError(f"strength_mode must be one of {STRENGTH_MODES}, got "
                             f"{strength_mode!r}")
        self.network = network
        self.transformer = transformer_network or network.transformer
        self.bottlenecks = tf.constant(np.asarray(bottlenecks, np.float32))
        self.num_styles = int(self.bottlenecks.shape[0])
        self.alpha = network.alpha
        self.magenta_compatible = self.transformer.magenta_compatible
        self.style_image_size = int(style_image_size)
        self.strength_mode = strength_mode
        # [1, bottleneck] of the image being tiled (`for_image`), else None.
        self.content_bottleneck = content_bottleneck

    @property
    def compute_dtype(self):
        return self.transformer.compute_dtype

    @property
    def max_pixels(self):
        """The pixel cap of an export's calls (stylizer.ExportedArbitraryNetwork), else
        None (a Keras network: limits.max_pixels applies)."""
        return getattr(self.transformer, "max_pixels", None)

    @property
    def variables(self):
        """The Keras variables the calls read: the transformer's, plus the predictor's
        when Magenta strength needs the content's own bottleneck (none for an export,
        whose weights are in its SavedModel)."""
        predictor = getattr(self.network, "predictor", None)
        extra = (list(predictor.variables)
                 if predictor is not None and self.strength_mode == "magenta" else [])
        return extra + list(self.transformer.variables)

    @property
    def trainable_variables(self):
        return [v for v in self.variables if v.trainable]

    def structure(self):
        return self.transformer.structure()

    def content_bottlenecks(self, images):
        """The content images' own bottlenecks, prepared as style images: [B, bottleneck]."""
        return self.network.predict_style(prepare_style_image(images, self.style_image_size))

    def _mix(self, style, strength, content):
        """The transformer's (mix, bottlenecks) for a style over the S images."""
        style = tf.convert_to_tensor(style)
        if style.dtype.is_integer:
            style = tf.one_hot(style, self.num_styles)
        style = tf.cast(style, tf.float32)
        if style.shape.rank == 2:
            style = tf.math.divide_no_nan(style, tf.reduce_sum(style, axis=1, keepdims=True))
        if strength is None or self.strength_mode != "magenta":
            return style, self.bottlenecks
        if content is None:
            raise ValueError("Magenta strength needs the content image's bottleneck (for_image)")
        w = tf.reshape(tf.cast(strength, tf.float32), [-1] + [1] * (style.shape.rank - 1))
        mix = tf.concat([style * w, (1.0 - w) * tf.ones_like(style[..., :1])], axis=-1)
        batch = tf.shape(content)[0]
        styles = tf.broadcast_to(self.bottlenecks[None], [batch, self.num_styles,
                                                          self.bottlenecks.shape[1]])
        return mix, tf.concat([styles, content[:, None, :]], axis=1)

    def __call__(self, images, style, strength=None):
        images = tf.convert_to_tensor(images, tf.float32)
        if strength is not None and self.strength_mode == "magenta":
            content = self.content_bottleneck
            if content is None:
                content = self.content_bottlenecks(images)
            else:
                content = tf.broadcast_to(content, [tf.shape(images)[0], content.shape[1]])
            return self.transformer(images, self._mix(style, strength, content))
        return self.transformer(images, self._mix(style, None, None), strength)

    def forward(self, images, style, strength=None, moments=None):
        """The transformer's stages on a padded batch (tiling.py); Magenta strength needs
        `for_image` first."""
        if strength is not None and self.strength_mode == "magenta":
            return self.transformer.forward(images, self._mix(style, strength,
                                                              self.content_bottleneck),
                                            None, moments)
        return self.transformer.forward(images, self._mix(style, None, None), strength, moments)

    def for_image(self, rgb):
        """This model with the content bottleneck of `rgb` (float32 [H, W, 3]) fixed, for
        stylizing it tile by tile with Magenta strength."""
        if self.strength_mode != "magenta":
            return self
        content = self.content_bottlenecks(tf.constant(np.asarray(rgb, np.float32))[None])
        return StyleImageModel(self.network, self.bottlenecks.numpy(), self.style_image_size,
                               self.strength_mode, content, self.transformer)

    def with_bottlenecks(self, bottlenecks):
        """This model bound to other style images: float32 [S', bottleneck] (the
        transformer, its compute dtype, style image size and strength mode kept)."""
        return StyleImageModel(self.network, bottlenecks, self.style_image_size,
                               self.strength_mode, None, self.transformer)

    def with_compute_dtype(self, compute_dtype):
        """This model with the transformer computing in `compute_dtype` (the predictor
        stays float32)."""
        return StyleImageModel(self.network, self.bottlenecks.numpy(), self.style_image_size,
                               self.strength_mode, self.content_bottleneck,
                               transformer.with_compute_dtype(self.transformer, compute_dtype))
