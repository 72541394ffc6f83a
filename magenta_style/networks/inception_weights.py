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
  top; the legacy `.h5` layout or Keras 3's `.weights.h5`), loaded by Keras into its own
  InceptionV3. It is the same network (no conv bias, batch norm without scale, epsilon
  1e-3), created in slim's order, so Keras' n-th Conv2D and n-th BatchNormalization in
  creation order are slim's n-th convolution in InceptionV3Base order. (Not the file's
  order: a `.weights.h5` names layers by their place in the model's topological order.)
  Every shape is checked.
- `random:SEED`: InceptionV3Base's own initialisation (truncated normal, stddev 0.1;
  batch norm beta 0, moving mean 0, variance 1), drawn from SEED.

Both files expect inputs in [-1, 1]; Magenta feeds [0, 1] to its slim checkpoint, and
so does this project (inception_v3.py).
"""
import os

import numpy as np
import tensorflow as tf

from magenta_style import config
from magenta_style.networks import inception_v3

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


def _creation_order(layers, kind):
    """The layers of class `kind` in creation order: Keras numbers auto-named layers
    (conv2d, conv2d_1, ...) as it creates them."""
    def number(layer):
        head, _, tail = layer.name.rpartition("_")
        return int(tail) if head and tail.isdigit() else 0

    return sorted((layer for layer in layers if type(layer).__name__ == kind), key=number)


def _keras(path, wanted, flag):
    """Loads the file into keras.applications.InceptionV3 (Keras reads both layouts),
    then maps the n-th Conv2D / BatchNormalization created to slim's n-th convolution."""
    import h5py  # pylint: disable=import-outside-toplevel
    import keras  # pylint: disable=import-outside-toplevel

    if not h5py.is_hdf5(path):  # Before building a model for it.
        raise InceptionWeightsError(f"{flag}: not a readable Keras InceptionV3 weights file "
                                    "(not HDF5)")
    errors = []
    for include_top in (False, True):
        model = keras.applications.InceptionV3(weights=None, include_top=include_top)
        try:
            model.load_weights(path)
            break
        except (OSError, ValueError, KeyError, TypeError) as e:
            errors.append(" ".join(str(e).split())[:160])
    else:
        raise InceptionWeightsError(f"{flag}: not a readable Keras InceptionV3 weights file "
                                    f"({errors[0]})")
    convs = _creation_order(model.layers, "Conv2D")
    norms = _creation_order(model.layers, "BatchNormalization")
    scopes = [key[:-len("/weights")] for key in wanted if key.endswith("/weights")]
    weights = {}
    for scope, conv, norm in zip(scopes, convs, norms):
        arrays = {f"{scope}/weights": conv.kernel}
        arrays.update({f"{scope}/BatchNorm/{p}": getattr(norm, p) for p in _NORM_PARTS})
        for key, array in arrays.items():
            array = np.asarray(array.numpy(), np.float32)
            if tuple(array.shape) != tuple(wanted[key]):
                raise InceptionWeightsError(
                    f"{flag}: the Keras layer for {key} has shape {tuple(array.shape)}, "
                    f"slim's has {tuple(wanted[key])}")
            weights[key] = array
    return weights
