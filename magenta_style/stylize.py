"""Stylize image files with a trained multi-style network.

    python -m magenta_style.stylize --checkpoint=CKPT --input_image=photo.jpg \\
        --output_dir=out --which_styles="[0,3]"
    python -m magenta_style.stylize --checkpoint=CKPT --input_image='photos/*.jpg' \\
        --output_dir=out --which_styles="{0:0.3,2:0.7}" --strength=0.6 --preserve_colors
    python -m magenta_style.stylize --checkpoint=CKPT --input_image=photo.jpg \\
        --output_dir=out --style_map=mask.png --style_map_colors="#000:0,#fff:1"

Magenta's `image_stylization_transform`, modernized: `--checkpoint` is a Magenta
TF1 checkpoint, a native checkpoint, a directory with config.json, or an exported
SavedModel (a version directory, or an export base whose highest integer version is
used); num_styles and alpha are read from it, `--num_styles`/`--alpha` only
double-check. `--input_image` is a file, a directory or a glob. A list
`--which_styles=[0,1]` writes `{basename}_0.png` and `{basename}_1.png`; a mix
`{0:0.3,2:0.7}` writes one image `{basename}_0_300_2_700.png` (weights not
normalized). Without `--which_styles` every style is written. `--style_map` replaces
`--which_styles`: one image `{basename}_map.png` with styles by region.
`--strength=S` below 1 appends `_s{round(1000*S):03d}` (e.g. `_s500`) and
`--preserve_colors` appends `_pc`, so `photo_2_s500_pc.png`. Outputs have the
input's size; transparency is kept. Images with more than `--max_tile_pixels`
pixels are stylized tile by tile with whole-image statistics (checkpoints only).

Exit status: 0 when every image was written, 1 when some input could not be
stylized (each named on one line, the others still written), 2 for a usage error.
"""
# Before anything imports TensorFlow, which reads its C++ log level once: no
# "failed call to cuInit" line on machines without a GPU (cli.quiet_tf_logging).
from magenta_style import cli  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

import dataclasses
import math
import os
import sys

from absl import flags
import numpy as np
from PIL import Image
import tensorflow as tf

from magenta_style import checkpoints
from magenta_style import color
from magenta_style import export_lib
from magenta_style import generators
from magenta_style import images
from magenta_style import limits
from magenta_style import style_maps
from magenta_style import style_spec
from magenta_style import tiling
from magenta_style import transformer

PROGRAM = "stylize"
OUTPUT_FORMATS = ("png", "jpg", "webp")
# Show a progress bar from this many input images on.
PROGRESS_MIN_IMAGES = 2
# The suffix of outputs made with --style_map (instead of the style indices).
STYLE_MAP_SUFFIX = "map"
PRESERVE_COLORS_SUFFIX = "pc"
# Rows recoloured at a time after tiling, so --preserve_colors stays within the tiles'
# memory bound on very large images.
_COLOR_BAND_ROWS = 512



@dataclasses.dataclass
class StylizeSummary:
    """What `stylize_files` did.

    Attributes:
      written: list of str, the output files written, in order.
      failed: list of (input path, one-line message) for inputs that produced nothing
        or not every output.
      num_inputs: int, the number of input files tried.
    """

    written: list = dataclasses.field(default_factory=list)
    failed: list = dataclasses.field(default_factory=list)
    num_inputs: int = 0


@dataclasses.dataclass(frozen=True, eq=False)  # eq would compare arrays elementwise.
class StyleMap:
    """A style map ready to be fitted to each input (see `style_maps.style_map_weights`).

    Attributes:
      mask: float32 [Hm, Wm, 3] RGB in [0, 1], the mask image (stretched to each input).
      mapping: style_maps.StyleMapping, mask colour or grey level -> style or mix.
      blur: float >= 0, Gaussian standard deviation of the soft edges, in input pixels.
    """

    mask: np.ndarray
    mapping: style_maps.StyleMapping
    blur: float = 0.0

    def weights(self, num_styles, size):
        """float32 [height, width, num_styles] per-pixel weights for an input of `size`."""
        return style_maps.style_map_weights(self.mask, self.mapping, num_styles, size,
                                            self.blur)


def load_stylizer(path, num_styles=None, alpha=None):
    """Loads a checkpoint or an export for stylizing; see `export_lib.load_any`."""
    return export_lib.load_any(path, num_styles=num_styles, alpha=alpha)


