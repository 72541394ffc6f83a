"""The training objective: Magenta's losses of a generator's output, per example.

`Objective` holds what the loss needs besides the batch (the generator, the frozen
VGG loss network, the style dataset's Gram matrices and the loss weights) and
computes every term a training step reports, under Magenta's names. The trainer
(train_step.Trainer) differentiates it; evaluation (evaluate_lib) reports it per
style. Neither owns the other: evaluation needs no optimizer.

Numerics are Magenta's: content + style loss from VGG-16 features, each example
against its own style's Gram matrices, style weights scaled per example by
`style_coefficients`, plus total variation; then the optional terms: stability (the
output's change under input noise) and BOE's weight-bias ratio.

The arbitrary generator (networks/arbitrary.py; `style_grams` None) is Magenta's
`arbitrary_image_stylization_losses.total_loss`: each example's Gram targets come from
its own style image, through VGG in the graph, and the network runs in training mode
(batch statistics in InceptionV3 and the contract layers, moving averages updated).
"""
import numpy as np
import tensorflow as tf

from magenta_style.networks import losses

# The weight-bias-ratio terms, reported for every generator with conv biases (BOE).
WEIGHT_BIAS_TERMS = ("weight_bias_ratio/W", "weight_bias_ratio/B", "weight_bias_ratio_loss",
                     "weighted_weight_bias_ratio_loss")


def loss_term_names(loss_config, with_weight_bias=False):
    """Names of the batch-mean terms a step reports (Magenta's names + ours), sorted."""
    names = []
    for name, _ in loss_config.content_weights:
        names += [f"content_loss/{name}", f"weighted_content_loss/{name}"]
    names.append("total_content_loss")
    for name, _ in loss_config.style_weights:
        names += [f"style_loss/{name}", f"weighted_style_loss/{name}"]
    names += ["total_style_loss", "total_variation_loss", "weighted_total_variation_loss"]
    if loss_config.stability_weight > 0:
        names += ["stability_loss", "weighted_stability_loss"]
    if with_weight_bias:
        names += list(WEIGHT_BIAS_TERMS)
    names.append("total_loss")
    return sorted(names)


def needs_conv_end_points(loss_config):
    """True when a loss weight names a single convolution (vgg_16/conv4/conv4_2)."""
    return any(name.count("/") == 2
               for name, _ in loss_config.content_weights + loss_config.style_weights)


