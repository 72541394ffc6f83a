"""Tests for magenta_style.media.color.preserve_colors."""
import numpy as np
import pytest
import tensorflow as tf

from magenta_style.media import color


def _images(seed, shape=(2, 8, 12, 3)):
    return tf.random.stateless_uniform(shape, seed=[seed, 0])


def test_takes_stylized_luma_and_content_chroma():
    content, stylized = _images(1), _images(2)
    out = color.preserve_colors(content, stylized)
    assert out.shape == content.shape and out.dtype == tf.float32
    assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
    yuv = tf.image.rgb_to_yuv(out).numpy()
    content_yuv = tf.image.rgb_to_yuv(content).numpy()
    stylized_yuv = tf.image.rgb_to_yuv(stylized).numpy()
    combined = tf.image.yuv_to_rgb(
        np.concatenate([stylized_yuv[..., :1], content_yuv[..., 1:]], -1)).numpy()
    # Where the combination is inside the RGB cube, clipping does nothing.
    unclipped = np.all((combined >= 0) & (combined <= 1), axis=-1)
    assert unclipped.mean() > 0.3  # Enough pixels to check exactly.
    np.testing.assert_allclose(yuv[..., 0][unclipped], stylized_yuv[..., 0][unclipped],
                               atol=1e-5)
    np.testing.assert_allclose(yuv[..., 1:][unclipped], content_yuv[..., 1:][unclipped],
                               atol=1e-5)


def test_identity_when_stylized_is_content():
    content = _images(3)
    np.testing.assert_allclose(color.preserve_colors(content, content), content, atol=1e-5)


def test_grey_content_gives_grey_output():
    grey = tf.repeat(_images(4, (1, 6, 6, 1)), 3, axis=-1)
    out = color.preserve_colors(grey, _images(5, (1, 6, 6, 3))).numpy()
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-5)
    np.testing.assert_allclose(out[..., 1], out[..., 2], atol=1e-5)


def test_works_in_a_graph_with_unknown_shapes():
    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    fn = tf.function(color.preserve_colors, input_signature=[spec, spec])
    content, stylized = _images(6), _images(7)
    np.testing.assert_allclose(fn(content, stylized), color.preserve_colors(content, stylized),
                               atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="same shape"):
        fn(content, _images(8, (2, 8, 10, 3)))


def test_unbatched_and_shape_errors():
    content, stylized = _images(9, (5, 7, 3)), _images(10, (5, 7, 3))
    assert color.preserve_colors(content, stylized).shape == (5, 7, 3)
    with pytest.raises(ValueError, match="differ in shape"):
        color.preserve_colors(content, _images(11, (5, 8, 3)))
    with pytest.raises(ValueError, match="3 channels"):
        color.preserve_colors(_images(12, (5, 7, 4)), _images(13, (5, 7, 4)))