def can_tile(model):
    """True when `model` can be stylized tile by tile (a Keras network, not a SavedModel)."""
    return (isinstance(model, transformer.StyleTransferNetwork)
            and not model.magenta_compatible)


def min_tile_pixels(model):
    """The smallest `max_tile_pixels` that tiling accepts for `model`: int."""
    return (tiling.MIN_CORE_SIDE + 2 * tiling.default_halo(model)) ** 2


def _padded_pixels(height, width):
    """Pixels the network computes for an H x W input (it pads to a multiple of 4, >= 8)."""

    def padded(size):
        size = max(size, transformer.MIN_PADDED_SIZE)
        return -(-size // transformer.SIZE_MULTIPLE) * transformer.SIZE_MULTIPLE

    return padded(height) * padded(width)


def untiled_pixel_cap(model, model_config):
    """The most pixels (styles x height x width) one untiled model call may hold: int.

    An export's own cap (its metadata), else `limits.max_pixels` at the default memory
    budget: the network holds all activations of an untiled call at once.
    """
    return getattr(model, "max_pixels", None) or limits.max_pixels(model_config)


def default_max_pixels(model, model_config, max_tile_pixels):
    """The input cap when --max_pixels is not given: int.

    Tiled inputs need memory for the tile only, so they may be as large as
    images.DEFAULT_MAX_PIXELS; everything else is held to `untiled_pixel_cap` (an
    8000 x 8000 photo would need about 24 GB at alpha 0.5).
    """
    if max_tile_pixels and can_tile(model):
        return images.DEFAULT_MAX_PIXELS
    return untiled_pixel_cap(model, model_config)


def _graph_error_line(error):
    """The message of an in-graph check (an export's Assert), on one line."""
    text = " ".join(str(getattr(error, "message", error)).split())
    start = text.find("assertion failed: [")
    if start >= 0:
        text = text[start + len("assertion failed: ["):].split("]", 1)[0]
    return text[:400]


def make_stylize_fn(model, num_styles, style_map=False, strength=None, preserve_colors=False):
    """Wraps `model` in a tf.function that compiles once for every image size.

    Args:
      model: callable `model(images, style[, strength])` as returned by `load_stylizer`.
      num_styles: int, the width of the style weights.
      style_map: bool; False: style is float32 weights [B, num_styles]; True: per-pixel
        maps float32 [B, H, W, num_styles].
      strength: optional float in [0, 1], applied to every example; None (or 1.0
        passed as None by the caller) calls `model(images, style)` unchanged.
      preserve_colors: bool; recolour each result with its input's chroma
        (`color.preserve_colors`).

    Returns:
      A tf.function `fn(images, style)`: images float32 [B, H, W, 3] in [0, 1] with
      any B, H, W; returns float32 [B, H, W, 3]. The input signature leaves B, H and W
      unknown, so a new size does not retrace.
    """
    style_shape = [None, None, None, num_styles] if style_map else [None, num_styles]

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32, name="images"),
        tf.TensorSpec(style_shape, tf.float32, name="style"),
    ])
    def stylize_fn(images_batch, style):
        if strength is None:
            out = model(images_batch, style)
        else:
            out = model(images_batch, style, tf.fill(tf.shape(images_batch)[:1], strength))
        if preserve_colors:
            out = color.preserve_colors(images_batch, out)
        return out

    return stylize_fn


def output_suffixes(spec=None, style_map=False, strength=1.0, preserve_colors=False):
    """The name suffix of each output of one input (no basename, no extension).

    Args:
      spec: style_spec.StyleSpec (ignored with style_map).
      style_map: bool; one output named "map".
      strength: float; below 1 adds `s{round(1000 * strength):03d}` ("s500" for 0.5).
      preserve_colors: bool; adds "pc".

    Returns:
      list of str, e.g. ["0", "2"], ["0_300_2_700"], ["map_s250_pc"], ["1_pc"].
    """
    base = [STYLE_MAP_SUFFIX] if style_map else spec.suffixes()
    extra = ""
    if strength != 1.0:
        extra += f"_s{round(strength * 1000):03d}"
    if preserve_colors:
        extra += f"_{PRESERVE_COLORS_SUFFIX}"
    return [suffix + extra for suffix in base]


