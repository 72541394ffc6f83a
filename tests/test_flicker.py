"""Tests for the flicker metric (video.panning_clip / warping_error) and tools/flicker_metric.py."""
import os
import sys

import numpy as np
import pytest

from magenta_style import config
from magenta_style.media import video
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _canvas(height=40, width=60):
    rng = np.random.default_rng(0)
    return rng.uniform(size=(height, width, 3)).astype(np.float32)


def test_panning_clip_moves_by_the_shift():
    clip = video.panning_clip(_canvas(), 5, (16, 20), shift=(2, 3))
    assert clip.shape == (5, 16, 20, 3)
    np.testing.assert_array_equal(clip[1, :-2, :-3], clip[0, 2:, 3:])
    assert video.warping_error(clip, (2, 3)) == 0.0
    assert video.temporal_difference(clip) > 0.1  # Moving texture: raw differences are big.


def test_warping_error_sees_flicker_and_noise():
    clip = video.panning_clip(_canvas(), 6, (16, 16), shift=(0, 1))
    flicker = clip * np.array([1.0, 0.9, 1.0, 0.9, 1.0, 0.9], np.float32)[:, None, None, None]
    assert video.warping_error(flicker, (0, 1)) > 0.02
    noisy = video.panning_clip(_canvas(), 6, (16, 16), shift=(0, 1), noise_stddev=0.05)
    # Two independent N(0, s) noises differ by mean |N(0, s*sqrt(2))| = 2s/sqrt(pi).
    assert video.warping_error(noisy, (0, 1), margin=2) == pytest.approx(
        2 * 0.05 / np.sqrt(np.pi), rel=0.2)


def test_warping_error_margin_and_errors():
    clip = np.zeros([3, 10, 10, 1], np.float32)
    clip[1, 0, :] = 1.0  # A change only in the border row.
    assert video.warping_error(clip, (0, 1), margin=1) == 0.0
    assert video.warping_error(clip, (0, 1)) > 0
    with pytest.raises(ValueError, match="nothing to compare"):
        video.warping_error(clip, (0, 1), margin=5)
    with pytest.raises(ValueError, match="too small"):
        video.panning_clip(_canvas(10, 10), 4, (8, 8), shift=(1, 1))


def test_tool_prints_one_line_per_checkpoint(run_command, tmp_path):
    model_config = config.ModelConfig(2, 0.25)
    checkpoints.save_model(transformer.build_transformer(model_config), model_config,
                           str(tmp_path / "m"))
    result = run_command(
        [sys.executable, "tools/flicker_metric.py", f"--checkpoint={tmp_path / 'm'}",
         "--frames=4", "--size=32", "--margin=4"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[1].startswith("content: warping error")
    assert lines[2].startswith(f"{tmp_path / 'm'}: warping error")
    assert float(lines[2].split()[3].rstrip(",")) > 0
