"""Inference: load a model from any path, and stylize with it one way.

Every command that stylizes (stylize, stylize_video, evaluate's grids, optimize's
`--init=network`) and the export's serving functions go through this module:

- `load(path)` reads a Magenta TF1 checkpoint, a native checkpoint (or the training
  directory holding it) or an export (a SavedModel version directory, or an export
  base whose highest integer version is used), and returns `(model, ModelConfig)`.
  The model is a Keras network for checkpoints and an `ExportedModel` for exports;
  both are called `model(images, style, strength=None)`.
- `call_model` is the one place that adds strength and colour preservation to a model
  call; `make_stylize_fn` (shared per model: `shared_stylize_fn`), `make_frame_stylizer`
  and `make_interactive_fn` (the demo's live controls) compile it, and the export's
  signatures (serving/signatures.py, StylizerModule) trace it.
- `StylizeOptions` is what a user chooses (styles or a style map, strength,
  colours, tiling, batch size); `Stylizer` applies one such choice to images, batched
  for normal sizes and tile by tile (tiling.py) above `max_tile_pixels`.

Pixel caps: an untiled call holds all its activations at once, so it is held to
`untiled_pixel_cap` (the export's own cap, else limits.max_pixels); tiled inputs only
need a tile's memory (`default_max_pixels`).
"""
import dataclasses
import json
import os
import re
import threading
import weakref

import numpy as np
import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style.inference import style_maps
from magenta_style.inference import style_spec
from magenta_style.inference import tiling
from magenta_style.media import color
from magenta_style.media import images
from magenta_style.media import limits
from magenta_style.networks import arbitrary
from magenta_style.networks import arbitrary_checkpoints
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer

# The metadata file of an export (in assets/ and assets.extra/), as beside a checkpoint.
METADATA_FILENAME = config_lib.CONFIG_FILENAME
# Rows recoloured at a time after tiling, so preserve_colors stays within the tiles'
# memory bound on very large images.
_COLOR_BAND_ROWS = 512
_VERSION_RE = re.compile(r"^[0-9]+$")


# ---------------------------------------------------------------------------------------
# Reading an export.


def existing_versions(export_base):
    """Sorted integer version numbers of the sub-directories of `export_base`."""
    if not os.path.isdir(export_base):
        return []
    return sorted(int(name) for name in os.listdir(export_base)
                  if _VERSION_RE.match(name) and os.path.isdir(os.path.join(export_base, name)))


def resolve_saved_model(path):
    """The SavedModel directory for `path`: itself, or its largest integer version.

    Raises:
      checkpoints.CheckpointError: no SavedModel there.
    """
    if os.path.isdir(path) and tf.saved_model.contains_saved_model(path):
        return path
    versions = [v for v in existing_versions(path)
                if tf.saved_model.contains_saved_model(os.path.join(path, str(v)))]
    if versions:
        return os.path.join(path, str(versions[-1]))
    raise checkpoints.CheckpointError(
        f"{path!r} is not a SavedModel directory nor an export base with integer versions")


def is_saved_model(path):
    """True when `path` is a SavedModel directory or an export base holding one."""
    try:
        resolve_saved_model(path)
    except checkpoints.CheckpointError:
        return False
    return True


def read_metadata(path):
    """The metadata dict of an export (from its assets, without loading TensorFlow graphs).

    Args:
      path: a version directory or an export base (latest version).

    Raises:
      checkpoints.CheckpointError: not an export of this package.
    """
    saved_dir = resolve_saved_model(path)
    for sub in ("assets", "assets.extra"):
        candidate = os.path.join(saved_dir, sub, METADATA_FILENAME)
        if os.path.exists(candidate):
            try:
                with open(candidate) as f:
                    metadata = json.load(f)
            except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError.
                raise checkpoints.CheckpointError(
                    f"{candidate}: unreadable export metadata: {e}") from None
            if not isinstance(metadata, dict):
                raise checkpoints.CheckpointError(f"{candidate}: export metadata is not a JSON "
                                                  "object")
            return metadata
    raise checkpoints.CheckpointError(
        f"{saved_dir!r} is a SavedModel without magenta_style metadata ({METADATA_FILENAME})")


