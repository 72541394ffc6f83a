"""Starting weights of the arbitrary model's InceptionV3 (train's --inception_v3_checkpoint).

`read_inception_weights(source, wanted)` reads them into {slim key: float32 array}
before the trainer builds or writes anything, so a wrong file is a one-line error and
the train_dir stays untouched. Sources:

- a TF-slim checkpoint: `inception_v3.ckpt` of slim's 2016_08_28 release (Magenta's
  flag), or any checkpoint with slim's names (a Magenta arbitrary-style checkpoint).
  Keys are inception_v3.InceptionV3Base.checkpoint_keys' own
  (`InceptionV3/Mixed_5b/Branch_1/Conv2d_0b_5x5/BatchNorm/moving_mean`); what lies past
  Mixed_6e (Mixed_7*, Logits, AuxLogits) and global_step are skipped.
- a Keras InceptionV3 weights file (keras.applications.InceptionV3, with or without the
  top; the legacy `.h5` layout or Keras 3's `.weights.h5`): the same network (no conv
  bias, batch norm without scale, epsilon 1e-3), so Keras' n-th Conv2D and n-th
  BatchNormalization, in creation order (their names' numeric suffixes), are slim's
  n-th convolution in InceptionV3Base order. Every shape is checked.
- `random:SEED`: InceptionV3Base's own initialisation (truncated normal, stddev 0.1;
  batch norm beta 0, moving mean 0, variance 1), drawn from SEED.

Both files expect inputs in [-1, 1]; Magenta feeds [0, 1] to its slim checkpoint, and
so does this project (inception_v3.py).
"""
import os
import re

import numpy as np
import tensorflow as tf

from magenta_style import config
from magenta_style.networks import inception_v3

# What a Keras weights file's layer groups are called (keras.applications.InceptionV3).
_KERAS_CONV = re.compile(r"^conv2d(?:_(\d+))?$")
_KERAS_NORM = re.compile(r"^batch_normalization(?:_(\d+))?$")
_NORM_PARTS = ("beta", "moving_mean", "moving_variance")


class InceptionWeightsError(ValueError):
    """The InceptionV3 source cannot be used; the message is one line naming it."""


def wanted_shapes():
    """{slim key: shape tuple} of InceptionV3 up to Mixed_6e (built once, on a tiny input)."""
    trunk = inception_v3.InceptionV3Base("Mixed_6e", name=inception_v3.SCOPE)
    trunk(tf.zeros([1, inception_v3.MIN_INPUT_SIZE, inception_v3.MIN_INPUT_SIZE, 3]))
    return {key: tuple(v.shape) for key, v in trunk.checkpoint_keys().items()}


def read_inception_weights(source, wanted):
    """{slim key: float32 array} for every key of `wanted` ({key: shape}).

    Args:
      source: a TF-slim checkpoint prefix (or its directory), a Keras `.h5` weights
        file, or "random:SEED".
      wanted: {slim key: shape}, e.g. wanted_shapes() or the model's own.

    Raises:
      InceptionWeightsError: no such file, not a checkpoint of InceptionV3, a missing
        weight or a shape that differs (one line naming --inception_v3_checkpoint).
    """
    flag = f"--inception_v3_checkpoint={config.shorten(source)}"
    if source.startswith(config.RANDOM_INIT_PREFIX):
        return _random(int(source[len(config.RANDOM_INIT_PREFIX):]), wanted)
    if source.endswith(".h5"):
        if not os.path.isfile(source):
            raise InceptionWeightsError(f"{flag}: no such file")
        return _keras(source, wanted, flag)
    return _slim(source, wanted, flag)


def _random(seed, wanted):
    rng = np.random.default_rng(seed)
    weights = {}
    for key, shape in wanted.items():
        if key.endswith("/weights"):
            # Truncated at 2 stddev, as keras.initializers.TruncatedNormal.
            draw = rng.standard_normal(shape)
            while np.any(bad := np.abs(draw) > 2):
                draw[bad] = rng.standard_normal(int(bad.sum()))
            weights[key] = (inception_v3.INIT_STDDEV * draw).astype(np.float32)
        else:
            fill = 1.0 if key.endswith("moving_variance") else 0.0
            weights[key] = np.full(shape, fill, np.float32)
    return weights


