"""Tests for magenta_style.data.style_dataset and tools/create_style_dataset.py."""
import json
import os
import pathlib
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from magenta_style.data import style_dataset
from magenta_style.networks import losses
from magenta_style.networks import vgg

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
TOOL = REPO_ROOT / "tools" / "create_style_dataset.py"


@pytest.fixture(scope="module")
def styledata(fixtures_dir):
    return fixtures_dir / "magenta" / "styledata_s7"


@pytest.fixture(scope="module")
def written(styledata, seed7_vgg, tmp_path_factory):
    """Our writer's dataset of the fixture's two style images."""
    path = tmp_path_factory.mktemp("ours") / "styles.tfrecord"
    files = [str(styledata / "style_0.png"), str(styledata / "style_1.png")]
    calls = []
    names = style_dataset.write_style_dataset(
        str(path), files, vgg_model=seed7_vgg,
        progress=lambda done, total, p: calls.append((done, total, p)))
    assert names == ["style_0", "style_1"]
    assert calls == [(1, 2, files[0]), (2, 2, files[1])]
    return path


def _assert_grams_close(got, ref, name):
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 1e-4 * scale, name


def _save_png(path, size=(40, 36), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3))
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return str(path)


# ------------------------------------------------------------------ Magenta's file


def test_reads_magenta_dataset_and_grams_agree_with_json(styledata):
    info = style_dataset.read_style_dataset(str(styledata / "style_dataset.tfrecord"),
                                            with_images=True)
    summary = json.loads((styledata / "style_dataset.json").read_text())
    assert info.num_styles == len(summary["examples"]) == 2
    assert info.names == ("0", "1")  # Magenta's files carry no names.
    assert set(info.grams) == set(vgg.END_POINTS)
    for example in summary["examples"]:
        label = example["label"]
        for name, total in example["gram_sums"].items():
            channels = vgg.END_POINT_CHANNELS[name]
            gram = info.grams[name][label]
            assert gram.shape == (channels, channels)
            np.testing.assert_allclose(gram, gram.T, rtol=1e-5, atol=1e-6 * np.abs(gram).max())
            assert float(gram.sum(dtype=np.float64)) == pytest.approx(total, rel=1e-4), name
    for image in info.images:
        assert image.shape == (64, 64, 3) and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
    assert style_dataset.style_names(str(styledata / "style_dataset.tfrecord")) == (2, ("0", "1"))


def test_writer_reproduces_magenta_grams(written, styledata):
    ours = style_dataset.read_style_dataset(str(written))
    magenta = style_dataset.read_style_dataset(str(styledata / "style_dataset.tfrecord"))
    for name in vgg.END_POINTS:
        for label in range(2):
            _assert_grams_close(ours.grams[name][label], magenta.grams[name][label],
                                f"{name} label {label}")


def test_round_trip(written, styledata, seed7_vgg):
    info = style_dataset.read_style_dataset(str(written), with_images=True)
    assert info.num_styles == 2 and info.names == ("style_0", "style_1")
    for label in range(2):
        original = np.asarray(Image.open(styledata / f"style_{label}.png"), np.float32) / 255.0
        # image_raw is a JPEG re-encoding: close to the file, not equal.
        assert np.abs(info.images[label] - original).mean() < 0.015
        # The stored Grams are exactly those of the file's pixels, not of the JPEG.
        grams = style_dataset.compute_grams(seed7_vgg, original)
        for name in vgg.END_POINTS:
            np.testing.assert_array_equal(info.grams[name][label], grams[name])
    assert style_dataset.style_names(str(written)) == (2, ("style_0", "style_1"))


def _magenta_spec():
    """The fixed feature spec Magenta's style image reader parses with (no style_name)."""
    spec = {"label": tf.io.FixedLenFeature([], tf.int64),
            "image_raw": tf.io.FixedLenFeature([], tf.string)}
    for name, channels in vgg.END_POINT_CHANNELS.items():
        spec[name] = tf.io.FixedLenFeature([channels * channels], tf.float32)
    return spec