def load_saved_model(saved_dir):
    """tf.saved_model.load, with a damaged export as one CheckpointError naming it.

    A garbage saved_model.pb raises OSError (protobuf's parse error), a truncated
    variables data file IndexError or DataLossError, depending on where it is cut.

    Raises:
      checkpoints.CheckpointError: the SavedModel cannot be loaded.
    """
    try:
        return tf.saved_model.load(saved_dir)
    except (OSError, ValueError, IndexError, tf.errors.OpError) as e:
        text = (getattr(e, "message", None) or str(e)).strip()
        reason = text.splitlines()[0] if text else type(e).__name__
        raise checkpoints.CheckpointError(
            f"{saved_dir!r}: cannot load the SavedModel (truncated or corrupt?): "
            f"{reason[:300]}") from None


class ExportedModel:
    """An export called like the network: `model(images, style, strength=None)`.

    Picks the signature that takes the inputs (see serving/signatures.py): plain weights
    `stylize`, per-pixel maps `stylize_map`, a strength `stylize_advanced`. Works eagerly
    and inside tf.function.

    Attributes:
      saved_model: the restored object (kept alive with this callable).
      max_pixels: int, the export's pixel cap per request, or None for exports made
        before it existed.
      compute_dtype: str, what the export's convolutions compute in.
    """

    def __init__(self, saved_model, num_styles, metadata):
        self.saved_model = saved_model
        self.num_styles = num_styles
        self.max_pixels = (metadata.get("limits") or {}).get("max_pixels_per_request")
        self.compute_dtype = metadata.get("compute_dtype", "float32")

    def __call__(self, images, style, strength=None):
        """images float32 [B, H, W, 3] in [0, 1]; style int ids [B], float32 weights
        [B, num_styles] or maps [B, H, W, num_styles]; strength float32 [B] in [0, 1] or
        None (full style) -> float32 [B, H, W, 3] in [0, 1]."""
        images = tf.convert_to_tensor(images, tf.float32)
        style = tf.convert_to_tensor(style)
        if style.dtype.is_integer:
            style = tf.one_hot(style, self.num_styles, dtype=tf.float32)
        style = tf.cast(style, tf.float32)
        batch = tf.shape(images)[0]
        loaded = self.saved_model
        if strength is None and style.shape.rank != 4:
            return loaded.stylize(images, style)["stylized_image"]
        strength = (tf.ones([batch], tf.float32) if strength is None
                    else tf.convert_to_tensor(strength, tf.float32))
        if style.shape.rank == 4:
            return loaded.stylize_map(images, style, strength)["stylized_image"]
        return loaded.stylize_advanced(images, style, strength,
                                       tf.zeros([batch], tf.bool))["stylized_image"]


class ExportedArbitraryNetwork:
    """An export of Magenta's arbitrary-style model, read as arbitrary.ArbitraryStyleNetwork.

    Offers what inference reads from the Keras network: `predict_style` (the export's
    `predict_style` signature), `transfer` and `transformer` (its `transfer` signature),
    `alpha` and `bottleneck`, so `style_images.bind` turns it into the same
    arbitrary.StyleImageModel as a checkpoint, and stylize, stylize_video and Magenta
    strength run through the one inference path. What the export cannot do: per-pixel
    style maps (its `transfer` takes one bottleneck per image, the maps mix gamma/beta
    per pixel) and tiling (as every export); N-style strength (the style bank) is an
    N-style export of its own.

    Attributes:
      saved_model: the restored object.
      transformer: `ExportedTransfer`, the transformer's call over (mix, bottlenecks).
      max_pixels, compute_dtype: as ExportedModel's.
      alpha: float, the transformer's width.
      bottleneck: int, the style bottleneck's width (100).
    """

    def __init__(self, saved_model, model_config, metadata):
        self.saved_model = saved_model
        self.max_pixels = (metadata.get("limits") or {}).get("max_pixels_per_request")
        self.compute_dtype = metadata.get("compute_dtype", "float32")
        self.alpha = model_config.alpha
        self.bottleneck = int((metadata.get("arbitrary") or {}).get("bottleneck",
                                                                   arbitrary.BOTTLENECK))
        self.transformer = ExportedTransfer(self)

    def predict_style(self, style_images, training=None):
        """float32 [B, Hs, Ws, 3] in [0, 1] (Hs, Ws >= 43) -> float32 [B, bottleneck]."""
        del training  # An export runs inference only.
        return self.saved_model.predict_style(tf.convert_to_tensor(style_images, tf.float32))[
            "style_bottleneck"]

    def transfer(self, images, bottlenecks, training=None):
        """images float32 [B, H, W, 3] in [0, 1], bottlenecks [B or 1, bottleneck] ->
        float32 [B, H, W, 3] in [0, 1]."""
        del training
        return self.saved_model.transfer(tf.convert_to_tensor(images, tf.float32),
                                         tf.convert_to_tensor(bottlenecks, tf.float32))[
                                             "stylized_image"]


