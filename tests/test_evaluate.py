"""Evaluation: per-style losses, style grid layout, JSON/PNG/TensorBoard outputs, CLI errors."""
import json
import os
import pathlib
import sys

import numpy as np
from PIL import Image
import pytest

from magenta_style import config as config_lib
from magenta_style.data import demo_images
from magenta_style.data import pipeline
from magenta_style.media import images
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer
from magenta_style.training import evaluate_lib

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_style_grid_layout():
    stylized = np.full([3, 2, 8, 8, 3], 0.5, np.float32)
    content = np.zeros([2, 8, 8, 3], np.float32)
    styles = [np.ones([10, 12, 3], np.float32) * 0.25] * 3
    p = evaluate_lib.GRID_PADDING
    grid = evaluate_lib.style_grid(stylized, content, styles)
    assert grid.shape == (3 * (8 + p) + p, 4 * (8 + p) + p, 3)
    np.testing.assert_array_equal(grid[p:p + 8, p:p + 8], 1.0)  # Empty corner.
    np.testing.assert_array_equal(grid[2 * p + 8 + 3, p + 3], 0.0)  # Content cell.
    np.testing.assert_allclose(grid[2 * p + 8 + 3, 2 * p + 8 + 3], 0.5)  # Stylized.
    crossover = np.full([3, 3, 8, 8, 3], 0.5, np.float32)  # 3 styles x 3 style images.
    crossed = evaluate_lib.style_grid(stylized, content, styles, crossover=crossover)
    assert crossed.shape[0] == 6 * (8 + p) + p


@pytest.fixture(scope="module")
def trained(tmp_path_factory, write_demo_data):
    root = tmp_path_factory.mktemp("eval")
    _, _, dataset = write_demo_data(root, num_content=3, num_styles=2, content_size=40)
    model_config = config_lib.ModelConfig(num_styles=2, alpha=0.25, style_names=("a", "b"))
    model = transformer.build_transformer(model_config)
    train_dir = root / "train"
    checkpoints.save_model(model, model_config, str(train_dir), step=7)
    return root, train_dir, dataset


def test_evaluate_checkpoint(trained, tmp_path):
    root, train_dir, dataset = trained
    result = evaluate_lib.evaluate_checkpoint(
        str(train_dir), str(tmp_path), str(root / "content"), style_dataset_file=dataset,
        vgg_checkpoint="standin:0", image_size=32, grid=True, crossover=True, log=lambda _: 0)
    assert result["step"] == 7 and len(result["images"]) == 3
    assert [e["style"] for e in result["losses"]] == [0, 1]
    assert [e["name"] for e in result["losses"]] == ["a", "b"]
    for entry in result["losses"]:
        assert entry["total_loss"] == pytest.approx(
            entry["total_content_loss"] + entry["total_style_loss"], rel=1e-5)
    # Different target Grams per style: different style losses.
    assert result["losses"][0]["total_style_loss"] != result["losses"][1]["total_style_loss"]
    saved = json.loads((tmp_path / "losses_7.json").read_text())
    assert saved["losses"][1]["name"] == "b"
    with Image.open(result["grid"]) as grid:
        # Header row + 3 images + 2 crossover rows; 1 + 2 columns.
        p = evaluate_lib.GRID_PADDING
        assert grid.size == (3 * (32 + p) + p, 6 * (32 + p) + p)
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_evaluate_reports_progress_and_what_is_averaged(trained, tmp_path):
    root, train_dir, dataset = trained
    lines = []
    evaluate_lib.evaluate_checkpoint(
        str(train_dir), str(tmp_path), str(root / "content"), style_dataset_file=dataset,
        vgg_checkpoint="standin:0", image_size=32, grid=True, log=lines.append)
    text = "\n".join(lines)
    assert "each style's mean over the 3 image(s) at 32x32" in text, text
    assert [line.split(" done")[0].strip() for line in lines if " done (" in line] == [
        "style 1/2", "style 2/2"], text
    assert "for the grid" in text and lines[-1].startswith("style grid:"), text


