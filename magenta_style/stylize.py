"""Stylize image files with a trained multi-style network.

    python -m magenta_style.stylize --checkpoint=CKPT --input_image=photo.jpg \\
        --output_dir=out --which_styles="[0,3]"
    python -m magenta_style.stylize --checkpoint=CKPT --input_image='photos/*.jpg' \\
        --output_dir=out --which_styles="{0:0.3,2:0.7}"

Magenta's `image_stylization_transform`, modernized: `--checkpoint` is a Magenta
TF1 checkpoint, a native checkpoint or a directory with config.json (num_styles and
alpha are read from it, `--num_styles`/`--alpha` only double-check); `--input_image`
is a file, a directory or a glob. A list `--which_styles=[0,1]` writes
`{basename}_0.png` and `{basename}_1.png`; a mix `{0:0.3,2:0.7}` writes one image
`{basename}_0_300_2_700.png` (weights not normalized). Without `--which_styles`
every style is written. Outputs have the input's size; transparency is kept.

Exit status: 0 when every image was written, 1 when some input could not be
stylized (each named on one line, the others still written), 2 for a usage error.
"""
import dataclasses
import os
import sys

from absl import app
from absl import flags
import numpy as np
from PIL import Image
import tensorflow as tf

from magenta_style import checkpoints
from magenta_style import images
from magenta_style import style_spec

PROGRAM = "stylize"
OUTPUT_FORMATS = ("png", "jpg", "webp")
# Show a progress bar from this many input images on.
PROGRESS_MIN_IMAGES = 2

_HELP_ARGS = ("-h", "-help", "--help", "-?", "--helpshort", "--helpfull")


class UsageError(ValueError):
    """A command-line mistake: reported on one line with exit status 2."""


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


def load_stylizer(path, num_styles=None, alpha=None):
    """Loads a model for stylizing, whatever `path` holds.

    The one place that decides how to read a model path, so new formats plug in here.

    Args:
      path: str; a Magenta TF1 checkpoint prefix, a native checkpoint prefix, or a
        directory holding one (with config.json for native checkpoints).
      num_styles: optional int; must agree with the checkpoint when given.
      alpha: optional float; must agree with the checkpoint when given.

    Returns:
      (model, config.ModelConfig): `model(images, weights)` maps float32
      [B, H, W, 3] in [0, 1] and float32 weights [B, num_styles] to float32
      [B, H, W, 3] in [0, 1].

    Raises:
      checkpoints.CheckpointError: the path cannot be read as a model, or
        num_styles/alpha disagree with it.
    """
    if os.path.isdir(path) and tf.saved_model.contains_saved_model(path):
        # The seam for exports: the export module will provide the SavedModel loader.
        raise checkpoints.CheckpointError(
            f"{path!r} is a SavedModel; stylize reads checkpoints (Magenta or native) for now")
    return checkpoints.load_model(path, num_styles=num_styles, alpha=alpha)


def make_stylize_fn(model, num_styles):
    """Wraps `model` in a tf.function that compiles once for every image size.

    Args:
      model: callable `model(images, weights)` as returned by `load_stylizer`.
      num_styles: int, the width of the weight rows.

    Returns:
      A tf.function `fn(images, weights)`: images float32 [B, H, W, 3] in [0, 1] with
      any B, H, W; weights float32 [B, num_styles]; returns float32 [B, H, W, 3].
      The input signature leaves B, H and W unknown, so a new size does not retrace.
    """

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32, name="images"),
        tf.TensorSpec([None, num_styles], tf.float32, name="weights"),
    ])
    def stylize_fn(images_batch, weights):
        return model(images_batch, weights)

    return stylize_fn


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


