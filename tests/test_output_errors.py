"""Read-only or un-creatable outputs of the converter, create_style_dataset and evaluate:
one line on stderr, exit status 2, no traceback, checked before the slow work."""
import os
import pathlib
import subprocess
import sys

import pytest

from magenta_style import config
from magenta_style.data import demo_images
from magenta_style.data import style_dataset
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer

# Every test here uses commands in subprocesses.
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
       "PYTHONPATH": str(REPO)}


def _run(*command):
    return subprocess.run([sys.executable, *command], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=300)


def _assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.rstrip().splitlines()[-1]
    for needle in needles:
        assert needle in last, last


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    root = tmp_path_factory.mktemp("pictures")
    contents, styles = demo_images.write_demo_images(root, num_content=2, num_styles=2,
                                                     content_size=24, style_size=16)
    return {"content": str(root / demo_images.CONTENT_DIR), "styles": styles, "root": root}


def test_convert_to_unwritable_output(fixtures_dir, unwritable_dir):
    out = os.path.join(unwritable_dir, "converted")
    result = _run("tools/convert_magenta_checkpoint.py",
                  f"--magenta_checkpoint={fixtures_dir / 'magenta/nstyle_a05_s3/model.ckpt'}",
                  f"--output_dir={out}")
    _assert_one_line_error(result, "error: --output_dir=", out, "cannot be created or written")


def test_create_style_dataset_to_unwritable_output(pictures, unwritable_dir):
    out = os.path.join(unwritable_dir, "styles.tfrecord")
    result = _run("tools/create_style_dataset.py", f"--style_files={','.join(pictures['styles'])}",
                  f"--output_file={out}", "--nocompute_gram_matrices")
    _assert_one_line_error(result, "create_style_dataset: error: cannot write", out)


def test_evaluate_to_unwritable_eval_dir(pictures, tmp_path, unwritable_dir):
    model_config = config.ModelConfig(2, 0.25)
    model_dir = str(tmp_path / "model")
    checkpoints.save_model(transformer.build_transformer(model_config), model_config, model_dir)
    dataset = str(tmp_path / "styles.tfrecord")
    style_dataset.write_style_dataset(dataset, pictures["styles"])
    eval_dir = os.path.join(unwritable_dir, "eval")
    result = _run("-m", "magenta_style.evaluate", f"--checkpoint={model_dir}",
                  f"--content_images={pictures['content']}", f"--style_dataset_file={dataset}",
                  f"--eval_dir={eval_dir}", "--style_grid", "--image_size=32")
    _assert_one_line_error(result, "magenta_style.evaluate: error: --eval_dir=", eval_dir,
                           "cannot be created or written")
