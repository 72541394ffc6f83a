"""Magenta's perceptual losses as pure TensorFlow functions on VGG feature dicts.

The caller runs the VGG (see `magenta_style.networks.vgg`) and passes its end point dicts in;
this module never builds a network, so every function can be tested with random
tensors.

Reductions. Every loss here is returned PER EXAMPLE, as float32 `[B]`, so a
trainer can average correctly over a global batch split across replicas. The
values Magenta logs (and the fixtures hold) are batch means of these per-example
values: Magenta reduces each content/style term with a mean over all of its
elements, which equals the batch mean of per-example means, and weights the style
term per example (`style_coefficients`) before the batch mean. `batch_means`
turns a per-example term dict into those scalars.

- content term of layer l, example i: mean over (h, w, c) of
  (phi_l(stylized_i) - phi_l(content_i))^2
- style term of layer l, example i: mean over (c, c') of
  (G_l(stylized_i) - G_l(style_i))^2, with G the Gram matrix normalised by h * w
- weighted style term: style_weight_l * style_coefficient_i * style term
- total variation of example i: (sum(dy^2) / 2) / ((H - 1) W C) + (sum(dx^2) / 2) / (H (W - 1) C)
  where dy, dx are differences of vertically / horizontally adjacent pixels.

Normalization (`normalization=` of content_loss, style_loss, total_loss), with F the
[M = h * w, N = C] features of the output, P the target's, G = F^T F, A the target Gram:
- "magenta" (default, every number above): content mean((F - P)^2), style mean over
  (c, c') of (G/M - A/M)^2.
- "gatys" (Gatys et al. 2015): content 1/2 sum((F - P)^2), style
  1/(4 N^2 M^2) sum((G - A)^2), A taken at the output's M positions.
- "johnson" (Johnson et al. 2016): content 1/(C H W) ||F - P||^2, style
  ||G/(C H W) - A/(C H W)||_F^2. Both equal Magenta's numbers exactly (G/(CHW) is
  (G/M)/N, and the squared norm over N^2 entries is N^2 times their mean); the name
  exists so a recipe says what it means, and a test holds the identity.
- "relative" (this project's `hed` recipe): content ||F - P||^2 / ||P||^2, style
  ||G - A||_F^2 / ||A||_F^2 (any Gram scaling cancels). Every layer's term is 1 when the
  output is as far from the target as the target is from zero, whatever the layer's
  scale: HED's layers differ by 1e7 in Gram magnitude (docs/vgg_weights.md), so the
  weights of a recipe in this normalization say how much each layer counts, not how
  big its numbers are. The square of the quality metric's per-layer distance
  (networks/quality.py), summed instead of averaged.
"""
import math

import tensorflow as tf

from magenta_style import config

# Magenta's defaults, as the {end point: weight} the loss functions take (config.py
# holds them, with the end point names and the layer-weights flag form).
DEFAULT_CONTENT_WEIGHTS = dict(config.MAGENTA_CONTENT_WEIGHTS)
DEFAULT_STYLE_WEIGHTS = dict(config.MAGENTA_STYLE_WEIGHTS)
DEFAULT_TOTAL_VARIATION_WEIGHT = config.LossConfig.total_variation_weight

NORMALIZATIONS = ("magenta", "gatys", "johnson", "relative")


def _check_normalization(normalization):
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def gram_matrix(features):
    """Gram matrices normalised by the number of positions, as Magenta computes them.

    Args:
      features: float [B, H, W, C] (any H, W; C should be static).

    Returns:
      float32 [B, C, C]: G[b] = F[b]^T F[b] / (H * W), with F[b] the [H * W, C] reshape.
    """
    features = tf.cast(features, tf.float32)
    shape = tf.shape(features)
    channels = features.shape[-1] if features.shape[-1] is not None else shape[3]
    positions = shape[1] * shape[2]
    flat = tf.reshape(features, tf.stack([shape[0], positions, channels]))
    return _self_gram(flat) / tf.cast(positions, tf.float32)