class Objective:
    """Magenta's per-example losses of a generator, against a style dataset's Grams.

    Build it inside `strategy.scope()` when it is used in a distributed step: the
    Gram matrices become replicated variables. TensorFlow ops only (no numpy at call
    time), so a step calling it compiles for TPU.

    Args:
      model: a generator (generators.build; num_styles S).
      vgg_net: vgg.VGG16Features or VGG19Features, frozen.
      style_grams: dict {end point: float32 [K, C, C]}, the style dataset's Grams
        (K dataset styles); None for the arbitrary generator (Grams of the batch's
        style images).
      loss_config: config.LossConfig (weights, coefficients, total variation,
        stability and weight-bias settings).
      label_offset: model style id of the dataset's style 0 (add_styles).

    Attributes:
      with_weight_bias: the generator has conv biases (BOE): the weight-bias terms
        are reported, also when their weight is 0.
      term_names: sorted names of every term `per_example_losses` returns.
    """

    def __init__(self, model, vgg_net, style_grams, loss_config, label_offset=0):
        self.model = model
        self.vgg = vgg_net
        self.loss_config = loss_config
        self.label_offset = int(label_offset)
        self.content_weights = dict(loss_config.content_weights)
        self.style_weights = dict(loss_config.style_weights)
        self.arbitrary = style_grams is None
        if self.arbitrary:
            self.style_grams = self.style_coefficients = None
        else:
            num_dataset_styles = int(next(iter(style_grams.values())).shape[0])
            # Frozen, replicated, never checkpointed: the targets of the style loss.
            self.style_grams = {
                name: tf.Variable(np.asarray(style_grams[name], np.float32), trainable=False,
                                  name=f"grams_{name.replace('/', '_')}")
                for name in self.style_weights}
            coefficients = loss_config.style_coefficients or (1.0,) * num_dataset_styles
            self.style_coefficients = tf.constant(coefficients, tf.float32)
        # W, B and L_L1 are logged for every generator with conv biases, also at chi = 0.
        self.with_weight_bias = hasattr(model, "kernels_and_biases")
        self.term_names = loss_term_names(loss_config, with_weight_bias=self.with_weight_bias)

    def per_example_losses(self, images, labels, noise=None, style_images=None,
                           training=True):
        """Magenta's losses for a batch, per example.

        Args:
          images: float32 [B, H, W, 3] in [0, 1], content images.
          labels: int32 [B], model style ids (dataset style + label_offset); ignored by
            the arbitrary generator.
          noise: float32 [B, H, W, 3] input noise for the stability term, or None.
          style_images: the arbitrary generator's: float32 [B, Hs, Ws, 3] in [0, 1],
            example b's style image (Hs, Ws >= 43).
          training: the arbitrary generator's batch norms: batch statistics (and
            moving-average updates) when True, the moving statistics when False.

        Returns:
          (total float32 [B], terms {name: float32 [B]}) with Magenta's names,
          plus `stability_loss` / `weighted_stability_loss` when the weight is > 0.
        """
        if self.arbitrary:
            if style_images is None:
                raise ValueError("the arbitrary generator's losses need the style images")
            bottlenecks = self.model.predict_style(style_images, training=training)

            def stylize(content):
                return self.model.transfer(content, bottlenecks, training=training)

            # No gradient reaches the targets: nothing trainable feeds them.
            style_features = self.vgg(style_images)
            grams = {name: losses.gram_matrix(style_features[name])
                     for name in self.style_weights}
            coefficients = None
        else:
            def stylize(content):
                return self.model(content, labels)

            dataset_labels = labels - self.label_offset
            grams = losses.gather_style_grams(self.style_grams, dataset_labels)
            coefficients = losses.gather_style_coefficients(self.style_coefficients,
                                                            dataset_labels)
        stylized = stylize(images)
        # Two VGG calls, as Magenta makes them, rather than one on the concatenated batch:
        # nothing trainable feeds the content branch, so the tape records none of it and
        # the backward pass runs through VGG for the stylized half only (one concatenated
        # call would backpropagate through both halves: ~25% more work per step).
        content_features = self.vgg(images)
        stylized_features = self.vgg(stylized)
        total, terms = losses.total_loss(
            content_features, stylized_features, grams, self.content_weights,
            self.style_weights, coefficients, stylized_images=stylized,
            total_variation_weight=self.loss_config.total_variation_weight)
        if self.loss_config.stability_weight > 0:
            if noise is None:
                raise ValueError("stability_weight > 0 needs the batch's noise")
            noisy = tf.clip_by_value(images + noise, 0.0, 1.0)
            change = tf.reduce_mean(tf.square(stylize(noisy) - stylized),
                                    axis=[1, 2, 3])
            weighted = self.loss_config.stability_weight * change
            terms["stability_loss"] = change
            terms["weighted_stability_loss"] = weighted
            total = total + weighted
            terms["total_loss"] = total
        if self.with_weight_bias:
            # A term of the parameters, not of the examples: added to every example's
            # total, so the global-batch mean (and hence every strategy) counts it once.
            ratio, w, b = losses.weight_bias_ratio(*self.model.kernels_and_biases(),
                                                   mode=self.loss_config.weight_bias_ratio_mode)
            weighted = self.loss_config.weight_bias_ratio_weight * ratio
            ones = tf.ones_like(total)
            for name, value in zip(WEIGHT_BIAS_TERMS, (w, b, ratio, weighted)):
                terms[name] = value * ones
            total = total + weighted * ones
            terms["total_loss"] = total
        return total, terms
