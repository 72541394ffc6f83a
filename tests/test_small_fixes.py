"""Issue 28's small ones: stylize's comma list of inputs, repeated style names, semantic
maps above --max_pixels, "wrote 1 style", the Magenta checkpoint tools' one-line refusal
of an existing output."""
import os
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from magenta_style import config as config_lib
from magenta_style.data import style_dataset
from magenta_style.media import images
from magenta_style.optimization import optimize_lib

REPO = pathlib.Path(__file__).resolve().parent.parent
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
ENV.pop("TF_CPP_MIN_LOG_LEVEL", None)


def _png(path, size=(16, 16)):
    Image.fromarray(np.full((*size, 3), 120, np.uint8)).save(path)
    return str(path)


def test_expand_inputs_takes_a_comma_list(tmp_path):
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png")
    folder = tmp_path / "more"
    folder.mkdir()
    c = _png(folder / "c.png")
    assert images.expand_inputs(f"{b}, {folder},{a}") == [b, c, a]
    assert images.expand_inputs(f"{a},{a}") == [a]
    with pytest.raises(images.ImageError, match="empty item"):
        images.expand_inputs(f"{a},,{b}")
    with pytest.raises(images.ImageError, match="no such file"):
        images.expand_inputs(f"{a},{tmp_path / 'missing.png'}")
    comma_file = _png(tmp_path / "x,y.png")  # An existing file with a comma is one file.
    assert images.expand_inputs(comma_file) == [comma_file]


def test_repeated_style_names_are_refused(tmp_path):
    files = [_png(tmp_path / "a.png"), _png(tmp_path / "b.png")]
    with pytest.raises(style_dataset.StyleDatasetError, match="repeated: monet"):
        style_dataset.write_style_dataset(str(tmp_path / "s.tfrecord"), files,
                                          names=["monet", "monet"])
    assert not (tmp_path / "s.tfrecord").exists()


@pytest.mark.parametrize("suffix", [".npy", ".png"])
def test_semantic_map_above_max_pixels_is_refused_unread(tmp_path, suffix):
    content = _png(tmp_path / "content.png", (32, 32))
    style = _png(tmp_path / "style.png", (32, 32))
    big = tmp_path / f"map{suffix}"
    if suffix == ".npy":
        np.save(big, np.zeros((100, 100), np.int64))
    else:
        Image.fromarray(np.zeros((100, 100), np.uint8)).save(big)
    cfg = config_lib.OptimizeConfig(
        content_image=content, style_images=(style,), style_loss="patch",
        style_semantic_map=str(big), content_semantic_map=str(big), max_pixels=5000,
        vgg_checkpoint="standin:0", image_size=32, iterations=1)
    with pytest.raises(optimize_lib.OptimizeError, match="100x100, above the pixel cap of 5000"):
        optimize_lib.optimize(cfg)


@pytest.mark.slow
def test_tools_one_line_errors_and_singular_style(tmp_path):
    style = _png(tmp_path / "only.png", (24, 24))
    out = tmp_path / "one.tfrecord"
    result = subprocess.run(
        [sys.executable, "tools/create_style_dataset.py", f"--style_files={style}",
         f"--output_file={out}", "--nocompute_gram_matrices"], cwd=REPO, env=ENV,
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"wrote 1 style to {out}: only" in result.stdout
    # An existing output: one line and exit status 2, not the whole usage text and 1.
    (tmp_path / "m.ckpt.index").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "tools/export_magenta_checkpoint.py", f"--checkpoint={tmp_path}",
         f"--output={tmp_path / 'm.ckpt'}"], cwd=REPO, env=ENV, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "already exists" in lines[0], result.stderr
    (tmp_path / "conv").mkdir()
    (tmp_path / "conv" / config_lib.CONFIG_FILENAME).write_text("{}")
    result = subprocess.run(
        [sys.executable, "tools/convert_magenta_checkpoint.py",
         f"--magenta_checkpoint={tmp_path / 'none'}", f"--output_dir={tmp_path / 'conv'}"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "already holds a converted model" in lines[0], result.stderr


def test_boe_has_its_own_measured_bytes_per_pixel(caplog):
    from magenta_style.media import limits
    magenta = limits.bytes_per_pixel(config_lib.ModelConfig(2, 1.0))
    for generator, measured in (("boe_yuv444", 1993.0), ("boe_yuv420", 1277.0)):
        model_config = config_lib.ModelConfig(1, 1.0, generator=generator)
        assert limits.bytes_per_pixel(model_config) == measured != magenta
    assert 979.0 < limits.bytes_per_pixel(
        config_lib.ModelConfig(1, 0.75, generator="boe_yuv444")) < 1993.0
    assert "no measured memory cost" not in caplog.text