def output_basenames(inputs, output_basename=None):
    """The basename of each input's outputs, unique within the run.

    Args:
      inputs: list of str, the input files.
      output_basename: optional str. With one input it is the basename; with several
        it prefixes each input's file stem (`{output_basename}_{stem}`).

    Returns:
      list of str, one per input. Inputs whose names would collide (photo.jpg and
      photo.png, or the same name in two directories) get their suffix appended
      (`photo_jpg`), then a counter if that is not enough (`photo_jpg_2`).
    """
    stems = [os.path.splitext(os.path.basename(p))[0] for p in inputs]
    if output_basename and len(inputs) == 1:
        return [output_basename]
    names = [f"{output_basename}_{s}" if output_basename else s for s in stems]
    if len(set(names)) == len(names):
        return names
    counts = {n: names.count(n) for n in names}
    names = [f"{n}_{os.path.splitext(p)[1].lstrip('.').lower()}" if counts[n] > 1 else n
             for n, p in zip(names, inputs)]
    seen = {}
    unique = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return unique


def check_strength(strength):
    """Returns `strength` as a float if it is a finite number in [0, 1].

    Raises:
      ValueError: anything else (one line, naming --strength).
    """
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"--strength={strength!r}: must be a number in [0, 1]") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"--strength={strength}: must be a number in [0, 1] (0: the photo, "
                         "1: the full style)")
    return value


class _Engine:
    """Runs the model for one `stylize_files` call: batched for normal sizes, tiled above
    `max_tile_pixels` (Keras networks only)."""

    def __init__(self, model, num_styles, style_map, strength, preserve_colors,
                 max_tile_pixels, tile_statistics):
        self.model = model
        self.strength = None if strength == 1.0 else strength
        self.preserve_colors = preserve_colors
        self.max_tile_pixels = max_tile_pixels if can_tile(model) else 0
        self.tile_statistics = tile_statistics
        # Untiled calls take as many styles at once as keep them under this cap.
        self.request_pixels = None
        self.fn = make_stylize_fn(model, num_styles, style_map=style_map,
                                  strength=self.strength, preserve_colors=preserve_colors)

    def tiled(self, height, width):
        return bool(self.max_tile_pixels) and _padded_pixels(height, width) > self.max_tile_pixels

    def batch(self, rgb, styles):
        """rgb float32 [H, W, 3], styles [B, N] or [B, H, W, N] -> float32 numpy [B, H, W, 3]."""
        batch = np.broadcast_to(rgb, (len(styles),) + rgb.shape)
        return self.fn(tf.constant(batch), tf.constant(styles)).numpy()

    def one_tiled(self, rgb, style, progress=None):
        """rgb float32 [H, W, 3], style [N] or [H, W, N] -> float32 numpy [H, W, 3]."""
        out = tiling.stylize_tiled(self.model, rgb, style, strength=self.strength,
                                   max_tile_pixels=self.max_tile_pixels,
                                   statistics=self.tile_statistics, progress=progress)
        if self.preserve_colors:
            for top in range(0, out.shape[0], _COLOR_BAND_ROWS):
                band = slice(top, top + _COLOR_BAND_ROWS)
                out[band] = color.preserve_colors(rgb[band], out[band]).numpy()
        return out