class ExportedTransfer:
    """An arbitrary export's `transfer` signature called as the arbitrary transformer is:
    `transformer(images, (mix, bottlenecks))` with mix float32 [B, K] and bottlenecks
    [K, D] or [B, K, D] (what arbitrary.StyleImageModel passes). The mixed bottleneck
    is the weighted sum, Magenta's arithmetic (the heads are affine)."""

    magenta_compatible = False
    variables = ()
    trainable_variables = ()

    def __init__(self, network):
        self.network = network
        self.max_pixels = network.max_pixels
        self.compute_dtype = network.compute_dtype

    def __call__(self, images, style, strength=None):
        mix, bottlenecks = style
        if strength is not None:
            raise ValueError("an arbitrary-style export takes Magenta's strength only; the "
                             "N-style strength needs the checkpoint or a style bank export")
        mix = tf.convert_to_tensor(mix, tf.float32)
        if mix.shape.rank != 2:
            raise ValueError("per-pixel style maps need the arbitrary-style checkpoint: the "
                             "export's transfer signature takes one style bottleneck per image")
        mixed = tf.reduce_sum(mix[:, :, None] * tf.cast(bottlenecks, tf.float32), axis=-2)
        return self.network.transfer(images, mixed)


def load_export(path, num_styles=None, alpha=None):
    """Loads an export (written by `magenta_style.export`) as an `ExportedModel`.

    Args:
      path: a version directory or an export base (its largest version is used).
      num_styles, alpha: optional; when given they must agree with the export.

    Returns:
      (ExportedModel, config.ModelConfig); for an export of Magenta's arbitrary-style
      model (ExportedArbitraryNetwork, its ModelConfig): bind style images to it first
      (style_images.bind), as to the checkpoint.

    Raises:
      checkpoints.CheckpointError: not an export of this package, or num_styles /
        alpha disagree with it.
    """
    saved_dir = resolve_saved_model(path)
    metadata = read_metadata(saved_dir)
    try:
        model_config = config_lib.ModelConfig.from_dict(metadata["model"])
    except (KeyError, TypeError, config_lib.ConfigError) as e:
        raise checkpoints.CheckpointError(
            f"{saved_dir!r}: unreadable model metadata: {e}") from None
    if model_config.generator == config_lib.ARBITRARY:
        checkpoints.check_agrees(model_config, None, alpha, saved_dir)
        return (ExportedArbitraryNetwork(load_saved_model(saved_dir), model_config, metadata),
                model_config)
    checkpoints.check_agrees(model_config, num_styles, alpha, saved_dir)
    loaded = load_saved_model(saved_dir)
    return ExportedModel(loaded, model_config.num_styles, metadata), model_config


# ---------------------------------------------------------------------------------------
# Loading any model path.


