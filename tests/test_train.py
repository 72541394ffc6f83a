"""End-to-end tests of the trainer on tiny runs (32 px, alpha 0.25, batch 2, stand-in VGG).

The 2-replica run uses MirroredStrategy over the two logical CPU devices that
tests/conftest.py creates at pytest start.
"""
import dataclasses
import gc
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style.data import demo_images
from magenta_style.data import style_dataset
from magenta_style.networks import checkpoints
from magenta_style.networks import vgg
from magenta_style.training import devices
from magenta_style.training import train_lib

# Every test here uses training runs and training subprocesses.
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory, write_demo_data):
    root = tmp_path_factory.mktemp("demo")
    _, _, dataset = write_demo_data(root, num_content=4, num_styles=3, content_size=48)
    standin = vgg.build_vgg16("standin:0")
    extra = str(root / "extra.tfrecord")
    extra_styles = [str(root / "extra_a.png"), str(root / "extra_b.png")]
    for i, path in enumerate(extra_styles):
        demo_images.images.save_image_atomic(path, demo_images.style_image(3 + i, 32))
    style_dataset.write_style_dataset(extra, extra_styles, vgg_model=standin)
    return {"content": str(root / demo_images.CONTENT_DIR), "styles": dataset, "extra": extra,
            "root": root}


def _experiment(demo, train_dir, **train):
    defaults = dict(train_dir=str(train_dir), batch_size=2, train_steps=4, steps_per_loop=2,
                    save_interval_secs=0, save_interval_steps=2, save_summaries_secs=0,
                    summary_interval_steps=2, log_interval_secs=0, image_summary_count=2,
                    seed=3)
    defaults.update(train)
    loss = defaults.pop("loss", {})
    return config_lib.ExperimentConfig(
        train=config_lib.TrainConfig(**defaults),
        data=config_lib.DataConfig(style_dataset_file=demo["styles"],
                                   content_images=demo["content"], image_size=32),
        loss=config_lib.LossConfig(vgg_checkpoint="standin:0", **loss), alpha=0.25)


def _one_device():
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def _weights(train_dir):
    model, _ = checkpoints.load_model(str(train_dir))
    return {v.path.split("/", 1)[1]: v.numpy() for v in model.weights}


def _weights_at(prefix):
    model, _ = checkpoints.load_model(str(prefix))
    return {v.path.split("/", 1)[1]: v.numpy() for v in model.weights}


@pytest.fixture(scope="module")
def uninterrupted(demo, tmp_path_factory):
    train_dir = tmp_path_factory.mktemp("uninterrupted")
    result = train_lib.run(_experiment(demo, train_dir), strategy=_one_device())
    return train_dir, result


def test_run_writes_checkpoint_config_and_events(uninterrupted):
    train_dir, result = uninterrupted
    assert result.step == 4 and result.resumed_from_step == 0
    assert result.checkpoint.endswith("ckpt-4")
    assert sorted(p.name for p in train_dir.glob("ckpt-*.index")) == ["ckpt-2.index",
                                                                      "ckpt-4.index"]
    saved = config_lib.read_config_json(str(train_dir))
    assert saved["model"] == {"num_styles": 3, "alpha": 0.25,
                              "style_names": ["00_stripes", "01_waves", "02_dots"]}
    assert saved["train"]["loss"]["style_weights"]["vgg_16/conv4"] == 1e-4
    assert saved["train"]["train"]["batch_size"] == 2
    assert list(train_dir.glob("events.out.tfevents.*"))
    # Only the transformer, optimizer and counters: no VGG variable in the checkpoint
    # (VGG's first kernel is [3, 3, 3, 64]; nothing in the transformer has 64 channels
    # at alpha 0.25).
    shapes = dict(tf.train.list_variables(result.checkpoint))
    assert not any("vgg" in n.lower() or "block1_conv1" in n for n in shapes)
    assert not any(s and s[-1] in (64, 512) for s in shapes.values())
    assert {"step/.ATTRIBUTES/VARIABLE_VALUE", "next_index/.ATTRIBUTES/VARIABLE_VALUE",
            "optimizer/iteration/.ATTRIBUTES/VARIABLE_VALUE",
            "transformer/contract/conv1/weights/.ATTRIBUTES/VARIABLE_VALUE"} <= set(shapes)
    # The weights are keyed by Magenta's names, not reached through the optimizer.
    assert not any("_trainable_variables" in n for n in shapes)
    assert all(np.isfinite(v) for v in result.losses.values())
    assert "style_loss/vgg_16/conv4" in result.losses


