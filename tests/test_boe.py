"""Tests of the BOE generator (boe.py) and its weight-bias-ratio loss: the six checks of
seed-systems.md 1.10 (CPU, <= 64 px, stand-in VGG), plus training, stylize, export and
TFLite on a BOE model.
"""
import dataclasses
import os
import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style.data import demo_images
from magenta_style.data import style_dataset
from magenta_style.inference import style_spec
from magenta_style.inference import stylize_lib
from magenta_style.inference import stylizer
from magenta_style.inference import tiling
from magenta_style.media import color
from magenta_style.networks import boe
from magenta_style.networks import checkpoints
from magenta_style.networks import generators
from magenta_style.networks import kernels
from magenta_style.networks import losses
from magenta_style.networks import vgg
from magenta_style.serving import export_lib
from magenta_style.training import devices
from magenta_style.training import objective
from magenta_style.training import train_lib

ALPHA = 0.25
# The patent's recipe (configs/boe_yuv444.cfg): content from block 2, style from blocks
# 1, 2, 3 and the last.
CONTENT = (("vgg_16/conv2", 1.0),)
STYLE = tuple((f"vgg_16/conv{i}", 1e-4) for i in (1, 2, 3, 5))


def _config(generator="boe_yuv444", num_styles=1, **kwargs):
    norm = "conditional" if num_styles > 1 else "plain"
    return config_lib.ModelConfig(num_styles=num_styles, alpha=ALPHA, generator=generator,
                                  boe_norm=kwargs.pop("boe_norm", norm), **kwargs)


def _images(seed, shape=(2, 32, 32, 3)):
    return tf.random.stateless_uniform(shape, seed=[seed, 1])


# ------------------------------------------------------------------------------------
# 1.10 check 1: YUV round trip and the grey axis.
# ------------------------------------------------------------------------------------

def test_yuv_round_trip_grey_axis_and_determinant():
    rgb = _images(0, (4, 16, 16, 3))
    for standard in ("boe", "bt601"):
        back = color.yuv_to_rgb(color.rgb_to_yuv(rgb, standard), standard)
        assert float(tf.reduce_max(tf.abs(back - rgb))) <= 1e-6, standard
    grey = tf.repeat(_images(1, (2, 8, 8, 1)), 3, axis=-1)
    yuv = color.rgb_to_yuv(grey, "boe").numpy()
    assert np.abs(yuv[..., 1:]).max() <= 1e-7
    np.testing.assert_allclose(yuv[..., 0], grey.numpy()[..., 0], atol=1e-7)
    forward, inverse = color.conversion_matrices("boe")
    assert np.linalg.det(forward) == pytest.approx(0.2551, abs=1e-4)
    # The printed matrix (V row = -0.877 Y) is singular; ours is not that one.
    printed = np.array([[0.30, 0.59, 0.11], [0.493 * 0.70, -0.493 * 0.59, -0.493 * 0.11],
                        [-0.877 * 0.30, -0.877 * 0.59, -0.877 * 0.11]])
    assert abs(np.linalg.det(printed)) < 1e-12 and not np.allclose(forward, printed)
    # seed-systems.md 1.4's inverse coefficients.
    np.testing.assert_allclose(inverse[:, 0], 1.0)
    np.testing.assert_allclose([inverse[0, 2], inverse[1, 1], inverse[1, 2], inverse[2, 1]],
                               [1.1403, -0.3782, -0.5798, 2.0284], atol=1e-4)


def test_preserve_colors_shares_the_conversion():
    # Colour preservation keeps BT.601 (tf.image's forward matrix), through color.py.
    rgb = _images(2, (2, 8, 8, 3))
    np.testing.assert_array_equal(color.rgb_to_yuv(rgb), tf.image.rgb_to_yuv(rgb))
    assert not np.allclose(color.rgb_to_yuv(rgb, "boe"), color.rgb_to_yuv(rgb), atol=1e-3)


# ------------------------------------------------------------------------------------
# 1.10 check 2: L_L1 by hand, and its direction.
# ------------------------------------------------------------------------------------

