"""Training under faults: lost or corrupt checkpoint state, a second trainer on the same
train_dir, content that never decodes, TFRecord content with training's global seed,
and train_dirs that cannot be written. Tiny runs (32 px, alpha 0.25, stand-in VGG)."""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style.data import demo_images
from magenta_style.data import pipeline as data
from magenta_style.networks import checkpoints
from magenta_style.training import dirlock
from magenta_style.training import train_lib

# Every test here uses training runs and subprocesses.
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory, write_demo_data):
    root = tmp_path_factory.mktemp("demo")
    contents, _, dataset = write_demo_data(root, num_content=3, num_styles=2, content_size=40)
    return {"content": str(root / demo_images.CONTENT_DIR), "styles": dataset,
            "content_files": contents}


def _experiment(demo, train_dir, content=None, **train):
    settings = dict(train_dir=str(train_dir), batch_size=2, train_steps=4, steps_per_loop=2,
                    save_interval_secs=0, save_interval_steps=2, save_summaries_secs=0,
                    summary_interval_steps=0, log_interval_secs=0, image_summary_count=0,
                    seed=3)
    settings.update(train)
    return config_lib.ExperimentConfig(
        train=config_lib.TrainConfig(**settings),
        data=config_lib.DataConfig(style_dataset_file=demo["styles"],
                                   content_images=content or demo["content"], image_size=32),
        loss=config_lib.LossConfig(vgg_checkpoint="standin:0"), alpha=0.25)


def _run(experiment, lines=None):
    report = (lines.append if lines is not None else None)
    return train_lib.run(experiment, progress=report,
                         strategy=tf.distribute.OneDeviceStrategy("/cpu:0"))


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    """A train_dir after 4 steps: ckpt-2 and ckpt-4."""
    train_dir = tmp_path_factory.mktemp("trained")
    _run(_experiment(demo, train_dir))
    return train_dir


def _copy(trained, tmp_path):
    target = tmp_path / "train"
    shutil.copytree(trained, target)
    return target


# ---------------------------------------------------------------------------------------
# Item 3: the checkpoint state file is lost or garbled; a save was killed half-way.


