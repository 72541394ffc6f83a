"""Colour preservation: keep the content image's colours, take the stylized luminance.

The stylized image's luma (Y of YUV, BT.601 weights as in `tf.image.rgb_to_yuv`) is
combined with the content image's chroma (U, V), then converted back to RGB and
clipped to [0, 1]. This is the "original colors" post-process of luminance-only
style transfer (Gatys et al., "Preserving Color in Neural Artistic Style Transfer",
2016): the strokes and textures of the style survive, its palette does not.

Only TensorFlow ops are used, so the function works eagerly, inside tf.function and
in an exported SavedModel.
"""
import tensorflow as tf


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
        content_yuv = tf.image.rgb_to_yuv(content)
    stylized_yuv = tf.image.rgb_to_yuv(stylized)
    combined = tf.concat([stylized_yuv[..., :1], content_yuv[..., 1:]], axis=-1)
    return tf.clip_by_value(tf.image.yuv_to_rgb(combined), 0.0, 1.0)