def test_cli_errors_are_one_line(run_command, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = run_command([sys.executable, "-m", "magenta_style.evaluate",
                        f"--checkpoint={tmp_path}", f"--content_images={tmp_path}"],
                       cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    # TensorFlow's C++ start-up may log before absl is configured; ours is one line.
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("magenta_style.evaluate")]
    assert len(lines) == 1 and lines[0].startswith("magenta_style.evaluate: error:"), proc.stderr
    assert proc.stderr.rstrip().endswith(lines[0])
    assert "without a checkpoint" in lines[0]


def test_training_grid_shows_every_quickstart_content_image(trained, tmp_path):
    _, train_dir, dataset = trained
    contents, _ = demo_images.write_demo_images(tmp_path, num_styles=0, content_size=40)
    assert len(contents) == 6  # The quickstart's six scenes; the grid once showed four.
    experiment = config_lib.ExperimentConfig(
        train=config_lib.TrainConfig(train_dir=str(train_dir)),
        data=config_lib.DataConfig(style_dataset_file=dataset,
                                   content_images=str(tmp_path / demo_images.CONTENT_DIR),
                                   image_size=32),
        loss=config_lib.LossConfig(vgg_checkpoint="standin:0"))
    path = evaluate_lib.style_grid_from_training(experiment, str(train_dir))
    p = evaluate_lib.GRID_PADDING
    with Image.open(path) as grid:  # 128 px cells: the training size, at least 128.
        assert grid.size == (3 * (128 + p) + p, 7 * (128 + p) + p)


def test_training_grid_adds_the_users_photos_as_rows(trained, tmp_path):
    root, train_dir, dataset = trained
    photos = tmp_path / "mine"
    photos.mkdir()
    for i, shape in enumerate(((30, 50), (50, 30))):  # Not square: centre-cropped.
        images.save_image_atomic(str(photos / f"p{i}.png"),
                                 demo_images.photo_like_image(i, 50)[:shape[0], :shape[1]])
    experiment = config_lib.ExperimentConfig(
        train=config_lib.TrainConfig(train_dir=str(train_dir)),
        data=config_lib.DataConfig(style_dataset_file=dataset, content_images="unused",
                                   image_size=32),
        loss=config_lib.LossConfig(vgg_checkpoint="standin:0"))
    path = evaluate_lib.style_grid_from_training(
        experiment, str(train_dir), content_images=str(root / demo_images.CONTENT_DIR),
        grid_photos=str(photos))
    p = evaluate_lib.GRID_PADDING
    with Image.open(path) as grid:  # Header, 3 demo scenes, 2 photos; photo + 2 styles.
        assert grid.size == (3 * (128 + p) + p, 6 * (128 + p) + p)
        last_row = np.asarray(grid)[5 * (128 + p) + p:6 * (128 + p), p:128 + p]
    photo = np.asarray(Image.open(photos / "p1.png"))
    assert abs(last_row.mean() - photo.mean()) < 0.1 * 255  # The photo itself, first.
    with pytest.raises(pipeline.DataError):
        evaluate_lib.style_grid_from_training(experiment, str(train_dir),
                                              content_images=str(root / "content"),
                                              grid_photos=str(tmp_path / "none"))


def test_evaluating_a_step_again_keeps_the_earlier_results(trained, tmp_path):
    root, train_dir, dataset = trained
    paths = []
    for size in (32, 40):  # E.g. another image size: the first grid must survive.
        result = evaluate_lib.evaluate_checkpoint(
            str(train_dir), str(tmp_path), str(root / "content"), style_dataset_file=dataset,
            image_size=size, max_images=1, grid=True, log=lambda _: 0)
        paths.append(result["grid"])
    assert [os.path.basename(p) for p in paths] == ["style_grid_7.png", "style_grid_7_2.png"]
    with Image.open(paths[0]) as first, Image.open(paths[1]) as second:
        assert first.size != second.size


def test_cli_image_size_range(run_command, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = run_command([sys.executable, "-m", "magenta_style.evaluate",
                        f"--checkpoint={tmp_path}", f"--content_images={tmp_path}",
                        "--image_size=7"],
                       cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "magenta_style.evaluate: error: --image_size=7 must be in [32, 4096]")


def test_eval_config_validates_itself():
    # One default per setting: the command's flags and evaluate_checkpoint take these.
    assert config_lib.EvalConfig().style_grid is False
    for kwargs, message in ((dict(image_size=16), r"--image_size=16 must be in \[32, 4096\]"),
                            (dict(num_evaluation_images=0), "--num_evaluation_images must be"),
                            (dict(batch_size=0), "--batch_size must be >= 1"),
                            (dict(optimum_iterations=-1), "--optimum_iterations must be")):
        with pytest.raises(config_lib.ConfigError, match=message):
            config_lib.EvalConfig(**kwargs)