def test_resumed_run_equals_uninterrupted(demo, uninterrupted, tmp_path):
    train_dir, _ = uninterrupted
    first = train_lib.run(_experiment(demo, tmp_path, train_steps=2), strategy=_one_device())
    assert first.step == 2
    second = train_lib.run(_experiment(demo, tmp_path), strategy=_one_device())
    assert (second.resumed_from_step, second.step) == (2, 4)
    expected, got = _weights(train_dir), _weights(tmp_path)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_two_replicas_agree_with_one(demo, uninterrupted, tmp_path):
    cpus = tf.config.list_logical_devices("CPU")
    assert len(cpus) >= 2, "tests/conftest.py should split the CPU into 2 logical devices"
    train_dir, result = uninterrupted
    strategy = devices.mirrored_strategy([d.name for d in cpus[:2]])
    mirrored = train_lib.run(_experiment(demo, tmp_path, train_steps=2), strategy=strategy)
    assert mirrored.step == 2
    # Same global batches (data.py), so the same losses: step 1 is a pure forward pass,
    # step 2 follows one Adam update of summed per-replica gradients.
    assert mirrored.total_losses[1] == pytest.approx(result.total_losses[1], rel=1e-5)
    assert mirrored.total_losses[2] == pytest.approx(result.total_losses[2], rel=1e-4)
    expected = _weights_at(train_dir / "ckpt-2")
    got = _weights(tmp_path)
    for name, value in expected.items():
        if "residual" in name and "conv2/InstanceNorm/beta" in name:
            continue  # Zero true gradient: Adam turns rounding noise into +-lr steps.
        rel = np.linalg.norm(got[name] - value) / np.linalg.norm(value)
        assert rel < 1e-3, f"{name}: {rel:.2e}"


def test_finetune_trains_only_norm_tables(demo, uninterrupted, tmp_path):
    train_dir, _ = uninterrupted
    before = _weights(train_dir)
    experiment = _experiment(demo, tmp_path, train_steps=2, finetune_from=str(train_dir),
                             loss={"stability_weight": 1.0})
    result = train_lib.run(experiment, strategy=_one_device())
    assert result.losses["stability_loss"] > 0
    after = _weights(tmp_path)
    assert set(after) == set(before)
    for name, value in before.items():
        if "InstanceNorm" in name:
            continue
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    # Magenta's finetune gives the new style set fresh tables, which then train.
    gamma = next(n for n in after if n.endswith("contract_conv1/InstanceNorm/gamma"))
    assert not np.allclose(after[gamma], 1.0)


def test_add_styles_keeps_old_rows_bit_identical(demo, uninterrupted, tmp_path):
    train_dir, _ = uninterrupted
    before = _weights(train_dir)
    experiment = _experiment(demo, tmp_path, train_steps=2, finetune_from=str(train_dir),
                             add_styles=True)
    experiment = dataclasses.replace(experiment, data=dataclasses.replace(
        experiment.data, style_dataset_file=demo["extra"]))
    result = train_lib.run(experiment, strategy=_one_device())
    assert result.model_config.num_styles == 5
    assert result.model_config.style_names[3:] == ("extra_a", "extra_b")
    after = _weights(tmp_path)
    changed_rows = 0
    for name, value in before.items():
        if "InstanceNorm" in name:
            assert after[name].shape == (5,) + value.shape[1:]
            np.testing.assert_array_equal(after[name][:3], value, err_msg=name)
            changed_rows += not np.array_equal(after[name][3:],
                                               np.repeat(value.mean(0, keepdims=True), 2, 0))
        else:
            np.testing.assert_array_equal(after[name], value, err_msg=name)
    assert changed_rows > 0, "the new styles' rows did not train"


def test_nonfinite_loss_stops_with_step_and_keeps_last_checkpoint(demo, tmp_path):
    def poison(total, step):
        # `step` counts completed steps, so step 2 is the third step. (tf.cond, not
        # tf.where, whose gradient would already be NaN in the branch not taken.)
        return tf.cond(step >= 2, lambda: total * np.nan, lambda: total)

    with pytest.raises(train_lib.NonFiniteLossError) as info:
        train_lib.run(_experiment(demo, tmp_path, train_steps=6), strategy=_one_device(),
                      loss_hook=poison)
    assert info.value.step == 3
    assert "step 3" in str(info.value)
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")


def test_train_errors_are_one_line(demo, tmp_path):
    with pytest.raises(train_lib.TrainError, match="--num_styles=7 disagrees"):
        train_lib.run(dataclasses.replace(_experiment(demo, tmp_path), num_styles=7),
                      strategy=_one_device())
    bad = _experiment(demo, tmp_path)
    bad = dataclasses.replace(bad, data=dataclasses.replace(
        bad.data, content_images=str(tmp_path / "nothing*.jpg")))
    with pytest.raises(train_lib.TrainError, match="no image files"):
        train_lib.run(bad, strategy=_one_device())