def test_weight_bias_ratio_by_hand_in_both_modes():
    # A 2-layer toy generator with hand-set weights.
    k1 = np.arange(1, 17, dtype=np.float32).reshape(2, 2, 1, 4) - 8.0   # 4 2x2 kernels
    k2 = np.linspace(-1, 2, 2 * 2 * 4 * 2, dtype=np.float32).reshape(2, 2, 4, 2)
    b1 = np.array([0.5, -1.0, 2.0, 0.25], np.float32)
    b2 = np.array([-3.0, 0.75], np.float32)
    conv1 = tf.keras.layers.Conv2D(4, 2, padding="same")
    conv2 = tf.keras.layers.Conv2D(2, 2, padding="same")
    conv2(conv1(tf.zeros([1, 4, 4, 1])))
    conv1.set_weights([k1, b1])
    conv2.set_weights([k2, b2])
    kernels, biases = [conv1.kernel, conv2.kernel], [conv1.bias, conv2.bias]
    b_hand = (np.abs(b1).sum() + np.abs(b2).sum()) / 6
    w_elem = (np.abs(k1).sum() + np.abs(k2).sum()) / (k1.size + k2.size)
    w_ksum = (np.abs(k1.sum(axis=(0, 1))).sum() + np.abs(k2.sum(axis=(0, 1))).sum()) / (4 + 8)
    eps = losses.WEIGHT_BIAS_RATIO_EPSILON
    for mode, w_hand in (("elementwise", w_elem), ("kernel_sum", w_ksum)):
        ratio, w, b = losses.weight_bias_ratio(kernels, biases, mode)
        assert float(w) == pytest.approx(w_hand, rel=1e-6)
        assert float(b) == pytest.approx(b_hand, rel=1e-6)
        assert float(ratio) == pytest.approx(w_hand / (b_hand + eps), rel=1e-6)
    assert w_elem != pytest.approx(w_ksum, rel=1e-2)  # The two readings differ here.
    with pytest.raises(ValueError, match="has none"):
        losses.weight_bias_ratio([conv1.kernel], [])


def test_sgd_on_the_ratio_alone_lowers_it_every_step():
    tf.keras.utils.set_random_seed(0)
    model = generators.build(_config("boe_yuv420"))
    kernels, biases = model.kernels_and_biases()
    optimizer = tf.keras.optimizers.SGD(0.05)
    variables = kernels + biases
    ratios = []
    for _ in range(21):
        with tf.GradientTape() as tape:
            ratio, _, _ = losses.weight_bias_ratio(kernels, biases)
            loss = 0.1 * ratio
        ratios.append(float(ratio))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    assert all(b < a for a, b in zip(ratios, ratios[1:])), ratios


@pytest.fixture(scope="module")
def standin_vgg():
    return vgg.build_vgg16("standin:0")


def _trainer(standin_vgg, chi, generator="boe_yuv444", seed=0, optimizer="adam", lr=1e-3):
    """A Trainer on one style (grams of a demo style image), fixed seed."""
    tf.keras.utils.set_random_seed(seed)
    model = generators.build(_config(generator))
    style = tf.constant(demo_images.style_image(0, 32)[None], tf.float32)
    features = standin_vgg(style)
    grams = {name: losses.gram_matrix(features[name]).numpy() for name, _ in STYLE}
    loss_config = config_lib.LossConfig(vgg_checkpoint="standin:0", content_weights=CONTENT,
                                        style_weights=STYLE, weight_bias_ratio_weight=chi)
    return train_lib.Trainer(model, standin_vgg, grams, loss_config, 2, lr, optimizer=optimizer)


def _content_batch():
    return tf.constant(np.stack([demo_images.content_image(i, 32) for i in (0, 1)]),
                       tf.float32)


def _train(trainer, steps):
    """Runs `steps` plain steps on the same 2 images; returns [(total, W/B)] per step."""
    images, labels = _content_batch(), tf.zeros([2], tf.int32)

    @tf.function
    def step():
        gradients, terms, _ = trainer.compute_gradients(images, labels)
        trainer.optimizer.apply_gradients(zip(gradients, trainer.train_vars))
        return tf.reduce_mean(terms["total_loss"]), terms["weight_bias_ratio_loss"][0]

    return [tuple(float(v) for v in step()) for _ in range(steps)]