@pytest.mark.parametrize("damage", ["delete", "garble", "empty"])
def test_lost_state_file_resumes_from_newest_checkpoint(demo, trained, tmp_path, damage):
    train_dir = _copy(trained, tmp_path)
    state = train_dir / "checkpoint"
    if damage == "delete":
        state.unlink()
    else:
        state.write_text("model_checkpoint_path: {{{ garbage" if damage == "garble" else "")
    # What a kill during a save leaves behind.
    (train_dir / "ckpt-6_temp").mkdir()
    (train_dir / "ckpt-6_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
    (train_dir / "checkpoint.tmp0123abcd").write_text("partial")
    before = {p.name: p.read_bytes() for p in train_dir.glob("ckpt-4.*")}
    # stylize, export and evaluate find it too.
    assert checkpoints.resolve_checkpoint(str(train_dir))[0] == str(train_dir / "ckpt-4")
    lines = []
    result = _run(_experiment(demo, train_dir, train_steps=6), lines)
    assert result.resumed_from_step == 4, lines
    assert result.step == 6
    assert not (train_dir / "ckpt-6_temp").exists()
    assert not list(train_dir.glob("checkpoint.tmp*"))
    assert any("ckpt-6_temp" in line and "checkpoint.tmp0123abcd" in line for line in lines)
    assert any("rebuilt it from the checkpoint files" in line for line in lines), lines
    # The good checkpoint is still there, unchanged, and the state file works again.
    assert {p.name: p.read_bytes() for p in train_dir.glob("ckpt-4.*")} == before
    assert tf.train.latest_checkpoint(str(train_dir)).endswith("ckpt-6")


def test_truncated_newest_checkpoint_falls_back_to_previous(demo, trained, tmp_path):
    train_dir = _copy(trained, tmp_path)
    (data_file,) = train_dir.glob("ckpt-4.data-*")
    data_file.write_bytes(data_file.read_bytes()[:1000])
    lines = []
    result = _run(_experiment(demo, train_dir, train_steps=4), lines)
    assert result.resumed_from_step == 2
    assert any("ckpt-4" in line and "resuming from the previous good checkpoint ckpt-2" in line
               for line in lines), lines
    assert checkpoints.checkpoint_problem(str(train_dir / "ckpt-4")) is None  # Rewritten.


def test_no_readable_checkpoint_refuses_with_how_to_start_over(demo, trained, tmp_path):
    train_dir = _copy(trained, tmp_path)
    for index in train_dir.glob("ckpt-*.index"):
        index.write_bytes(b"\0" * 7)
    (train_dir / "checkpoint").unlink()
    kept = sorted(p.name for p in train_dir.iterdir())
    with pytest.raises(train_lib.TrainError, match="none can be read.*to start over"):
        _run(_experiment(demo, train_dir))
    assert sorted(p.name for p in train_dir.iterdir()) == kept


# ---------------------------------------------------------------------------------------
# Item 4: one trainer per train_dir.

_HOLDER = """
import sys, time
from magenta_style.training import dirlock
with dirlock.hold(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(300)
"""


def _lock_holder(directory):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(directory)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_trainer_fails_at_once_and_kill_9_releases(demo, trained, tmp_path):
    train_dir = _copy(trained, tmp_path)
    leftover = train_dir / "ckpt-6_temp"  # Could be the holder's save in progress.
    leftover.mkdir()
    holder = _lock_holder(train_dir)
    try:
        started = time.monotonic()
        with pytest.raises(train_lib.TrainError) as info:
            _run(_experiment(demo, train_dir, train_steps=6))
        assert time.monotonic() - started < 60  # No waiting for the lock.
        message = str(info.value)
        assert f"pid {holder.pid}" in message and socket.gethostname() in message
        assert "\n" not in message
        assert leftover.exists(), "a second trainer must not clean a live trainer's files"
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    finally:
        holder.kill()
        holder.wait()
    result = _run(_experiment(demo, train_dir, train_steps=6))
    assert result.resumed_from_step == 4 and result.step == 6
    assert not leftover.exists()
    with dirlock.hold(str(train_dir)):  # Released when run() returned.
        pass


def test_lock_is_exclusive_between_processes_and_released_on_exit(tmp_path):
    holder = _lock_holder(tmp_path)
    try:
        with pytest.raises(dirlock.LockError, match=f"pid {holder.pid} on host"):
            with dirlock.hold(str(tmp_path)):
                pass
    finally:
        holder.kill()
        holder.wait()
    with dirlock.hold(str(tmp_path)):
        with pytest.raises(dirlock.LockError):  # Another open file description: refused.
            with dirlock.hold(str(tmp_path)):
                pass


# ---------------------------------------------------------------------------------------
# Item 2: content that never decodes stops training instead of hanging.


def test_training_on_undecodable_content_stops_with_one_line(demo, tmp_path, capfd):
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(3):
        (broken / f"bad{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg " * i)
    started = time.monotonic()
    with pytest.raises(train_lib.TrainError) as info:
        _run(_experiment(demo, tmp_path / "train", content=str(broken)))
    assert time.monotonic() - started < 120
    message = str(info.value)
    assert "could not be decoded" in message and str(broken) in message
    assert "\n" not in message
    err = capfd.readouterr().err
    named = [line for line in err.splitlines() if "skipping undecodable content image" in line]
    # Each file named once, and no flood of warnings.
    assert sorted(line.rsplit("/", 1)[1].strip('"') for line in named) == [
        "bad0.jpg", "bad1.jpg", "bad2.jpg"]
    assert len(err) < 20000


def test_some_undecodable_files_are_named_once_and_training_goes_on(demo, tmp_path, capfd):
    content = tmp_path / "content"
    shutil.copytree(demo["content"], content)
    (content / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = _run(_experiment(demo, tmp_path / "train", content=str(content), train_steps=6,
                              steps_per_loop=6, save_interval_steps=6))
    assert result.step == 6 and result.skipped_images >= 1
    named = [line for line in capfd.readouterr().err.splitlines()
             if "skipping undecodable content image" in line]
    assert len(named) == 1 and "zz_broken.png" in named[0]


def test_empty_tfrecords_are_refused(tmp_path):
    path = tmp_path / "empty.tfrecord"
    with tf.io.TFRecordWriter(str(path)):
        pass
    with pytest.raises(data.DataError, match="hold no records"):
        data.resolve_content_source(config_lib.DataConfig(
            style_dataset_file="x", content_images=str(path), image_size=32))


# ---------------------------------------------------------------------------------------
# Item 6: TFRecord content, the way training runs it (a global seed of 0 is set).


def test_training_on_tfrecord_content_with_global_seed(demo, tmp_path):
    records = tmp_path / "content.tfrecord"
    with tf.io.TFRecordWriter(str(records)) as writer:
        for path in demo["content_files"]:
            encoded = tf.io.read_file(path).numpy()
            feature = {"image/encoded": tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[encoded]))}
            writer.write(tf.train.Example(features=tf.train.Features(
                feature=feature)).SerializeToString())
    # seed=0: random_seed.get_seed compares a tensor op seed with 0 once the global seed is 0.
    result = _run(_experiment(demo, tmp_path / "train", content=str(records), seed=0,
                              train_steps=2, save_interval_steps=2))
    assert result.step == 2 and result.skipped_images == 0


# ---------------------------------------------------------------------------------------
# Item 8: train_dirs that cannot be used.


def test_unusable_train_dirs_are_one_line_errors(demo, tmp_path, unwritable_dir):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    unwritable = unwritable_dir
    cases = [(str(a_file), "exists and is not a directory"),
             (str(a_file / "sub"), "cannot be created or written"),
             (unwritable, "cannot be created or written"),
             (os.path.join(unwritable, "new_run"), "cannot be created or written")]
    for train_dir, message in cases:
        with pytest.raises(train_lib.TrainError, match=message) as info:
            _run(_experiment(demo, train_dir))
        assert "\n" not in str(info.value) and train_dir in str(info.value)


def test_cli_train_dir_that_is_a_file(demo, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "magenta_style.train", "--flagfile=configs/tiny.cfg",
         f"--train_dir={a_file}", f"--style_dataset_file={demo['styles']}",
         f"--content_images={demo['content']}"], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == (
        f"magenta_style.train: error: --train_dir={a_file} exists and is not a directory")
