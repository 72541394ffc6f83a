"""Checkpoints of the arbitrary-style model (arbitrary.py): Magenta's TF1 ones and native ones.

- Magenta TF1 (`tf.train.Saver`; the released `arbitrary_style_transfer` checkpoint and
  whatever Magenta's trainer wrote): keys `InceptionV3/...`, `Conv/...`,
  `style_params/...`, `transformer/...` (arbitrary.ArbitraryStyleNetwork.checkpoint_keys).
  `global_step`, optimizer slots and `vgg_16/*` are ignored, with the N-style loader's
  report (checkpoints.LoadReport). alpha is inferred from the contract widths.
- Native: a `tf.train.Checkpoint` whose keys are the same Magenta names
  (`transformer/contract/conv1/weights/.ATTRIBUTES/VARIABLE_VALUE`, see
  checkpoints.named_tree) in a directory with config.json (`generator: "arbitrary"`).

What a checkpoint holds tells the kinds apart (`is_arbitrary_checkpoint`): an arbitrary
model has `style_params/...` heads, an N-style one `.../InstanceNorm/gamma` tables.
"""
import dataclasses
import os
import re

from absl import logging
import tensorflow as tf

from magenta_style import config
from magenta_style.networks import arbitrary
from magenta_style.networks import checkpoints

# One head of the style predictor: present in every arbitrary checkpoint, never in others.
PROBE_KEY = ("style_params/transformer/residual/residual1/conv1/StyleNorm/Conv/weights")
_WIDTH_KEYS = ("transformer/contract/conv1/weights", "transformer/contract/conv2/weights",
               "transformer/contract/conv3/weights")
GENERATOR = config.ARBITRARY


def _keys(prefix):
    """The checkpoint's {key: shape}, with a native checkpoint's suffix stripped."""
    _, shapes = checkpoints._read_all(prefix)  # pylint: disable=protected-access
    suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
    return {k[:-len(suffix)] if k.endswith(suffix) else k: v for k, v in shapes.items()}


def holds_arbitrary_model(path):
    """True when the checkpoint at `path` (a prefix or a directory) holds an arbitrary-style
    model, False when it holds another.

    Raises:
      checkpoints.CheckpointError: no readable checkpoint there.
    """
    prefix, _ = checkpoints.resolve_checkpoint(path)
    return PROBE_KEY in _keys(prefix)


def is_arbitrary_checkpoint(path):
    """True when `path` (a prefix or a directory) holds an arbitrary-style model; False
    for anything else, an unreadable path included."""
    try:
        return holds_arbitrary_model(path)
    except checkpoints.CheckpointError:
        return False


def infer_config(prefix):
    """ModelConfig (generator "arbitrary", num_styles 1, alpha) from the variable shapes."""
    shapes = _keys(prefix)
    missing = [k for k in (PROBE_KEY,) + _WIDTH_KEYS if k not in shapes]
    if missing:
        raise checkpoints.CheckpointError(
            f"{prefix!r} is not an arbitrary-style checkpoint: it lacks {', '.join(missing)}")
    widths = [(n, int(shapes[k][-1])) for n, k in zip((32, 64, 128), _WIDTH_KEYS)]
    alpha = checkpoints._nice_alpha(widths)  # pylint: disable=protected-access
    if alpha is None:
        raise checkpoints.CheckpointError(
            f"{prefix!r}: widths {[w for _, w in widths]} match no alpha (int(alpha * 32/64/128))")
    return config.ModelConfig(num_styles=1, alpha=alpha, generator=GENERATOR)


# What a native training checkpoint (train_lib) holds besides the model: never mapped.
_IGNORED_NATIVE_KEYS = re.compile(r"^(optimizer/|step$|next_index$|skipped_images$|"
                                  r"_CHECKPOINTABLE_OBJECT_GRAPH$|save_counter$)")
