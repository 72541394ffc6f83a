"""Stylize image files: read each input, stylize it (stylizer.Stylizer), write the outputs.

The library behind `python -m magenta_style.stylize`: output names (`output_suffixes`,
`output_basenames`) and `stylize_files`, which reports a bad input and goes on with
the others. Outputs are written atomically and keep the input's size and alpha.
"""
import dataclasses
import os

import tensorflow as tf

from magenta_style.inference import stylizer
from magenta_style.media import images

OUTPUT_FORMATS = ("png", "jpg", "webp")
# The suffix of outputs made with a style map (instead of the style indices).
STYLE_MAP_SUFFIX = "map"
PRESERVE_COLORS_SUFFIX = "pc"


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


def _graph_error_line(error):
    """The message of an in-graph check (an export's Assert), on one line."""
    text = " ".join(str(getattr(error, "message", error)).split())
    start = text.find("assertion failed: [")
    if start >= 0:
        text = text[start + len("assertion failed: ["):].split("]", 1)[0]
    return text[:400]


def output_suffixes(spec=None, style_map=False, strength=1.0, preserve_colors=False,
                    style_names=None):
    """The name suffix of each output of one input (no basename, no extension).

    Args:
      spec: style_spec.StyleSpec (ignored with style_map).
      style_map: bool; one output named "map".
      strength: float; below 1 adds `s{round(1000 * strength):03d}` ("s500" for 0.5).
      preserve_colors: bool; adds "pc".
      style_names: optional names used instead of the style indices (the arbitrary
        model's style image stems: `photo_starry.png`).

    Returns:
      list of str, e.g. ["0", "2"], ["0_300_2_700"], ["map_s250_pc"], ["1_pc"].
    """
    base = [STYLE_MAP_SUFFIX] if style_map else spec.suffixes(style_names)
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


def check_basename(output_basename):
    """Raises ValueError unless `output_basename` is None or a plain file name."""
    if output_basename is None:
        return
    if not output_basename or output_basename in (".", "..") or any(
            sep in output_basename for sep in ("/", os.sep)):
        raise ValueError(f"--output_basename={output_basename!r} must be a plain file name "
                         "(no directories; put those in --output_dir)")


def stylize_files(model, model_config, inputs, output_dir, options=None, output_basename=None,
                  output_format="png", max_pixels="auto", on_progress=None, on_error=None,
                  on_tile_progress=None, style_names=None):
    """Stylizes image files and writes the results atomically.

    Each image is read as RGB (+ alpha), stylized as `options` say (stylizer.Stylizer:
    styles in batches of `options.batch_size`, tile by tile above
    `options.max_tile_pixels` for Keras networks; a SavedModel always stylizes the
    whole image at once), and each output is written with the input's size and alpha.
    A bad input is reported and skipped; the others are still processed.

    Args:
      model: callable `model(images, style[, strength])` (see `stylizer.load`).
      model_config: config.ModelConfig of the model.
      inputs: list of str, image files (see `images.expand_inputs`).
      output_dir: str; created when missing.
      options: stylizer.StylizeOptions (None: every style, the defaults).
      output_basename: optional str (see `output_basenames`).
      output_format: "png", "jpg" or "webp".
      max_pixels: int or None, the input size cap (see `images.load_image`); "auto":
        `stylizer.default_max_pixels` (tiled inputs up to images.DEFAULT_MAX_PIXELS,
        untiled ones up to the model's memory cap, `stylizer.untiled_pixel_cap`).
      on_progress: optional callable(done: int, total: int, path: str), after each input.
      on_error: optional callable(path: str, message: str), for each failed input.
      on_tile_progress: optional callable(path: str, done: int, total: int), during
        tiled stylization.
      style_names: optional names for the outputs instead of style indices (see
        `output_suffixes`).

    Returns:
      StylizeSummary.

    Raises:
      style_spec.StyleSpecError, style_maps.StyleMapError, tiling.TilingError,
        ValueError: see `stylizer.Stylizer`; also a bad output_format or
        output_basename.
      OSError: output_dir cannot be created.
    """
    stylize_one = stylizer.Stylizer(model, model_config, options)
    options = stylize_one.options
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    check_basename(output_basename)
    os.makedirs(output_dir, exist_ok=True)

    if max_pixels == "auto":
        max_pixels = stylizer.default_max_pixels(model, model_config, options.max_tile_pixels)
    suffixes = output_suffixes(stylize_one.spec, options.style_map is not None, options.strength,
                               options.preserve_colors, style_names)
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
                tile_progress = None
                if on_tile_progress is not None:
                    tile_progress = lambda d, t, p=path: on_tile_progress(p, d, t)
                for output, pastiche in zip(outputs, stylize_one.outputs(rgb, tile_progress)):
                    if pastiche.shape != rgb.shape:
                        raise ValueError(f"the model returned {list(pastiche.shape)} for an "
                                         f"input of {list(rgb.shape)}")
                    summary.written.append(images.save_image_atomic(output, pastiche, alpha))
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
