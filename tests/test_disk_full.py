"""A full disk: `train` at start and during a save, and `export`, stop with one line that
names the path, exit status 2, no traceback; earlier checkpoints and export versions are
kept. The disk is a real one: a small tmpfs mounted in a private mount namespace
(`unshare -m`, as root as in CI, or `unshare -rm` with user namespaces), so the kernel
returns ENOSPC exactly as a full disk does. Skipped where neither is allowed."""
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

from magenta_style import config as config_lib
from magenta_style.data import demo_images
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parent.parent
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
ENV.pop("TF_CPP_MIN_LOG_LEVEL", None)  # The commands' own default: their stderr is checked.


def _unshare():
    """The unshare command line that gives a private mount namespace, or None."""
    if not shutil.which("unshare"):
        return None
    return ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]


@pytest.fixture(scope="module")
def tmpfs(tmp_path_factory):
    """`tmpfs(size, steps)`: runs shell `steps` (list of str) in a private mount namespace
    where MNT is an empty tmpfs of `size` (e.g. "64k"); returns {i: (status, stderr)} of
    the steps that ran (each step's exit status and stderr are recorded)."""
    unshare = _unshare()
    probe_dir = tmp_path_factory.mktemp("probe")
    if unshare is None or subprocess.run(
            [*unshare, "sh", "-c", f"mount -t tmpfs -o size=4k tmpfs {probe_dir}"],
            capture_output=True, check=False).returncode:
        pytest.skip("needs a private tmpfs: unshare -m (root) or -rm (user namespaces)")

    def run(size, steps):
        root = tmp_path_factory.mktemp("full")
        mnt = root / "mnt"
        mnt.mkdir()
        lines = ["set -u", f"mount -t tmpfs -o size={size} tmpfs {mnt}"]
        for i, step in enumerate(steps):
            lines.append(f"({step.replace('MNT', str(mnt))}) >{root}/out{i} 2>{root}/err{i}; "
                         f"echo $? >{root}/rc{i}")
        subprocess.run([*unshare, "bash", "-c", "\n".join(lines)], cwd=REPO, env=ENV,
                       check=True, timeout=900)
        return {i: (int((root / f"rc{i}").read_text()), (root / f"err{i}").read_text())
                for i in range(len(steps)) if (root / f"rc{i}").exists()}

    return run


def _python(*args):
    return " ".join(shlex.quote(a) for a in (sys.executable, *args))


def _one_line(err):
    """stderr's lines without the stand-in VGG's deliberate warning banner."""
    lines = [line for line in err.strip().splitlines() if line and "vgg.py:" not in line
             and "vgg_weights.py:" not in line]
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, write_demo_data):
    root = tmp_path_factory.mktemp("demo")
    _, _, dataset = write_demo_data(root, num_content=2, num_styles=2, content_size=40)
    return {"content": str(root / demo_images.CONTENT_DIR), "dataset": dataset}


def _train(demo, steps):
    return _python("-m", "magenta_style.train", "--train_dir=MNT/train",
                   f"--style_dataset_file={demo['dataset']}",
                   f"--content_images={demo['content']}", "--vgg_checkpoint=standin:0",
                   "--alpha=0.25", "--image_size=32", "--batch_size=1",
                   f"--train_steps={steps}", "--steps_per_loop=2", "--save_interval_steps=2",
                   "--save_interval_secs=0", "--image_summary_count=0")


def test_train_on_a_full_disk_at_start(demo, tmpfs):
    # 8 KiB: the lock file and config.json fit, the TensorBoard events file does not.
    status, err = tmpfs("8k", [_train(demo, 2)])[0]
    line = _one_line(err)
    assert status == 2, err
    assert line.startswith("magenta_style.train: error: cannot write TensorBoard events in ")
    assert line.endswith("/mnt/train: No space left on device"), line


def test_train_disk_fills_before_a_save_keeps_the_earlier_checkpoint(demo, tmpfs):
    fill = ("avail=$(df --output=avail -B1 MNT | tail -1); "
            "head -c $((avail - 65536)) /dev/zero > MNT/filler")
    results = tmpfs("8m", [_train(demo, 2), fill, _train(demo, 4),
                           "ls MNT/train >&2"])
    assert results[0][0] == 0, results[0][1][-3000:]
    assert results[1][0] == 0, results[1][1]
    status, err = results[2]
    line = _one_line(err)
    assert status == 2, err
    assert line == ("magenta_style.train: error: cannot write checkpoint "
                    f"{_mnt(line)}/train/ckpt-4: No space left on device; the last good "
                    f"checkpoint {_mnt(line)}/train/ckpt-2 is kept"), line
    left = results[3][1].split()
    assert "ckpt-2.index" in left and "ckpt-4.index" not in left, left
    assert not [name for name in left if name.endswith("_temp")], left


def _mnt(line):
    """The mount point a message names (the part before /train/)."""
    return line.split("cannot write checkpoint ", 1)[1].split("/train/", 1)[0]


def test_export_to_a_full_disk(tmpfs, tmp_path):
    model_config = config_lib.ModelConfig(2, 0.25)
    model_dir = str(tmp_path / "model")
    checkpoints.save_model(transformer.build_transformer(model_config), model_config, model_dir)
    export = _python("-m", "magenta_style.export", f"--checkpoint={model_dir}",
                     "--export_dir=MNT/exports", "--warmup_size=0")
    results = tmpfs("200k", [export, "ls -A MNT/exports >&2"])
    status, err = results[0]
    line = _one_line("\n".join(l for l in err.splitlines() if ": loading " not in l))
    assert status == 2, err
    assert line.startswith("magenta_style.export: error: cannot write the export ")
    assert line.endswith("/mnt/exports/1: No space left on device"), line
    assert results[1][1].split() == [], results[1][1]  # No staging directory left behind.
