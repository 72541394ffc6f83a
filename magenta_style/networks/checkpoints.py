"""Reading and writing transformer weights: Magenta TF1 checkpoints and native ones.

Two formats:

- Magenta's TF1 checkpoints (`tf.train.Saver`, V2 `.index`/`.data` or the older
  single-file V1 format): the released `multistyle-pastiche-generator-monet.ckpt`
  (10 styles) and `-varied.ckpt` (32 styles, both alpha 1.0), and anything
  Magenta's trainer wrote. Keys such as `transformer/contract/conv1/weights` are
  mapped to this package's Keras weight paths by `magenta_name`, one rule per
  network stage. `num_styles` and `alpha` are inferred from the shapes.
- Native checkpoints: object-based `tf.train.Checkpoint`s managed by
  `tf.train.CheckpointManager` in a directory that also holds `config.json` (see
  `config.py`). The transformer's weights sit under Magenta's own names
  (`transformer/contract/conv1/weights/.ATTRIBUTES/VARIABLE_VALUE`, see
  `named_tree`), so `tf.train.list_variables` shows what each array is; training adds
  `optimizer/<slot name>` and the step counters. Checkpoints written before this
  layout (weights reached through the Keras model object) still load.

`load_model(path)` accepts either and returns the model with its ModelConfig.
"""
import contextlib
import dataclasses
import logging as python_logging
import math
import os
import shutil
import re
import secrets

from absl import logging
import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style.networks import arbitrary
from magenta_style.networks import generators
from magenta_style.networks import transformer

MAGENTA_SCOPE = "transformer"
# Keys a trained Magenta checkpoint holds besides the transformer; never mapped.
_IGNORED_MAGENTA_KEYS = re.compile(
    r"^(global_step$|vgg_16/|beta[12]_power|.*/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1|"
    r"ExponentialMovingAverage)$)")
# Weight that fixes the style count and first width: [num_styles, int(32 * alpha)].
_PROBE_KEY = "transformer/contract/conv1/InstanceNorm/gamma"
_WIDTH_KEYS = ("transformer/contract/conv1/weights", "transformer/contract/conv2/weights",
               "transformer/contract/conv3/weights")


class _DropLogRecords(python_logging.Filter):
    """A logging filter that drops records whose format string contains `fragment`."""

    def __init__(self, fragment):
        super().__init__()
        self.fragment = fragment

    def filter(self, record):
        return self.fragment not in str(record.msg)


@contextlib.contextmanager
def without_log_lines(fragment):
    """Drops TensorFlow's absl log lines containing `fragment` inside the block (TF logs
    some INFO lines on every save that say nothing to a user)."""
    drop = _DropLogRecords(fragment)
    logging.get_absl_logger().addFilter(drop)
    try:
        yield
    finally:
        logging.get_absl_logger().removeFilter(drop)


def save_quietly(manager, checkpoint_number):
    """manager.save(checkpoint_number=...) without TF's "Sharding callback duration" line.

    Raises:
      CheckpointWriteError: the save failed (a full disk, a directory made read-only):
        one line naming the checkpoint; what the failed save left is removed, and the
        earlier checkpoints are untouched (a save writes beside them, then renames).
    """
    try:
        with without_log_lines("Sharding callback duration"):
            return manager.save(checkpoint_number=checkpoint_number)
    except (tf.errors.OpError, OSError) as e:
        prefix = os.path.join(manager.directory, f"ckpt-{checkpoint_number}")
        # This save's own temporary directory (TF writes `<prefix>_temp/` and renames it
        # into place): certainly ours, unlike other leftovers, which only the trainer that
        # holds the directory's lock may clear (training/resume.py).
        shutil.rmtree(prefix + "_temp", ignore_errors=True)
        raise CheckpointWriteError(f"cannot write checkpoint {prefix}: "
                                   f"{write_error_reason(e)}") from None