def load(path, num_styles=None, alpha=None):
    """Loads a model for inference from a checkpoint or an export, whatever `path` holds.

    The one place that decides how a model path is read.

    Args:
      path: str; a Magenta TF1 checkpoint prefix, a native checkpoint prefix, a
        directory holding one (with config.json for native checkpoints), a SavedModel
        written by `magenta_style.export`, or an export base directory with integer
        version sub-directories (the highest version is used).
      num_styles, alpha: optional; must agree with the model when given.

    Returns:
      (model, config.ModelConfig): `model(images, style, strength=None)` maps float32
      [B, H, W, 3] in [0, 1], style ids [B], weights float32 [B, num_styles] or
      per-pixel maps [B, H, W, num_styles], and optional strength float32 [B] in
      [0, 1] to float32 [B, H, W, 3] in [0, 1]. For checkpoints it is the Keras
      generator (a transformer.StyleTransferNetwork can also be tiled); for an export
      an `ExportedModel`. A checkpoint of Magenta's arbitrary-style model (what it holds
      says so: style_params heads) gives an arbitrary.ArbitraryStyleNetwork, its export
      an `ExportedArbitraryNetwork`, and a config with generator "arbitrary": bind style
      images to either first (style_images.bind), which gives a model called as above.

    Raises:
      checkpoints.CheckpointError: the path cannot be read as a model, or
        num_styles/alpha disagree with it.
    """
    if is_saved_model(path):
        return load_export(path, num_styles=num_styles, alpha=alpha)
    if arbitrary_checkpoints.is_arbitrary_checkpoint(path):
        model, model_config = arbitrary_checkpoints.load_model(path)
        checkpoints.check_agrees(model_config, None, alpha, path)
        return model, model_config
    return checkpoints.load_model(path, num_styles=num_styles, alpha=alpha)


def holds_arbitrary_model(path):
    """Whether `path` holds Magenta's arbitrary-style model, told from an export's metadata
    or a checkpoint's variable names without building the model (as `load` tells them).

    Commands check their flags against the model kind with it before paying for `load`.

    Returns:
      True or False; None when `path` cannot be read (`load` then says why).
    """
    try:
        if is_saved_model(path):
            return read_metadata(path)["model"]["generator"] == config_lib.ARBITRARY
        return arbitrary_checkpoints.holds_arbitrary_model(path)
    except (checkpoints.CheckpointError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------
# Pixel caps and tiling.


def can_tile(model):
    """True when `model` can be stylized tile by tile (a Keras network, not a SavedModel)."""
    if isinstance(getattr(model, "transformer", None), ExportedTransfer):
        return False  # Style images bound to an arbitrary export.
    return (isinstance(model, tiling.TILED_GENERATORS)
            and not getattr(model, "magenta_compatible", False))


def min_tile_pixels(model):
    """The smallest `max_tile_pixels` that tiling accepts for `model`: int."""
    return (tiling.MIN_CORE_SIDE + 2 * tiling.default_halo(model)) ** 2


def _padded_pixels(height, width):
    """Pixels the network computes for an H x W input (`transformer.padded_size` per side)."""
    return transformer.padded_size(height) * transformer.padded_size(width)


def untiled_pixel_cap(model, model_config):
    """The most pixels (styles x height x width) one untiled model call may hold: int.

    An export's own cap (its metadata), else `limits.max_pixels` at the default memory
    budget: the network holds all activations of an untiled call at once.
    """
    return getattr(model, "max_pixels", None) or limits.max_pixels(model_config)


def default_max_pixels(model, model_config, max_tile_pixels):
    """The input cap when none is given: int.

    Tiled inputs need memory for the tile only, so they may be as large as
    images.DEFAULT_MAX_PIXELS; everything else is held to `untiled_pixel_cap` (an
    8000 x 8000 photo would need about 24 GB at alpha 0.5).
    """
    if max_tile_pixels and can_tile(model):
        return images.DEFAULT_MAX_PIXELS
    return untiled_pixel_cap(model, model_config)


# ---------------------------------------------------------------------------------------
# What to stylize with.


@dataclasses.dataclass(frozen=True)
class StylizeOptions:
    """How to stylize: the user's choices, independent of the model and the inputs.

    Attributes:
      styles: style_spec.StyleSpec, its text form ("[0,1]" one output per style,
        "{0:0.3,2:0.7}" one mix), or None for every style. Ignored with `style_map`.
      strength: float in [0, 1]: 0 gives the input photo, 1 the full style (see
        transformer.StyleTransferNetwork).
      preserve_colors: bool; keep each input's colours, take the stylized luminance
        (color.preserve_colors).
      style_map: optional style_maps.StyleMap; one output per input with styles by
        region.
      max_tile_pixels: int >= 0; inputs that the network pads to more pixels than this
        are tiled (Keras Magenta networks only, see `can_tile`). 0: never tile.
      tile_statistics: "exact" or "downscaled" (see `tiling.stylize_tiled`).
      batch_size: int >= 1, weight rows (styles of one image) per untiled model call;
        fewer where styles x pixels would exceed `untiled_pixel_cap`.
    """

    styles: object = None
    strength: float = 1.0
    preserve_colors: bool = False
    style_map: style_maps.StyleMap = None
    max_tile_pixels: int = tiling.DEFAULT_MAX_TILE_PIXELS
    tile_statistics: str = "exact"
    batch_size: int = 4


def call_model(model, images, style, strength=None, preserve_colors=False):
    """The model call with strength and colour preservation: graph ops, no tf.function.

    Args:
      model: callable `model(images, style[, strength])` (see `load`).
      images: float32 [B, H, W, 3] in [0, 1].
      style: int ids [B], float32 weights [B, N] or per-pixel maps [B, H, W, N].
      strength: None (the model's full style, called without strength), a float in
        [0, 1] for every example, or float32 [B].
      preserve_colors: bool for every example, or bool [B] (per example).

    Returns:
      float32 [B, H, W, 3] in [0, 1].
    """
    if strength is None:
        out = model(images, style)
    else:
        if not isinstance(strength, tf.Tensor):
            strength = tf.fill(tf.shape(images)[:1], tf.constant(strength, tf.float32))
        out = model(images, style, strength)
    if isinstance(preserve_colors, tf.Tensor):
        recoloured = color.preserve_colors(images, out)
        out = tf.where(preserve_colors[:, None, None, None], recoloured, out)
    elif preserve_colors:
        out = color.preserve_colors(images, out)
    return out


def make_stylize_fn(model, num_styles, style_map=False, strength=None, preserve_colors=False):
    """`call_model` in a tf.function that compiles once for every image size.

    Args:
      model: callable `model(images, style[, strength])` as returned by `load`.
      num_styles: int, the width of the style weights.
      style_map: bool; False: style is float32 weights [B, num_styles]; True: per-pixel
        maps float32 [B, H, W, num_styles].
      strength: optional float in [0, 1], applied to every example; None calls
        `model(images, style)` unchanged.
      preserve_colors: bool; recolour each result with its input's chroma.

    Returns:
      A tf.function `fn(images, style)`: images float32 [B, H, W, 3] in [0, 1] with
      any B, H, W; returns float32 [B, H, W, 3]. The input signature leaves B, H and W
      unknown, so a new size does not retrace.
    """
    return _compile_stylize_fn(lambda: model, num_styles, style_map, strength,
                               preserve_colors)


def _compile_stylize_fn(get_model, num_styles, style_map, strength, preserve_colors):
    style_shape = [None, None, None, num_styles] if style_map else [None, num_styles]

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32, name="images"),
        tf.TensorSpec(style_shape, tf.float32, name="style"),
    ])
    def stylize_fn(images_batch, style):
        return call_model(get_model(), images_batch, style, strength, preserve_colors)

    return stylize_fn