def stylize_files(model, model_config, inputs, which_styles, output_dir, output_basename=None,
                  batch_size=4, output_format="png", max_pixels=images.DEFAULT_MAX_PIXELS,
                  on_progress=None, on_error=None):
    """Stylizes image files and writes the results atomically.

    Each image is read as RGB (+ alpha), its styles are computed in batches of
    `batch_size` weight rows, and each output is written with the input's size and
    alpha. A bad input is reported and skipped; the others are still processed.

    Args:
      model: callable `model(images, weights)` (see `load_stylizer`).
      model_config: config.ModelConfig of the model.
      inputs: list of str, image files (see `images.expand_inputs`).
      which_styles: style_spec.StyleSpec, its text form (e.g. "[0,1]" or
        "{0:0.3,2:0.7}"), or None for every style.
      output_dir: str; created when missing.
      output_basename: optional str (see `output_basenames`).
      batch_size: int >= 1, weight rows (styles of one image) per model call.
      output_format: "png", "jpg" or "webp".
      max_pixels: int or None, the input size cap (see `images.load_image`).
      on_progress: optional callable(done: int, total: int, path: str), after each input.
      on_error: optional callable(path: str, message: str), for each failed input.

    Returns:
      StylizeSummary.

    Raises:
      style_spec.StyleSpecError: `which_styles` is malformed or names a style the
        model does not have.
      ValueError: bad batch_size, output_format or output_basename.
      OSError: output_dir cannot be created.
    """
    num_styles = model_config.num_styles
    if which_styles is None:
        spec = style_spec.all_styles(num_styles)
    elif isinstance(which_styles, style_spec.StyleSpec):
        spec = which_styles
    else:
        spec = style_spec.parse(which_styles)
    weight_rows = spec.weight_rows(num_styles)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    _check_basename(output_basename)
    os.makedirs(output_dir, exist_ok=True)

    stylize_fn = make_stylize_fn(model, num_styles)
    basenames = output_basenames(inputs, output_basename)
    input_paths = {os.path.realpath(p) for p in inputs}
    summary = StylizeSummary(num_inputs=len(inputs))

    def fail(path, message):
        summary.failed.append((path, message))
        if on_error is not None:
            on_error(path, message)

    for done, (path, basename) in enumerate(zip(inputs, basenames), start=1):
        outputs = [os.path.join(output_dir, name)
                   for name in spec.output_names(basename, output_format)]
        clash = [o for o in outputs if os.path.realpath(o) in input_paths]
        if clash:
            fail(path, f"{path}: skipped, its output {clash[0]} would overwrite an input")
        else:
            try:
                rgb, alpha = images.load_image(path, max_pixels=max_pixels)
                _stylize_one(stylize_fn, rgb, alpha, weight_rows, outputs, batch_size,
                             summary.written)
            except images.ImageError as e:
                fail(path, str(e))
            except tf.errors.ResourceExhaustedError:
                fail(path, f"{path}: out of memory while stylizing; lower --batch_size "
                     "or use a smaller image")
            except (OSError, ValueError) as e:
                fail(path, f"{path}: {e}")
        if on_progress is not None:
            on_progress(done, len(inputs), path)
    return summary


def _stylize_one(stylize_fn, rgb, alpha, weight_rows, outputs, batch_size, written):
    for start in range(0, len(weight_rows), batch_size):
        rows = weight_rows[start:start + batch_size]
        batch = np.broadcast_to(rgb, (len(rows),) + rgb.shape)
        result = stylize_fn(tf.constant(batch), tf.constant(rows)).numpy()
        for i, pastiche in enumerate(result):
            if pastiche.shape != rgb.shape:
                raise ValueError(f"the model returned {list(pastiche.shape)} for an input "
                                 f"of {list(rgb.shape)}")
            written.append(images.save_image_atomic(outputs[start + i], pastiche, alpha))


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
    """Validated command-line settings (see `parse_args`)."""

    checkpoint: str
    input_image: str
    output_dir: str
    output_basename: str = None
    which_styles: style_spec.StyleSpec = None
    num_styles: int = None
    alpha: float = None
    batch_size: int = 4
    output_format: str = "png"
    max_pixels: int = images.DEFAULT_MAX_PIXELS


def _define_flags(fv):
    flags.DEFINE_string("checkpoint", None,
                        "Magenta TF1 checkpoint prefix, native checkpoint prefix, or a "
                        "directory holding a checkpoint (and config.json).", flag_values=fv)
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
    flags.DEFINE_integer("max_pixels", images.DEFAULT_MAX_PIXELS,
                         "Refuse inputs with more pixels than this (decompression bombs).",
                         lower_bound=1, flag_values=fv)


def _flag_values():
    # A private FlagValues: importing this module defines no global flags, so it never
    # clashes with other entry points imported into the same process (tests).
    fv = flags.FlagValues()
    _define_flags(fv)
    return fv


def usage_text():
    """The --help text: this module's docstring and the flags."""
    return f"{__doc__}\nFlags:\n{_flag_values().get_help()}\n"