def write_error_reason(error):
    """Why a write failed, in a few words, from an OSError or a TensorFlow OpError
    ("No space left on device" rather than the path of a hidden temporary file)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = " ".join(str(getattr(error, "message", None) or error).split())
    for known in ("No space left on device", "Disk quota exceeded", "Read-only file system",
                  "Permission denied"):
        if known in text:
            return known
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:\w+\]$", "", text)[:300]


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model; the message says why."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint cannot be written (disk full, read-only); the message names it."""


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

    A directory resolves to its latest checkpoint (its `checkpoint` state file, or
    without a usable one the newest readable `ckpt-N`, see `find_readable_checkpoint`).
    """
    if os.path.isdir(path):
        try:
            prefix = tf.train.latest_checkpoint(path)
        except _CORRUPT_ERRORS:  # A garbled `checkpoint` state file.
            prefix = None
        if prefix is None:  # Lost or garbled: the newest readable ckpt-N instead.
            found = find_readable_checkpoint(path)
            if found.passed_over:
                logging.warning("%s", found.passed_over_message())
            prefix = found.prefix
        if prefix is None:
            raise CheckpointError(f"{path!r} is a directory without a checkpoint in it")
        return prefix, path
    if not (tf.io.gfile.exists(path + ".index") or tf.io.gfile.exists(path)):
        raise CheckpointError(f"no checkpoint at {path!r} (expected {path}.index or a "
                              "single-file checkpoint)")
    directory = os.path.dirname(path) or "."
    return path, directory


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
      (generator, ModelConfig): transformer.StyleTransferNetwork, or the generator
      that config.json names (generators.build).

    Raises:
      CheckpointError: unreadable path, unknown format, missing variables, shape
        mismatch, or num_styles/alpha disagreeing with the checkpoint.
    """
    prefix, directory = resolve_checkpoint(path)
    _, shapes = _read_all(prefix)  # Fails clearly on files that are no checkpoint at all.
    if any(k.startswith("style_params/") for k in shapes):
        raise CheckpointError(f"{prefix!r} holds Magenta's arbitrary-style model, not an "
                              "N-style network (load it with inference.stylizer.load)")
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
    try:
        model = generators.build(model_config, magenta_compatible)
    except ValueError as e:  # magenta_compatible with a BOE generator.
        raise CheckpointError(str(e)) from None
    restore_native(model, prefix)
    return model, model_config


def weight_keys(model):
    """{checkpoint key: variable} of a generator's weights, in `model.weights` order.

    Magenta's networks are keyed by Magenta's TF1 names (`magenta_name`; the arbitrary
    one's `checkpoint_keys`); any other generator by its Keras weight path under the
    same `transformer/` scope.
    """
    if isinstance(model, arbitrary.ArbitraryStyleNetwork):
        return model.checkpoint_keys()  # Magenta's names, as its own checkpoints have.
    magenta = isinstance(model, transformer.StyleTransferNetwork)
    keys = {}
    for variable in model.weights:
        key = (magenta_name(variable.path) if magenta
               else "/".join([MAGENTA_SCOPE] + variable.path.split("/")[1:]))
        if key in keys:
            raise ValueError(f"two weights share the checkpoint key {key!r}")
        keys[key] = variable
    return keys


def _tracked(variable):
    # Keras 3 variables wrap a tf.Variable; the checkpoint tracks the wrapped one.
    return getattr(variable, "value", variable)


def named_tree(named_variables):
    """A trackable whose object graph mirrors `{"a/b/c": variable}` as nested nodes.

    `tf.train.Checkpoint(**named_tree(...))` then saves each variable under the key
    `a/b/c/.ATTRIBUTES/VARIABLE_VALUE`.

    Returns:
      {top-level name: trackable}, to pass as keyword arguments to tf.train.Checkpoint.
    """
    root = {}
    for key, variable in named_variables.items():
        *scopes, leaf = key.split("/")
        node = root
        for scope in scopes:
            node = node.setdefault(scope, {})
        node[leaf] = _tracked(variable)

    def build(children):
        if not isinstance(children, dict):
            return children
        node = tf.__internal__.tracking.AutoTrackable()
        for name, child in children.items():
            setattr(node, name, build(child))
        return node

    return {name: build(child) for name, child in root.items()}


def optimizer_slots(optimizer, model):
    """{name: variable} of an optimizer's own state (step, slots), without the model's weights.

    Checkpointing the Keras optimizer object itself would also reach the model's
    weights through its `_trainable_variables` list, by a shorter path than the
    model's, and the checkpoint would then key them `optimizer/_trainable_variables/N`.
    A slot of a weight is named after the weight's checkpoint key
    (`contract/conv1/weights/momentum`), not after Keras' uniquified object names
    (`adam_1/style_transfer_network_2_..._momentum`), so that a run resumed in
    another process, or the same one, finds it.
    """
    by_prefix = {v.path.replace("/", "_") + "_": key.split("/", 1)[1]
                 for key, v in weight_keys(model).items()}
    slots = {}
    for variable in optimizer.variables:
        name = variable.path.split("/")[-1]
        owners = [p for p in by_prefix if name.startswith(p)]
        if owners:
            owner = max(owners, key=len)
            name = f"{by_prefix[owner]}/{name[len(owner):]}"
        unique, n = name, 1
        while unique in slots:
            n += 1
            unique = f"{name}_{n}"
        slots[unique] = variable
    return slots