# The compiled functions of each model, so that a new Stylizer on a model already used (a
# notebook trying other styles, tests) reuses the trace, which takes seconds, instead of
# tracing again. The keys are weak and the functions reach their model through a weak
# reference, so an entry neither keeps its model alive nor outlives it.
_STYLIZE_FNS = weakref.WeakKeyDictionary()
_STYLIZE_FNS_LOCK = threading.Lock()


def shared_stylize_fn(model, num_styles, style_map=False, strength=None,
                      preserve_colors=False):
    """`make_stylize_fn`'s function, made once per model and choice of its arguments.

    The caller holds `model` while it uses the function (Stylizer does); a model that
    cannot be weakly referenced gets a function of its own each time.
    """
    key = (int(num_styles), bool(style_map), strength, bool(preserve_colors))
    try:
        model_ref = weakref.ref(model)
    except TypeError:
        return make_stylize_fn(model, num_styles, style_map, strength, preserve_colors)
    with _STYLIZE_FNS_LOCK:
        functions = _STYLIZE_FNS.setdefault(model, {})
        if key not in functions:
            functions[key] = _compile_stylize_fn(model_ref, *key)
        return functions[key]


def make_interactive_fn(model, num_styles, style_map=False, with_strength=True):
    """`call_model` in a tf.function whose strength and colour preservation are inputs.

    For the demo's live controls: moving a slider changes tensors, never the trace, so
    one compiled function serves every strength and every image size.

    Args:
      model: callable `model(images, style[, strength])` as returned by `load`.
      num_styles: int, the width of the style weights.
      style_map: bool; False: style is float32 weights [B, num_styles]; True: per-pixel
        maps float32 [B, H, W, num_styles].
      with_strength: bool; False calls `model(images, style)` (the full style, and the
        only call a Magenta-compatible network takes) and ignores `strength`.

    Returns:
      A tf.function `fn(images, style, strength, preserve_colors)`: images float32
      [B, H, W, 3] in [0, 1], style as above, strength float32 [B] in [0, 1],
      preserve_colors bool [B]; returns float32 [B, H, W, 3] in [0, 1].
    """
    style_shape = [None, None, None, num_styles] if style_map else [None, num_styles]

    @tf.function(autograph=False, input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32, name="images"),
        tf.TensorSpec(style_shape, tf.float32, name="style"),
        tf.TensorSpec([None], tf.float32, name="strength"),
        tf.TensorSpec([None], tf.bool, name="preserve_colors"),
    ])
    def interactive_fn(images_batch, style, strength, preserve_colors):
        return call_model(model, images_batch, style, strength if with_strength else None,
                          preserve_colors)

    return interactive_fn


