"""Style images for the arbitrary-style model: `--style_images`, `--style_mix` and binding.

`expand(text)` turns `--style_images` (a comma-separated list of files, folders and
quoted globs) into files in the order given, each folder's or glob's files sorted by
name: that order indexes `--style_mix` and style maps. `bind` predicts each image's
style bottleneck once and returns an arbitrary.StyleImageModel, which the one inference
path (stylizer.py) then uses as it uses an N-style network with S styles.
"""
import dataclasses
import os

import numpy as np
import tensorflow as tf

from magenta_style import config
from magenta_style.data import style_dataset
from magenta_style.inference import style_spec
from magenta_style.media import images
from magenta_style.networks import arbitrary
from magenta_style.networks import inception_v3


class StyleImagesError(ValueError):
    """`--style_images` / `--style_mix` cannot be used; the message is one line."""


def is_arbitrary(model_config):
    """True when `model_config` describes Magenta's arbitrary-style model."""
    return model_config.generator == config.ARBITRARY


def check_size(style_image_size):
    """Refuses a --style_image_size the style predictor cannot take (0, as given, passes:
    each image is then checked as it is read).

    Raises:
      StyleImagesError: 0 < style_image_size < inception_v3.MIN_INPUT_SIZE.
    """
    if 0 < style_image_size < inception_v3.MIN_INPUT_SIZE:
        raise StyleImagesError(
            f"--style_image_size={style_image_size}: the style predictor needs at least "
            f"{inception_v3.MIN_INPUT_SIZE} px on each side (0 keeps each style image's size)")


def expand(text):
    """Files of `--style_images`, in order: list of str (never empty).

    Raises:
      StyleImagesError: an empty entry, or one that matches no image.
    """
    entries = [e.strip() for e in (text or "").split(",")]
    if not text or not all(entries):
        raise StyleImagesError(f"--style_images={text!r}: give comma-separated files, folders "
                               "or quoted globs (no empty entries)")
    files = []
    for entry in entries:
        try:
            files.extend(images.expand_inputs(entry))
        except images.ImageError as e:
            raise StyleImagesError(f"--style_images: {e}") from None
    return files


def parse_mix(text, count):
    """`--style_mix=0.7,0.3` -> a mix StyleSpec over `count` style images (weights
    normalized to sum to 1).

    Raises:
      StyleImagesError: not `count` non-negative numbers with a positive sum.
    """
    try:
        weights = [float(v) for v in text.split(",")]
    except ValueError:
        raise StyleImagesError(f"--style_mix={text!r}: give comma-separated numbers") from None
    if len(weights) != count:
        raise StyleImagesError(f"--style_mix={text!r} has {len(weights)} weight(s) for "
                               f"{count} style image(s)")
    if not all(np.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise StyleImagesError(f"--style_mix={text!r}: weights must be >= 0 with a positive "
                               "sum")
    total = sum(weights)
    pairs = [(i, w / total) for i, w in enumerate(weights) if w > 0]
    return style_spec.StyleSpec(kind="mix", styles=tuple(i for i, _ in pairs),
                                weights=tuple(w for _, w in pairs), text=text)


def load(paths, style_image_size=arbitrary.DEFAULT_STYLE_IMAGE_SIZE, max_pixels=None):
    """Reads and prepares style images: list of float32 [1, h, w, 3] in [0, 1].

    Each is resized so that its shorter side is `style_image_size` (0: as given),
    as Magenta prepares style images (arbitrary.prepare_style_image).

    Raises:
      StyleImagesError: unreadable, above `max_pixels`, or too small for the predictor.
    """
    prepared = []
    for path in paths:
        try:
            rgb, _ = images.load_image(path, max_pixels=max_pixels or images.DEFAULT_MAX_PIXELS)
        except images.ImageError as e:
            raise StyleImagesError(f"--style_images: {e}") from None
        image = arbitrary.prepare_style_image(rgb[None], style_image_size)
        try:
            arbitrary.check_style_size(int(image.shape[1]), int(image.shape[2]), path)
        except arbitrary.StyleImageError as e:
            raise StyleImagesError(f"--style_images: {e}") from None
        prepared.append(image)
    return prepared


def bottlenecks(network, prepared):
    """float32 numpy [S, bottleneck]: each prepared style image's bottleneck."""
    return np.concatenate([network.predict_style(tf.convert_to_tensor(p)).numpy()
                           for p in prepared])


def bind(network, model_config, paths, style_image_size=arbitrary.DEFAULT_STYLE_IMAGE_SIZE,
         strength_mode="magenta", max_pixels=None):
    """The arbitrary network bound to style image files, as an S-style model.

    Args:
      network: arbitrary.ArbitraryStyleNetwork.
      model_config: its ModelConfig (generator "arbitrary").
      paths: style image files (see `expand`).
      style_image_size: shorter side of each style image (and of the content fed as its
        own style for Magenta strength); 0: as given.
      strength_mode: see arbitrary.STRENGTH_MODES.
      max_pixels: cap on each style image file's pixels.

    Returns:
      (arbitrary.StyleImageModel, ModelConfig with num_styles = len(paths) and the
      file stems as style names, style_dataset.default_style_names).

    Raises:
      StyleImagesError: an image cannot be used.
    """
    prepared = load(paths, style_image_size, max_pixels)
    model = arbitrary.StyleImageModel(network, bottlenecks(network, prepared), style_image_size,
                                      strength_mode)
    return model, _bound_config(model_config, paths)


def rebind(model, model_config, paths, max_pixels=None, names=None):
    """A bound model (`bind`) bound to other style image files instead.

    Its transformer is shared, so a bfloat16 copy (transformer.with_compute_dtype)
    stays bfloat16; the style image size and strength mode are kept. `names` (file
    names, e.g. of uploads whose server copies have other names) give the style names
    instead of `paths`.

    Returns:
      (arbitrary.StyleImageModel, ModelConfig), as `bind`.

    Raises:
      StyleImagesError: an image cannot be used.
    """
    prepared = load(paths, model.style_image_size, max_pixels)
    return (model.with_bottlenecks(bottlenecks(model.network, prepared)),
            _bound_config(model_config, names or paths))


def _bound_config(model_config, paths):
    return dataclasses.replace(model_config, num_styles=len(paths),
                               style_names=tuple(style_dataset.default_style_names(paths)))
