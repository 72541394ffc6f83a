"""A one-line error is one line: TensorFlow's start-up lines (printed while it is
imported, before it reads TF_CPP_MIN_LOG_LEVEL), the cuInit error, and absl/TF INFO lines
of an export stay off stderr in every command and tool."""
import os
import pathlib
import subprocess
import sys

import pytest

from magenta_style import cli
from magenta_style import config as config_lib
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer

REPO = pathlib.Path(__file__).resolve().parent.parent
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
ENV.pop("TF_CPP_MIN_LOG_LEVEL", None)  # What a user gets by default.

# What `import tensorflow` prints on this kind of machine, before its log level applies.
IMPORT_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796619759.218279    7821 port.cc:153] oneDNN custom operations are on.",
    "I0000 00:00:1796619759.218667    7821 cudart_stub.cc:31] Could not find cuda drivers",
    "I0000 00:00:1796619759.335398    7821 cpu_feature_guard.cc:227] This TensorFlow binary",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild",
]


def test_import_filter_follows_the_log_level():
    for line in IMPORT_LINES:
        assert cli._import_noise(2).match(line), line  # pylint: disable=protected-access
    warning = "W0000 00:00:1796619759.2 123 some.cc:1] a warning"
    error = "E0000 00:00:1796619764.917098 7821 cuda_platform.cc:52] failed call to cuInit"
    assert cli._import_noise(2).match(warning)  # pylint: disable=protected-access
    assert not cli._import_noise(1).match(warning)  # pylint: disable=protected-access
    for level in (1, 2, 3):
        assert not cli._import_noise(level).match(error)  # pylint: disable=protected-access
        assert not cli._import_noise(level).match("Traceback (most recent call last):")  # pylint: disable=protected-access


def _run(*command):
    return subprocess.run([sys.executable, *command], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_commands_print_only_their_own_lines(tmp_path):
    result = _run("-m", "magenta_style.optimize", f"--content_image={tmp_path / 'none.png'}",
                  f"--style_images={tmp_path / 'none.png'}",
                  f"--output_image={tmp_path / 'o.png'}", "--vgg_checkpoint=standin:0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"optimize: error: content image: {tmp_path / 'none.png'}: no such file"], result.stderr

    result = _run("tools/serving_client.py", f"--image={tmp_path / 'none.png'}",
                  "--style_weights=1", f"--output={tmp_path / 'o.png'}")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr

    model_config = config_lib.ModelConfig(2, 0.25)
    model_dir = str(tmp_path / "model")
    checkpoints.save_model(transformer.build_transformer(model_config), model_config, model_dir)
    result = _run("-m", "magenta_style.export", f"--checkpoint={model_dir}",
                  f"--export_dir={tmp_path / 'exports'}", "--warmup_size=0")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("magenta_style.export: loading"), result.stderr
    assert lines[1].startswith("magenta_style.export: exported 2 style(s)"), result.stderr
