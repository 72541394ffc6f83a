"""Tests for export_lib / export: the SavedModel loads and agrees wherever users load it.

One tiny export (alpha 0.25, 2 styles, randomised gamma/beta so the styles differ)
is shared by the module; the Magenta fixture is exported once through the CLI.
"""
import gc
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style import export
from magenta_style.inference import stylizer
from magenta_style.media import color
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer
from magenta_style.serving import export_lib
from magenta_style.serving import warmup as export_warmup

# Every test here uses exports (a shared tiny export, and the export command).
pytestmark = pytest.mark.slow

NUM_STYLES = 2
SIGNATURE_NAMES = ("serving_default", "serving_bytes", "stylize_advanced",
                   "stylize_bytes_advanced", "stylize_map")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, randomize_norms):
    """(model, model_config, training_dir, version_dir) of a tiny exported model."""
    root = tmp_path_factory.mktemp("export")
    model_config = config_lib.ModelConfig(num_styles=NUM_STYLES, alpha=0.25,
                                          style_names=("ink", "oil"))
    model = transformer.build_transformer(model_config)
    randomize_norms(model)
    train_dir = str(root / "train")
    checkpoints.save_model(model, model_config, train_dir, step=5)
    config_lib.save_model_config(train_dir, model_config,
                                 extra={"train": {"learning_rate": 0.001, "steps": 5}})
    version_dir, _ = export_lib.export_checkpoint(train_dir, str(root / "exports"))
    return model, model_config, train_dir, version_dir


@pytest.fixture(scope="module")
def loaded(tiny):
    return tf.saved_model.load(tiny[3])


def test_a_loaded_export_is_freed_when_dropped(tiny):
    # An export holding tf.custom_gradient functions is never freed once loaded: the loader
    # registers their gradients process-wide, which keeps its ~160 traced graphs (~165 MB
    # for this tiny model) alive. A warm-up load first, then one that must leave none.
    def graphs_alive():
        gc.collect()
        return sum(isinstance(o, tf.Graph) for o in gc.get_objects())

    image, weights = _inputs(batch=1)
    counts = []
    for _ in range(2):
        saved_model = tf.saved_model.load(tiny[3])
        saved_model(image, weights)
        del saved_model
        counts.append(graphs_alive())
    assert counts[1] - counts[0] < 10, f"a load and drop left {counts[1] - counts[0]} graphs"


def _inputs(batch=2, height=20, width=24, seed=1):
    rng = np.random.default_rng(seed)
    image = rng.random((batch, height, width, 3), dtype=np.float32)
    weights = np.eye(NUM_STYLES, dtype=np.float32)[np.arange(batch) % NUM_STYLES]
    return image, weights


def _decode_pngs(values):
    """uint8 [B, H, W, 3] from a sequence of PNG bytes (Pillow, so it works in any TF mode)."""
    return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in values])


def _png(image):
    return tf.io.encode_png(tf.cast(tf.round(image * 255.0), tf.uint8)).numpy()


# ---------------------------------------------------------------------------------------
# Layout and metadata.


def test_export_layout_and_metadata(tiny):
    _, model_config, _, version_dir = tiny
    base = os.path.dirname(version_dir)
    assert os.path.basename(version_dir) == "1"
    assert sorted(os.listdir(base)) == ["1"]  # No temporary directory is left behind.
    assert tf.saved_model.contains_saved_model(version_dir)
    for name in ("assets/config.json", "assets.extra/config.json",
                 "assets.extra/tf_serving_warmup_requests"):
        assert os.path.isfile(os.path.join(version_dir, name)), name
    metadata = stylizer.read_metadata(base)
    assert config_lib.ModelConfig.from_dict(metadata["model"]) == model_config
    assert metadata["train"] == {"learning_rate": 0.001, "steps": 5}
    assert set(metadata["signatures"]) == set(SIGNATURE_NAMES)


