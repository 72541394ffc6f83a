"""Truncated or corrupt files are one-line errors naming the file, never tracebacks.

Every loader goes through checkpoints.load_model / stylizer.load /
vgg.build_vgg16, so these are tested here once, on a tiny model (alpha 0.25).
"""
import os
import shutil

import pytest

from magenta_style import config as config_lib
from magenta_style.inference import stylizer
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer
from magenta_style.networks import vgg
from magenta_style.networks import vgg_weights
from magenta_style.serving import export_lib

# Every test here uses damaged copies of an export.
pytestmark = pytest.mark.slow


def _truncate(path, fraction=0.5):
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * fraction))


def _only(directory, marker):
    return os.path.join(directory, [n for n in os.listdir(directory) if marker in n][0])


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    model_config = config_lib.ModelConfig(num_styles=2, alpha=0.25)
    model = transformer.build_transformer(model_config)
    train_dir = str(root / "good")
    checkpoints.save_model(model, model_config, train_dir, step=3)
    export_dir = export_lib.export_saved_model(model, model_config, str(root / "exp"),
                                               warmup_size=0)
    return root, train_dir, export_dir


def _damage_checkpoint(kind, directory):
    if kind == "truncated data":
        _truncate(_only(directory, ".data-"))
    elif kind == "garbage index":
        with open(_only(directory, ".index"), "wb") as f:
            f.write(b"garbage" * 10)
    elif kind == "truncated index":
        _truncate(_only(directory, ".index"), 0.1)
    else:
        text = {"truncated config": '{"model": {"num_st', "binary config": "\udcff",
                "list config": "[1, 2]", "model not an object": '{"model": 5}'}[kind]
        with open(os.path.join(directory, "config.json"), "w", errors="surrogateescape") as f:
            f.write(text)


@pytest.mark.parametrize("kind, names", [
    ("truncated data", "ckpt-3"), ("garbage index", "ckpt-3"), ("truncated index", "ckpt-3"),
    ("truncated config", "config.json"), ("binary config", "config.json"),
    ("list config", "config.json"), ("model not an object", "config.json"),
])
def test_damaged_checkpoint_is_a_checkpoint_error(good, tmp_path, kind, names):
    _, train_dir, _ = good
    damaged = str(tmp_path / "damaged")
    shutil.copytree(train_dir, damaged)
    _damage_checkpoint(kind, damaged)
    for load in (checkpoints.load_model, stylizer.load):
        with pytest.raises(checkpoints.CheckpointError) as info:
            load(damaged)
        assert names in str(info.value) and damaged in str(info.value)


def test_garbled_state_file_finds_the_newest_checkpoint_by_name(good, tmp_path):
    _, train_dir, _ = good
    damaged = str(tmp_path / "state")
    shutil.copytree(train_dir, damaged)
    with open(os.path.join(damaged, "checkpoint"), "w") as f:
        f.write('garbage {{{ "')
    prefix, _ = checkpoints.resolve_checkpoint(damaged)
    assert prefix == os.path.join(damaged, "ckpt-3")
    os.remove(os.path.join(damaged, "checkpoint"))
    assert checkpoints.resolve_checkpoint(damaged)[0] == prefix


@pytest.mark.parametrize("kind", ["garbage saved_model.pb", "truncated variables",
                                  "truncated metadata"])
def test_damaged_export_is_a_checkpoint_error(good, tmp_path, kind):
    _, _, export_dir = good
    damaged = str(tmp_path / "1")
    shutil.copytree(export_dir, damaged)
    if kind == "garbage saved_model.pb":
        with open(os.path.join(damaged, "saved_model.pb"), "wb") as f:
            f.write(b"garbage" * 100)
    elif kind == "truncated variables":
        _truncate(_only(os.path.join(damaged, "variables"), ".data-"))
    else:
        for sub in ("assets", "assets.extra"):
            _truncate(os.path.join(damaged, sub, "config.json"))
    with pytest.raises(checkpoints.CheckpointError) as info:
        stylizer.load(damaged)
    assert damaged in str(info.value)


def test_truncated_magenta_and_vgg_checkpoints(fixtures_dir, slim_vgg16, tmp_path):
    source = fixtures_dir / "magenta" / "nstyle_a05_s3"
    for name in os.listdir(source):
        if name.startswith("model.ckpt"):
            shutil.copy(source / name, tmp_path / name)
    _truncate(_only(str(tmp_path), "model.ckpt.data-"))
    with pytest.raises(checkpoints.CheckpointError, match="model.ckpt"):
        checkpoints.load_model(str(tmp_path / "model.ckpt"))
    prefix = slim_vgg16.write_checkpoint(str(tmp_path / "vgg" / "vgg_16.ckpt"), seed=7)
    _truncate(_only(str(tmp_path / "vgg"), ".data-"))
    with pytest.raises(vgg_weights.VGGWeightsError, match="vgg_16.ckpt"):
        vgg.build_vgg16(prefix)