@tf.custom_gradient
def _self_gram(flat):
    """F^T F for F = flat [B, P, C], with the gradient F (dG + dG^T): one matmul where
    autodiff of tf.matmul(F, F) makes two (one per operand) and adds them."""
    def grad(upstream):
        return tf.matmul(flat, upstream + tf.linalg.matrix_transpose(upstream))
    return tf.matmul(flat, flat, transpose_a=True), grad


def content_loss(content_features, stylized_features, content_weights=None,
                 normalization="magenta"):
    """Per-example content loss.

    Args:
      content_features: dict {end point: float [B, h, w, C]} of the content images.
      stylized_features: same structure, of the stylized images.
      content_weights: {end point: float}; defaults to DEFAULT_CONTENT_WEIGHTS.
      normalization: "magenta" (mean), "johnson" (the same), "gatys" (half the sum) or
        "relative" (the sum over the target's sum of squares).

    Returns:
      (total float32 [B], terms) where terms maps `content_loss/<name>`,
      `weighted_content_loss/<name>` and `total_content_loss` to float32 [B].
    """
    content_weights = config.validate_layer_weights(
        DEFAULT_CONTENT_WEIGHTS if content_weights is None else content_weights,
        "content weights")
    _check_normalization(normalization)
    terms = {}
    total = None
    for name, weight in content_weights.items():
        diff = (tf.cast(stylized_features[name], tf.float32)
                - tf.cast(content_features[name], tf.float32))
        if normalization == "gatys":
            loss = 0.5 * tf.reduce_sum(tf.square(diff), axis=[1, 2, 3])
        elif normalization == "relative":
            target = tf.cast(content_features[name], tf.float32)
            loss = tf.math.divide_no_nan(tf.reduce_sum(tf.square(diff), axis=[1, 2, 3]),
                                         tf.reduce_sum(tf.square(target), axis=[1, 2, 3]))
        else:
            loss = tf.reduce_mean(tf.square(diff), axis=[1, 2, 3])
        weighted = weight * loss
        terms[f"content_loss/{name}"] = loss
        terms[f"weighted_content_loss/{name}"] = weighted
        total = weighted if total is None else total + weighted
    if total is None:
        total = _zeros_like_batch(stylized_features)
    terms["total_content_loss"] = total
    return total, terms


def style_loss(style_grams, stylized_features, style_weights=None, style_coefficients=None,
               normalization="magenta"):
    """Per-example style loss.

    Args:
      style_grams: dict {end point: float [B, C, C]} target Gram matrix per example
        (e.g. from gather_style_grams), or [C, C] / [1, C, C] for one shared style.
      stylized_features: dict {end point: float [B, h, w, C]} of the stylized images.
      style_weights: {end point: float}; defaults to DEFAULT_STYLE_WEIGHTS.
      style_coefficients: optional float [B]: per-example factor on every style
        weight (Magenta's per-style `style_coefficients`, gathered by each example's
        style; see gather_style_coefficients). None means 1.
      normalization: "magenta" or "johnson" (mean over (c, c') of the squared
        difference of position-normalised Grams), or "gatys" (1/(4 N^2 M^2) of the sum
        over unnormalised Grams), or "relative" (||G - A||^2 / ||A||^2). Targets are
        position-normalised (gram_matrix) in every case.

    Returns:
      (total float32 [B], terms) where terms maps `style_loss/<name>`,
      `weighted_style_loss/<name>` and `total_style_loss` to float32 [B].
    """
    style_weights = config.validate_layer_weights(
        DEFAULT_STYLE_WEIGHTS if style_weights is None else style_weights, "style weights")
    coefficients = (None if style_coefficients is None
                    else tf.cast(style_coefficients, tf.float32))
    _check_normalization(normalization)
    terms = {}
    total = None
    for name, weight in style_weights.items():
        target = tf.cast(style_grams[name], tf.float32)
        squared = tf.square(gram_matrix(stylized_features[name]) - target)
        if normalization == "gatys":
            # sum((G - A)^2) / (4 N^2 M^2) with G = M * (G/M): the M^2 cancels, which
            # keeps float32 away from the huge unnormalised Gram entries.
            loss = tf.reduce_mean(squared, axis=[1, 2]) / 4.0
        elif normalization == "relative":
            target_norm = tf.reduce_sum(tf.square(target), axis=[-2, -1])
            loss = tf.math.divide_no_nan(tf.reduce_sum(squared, axis=[1, 2]), target_norm)
        else:
            loss = tf.reduce_mean(squared, axis=[1, 2])
        weighted = weight * loss if coefficients is None else weight * coefficients * loss
        terms[f"style_loss/{name}"] = loss
        terms[f"weighted_style_loss/{name}"] = weighted
        total = weighted if total is None else total + weighted
    if total is None:
        total = _zeros_like_batch(stylized_features)
    terms["total_style_loss"] = total
    return total, terms


