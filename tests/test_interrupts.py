"""SIGINT (Ctrl-C) and SIGTERM (schedulers, containers) stop `train` with a checkpoint
of the step reached, one line and exit status 130 / 143; `optimize` on SIGTERM writes
its best image as on Ctrl-C. Subprocesses on tiny inputs (stand-in VGG, 32 px)."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from magenta_style.data import demo_images

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parent.parent
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO),
       "PYTHONUNBUFFERED": "1"}
ENV.pop("TF_CPP_MIN_LOG_LEVEL", None)  # The command's own default: its stderr is checked.


def _own_lines(err):
    """stderr without the stand-in VGG's deliberate warning banner."""
    return [line for line in err.strip().splitlines() if line and "vgg.py:" not in line
            and "vgg_weights.py:" not in line]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, write_demo_data):
    root = tmp_path_factory.mktemp("demo")
    _, styles, dataset = write_demo_data(root, num_content=2, num_styles=2, content_size=40)
    return {"content": str(root / demo_images.CONTENT_DIR), "dataset": dataset,
            "styles": styles}


def _start_and_signal(command, signum, ready):
    """Starts `command`, sends `signum` once a stdout line starts with `ready`; returns
    (exit status, stdout, stderr)."""
    proc = subprocess.Popen([sys.executable, *command], cwd=REPO, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(ready):
                proc.send_signal(signum)
                break
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(seen) + out, err


def _train_command(demo, train_dir):
    return ["-m", "magenta_style.train", f"--train_dir={train_dir}",
            f"--style_dataset_file={demo['dataset']}", f"--content_images={demo['content']}",
            "--vgg_checkpoint=standin:0", "--alpha=0.25", "--image_size=32", "--batch_size=1",
            "--train_steps=100000", "--steps_per_loop=2", "--save_interval_secs=0",
            "--save_interval_steps=0", "--save_summaries_secs=0", "--image_summary_count=0",
            "--log_interval_secs=0"]


def _checkpoint_steps(train_dir):
    return sorted(int(p.name[len("ckpt-"):-len(".index")])
                  for p in pathlib.Path(train_dir).glob("ckpt-*.index"))


def test_train_sigterm_then_sigint_save_a_checkpoint_and_exit_143_130(demo, tmp_path):
    train_dir = tmp_path / "train"
    # No periodic saves: only the signal writes a checkpoint.
    code, out, err = _start_and_signal(_train_command(demo, train_dir), signal.SIGTERM,
                                       "step ")
    assert code == 143, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert len(_own_lines(err)) == 1, err
    steps = _checkpoint_steps(train_dir)
    assert len(steps) == 1 and steps[0] >= 2, (steps, out)
    assert f"interrupted by SIGTERM at step {steps[0]}; saved" in err
    assert f"ckpt-{steps[0]}" in err

    # Ctrl-C on the resumed run: it continues from that checkpoint and saves again.
    code, out, err = _start_and_signal(_train_command(demo, train_dir), signal.SIGINT,
                                       "step ")
    assert code == 130, err[-3000:]
    assert "Traceback" not in err and len(_own_lines(err)) == 1, err
    assert "resuming from" in out and f"ckpt-{steps[0]}" in out
    again = _checkpoint_steps(train_dir)
    assert again[-1] > steps[0], (again, out)
    assert f"interrupted by SIGINT at step {again[-1]}; saved" in err


def test_optimize_on_sigterm_writes_the_best_image(demo, tmp_path):
    content = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, [40, 40, 3], np.uint8)).save(
        content)
    output = tmp_path / "out.png"
    command = ["-m", "magenta_style.optimize", f"--content_image={content}",
               f"--style_images={demo['styles'][0]}", f"--output_image={output}",
               "--vgg_checkpoint=standin:0", "--image_size=40", "--iterations=100000",
               "--optimizer=adam", "--save_every=1"]
    # --save_every writes a snapshot per iteration: the first one says it is optimizing.
    proc = subprocess.Popen([sys.executable, *command], cwd=REPO, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not list(tmp_path.glob("out_s1_*.png")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in _own_lines(err) if not line.startswith("optimize: scale ")]
    assert len(lines) == 1, err  # Progress lines, then this one.
    assert "interrupted (SIGTERM); wrote the best image so far" in lines[0], err
    with Image.open(output) as image:
        assert image.size == (40, 40)