def stylize_files(model, model_config, inputs, which_styles, output_dir, output_basename=None,
                  batch_size=4, output_format="png", max_pixels="auto",
                  strength=1.0, preserve_colors=False, style_map=None,
                  max_tile_pixels=tiling.DEFAULT_MAX_TILE_PIXELS, tile_statistics="exact",
                  on_progress=None, on_error=None, on_tile_progress=None):
    """Stylizes image files and writes the results atomically.

    Each image is read as RGB (+ alpha), its styles are computed in batches of
    `batch_size` weight rows, and each output is written with the input's size and
    alpha. Images larger than `max_tile_pixels` are stylized one style at a time, tile
    by tile (`tiling.stylize_tiled`), when `model` is a Keras network; a SavedModel
    always stylizes the whole image at once. A bad input is reported and skipped; the
    others are still processed.

    Args:
      model: callable `model(images, style[, strength])` (see `load_stylizer`).
      model_config: config.ModelConfig of the model.
      inputs: list of str, image files (see `images.expand_inputs`).
      which_styles: style_spec.StyleSpec, its text form (e.g. "[0,1]" or
        "{0:0.3,2:0.7}"), or None for every style. Ignored with `style_map`.
      output_dir: str; created when missing.
      output_basename: optional str (see `output_basenames`).
      batch_size: int >= 1, weight rows (styles of one image) per model call.
      output_format: "png", "jpg" or "webp".
      max_pixels: int or None, the input size cap (see `images.load_image`); "auto":
        `default_max_pixels` (tiled inputs up to images.DEFAULT_MAX_PIXELS, untiled ones
        up to the model's memory cap, `untiled_pixel_cap`). Untiled calls also take
        fewer styles at once where styles x pixels would exceed the cap.
      strength: float in [0, 1]: 0 gives the input photo, 1 (default) the full style
        (see transformer.StyleTransferNetwork).
      preserve_colors: bool; keep each input's colours, take the stylized luminance.
      style_map: optional StyleMap; one output per input with styles by region.
      max_tile_pixels: int >= 0; inputs that the network pads to more pixels than this
        are tiled (Keras networks only). 0: never tile.
      tile_statistics: "exact" or "downscaled" (see `tiling.stylize_tiled`).
      on_progress: optional callable(done: int, total: int, path: str), after each input.
      on_error: optional callable(path: str, message: str), for each failed input.
      on_tile_progress: optional callable(path: str, done: int, total: int), during
        tiled stylization.

    Returns:
      StylizeSummary.

    Raises:
      style_spec.StyleSpecError: `which_styles` is malformed or names a style the
        model does not have.
      style_maps.StyleMapError: the style map names a style the model does not have.
      tiling.TilingError: `max_tile_pixels` is too small for the model, or
        `tile_statistics` is unknown.
      ValueError: bad batch_size, output_format, output_basename or strength.
      OSError: output_dir cannot be created.
    """
    num_styles = model_config.num_styles
    if style_map is not None:
        spec = None
        style_map.mapping.rows(num_styles)  # Raises StyleMapError for unknown styles.
        weight_rows = None
    else:
        if which_styles is None:
            spec = style_spec.all_styles(num_styles)
        elif isinstance(which_styles, style_spec.StyleSpec):
            spec = which_styles
        else:
            spec = style_spec.parse(which_styles)
        weight_rows = spec.weight_rows(num_styles)
    strength = check_strength(strength)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    if tile_statistics not in tiling.STATISTICS_MODES:
        raise tiling.TilingError(f"--tile_statistics must be one of {tiling.STATISTICS_MODES}, "
                                 f"got {tile_statistics!r}")
    if max_tile_pixels and can_tile(model) and max_tile_pixels < min_tile_pixels(model):
        raise tiling.TilingError(
            f"--max_tile_pixels={max_tile_pixels} is too small for this model: a tile needs "
            f"a {tiling.default_halo(model)}-pixel halo on each side; use at least "
            f"{min_tile_pixels(model)}, or 0 to never tile")
    _check_basename(output_basename)
    os.makedirs(output_dir, exist_ok=True)

    engine = _Engine(model, num_styles, style_map is not None, strength, preserve_colors,
                     max_tile_pixels, tile_statistics)
    engine.request_pixels = untiled_pixel_cap(model, model_config)
    if max_pixels == "auto":
        max_pixels = default_max_pixels(model, model_config, max_tile_pixels)
    suffixes = output_suffixes(spec, style_map is not None, strength, preserve_colors)
    basenames = output_basenames(inputs, output_basename)
    input_paths = {os.path.realpath(p) for p in inputs}
    summary = StylizeSummary(num_inputs=len(inputs))

    def fail(path, message):
        summary.failed.append((path, message))
        if on_error is not None:
            on_error(path, message)

    for done, (path, basename) in enumerate(zip(inputs, basenames), start=1):
        outputs = [os.path.join(output_dir, f"{basename}_{suffix}.{output_format}")
                   for suffix in suffixes]
        clash = [o for o in outputs if os.path.realpath(o) in input_paths]
        if clash:
            fail(path, f"{path}: skipped, its output {clash[0]} would overwrite an input")
        else:
            try:
                rgb, alpha = images.load_image(path, max_pixels=max_pixels)
                styles = weight_rows
                if style_map is not None:
                    styles = style_map.weights(num_styles, rgb.shape[:2])[None]
                tile_progress = None
                if on_tile_progress is not None:
                    tile_progress = lambda d, t, p=path: on_tile_progress(p, d, t)
                _stylize_one(engine, rgb, alpha, styles, outputs, batch_size, summary.written,
                             tile_progress)
            except images.ImageError as e:
                fail(path, str(e))
            except tf.errors.InvalidArgumentError as e:  # An export's own checks.
                fail(path, f"{path}: {_graph_error_line(e)}")
            except tf.errors.ResourceExhaustedError:
                fail(path, f"{path}: out of memory while stylizing; lower --batch_size or "
                     "--max_tile_pixels, or use a smaller image")
            except (OSError, ValueError) as e:
                # ValueError includes tiling.TilingError and style_maps.StyleMapError.
                fail(path, f"{path}: {' '.join(str(e).split())}")
        if on_progress is not None:
            on_progress(done, len(inputs), path)
    return summary