def total_variation_loss(images):
    """Per-example total variation, Magenta's formula (unweighted).

    Args:
      images: float [B, H, W, C], H and W >= 2.

    Returns:
      float32 [B]: (sum(dy^2) / 2) / ((H-1) W C) + (sum(dx^2) / 2) / (H (W-1) C);
      its batch mean is Magenta's `total_variation_loss`.
    """
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    height, width, channels = shape[1], shape[2], shape[3]
    y_size = tf.cast((height - 1) * width * channels, tf.float32)
    x_size = tf.cast(height * (width - 1) * channels, tf.float32)
    dy = images[:, 1:, :, :] - images[:, :-1, :, :]
    dx = images[:, :, 1:, :] - images[:, :, :-1, :]
    y_loss = 0.5 * tf.reduce_sum(tf.square(dy), axis=[1, 2, 3]) / y_size
    x_loss = 0.5 * tf.reduce_sum(tf.square(dx), axis=[1, 2, 3]) / x_size
    return y_loss + x_loss


def total_loss(content_features, stylized_features, style_grams, content_weights=None,
               style_weights=None, style_coefficients=None, stylized_images=None,
               total_variation_weight=DEFAULT_TOTAL_VARIATION_WEIGHT, normalization="magenta"):
    """Content + style (+ total variation) loss, per example, with Magenta's term names.

    Args:
      content_features: dict {end point: float [B, h, w, C]} of the content images
        (needs the content weights' end points).
      stylized_features: same, of the stylized images (needs content and style
        weights' end points).
      style_grams: dict {end point: float [B, C, C]} target Grams per example (or
        [C, C] shared), for the style weights' end points.
      content_weights: {end point: float}; default DEFAULT_CONTENT_WEIGHTS.
      style_weights: {end point: float}; default DEFAULT_STYLE_WEIGHTS.
      style_coefficients: optional float [B] per-example factor on the style weights.
      stylized_images: float [B, H, W, 3] in [0, 1]; needed when
        total_variation_weight != 0. When given, the total variation terms are
        reported even with weight 0.
      total_variation_weight: float >= 0 (Magenta's trainer uses none: 0).
      normalization: one of NORMALIZATIONS, for the content and style terms.

    Returns:
      (total float32 [B], terms): every value in `terms` is float32 [B], one per
      example: `content_loss/<l>`, `weighted_content_loss/<l>`, `style_loss/<l>`,
      `weighted_style_loss/<l>`, `total_content_loss`, `total_style_loss`,
      `total_variation_loss` and `weighted_total_variation_loss` (only when
      stylized_images is given), `total_loss`. `batch_means(terms)` gives the
      scalars Magenta logs.

    Raises:
      LossWeightsError: bad weights.
      ValueError: total_variation_weight != 0 without stylized_images, or negative.
    """
    if not math.isfinite(total_variation_weight) or total_variation_weight < 0:
        raise ValueError(
            f"total_variation_weight must be finite and >= 0, got {total_variation_weight}")
    if total_variation_weight and stylized_images is None:
        raise ValueError("total_variation_weight != 0 needs stylized_images")
    content_total, terms = content_loss(content_features, stylized_features, content_weights,
                                        normalization)
    style_total, style_terms = style_loss(style_grams, stylized_features, style_weights,
                                          style_coefficients, normalization)
    terms.update(style_terms)
    total = content_total + style_total
    if stylized_images is not None:
        tv = total_variation_loss(stylized_images)
        if total_variation_weight:
            weighted_tv = float(total_variation_weight) * tv
            total = total + weighted_tv
        else:
            # Reported only, kept out of the total: the backward pass then skips its four
            # full-size slice gradients (7 ms of a 1.1 s CPU training step at 256 px).
            weighted_tv = tf.zeros_like(tv)
        terms["total_variation_loss"] = tv
        terms["weighted_total_variation_loss"] = weighted_tv
    terms["total_loss"] = total
    return total, terms


