"""RGB <-> YUV conversions, and colour preservation built on them.

One linear conversion (`rgb_to_yuv` / `yuv_to_rgb`) with two standards, each a 3x3
forward matrix whose inverse is computed exactly (float64, then rounded once):

- "bt601": analog BT.601 YUV with the full-precision luma weights 0.299/0.587/0.114,
  the same forward matrix as `tf.image.rgb_to_yuv`. Colour preservation uses it: it
  is the standard luminance of luminance-only style transfer, and keeping it keeps
  preserve_colors' results what they were (to 1e-6; tf.image's rounded inverse is
  replaced by the exact one).
- "boe": the BOE patent's (CN109426858B) first conversion matrix, corrected (see
  docs/boe.md): the printed matrix is singular (its V row is
  -0.877 * Y); the rows are BT.601's with the patent's rounded luma 0.30/0.59/0.11,
  U = 0.493 (B - Y), V = 0.877 (R - Y), det 0.2551. The patent's second matrix was
  lost; its exact inverse is used. The BOE generator (boe.py) converts with it, so
  that the sub-networks see the patent's channels.

Both standards have Y = R = G = B and U = V = 0 on the grey axis.

Colour preservation: the stylized image's luma (Y of BT.601 YUV) is combined with the content image's chroma (U, V), then converted back to RGB and
clipped to [0, 1]. This is the "original colors" post-process of luminance-only
style transfer (Gatys et al., "Preserving Color in Neural Artistic Style Transfer",
2016): the strokes and textures of the style survive, its palette does not.

Only TensorFlow ops are used, so the function works eagerly, inside tf.function and
in an exported SavedModel.
"""
import numpy as np
import tensorflow as tf

# Rows: Y, U, V as weights of R, G, B.
BT601_RGB_TO_YUV = ((0.299, 0.587, 0.114),
                    (-0.14714119, -0.28886916, 0.43601035),
                    (0.61497538, -0.51496512, -0.10001026))
_BOE_LUMA = (0.30, 0.59, 0.11)
BOE_RGB_TO_YUV = (_BOE_LUMA,
                  tuple(0.493 * (b - y) for b, y in zip((0.0, 0.0, 1.0), _BOE_LUMA)),
                  tuple(0.877 * (r - y) for r, y in zip((1.0, 0.0, 0.0), _BOE_LUMA)))
YUV_STANDARDS = {"bt601": BT601_RGB_TO_YUV, "boe": BOE_RGB_TO_YUV}


def conversion_matrices(standard):
    """(rgb_to_yuv, yuv_to_rgb) float64 numpy [3, 3] of `standard`; rows are outputs.

    The inverse is numpy's exact float64 inverse of the forward matrix, so a float32
    round trip is exact to float32 rounding (about 1e-7), not to a printed
    coefficient's last digit.
    """
    if standard not in YUV_STANDARDS:
        raise ValueError(f"unknown YUV standard {standard!r}; one of {sorted(YUV_STANDARDS)}")
    forward = np.asarray(YUV_STANDARDS[standard], np.float64)
    return forward, np.linalg.inv(forward)


def _linear(images, matrix):
    """images [..., 3] times `matrix` [3, 3] (rows are outputs), in images' dtype."""
    images = tf.convert_to_tensor(images)
    kernel = tf.constant(np.asarray(matrix).T, images.dtype)
    return tf.tensordot(images, kernel, axes=[[images.shape.rank - 1], [0]])


def rgb_to_yuv(rgb, standard="bt601"):
    """RGB [..., 3] -> YUV [..., 3] (same dtype); linear, so any range maps (grey -> U=V=0)."""
    return _linear(rgb, conversion_matrices(standard)[0])


def yuv_to_rgb(yuv, standard="bt601"):
    """YUV [..., 3] -> RGB [..., 3], the exact inverse of `rgb_to_yuv` for `standard`."""
    return _linear(yuv, conversion_matrices(standard)[1])


def preserve_colors(content, stylized):
    """Returns the stylized image recoloured with the content image's chroma.

    Args:
      content: float32 [B, H, W, 3] (or [H, W, 3]) RGB in [0, 1], the image that
        was stylized.
      stylized: float32 of the same shape, RGB in [0, 1], the network's output.

    Returns:
      float32 of the same shape, RGB in [0, 1]: luma of `stylized`, chroma of
      `content`. A grey content image gives a grey result.

    Raises:
      ValueError: when the static shapes differ or the last axis is not 3.
      tf.errors.InvalidArgumentError: when dynamic shapes differ (graph mode).
    """
    content = tf.convert_to_tensor(content, tf.float32)
    stylized = tf.convert_to_tensor(stylized, tf.float32)
    if content.shape[-1] is not None and content.shape[-1] != 3:
        raise ValueError(f"content must have 3 channels, got shape {content.shape}")
    if not content.shape.is_compatible_with(stylized.shape):
        raise ValueError(f"content {content.shape} and stylized {stylized.shape} differ in shape")
    with tf.control_dependencies([tf.debugging.assert_equal(
            tf.shape(content), tf.shape(stylized),
            message="content and stylized images must have the same shape")]):
        content_yuv = rgb_to_yuv(content)
    stylized_yuv = rgb_to_yuv(stylized)
    combined = tf.concat([stylized_yuv[..., :1], content_yuv[..., 1:]], axis=-1)
    return tf.clip_by_value(yuv_to_rgb(combined), 0.0, 1.0)