def test_magenta_spec_parses_our_records_ignoring_the_name(written):
    raw = next(iter(tf.data.TFRecordDataset(str(written))))
    assert style_dataset.NAME_FEATURE in tf.train.Example.FromString(raw.numpy()).features.feature
    parsed = tf.io.parse_single_example(raw, _magenta_spec())
    assert set(parsed) == set(_magenta_spec())
    assert int(parsed["label"]) == 0
    assert parsed["vgg_16/conv4"].shape == (512 * 512,)
    named = tf.io.parse_single_example(raw, style_dataset.feature_spec(with_name=True))
    assert named[style_dataset.NAME_FEATURE].numpy() == b"style_0"


def test_parse_example_eager_dataset_and_tf_function(written, styledata):
    magenta_file = str(styledata / "style_dataset.tfrecord")
    reference = style_dataset.read_style_dataset(magenta_file, with_images=True)
    raw = next(iter(tf.data.TFRecordDataset(magenta_file)))
    label, image, grams = style_dataset.parse_example(raw)  # Eager.
    assert int(label) == 0 and image.dtype == tf.float32 and image.shape == (64, 64, 3)
    np.testing.assert_array_equal(image.numpy(), reference.images[0])
    np.testing.assert_array_equal(grams["vgg_16/pool3"].numpy(), reference.grams["vgg_16/pool3"][0])

    records = list(style_dataset.make_dataset(magenta_file))  # Inside tf.data.
    assert [int(r[0]) for r in records] == [0, 1]
    np.testing.assert_array_equal(records[1][2]["vgg_16/conv1"].numpy(),
                                  reference.grams["vgg_16/conv1"][1])

    @tf.function
    def gram_norms(serialized):
        _, parsed_image, parsed = style_dataset.parse_example(serialized)
        return tf.reduce_mean(parsed_image), tf.reduce_sum(parsed["vgg_16/conv2"])

    mean, total = gram_norms(raw)
    assert float(mean) == pytest.approx(float(reference.images[0].mean()), rel=1e-5)
    assert float(total) == pytest.approx(float(reference.grams["vgg_16/conv2"][0].sum()),
                                         rel=1e-5)
    ours = next(iter(style_dataset.make_dataset(str(written), with_grams=False)))
    assert ours[2] == {} and ours[1].shape == (64, 64, 3)


# ------------------------------------------------------------------ writer options


def test_style_size_and_names(tmp_path, seed7_vgg):
    wide = _save_png(tmp_path / "wide.png", size=(80, 48), seed=1)
    path = tmp_path / "sized.tfrecord"
    names = style_dataset.write_style_dataset(str(path), [wide], vgg_model=seed7_vgg,
                                              style_size=32, names=["Wide One"])
    assert names == ["Wide One"]
    info = style_dataset.read_style_dataset(str(path), with_images=True)
    assert info.images[0].shape == (32, 53, 3)
    assert info.names == ("Wide One",)
    resized = style_dataset.load_style_image(wide, style_size=32)
    expected = style_dataset.compute_grams(seed7_vgg, resized)
    np.testing.assert_array_equal(info.grams["vgg_16/conv2"][0], expected["vgg_16/conv2"])


def test_without_gram_matrices(tmp_path):
    (tmp_path / "x").mkdir()
    files = [_save_png(tmp_path / "a.png", seed=2), _save_png(tmp_path / "b.png", seed=3),
             _save_png(tmp_path / "x" / "a.png", seed=4)]
    path = tmp_path / "nograms.tfrecord"
    names = style_dataset.write_style_dataset(str(path), files)
    assert names == ["a", "b", "a_2"]
    info = style_dataset.read_style_dataset(str(path))
    assert info.num_styles == 3 and info.grams is None
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # Not mkstemp's private 0600.


def test_grayscale_and_rgba_images_become_rgb(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((33, 34), 128, np.uint8), "L").save(gray)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.full((33, 34, 4), 200, np.uint8), "RGBA").save(rgba)
    for path, value in ((gray, 128), (rgba, 200)):
        image = style_dataset.load_style_image(str(path))
        assert image.shape == (33, 34, 3)
        np.testing.assert_allclose(image, value / 255.0, rtol=1e-6)