def training_checkpoint(model, optimizer=None, **counters):
    """tf.train.Checkpoint with the model under Magenta's names (+ optimizer slots, counters)."""
    named = dict(weight_keys(model))
    if optimizer is not None:
        named.update({f"optimizer/{k}": v
                      for k, v in optimizer_slots(optimizer, model).items()})
    return tf.train.Checkpoint(**named_tree(named), **counters)


def legacy_training_checkpoint(model, optimizer=None, **counters):
    """The object layout of checkpoints written before `training_checkpoint` (read only)."""
    objects = dict(transformer=model, **counters)
    if optimizer is not None:
        objects["optimizer"] = optimizer
    return tf.train.Checkpoint(**objects)


def has_named_layout(prefix, model):
    """True when `prefix` holds `model`'s weights under `weight_keys` names."""
    first = next(iter(weight_keys(model)))
    reader = tf.train.load_checkpoint(prefix)
    return reader.has_tensor(f"{first}/.ATTRIBUTES/VARIABLE_VALUE")


def restore_native(model, prefix):
    """Restores `model` from the transformer weights of a native checkpoint (others ignored)."""
    try:
        checkpoint = (training_checkpoint(model) if has_named_layout(prefix, model)
                      else legacy_training_checkpoint(model))
        status = checkpoint.read(prefix)
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
    manager = tf.train.CheckpointManager(training_checkpoint(model), directory, max_to_keep=1)
    prefix = save_quietly(manager, step)
    config_lib.save_model_config(directory, model_config)
    return prefix


def save_magenta_checkpoint(model, prefix, global_step=0):
    """Writes `model` as a Magenta TF1 checkpoint (V2 `.index` + `.data` under `prefix`).

    The keys are exactly those of Magenta's `tf.train.Saver` (`magenta_name`) plus
    `global_step`, so Magenta's own scripts (and `load_magenta_weights`) read it.
    Both files are written under a temporary prefix first and then renamed, the
    `.index` last: a reader never sees a half-written checkpoint.

    Raises:
      CheckpointError: `model` is not Magenta's network (no Magenta layout exists).
    """
    if not isinstance(model, transformer.StyleTransferNetwork):
        raise CheckpointError(f"only Magenta's network has a Magenta checkpoint layout, "
                              f"not {type(model).__name__}")
    return write_tf1_checkpoint(weight_keys(model), prefix, global_step)


def write_tf1_checkpoint(named, prefix, global_step=0):
    """Writes {Magenta variable name: variable} and `global_step` as a TF1 checkpoint
    (V2 `.index` + `.data`) at `prefix`, atomically: written under a hidden name beside it,
    then renamed, the `.index` last (it is what readers look for)."""
    names = list(named) + ["global_step"]
    tensors = [tf.convert_to_tensor(v) for v in named.values()]
    tensors.append(tf.constant(int(global_step), tf.int64))
    directory = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(directory, exist_ok=True)
    # A random name: a predictable one could be planted as a symlink beforehand.
    tmp = os.path.join(directory, f".tmp-{secrets.token_hex(6)}-{os.path.basename(prefix)}")
    tf.raw_ops.SaveV2(prefix=tmp, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=tensors)
    written = tf.io.gfile.glob(tmp + ".*")
    for suffix in sorted((p[len(tmp):] for p in written), key=lambda s: s == ".index"):
        os.replace(tmp + suffix, prefix + suffix)
    return prefix


# ---------------------------------------------------------------------------------------
# A training directory's checkpoints, found from the files themselves (read only: every
# loader of a train_dir needs this; the trainer's writes are training/resume.py's).