_NATIVE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def load_magenta_weights(model, prefix):
    """Copies a Magenta TF1 checkpoint, or a native one (ours, a training run's
    included), into the built `model`; returns checkpoints.LoadReport: every model
    weight loaded; `ignored` the keys deliberately skipped (global_step, optimizer
    slots, vgg_16, a training run's counters), `unmapped` any other key.

    Raises:
      checkpoints.CheckpointError: a weight is missing, a shape differs, or the file is
        truncated or corrupt.
    """
    reader, raw_shapes = checkpoints._read_all(prefix)  # pylint: disable=protected-access
    native = PROBE_KEY not in raw_shapes
    # {Magenta key: stored key}: a native checkpoint's keys carry a suffix.
    stored = {(k[:-len(_NATIVE_SUFFIX)] if native and k.endswith(_NATIVE_SUFFIX) else k): k
              for k in raw_shapes}
    shapes = {k: raw_shapes[v] for k, v in stored.items()}
    wanted = model.checkpoint_keys()
    missing = sorted(k for k in wanted if k not in shapes)
    if missing:
        raise checkpoints.CheckpointError(
            f"{prefix!r} lacks {len(missing)} variable(s) the arbitrary-style model needs: "
            + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    for key, variable in wanted.items():
        if tuple(shapes[key]) != tuple(variable.shape):
            raise checkpoints.CheckpointError(
                f"{prefix!r}: {key} has shape {tuple(shapes[key])}, the model expects "
                f"{tuple(variable.shape)}")
    try:
        for key, variable in wanted.items():
            variable.assign(reader.get_tensor(stored[key]))
    except checkpoints._CORRUPT_ERRORS as e:  # pylint: disable=protected-access
        raise checkpoints.CheckpointError(
            f"cannot read checkpoint {prefix!r} (truncated or corrupt?): "
            f"{checkpoints._reason(e)}") from None  # pylint: disable=protected-access
    ignored_re = (_IGNORED_NATIVE_KEYS if native
                  else checkpoints._IGNORED_MAGENTA_KEYS)  # pylint: disable=protected-access
    others = sorted(k for k in shapes if k not in wanted)
    return checkpoints.LoadReport(loaded=sorted(wanted),
                                  ignored=[k for k in others if ignored_re.match(k)],
                                  unmapped=[k for k in others if not ignored_re.match(k)])


def native_checkpoint(model):
    """tf.train.Checkpoint of `model` keyed by Magenta's names (checkpoints.named_tree)."""
    return tf.train.Checkpoint(**checkpoints.named_tree(model.checkpoint_keys()))


def load_model(path, magenta_compatible=False):
    """Builds the arbitrary-style model and loads a Magenta or native checkpoint into it.

    Args:
      path: a checkpoint prefix or a directory holding one (and config.json for native).
      magenta_compatible: Magenta's output size for sides that are not multiples of 4.

    Returns:
      (arbitrary.ArbitraryStyleNetwork, ModelConfig with generator "arbitrary").

    Raises:
      checkpoints.CheckpointError: unreadable, not this model, missing weights.
    """
    prefix, directory = checkpoints.resolve_checkpoint(path)
    _, shapes = checkpoints._read_all(prefix)  # pylint: disable=protected-access
    model_config = infer_config(prefix)
    saved = None
    if directory and os.path.exists(os.path.join(directory, config.CONFIG_FILENAME)):
        saved = checkpoints._saved_model_config(directory)  # pylint: disable=protected-access
    if saved is not None and saved.generator == GENERATOR:
        model_config = dataclasses.replace(model_config, style_names=saved.style_names)
    model = arbitrary.build_arbitrary(model_config.alpha, magenta_compatible=magenta_compatible)
    if PROBE_KEY in shapes:
        report = load_magenta_weights(model, prefix)
        logging.info("Magenta arbitrary-style checkpoint %s: %s", prefix,
                     report.summary().replace("transformer variables", "variables"))
    else:
        try:
            native_checkpoint(model).read(prefix).expect_partial().assert_existing_objects_matched()
        except (AssertionError, ValueError) as e:
            raise checkpoints.CheckpointError(
                f"{prefix!r} does not fit the arbitrary-style model: {e}") from None
        except checkpoints._CORRUPT_ERRORS as e:  # pylint: disable=protected-access
            raise checkpoints.CheckpointError(
                f"cannot restore {prefix!r} (truncated or corrupt?): "
                f"{checkpoints._reason(e)}") from None  # pylint: disable=protected-access
    return model, model_config


def save_model(model, model_config, directory, step=0):
    """Writes a native checkpoint of `model` plus config.json into `directory`; the prefix."""
    os.makedirs(directory, exist_ok=True)
    manager = tf.train.CheckpointManager(native_checkpoint(model), directory, max_to_keep=1)
    prefix = checkpoints.save_quietly(manager, step)
    config.save_model_config(directory, model_config)
    return prefix


def save_magenta_checkpoint(model, prefix, global_step=0):
    """Writes `model` as Magenta's TF1 checkpoint (V2 `.index` + `.data`, atomically)."""
    return checkpoints.write_tf1_checkpoint(model.checkpoint_keys(), prefix, global_step)
