"""Unit tests for magenta_style.networks.layers (tiny shapes)."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from magenta_style.networks import layers


def _random_cin(num_styles=3, channels=4, seed=0):
    layer = layers.ConditionalInstanceNorm(num_styles)
    x = tf.random.stateless_normal([2, 5, 6, channels], seed=[seed, 1])
    layer(x, tf.constant([0, 1]))
    rng = np.random.default_rng(seed)
    layer.gamma.assign(rng.normal(size=(num_styles, channels)).astype(np.float32))
    layer.beta.assign(rng.normal(size=(num_styles, channels)).astype(np.float32))
    return layer, x


def _reference_instance_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def test_weights_are_style_tables_named_as_checkpoint_keys():
    layer, _ = _random_cin(num_styles=3, channels=4)
    assert {v.name: tuple(v.shape) for v in layer.weights} == {"beta": (3, 4), "gamma": (3, 4)}
    fresh = layers.ConditionalInstanceNorm(5)
    fresh(tf.zeros([1, 4, 4, 2]), tf.constant([4]))
    np.testing.assert_array_equal(fresh.gamma.numpy(), np.ones((5, 2)))
    np.testing.assert_array_equal(fresh.beta.numpy(), np.zeros((5, 2)))


def test_ids_match_numpy_instance_norm():
    layer, x = _random_cin()
    y = layer(x, tf.constant([2, 0])).numpy()
    g, b = layer.gamma.numpy(), layer.beta.numpy()
    expected = _reference_instance_norm(x.numpy(), g[[2, 0]][:, None, None], b[[2, 0]][:, None, None])
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_one_hot_weights_are_bit_identical_to_gathered_ids():
    layer, x = _random_cin(num_styles=4)
    ids = tf.constant([3, 1])
    by_id = layer(x, ids).numpy()
    by_weights = layer(x, tf.one_hot(ids, 4)).numpy()
    np.testing.assert_array_equal(by_id, by_weights)
    # A per-pixel map that is one-hot everywhere gives the same to rounding: maps are
    # applied after the fused normalisation, ids and weights inside it.
    maps = tf.broadcast_to(tf.one_hot(ids, 4)[:, None, None, :], [2, 5, 6, 4])
    np.testing.assert_allclose(by_id, layer(x, maps).numpy(), rtol=1e-6, atol=1e-6)


def test_per_example_mix_is_linear_in_params_and_not_normalized():
    layer, x = _random_cin(num_styles=3)
    w = np.array([[0.2, 0.0, 0.8], [1.0, 1.0, 0.0]], np.float32)  # second row sums to 2
    y = layer(x, w).numpy()
    g = w @ layer.gamma.numpy()
    b = w @ layer.beta.numpy()
    expected = _reference_instance_norm(x.numpy(), g[:, None, None], b[:, None, None])
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_per_pixel_maps_select_styles_by_region():
    layer, x = _random_cin(num_styles=2)
    left = np.zeros([2, 5, 6, 2], np.float32)
    left[:, :, :3, 0] = 1.0
    left[:, :, 3:, 1] = 1.0
    y = layer(x, left).numpy()
    y0 = layer(x, tf.constant([0, 0])).numpy()
    y1 = layer(x, tf.constant([1, 1])).numpy()
    np.testing.assert_allclose(y[:, :, :3], y0[:, :, :3], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y[:, :, 3:], y1[:, :, 3:], rtol=1e-6, atol=1e-6)


def test_strength_zero_is_plain_instance_norm_and_one_is_the_style():
    layer, x = _random_cin()
    ids = tf.constant([1, 2])
    full = layer(x, ids).numpy()
    np.testing.assert_array_equal(layer(x, ids, tf.constant([1.0, 1.0])).numpy(), full)
    plain = layer(x, ids, tf.constant([0.0, 0.0])).numpy()
    np.testing.assert_allclose(plain, _reference_instance_norm(x.numpy(), 1.0, 0.0), atol=1e-5)


def test_out_of_range_ids_fail_clearly():
    layer, x = _random_cin(num_styles=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_styles"):
        layer(x, tf.constant([0, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=">= 0"):
        layer(x, tf.constant([-1, 0]))
    fn = tf.function(lambda s: layer(x, s))
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_styles"):
        fn(tf.constant([7, 0]))


def test_wrong_number_of_styles_fails_clearly():
    layer, x = _random_cin(num_styles=3)
    with pytest.raises(ValueError, match="num_styles=3"):
        layer(x, tf.ones([2, 4]))
    with pytest.raises(ValueError, match="num_styles=3"):
        layer(x, tf.ones([2, 5, 6, 2]))
    with pytest.raises(ValueError, match="style must be"):
        layer(x, tf.ones([2, 1, 3]))


def test_statistics_stay_float32_under_mixed_precision():
    policy = keras.mixed_precision.Policy("mixed_bfloat16")
    layer = layers.ConditionalInstanceNorm(2, dtype=policy)
    # A large offset: bfloat16 statistics would lose the small variations entirely.
    x = tf.cast(1000.0 + tf.random.stateless_normal([1, 8, 8, 3], seed=[1, 2]), tf.bfloat16)
    y = layer(x, tf.constant([0]))
    assert y.dtype == tf.float32
    assert layer.gamma.dtype == "float32" and layer.compute_dtype == "float32"
    std = float(tf.math.reduce_std(tf.cast(y, tf.float32)))
    assert 0.9 < std < 1.1, std


@pytest.mark.parametrize("cls,kwargs", [
    (layers.ConditionalInstanceNorm, {"num_styles": 3, "epsilon": 1e-3}),
    (layers.ConvInstanceNorm, {"filters": 4, "kernel_size": 3, "num_styles": 2, "strides": 2,
                               "activation": "sigmoid"}),
    (layers.UpsampleConvInstanceNorm, {"filters": 4, "kernel_size": 3, "num_styles": 2,
                                       "factor": 2, "activation": None}),
    (layers.ResidualBlock, {"num_styles": 2, "kernel_size": 3}),
    (layers.NearestUpsample, {"factor": 3}),
])
def test_config_round_trip_and_registration(cls, kwargs):
    layer = cls(**kwargs, name="probe")
    config = layer.get_config()
    for key, value in kwargs.items():
        assert config[key] == value and getattr(layer, key) == value
    json.dumps(config)
    clone = cls.from_config(config)
    assert clone.get_config() == config
    registered = keras.saving.get_registered_object(f"magenta_style>{cls.__name__}")
    assert registered is cls


def test_conv_block_shapes_weights_and_reflect_padding():
    block = layers.ConvInstanceNorm(5, 3, num_styles=2, strides=2, name="conv1")
    y = block(tf.random.stateless_uniform([1, 9, 7, 3], seed=[0, 0]), tf.constant([1]))
    assert y.shape == (1, 5, 4, 5)
    assert sorted(v.path for v in block.weights) == [
        "conv1/InstanceNorm/beta", "conv1/InstanceNorm/gamma", "conv1/weights"]
    assert block.kernel.shape == (3, 3, 3, 5)
    assert not any("bias" in v.path for v in block.weights)
    with pytest.raises(ValueError, match="odd"):
        layers.ConvInstanceNorm(5, 4, num_styles=2)


def test_nearest_upsample_equals_resize_nearest():
    x = tf.random.stateless_uniform([2, 3, 5, 4], seed=[3, 4])
    y = layers.NearestUpsample(2)(x)
    expected = tf.image.resize(x, [6, 10], method="nearest")
    np.testing.assert_array_equal(y.numpy(), expected.numpy())


def test_upsample_gradient_compiles_with_xla():
    up = layers.NearestUpsample(2)

    @tf.function(jit_compile=True)
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(up(x) ** 2)
        return tape.gradient(loss, x)

    x = tf.ones([1, 2, 2, 1])
    np.testing.assert_allclose(grad(x).numpy(), 8.0 * np.ones([1, 2, 2, 1]))


def test_given_moments_replace_the_inputs_own():
    layer, x = _random_cin()
    g, b = layer.gamma.numpy()[[1, 2]][:, None, None], layer.beta.numpy()[[1, 2]][:, None, None]
    own = tf.nn.moments(x, axes=[1, 2], keepdims=True)
    np.testing.assert_allclose(layer(x, tf.constant([1, 2]), moments=own),
                               layer(x, tf.constant([1, 2])), atol=1e-5)
    other = (tf.fill([2, 1, 1, 4], 0.5), tf.fill([2, 1, 1, 4], 4.0))
    expected = (x.numpy() - 0.5) / np.sqrt(4.0 + 1e-5) * g + b
    np.testing.assert_allclose(layer(x, tf.constant([1, 2]), moments=other), expected, atol=1e-5)
    # The callable form, as blocks pass it to each of their norms: asked with the layer.
    asked = []
    block = layers.ResidualBlock(3)
    block(x, tf.constant([0, 1]))
    block(x, tf.constant([0, 1]), moments=lambda norm, h: asked.append(norm) or other)
    assert asked == list(block.norm_layers()) == [block.conv1.norm, block.conv2.norm]
