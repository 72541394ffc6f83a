"""Tests for the speed work: the rewritten layer computations and the bfloat16 compute mode.

The fast paths must compute the same numbers as the plain formulation (nearest
upsample + reflect pad + 3x3 conv; two-pass moments), and the bfloat16 mode must be
recorded in the export, stay close to float32 and be refused where it cannot apply.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from magenta_style import cli
from magenta_style import config as config_lib
from magenta_style import export
from magenta_style.inference import stylizer
from magenta_style.networks import checkpoints
from magenta_style.networks import kernels
from magenta_style.networks import layers
from magenta_style.networks import transformer
from magenta_style.serving import export_lib
from magenta_style import stylize


@pytest.mark.parametrize("mode", ["REFLECT", "SYMMETRIC"])
def test_mirror_pad_static_and_dynamic_sizes_equal_tf_pad(mode):
    """A static size takes the constant-index path (no index arithmetic in the graph),
    a dynamic one computes the indices; both are tf.pad's values and gradients."""
    x = tf.random.stateless_normal([2, 5, 7, 3], seed=[1, 2])
    rows, cols = (2, 1), (3, 4)
    paddings = [[0, 0], list(rows), list(cols), [0, 0]]
    expected = tf.pad(x, paddings, mode=mode)
    static = tf.function(lambda v: kernels.mirror_pad(v, rows, cols, mode))
    dynamic = tf.function(lambda v: kernels.mirror_pad(v, rows, cols, mode),
                          input_signature=[tf.TensorSpec([None, None, None, 3])])
    for fn in (static, dynamic):
        np.testing.assert_array_equal(fn(x).numpy(), expected.numpy())
        with tf.GradientTape() as tape:
            tape.watch(x)
            got = tf.reduce_sum(fn(x) * expected)
        with tf.GradientTape() as tape_ref:
            tape_ref.watch(x)
            want = tf.reduce_sum(tf.pad(x, paddings, mode=mode) * expected)
        np.testing.assert_allclose(tape.gradient(got, x).numpy(),
                                   tape_ref.gradient(want, x).numpy(), rtol=1e-6)
    ops = lambda fn, *args: len(fn.get_concrete_function(*args).graph.get_operations())  # noqa: E731
    assert ops(static, x) < ops(dynamic) // 2
    # Too small for REFLECT: the static path defers to the dynamic check.
    with pytest.raises(tf.errors.InvalidArgumentError, match="more pixels than the pad"):
        tf.function(lambda v: kernels.mirror_pad(v, (2, 2), (1, 1)))(tf.zeros([1, 2, 4, 1]))


