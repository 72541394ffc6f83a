"""Magenta checkpoint loading and parity with the original Magenta outputs (fixtures)."""
import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from magenta_style import config
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARITY_ATOL = 1e-4  # fixtures/README.md: a faithful port agrees to < 1e-4.


@pytest.fixture(scope="module")
def nstyle(fixtures_dir):
    return fixtures_dir / "magenta" / "nstyle_a05_s3"


@pytest.fixture(scope="module")
def content(nstyle):
    return (np.asarray(Image.open(nstyle / "content.png"), np.float32) / 255.0)[None]


@pytest.fixture(scope="module")
def magenta_model(nstyle):
    return checkpoints.load_model(str(nstyle / "model.ckpt"))


def test_config_is_inferred_from_shapes(nstyle, magenta_model):
    _, model_config = magenta_model
    meta = json.loads((nstyle / "meta.json").read_text())
    assert (model_config.num_styles, model_config.alpha) == (meta["num_styles"], meta["alpha"])


def test_parity_per_style(nstyle, content, magenta_model):
    model, _ = magenta_model
    expected = np.load(nstyle / "expected_styles.npy")
    out = model(np.repeat(content, 3, axis=0), tf.constant([0, 1, 2])).numpy()
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() < PARITY_ATOL


def test_parity_mixture(nstyle, content, magenta_model):
    model, _ = magenta_model
    meta = json.loads((nstyle / "meta.json").read_text())
    weights = np.array([meta["mixture_vector"]], np.float32)
    out = model(content, weights).numpy()
    assert np.abs(out - np.load(nstyle / "expected_mixture.npy")).max() < PARITY_ATOL


def test_parity_odd_size_in_magenta_compatible_mode(nstyle):
    model, _ = checkpoints.load_model(str(nstyle / "model.ckpt"), magenta_compatible=True)
    odd = np.load(nstyle / "odd_input.npy")
    expected = np.load(nstyle / "expected_odd.npy")
    # The fixture stylizes the odd input with the last of which_styles=[0, 1, 2].
    out = model(odd, tf.constant([2])).numpy()
    assert out.shape == expected.shape == (1, 96, 132, 3)
    assert np.abs(out - expected).max() < PARITY_ATOL


def test_default_mode_keeps_odd_size_and_matches_magenta_where_unpadded(nstyle, magenta_model):
    model, _ = magenta_model
    odd = np.load(nstyle / "odd_input.npy")
    out = model(odd, tf.constant([2])).numpy()
    assert out.shape == odd.shape


def test_every_magenta_key_is_mapped_and_every_weight_filled(nstyle, magenta_model):
    model, _ = magenta_model
    report = checkpoints.load_magenta_weights(model, str(nstyle / "model.ckpt"))
    names = set(json.loads((nstyle / "meta.json").read_text())["variables"])
    transformer_keys = {n for n in names if n.startswith("transformer/") and "Adam" not in n}
    assert set(report.loaded) == transformer_keys
    assert len(report.loaded) == len(model.weights)
    assert "global_step" in report.ignored
    assert any(k.endswith("/Adam") for k in report.ignored)
    assert report.unmapped == []


def test_magenta_name_mapping():
    assert checkpoints.magenta_name("contract_conv2/weights") == "transformer/contract/conv2/weights"
    assert (checkpoints.magenta_name("style_transfer_network/residual4/conv1/InstanceNorm/beta")
            == "transformer/residual/residual4/conv1/InstanceNorm/beta")
    assert (checkpoints.magenta_name("expand_conv3/conv/InstanceNorm/gamma")
            == "transformer/expand/conv3/conv/InstanceNorm/gamma")


def _write_tf1_checkpoint(values, prefix, v1=False):
    """Writes `values` ({name: array}) with a TF1 Saver, like Magenta's trainer."""
    from tensorflow.core.protobuf import saver_pb2
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.Variable(v, name=k) for k, v in values.items()]
        version = saver_pb2.SaverDef.V1 if v1 else saver_pb2.SaverDef.V2
        saver = tf.compat.v1.train.Saver(variables, write_version=version)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, prefix, write_meta_graph=False)