def _stylize_one(engine, rgb, alpha, styles, outputs, batch_size, written, tile_progress):
    """Writes `outputs[i]`, the input stylized with `styles[i]` ([N] row or [H, W, N] map)."""

    def save(output, pastiche):
        if pastiche.shape != rgb.shape:
            raise ValueError(f"the model returned {list(pastiche.shape)} for an input of "
                             f"{list(rgb.shape)}")
        written.append(images.save_image_atomic(output, pastiche, alpha))

    if engine.tiled(*rgb.shape[:2]):
        for output, style in zip(outputs, styles):
            save(output, engine.one_tiled(rgb, style, tile_progress))
        return
    if engine.request_pixels:  # styles x pixels of one call stay under the memory cap.
        pixels = rgb.shape[0] * rgb.shape[1]
        batch_size = max(1, min(batch_size, engine.request_pixels // pixels))
    for start in range(0, len(styles), batch_size):
        result = engine.batch(rgb, styles[start:start + batch_size])
        for i, pastiche in enumerate(result):
            save(outputs[start + i], pastiche)


def _check_basename(output_basename):
    if output_basename is None:
        return
    if not output_basename or output_basename in (".", "..") or any(
            sep in output_basename for sep in ("/", os.sep)):
        raise ValueError(f"--output_basename={output_basename!r} must be a plain file name "
                         "(no directories; put those in --output_dir)")


# ---------------------------------------------------------------------------------------
# Command line.


@dataclasses.dataclass(frozen=True)
class StylizeArgs:
    """Validated command-line settings (see `parse_args`).

    `style_map_colors` is the parsed style_maps.StyleMapping; `tiling_flags` lists the
    tiling flags given explicitly (a SavedModel cannot be tiled, so they are refused
    there).
    """

    checkpoint: str
    input_image: str
    output_dir: str
    output_basename: str = None
    which_styles: style_spec.StyleSpec = None
    num_styles: int = None
    alpha: float = None
    batch_size: int = 4
    output_format: str = "png"
    max_pixels: int = None  # None: `default_max_pixels` for the model.
    strength: float = 1.0
    preserve_colors: bool = False
    style_map: str = None
    style_map_colors: style_maps.StyleMapping = None
    style_map_blur: float = 0.0
    max_tile_pixels: int = tiling.DEFAULT_MAX_TILE_PIXELS
    tile_statistics: str = "exact"
    tiling_flags: tuple = ()
    compute_dtype: str = None


def _define_flags(fv):
    flags.DEFINE_string("checkpoint", None,
                        "Magenta TF1 checkpoint prefix, native checkpoint prefix, a "
                        "directory holding a checkpoint (and config.json), or an exported "
                        "SavedModel (version directory or export base: highest version).",
                        flag_values=fv)
    flags.DEFINE_string("input_image", None,
                        "An image file, a directory of images, or a glob such as "
                        "'photos/*.jpg' (quote it).", flag_values=fv)
    flags.DEFINE_string("output_dir", None, "Directory for the outputs (created if missing).",
                        flag_values=fv)
    flags.DEFINE_string("output_basename", None,
                        "Output name prefix; default: each input's file stem. With several "
                        "inputs it prefixes the stems.", flag_values=fv)
    flags.DEFINE_string("which_styles", None,
                        "[0,1,2]: one image per style; {0:0.3,2:0.7}: one image mixing the "
                        "styles with these (unnormalized) weights. Default: every style.",
                        flag_values=fv)
    flags.DEFINE_integer("num_styles", None,
                         "Optional check: the number of styles the checkpoint must have.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_float("alpha", None,
                       "Optional check: the width multiplier the checkpoint must have.",
                       lower_bound=0.0, flag_values=fv)
    flags.DEFINE_integer("batch_size", 4,
                         "Styles of one image computed per model call (memory vs speed).",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("output_format", "png", OUTPUT_FORMATS,
                      "Output file format (jpg drops transparency).", flag_values=fv)
    flags.DEFINE_integer("max_pixels", None,
                         "Refuse inputs with more pixels than this. Default: what the model "
                         "can stylize in a 4 GiB memory budget when untiled (an export's own "
                         "cap; docs/limits.md), 100 million when tiled.",
                         lower_bound=1, flag_values=fv)
    # No absl bounds: they let NaN through; `check_strength` validates instead.
    flags.DEFINE_float("strength", 1.0,
                        "How strongly the style is applied, in [0, 1]: 0 returns the photo, "
                        "1 the full style. Below 1 the outputs get a _s{1000*strength} "
                        "suffix (0.5: _s500).", flag_values=fv)
    flags.DEFINE_bool("preserve_colors", False,
                      "Keep the input's colours, take only the stylized luminance (YUV). "
                      "Outputs get a _pc suffix.", flag_values=fv)
    flags.DEFINE_string("style_map", None,
                        "Mask image: different styles in different regions, mapped by "
                        "--style_map_colors; replaces --which_styles. One output, "
                        "{basename}_map.", flag_values=fv)
    flags.DEFINE_string("style_map_colors", None,
                        "Mask colour or grey level -> style or mix, e.g. "
                        "'#ff0000:0,#0000ff:1' or '0:0,255:{0:0.5,1:0.5}'.", flag_values=fv)
    flags.DEFINE_float("style_map_blur", 0.0,
                        "Soft mask edges: Gaussian standard deviation in input pixels (>= 0).",
                        flag_values=fv)
    flags.DEFINE_integer("max_tile_pixels", tiling.DEFAULT_MAX_TILE_PIXELS,
                         "Images the network pads to more pixels than this are stylized tile "
                         "by tile with whole-image statistics (bounded memory, no seams). "
                         "0: never tile. Checkpoints only.", lower_bound=0, flag_values=fv)
    flags.DEFINE_enum("tile_statistics", "exact", tiling.STATISTICS_MODES,
                      "Tiled images: 'exact' (equals the untiled result, ~7x the work) or "
                      "'downscaled' (statistics from a downscaled copy: ~1x, approximate).",
                      flag_values=fv)
    flags.DEFINE_enum("compute_dtype", None, transformer.COMPUTE_DTYPES,
                      "What a checkpoint's convolutions compute in (default float32). "
                      "bfloat16 is about 2x faster on CPUs with AVX512_BF16/AMX and on GPUs, "
                      "mean error ~1 grey level (docs/speed.md). An export computes in what "
                      "it was exported with; tiled images compute in float32.", flag_values=fv)


def _flag_values():
    # A private FlagValues: importing this module defines no global flags, so it never
    # clashes with other entry points imported into the same process (tests).
    fv = flags.FlagValues()
    _define_flags(fv)
    return fv


def usage_text():
    """The --help text: this module's docstring and the flags."""
    return f"{__doc__}\nFlags:\n{_flag_values().get_help()}\n"


def _parse_blur(value):
    if not math.isfinite(value) or value < 0:
        raise cli.UsageError(f"--style_map_blur={value}: must be a finite number >= 0 (pixels)")
    return float(value)


def _parse_style_map_flags(fv):
    """(style_map, mapping, blur) from the flags; checks how they combine with the others."""
    if fv.style_map is None:
        for name in ("style_map_colors", "style_map_blur"):
            if fv[name].present:
                raise cli.UsageError(f"--{name} needs --style_map")
        return None, None, 0.0
    if not fv.style_map:
        raise cli.UsageError("--style_map is empty; give a mask image")
    if fv.which_styles is not None:
        raise cli.UsageError("--style_map and --which_styles cannot be combined: the map's "
                         "--style_map_colors choose the styles")
    if not fv.style_map_colors:
        raise cli.UsageError("--style_map needs --style_map_colors, e.g. '#000000:0,#ffffff:1'")
    try:
        mapping = style_maps.parse_mapping(fv.style_map_colors)
    except style_maps.StyleMapError as e:
        raise cli.UsageError(str(e)) from None
    return fv.style_map, mapping, _parse_blur(fv.style_map_blur)


def parse_args(argv):
    """Parses and validates the command line (no model or image is read).

    Args:
      argv: list of str; argv[0] is the program name.

    Returns:
      StylizeArgs.

    Raises:
      cli.UsageError: unknown or malformed flags, missing required flags, positional
        arguments, a malformed --which_styles / --output_basename / --strength /
        --style_map_colors / --style_map_blur, or flags that do not combine.
    """
    fv = cli.parse_flag_values(_flag_values(), argv,
                               required=("checkpoint", "input_image", "output_dir"))
    spec = None
    if fv.which_styles is not None:
        try:
            spec = style_spec.parse(fv.which_styles)
        except style_spec.StyleSpecError as e:
            raise cli.UsageError(str(e)) from None
    try:
        _check_basename(fv.output_basename)
        strength = check_strength(fv.strength)
    except ValueError as e:
        raise cli.UsageError(str(e)) from None
    style_map, mapping, blur = _parse_style_map_flags(fv)
    if os.path.exists(fv.output_dir) and not os.path.isdir(fv.output_dir):
        raise cli.UsageError(f"--output_dir={fv.output_dir!r} exists and is not a directory")
    return StylizeArgs(
        checkpoint=fv.checkpoint, input_image=fv.input_image, output_dir=fv.output_dir,
        output_basename=fv.output_basename, which_styles=spec, num_styles=fv.num_styles,
        alpha=fv.alpha, batch_size=fv.batch_size, output_format=fv.output_format,
        max_pixels=fv.max_pixels, strength=strength, preserve_colors=fv.preserve_colors,
        style_map=style_map, style_map_colors=mapping, style_map_blur=blur,
        max_tile_pixels=fv.max_tile_pixels, tile_statistics=fv.tile_statistics,
        tiling_flags=tuple(f"--{name}" for name in ("max_tile_pixels", "tile_statistics")
                           if fv[name].present),
        compute_dtype=fv.compute_dtype)


class _Progress:
    """A one-line progress bar on a terminal; a line every ~10% otherwise (logs)."""

    def __init__(self, total, stream, width=30):
        self.total = total
        self.stream = stream
        self.width = width
        self.enabled = total >= PROGRESS_MIN_IMAGES
        self.tty = getattr(stream, "isatty", lambda: False)()
        self._line_open = False
        self._last_decile = 0
        self._tile_decile = None

    def update(self, done, total, path):
        if not self.enabled:
            return
        if self.tty:
            filled = self.width * done // total
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r[{bar}] {done}/{total} {os.path.basename(path)[:40]}\033[K")
            self._line_open = True
        else:
            decile = 10 * done // total
            if decile > self._last_decile or done == total:
                self._last_decile = decile
                self.stream.write(f"{PROGRAM}: {done}/{total} images\n")
        self.stream.flush()

    def tiles(self, path, done, total):
        """Progress through one tiled image (shown even for a single input: it is slow)."""
        name = os.path.basename(path)[:40]
        if self.tty:
            self.stream.write(f"\r{name}: tiled, {done}/{total} tile steps\033[K")
            self._line_open = True
        else:
            decile = 10 * done // total
            if done == 1 or decile != self._tile_decile:
                self._tile_decile = decile
                self.stream.write(f"{PROGRAM}: {name}: tiled, {done}/{total} tile steps\n")
        self.stream.flush()

    def message(self, line):
        if self._line_open:
            self.stream.write("\r\033[K")
            self._line_open = False
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        if self._line_open:
            self.stream.write("\n")
            self._line_open = False


def _raise_pillow_limit(max_pixels):
    # Pillow refuses images above 2 * Image.MAX_IMAGE_PIXELS before our cap is consulted;
    # make --max_pixels the limit that counts when a user raises it.
    if Image.MAX_IMAGE_PIXELS is not None and 2 * Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _load_style_map(args, num_styles):
    """The StyleMap of the command line (None without --style_map); cli.UsageError if unusable."""
    if args.style_map is None:
        return None
    try:
        mask, _ = images.load_image(args.style_map,
                                    max_pixels=args.max_pixels or images.DEFAULT_MAX_PIXELS)
        args.style_map_colors.rows(num_styles)  # Unknown styles fail here, before any work.
    except images.ImageError as e:
        raise cli.UsageError(f"--style_map: {e}") from None
    except style_maps.StyleMapError as e:
        raise cli.UsageError(str(e)) from None
    return StyleMap(mask=mask, mapping=args.style_map_colors, blur=args.style_map_blur)


def _with_compute_dtype(model, path, compute_dtype):
    """The loaded model computing in compute_dtype; an export must already be in it."""
    if generators.is_boe(model):
        if compute_dtype != "float32":
            raise cli.UsageError(f"--compute_dtype={compute_dtype} is implemented for Magenta's "
                                 "network only; this is a BOE model")
        return model
    if isinstance(model, transformer.StyleTransferNetwork):
        return transformer.with_compute_dtype(model, compute_dtype)
    exported = export_lib.read_metadata(export_lib.resolve_saved_model(path)).get(
        "compute_dtype", "float32")
    if exported != compute_dtype:
        raise cli.UsageError(f"--compute_dtype={compute_dtype}: {path} was exported to compute "
                             f"in {exported}; export again with --compute_dtype={compute_dtype} "
                             "or pass the checkpoint")
    return model


def run(args, stderr=None):
    """Runs the command for parsed arguments.

    Args:
      args: StylizeArgs.
      stderr: stream for progress and error lines (default sys.stderr).

    Returns:
      int exit status: 0 all written, 1 some inputs failed.

    Raises:
      cli.UsageError: the checkpoint, inputs, styles, style map or tiling settings do not
        work together.
    """
    stderr = stderr or sys.stderr
    try:
        inputs = images.expand_inputs(args.input_image)
    except images.ImageError as e:
        raise cli.UsageError(f"--input_image: {e}") from None
    try:
        model, model_config = load_stylizer(args.checkpoint, args.num_styles, args.alpha)
    except checkpoints.CheckpointError as e:
        raise cli.UsageError(f"--checkpoint: {e}") from None
    if generators.is_boe(model) and args.max_tile_pixels and args.tiling_flags:
        raise cli.UsageError(f"{' and '.join(args.tiling_flags)}: tiling supports the Magenta "
                             "generator only; this BOE model stylizes each image whole")
    if args.compute_dtype:
        model = _with_compute_dtype(model, args.checkpoint, args.compute_dtype)
    if not can_tile(model) and args.max_tile_pixels and args.tiling_flags:
        raise cli.UsageError(f"{' and '.join(args.tiling_flags)} need a checkpoint: tiling runs the "
                         "Keras network layer by layer, and a SavedModel stylizes each image "
                         "whole (use the checkpoint it was exported from)")
    spec = args.which_styles or style_spec.all_styles(model_config.num_styles)
    try:
        spec.validate(model_config.num_styles)
    except style_spec.StyleSpecError as e:
        raise cli.UsageError(str(e)) from None
    style_map = _load_style_map(args, model_config.num_styles)
    max_pixels = args.max_pixels or default_max_pixels(model, model_config,
                                                       args.max_tile_pixels)
    _raise_pillow_limit(max_pixels)

    progress = _Progress(len(inputs), stderr)
    try:
        summary = stylize_files(
            model, model_config, inputs, spec, args.output_dir,
            output_basename=args.output_basename, batch_size=args.batch_size,
            output_format=args.output_format, max_pixels=max_pixels,
            strength=args.strength, preserve_colors=args.preserve_colors, style_map=style_map,
            max_tile_pixels=args.max_tile_pixels, tile_statistics=args.tile_statistics,
            on_progress=progress.update, on_tile_progress=progress.tiles,
            on_error=lambda path, message: progress.message(f"{PROGRAM}: error: {message}"))
    except tiling.TilingError as e:
        raise cli.UsageError(str(e)) from None
    except OSError as e:
        raise cli.UsageError(f"--output_dir={args.output_dir!r}: {e.strerror or e}") from None
    finally:
        progress.close()
    status = f"wrote {len(summary.written)} image(s) to {args.output_dir}"
    if summary.failed:
        stderr.write(f"{PROGRAM}: {status}; {len(summary.failed)} of {summary.num_inputs} "
                     "input(s) failed (see above)\n")
        return 1
    stderr.write(f"{PROGRAM}: {status}\n")
    return 0


def main(argv):
    """The command: parses `argv` (argv[0] is the program name), runs, returns the status.

    Args:
      argv: list of str, e.g. sys.argv.

    Returns:
      int exit status: 0 success, 1 some inputs failed, 2 usage error (one line on
      stderr, no traceback), 130 interrupted.
    """
    # Every output is written atomically, so stopping leaves no partial file.
    return cli.run_command(argv, PROGRAM, parse_args, run, usage_text,
                           interrupted="interrupted")


def run_main():
    """Console-script entry point (`magenta-style-stylize`)."""
    cli.run_with_private_flags(main)


if __name__ == "__main__":
    run_main()