@pytest.mark.parametrize("height,width", [(1, 1), (2, 3), (5, 8)])
def test_upsample_by_2_conv_equals_upsample_reflect_pad_conv(height, width):
    block = layers.UpsampleConvInstanceNorm(6, 3, num_styles=2, factor=2)
    x = tf.random.stateless_normal([2, height, width, 5], seed=[height, width]) * 4.0
    block(x, tf.constant([0, 1]))
    up = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
    padded = tf.pad(up, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    expected = tf.nn.conv2d(padded, block.conv.kernel, 1, "VALID").numpy()
    got = block.conv._upsample_by_2_conv(x).numpy()
    assert got.shape == (2, 2 * height, 2 * width, 6)
    # Only the summation order differs (3x3 taps are pre-summed into 2x2).
    assert np.abs(got - expected).max() < 1e-5 * max(1.0, np.abs(expected).max())


@pytest.mark.parametrize("batch", [1, 3])
def test_fused_instance_norm_matches_two_pass_moments(batch):
    x = tf.random.stateless_normal([batch, 7, 9, 4], seed=[batch, 0]) * 20.0 + 50.0
    rng = np.random.default_rng(batch)
    gamma = tf.constant(rng.normal(size=(batch, 1, 1, 4)).astype(np.float32))
    beta = tf.constant(rng.normal(size=(batch, 1, 1, 4)).astype(np.float32))
    mean, variance = tf.nn.moments(x, axes=[1, 2], keepdims=True)
    expected = tf.nn.batch_normalization(x, mean, variance, beta, gamma, 1e-5).numpy()
    np.testing.assert_allclose(kernels.instance_norm(x, gamma, beta).numpy(), expected,
                               rtol=0, atol=2e-5)
    # Per-pixel gamma/beta (style maps) go through the same normalisation.
    maps = tf.broadcast_to(gamma, x.shape), tf.broadcast_to(beta, x.shape)
    np.testing.assert_allclose(kernels.instance_norm(x, *maps).numpy(), expected,
                               rtol=0, atol=2e-5)


def test_instance_norm_gradient_matches_two_pass_moments():
    x = tf.random.stateless_normal([2, 6, 5, 3], seed=[4, 4])
    gamma = tf.random.stateless_normal([2, 1, 1, 3], seed=[5, 5])
    beta = tf.zeros([2, 1, 1, 3])
    weights = tf.random.stateless_normal([2, 6, 5, 3], seed=[6, 6])

    def grads(norm):
        with tf.GradientTape() as tape:
            tape.watch([x, gamma])
            loss = tf.reduce_sum(norm(x) * weights)
        return tape.gradient(loss, [x, gamma])

    def reference(v):
        mean, variance = tf.nn.moments(v, axes=[1, 2], keepdims=True)
        return tf.nn.batch_normalization(v, mean, variance, beta, gamma, 1e-5)

    for got, want in zip(grads(lambda v: kernels.instance_norm(v, gamma, beta)),
                         grads(reference)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)


def test_with_compute_dtype():
    model_config = config_lib.ModelConfig(num_styles=2, alpha=0.25)
    model = transformer.build_transformer(model_config)
    assert transformer.with_compute_dtype(model, "float32") is model
    fast = transformer.with_compute_dtype(model, "bfloat16")
    assert fast.compute_dtype == "bfloat16"
    assert all(v.dtype == "float32" for v in fast.weights)
    assert transformer.weight_names(fast) == transformer.weight_names(model)
    with pytest.raises(ValueError, match="compute_dtype"):
        transformer.with_compute_dtype(model, "float16")


@pytest.fixture(scope="module")
def bf16_export(tmp_path_factory, randomize_norms):
    """(model, training dir, version dir) of a tiny model exported with bfloat16 compute."""
    root = tmp_path_factory.mktemp("speed")
    model_config = config_lib.ModelConfig(num_styles=2, alpha=0.25)
    model = transformer.build_transformer(model_config)
    randomize_norms(model, seed=2)
    train_dir = str(root / "train")
    checkpoints.save_model(model, model_config, train_dir, step=1)
    config_lib.save_model_config(train_dir, model_config)
    version_dir, _ = export_lib.export_checkpoint(train_dir, str(root / "exports"),
                                                  warmup_size=0, compute_dtype="bfloat16")
    return model, train_dir, version_dir


@pytest.mark.slow
def test_bfloat16_export_records_its_dtype_and_stays_close(bf16_export):
    model, _, version_dir = bf16_export
    assert stylizer.read_metadata(version_dir)["compute_dtype"] == "bfloat16"
    image = tf.random.stateless_uniform([1, 32, 40, 3], seed=[1, 2])
    weights = tf.constant([[0.0, 1.0]])
    out = tf.saved_model.load(version_dir).signatures["serving_default"](
        image=image, style_weights=weights)["stylized_image"].numpy()
    diff = np.abs(out - model(image, weights).numpy())
    assert 0 < diff.mean() < 0.02 and diff.max() < 0.2, (diff.mean(), diff.max())


@pytest.mark.slow
def test_stylize_compute_dtype_flag(bf16_export, tmp_path, capsys):
    _, train_dir, version_dir = bf16_export
    photo = tmp_path / "photo.png"
    tf.io.write_file(str(photo), tf.io.encode_png(tf.zeros([16, 16, 3], tf.uint8)))
    out = tmp_path / "out"
    assert stylize.main(["stylize", f"--checkpoint={train_dir}", f"--input_image={photo}",
                         f"--output_dir={out}", "--which_styles=[1]",
                         "--compute_dtype=bfloat16"]) == 0
    assert os.listdir(out) == ["photo_1.png"]
    # An export computes in what it was exported with; asking otherwise is a usage error.
    assert stylize.main(["stylize", f"--checkpoint={version_dir}", f"--input_image={photo}",
                         f"--output_dir={out}", "--compute_dtype=float32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "exported to compute in bfloat16" in err and "Traceback" not in err
    assert json.loads(open(os.path.join(version_dir, "assets.extra",
                                        export_lib.METADATA_FILENAME)).read())[
        "compute_dtype"] == "bfloat16"


def test_export_compute_dtype_flag():
    args = export.parse_args(["export", "--checkpoint=c", "--export_dir=e",
                              "--compute_dtype=bfloat16"])
    assert args.compute_dtype == "bfloat16"
    assert export.parse_args(["export", "--checkpoint=c", "--export_dir=e"]).compute_dtype == (
        "float32")
    with pytest.raises(cli.UsageError, match="compute_dtype"):
        export.parse_args(["export", "--checkpoint=c", "--export_dir=e", "--compute_dtype=fp8"])