def test_metadata_num_styles_and_variables_on_loaded_object(tiny, loaded):
    model, model_config, _, version_dir = tiny
    metadata = json.loads(loaded.metadata().numpy().decode())
    assert metadata == stylizer.read_metadata(version_dir)
    assert metadata["model"]["style_names"] == ["ink", "oil"]
    assert int(loaded.num_styles) == NUM_STYLES
    assert len(loaded.variables) == len(model.variables)
    assert len(loaded.trainable_variables) == len(model.trainable_variables)
    assert os.path.basename(loaded.metadata_file.asset_path.numpy().decode()) == "config.json"
    assert set(loaded.signatures) == set(SIGNATURE_NAMES)


def test_no_py_function_or_xla_in_the_graph(tiny):
    from tensorflow.core.protobuf import saved_model_pb2
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(tiny[3], "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    graph = proto.meta_graphs[0].graph_def
    nodes = list(graph.node) + [n for fn in graph.library.function for n in fn.node_def]
    ops = {n.op for n in nodes}
    assert not ops & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
    assert not any(n.attr["_XlaMustCompile"].b for n in nodes)
    assert not any(fn.attr["_XlaMustCompile"].b for fn in graph.library.function)
    # One float VarHandleOp per weight: no untracked copies (a Keras 3 variable saved
    # naively adds a `Variable_N` twin that the serving functions never read).
    handles = [n for n in graph.node
               if n.op == "VarHandleOp" and n.attr["dtype"].type == tf.float32.as_datatype_enum]
    assert sorted(n.attr["shared_name"].s.decode().split("/", 1)[1] for n in handles) == (
        transformer.weight_names(tiny[0]))


def test_existing_versions_and_refusing_to_overwrite(tmp_path, tiny):
    model, model_config, _, _ = tiny
    for name in ("1", "7", "abc", ".tmp-export-9-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("a file, not a version")
    assert stylizer.existing_versions(str(tmp_path)) == [1, 7]
    with pytest.raises(export_lib.ExportError, match="already exists"):
        export_lib.export_saved_model(model, model_config, str(tmp_path), version=7)
    with pytest.raises(export_lib.ExportError, match="positive integer"):
        export_lib.export_saved_model(model, model_config, str(tmp_path), version=0)
    with pytest.raises(export_lib.ExportError, match="not a directory"):
        export_lib.export_saved_model(model, model_config, str(tmp_path / "12"))


# ---------------------------------------------------------------------------------------
# Signatures through tf.saved_model.load.


@pytest.mark.parametrize("height,width", [(20, 24), (13, 18)])
def test_serving_default_gives_each_example_its_own_style(tiny, loaded, height, width):
    model = tiny[0]
    image, _ = _inputs(batch=3, height=height, width=width)
    weights = np.array([[1, 0], [0, 1], [0.3, 0.7]], np.float32)
    out = loaded.signatures["serving_default"](image=image, style_weights=weights)
    out = out["stylized_image"].numpy()
    assert out.shape == image.shape
    for i in range(3):
        ref = model(image[i:i + 1], weights[i:i + 1]).numpy()[0]
        np.testing.assert_allclose(out[i], ref, atol=1e-5)
    assert np.abs(out[0] - out[1]).max() > 0.05  # The two styles differ.


def test_stylize_advanced_strength_and_preserve_colors(tiny, loaded):
    model = tiny[0]
    image, weights = _inputs()
    strength = np.array([0.5, 0.0], np.float32)
    fn = loaded.signatures["stylize_advanced"]
    out = fn(image=image, style_weights=weights, strength=strength,
             preserve_colors=np.array([False, True]))["stylized_image"].numpy()
    ref = model(image, weights, strength).numpy()
    np.testing.assert_allclose(out[0], ref[0], atol=1e-5)
    np.testing.assert_allclose(out[1], color.preserve_colors(image[1:], ref[1:]).numpy()[0],
                               atol=1e-5)
    full = fn(image=image, style_weights=weights, strength=np.ones(2, np.float32),
              preserve_colors=np.array([False, False]))["stylized_image"].numpy()
    np.testing.assert_allclose(full, model(image, weights).numpy(), atol=1e-5)


def test_stylize_map(tiny, loaded):
    model = tiny[0]
    image, _ = _inputs(batch=1)
    style_map = np.zeros((1, 20, 24, NUM_STYLES), np.float32)
    style_map[:, :, :12, 0] = 1.0  # Left half style 0, right half style 1.
    style_map[:, :, 12:, 1] = 1.0
    strength = np.array([0.8], np.float32)
    out = loaded.signatures["stylize_map"](image=image, style_map=style_map, strength=strength)
    np.testing.assert_allclose(out["stylized_image"].numpy(),
                               model(image, style_map, strength).numpy(), atol=1e-5)


def test_bytes_signatures(tiny, loaded):
    model = tiny[0]
    image, weights = _inputs(height=16, width=20)
    image = np.round(image * 255.0) / 255.0  # Exactly representable in a PNG.
    pngs = np.array([_png(image[0]), _png(image[1])], dtype=object)
    out = loaded.signatures["serving_bytes"](image_bytes=pngs, style_weights=weights)
    decoded = _decode_pngs(out["stylized_image_bytes"].numpy())
    ref = model(image.astype(np.float32), weights).numpy()
    assert decoded.shape == (2, 16, 20, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded / 255.0 - ref).max() <= 0.5 / 255 + 1e-5

    jpeg = tf.io.encode_jpeg(tf.cast(image[0] * 255.0, tf.uint8)).numpy()
    out = loaded.signatures["stylize_bytes_advanced"](
        image_bytes=np.array([jpeg], dtype=object), style_weights=weights[:1],
        strength=np.array([0.0], np.float32), preserve_colors=np.array([True]))
    assert tf.io.decode_png(out["stylized_image_bytes"][0]).shape == (16, 20, 3)

    other = _png(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="same size"):
        loaded.signatures["serving_bytes"](image_bytes=np.array([pngs[0], other], dtype=object),
                                           style_weights=weights)
    with pytest.raises(tf.errors.InvalidArgumentError, match="image file format"):
        loaded.signatures["serving_bytes"](image_bytes=np.array([b"not an image"], dtype=object),
                                           style_weights=weights[:1])


def test_webp_bytes(tiny, loaded):
    # Once "WebP only supports uint8 for dtype" in both bytes signatures.
    model = tiny[0]
    image, weights = _inputs(batch=1, height=12, width=14, seed=4)
    pixels = np.round(image[0] * 255.0).astype(np.uint8)
    ref = model(pixels[None].astype(np.float32) / 255.0, weights).numpy()
    for mode in ("RGB", "RGBA"):  # TF's decoder refuses channels=3 for RGBA WebP.
        data = pixels if mode == "RGB" else np.dstack([pixels, np.full((12, 14), 9, np.uint8)])
        buffer = io.BytesIO()
        Image.fromarray(data, mode).save(buffer, "WEBP", lossless=True)
        webp = np.array([buffer.getvalue()], dtype=object)
        out = loaded.signatures["serving_bytes"](image_bytes=webp, style_weights=weights)
        decoded = _decode_pngs(out["stylized_image_bytes"].numpy())
        assert np.abs(decoded / 255.0 - ref).max() <= 0.5 / 255 + 1e-5
        out = loaded.signatures["stylize_bytes_advanced"](
            image_bytes=webp, style_weights=weights, strength=np.array([1.0], np.float32),
            preserve_colors=np.array([False]))
        assert np.array_equal(_decode_pngs(out["stylized_image_bytes"].numpy()), decoded)


def test_refuses_a_version_of_another_model(tiny, tmp_path):
    model, model_config, train_dir, version_dir = tiny
    base = os.path.dirname(version_dir)
    # Same shapes, other names: a retrained model is a fine new version.
    export_lib.check_same_model(base, config_lib.ModelConfig(num_styles=NUM_STYLES, alpha=0.25))
    for other, what in ((config_lib.ModelConfig(num_styles=3, alpha=0.25), "num_styles 2 there"),
                        (config_lib.ModelConfig(num_styles=2, alpha=0.5), "alpha 0.25 there")):
        with pytest.raises(export_lib.ExportError, match=what) as info:
            export_lib.export_saved_model(model, other, base)
        assert "--allow_different_model" in str(info.value)
    assert sorted(os.listdir(base)) == ["1"]  # Refused before anything was written.
    # Unreadable metadata in an existing version: named, one line, no JSON traceback.
    broken = tmp_path / "exports"
    shutil.copytree(version_dir, broken / "1")
    for sub in ("assets", "assets.extra"):
        (broken / "1" / sub / "config.json").write_text('{"model": ')
    with pytest.raises(export_lib.ExportError, match=r"cannot compare with .*config.json"):
        export_lib.check_same_model(str(broken), model_config)
    with pytest.raises(checkpoints.CheckpointError, match="unreadable export metadata"):
        stylizer.load_export(str(broken))
    assert export.main(["export", f"--checkpoint={train_dir}", f"--export_dir={broken}",
                        "--warmup_size=0"]) == 2


@pytest.mark.parametrize("signature,inputs,message", [
    ("serving_default", {"image": np.zeros((1, 8, 8, 4), np.float32),
                         "style_weights": np.array([[1.0, 0.0]], np.float32)}, "3 channels"),
    ("serving_default", {"image": np.zeros((1, 8, 8, 3), np.float32),
                         "style_weights": np.ones((1, 3), np.float32)}, "num_styles=2"),
    ("serving_default", {"image": np.zeros((1, 8, 8, 3), np.float32),
                         "style_weights": np.array([[np.nan, 1.0]], np.float32)}, "finite"),
    ("serving_default", {"image": np.zeros((2, 8, 8, 3), np.float32),
                         "style_weights": np.array([[1.0, 0.0]], np.float32)}, "one entry per"),
    ("stylize_advanced", {"image": np.zeros((1, 8, 8, 3), np.float32),
                          "style_weights": np.array([[1.0, 0.0]], np.float32),
                          "strength": np.array([1.5], np.float32),
                          "preserve_colors": np.array([False])}, "strength must be in"),
    ("stylize_map", {"image": np.zeros((1, 8, 8, 3), np.float32),
                     "style_map": np.ones((1, 8, 8, 5), np.float32),
                     "strength": np.array([1.0], np.float32)}, "style_map must have num_styles"),
    ("stylize_map", {"image": np.zeros((1, 8, 8, 3), np.float32),
                     "style_map": np.ones((1, 4, 4, 2), np.float32),
                     "strength": np.array([1.0], np.float32)},
     "same height and width as the image"),
    # Ranks and empty batches, fed as TF Serving feeds them (no shape check before the
    # graph): once "slice index 3 of dimension 0 out of bounds", or a rank-5 output.
    ("serving_default", {"image": np.zeros((8, 8, 3), np.float32),
                         "style_weights": np.array([[1.0, 0.0]], np.float32)},
     "image must have rank 4"),
    ("serving_default", {"image": np.zeros((0, 8, 8, 3), np.float32),
                         "style_weights": np.zeros((0, 2), np.float32)},
     "image must hold at least one image"),
    ("serving_default", {"image": np.zeros((1, 8, 8, 3), np.float32),
                         "style_weights": np.array([1.0, 0.0], np.float32)},
     "style_weights must have rank 2"),
    ("stylize_advanced", {"image": np.zeros((1, 8, 8, 3), np.float32),
                          "style_weights": np.array([[1.0, 0.0]], np.float32),
                          "strength": np.array([1.0], np.float32),
                          "preserve_colors": np.array([[True]])},
     "preserve_colors must have rank 1"),
    ("stylize_advanced", {"image": np.zeros((1, 8, 8, 3), np.float32),
                          "style_weights": np.array([[1.0, 0.0]], np.float32),
                          "strength": np.float32(1.0), "preserve_colors": np.array([False])},
     "strength must have rank 1"),
    ("stylize_map", {"image": np.zeros((1, 8, 8, 3), np.float32),
                     "style_map": np.ones((1, 8, 2), np.float32),
                     "strength": np.array([1.0], np.float32)}, "style_map must have rank 4"),
    ("serving_bytes", {"image_bytes": np.array([[b"x"]], dtype=object),
                       "style_weights": np.array([[1.0, 0.0]], np.float32)},
     "image_bytes must have rank 1"),
    # Issue 28 item 20: an empty batch of encoded images once failed in the pixel cap's
    # ArgMax; NaN pixels gave a NaN (black) image with an OK status.
    ("serving_bytes", {"image_bytes": np.array([], dtype=object),
                       "style_weights": np.zeros((0, 2), np.float32)},
     "image_bytes must hold at least one image"),
    ("serving_default", {"image": np.full((1, 8, 8, 3), np.nan, np.float32),
                         "style_weights": np.array([[1.0, 0.0]], np.float32)},
     "image must hold finite values"),
    ("stylize_map", {"image": np.full((1, 8, 8, 3), np.inf, np.float32),
                     "style_map": np.ones((1, 8, 8, 2), np.float32),
                     "strength": np.array([1.0], np.float32)}, "image must hold finite values"),
    # Huge finite weights: NaN (an all-black PNG) once, from about 1e19.
    ("serving_default", {"image": np.zeros((1, 8, 8, 3), np.float32),
                         "style_weights": np.array([[1e19, 0.0]], np.float32)},
     "style_weights must be at most 1e\\+06"),
    ("stylize_map", {"image": np.zeros((1, 8, 8, 3), np.float32),
                     "style_map": np.full((1, 8, 8, 2), -2e6, np.float32),
                     "strength": np.array([1.0], np.float32)}, "style_map must be at most"),
])
def test_bad_inputs_are_invalid_argument_naming_the_problem(loaded, signature, inputs, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures[signature](**inputs)


def test_call_forms(tiny, loaded):
    model = tiny[0]
    image, weights = _inputs()
    ref = model(image, weights).numpy()
    np.testing.assert_allclose(loaded(image, weights).numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(loaded((image, weights)).numpy(), ref, atol=1e-5)


# ---------------------------------------------------------------------------------------
# Other loaders.


def test_hub_load_and_keras_layer(tiny):
    import tensorflow_hub as hub
    import tf_keras

    model, _, _, version_dir = tiny
    image, weights = _inputs()
    ref = model(image, weights).numpy()
    np.testing.assert_allclose(hub.load(version_dir)(image, weights).numpy(), ref, atol=1e-5)

    sig_layer = hub.KerasLayer(version_dir, signature="serving_default",
                               output_key="stylized_image")
    out = sig_layer({"image": tf.constant(image), "style_weights": tf.constant(weights)})
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)

    # hub.KerasLayer without a signature calls `__call__` with one (image, weights) tuple;
    # trainable=True fine-tunes the exported weights inside a tf_keras model.
    layer = hub.KerasLayer(version_dir, trainable=True)
    image_in = tf_keras.Input([None, None, 3])
    weights_in = tf_keras.Input([NUM_STYLES])
    keras2_model = tf_keras.Model([image_in, weights_in], layer((image_in, weights_in)))
    np.testing.assert_allclose(keras2_model([image, weights]).numpy(), ref, atol=1e-5)
    assert len(layer.trainable_weights) == len(model.trainable_variables)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras2_model([image, weights]))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(g is not None for g in grads)
    gamma_grads = [g for g, v in zip(grads, layer.trainable_weights) if "gamma" in v.name]
    assert gamma_grads and any(float(tf.reduce_max(tf.abs(g))) > 0 for g in gamma_grads)


def test_keras3_tfsmlayer(tiny):
    import keras

    model, _, _, version_dir = tiny
    image, weights = _inputs()
    layer = keras.layers.TFSMLayer(version_dir, call_endpoint="__call__")
    ref = model(image, weights).numpy()
    np.testing.assert_allclose(np.asarray(layer((image, weights))), ref, atol=1e-5)
    image_in = keras.Input([None, None, 3])
    weights_in = keras.Input([NUM_STYLES])
    functional = keras.Model([image_in, weights_in], layer((image_in, weights_in)))
    np.testing.assert_allclose(np.asarray(functional([image, weights])), ref, atol=1e-5)


def test_tf1_session_loader_runs_every_signature_and_the_warmup_requests(tiny, loaded):
    """The path TF Serving's C++ loader mirrors: tag "serve", SignatureDef tensor names."""
    from tensorflow_serving.apis import prediction_log_pb2

    version_dir = tiny[3]
    image, weights = _inputs(height=16, width=20)
    pngs = np.array([_png(image[0]), _png(image[1])], dtype=object)
    strength = np.array([0.5, 1.0], np.float32)
    preserve = np.array([True, False])
    style_map = np.ones((2, 16, 20, NUM_STYLES), np.float32) / NUM_STYLES
    requests = {
        "serving_default": {"image": image, "style_weights": weights},
        "serving_bytes": {"image_bytes": pngs, "style_weights": weights},
        "stylize_advanced": {"image": image, "style_weights": weights, "strength": strength,
                             "preserve_colors": preserve},
        "stylize_bytes_advanced": {"image_bytes": pngs, "style_weights": weights,
                                   "strength": strength, "preserve_colors": preserve},
        "stylize_map": {"image": image, "style_map": style_map, "strength": strength},
    }
    wanted = {name: {k: v.numpy() for k, v in loaded.signatures[name](**inputs).items()}
              for name, inputs in requests.items()}
    warmup = []
    for record in tf.data.TFRecordDataset(
            os.path.join(version_dir, "assets.extra", export_warmup.WARMUP_FILENAME)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        warmup.append(log.predict_log.request)
    assert [r.model_spec.signature_name for r in warmup] == ["serving_default", "serving_bytes"]
    assert all(r.model_spec.name == export_warmup.DEFAULT_MODEL_NAME for r in warmup)

    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], version_dir)
        signatures = meta_graph.signature_def
        assert set(SIGNATURE_NAMES) <= set(signatures)

        def run(name, inputs):
            sig = signatures[name]
            assert sig.method_name == "tensorflow/serving/predict"
            assert set(sig.inputs) == set(inputs)
            feeds = {sig.inputs[k].name: v for k, v in inputs.items()}
            fetches = {k: v.name for k, v in sig.outputs.items()}
            return session.run(fetches, feeds)

        for name, inputs in requests.items():
            got = run(name, inputs)
            want = wanted[name]
            assert set(got) == set(want)
            for key, value in got.items():
                if value.dtype == object:  # PNG bytes: compare the pixels.
                    value, want_value = _decode_pngs(value), _decode_pngs(want[key])
                    assert np.abs(value.astype(int) - want_value).max() <= 1
                else:
                    np.testing.assert_allclose(value, want[key], atol=1e-5)

        for request in warmup:
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            out = run(request.model_spec.signature_name, inputs)
            assert all(len(v) == 1 for v in out.values())

        with pytest.raises(tf.errors.InvalidArgumentError, match="3 channels"):
            run("serving_default", {"image": np.zeros((1, 8, 8, 1), np.float32),
                                    "style_weights": weights[:1]})


def test_saved_model_cli_run(tiny, loaded, tmp_path):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    assert os.path.exists(cli), "saved_model_cli is installed with tensorflow"
    image, _ = _inputs(batch=1)
    np.save(tmp_path / "x.npy", image)
    result = subprocess.run(
        [cli, "run", "--dir", tiny[3], "--tag_set", "serve", "--signature_def",
         "serving_default", "--inputs", f"image={tmp_path / 'x.npy'}",
         "--input_exprs", "style_weights=[[0.0,1.0]]", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    got = np.load(tmp_path / "out" / "stylized_image.npy")
    want = loaded.signatures["serving_default"](
        image=image, style_weights=np.array([[0.0, 1.0]], np.float32))["stylized_image"]
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------
# load_stylizer (used by the stylize command for SavedModel paths).


def test_load_stylizer(tiny):
    model, model_config, _, version_dir = tiny
    stylize, got_config = stylizer.load_export(os.path.dirname(version_dir))
    assert got_config == model_config
    image, weights = _inputs()
    ref = model(image, weights).numpy()
    np.testing.assert_allclose(stylize(image, weights).numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(stylize(image, np.array([0, 1], np.int32)).numpy(), ref,
                               atol=1e-5)
    strength = np.array([0.25, 0.75], np.float32)
    np.testing.assert_allclose(stylize(image, weights, strength).numpy(),
                               model(image, weights, strength).numpy(), atol=1e-5)
    style_map = np.ones((2, 20, 24, NUM_STYLES), np.float32) * 0.5
    np.testing.assert_allclose(stylize(image, style_map).numpy(),
                               model(image, style_map).numpy(), atol=1e-5)

    in_graph = tf.function(lambda x, w: stylize(x, w))
    np.testing.assert_allclose(in_graph(image, weights).numpy(), ref, atol=1e-5)

    with pytest.raises(checkpoints.CheckpointError, match="disagrees"):
        stylizer.load_export(version_dir, num_styles=5)
    assert stylizer.is_saved_model(version_dir)
    assert not stylizer.is_saved_model(tiny[2])
    with pytest.raises(checkpoints.CheckpointError, match="not a SavedModel"):
        stylizer.load_export(tiny[2])


# ---------------------------------------------------------------------------------------
# The command line, and parity with the original Magenta code.


def test_cli_exports_magenta_checkpoint_with_fixture_parity(fixtures_dir, tmp_path, capsys):
    fixture = fixtures_dir / "magenta" / "nstyle_a05_s3"
    base = tmp_path / "models" / "magenta_style"
    (base / "3").mkdir(parents=True)
    (base / "3" / "keep.txt").write_text("an older version")
    status = export.main(["export", f"--checkpoint={fixture / 'model.ckpt'}",
                          f"--export_dir={base}", "--warmup_size=16"])
    assert status == 0, capsys.readouterr().err
    assert sorted(os.listdir(base)) == ["3", "4"]
    assert (base / "3" / "keep.txt").read_text() == "an older version"

    serve = tf.saved_model.load(str(base / "4")).signatures["serving_default"]
    content = tf.io.decode_png(tf.io.read_file(str(fixture / "content.png")), channels=3)
    content = (tf.cast(content, tf.float32) / 255.0).numpy()[None]
    expected = np.load(fixture / "expected_styles.npy")
    # One batch, three different weight rows: each example gets its own style.
    out = serve(image=np.repeat(content, 3, axis=0),
                style_weights=np.eye(3, dtype=np.float32))["stylized_image"].numpy()
    assert np.abs(out - expected).max() < 1e-4
    mixture = serve(image=content, style_weights=np.array([[0.2, 0.0, 0.8]], np.float32))
    assert np.abs(mixture["stylized_image"].numpy()
                  - np.load(fixture / "expected_mixture.npy")).max() < 1e-4

    # Same version again: refused, nothing changed.
    status = export.main(["export", f"--checkpoint={fixture / 'model.ckpt'}",
                          f"--export_dir={base}", "--version=4"])
    assert status == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err


@pytest.mark.parametrize("argv,message", [
    (["--export_dir=x"], "--checkpoint is required"),
    (["--checkpoint=x"], "--export_dir is required"),
    (["--checkpoint=/nonexistent/ckpt", "--export_dir=x"], "--checkpoint"),
    (["--checkpoint=x", "--export_dir=y", "--version=0"], "version"),
    (["--checkpoint=x", "--export_dir=y", "--warmup_size=20000"], "warmup_size"),
])
def test_cli_usage_errors(argv, message, capsys):
    assert export.main(["export"] + argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err


def test_export_does_not_log_the_five_rename_notices(tiny, tmp_path):
    import logging
    from absl import logging as absl_logging

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep(level=logging.DEBUG)
    logger = absl_logging.get_absl_logger()
    old_verbosity = absl_logging.get_verbosity()
    logger.addHandler(handler)
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        model, model_config, _, _ = tiny
        export_lib.export_saved_model(model, model_config, str(tmp_path / "quiet"),
                                      warmup_size=0)
        absl_logging.info("after the export")
    finally:
        logger.removeHandler(handler)
        absl_logging.set_verbosity(old_verbosity)
    assert not [r for r in records if "will be renamed" in r]
    assert "after the export" in records  # The filter is gone afterwards.