def _fixture_values(nstyle):
    reader = tf.train.load_checkpoint(str(nstyle / "model.ckpt"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


def test_v1_single_file_checkpoint_loads(nstyle, content, magenta_model, tmp_path):
    prefix = _write_tf1_checkpoint(_fixture_values(nstyle), str(tmp_path / "model_v1.ckpt"), v1=True)
    assert os.path.isfile(prefix) and not os.path.exists(prefix + ".index")
    model, model_config = checkpoints.load_model(prefix)
    assert model_config.num_styles == 3
    expected = np.load(nstyle / "expected_styles.npy")[1:2]
    assert np.abs(model(content, tf.constant([1])).numpy() - expected).max() < PARITY_ATOL


def test_missing_variable_and_shape_mismatch_fail_clearly(nstyle, tmp_path):
    values = _fixture_values(nstyle)
    missing = dict(values)
    del missing["transformer/residual/residual2/conv1/weights"]
    prefix = _write_tf1_checkpoint(missing, str(tmp_path / "missing.ckpt"))
    with pytest.raises(checkpoints.CheckpointError, match="residual2/conv1/weights"):
        checkpoints.load_model(prefix)
    wrong = dict(values)
    wrong["transformer/expand/conv2/conv/weights"] = np.zeros([3, 3, 32, 17], np.float32)
    prefix = _write_tf1_checkpoint(wrong, str(tmp_path / "wrong.ckpt"))
    with pytest.raises(checkpoints.CheckpointError, match="expand/conv2/conv/weights has shape"):
        checkpoints.load_model(prefix)


def test_unmapped_keys_are_reported(nstyle, tmp_path):
    values = _fixture_values(nstyle)
    values["transformer/extra/thing"] = np.zeros([2], np.float32)
    prefix = _write_tf1_checkpoint(values, str(tmp_path / "extra.ckpt"))
    model = transformer.build_transformer(config.ModelConfig(3, 0.5))
    report = checkpoints.load_magenta_weights(model, prefix)
    assert report.unmapped == ["transformer/extra/thing"]
    assert "NOT MAPPED: transformer/extra/thing" in report.summary()


def test_given_num_styles_or_alpha_must_agree(nstyle):
    with pytest.raises(checkpoints.CheckpointError, match="--num_styles=4"):
        checkpoints.load_model(str(nstyle / "model.ckpt"), num_styles=4)
    with pytest.raises(checkpoints.CheckpointError, match="--alpha=1.0"):
        checkpoints.load_model(str(nstyle / "model.ckpt"), alpha=1.0)
    checkpoints.load_model(str(nstyle / "model.ckpt"), num_styles=3, alpha=0.5)


def test_bad_paths_fail_clearly(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint at"):
        checkpoints.load_model(str(tmp_path / "nope.ckpt"))
    with pytest.raises(checkpoints.CheckpointError, match="directory without a checkpoint"):
        checkpoints.load_model(str(tmp_path))
    bogus = tmp_path / "bogus.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoints.CheckpointError, match="cannot read checkpoint"):
        checkpoints.load_model(str(bogus))


def test_alpha_inference_for_uneven_widths():
    assert checkpoints._nice_alpha([(32, 9), (64, 19), (128, 38)]) == 0.3
    assert checkpoints._nice_alpha([(32, 32), (64, 64), (128, 128)]) == 1.0
    assert checkpoints._nice_alpha([(32, 8), (64, 32), (128, 32)]) is None


def test_native_round_trip_with_config(tmp_path):
    model_config = config.ModelConfig(2, 0.25, ("a", "b"))
    model = transformer.build_transformer(model_config)
    for v in model.weights:
        v.assign(tf.random.stateless_normal(v.shape, seed=[len(v.path), 3]))
    checkpoints.save_model(model, model_config, str(tmp_path / "m"))
    loaded, loaded_config = checkpoints.load_model(str(tmp_path / "m"))
    assert loaded_config == model_config
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(checkpoints.CheckpointError, match="--alpha"):
        checkpoints.load_model(str(tmp_path / "m"), alpha=0.5)


def test_native_checkpoint_of_other_config_fails_clearly(tmp_path):
    model_config = config.ModelConfig(2, 0.25)
    checkpoints.save_model(transformer.build_transformer(model_config), model_config,
                           str(tmp_path / "m"))
    config.save_model_config(str(tmp_path / "m"), config.ModelConfig(3, 0.25))
    with pytest.raises(checkpoints.CheckpointError):
        checkpoints.load_model(str(tmp_path / "m"))


def test_convert_tool_writes_native_checkpoint(run_command, nstyle, content, tmp_path):
    out = tmp_path / "converted"
    result = run_command(
        [sys.executable, os.path.join(REPO, "tools", "convert_magenta_checkpoint.py"),
         f"--magenta_checkpoint={nstyle / 'model.ckpt'}", f"--output_dir={out}",
         "--style_names=red,green,blue"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "num_styles=3 alpha=0.5" in result.stdout
    saved = json.loads((out / "config.json").read_text())["model"]
    assert saved == {"num_styles": 3, "alpha": 0.5, "style_names": ["red", "green", "blue"]}
    model, model_config = checkpoints.load_model(str(out))
    assert model_config.style_names == ("red", "green", "blue")
    expected = np.load(nstyle / "expected_styles.npy")[2:3]
    assert np.abs(model(content, tf.constant([2])).numpy() - expected).max() < PARITY_ATOL


def test_convert_tool_rejects_non_magenta_checkpoint(run_command, tmp_path):
    model_config = config.ModelConfig(2, 0.25)
    native = checkpoints.save_model(transformer.build_transformer(model_config), model_config,
                                    str(tmp_path / "native"))
    result = run_command(
        [sys.executable, os.path.join(REPO, "tools", "convert_magenta_checkpoint.py"),
         f"--magenta_checkpoint={native}", f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "is not a Magenta stylization checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def _magenta_keys(nstyle):
    meta = json.loads((nstyle / "meta.json").read_text())
    names = meta["variables"] if isinstance(meta["variables"], dict) else {
        v["name"]: v["shape"] for v in meta["variables"]}
    return {k: list(s) for k, s in names.items()
            if k.startswith("transformer/") and not k.endswith("/Adam")}


def test_native_checkpoint_keys_are_magenta_names(nstyle, magenta_model, tmp_path):
    model, model_config = magenta_model
    prefix = checkpoints.save_model(model, model_config, str(tmp_path / "m"))
    listed = dict(tf.train.list_variables(prefix))
    expected = {f"{k}/.ATTRIBUTES/VARIABLE_VALUE": s for k, s in _magenta_keys(nstyle).items()}
    assert {k: listed[k] for k in expected if k in listed} == expected
    assert not any("_trainable_variables" in k or "layer_with_weights" in k for k in listed)


def test_training_checkpoint_keeps_weights_out_of_the_optimizer(tmp_path):
    model = transformer.build_transformer(config.ModelConfig(2, 0.25))
    optimizer = tf.keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    prefix = checkpoints.training_checkpoint(
        model, optimizer, step=tf.Variable(3, dtype=tf.int64)).save(str(tmp_path / "ckpt"))
    listed = dict(tf.train.list_variables(prefix))
    assert "transformer/contract/conv1/weights/.ATTRIBUTES/VARIABLE_VALUE" in listed
    assert "optimizer/iteration/.ATTRIBUTES/VARIABLE_VALUE" in listed
    assert "optimizer/contract/conv1/weights/momentum/.ATTRIBUTES/VARIABLE_VALUE" in listed
    assert not any("_trainable_variables" in k for k in listed), sorted(listed)


def test_checkpoints_in_the_old_object_layout_still_load(tmp_path):
    model_config = config.ModelConfig(2, 0.25)
    model = transformer.build_transformer(model_config)
    for v in model.weights:
        v.assign(tf.random.stateless_normal(v.shape, seed=[len(v.path), 5]))
    optimizer = tf.keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    # What earlier versions wrote: the Keras objects themselves.
    old = tf.train.Checkpoint(transformer=model, optimizer=optimizer).write(
        str(tmp_path / "m" / "ckpt-1"))
    config.save_model_config(str(tmp_path / "m"), model_config)
    assert not checkpoints.has_named_layout(old, model)
    loaded, _ = checkpoints.load_model(old)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_magenta_checkpoint_written_back_loads_with_magenta_names(nstyle, content,
                                                                   magenta_model, tmp_path):
    model, _ = magenta_model
    prefix = checkpoints.save_magenta_checkpoint(model, str(tmp_path / "back.ckpt"),
                                                 global_step=9)
    listed = dict(tf.train.list_variables(prefix))
    assert listed.pop("global_step") == []
    assert listed == _magenta_keys(nstyle)
    assert not list(tmp_path.glob(".tmp-*"))
    again, again_config = checkpoints.load_model(prefix)
    assert (again_config.num_styles, again_config.alpha) == (3, 0.5)
    ids = tf.constant([0, 1, 2])
    batch = np.repeat(content, 3, axis=0)
    np.testing.assert_array_equal(again(batch, ids).numpy(), model(batch, ids).numpy())


def test_export_magenta_checkpoint_tool(run_command, nstyle, content, tmp_path):
    native = tmp_path / "native"
    model, model_config = checkpoints.load_model(str(nstyle / "model.ckpt"))
    checkpoints.save_model(model, model_config, str(native), step=12)
    tool = os.path.join(REPO, "tools", "export_magenta_checkpoint.py")
    out = tmp_path / "magenta" / "model.ckpt"
    result = run_command([sys.executable, tool, f"--checkpoint={native}", f"--output={out}"],
                         capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "num_styles=3 alpha=0.5 global_step=12" in result.stdout
    assert checkpoints.is_magenta_checkpoint(str(out))
    expected = np.load(nstyle / "expected_styles.npy")[1:2]
    back, _ = checkpoints.load_model(str(out))
    assert np.abs(back(content, tf.constant([1])).numpy() - expected).max() < PARITY_ATOL
    again = run_command([sys.executable, tool, f"--checkpoint={native}", f"--output={out}"],
                        capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "already exists" in again.stderr
    broken = run_command([sys.executable, tool, f"--checkpoint={tmp_path / 'nope'}",
                          f"--output={tmp_path / 'x'}"], capture_output=True, text=True,
                         timeout=300)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr


def test_save_quietly_drops_only_the_sharding_log_line(tmp_path):
    import logging
    from absl import logging as absl_logging

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)),
                                         str(tmp_path), max_to_keep=2)
    handler, logger = Keep(level=logging.DEBUG), absl_logging.get_absl_logger()
    old_verbosity = absl_logging.get_verbosity()
    logger.addHandler(handler)
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        manager.save(checkpoint_number=1)
        plain = list(records)
        records.clear()
        prefix = checkpoints.save_quietly(manager, 2)
        absl_logging.info("after the save")
    finally:
        logger.removeHandler(handler)
        absl_logging.set_verbosity(old_verbosity)
    assert [r for r in plain if "Sharding callback duration" in r]  # TF does log it
    assert not [r for r in records if "Sharding callback duration" in r]
    assert "after the save" in records and prefix.endswith("ckpt-2")
