"""Exports of the arbitrary-style model: TF Hub's calls, the signatures, the style bank."""
import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from magenta_style import config
from magenta_style import export
from magenta_style.inference import style_images
from magenta_style.inference import stylizer
from magenta_style.networks import arbitrary
from magenta_style.networks import arbitrary_checkpoints
from magenta_style.serving import export_lib

pytestmark = pytest.mark.slow


def _tiny_network(seed=3):
    model = arbitrary.build_arbitrary(alpha=0.25)
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if v.trainable:
            scale = 0.3 if "StyleNorm" in v.path else 0.1
            v.assign(scale * rng.standard_normal(v.shape).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("arbitrary_export")
    network = _tiny_network()
    cfg = config.ModelConfig(num_styles=1, alpha=0.25, generator="arbitrary")
    arbitrary_checkpoints.save_model(network, cfg, str(root / "model"))
    styles = root / "paintings"
    styles.mkdir()
    rng = np.random.default_rng(1)
    for name, shape in (("monet.jpg", (60, 64, 3)), ("klimt.jpg", (64, 50, 3))):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(styles / name)
    version_dir, _ = export_lib.export_checkpoint(str(root / "model"), str(root / "export"),
                                                  style_image_size=48)
    return {"root": root, "network": network, "version_dir": version_dir,
            "styles": str(styles), "checkpoint": str(root / "model")}


def test_tf_hub_colab_calls(exported):
    import tensorflow_hub as hub  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(2)
    content_image = rng.uniform(size=(1, 40, 56, 3)).astype(np.float32)
    style_image = rng.uniform(size=(1, 300, 280, 3)).astype(np.float32)
    # The Colab's preparation: resize to 256 x 256, then a 3 x 3 average pool.
    style_image = tf.image.resize(style_image, (256, 256), preserve_aspect_ratio=False)
    style_image = tf.nn.avg_pool(style_image, ksize=[3, 3], strides=[1, 1], padding="SAME")
    style_image = style_image.numpy()
    # The Colab's calls, with the export in place of the hub handle.
    hub_module = hub.load(exported["version_dir"])
    outputs = hub_module(tf.constant(content_image), tf.constant(style_image))
    stylized_image = outputs[0]
    assert len(outputs) == 1
    assert stylized_image.shape == (1, 40, 56, 3)
    network = exported["network"]
    expected = network(content_image, style_image).numpy()
    np.testing.assert_allclose(stylized_image.numpy(), expected, atol=1e-5)


def test_signatures_agree_and_check_their_inputs(exported):
    loaded = tf.saved_model.load(exported["version_dir"])
    sigs = loaded.signatures
    assert set(sigs) == {"serving_default", "stylize_strength", "serving_bytes",
                         "predict_style", "transfer"}
    network = exported["network"]
    rng = np.random.default_rng(3)
    image = tf.constant(rng.uniform(size=(2, 32, 36, 3)).astype(np.float32))
    style = tf.constant(rng.uniform(size=(1, 48, 48, 3)).astype(np.float32))
    out = sigs["serving_default"](image=image, style_image=style)["stylized_image"]
    bottleneck = sigs["predict_style"](style_image=style)["style_bottleneck"]
    assert bottleneck.shape == (1, 100)
    np.testing.assert_allclose(bottleneck.numpy(), network.predict_style(style).numpy(),
                               atol=1e-5)
    via_halves = sigs["transfer"](image=image, style_bottleneck=bottleneck)["stylized_image"]
    np.testing.assert_allclose(out.numpy(), via_halves.numpy(), atol=1e-6)
    strength = sigs["stylize_strength"](image=image, style_image=style,
                                        strength=tf.constant([1.0, 0.0]))["stylized_image"]
    np.testing.assert_allclose(strength[0].numpy(), out[0].numpy(), atol=1e-5)
    content_bn = network.predict_style(arbitrary.prepare_style_image(image[1:], 48))
    np.testing.assert_allclose(strength[1].numpy(),
                               network.transfer(image[1:], content_bn).numpy()[0], atol=1e-4)
    png = lambda x: tf.io.encode_png(tf.cast(tf.round(x * 255), tf.uint8))
    encoded = sigs["serving_bytes"](image_bytes=tf.stack([png(image[0])]),
                                    style_image_bytes=tf.stack([png(style[0])]))
    decoded = tf.io.decode_png(encoded["stylized_image_bytes"][0]).numpy()
    assert decoded.shape == (32, 36, 3)
    metadata = json.loads(loaded.metadata().numpy())
    assert metadata["model"]["generator"] == "arbitrary"
    assert "Magenta's" in metadata["arbitrary"]["strength"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 43x43"):
        sigs["serving_default"](image=image, style_image=tf.zeros([1, 30, 48, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="3 channels"):
        sigs["serving_default"](image=image, style_image=tf.zeros([1, 48, 48, 4]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one image or one per"):
        sigs["serving_default"](image=image, style_image=tf.zeros([3, 48, 48, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="strength must be in"):
        sigs["stylize_strength"](image=image, style_image=style, strength=tf.constant([2.0, 0.]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="100 entries"):
        sigs["transfer"](image=image, style_bottleneck=tf.zeros([1, 7]))
    cap = metadata["limits"]["max_pixels_per_request"]
    side = int(np.sqrt(cap)) + 8
    with pytest.raises(tf.errors.InvalidArgumentError, match="exceeds the cap"):
        sigs["predict_style"](style_image=tf.zeros([1, side, side, 3]))


def test_style_bank_is_an_nstyle_export(exported, tmp_path, capsys):
    base = tmp_path / "bank"
    code = export.main(["export", f"--checkpoint={exported['checkpoint']}",
                        f"--export_dir={base}", f"--style_images={exported['styles']}",
                        "--style_image_size=48", "--warmup_size=16"])
    assert code == 0, capsys.readouterr().err
    model, model_config = stylizer.load(str(base))
    assert model_config.num_styles == 2
    assert model_config.style_names == ("klimt", "monet")
    metadata = stylizer.read_metadata(str(base))
    assert metadata["style_bank"]["style_names"] == ["klimt", "monet"]
    assert os.path.exists(base / "1" / "assets.extra" / "tf_serving_warmup_requests")
    network = exported["network"]
    paths = style_images.expand(exported["styles"])
    bottlenecks = style_images.bottlenecks(network, style_images.load(paths, 48))
    rng = np.random.default_rng(4)
    image = rng.uniform(size=(1, 32, 40, 3)).astype(np.float32)
    for s in range(2):
        weights = np.eye(2, dtype=np.float32)[s:s + 1]
        served = model(image, weights).numpy()
        np.testing.assert_allclose(served, network.transfer(image, bottlenecks[s:s + 1]).numpy(),
                                   atol=1e-5)
    # N-style strength: 0 is the photo.
    zero = model(image, np.eye(2, dtype=np.float32)[:1], np.zeros([1], np.float32)).numpy()
    np.testing.assert_allclose(zero, image, atol=1e-6)


def test_export_refuses_style_images_for_nstyle(fixtures_dir, tmp_path, capsys):
    nstyle = fixtures_dir / "magenta" / "nstyle_a05_s3" / "model.ckpt"
    code = export.main(["export", f"--checkpoint={nstyle}", f"--export_dir={tmp_path / 'e'}",
                        f"--style_images={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and "N-style" in err


def test_tflite_two_models_match_the_saved_model(exported):
    import sys  # pylint: disable=import-outside-toplevel
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "tools"))
    import export_tflite  # pylint: disable=import-outside-toplevel
    from ai_edge_litert.interpreter import Interpreter  # pylint: disable=import-outside-toplevel
    loaded = tf.saved_model.load(exported["version_dir"])
    rng = np.random.default_rng(6)
    style = rng.uniform(size=(1, 48, 48, 3)).astype(np.float32)
    image = rng.uniform(size=(1, 32, 32, 3)).astype(np.float32)
    bottleneck = loaded.signatures["predict_style"](style_image=style)["style_bottleneck"].numpy()
    expected = loaded.signatures["transfer"](image=image, style_bottleneck=bottleneck)[
        "stylized_image"].numpy()
    # (quantize, max abs, mean abs) on [0, 1] pixels: float32 is the same model; int8
    # weights (dynamic range) move a random-weight model by about one grey level on average.
    for quantize, worst, mean in (("float32", 1e-4, 1e-5), ("int8", 1.0, 0.03)):
        predict = Interpreter(model_content=export_tflite.convert(
            exported["version_dir"], "predict_style", quantize, (48, 48), loaded=loaded))
        got = predict.get_signature_runner()(style_image=style)["style_bottleneck"]
        scale = max(1.0, np.abs(bottleneck).max())
        assert np.abs(got - bottleneck).mean() < mean * 10 * scale
        transfer = Interpreter(model_content=export_tflite.convert(
            exported["version_dir"], "transfer", quantize, (32, 32), loaded=loaded))
        out = transfer.get_signature_runner()(image=image, style_bottleneck=bottleneck)
        diff = np.abs(out["stylized_image"] - expected)
        assert diff.max() < worst and diff.mean() < mean, (quantize, diff.max(), diff.mean())
    with pytest.raises(export_tflite.UsageError, match="arbitrary-style"):
        export_tflite.convert(exported["version_dir"], "serving_default", "float32", (32, 32),
                              loaded=loaded)