def _slim(source, wanted, flag):
    prefix = source
    if os.path.isdir(source):
        prefix = tf.train.latest_checkpoint(source) or ""
        if not prefix:
            raise InceptionWeightsError(f"{flag}: the directory holds no checkpoint")
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        reason = " ".join(str(getattr(e, "message", e)).split())[:160]
        raise InceptionWeightsError(
            f"{flag}: not a TF-slim checkpoint nor a Keras .h5 file ({reason})") from None
    missing = sorted(k for k in wanted if k not in shapes)
    if missing:
        raise InceptionWeightsError(
            f"{flag}: not an InceptionV3 checkpoint with slim's names: it lacks "
            f"{len(missing)} of {len(wanted)} weights (e.g. {missing[0]})")
    for key, shape in wanted.items():
        if tuple(shapes[key]) != tuple(shape):
            raise InceptionWeightsError(f"{flag}: {key} has shape {tuple(shapes[key])}, "
                                        f"InceptionV3 needs {tuple(shape)}")
    try:
        return {key: np.asarray(reader.get_tensor(key), np.float32) for key in wanted}
    except (tf.errors.OpError, ValueError) as e:
        reason = " ".join(str(getattr(e, "message", e)).split())[:160]
        raise InceptionWeightsError(f"{flag}: unreadable (truncated?): {reason}") from None


def _keras_layers(handle):
    """{layer name: [arrays in the layer's weight order]} of a Keras weights file."""
    layers = {}
    if "layer_names" in handle.attrs:  # The legacy layout (keras.applications' files).
        group = handle["model_weights"] if "model_weights" in handle else handle
        for name in group.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else name
            names = [n.decode() if isinstance(n, bytes) else n
                     for n in group[name].attrs.get("weight_names", [])]
            arrays = [np.asarray(group[name][n]) for n in names]
            if names and name.startswith("batch_normalization"):
                # By name: a legacy BatchNormalization lists gamma only when it scales.
                parts = {p: a for n, a in zip(names, arrays) for p in _NORM_PARTS
                         if n.rsplit("/", 1)[-1].startswith(p)}
                arrays = [parts.get(p) for p in _NORM_PARTS]
            layers[name] = arrays
    elif "layers" in handle:  # Keras 3's .weights.h5: layers/<name>/vars/<i>.
        for name, group in handle["layers"].items():
            if "vars" in group:
                found = group["vars"]
                layers[name] = [np.asarray(found[str(i)]) for i in range(len(found))]
    return layers


def _keras(path, wanted, flag):
    import h5py  # pylint: disable=import-outside-toplevel  (only for this kind of file)

    try:
        with h5py.File(path, "r") as handle:
            layers = _keras_layers(handle)
    except (OSError, KeyError, ValueError) as e:
        raise InceptionWeightsError(f"{flag}: not a readable Keras weights file "
                                    f"({' '.join(str(e).split())[:160]})") from None

    def ordered(pattern):
        found = [(int(m.group(1) or 0), name) for name in layers
                 if (m := pattern.match(name)) and layers[name]]
        return [layers[name] for _, name in sorted(found)]

    convs, norms = ordered(_KERAS_CONV), ordered(_KERAS_NORM)
    scopes = [key[:-len("/weights")] for key in wanted if key.endswith("/weights")]
    if len(convs) < len(scopes) or len(norms) < len(scopes):
        raise InceptionWeightsError(
            f"{flag}: not a Keras InceptionV3 weights file: {len(convs)} Conv2D and "
            f"{len(norms)} BatchNormalization layers, InceptionV3 to Mixed_6e has "
            f"{len(scopes)} of each")
    weights = {}
    for scope, conv, norm in zip(scopes, convs, norms):
        arrays = {f"{scope}/weights": conv[0]}
        if len(norm) != 3 or any(a is None for a in norm):
            raise InceptionWeightsError(f"{flag}: its batch norm for {scope} is not "
                                        "beta/moving_mean/moving_variance (scale=False)")
        arrays.update({f"{scope}/BatchNorm/{p}": a for p, a in zip(_NORM_PARTS, norm)})
        for key, array in arrays.items():
            if tuple(array.shape) != tuple(wanted[key]):
                raise InceptionWeightsError(
                    f"{flag}: not InceptionV3's layout: the layer for {key} has shape "
                    f"{tuple(array.shape)}, slim's has {tuple(wanted[key])}")
            weights[key] = np.asarray(array, np.float32)
    return weights