def make_frame_stylizer(model, style, strength=None, preserve_colors=False):
    """A function that stylizes batches of frames (a video) with a fixed style.

    For an arbitrary.StyleImageModel the style is fixed for the whole video too: its
    style images' bottlenecks were predicted when it was bound, and Magenta strength's
    content bottleneck is the first frame's (`for_image`), computed once on the first
    call; a per-frame one would change gamma/beta from frame to frame (flicker) and
    run the style predictor on every frame.

    Args:
      model: callable `model(images, style[, strength])` (see `load`).
      style: float32 weights [num_styles] (one style: one-hot) or a per-pixel map
        [H, W, num_styles] (e.g. `style_maps.StyleMap.weights`), applied to every frame.
      strength: optional float in [0, 1]; None or 1 is the model's plain call.
      preserve_colors: keep each frame's colours, take the stylized luminance.

    Returns:
      callable(frames float32 [B, H, W, 3] in [0, 1]) -> float32 numpy [B, H, W, 3].
    """
    style = np.asarray(style, np.float32)
    if strength is not None and float(strength) == 1.0:
        strength = None  # Full style: the plain call, as Stylizer makes it.
    compiled = []  # The tf.function, made on the first call (it may need the first frame).

    def stylize_frames(frames):
        frames = np.asarray(frames, np.float32)
        if not compiled:
            bound = model
            if strength is not None and hasattr(model, "for_image"):
                bound = model.for_image(frames[0])
            compiled.append(make_stylize_fn(bound, style.shape[-1], style_map=style.ndim == 3,
                                            strength=strength,
                                            preserve_colors=preserve_colors))
        return compiled[0](tf.constant(frames), tf.constant(
            np.broadcast_to(style, (len(frames),) + style.shape))).numpy()

    return stylize_frames