@pytest.mark.slow
def test_training_with_chi_ends_with_lower_ratio_than_without(standin_vgg):
    # Also 1.10 check 6's short run: the loss falls and the analysis network is untouched.
    before = [w.numpy().copy() for w in standin_vgg.weights]
    with_chi = _train(_trainer(standin_vgg, chi=10.0), 20)
    for w, b in zip(standin_vgg.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
    assert not standin_vgg.trainable_weights
    assert with_chi[2][0] < with_chi[0][0], with_chi[:3]
    without = _train(_trainer(standin_vgg, chi=0.0), 20)
    assert with_chi[0][1] == pytest.approx(without[0][1])  # Same seed, same start.
    assert with_chi[-1][1] < without[-1][1], (with_chi[-1], without[-1])


# ------------------------------------------------------------------------------------
# 1.10 check 3: the biases are live.
# ------------------------------------------------------------------------------------

@pytest.mark.parametrize("generator", ["boe_yuv444", "boe_yuv420"])
def test_every_bias_changes_the_output(generator):
    tf.keras.utils.set_random_seed(1)
    model = generators.build(_config(generator, boe_pooling="avg"))
    images, style = _images(3, (2, 16, 16, 3)), tf.zeros([2], tf.int32)
    run = tf.function(lambda: model(images, style))
    reference = run().numpy()
    _, biases = model.kernels_and_biases()
    assert len(biases) == 15
    for bias in biases:
        saved = bias.numpy()
        bias.assign(saved + 0.1)
        diff = np.abs(run().numpy() - reference).max()
        bias.assign(saved)
        assert diff > 1e-4, f"{bias.path}: {diff}"


def test_a_bias_directly_before_instance_norm_is_dead():
    # The negative control of the check above: conv -> IN (the order 1.9 item 4 warns
    # of) cancels the bias, so the test above can fail.
    conv = tf.keras.layers.Conv2D(4, 3, padding="same")
    norm = boe.InstanceNorm()
    x = _images(4, (2, 16, 16, 1))
    reference = norm(conv(x)).numpy()
    conv.bias.assign(conv.bias + 0.1)
    assert np.abs(norm(conv(x)).numpy() - reference).max() < 1e-5


# ------------------------------------------------------------------------------------
# 1.10 check 4: shapes, variants, IN statistics.
# ------------------------------------------------------------------------------------

@pytest.mark.parametrize("generator,pooling,composite,sizes", [
    ("boe_yuv444", "max", "mux", [(16, 16), (32, 48), (48, 32), (13, 7), (1, 1), (30, 2)]),
    ("boe_yuv420", "max", "mux", [(16, 16), (32, 48), (48, 32), (13, 7), (1, 1), (30, 2)]),
    ("boe_yuv444", "demuxout", "shuffle", [(16, 32), (5, 9)]),
    ("boe_yuv420", "avg", "bilinear", [(48, 16), (2, 3)])])
def test_both_variants_keep_every_size(generator, pooling, composite, sizes):
    model = generators.build(_config(generator, boe_pooling=pooling,
                                     boe_composite=composite))
    run = tf.function(lambda x, m=model: m(x, tf.zeros([1], tf.int32)),
                      input_signature=[tf.TensorSpec([1, None, None, 3])])
    for height, width in sizes:
        out = run(_images(5, (1, height, width, 3)))
        assert out.shape == (1, height, width, 3), (generator, height, width)
        assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0


def test_420_chroma_networks_are_smaller_and_cheaper():
    full = generators.build(_config("boe_yuv444"))
    half = generators.build(_config("boe_yuv420"))
    spec = tf.TensorSpec([1, 32, 32, 1], tf.float32)

    def macs(net):
        return generators.conv_macs(lambda x: net(x, tf.zeros([1], tf.int32)), spec)

    assert half.y_net.count_params() == full.y_net.count_params()
    assert macs(half.y_net) == macs(full.y_net)
    for name in ("u_net", "v_net"):
        assert getattr(half, name).count_params() < getattr(full, name).count_params()
        assert macs(getattr(half, name)) < macs(getattr(full, name))


def test_conv_macs_is_exact_on_the_magenta_network():
    model = generators.build(config_lib.ModelConfig(num_styles=1, alpha=1.0))
    size = 32
    macs = generators.conv_macs(lambda x, w: model(x, w), tf.TensorSpec([1, size, size, 3]),
                                tf.TensorSpec([1, 1]))
    # Per output pixel at full resolution, by hand from transformer.py's layer list. The
    # last 9x9 conv (32 -> 3) runs on 2x2 blocks (layers._space_to_depth_conv): a 5x5 conv
    # from 4 * 32 to 4 * 3 channels per block of 4 output pixels.
    per_pixel = (81 * 3 * 32 + 9 * 32 * 64 / 4 + 9 * 64 * 128 / 16 + 10 * 9 * 128 * 128 / 16
                 + 25 * (4 * 32) * (4 * 3) / 4)
    # The two upsampling convs (layers.ConvInstanceNorm._upsample_by_2_conv): one 2x2 conv
    # with the four output phases as 4 x filters channels, on the input replicate-padded to
    # (h + 1) x (w + 1), so (h + 1) ** 2 positions.
    upsampling = ((size // 4 + 1) ** 2 * 4 * 128 * (4 * 64)
                  + (size // 2 + 1) ** 2 * 4 * 64 * (4 * 32))
    assert macs == per_pixel * size * size + upsampling


@pytest.mark.parametrize("norm", ["plain", "conditional"])
def test_instance_norm_outputs_are_standardised(norm):
    tf.keras.utils.set_random_seed(2)
    model = generators.build(_config("boe_yuv420", num_styles=2 if norm == "conditional" else 1,
                                     boe_norm=norm))
    x = _images(6, (2, 32, 32, 1))
    for net in model.subnetworks():
        stages = net.stages(x, tf.zeros([2], tf.int32))
        names = [name for name, _ in stages]
        norms = [(names[i - 1], out) for i, (name, out) in enumerate(stages)
                 if name.startswith("InstanceNorm")]
        assert len(norms) == (2 if net.chroma420 else 4)
        inputs = dict(stages)
        for before, out in norms:
            mean, var = tf.nn.moments(out, axes=[1, 2])
            # gamma 1, beta 0 at init: (x - mean) / sqrt(var + eps) exactly.
            v_in = tf.nn.moments(tf.cast(inputs[before], tf.float32), axes=[1, 2])[1]
            expected = v_in / (v_in + kernels.INSTANCE_NORM_EPSILON)
            assert float(tf.reduce_max(tf.abs(mean))) < 1e-3
            assert float(tf.reduce_max(tf.abs(var - expected))) < 1e-3
            # ~1 wherever the input varies well above epsilon (dead ReLU channels give 0).
            live = v_in.numpy() > 1e-2
            assert live.mean() > 0.5 and np.all(np.abs(var.numpy()[live] - 1.0) < 1e-3)
        resolutions = [int(out.shape[1]) for _, out in stages]
        assert min(resolutions) == 8 and resolutions[-1] == 32


# ------------------------------------------------------------------------------------
# 1.10 check 5: up/down-sampling layers are the permutations they claim.
# ------------------------------------------------------------------------------------

def test_pixel_shuffle_demuxout_and_mux_are_permutations():
    x = np.random.default_rng(0).random((2, 3, 5, 8)).astype(np.float32)
    # Fig. 6A by the definition: sub-pixel (i, j) of output channel c is input channel
    # (2i + j) * C + c.
    out = boe.PixelShuffle(2)(x).numpy()
    assert out.shape == (2, 6, 10, 2)
    for i in range(2):
        for j in range(2):
            for c in range(2):
                np.testing.assert_array_equal(out[:, i::2, j::2, c], x[..., (2 * i + j) * 2 + c])
    np.testing.assert_array_equal(out, tf.nn.depth_to_space(x, 2))
    # demuxout = space-to-depth, and the pair is an exact identity both ways.
    demux = boe.Demuxout(2)(out).numpy()
    np.testing.assert_array_equal(demux, tf.nn.space_to_depth(out, 2))
    np.testing.assert_array_equal(demux, x)
    np.testing.assert_array_equal(boe.PixelShuffle(2)(boe.Demuxout(2)(out)), out)
    # Fig. 6B MUX: 4 maps per group of 4, each 2x larger and a permutation of the
    # group's 4 pixels; output k is the cyclic shift k.
    mux = boe.MuxComposite()(x).numpy()
    assert mux.shape == (2, 6, 10, 8)
    for g in range(2):
        group = x[..., 4 * g:4 * g + 4]
        for k in range(4):
            m = mux[..., 4 * g + k]
            blocks = np.stack([m[:, i::2, j::2] for i in range(2) for j in range(2)], -1)
            np.testing.assert_array_equal(np.sort(blocks, -1), np.sort(group, -1))
            for p in range(4):
                np.testing.assert_array_equal(blocks[..., p], group[..., (p + k) % 4])
    with pytest.raises(ValueError, match="multiple of 4"):
        boe.MuxComposite()(x[..., :6])


def test_layers_round_trip_their_config():
    for layer in (boe.Demuxout(2), boe.PixelShuffle(2), boe.MuxComposite(),
                  boe.BilinearUpsample(2), boe.InstanceNorm()):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    model = generators.build(_config("boe_yuv420", num_styles=3))
    clone = boe.BoeGenerator.from_config(model.get_config())
    assert (clone.variant, clone.norm, clone.num_styles) == ("yuv420", "conditional", 3)


# ------------------------------------------------------------------------------------
# 1.10 check 6: loss definitions and a short run.
# ------------------------------------------------------------------------------------

def test_loss_definitions(standin_vgg):
    features = standin_vgg(_images(7))
    zero, _ = losses.content_loss(features, features, dict(CONTENT))
    assert float(tf.reduce_max(tf.abs(zero))) == 0.0
    grams = {n: losses.gram_matrix(features[n]) for n, _ in STYLE}
    zero, _ = losses.style_loss(grams, features, dict(STYLE))
    assert float(tf.reduce_max(tf.abs(zero))) == 0.0
    f = features["vgg_16/conv2"][0].numpy().reshape(-1, features["vgg_16/conv2"].shape[-1])
    np.testing.assert_allclose(grams["vgg_16/conv2"][0], f.T @ f / f.shape[0], rtol=1e-4,
                               atol=1e-6)


def test_sgd_option_is_plain_sgd(standin_vgg):
    trainer = _trainer(standin_vgg, chi=0.0, optimizer="sgd", lr=1e-4)
    assert isinstance(trainer.optimizer, tf.keras.optimizers.SGD)
    before = [v.numpy() for v in trainer.train_vars]
    gradients, _, _ = trainer.compute_gradients(_content_batch(), tf.zeros([2], tf.int32))
    trainer.optimizer.apply_gradients(zip(gradients, trainer.train_vars))
    for v, b, g in zip(trainer.train_vars, before, gradients):
        np.testing.assert_allclose(v.numpy(), b - 1e-4 * g.numpy(), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------
# Config, errors, strength, tiling.
# ------------------------------------------------------------------------------------

def test_config_json_records_the_generator_and_old_files_load_as_magenta():
    old = config_lib.ModelConfig.from_dict({"num_styles": 2, "alpha": 1.0, "style_names": []})
    assert old.generator == "magenta" and "generator" not in old.to_dict()
    new = _config("boe_yuv420", num_styles=3, boe_pooling="demuxout", boe_composite="shuffle")
    assert config_lib.ModelConfig.from_dict(new.to_dict()) == new
    assert new.to_dict()["generator"] == "boe_yuv420"
    experiment = config_lib.ExperimentConfig(
        train=config_lib.TrainConfig(train_dir="x", optimizer="sgd"),
        data=config_lib.DataConfig(style_dataset_file="s"),
        loss=config_lib.LossConfig(vgg_checkpoint="standin:0"), generator="boe_yuv444")
    assert config_lib.ExperimentConfig.from_dict(experiment.to_dict()) == experiment


@pytest.mark.parametrize("kwargs, message", [
    (dict(generator="boe_yuv444", num_styles=3), "use --boe_norm=conditional"),
    (dict(generator="boe_yuv444", boe_composite="mux", alpha=0.3),
     "groups channels by 4"),
    (dict(generator="boe_yuv422"), "generator must be one of"),
])
def test_model_config_errors_are_one_line(kwargs, message):
    kwargs = {"num_styles": 1, "alpha": ALPHA, **kwargs}
    with pytest.raises(config_lib.ConfigError, match=message) as info:
        config_lib.ModelConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_weight_bias_ratio_on_magenta_is_a_one_line_error():
    with pytest.raises(config_lib.ConfigError, match="Magenta generator's convolutions"):
        config_lib.ExperimentConfig(
            train=config_lib.TrainConfig(train_dir="x"),
            data=config_lib.DataConfig(style_dataset_file="s"),
            loss=config_lib.LossConfig(vgg_checkpoint="standin:0",
                                       weight_bias_ratio_weight=0.1))


@pytest.mark.parametrize("norm", ["plain", "conditional"])
def test_strength_ends_and_style_forms(norm, randomize_norms):
    tf.keras.utils.set_random_seed(4)
    num_styles = 2 if norm == "conditional" else 1
    model = generators.build(_config("boe_yuv444", num_styles=num_styles, boe_norm=norm))
    randomize_norms(model, seed=5)
    images = _images(8, (2, 20, 12, 3))
    ids = tf.constant([0, num_styles - 1])
    full = model(images, ids).numpy()
    np.testing.assert_array_equal(model(images, ids, tf.ones([2])), full)
    np.testing.assert_allclose(model(images, ids, tf.zeros([2])), images, atol=1e-7)
    one_hot = tf.one_hot(ids, num_styles)
    np.testing.assert_allclose(model(images, one_hot), full, atol=1e-6)
    maps = tf.broadcast_to(one_hot[:, None, None, :], [2, 20, 12, num_styles])
    np.testing.assert_allclose(model(images, maps), full, atol=1e-5)
    half = model(images, ids, tf.fill([2], 0.5)).numpy()
    if norm == "plain":  # No scale/offset to blend: strength is the output/input mix.
        np.testing.assert_allclose(half, 0.5 * full + 0.5 * images.numpy(), atol=1e-6)
    else:  # gamma/beta are blended too, so it is not the plain mix.
        assert np.abs(half - (0.5 * full + 0.5 * images.numpy())).max() > 1e-4


@pytest.mark.slow
def test_bfloat16_export_of_a_boe_model(randomize_norms, tmp_path):
    """export --compute_dtype=bfloat16 takes a BOE checkpoint (transformer.with_compute_dtype
    rebuilds any generator), records the dtype and stays close to float32."""
    model_config = _config("boe_yuv420", num_styles=2, boe_norm="conditional")
    model = generators.build(model_config)
    randomize_norms(model, seed=6)
    train_dir = str(tmp_path / "train")
    checkpoints.save_model(model, model_config, train_dir, step=1)
    version_dir, _ = export_lib.export_checkpoint(train_dir, str(tmp_path / "exports"),
                                                  warmup_size=0, compute_dtype="bfloat16")
    assert stylizer.read_metadata(version_dir)["compute_dtype"] == "bfloat16"
    loaded, loaded_config = stylizer.load(version_dir)
    assert loaded_config == model_config and loaded.compute_dtype == "bfloat16"
    image = _images(9, (1, 20, 28, 3))
    weights = tf.constant([[0.3, 0.7]])
    diff = np.abs(loaded(image, weights).numpy() - model(image, weights).numpy())
    assert 0 < diff.mean() < 0.02 and diff.max() < 0.2, (diff.mean(), diff.max())


def test_tiling_is_a_clear_error_and_magenta_compatible_too():
    model = generators.build(_config())
    with pytest.raises(tiling.TilingError, match="Magenta generator only"):
        tiling.stylize_tiled(model, np.zeros((16, 16, 3), np.float32), 0)
    assert not stylizer.can_tile(model)
    with pytest.raises(ValueError, match="Magenta generator only"):
        generators.build(_config(), magenta_compatible=True)


# ------------------------------------------------------------------------------------
# Training through train_lib.run, replicas, stylize, export, TFLite.
# ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory, standin_vgg):
    root = tmp_path_factory.mktemp("boe_demo")
    _, styles = demo_images.write_demo_images(root, num_content=4, num_styles=3,
                                              content_size=48, style_size=32)
    many = str(root / "styles.tfrecord")
    style_dataset.write_style_dataset(many, styles, vgg_model=standin_vgg)
    one = str(root / "one_style.tfrecord")
    style_dataset.write_style_dataset(one, styles[:1], vgg_model=standin_vgg)
    return {"content": str(root / demo_images.CONTENT_DIR), "many": many, "one": one}


def _experiment(demo, train_dir, dataset="many", train_steps=2, **options):
    train = config_lib.TrainConfig(
        train_dir=str(train_dir), batch_size=2, train_steps=train_steps, steps_per_loop=2,
        save_interval_secs=0, save_interval_steps=2, save_summaries_secs=0,
        summary_interval_steps=2, log_interval_secs=0, image_summary_count=0, seed=3)
    loss = config_lib.LossConfig(vgg_checkpoint="standin:0", content_weights=CONTENT,
                                 style_weights=STYLE, weight_bias_ratio_weight=0.5,
                                 weight_bias_ratio_mode=options.pop("mode", "elementwise"))
    defaults = dict(generator="boe_yuv420", boe_norm="conditional")
    defaults.update(options)
    return config_lib.ExperimentConfig(
        train=train, loss=loss, alpha=ALPHA,
        data=config_lib.DataConfig(style_dataset_file=demo[dataset],
                                   content_images=demo["content"], image_size=32), **defaults)


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    train_dir = tmp_path_factory.mktemp("boe_train")
    lines = []
    result = train_lib.run(_experiment(demo, train_dir), progress=lines.append,
                           strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))
    return train_dir, result, lines


@pytest.mark.slow
def test_run_records_generator_and_logs_w_and_b(trained):
    train_dir, result, lines = trained
    saved = config_lib.read_config_json(str(train_dir))
    assert saved["model"]["generator"] == "boe_yuv420"
    assert saved["model"]["boe_norm"] == "conditional" and saved["model"]["num_styles"] == 3
    assert saved["train"]["loss"]["weight_bias_ratio_weight"] == 0.5
    for name in objective.WEIGHT_BIAS_TERMS:
        assert np.isfinite(result.losses[name]), name
    assert result.losses["weighted_weight_bias_ratio_loss"] == pytest.approx(
        0.5 * result.losses["weight_bias_ratio_loss"], rel=1e-6)
    assert any(" W/B " in line and "B " in line for line in lines if line.startswith("step"))
    events = list(train_dir.glob("events.out.tfevents.*"))
    tags = {v.tag for e in events for r in tf.compat.v1.train.summary_iterator(str(e))
            for v in r.summary.value}
    assert {"weight_bias_ratio/W", "weight_bias_ratio/B", "weight_bias_ratio_loss"} <= tags


@pytest.mark.slow
def test_two_replicas_agree_with_one(demo, trained, tmp_path):
    cpus = tf.config.list_logical_devices("CPU")
    assert len(cpus) >= 2, "tests/conftest.py should split the CPU into 2 logical devices"
    _, result, _ = trained
    strategy = devices.mirrored_strategy([d.name for d in cpus[:2]])
    mirrored = train_lib.run(_experiment(demo, tmp_path), strategy=strategy)
    assert mirrored.total_losses[1] == pytest.approx(result.total_losses[1], rel=1e-5)
    assert mirrored.total_losses[2] == pytest.approx(result.total_losses[2], rel=1e-4)
    assert mirrored.losses["weight_bias_ratio_loss"] == pytest.approx(
        result.losses["weight_bias_ratio_loss"], rel=1e-4)


@pytest.mark.slow
def test_plain_norm_with_several_styles_is_a_one_line_error(demo, tmp_path):
    with pytest.raises(train_lib.TrainError, match="use --boe_norm=conditional") as info:
        train_lib.run(_experiment(demo, tmp_path, boe_norm="plain"),
                      strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))
    assert "\n" not in str(info.value)
    assert "3 styles" in str(info.value)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """(model, model_config, version_dir) of the trained checkpoint, reloaded and exported."""
    model, model_config = checkpoints.load_model(str(trained[0]))
    version_dir = export_lib.export_saved_model(
        model, model_config, str(tmp_path_factory.mktemp("boe_export") / "e"), warmup_size=0)
    return model, model_config, version_dir


@pytest.mark.slow
def test_checkpoint_stylize_and_export_reloaded(exported, demo, tmp_path):
    model, model_config, version_dir = exported
    assert isinstance(model, boe.BoeGenerator) and model_config.generator == "boe_yuv420"
    image = tf.constant(demo_images.content_image(2, 40)[None, :37], tf.float32)
    weights = tf.constant([[0.2, 0.0, 0.8]])
    reference = model(image, weights).numpy()
    assert reference.shape == (1, 37, 40, 3)

    spec = style_spec.parse("{0:0.2,2:0.8}")
    inputs = sorted(str(p) for p in pathlib.Path(demo["content"]).iterdir())[:1]
    summary = stylize_lib.stylize_files(
        model, model_config, inputs, str(tmp_path / "out"),
        stylizer.StylizeOptions(styles=spec, strength=0.5, preserve_colors=True))
    assert len(summary.written) == 1 and not summary.failed

    loaded, loaded_config = stylizer.load(version_dir)
    assert loaded_config == model_config
    np.testing.assert_allclose(loaded(image, weights).numpy(), reference, atol=1e-5)
    saved = tf.saved_model.load(version_dir)
    out = saved.signatures["stylize_advanced"](
        image=image, style_weights=weights, strength=tf.constant([0.0]),
        preserve_colors=tf.constant([False]))["stylized_image"].numpy()
    np.testing.assert_allclose(out, image.numpy(), atol=1e-6)


@pytest.mark.slow
def test_tflite_dynamic_size_matches_the_saved_model(exported, load_script):
    tool = load_script(os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools",
                                    "export_tflite.py"))
    version_dir = exported[2]
    loaded = tf.saved_model.load(version_dir)
    data = tool.convert(version_dir, loaded=loaded)
    interpreter = tf.lite.Interpreter(model_content=data)
    runner = interpreter.get_signature_runner("serving_default")
    for batch, height, width in [(1, 20, 24), (2, 13, 18)]:
        image = np.random.default_rng(height).random((batch, height, width, 3), np.float32)
        weights = np.full((batch, 3), 1 / 3, np.float32)
        out = runner(image=image, style_weights=weights)["stylized_image"]
        ref = loaded.signatures["serving_default"](image=image, style_weights=weights)
        assert np.abs(out - ref["stylized_image"].numpy()).max() < 1e-4


@pytest.mark.slow
def test_finetune_options_must_match(demo, trained, tmp_path):
    train_dir, _, _ = trained
    experiment = _experiment(demo, tmp_path, boe_pooling="avg")
    experiment = dataclasses.replace(experiment, train=dataclasses.replace(
        experiment.train, finetune_from=str(train_dir)))
    with pytest.raises(train_lib.TrainError, match="--finetune_from holds a boe_yuv420"):
        train_lib.run(experiment, strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))


def test_recipe_parses_and_chi_on_magenta_is_a_one_line_cli_error(run_command, tmp_path):
    # configs/boe_yuv444.cfg through the real command line; switching its generator back
    # to magenta while it sets chi > 0 must fail before TensorFlow starts.
    repo = pathlib.Path(__file__).resolve().parent.parent
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    # (boe_yuv420.cfg differs only in --generator, which this overrides.)
    proc = run_command(
        [sys.executable, "-m", "magenta_style.train", "--flagfile=configs/boe_yuv444.cfg",
         f"--train_dir={tmp_path}", "--style_dataset_file=x", "--content_images=y",
         "--vgg_checkpoint=standin:0", "--generator=magenta"],
        cwd=repo, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("magenta_style.train: error: --weight_bias_ratio_weight needs")