def batch_means(terms):
    """Reduces per-example terms to the batch means Magenta logs.

    Args:
      terms: dict {name: float [B]}.

    Returns:
      dict {name: float32 scalar}.
    """
    return {name: tf.reduce_mean(value) for name, value in terms.items()}


def gather_style_grams(style_gram_table, labels):
    """Selects each example's target Grams from a per-style table.

    Args:
      style_gram_table: dict {end point: float [num_styles, C, C]}.
      labels: int [B] style index of each example.

    Returns:
      dict {end point: float32 [B, C, C]}.
    """
    return {name: tf.gather(tf.cast(table, tf.float32), labels)
            for name, table in style_gram_table.items()}


def gather_style_coefficients(style_coefficients, labels):
    """Per-example style coefficients from Magenta's per-style list.

    Args:
      style_coefficients: sequence or float [num_styles]; scales the style weights of
        each style.
      labels: int [B] style index of each example.

    Returns:
      float32 [B].
    """
    return tf.gather(tf.cast(style_coefficients, tf.float32), labels)


def _zeros_like_batch(features):
    any_features = next(iter(features.values()))
    return tf.zeros(tf.shape(any_features)[:1], tf.float32)


# The weight-bias-ratio loss's epsilon: "a very small positive number so that the
# denominator is not 0" (BOE CN109426858B eq. 1).
WEIGHT_BIAS_RATIO_EPSILON = 1e-8


def weight_bias_ratio(kernels, biases, mode="elementwise", epsilon=WEIGHT_BIAS_RATIO_EPSILON):
    """The BOE patent's weight-bias-ratio loss L_L1 = W / (B + epsilon) (its claims).

    B is the mean absolute bias over every bias scalar. W has two readings of the text:
      - "elementwise" (the claims: "average of the absolute values of all kernels"):
        mean |w| over every kernel scalar;
      - "kernel_sum" (the description: "w is the sum of the 2x2 kernel's elements"):
        the mean over 2-D kernels (one per input/output channel pair) of |sum of its
        elements|. Zero-mean kernels drive it to 0 without shrinking, so it is not the
        default.

    Args:
      kernels: list of float tensors [kh, kw, a, b] (conv or transposed-conv kernels).
      biases: list of float tensors [n].
      mode: "elementwise" or "kernel_sum".
      epsilon: float > 0.

    Returns:
      (ratio, W, B): float32 scalars. Differentiable in every kernel and bias.

    Raises:
      ValueError: no kernels or no biases (e.g. the Magenta generator, whose convs
        have none), or an unknown mode.
    """
    if not kernels or not biases:
        raise ValueError("the weight-bias ratio needs convolution kernels and biases; this "
                         "generator has none")
    if mode == "elementwise":
        sums = [tf.reduce_sum(tf.abs(tf.cast(k, tf.float32))) for k in kernels]
        counts = [_size(k.shape) for k in kernels]
    elif mode == "kernel_sum":
        sums = [tf.reduce_sum(tf.abs(tf.reduce_sum(tf.cast(k, tf.float32), axis=[0, 1])))
                for k in kernels]
        counts = [_size(k.shape[2:]) for k in kernels]
    else:
        raise ValueError(f"weight_bias_ratio mode must be elementwise or kernel_sum, got {mode!r}")
    w = tf.add_n(sums) / float(sum(counts))
    b = (tf.add_n([tf.reduce_sum(tf.abs(tf.cast(v, tf.float32))) for v in biases])
         / float(sum(_size(v.shape) for v in biases)))
    return w / (b + epsilon), w, b


def _size(shape):
    return math.prod(int(d) for d in shape)