# tf.train.CheckpointManager's default prefix: train_dir/ckpt-<step>.{index,data-*}.
MANAGER_PREFIX = "ckpt"
_NUMBERED_INDEX = re.compile(r"^" + MANAGER_PREFIX + r"-([0-9]+)\.index$")
_CHECKPOINT_FILE = re.compile(r"^" + MANAGER_PREFIX + r"-[0-9]+\.(index|data-.*)$")
STATE_FILENAME = "checkpoint"


def checkpoint_problem(prefix):
    """None when every tensor of checkpoint `prefix` reads back, else why not (short str)."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    # The reader raises IndexError ("Read less bytes than requested") on truncated data.
    except (tf.errors.OpError, ValueError, OSError, IndexError, RuntimeError) as e:
        text = getattr(e, "message", None) or str(e) or type(e).__name__
        return " ".join(text.split())[:160]
    return None


def _state_latest(directory):
    """(model_checkpoint_path or None, why the state file is unusable or None)."""
    path = os.path.join(directory, STATE_FILENAME)
    if not os.path.exists(path):
        return None, "missing"
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (ValueError, tf.errors.OpError):
        state = None
    if state is None or not state.model_checkpoint_path:
        return None, "unreadable"
    return state.model_checkpoint_path, None


@dataclasses.dataclass(frozen=True)
class ReadableCheckpoint:
    """What find_readable_checkpoint found in a training directory.

    Attributes:
      prefix: the newest checkpoint that reads back whole, or None when the directory
        holds no checkpoint.
      passed_over: "ckpt-N (why)" of each newer checkpoint that does not read back.
      stale: why the `checkpoint` state file does not name `prefix` ("missing",
        "unreadable", "names ckpt-N"), or None when it does.
      earlier: the numbered checkpoints older than `prefix`, oldest first (what a
        rebuilt state file lists before it).
    """

    prefix: str = None
    passed_over: tuple = ()
    stale: str = None
    earlier: tuple = ()

    def passed_over_message(self):
        """The one-line report of the checkpoints passed over ("" when none were)."""
        if not self.passed_over:
            return ""
        return (f"{'; '.join(self.passed_over)}: unreadable, resuming from the previous good "
                f"checkpoint {os.path.basename(self.prefix)} instead")


def find_readable_checkpoint(directory):
    """The newest checkpoint of a training directory that reads back whole (read only).

    The `checkpoint` state file is only a hint: a lost or garbled one must never make
    a directory full of good checkpoints look empty (the trainer would start from
    scratch and overwrite them). Numbered checkpoints (`ckpt-N`) are tried newest
    first; an unreadable (truncated, corrupt) one is passed over. The trainer's
    training/resume.py reports what was passed over and rebuilds the state file.

    Args:
      directory: str, a training directory.

    Returns:
      ReadableCheckpoint (prefix None when the directory holds no checkpoint).

    Raises:
      CheckpointError: checkpoint files exist but none reads back (the message says
        how to start over).
    """
    if not os.path.isdir(directory):
        return ReadableCheckpoint()
    state_path, state_problem = _state_latest(directory)
    numbered = sorted(((int(m.group(1)), os.path.join(directory, m.group(0)[:-len(".index")]))
                       for m in map(_NUMBERED_INDEX.match, os.listdir(directory)) if m),
                      reverse=True)
    candidates = [prefix for _, prefix in numbered]
    if state_path and not _NUMBERED_INDEX.match(os.path.basename(state_path) + ".index"):
        candidates.append(state_path)  # A prefix of another name; tried last.
    chosen, passed_over = None, []
    for prefix in candidates:
        problem = checkpoint_problem(prefix)
        if problem is None:
            chosen = prefix
            break
        passed_over.append(f"{os.path.basename(prefix)} ({problem})")
    if chosen is None:
        files = [n for n in os.listdir(directory) if _CHECKPOINT_FILE.match(n)]
        if files or passed_over:
            raise CheckpointError(
                f"{directory} holds checkpoint files but none can be read"
                + (f": {'; '.join(passed_over)}" if passed_over else "")
                + "; to start over, move them away or use a new --train_dir")
        return ReadableCheckpoint()
    name = os.path.basename(chosen)
    stale = state_problem or (None if os.path.abspath(state_path) == os.path.abspath(chosen)
                              else f"names {os.path.basename(state_path)}")
    match = _NUMBERED_INDEX.match(name + ".index")
    earlier = [p for n, p in sorted(numbered) if match and n < int(match.group(1))]
    return ReadableCheckpoint(chosen, tuple(passed_over), stale, tuple(earlier))
