"""Runs that produced nothing usable must not report success (issue 28 item 10):
`evaluate --eval_interval_secs` when every evaluation failed, and the export of a
checkpoint whose weights hold NaN (its signatures would answer with black images).
(optimize's infinite --style_mix and too-small style images: test_optimize_guards.py.)
"""
import numpy as np
import pytest

from magenta_style import config as config_lib
from magenta_style import evaluate
from magenta_style import export
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer
from magenta_style.serving import export_lib
from magenta_style.training import evaluate_lib

MODEL_CONFIG = config_lib.ModelConfig(num_styles=1, alpha=0.25)


@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory):
    model = transformer.build_transformer(MODEL_CONFIG)
    variable = model.trainable_variables[0]
    values = np.array(variable.numpy())
    values.flat[0] = np.nan
    variable.assign(values)
    directory = str(tmp_path_factory.mktemp("diverged"))
    checkpoints.save_model(model, MODEL_CONFIG, directory)
    return model, directory


@pytest.mark.slow  # Runs the export command (refused before it traces anything).
def test_export_refuses_nan_weights(nan_checkpoint, tmp_path, capsys):
    model, directory = nan_checkpoint
    with pytest.raises(export_lib.ExportError, match=r"non-finite weights .* in 1 variable"):
        export_lib.export_saved_model(model, MODEL_CONFIG, str(tmp_path / "a"))
    status = export.main(["export", f"--checkpoint={directory}",
                          f"--export_dir={tmp_path / 'b'}"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert f"--checkpoint={directory} has non-finite weights" in lines[0]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "1").exists()


def test_watching_evaluation_fails_when_every_evaluation_failed(nan_checkpoint, tmp_path,
                                                                 capsys, monkeypatch):
    _, directory = nan_checkpoint

    def failing(checkpoint, *args, **kwargs):
        raise evaluate_lib.EvalError(f"{checkpoint}: cannot be evaluated")

    monkeypatch.setattr(evaluate_lib, "evaluate_checkpoint", failing)
    argv = ["evaluate", f"--checkpoint={directory}", f"--content_images={tmp_path}",
            f"--eval_dir={tmp_path / 'eval'}", "--eval_interval_secs=1",
            "--eval_timeout_secs=1"]
    status = evaluate.main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if " error: " in line]
    assert status == 1 and len(lines) == 1, err
    assert "every evaluation failed (1 checkpoint(s))" in lines[0]
    assert "cannot be evaluated" in lines[0]

    # One success among failures is a success, with the failures counted.
    calls = []

    def flaky(checkpoint, *args, **kwargs):
        calls.append(checkpoint)
        return {"losses": []}

    monkeypatch.setattr(evaluate_lib, "evaluate_checkpoint", flaky)
    assert evaluate.main(argv) == 0 and len(calls) == 1