# ------------------------------------------------------------------ errors


def test_unreadable_image_leaves_no_output(tmp_path, seed7_vgg):
    good = _save_png(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not an image")
    output = tmp_path / "out.tfrecord"
    with pytest.raises(style_dataset.StyleDatasetError, match="cannot read style image .*bad.png"):
        style_dataset.write_style_dataset(str(output), [good, str(bad)], vgg_model=seed7_vgg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png", "good.png"]
    # An existing output survives a failed run untouched.
    output.write_bytes(b"previous")
    with pytest.raises(style_dataset.StyleDatasetError, match="no such file"):
        style_dataset.write_style_dataset(str(output), [str(tmp_path / "gone.png")])
    assert output.read_bytes() == b"previous"


def test_too_small_image_and_bad_names(tmp_path, seed7_vgg):
    small = _save_png(tmp_path / "small.png", size=(40, 20))
    with pytest.raises(style_dataset.StyleDatasetError, match="small.png is 40x20"):
        style_dataset.write_style_dataset(str(tmp_path / "o.tfrecord"), [small],
                                          vgg_model=seed7_vgg)
    with pytest.raises(style_dataset.StyleDatasetError, match="2 style names given for 1"):
        style_dataset.write_style_dataset(str(tmp_path / "o.tfrecord"), [small],
                                          names=["a", "b"])
    assert not (tmp_path / "o.tfrecord").exists()


def test_reader_rejects_bad_files(tmp_path):
    with pytest.raises(style_dataset.StyleDatasetError, match="no such file"):
        style_dataset.read_style_dataset(str(tmp_path / "none.tfrecord"))
    junk = tmp_path / "junk.tfrecord"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(style_dataset.StyleDatasetError, match="cannot read style dataset"):
        style_dataset.read_style_dataset(str(junk))
    gapped = tmp_path / "gapped.tfrecord"
    with tf.io.TFRecordWriter(str(gapped)) as writer:
        for label in (0, 2):
            writer.write(style_dataset.make_example(label, b"jpeg"))
    with pytest.raises(style_dataset.StyleDatasetError, match=r"labels \[0, 2\]"):
        style_dataset.read_style_dataset(str(gapped))


# ------------------------------------------------------------------ the tool


def _run_tool(run_command, *args):
    return run_command([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                       timeout=300, cwd=str(REPO_ROOT))


def test_tool_writes_a_dataset_with_the_standin_logged(run_command, tmp_path, styledata, written):
    output = tmp_path / "out" / "tool.tfrecord"
    result = _run_tool(run_command, "--vgg_checkpoint=standin:7",
                       f"--style_files={styledata}/style_*.png", f"--output_file={output}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "STAND-IN" in result.stderr and "2/2" in result.stderr
    assert "style_0, style_1" in result.stdout
    ours = style_dataset.read_style_dataset(str(output))
    reference = style_dataset.read_style_dataset(str(written))
    assert ours.names == ("style_0", "style_1")
    for name in vgg.END_POINTS:
        np.testing.assert_allclose(ours.grams[name], reference.grams[name], rtol=1e-5,
                                   atol=1e-6 * np.abs(reference.grams[name]).max())


def test_tool_unreadable_image_is_one_line_and_writes_nothing(run_command, tmp_path):
    _save_png(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"GIF89a broken")
    output = tmp_path / "out.tfrecord"
    result = _run_tool(run_command, "--vgg_checkpoint=standin:7",
                       f"--style_files={tmp_path}/*.png", f"--output_file={output}")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines()
              if line.startswith("create_style_dataset: error:")]
    assert len(errors) == 1 and str(tmp_path / "b.png") in errors[0]
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_gram_helper_matches_losses(seed7_vgg):
    image = np.random.default_rng(5).uniform(size=(32, 40, 3)).astype(np.float32)
    grams = style_dataset.compute_grams(seed7_vgg, image)
    features = seed7_vgg(image[None])
    np.testing.assert_array_equal(grams["vgg_16/conv5"],
                                  losses.gram_matrix(features["vgg_16/conv5"])[0].numpy())