def _cli(*args, timeout=120):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "magenta_style.train", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("args, message", [
    (["--batch_size=0"], "batch_size must be an integer >= 1"),
    (["--bogus_flag=1"], "Unknown command line flag 'bogus_flag'"),
    (["--style_weights=vgg_16/conv9:1"], "unknown VGG end point 'vgg_16/conv9'"),
    (["--strategy=gpu"], "value should be one of"),
    # Checked before training, not after it.
    (["--grid_photos=/nonexistent/photos"], "--grid_photos=/nonexistent/photos: "),
])
def test_bad_flags_are_one_line_errors(tmp_path, args, message):
    proc = _cli("--flagfile=configs/tiny.cfg", f"--train_dir={tmp_path}",
                "--style_dataset_file=x", "--content_images=y", *args)
    assert proc.returncode == 2, proc.stderr
    # TensorFlow's C++ start-up may log before absl is configured; ours is one line.
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("magenta_style.train")]
    assert len(lines) == 1 and lines[0].startswith("magenta_style.train: error:"), proc.stderr
    assert proc.stderr.rstrip().endswith(lines[0])
    assert message in lines[0]


def test_kill_9_mid_run_then_resume(demo, tmp_path, kill_9_at_checkpoint):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "magenta_style.train", "--flagfile=configs/tiny.cfg",
         f"--train_dir={tmp_path}", f"--style_dataset_file={demo['styles']}",
         f"--content_images={demo['content']}", "--train_steps=100000", "--seed=3",
         "--steps_per_loop=1", "--save_interval_steps=1", "--summary_interval_steps=0",
         "--max_to_keep=2"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    kill_9_at_checkpoint(proc, tmp_path, step=3, timeout=150)
    killed_at = int(tf.train.latest_checkpoint(str(tmp_path)).rsplit("-", 1)[1])
    experiment = _experiment(demo, tmp_path, train_steps=killed_at + 2, steps_per_loop=1,
                             save_interval_steps=1, max_to_keep=2)
    result = train_lib.run(experiment, strategy=_one_device())
    assert result.resumed_from_step >= killed_at
    assert result.step == killed_at + 2
    checkpoints.load_model(str(tmp_path))  # Loads cleanly.


def _free_ports(count):
    import socket
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_multi_worker_two_processes_match_one_device(demo, uninterrupted, tmp_path):
    """MultiWorkerMirroredStrategy over two local processes, 2 steps, vs one device."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    train_dir = tmp_path / "mw"
    args = ["--flagfile=configs/tiny.cfg", f"--train_dir={train_dir}",
            f"--style_dataset_file={demo['styles']}", f"--content_images={demo['content']}",
            "--train_steps=2", "--steps_per_loop=1", "--save_interval_steps=2", "--seed=3",
            "--summary_interval_steps=0", "--strategy=multi_worker"]
    procs = []
    for index in range(2):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "3",
               "CUDA_VISIBLE_DEVICES": ""}
        procs.append(subprocess.Popen([sys.executable, "-m", "magenta_style.train", *args],
                                      cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for proc in procs:
            # A worker waiting for a missing peer ignores SIGTERM: communicate's timeout
            # is followed by kill() (SIGKILL) in `finally`.
            outputs.append(proc.communicate(timeout=240)[0])
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
    assert int(tf.train.latest_checkpoint(str(train_dir)).rsplit("-", 1)[1]) == 2
    assert not [p for p in os.listdir(train_dir) if p.startswith(".worker_tmp")]
    # One device's weights after the same 2 steps (the uninterrupted run's ckpt-2).
    reference_dir, _ = uninterrupted
    multi, _ = checkpoints.load_model(str(train_dir))
    single, _ = checkpoints.load_model(str(reference_dir / "ckpt-2"))
    for a, b in zip(multi.weights, single.weights):
        if re.search(r"residual\d/conv2/InstanceNorm/beta", a.path):
            # True gradient zero (the next norm removes it): Adam turns rounding noise
            # into +-learning-rate steps, as fixtures/README.md explains.
            continue
        diff = np.linalg.norm(a.numpy() - b.numpy()) / max(np.linalg.norm(b.numpy()), 1e-12)
        assert diff < 1e-3, (a.path, diff)


def test_a_finished_run_leaves_no_traced_graph_alive(demo, uninterrupted, tmp_path):
    # TensorFlow registers every traced custom gradient process-wide, and the entry holds
    # the run's step graph: 11 graphs and ~300 MB kept per run before
    # kernels.custom_gradients_released. Last in the file: it clears Keras' session.
    def graphs_alive():
        # Keras' session state holds a few of a run's graphs until it is cleared, as a
        # notebook user can (and conftest does after each file); the leak survived that.
        tf.keras.backend.clear_session(free_memory=True)
        gc.collect()
        return sum(isinstance(o, tf.Graph) for o in gc.get_objects())

    # The module's earlier runs (`uninterrupted` first) filled the lasting caches
    # (functions traced once per process); one more run must leave nothing more.
    counts = [graphs_alive()]
    train_lib.run(_experiment(demo, tmp_path / "run", train_steps=2), strategy=_one_device())
    counts.append(graphs_alive())
    assert counts[1] - counts[0] < 3, f"a training run left {counts[1] - counts[0]} graphs"
