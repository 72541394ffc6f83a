"""Reading and writing transformer weights: Magenta TF1 checkpoints and native ones.

Two formats:

- Magenta's TF1 checkpoints (`tf.train.Saver`, V2 `.index`/`.data` or the older
  single-file V1 format): the released `multistyle-pastiche-generator-monet.ckpt`
  (10 styles) and `-varied.ckpt` (32 styles, both alpha 1.0), and anything
  Magenta's trainer wrote. Keys such as `transformer/contract/conv1/weights` are
  mapped to this package's Keras weight paths by `magenta_name`, one rule per
  network stage. `num_styles` and `alpha` are inferred from the shapes.
- Native checkpoints: object-based `tf.train.Checkpoint(transformer=model, ...)`
  (training adds `optimizer` and `step`) managed by `tf.train.CheckpointManager`
  in a directory that also holds `config.json` (see `config.py`).

`load_model(path)` accepts either and returns the model with its ModelConfig.
"""
import dataclasses
import math
import os
import re

from absl import logging
import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style import transformer

MAGENTA_SCOPE = "transformer"
# Keys a trained Magenta checkpoint holds besides the transformer; never mapped.
_IGNORED_MAGENTA_KEYS = re.compile(
    r"^(global_step$|vgg_16/|beta[12]_power|.*/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1|"
    r"ExponentialMovingAverage)$)")
