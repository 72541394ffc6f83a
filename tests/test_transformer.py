"""Unit tests for magenta_style.networks.transformer: architecture, sizes, parameter counts."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from magenta_style import config
from magenta_style.networks import transformer


def _model(num_styles=2, alpha=0.25, **kwargs):
    return transformer.build_transformer(config.ModelConfig(num_styles, alpha), **kwargs)


def _randomize_gammas(model, seed):
    """Makes the styles differ (freshly built tables are all ones and zeros)."""
    for v in model.weights:
        if v.path.endswith("/gamma"):
            v.assign(tf.random.stateless_normal(v.shape, seed=[seed, 1]))


# Conv weights: 9*9*3*w1 + 9*w1*w2 + 9*w2*w3 + 10*9*w3*w3 + 9*w3*w2 + 9*w2*w1 + 9*9*w1*3;
# instance norm: 2 * num_styles * (w1 + w2 + w3 + 10*w3 + w2 + w1 + 3).
@pytest.mark.parametrize("alpha,num_styles,expected", [
    (0.25, 1, 108374), (0.25, 32, 133360),
    (0.5, 3, 427314), (0.5, 10, 438556),
    (1.0, 1, 1677638), (1.0, 10, 1706492), (1.0, 32, 1777024),
])
def test_parameter_counts(alpha, num_styles, expected):
    model = _model(num_styles, alpha)
    w1, w2, w3 = transformer.layer_widths(alpha)
    conv = 81 * 3 * w1 + 9 * w1 * w2 + 9 * w2 * w3 + 90 * w3 * w3 + 9 * w3 * w2 + 9 * w2 * w1 + 81 * w1 * 3
    norm = 2 * num_styles * (2 * w1 + 2 * w2 + 11 * w3 + 3)
    assert conv + norm == expected
    assert model.count_params() == expected


def test_layer_widths_follow_int_alpha_times_n():
    assert transformer.layer_widths(1.0) == (32, 64, 128)
    assert transformer.layer_widths(0.3) == (9, 19, 38)


def test_weight_names_mirror_magenta_scopes():
    names = transformer.weight_names(_model(2, 0.25))
    assert len(names) == 48
    assert names[:3] == ["contract_conv1/InstanceNorm/beta", "contract_conv1/InstanceNorm/gamma",
                         "contract_conv1/weights"]
    assert "residual5/conv2/weights" in names
    assert "expand_conv3/conv/InstanceNorm/gamma" in names
    assert not any("bias" in n for n in names)


@pytest.mark.parametrize("height,width", [(1, 1), (2, 3), (5, 7), (16, 16), (17, 9), (33, 64)])
def test_output_has_input_size_and_range(height, width):
    model = _model()
    images = tf.random.stateless_uniform([2, height, width, 3], seed=[height, width])
    out = model(images, tf.constant([0, 1]))
    assert out.shape == (2, height, width, 3)
    assert out.dtype == tf.float32
    assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0


def test_padding_does_not_change_multiple_of_four_sizes():
    model = _model()
    compat = transformer.StyleTransferNetwork(2, 0.25, magenta_compatible=True)
    compat(tf.zeros([1, 16, 16, 3]), tf.zeros([1], tf.int32))
    compat.set_weights(model.get_weights())
    images = tf.random.stateless_uniform([1, 24, 32, 3], seed=[1, 2])
    np.testing.assert_array_equal(model(images, tf.constant([1])).numpy(),
                                  compat(images, tf.constant([1])).numpy())
    # Magenta's own (larger) output size for sizes that are not multiples of 4.
    assert compat(tf.zeros([1, 93, 129, 3]), tf.constant([0])).shape == (1, 96, 132, 3)


def test_styles_change_the_output():
    model = _model(2)
    _randomize_gammas(model, seed=0)
    images = tf.random.stateless_uniform([1, 16, 16, 3], seed=[4, 4])
    a = model(images, tf.constant([0])).numpy()
    b = model(images, tf.constant([1])).numpy()
    assert np.abs(a - b).max() > 1e-3


def test_style_ids_out_of_range_are_refused_eagerly_and_traced():
    model = _model(2)
    images = tf.zeros([1, 16, 16, 3])
    traced = tf.function(lambda x, ids: model(x, ids), input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None], tf.int32)])
    for call in (model, traced):
        assert call(images, tf.constant([1])).shape == (1, 16, 16, 3)
        for bad in (2, -1):
            with pytest.raises(tf.errors.InvalidArgumentError,
                               match=r"style id must be >= 0 and < num_styles \(2\)"):
                call(images, tf.constant([bad]))


def test_tf_function_with_unknown_size_does_not_retrace():
    model = _model()
    fn = tf.function(lambda x, w: model(x, w), input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32), tf.TensorSpec([None, 2], tf.float32)])
    for h, w in [(8, 8), (13, 21), (40, 9)]:
        assert fn(tf.zeros([1, h, w, 3]), tf.constant([[1.0, 0.0]])).shape == (1, h, w, 3)
    assert fn.experimental_get_tracing_count() == 1


def test_model_config_round_trip():
    model = _model(3, 0.5)
    cfg = model.get_config()
    assert (cfg["num_styles"], cfg["alpha"], cfg["magenta_compatible"]) == (3, 0.5, False)
    json.dumps(cfg)
    clone = transformer.StyleTransferNetwork.from_config(cfg)
    assert clone.num_styles == 3 and clone.alpha == 0.5
    assert keras.saving.get_registered_object(
        "magenta_style>StyleTransferNetwork") is transformer.StyleTransferNetwork


def test_mixed_precision_forward_is_float32_and_close():
    keras.utils.set_random_seed(0)
    model = _model()
    images = tf.random.stateless_uniform([1, 16, 16, 3], seed=[5, 6])
    ref = model(images, tf.constant([1])).numpy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = transformer.StyleTransferNetwork(2, 0.25)
        mixed(images, tf.constant([1]))
        mixed.set_weights(model.get_weights())
        out = mixed(images, tf.constant([1]))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out.dtype == tf.float32
    # bfloat16 keeps 8 mantissa bits; measured mean |diff| 0.006-0.010, max 0.03-0.06.
    diff = np.abs(out.numpy() - ref)
    assert diff.mean() < 0.02 and diff.max() < 0.15, (diff.mean(), diff.max())


def test_style_map_selects_styles_by_region_at_odd_sizes():
    model = _model(2)
    _randomize_gammas(model, seed=7)
    images = tf.random.stateless_uniform([1, 18, 30, 3], seed=[8, 8])
    uniform = np.zeros([1, 18, 30, 2], np.float32)
    uniform[..., 1] = 1.0
    # A map that is one style everywhere is that style (after padding to 20x32), to
    # rounding: maps are applied after the fused normalisation, ids inside it.
    np.testing.assert_allclose(model(images, uniform).numpy(),
                               model(images, tf.constant([1])).numpy(), rtol=1e-6, atol=1e-6)


def test_strength_endpoints_are_the_photo_and_the_full_style():
    model = _model(2)
    _randomize_gammas(model, seed=9)
    images = tf.random.stateless_uniform([2, 20, 12, 3], seed=[9, 9])
    ids = tf.constant([0, 1])
    full = model(images, ids).numpy()
    np.testing.assert_array_equal(model(images, ids, tf.constant([1.0, 1.0])).numpy(), full)
    np.testing.assert_allclose(model(images, ids, tf.constant([0.0, 0.0])).numpy(),
                               images.numpy(), atol=1e-6)
    half = model(images, ids, tf.constant([0.5, 0.5])).numpy()
    d_full, d_photo = np.abs(half - full).mean(), np.abs(half - images.numpy()).mean()
    assert d_full > 1e-3 and d_photo > 1e-3
    with pytest.raises(ValueError, match="magenta_compatible"):
        transformer.StyleTransferNetwork(2, 0.25, magenta_compatible=True)(
            images, ids, tf.constant([0.5, 0.5]))