class Stylizer:
    """Applies one `StylizeOptions` to images with one model: batched for normal sizes,
    tile by tile above `max_tile_pixels` (Keras Magenta networks only).

    Compiles once per model and choice of styles kind, strength and colours
    (`shared_stylize_fn`): a second Stylizer on the same model reuses the trace.

    Args:
      model: callable `model(images, style[, strength])` (see `load`).
      model_config: config.ModelConfig of the model.
      options: StylizeOptions (None: the defaults).

    Raises:
      style_spec.StyleSpecError: `options.styles` is malformed or names a style the
        model does not have.
      style_maps.StyleMapError: the style map names a style the model does not have.
      tiling.TilingError: `max_tile_pixels` is too small for the model, or
        `tile_statistics` is unknown.
      ValueError: bad batch_size or strength.
    """

    def __init__(self, model, model_config, options=None):
        options = options or StylizeOptions()
        num_styles = model_config.num_styles
        self.spec = None
        self.weight_rows = None
        if options.style_map is not None:
            options.style_map.mapping.rows(num_styles)  # Raises StyleMapError.
        else:
            spec = options.styles
            if spec is None:
                spec = style_spec.all_styles(num_styles)
            elif not isinstance(spec, style_spec.StyleSpec):
                spec = style_spec.parse(spec)
            self.weight_rows = spec.weight_rows(num_styles)
            self.spec = spec
        strength = style_spec.check_strength(options.strength)
        if options.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {options.batch_size}")
        if options.tile_statistics not in tiling.STATISTICS_MODES:
            raise tiling.TilingError(f"--tile_statistics must be one of "
                                     f"{tiling.STATISTICS_MODES}, got "
                                     f"{options.tile_statistics!r}")
        max_tile_pixels = options.max_tile_pixels if can_tile(model) else 0
        if max_tile_pixels and max_tile_pixels < min_tile_pixels(model):
            raise tiling.TilingError(
                f"--max_tile_pixels={max_tile_pixels} is too small for this model: a tile "
                f"needs a {tiling.default_halo(model)}-pixel halo on each side; use at least "
                f"{min_tile_pixels(model)}, or 0 to never tile")
        self.model = model
        self.num_styles = num_styles
        self.options = dataclasses.replace(options, strength=strength,
                                           max_tile_pixels=max_tile_pixels)
        # None skips the strength input: the model's plain call at full strength.
        self._strength = None if strength == 1.0 else strength
        # Untiled calls take as many styles at once as keep them under this cap.
        self._request_pixels = untiled_pixel_cap(model, model_config)
        self._fn = shared_stylize_fn(model, num_styles,
                                     style_map=options.style_map is not None,
                                     strength=self._strength,
                                     preserve_colors=options.preserve_colors)

    def tiled(self, height, width):
        """True when an input of height x width is stylized tile by tile."""
        limit = self.options.max_tile_pixels
        return bool(limit) and _padded_pixels(height, width) > limit

    def styles(self, size):
        """The style of each output for an input of `size` (height, width): weight rows
        float32 [S, num_styles], or one map [1, height, width, num_styles]."""
        if self.options.style_map is not None:
            return self.options.style_map.weights(self.num_styles, size)[None]
        return self.weight_rows

    def outputs(self, rgb, progress=None):
        """Stylizes one image, yielding each output as soon as it is computed.

        Args:
          rgb: float32 [H, W, 3] in [0, 1].
          progress: optional callable(done, total) during tiled stylization.

        Yields:
          float32 numpy [H, W, 3] in [0, 1], one per style row (one with a style map),
          in order.
        """
        rgb = np.asarray(rgb, np.float32)
        styles = self.styles(rgb.shape[:2])
        if self.tiled(*rgb.shape[:2]):
            for style in styles:
                yield self._one_tiled(rgb, style, progress)
            return
        batch_size = self.options.batch_size
        if self._request_pixels:  # styles x pixels of one call stay under the memory cap.
            pixels = rgb.shape[0] * rgb.shape[1]
            batch_size = max(1, min(batch_size, self._request_pixels // pixels))
        for start in range(0, len(styles), batch_size):
            chunk = styles[start:start + batch_size]
            batch = np.broadcast_to(rgb, (len(chunk),) + rgb.shape)
            yield from self._fn(tf.constant(batch), tf.constant(chunk)).numpy()

    def __call__(self, rgb, progress=None):
        """float32 [H, W, 3] in [0, 1] -> float32 numpy [S, H, W, 3], every output."""
        return np.stack(list(self.outputs(rgb, progress)))

    def _one_tiled(self, rgb, style, progress):
        model = self.model
        if self._strength is not None and isinstance(model, arbitrary.StyleImageModel):
            model = model.for_image(rgb)  # Magenta strength: the whole image's own style.
        out = tiling.stylize_tiled(model, rgb, style, strength=self._strength,
                                   max_tile_pixels=self.options.max_tile_pixels,
                                   statistics=self.options.tile_statistics,
                                   progress=progress)
        if self.options.preserve_colors:
            for top in range(0, out.shape[0], _COLOR_BAND_ROWS):
                band = slice(top, top + _COLOR_BAND_ROWS)
                out[band] = color.preserve_colors(rgb[band], out[band]).numpy()
        return out