# Weight that fixes the style count and first width: [num_styles, int(32 * alpha)].
_PROBE_KEY = "transformer/contract/conv1/InstanceNorm/gamma"
_WIDTH_KEYS = ("transformer/contract/conv1/weights", "transformer/contract/conv2/weights",
               "transformer/contract/conv3/weights")


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model; the message says why."""


@dataclasses.dataclass
class LoadReport:
    """What a Magenta checkpoint load did.

    Attributes:
      loaded: Magenta keys copied into the model.
      ignored: keys deliberately skipped (global_step, optimizer slots, vgg_16/*).
      unmapped: other checkpoint keys that no model weight uses.
    """

    loaded: list
    ignored: list
    unmapped: list

    def summary(self):
        text = (f"loaded {len(self.loaded)} transformer variables; ignored {len(self.ignored)} "
                "(global_step, optimizer slots, vgg_16)")
        if self.unmapped:
            text += f"; NOT MAPPED: {', '.join(self.unmapped)}"
        return text


def magenta_name(keras_path):
    """Magenta TF1 key of a transformer weight, from its Keras path.

    'contract_conv1/weights'               -> 'transformer/contract/conv1/weights'
    'residual3/conv2/InstanceNorm/gamma'   -> 'transformer/residual/residual3/conv2/InstanceNorm/gamma'
    'expand_conv1/conv/weights'            -> 'transformer/expand/conv1/conv/weights'

    A leading model name ('style_transfer_network/...') is dropped.
    """
    parts = keras_path.split("/")
    if not re.match(r"(contract_conv|residual|expand_conv)\d", parts[0]):
        parts = parts[1:]
    head, rest = parts[0], parts[1:]
    if head.startswith("residual"):
        mapped = ["residual", head]
    else:
        stage, conv = head.split("_", 1)
        mapped = [stage, conv]
    return "/".join([MAGENTA_SCOPE] + mapped + rest)


# What TensorFlow raises for a truncated or corrupt checkpoint, depending on which
# file is damaged and where: OpError (DataLossError...), ValueError, and IndexError
# ("Read less bytes than requested") from the Python checkpoint reader.
_CORRUPT_ERRORS = (tf.errors.OpError, ValueError, IndexError, OSError)


def _reason(error):
    """The first line of an exception's message (OpError: without the op context)."""
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def _read_all(prefix):
    try:
        reader = tf.train.load_checkpoint(prefix)
    except _CORRUPT_ERRORS as e:
        raise CheckpointError(f"cannot read checkpoint {prefix!r}: {_reason(e)}") from None
    shapes = reader.get_variable_to_shape_map()
    return reader, shapes


def _nice_alpha(widths):
    """The shortest decimal alpha with int(alpha * n) == w for (n, w) in widths, or None."""
    lo = max(w / n for n, w in widths)
    hi = min((w + 1) / n for n, w in widths)
    if lo >= hi:
        return None
    for digits in range(0, 7):
        scale = 10 ** digits
        candidate = math.ceil(lo * scale - 1e-9) / scale
        if lo <= candidate < hi and all(int(candidate * n) == w for n, w in widths):
            return candidate
    return lo


def infer_magenta_config(prefix):
    """ModelConfig (num_styles, alpha) of a Magenta checkpoint, from its variable shapes."""
    _, shapes = _read_all(prefix)
    if _PROBE_KEY not in shapes:
        raise CheckpointError(
            f"{prefix!r} is not a Magenta stylization checkpoint: it has no {_PROBE_KEY!r}")
    num_styles = int(shapes[_PROBE_KEY][0])
    missing = [k for k in _WIDTH_KEYS if k not in shapes]
    if missing:
        raise CheckpointError(f"{prefix!r} is missing {', '.join(missing)}")
    widths = [(n, int(shapes[k][-1])) for n, k in zip((32, 64, 128), _WIDTH_KEYS)]
    alpha = _nice_alpha(widths)
    if alpha is None:
        raise CheckpointError(
            f"{prefix!r}: widths {[w for _, w in widths]} match no alpha (int(alpha * 32/64/128))")
    return config_lib.ModelConfig(num_styles=num_styles, alpha=alpha)


def load_magenta_weights(model, prefix):
    """Copies a Magenta TF1 checkpoint into `model`; returns a LoadReport.

    Raises:
      CheckpointError: a model weight is missing from the checkpoint, or a shape differs.
    """
    reader, shapes = _read_all(prefix)
    wanted = {magenta_name(v.path): v for v in model.weights}
    missing = sorted(k for k in wanted if k not in shapes)
    if missing:
        raise CheckpointError(f"{prefix!r} lacks {len(missing)} variable(s) the model needs: "
                              + ", ".join(missing))
    for key, variable in wanted.items():
        if tuple(shapes[key]) != tuple(variable.shape):
            raise CheckpointError(
                f"{prefix!r}: {key} has shape {tuple(shapes[key])}, the model expects "
                f"{tuple(variable.shape)} (wrong num_styles or alpha?)")
    try:
        for key, variable in wanted.items():
            variable.assign(reader.get_tensor(key))
    except _CORRUPT_ERRORS as e:
        raise CheckpointError(f"cannot read checkpoint {prefix!r} (truncated or corrupt?): "
                              f"{_reason(e)}") from None
    others = sorted(k for k in shapes if k not in wanted)
    ignored = [k for k in others if _IGNORED_MAGENTA_KEYS.match(k)]
    unmapped = [k for k in others if not _IGNORED_MAGENTA_KEYS.match(k)]
    return LoadReport(loaded=sorted(wanted), ignored=ignored, unmapped=unmapped)


def is_magenta_checkpoint(prefix):
    """True when `prefix` reads as a TF1 checkpoint holding Magenta's transformer keys."""
    try:
        _, shapes = _read_all(prefix)
    except CheckpointError:
        return False
    return _PROBE_KEY in shapes


def check_agrees(model_config, num_styles, alpha, source):
    """Raises CheckpointError when a given num_styles/alpha disagrees with `model_config`."""
    if num_styles is not None and num_styles != model_config.num_styles:
        raise CheckpointError(f"--num_styles={num_styles} disagrees with {source}, which has "
                              f"{model_config.num_styles} styles")
    if alpha is not None and (transformer.layer_widths(alpha)
                              != transformer.layer_widths(model_config.alpha)):
        raise CheckpointError(f"--alpha={alpha} disagrees with {source}, which has "
                              f"alpha={model_config.alpha}")


def resolve_checkpoint(path):
    """Returns (checkpoint_prefix, directory_with_config_or_None) for a file prefix or a directory.

    A directory resolves to its latest checkpoint (its `checkpoint` state file).
    """
    if os.path.isdir(path):
        try:
            prefix = tf.train.latest_checkpoint(path)
        except _CORRUPT_ERRORS:  # A garbled `checkpoint` state file.
            prefix = None
        if prefix is None:
            prefix = _newest_by_file_name(path)
        if prefix is None:
            raise CheckpointError(f"{path!r} is a directory without a checkpoint in it")
        return prefix, path
    if not (tf.io.gfile.exists(path + ".index") or tf.io.gfile.exists(path)):
        raise CheckpointError(f"no checkpoint at {path!r} (expected {path}.index or a "
                              "single-file checkpoint)")
    directory = os.path.dirname(path) or "."
    return path, directory


def _newest_by_file_name(directory):
    """The `<name>-<N>` prefix with the largest N among `directory`'s `.index` files, or
    None: for a directory whose `checkpoint` state file is missing or garbled."""
    numbered = []
    for name in tf.io.gfile.listdir(directory):
        match = re.fullmatch(r"(.+)-([0-9]+)\.index", name)
        if match:
            numbered.append((int(match.group(2)), match.group(0)[:-len(".index")]))
    return os.path.join(directory, max(numbered)[1]) if numbered else None


def _saved_model_config(directory):
    """config_lib.load_model_config, with a broken config.json as a CheckpointError."""
    try:
        return config_lib.load_model_config(directory)
    except config_lib.ConfigError as e:
        raise CheckpointError(str(e)) from None


def load_model(path, num_styles=None, alpha=None, magenta_compatible=False):
    """Builds the transformer and loads weights from a Magenta or native checkpoint.

    Args:
      path: a Magenta TF1 checkpoint prefix (or the directory of one), a native
        checkpoint prefix, or a directory holding config.json and checkpoints.
      num_styles, alpha: optional; when given they must agree with the checkpoint.
      magenta_compatible: passed to the network (Magenta's output size for odd sizes).

    Returns:
      (StyleTransferNetwork, ModelConfig).

    Raises:
      CheckpointError: unreadable path, unknown format, missing variables, shape
        mismatch, or num_styles/alpha disagreeing with the checkpoint.
    """
    prefix, directory = resolve_checkpoint(path)
    _, shapes = _read_all(prefix)  # Fails clearly on files that are no checkpoint at all.
    if _PROBE_KEY in shapes:
        model_config = infer_magenta_config(prefix)
        saved = _saved_model_config(directory) if directory else None
        if saved is not None and saved.num_styles == model_config.num_styles:
            model_config = dataclasses.replace(model_config, style_names=saved.style_names)
        check_agrees(model_config, num_styles, alpha, prefix)
        model = transformer.build_transformer(model_config, magenta_compatible)
        report = load_magenta_weights(model, prefix)
        logging.info("Magenta checkpoint %s: %s", prefix, report.summary())
        return model, model_config
    model_config = _saved_model_config(directory) if directory else None
    if model_config is None:
        raise CheckpointError(
            f"{prefix!r} is neither a Magenta checkpoint nor a native one with a "
            f"{config_lib.CONFIG_FILENAME} beside it")
    check_agrees(model_config, num_styles, alpha, os.path.join(directory,
                                                                config_lib.CONFIG_FILENAME))
    model = transformer.build_transformer(model_config, magenta_compatible)
    restore_native(model, prefix)
    return model, model_config


def restore_native(model, prefix):
    """Restores `model` from the `transformer` entry of a native checkpoint (others ignored)."""
    try:
        status = tf.train.Checkpoint(transformer=model).read(prefix)
        status.expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise CheckpointError(f"{prefix!r} does not fit a model of this config: {e}") from None
    except _CORRUPT_ERRORS as e:
        raise CheckpointError(f"cannot restore {prefix!r} (truncated or corrupt?): "
                              f"{_reason(e)}") from None


def save_model(model, model_config, directory, step=0):
    """Writes a native checkpoint of `model` plus config.json into `directory`.

    Returns the checkpoint prefix.
    """
    os.makedirs(directory, exist_ok=True)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(transformer=model), directory,
                                         max_to_keep=1)
    prefix = manager.save(checkpoint_number=step)
    config_lib.save_model_config(directory, model_config)
    return prefix
