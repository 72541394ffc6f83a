"""Exports of the arbitrary-style model: TF Hub's calls, the signatures, the style bank."""
import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from magenta_style import export
from magenta_style import stylize
from magenta_style.inference import style_images
from magenta_style.inference import stylizer
from magenta_style.networks import arbitrary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_arbitrary, tiny_arbitrary_export):
    """The session's tiny arbitrary network, its checkpoint and its export
    (--style_image_size=48), with two paintings."""
    root = tmp_path_factory.mktemp("arbitrary_export")
    styles = root / "paintings"
    styles.mkdir()
    rng = np.random.default_rng(1)
    for name, shape in (("monet.jpg", (60, 64, 3)), ("klimt.jpg", (64, 50, 3))):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(styles / name)
    return {"root": root, "network": tiny_arbitrary["network"],
            "version_dir": tiny_arbitrary_export, "styles": str(styles),
            "checkpoint": tiny_arbitrary["checkpoint"]}


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


def test_stylize_takes_the_export_as_it_takes_the_checkpoint(exported, tmp_path, capsys):
    """stylize --checkpoint=EXPORT: the same --style_images, --style_mix, --style_image_size
    and Magenta --strength as from the checkpoint, through the export's predict_style and
    transfer signatures; per-pixel maps and tiling need the checkpoint (one line)."""
    rng = np.random.default_rng(7)
    photo = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "out"
    code = stylize.main(["stylize", f"--checkpoint={exported['version_dir']}",
                         f"--input_image={photo}", f"--output_dir={out}",
                         f"--style_images={exported['styles']}", "--style_mix=1,3",
                         "--style_image_size=48", "--strength=0.6"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert os.listdir(out) == ["photo_klimt_250_monet_750_s600.png"]
    network = exported["network"]
    paths = style_images.expand(exported["styles"])
    bottlenecks = style_images.bottlenecks(network, style_images.load(paths, 48))
    content = np.asarray(Image.open(photo), np.float32)[None] / 255.0
    content_bn = network.predict_style(arbitrary.prepare_style_image(content, 48))
    mixed = arbitrary.mix_with_content((0.25 * bottlenecks[0] + 0.75 * bottlenecks[1])[None],
                                       content_bn, 0.6)
    expected = network.transfer(content, mixed).numpy()[0]
    got = np.asarray(Image.open(out / "photo_klimt_250_monet_750_s600.png"), np.float32) / 255
    assert np.abs(got - expected).max() <= 1 / 255 + 1e-5
    mask = tmp_path / "mask.png"
    Image.new("L", (8, 8), 255).save(mask)
    for flags, message in (
            ([f"--style_map={mask}", "--style_map_colors=0:0,255:1"],
             "per-pixel style maps need the arbitrary-style checkpoint"),
            (["--max_tile_pixels=5000"], "need a checkpoint"),
            (["--compute_dtype=bfloat16"], "exported to compute in float32")):
        code = stylize.main(["stylize", f"--checkpoint={exported['version_dir']}",
                             f"--input_image={photo}", f"--output_dir={tmp_path / 'no'}",
                             f"--style_images={exported['styles']}", "--style_image_size=48"]
                            + flags)
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(tmp_path / "no")


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