def parse_args(argv):
    """Parses and validates the command line (no model or image is read).

    Args:
      argv: list of str; argv[0] is the program name.

    Returns:
      StylizeArgs.

    Raises:
      UsageError: unknown or malformed flags, missing required flags, positional
        arguments, or a malformed --which_styles / --output_basename.
    """
    fv = _flag_values()
    try:
        rest = fv(list(argv))
    except flags.Error as e:
        raise UsageError(str(e).replace("\n", " ")) from None
    if len(rest) > 1:
        raise UsageError(f"unexpected argument(s) {rest[1:]}; every setting is a --flag")
    for name in ("checkpoint", "input_image", "output_dir"):
        if not fv[name].value:
            raise UsageError(f"--{name} is required")
    spec = None
    if fv.which_styles is not None:
        try:
            spec = style_spec.parse(fv.which_styles)
        except style_spec.StyleSpecError as e:
            raise UsageError(str(e)) from None
    try:
        _check_basename(fv.output_basename)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if os.path.exists(fv.output_dir) and not os.path.isdir(fv.output_dir):
        raise UsageError(f"--output_dir={fv.output_dir!r} exists and is not a directory")
    return StylizeArgs(
        checkpoint=fv.checkpoint, input_image=fv.input_image, output_dir=fv.output_dir,
        output_basename=fv.output_basename, which_styles=spec, num_styles=fv.num_styles,
        alpha=fv.alpha, batch_size=fv.batch_size, output_format=fv.output_format,
        max_pixels=fv.max_pixels)


class _Progress:
    """A one-line progress bar on a terminal; a line every ~10% otherwise (logs)."""

    def __init__(self, total, stream, width=30):
        self.total = total
        self.stream = stream
        self.width = width
        self.enabled = total >= PROGRESS_MIN_IMAGES
        self.tty = self.enabled and getattr(stream, "isatty", lambda: False)()
        self._line_open = False
        self._last_decile = 0

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


def run(args, stderr=None):
    """Runs the command for parsed arguments.

    Args:
      args: StylizeArgs.
      stderr: stream for progress and error lines (default sys.stderr).

    Returns:
      int exit status: 0 all written, 1 some inputs failed.

    Raises:
      UsageError: the checkpoint, inputs or styles do not work together.
    """
    stderr = stderr or sys.stderr
    try:
        inputs = images.expand_inputs(args.input_image)
    except images.ImageError as e:
        raise UsageError(f"--input_image: {e}") from None
    try:
        model, model_config = load_stylizer(args.checkpoint, args.num_styles, args.alpha)
    except checkpoints.CheckpointError as e:
        raise UsageError(f"--checkpoint: {e}") from None
    spec = args.which_styles or style_spec.all_styles(model_config.num_styles)
    try:
        spec.validate(model_config.num_styles)
    except style_spec.StyleSpecError as e:
        raise UsageError(str(e)) from None
    _raise_pillow_limit(args.max_pixels)

    progress = _Progress(len(inputs), stderr)
    try:
        summary = stylize_files(
            model, model_config, inputs, spec, args.output_dir,
            output_basename=args.output_basename, batch_size=args.batch_size,
            output_format=args.output_format, max_pixels=args.max_pixels,
            on_progress=progress.update,
            on_error=lambda path, message: progress.message(f"{PROGRAM}: error: {message}"))
    except OSError as e:
        raise UsageError(f"--output_dir={args.output_dir!r}: {e.strerror or e}") from None
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
    if any(arg in _HELP_ARGS for arg in argv[1:]):
        sys.stdout.write(usage_text())
        return 0
    try:
        return run(parse_args(argv))
    except UsageError as e:
        sys.stderr.write(f"{PROGRAM}: error: {e}\n")
        return 2
    except KeyboardInterrupt:
        # Every output is written atomically, so stopping leaves no partial file.
        sys.stderr.write(f"\n{PROGRAM}: interrupted\n")
        return 130


def _keep_argv(argv):
    # absl.app.run must see its global flags parsed; ours are parsed by `main` into a
    # private FlagValues, so hand the whole argv through.
    flags.FLAGS(argv[:1])
    return argv


def run_main():
    """Console-script entry point (`magenta-style-stylize`)."""
    app.run(main, flags_parser=_keep_argv)


if __name__ == "__main__":
    run_main()
