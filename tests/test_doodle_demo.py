"""`--vgg_checkpoint=hed` is what optimize offers first (help, the 'required' error), and
the doodle demo draws its own inputs and prints a command that optimize runs as given."""
import shlex

import pytest

from magenta_style import optimize


def test_optimize_help_and_required_error_offer_hed(capsys, tmp_path):
    assert optimize.main(["optimize", "--help"]) == 0
    assert "'hed'" in capsys.readouterr().out
    status = optimize.main(["optimize", "--content_image=a.png", "--style_images=b.png",
                            f"--output_image={tmp_path / 'o.png'}"])
    err = capsys.readouterr().err
    assert status == 2 and "--vgg_checkpoint is required: 'hed' works without a download" in err


@pytest.fixture(scope="module")
def doodle(load_script):
    return load_script("tools/figures/doodle_figure.py")  # Defines global flags: load it once.


def _demo_command(doodle, directory, size):
    command = doodle.write_inputs(str(directory), size, seed=0)
    for name in ("style", "style_map", "doodle"):
        assert (directory / f"{name}.png").exists()
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "magenta_style.optimize"]
    return ["optimize", *argv[3:]]


def test_doodle_demo_command_parses(doodle, tmp_path):
    argv = _demo_command(doodle, tmp_path, 64)
    cfg = optimize.parse_args(argv)
    assert cfg.vgg_checkpoint == "hed" and cfg.style_loss == "patch"
    assert not cfg.content_image and cfg.content_semantic_map.endswith("doodle.png")


@pytest.mark.slow
def test_doodle_demo_runs_with_hed(doodle, tmp_path, capsys):
    argv = _demo_command(doodle, tmp_path, 32)
    argv = [a for a in argv if not a.startswith(("--iterations=", "--scales="))]
    assert optimize.main([*argv, "--iterations=2", "--scales=1"]) == 0, capsys.readouterr().err
    assert (tmp_path / "result.png").exists()
