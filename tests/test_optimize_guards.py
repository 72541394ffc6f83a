"""optimize and tools/serving_client.py under bad outputs and settings (issue 28 items 3,
4, 6, 10, 12, 15): outputs that would replace an input, outputs that cannot be written,
style sizes out of bounds, infinite mix weights, and the reason for an early stop.

Every refusal must come before the optimization (no progress line) and name the user's
path. CPU, 8-40 px, stand-in VGG weights.
"""
import json
import os
import re

import numpy as np
from PIL import Image
import pytest

from magenta_style import cli
from magenta_style import config as config_lib
from magenta_style import optimize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDIN = "standin:7"
SHALLOW_FLAGS = ("--content_weights=conv2_1:1", "--style_weights=conv1_1:100,conv2_1:100")


def _write(path, height, width, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random([height, width, 3]) * 255).astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture
def files(tmp_path):
    return _write(tmp_path / "content.png", 40, 40), _write(tmp_path / "style.png", 32, 32, 1)


def _main(capsys, *args):
    status = optimize.main(["optimize", *args])
    return status, capsys.readouterr().err


def _one_error(err):
    lines = [line for line in err.splitlines() if line.startswith("optimize: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "it/s" not in err, "refused only after the optimization ran: " + err
    return lines[0]


def _args(content, style, out, *extra):
    return (f"--content_image={content}", f"--style_images={style}", f"--output_image={out}",
            f"--vgg_checkpoint={STANDIN}", "--image_size=16", "--iterations=2",
            *SHALLOW_FLAGS, *extra)


@pytest.mark.parametrize("case", ["same", "dotdot", "symlink", "hardlink", "style",
                                  "report_is_content", "report_is_output", "report_is_style"])
def test_outputs_that_would_replace_an_input_are_refused(files, tmp_path, capsys, case):
    content, style = files
    before = {path: open(path, "rb").read() for path in (content, style)}
    (tmp_path / "sub").mkdir()
    out, extra = str(tmp_path / "out.png"), ()
    if case == "same":
        out = content
    elif case == "dotdot":
        out = str(tmp_path / "sub" / ".." / "content.png")
    elif case == "symlink":
        out = str(tmp_path / "link.png")
        os.symlink(content, out)
    elif case == "hardlink":
        out = str(tmp_path / "sub" / "hard.png")
        os.link(content, out)
    elif case == "style":
        out = style
    elif case == "report_is_content":
        extra = (f"--report={tmp_path / 'sub' / '..' / 'content.png'}",)
    elif case == "report_is_output":
        extra = (f"--report={tmp_path / 'sub' / '..' / 'out.png'}",)
    elif case == "report_is_style":
        os.symlink(style, tmp_path / "r.json")
        extra = (f"--report={tmp_path / 'r.json'}",)
    status, err = _main(capsys, *_args(content, style, out, *extra))
    assert status == 2
    line = _one_error(err)
    assert re.search(r"(--output_image|--report)=\S+ is (the input|the same file)", line), line
    assert {path: open(path, "rb").read() for path in (content, style)} == before
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("flag", ["output_image", "report"])
def test_unwritable_outputs_are_found_before_the_optimization(files, tmp_path, capsys, flag):
    content, style = files
    (tmp_path / "afile").write_text("not a directory")
    bad = str(tmp_path / "afile" / ("out.png" if flag == "output_image" else "r.json"))
    out = bad if flag == "output_image" else str(tmp_path / "out.png")
    extra = (f"--report={bad}",) if flag == "report" else ()
    status, err = _main(capsys, *_args(content, style, out, *extra))
    assert status == 2
    line = _one_error(err)
    assert f"--{flag}={bad}" in line and ".tmp-" not in line, line
    # A directory where the output goes.
    (tmp_path / "adir.png").mkdir()
    status, err = _main(capsys, *_args(content, style, str(tmp_path / "adir.png")))
    assert status == 2 and "is a directory" in _one_error(err)


def test_a_late_write_failure_names_the_users_path(files, tmp_path, capsys, monkeypatch):
    content, style = files
    from magenta_style.media import images
    real_save = images.save_image_atomic

    def failing_save(path, *args, **kwargs):
        if os.path.basename(path) == "out.png":  # Fails as a full disk would, late.
            with open(os.path.join(os.path.dirname(path), ".tmp-abc-out.png"), "xb"):
                pass
            raise OSError(28, "No space left on device",
                          os.path.join(os.path.dirname(path), ".tmp-abc-out.png"))
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(images, "save_image_atomic", failing_save)
    out = str(tmp_path / "out.png")
    status, err = optimize.main(["optimize", *_args(content, style, out)]), None
    err = capsys.readouterr().err
    assert status == 2
    line = [l for l in err.splitlines() if l.startswith("optimize: error:")][0]
    assert f"--output_image={out}" in line and "No space left" in line and ".tmp-" not in line


def test_infinite_mix_weights_are_refused_up_front(files, tmp_path, capsys):
    content, style = files
    style2 = _write(tmp_path / "style2.png", 32, 32, 2)
    for mix in ("inf,1", "1,-inf", "nan,1", "1e308,1e308"):
        status, err = _main(capsys, *_args(content, f"{style},{style2}",
                                           str(tmp_path / "out.png"), f"--style_mix={mix}"))
        assert status == 2 and "style_mix weights must be finite" in _one_error(err), err
    with pytest.raises(config_lib.ConfigError, match="finite"):
        config_lib.OptimizeConfig(content_image="c", style_images=("a", "b"),
                                  style_mix=(float("inf"), 1.0))
    assert not (tmp_path / "out.png").exists()


def test_style_image_too_small_for_a_scale_is_refused_up_front(files, tmp_path, capsys):
    content, _ = files
    thin = _write(tmp_path / "thin.png", 2, 40)  # 1x16 at a 16 px output: no conv2 cell.
    status, err = _main(capsys, *_args(content, thin, str(tmp_path / "out.png")))
    assert status == 2
    line = _one_error(err)
    assert re.search(r"style image .*thin.png is 16x1 at the first scale .* needs at least 2 "
                     r"pixels a side", line), line
    assert not (tmp_path / "out.png").exists()
    # A scale that makes it large enough is accepted.
    status, err = _main(capsys, *_args(content, thin, str(tmp_path / "out.png"),
                                       "--style_scale=2"))
    assert status == 0, err


# inf is refused earlier, as a non-finite flag value (tests/test_optimize_inputs.py).
@pytest.mark.parametrize("scale", ["1000", "1e300"])
def test_style_scale_is_bounded_by_the_pixel_cap_up_front(files, tmp_path, capsys, scale):
    content, style = files
    status, err = _main(capsys, *_args(content, style, str(tmp_path / "out.png"),
                                       f"--style_scale={scale}"))
    assert status == 2
    line = _one_error(err)
    assert re.search(r"--style_scale=\S+ makes the style image .*style.png .* over the pixel "
                     r"cap of \d+: lower --style_scale", line), line


def test_default_pixel_cap_follows_the_measured_memory_cost(files, tmp_path, capsys):
    cap = config_lib.DEFAULT_OPTIMIZE_MAX_PIXELS
    assert cap == int(config_lib.OPTIMIZE_MEMORY_BUDGET_BYTES
                      // config_lib.OPTIMIZE_BYTES_PER_PIXEL)
    assert cap < 3000 * 3000  # The size that ran out of memory.
    content, style = files
    status, err = _main(capsys, *_args(content, style, str(tmp_path / "out.png"),
                                       "--image_size=3000"))
    assert status == 2 and "over the pixel cap" in _one_error(err)
    # The help names where the default comes from.
    assert "measured" in optimize.usage_text()


def test_an_early_stop_says_why_on_stderr_and_in_the_report(tmp_path, capsys):
    # The photo is its own style and the start: every loss term and the gradient are 0
    # at once, so L-BFGS-B ends before its first iteration.
    content = _write(tmp_path / "content.png", 16, 16)
    out, report = tmp_path / "out.png", tmp_path / "report.json"
    status = optimize.main(["optimize", f"--content_image={content}",
                            f"--style_images={content}", f"--output_image={out}",
                            f"--vgg_checkpoint={STANDIN}", "--image_size=16", "--iterations=5",
                            "--content_weights=conv1_1:1", "--style_weights=conv1_1:1",
                            "--tv_weight=0", f"--report={report}"])
    err = capsys.readouterr().err
    assert status == 0, err
    said = [line for line in err.splitlines() if "L-BFGS-B stopped" in line]
    assert len(said) == 1 and "after 0 of 5 iterations" in said[0], err
    assert "gradient is zero" in said[0]
    stopped = json.loads(report.read_text())["stopped"]
    assert stopped and "scale 1 of 1" in stopped and "after 0 of 5 iterations" in stopped
    assert out.exists()


# ------------------------------------------------------------------ serving_client


def test_serving_client_refuses_an_output_that_is_its_image(load_script, tmp_path):
    client = load_script(os.path.join(REPO, "tools", "serving_client.py"))
    photo = _write(tmp_path / "photo.png", 12, 12)
    before = open(photo, "rb").read()
    (tmp_path / "sub").mkdir()
    os.symlink(photo, tmp_path / "link.png")
    for output in (photo, str(tmp_path / "sub" / ".." / "photo.png"),
                   str(tmp_path / "link.png")):
        # Nothing listens on port 9: the refusal must come before any request.
        with pytest.raises(client.ClientError, match=r"--output=\S+ is the input --image="):
            client.stylize_remote(photo, [1.0], output, server="http://127.0.0.1:9",
                                  timeout=5)
    with pytest.raises(client.ClientError, match="is a directory"):
        client.stylize_remote(photo, [1.0], str(tmp_path / "sub"),
                              server="http://127.0.0.1:9", timeout=5)
    assert open(photo, "rb").read() == before
