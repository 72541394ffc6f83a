"""Plumbing shared by the command-line entry points (train, evaluate, export, stylize, ...).

Part of the command-line layer, like the entry points themselves: it is the only
other module that touches absl flags. A user mistake becomes one line on stderr,
`<program>: error: <what is wrong>`, and exit status 2, never a traceback.
"""
import contextlib
import dataclasses
import importlib.abc
import importlib.util
import logging as python_logging
import math
import os
import re
import signal
import sys
import tempfile
import threading

from absl import app
from absl import flags
from absl import logging
from PIL import Image

from magenta_style import config


class UsageError(ValueError):
    """A mistake in the command line or its inputs: one line on stderr, exit status 2."""


def print_error(program, message):
    """Prints `program: error: message`, folded to one line, on stderr."""
    print(f"{program}: error: {' '.join(str(message).split())}", file=sys.stderr)


def fail(program, message, code=2):
    """print_error, then exit with `code`."""
    print_error(program, message)
    sys.exit(code)


def parse_flag_values(flag_values, argv, required=()):
    """Parses argv (argv[0] is the program name) into a private absl FlagValues.

    Raises:
      UsageError: unknown or malformed flags, positional arguments, or a flag named in
        `required` left empty.
    """
    try:
        rest = flag_values(list(argv))
    except flags.Error as e:
        raise UsageError(str(e).replace("\n", " ")) from None
    if len(rest) > 1:
        raise UsageError(f"unexpected argument(s) {rest[1:]}; every setting is a --flag")
    for name in required:
        if not flag_values[name].value:
            raise UsageError(f"--{name} is required")
    return flag_values


_DEFINE_BY_TYPE = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer,
                   float: flags.DEFINE_float, str: flags.DEFINE_string}


def define_field_flags(flag_values, config_class, helps, choices=None, bounds=None):
    """Defines one flag per field of a frozen config dataclass, with the field's default.

    The flag is named as the field and typed by its annotation (bool, int, float, str;
    a tuple is a comma-separated list); a field of any other type (a parsed value such as a style_spec.StyleSpec) is a text
    flag that the command parses. So a default is written once, in the dataclass.

    Args:
      flag_values: the absl FlagValues to define them in.
      config_class: a dataclass whose fields have defaults.
      helps: {field name: help text}, the fields to define.
      choices: {field name: allowed values}: those become enum flags.
      bounds: {field name: (lower, upper)} of numeric flags (None: unbounded side).
    """
    choices = choices or {}
    bounds = bounds or {}
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    for name, text in helps.items():
        default = fields[name].default
        if name in choices:
            flags.DEFINE_enum(name, default, list(choices[name]), text, flag_values=flag_values)
            continue
        if fields[name].type is tuple:
            flags.DEFINE_list(name, list(default), text, flag_values=flag_values)
            continue
        define = _DEFINE_BY_TYPE.get(fields[name].type, flags.DEFINE_string)
        kwargs = {}
        if name in bounds:
            kwargs = {key: value for key, value in zip(("lower_bound", "upper_bound"),
                                                       bounds[name]) if value is not None}
        define(name, default, text, flag_values=flag_values, **kwargs)


def new_flag_values(define_flags):
    """A private absl FlagValues holding the flags `define_flags(fv)` defines.

    Private: importing a command defines no global flags, so commands never clash when
    imported into one process (tests).
    """
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    return flag_values


def usage_text(doc, define_flags):
    """A command's --help text: its module docstring, then its flags."""
    return f"{doc}\nFlags:\n{new_flag_values(define_flags).get_help()}\n"


_HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?", "h")


def _asks_for_help(argv):
    """True when argv (argv[0] is the program) holds one of absl's help flags."""
    for arg in argv[1:]:
        if arg == "--":
            return False
        if arg.startswith("-") and arg.lstrip("-").split("=", 1)[0] in _HELP_FLAGS:
            return True
    return False


def quiet_tf_logging():
    """Turns TensorFlow's C++ logging down unless the user set TF_CPP_MIN_LOG_LEVEL.

    Level 2 (warnings off) everywhere; 3 (errors off too) on a machine without an
    NVIDIA driver, where the only C++ error every command printed was "failed call to
    cuInit" (real failures still reach Python as exceptions). Must run before
    TensorFlow logs its first line: the level is read once.
    """
    has_driver = os.path.exists("/proc/driver/nvidia") or os.path.exists("/dev/nvidia0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if has_driver else "3")
    # TensorFlow's shared libraries log 4-7 lines while `import tensorflow` runs, before
    # they read TF_CPP_MIN_LOG_LEVEL ("All log messages before absl::InitializeLog() is
    # called are written to STDERR", oneDNN, CUDA, CPU features): the import itself runs
    # with stderr filtered by the same level.
    try:
        level = int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        level = 0
    if level >= 1 and "tensorflow" not in sys.modules and not any(
            isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport(level))


def _import_noise(level):
    """The stderr lines of `import tensorflow` that TF_CPP_MIN_LOG_LEVEL=level hides:
    INFO lines (I0000 ...; level >= 1, with absl's pre-init notice and the CPU-feature
    note's second line) and WARNING lines (W0000 ...; level >= 2)."""
    kinds = "IW" if level >= 2 else "I"
    return re.compile(
        r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
        rf"|[{kinds}]\d{{4}} \d\d:\d\d:\d\d"
        r"|To enable the following instructions:)")


@contextlib.contextmanager
def _filtered_stderr(noise):
    """Runs the block with file descriptor 2 going to a temporary file, then writes the
    lines that do not match `noise` to stderr (errors and tracebacks still show)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # No real stderr (embedded, closed).
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(True)
                    if not noise.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """Wraps TensorFlow's package loader: its module body runs under _filtered_stderr."""

    def __init__(self, loader, noise):
        self._loader = loader
        self._noise = noise

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # The module's loader stays the real one (importlib.resources and friends).
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        with _filtered_stderr(self._noise):
            self._loader.exec_module(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """A one-shot meta-path finder: the first `import tensorflow` goes through
    _QuietLoader; then the finder removes itself."""

    def __init__(self, level):
        self.level = level

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, _import_noise(self.level))
        return spec


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so the same clean-up runs
    (a checkpoint, the best image so far); the exit status is then 143, not 130."""


_terminated = threading.Event()


def _raise_terminated(signum, frame):
    del signum, frame
    _terminated.set()
    raise Terminated()


def was_terminated():
    """True once SIGTERM arrived under raise_on_sigterm (for code whose library caught
    the KeyboardInterrupt itself, e.g. optimize's best-image-so-far)."""
    return _terminated.is_set()


def raise_on_sigterm():
    """Makes SIGTERM (how schedulers and containers stop a job) raise Terminated in the
    main thread, as SIGINT raises KeyboardInterrupt; without it the process dies at
    once, without its clean-up. No-op outside the main thread."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def interrupt_status(error):
    """Exit status of an interruption: 143 (128 + SIGTERM) for Terminated, else 130."""
    return 128 + signal.SIGTERM if isinstance(error, Terminated) else 128 + signal.SIGINT


def signal_name(error):
    """"SIGTERM" for Terminated, else "SIGINT" (Ctrl-C)."""
    return "SIGTERM" if isinstance(error, Terminated) else "SIGINT"


def _quiet_info_logging():
    """absl and TensorFlow's Python INFO lines off (an export's "Assets written to",
    "Writing fingerprint to", a save's "Sharding callback duration"): commands print
    their own progress. Warnings stay; `--verbosity=0` (global-flag commands) or a
    caller's own logging settings bring the rest back."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    tf_logger = python_logging.getLogger("tensorflow")
    if tf_logger.level in (python_logging.NOTSET, python_logging.INFO,
                           python_logging.DEBUG):
        tf_logger.setLevel(python_logging.WARNING)


def run_with_global_flags(main, program):
    """absl.app.run for the tools/ scripts whose flags are module-level absl flags (the
    package's commands use private flags: `run_with_private_flags`).

    Flag errors (unknown flag, bad value, missing required flag) are one-line usage
    errors. `--help` exits 0 (absl exits 1 after printing the help, which reads as a
    failure to scripts). TensorFlow's C++ INFO logging is turned down unless the user
    set it.
    """
    quiet_tf_logging()

    def parse(argv):
        try:
            rest = flags.FLAGS(argv)
            _quiet_info_logging()
            return rest
        except flags.Error as e:
            fail(program, e)
        except SystemExit as e:
            if e.code == 1 and _asks_for_help(argv):
                sys.exit(0)
            raise

    app.run(main, flags_parser=parse)


# What the private-flag commands take as a request for their usage text.
HELP_ARGS = ("-h", "-help", "--help", "-?", "--helpshort", "--helpfull")


def run_command(argv, program, parse_args, run, usage, interrupted=None):
    """The `main(argv)` of a command with private flags, from its parts.

    Args:
      argv: list of str (argv[0] is the program name).
      program: name printed before error lines.
      parse_args: argv -> a validated args value; raises UsageError.
      run: args -> int exit status; may raise UsageError.
      usage: () -> str, printed on stdout for a HELP_ARGS flag (exit status 0).
      interrupted: line printed on Ctrl-C (exit status 130) or SIGTERM (143, see
        raise_on_sigterm), or None to let KeyboardInterrupt through (and leave SIGTERM's
        default).

    Returns:
      int exit status; a UsageError prints one line on stderr and gives 2.
    """
    if any(arg in HELP_ARGS for arg in argv[1:]):
        sys.stdout.write(usage())
        return 0
    if interrupted is not None:
        raise_on_sigterm()
    try:
        return run(parse_args(argv))
    except UsageError as e:
        print_error(program, e)
        return 2
    except KeyboardInterrupt as e:
        if interrupted is None:
            raise
        sys.stderr.write(f"\n{program}: {interrupted}\n")
        return interrupt_status(e)


def run_with_private_flags(main):
    """absl.app.run for commands that parse argv themselves into a private FlagValues.

    absl.app.run insists on parsed global flags; hand it none and pass the whole
    argv through to `main`. TensorFlow's C++ INFO logging is turned down unless the
    user set it.
    """
    quiet_tf_logging()

    def keep_argv(argv):
        flags.FLAGS(argv[:1])
        _quiet_info_logging()
        return argv

    app.run(main, flags_parser=keep_argv)


# ---------------------------------------------------------------------------------------
# What the stylizing commands (stylize, stylize_video) share.


@dataclasses.dataclass(frozen=True)
class StyleMapFlags:
    """The style-map flags of stylize and stylize_video, with their defaults."""

    style_map: str = None
    style_map_colors: str = None
    style_map_blur: float = 0.0


def define_style_map_flags(flag_values):
    """Defines --style_map, --style_map_colors and --style_map_blur in `flag_values`."""
    define_field_flags(flag_values, StyleMapFlags, {
        "style_map": "Mask image: different styles in different regions, mapped by "
                     "--style_map_colors; replaces --which_styles.",
        "style_map_colors": "Mask colour or grey level -> style or mix, e.g. "
                            "'#ff0000:0,#0000ff:1' or '0:0,255:{0:0.5,1:0.5}'.",
        "style_map_blur": "Soft mask edges: Gaussian standard deviation in input pixels "
                          "(>= 0).",
    })


def parse_style_map_flags(flag_values):
    """(style_map, mapping, blur) from the flags of `define_style_map_flags`.

    Returns (None, None, the default blur) without --style_map; `mapping` is the parsed
    style_maps.StyleMapping.

    Raises:
      UsageError: a style-map flag without --style_map, an empty --style_map, the map
        with --which_styles, a missing or malformed --style_map_colors, or a negative
        or non-finite --style_map_blur.
    """
    fv = flag_values
    if fv.style_map is None:
        for name in ("style_map_colors", "style_map_blur"):
            if fv[name].present:
                raise UsageError(f"--{name} needs --style_map")
        return None, None, StyleMapFlags.style_map_blur
    if not fv.style_map:
        raise UsageError("--style_map is empty; give a mask image")
    if fv.which_styles is not None:
        raise UsageError("--style_map and --which_styles cannot be combined: --style_map "
                         "replaces --which_styles (the map's --style_map_colors choose the "
                         "styles)")
    if not fv.style_map_colors:
        raise UsageError("--style_map needs --style_map_colors, e.g. '#000000:0,#ffffff:1'")
    # Here, not at the top: this module is imported before TensorFlow (quiet_tf_logging).
    from magenta_style.inference import style_maps  # pylint: disable=import-outside-toplevel
    try:
        mapping = style_maps.parse_mapping(fv.style_map_colors)
    except style_maps.StyleMapError as e:
        raise UsageError(str(e)) from None
    blur = fv.style_map_blur
    if not math.isfinite(blur) or blur < 0:
        raise UsageError(f"--style_map_blur={blur}: must be a finite number >= 0 (pixels)")
    return fv.style_map, mapping, float(blur)


@dataclasses.dataclass(frozen=True)
class StyleImageFlags:
    """The arbitrary-style model's flags of stylize and stylize_video, with their defaults.

    `given` names the flags given explicitly (refused for an N-style model).
    """

    style_images: str = None
    style_mix: str = None
    style_image_size: int = config.DEFAULT_STYLE_IMAGE_SIZE
    given: tuple = ()


def define_style_image_flags(flag_values, outputs):
    """Defines --style_images, --style_mix and --style_image_size in `flag_values`.

    `outputs`: how the command names or combines its outputs (a sentence for the help).
    """
    define_field_flags(flag_values, StyleImageFlags, {
        "style_images": "Arbitrary-style model (checkpoint or export) only: style images, a "
                        "comma-separated list of files, folders and quoted globs (folders "
                        f"and globs sorted by name). {outputs}",
        "style_mix": "Arbitrary-style model only: one output mixing the --style_images with "
                     "these weights (e.g. 0.7,0.3; normalized to sum to 1).",
        "style_image_size": "Arbitrary-style model only: each style image's shorter side "
                            "before prediction (256: Magenta's and TF Hub's); 0: as given.",
    }, bounds={"style_image_size": (0, None)})


def parse_style_image_flags(flag_values):
    """StyleImageFlags from the flags of `define_style_image_flags` (checked on binding,
    when the model kind is known: `bind_style_images`)."""
    fv = flag_values
    return StyleImageFlags(
        style_images=fv.style_images, style_mix=fv.style_mix,
        style_image_size=fv.style_image_size,
        given=tuple(f"--{name}" for name in ("style_images", "style_mix", "style_image_size")
                    if fv[name].present))


def check_style_image_flags(choice, arbitrary, exported=False, which_styles=None,
                            style_map=None, one_style=False, num_styles=None):
    """Refuses each model kind's flags on the other; needs the model's kind only, so a
    command calls it before loading the model (stylizer.holds_arbitrary_model) and fails
    in a moment rather than after the load.

    Args:
      choice: StyleImageFlags.
      arbitrary: whether the model is Magenta's arbitrary-style model; None (the kind
        is unknown: the path is unreadable, and loading it will say so) checks nothing.
      exported: the model is an export (SavedModel), not a checkpoint.
      which_styles: the parsed --which_styles, or None when not given.
      style_map: the --style_map path, or None.
      one_style: True for a command that takes one style or one mix (stylize_video).
      num_styles: an N-style model's styles, for the message, when known.

    Returns:
      For the arbitrary model (style image paths, the --style_mix style_spec.StyleSpec or
      None); None otherwise.

    Raises:
      UsageError: the flags do not fit the model kind, or --style_images names no image.
    """
    # pylint: disable=import-outside-toplevel
    from magenta_style.inference import style_images
    if arbitrary is None:
        return None
    if not arbitrary:
        if choice.given:
            styles = f" with {num_styles} style(s)" if num_styles else ""
            raise UsageError(f"{choice.given[0]}: --checkpoint holds an N-style model{styles}; "
                             "choose its styles with --which_styles")
        return None
    if which_styles is not None:
        raise UsageError("--which_styles: --checkpoint holds Magenta's arbitrary-style "
                         "model, whose styles are images; give --style_images")
    if not choice.style_images:
        raise UsageError("--checkpoint holds Magenta's arbitrary-style model: give "
                         "--style_images (files, folders or quoted globs)")
    if choice.style_mix and style_map:
        raise UsageError("--style_mix and --style_map cannot be combined: the map's "
                         "--style_map_colors choose the styles")
    if style_map and exported:
        raise UsageError("--style_map: per-pixel style maps need the arbitrary-style "
                         "checkpoint; the export's transfer signature takes one style per "
                         "image")
    try:
        style_images.check_size(choice.style_image_size)
        paths = style_images.expand(choice.style_images)
        spec = (style_images.parse_mix(choice.style_mix, len(paths)) if choice.style_mix
                else None)
    except style_images.StyleImagesError as e:
        raise UsageError(str(e)) from None
    if one_style and spec is None and not style_map and len(paths) != 1:
        raise UsageError(f"--style_images={choice.style_images!r} holds {len(paths)} "
                         "images; a video takes one, or several mixed by --style_mix")
    return paths, spec


def check_style_image_flags_before_load(choice, checkpoint, **kwargs):
    """`check_style_image_flags` for the model at `checkpoint`, its kind read from the
    checkpoint's names or the export's metadata (stylizer.holds_arbitrary_model): a
    command calls it before the load, which takes seconds. kwargs: which_styles,
    style_map, one_style."""
    from magenta_style.inference import stylizer  # pylint: disable=import-outside-toplevel
    return check_style_image_flags(choice, stylizer.holds_arbitrary_model(checkpoint),
                                   exported=stylizer.is_saved_model(checkpoint), **kwargs)


def bind_style_images(choice, model, model_config, which_styles=None, style_map=None,
                      max_pixels=None, one_style=False):
    """Binds the --style_images of `choice` to an arbitrary-style model, after refusing
    each model kind's flags on the other (`check_style_image_flags`).

    The style images' bottlenecks are predicted here, once (style_images.bind); the
    result is used as an N-style model with one style per image.

    Args:
      choice: StyleImageFlags.
      model, model_config: what stylizer.load returned.
      which_styles, style_map, one_style: as `check_style_image_flags`.
      max_pixels: cap on each style image file's pixels (None: the default).

    Returns:
      (model, model_config, spec): unchanged with spec None for an N-style model;
      for the arbitrary one, an arbitrary.StyleImageModel, its config (num_styles = the
      number of style images, their stems as style_names) and the --style_mix
      style_spec.StyleSpec or None.

    Raises:
      UsageError: the flags do not fit the model kind, or a style image cannot be used.
    """
    # pylint: disable=import-outside-toplevel
    from magenta_style.inference import style_images
    from magenta_style.inference import stylizer
    checked = check_style_image_flags(
        choice, style_images.is_arbitrary(model_config),
        exported=isinstance(model, stylizer.ExportedArbitraryNetwork),
        which_styles=which_styles, style_map=style_map, one_style=one_style,
        num_styles=model_config.num_styles)
    if checked is None:
        return model, model_config, None
    paths, spec = checked
    try:
        model, model_config = style_images.bind(model, model_config, paths,
                                                choice.style_image_size,
                                                max_pixels=max_pixels)
    except style_images.StyleImagesError as e:
        raise UsageError(str(e)) from None
    return model, model_config, spec


def parse_strength(value):
    """--strength as a float in [0, 1]; UsageError otherwise (style_spec.check_strength)."""
    from magenta_style.inference import style_spec  # pylint: disable=import-outside-toplevel
    try:
        return style_spec.check_strength(value)
    except ValueError as e:
        raise UsageError(str(e)) from None


def raise_pillow_limit(max_pixels):
    """Makes `max_pixels` the image-size limit that counts when it is above Pillow's.

    Pillow refuses images above 2 * Image.MAX_IMAGE_PIXELS before our cap is consulted;
    a user who raises --max_pixels means the larger images to load.
    """
    if Image.MAX_IMAGE_PIXELS is not None and 2 * Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


class Progress:
    """A one-line progress bar on a terminal; a line every ~10% otherwise (logs).

    Args:
      total: int, the items expected (0: unknown; the bar shows the count only).
      stream: where to write (stderr).
      program: the name that starts each logged line.
      unit: what is counted ("images", "frames").
      min_total: show nothing when fewer than this many items are expected (one image
        needs no bar); 0 always shows it.
      width: characters of the bar.
    """

    def __init__(self, total, stream, program, unit="images", min_total=2, width=30):
        self.total = total
        self.stream = stream
        self.program = program
        self.unit = unit
        self.width = width
        self.enabled = total >= min_total
        self.tty = getattr(stream, "isatty", lambda: False)()
        self._line_open = False
        self._last_decile = 0
        self._tile_decile = None

    def update(self, done, total, path="", note=None):
        """After each item; the terminal line ends with `note`, else `path`'s file name."""
        if not self.enabled:
            return
        if self.tty:
            label = os.path.basename(path)[:40] if note is None else note
            if total:
                filled = self.width * done // total
                bar = "#" * filled + "." * (self.width - filled)
                text = f"[{bar}] {done}/{total} {label}"
            else:
                text = f"{done} {label}"
            self.stream.write(f"\r{text}\033[K")
            self._line_open = True
        else:
            # Logs get a line every ~10%, or at 1, 2, 4, 8, ... items when the total is
            # unknown (a video whose container does not say).
            line = f"{self.program}: {done}/{total}" if total else f"{self.program}: {done}"
            line += f" {self.unit}" if note is None else f" {note}"
            decile = 10 * done // total if total else done.bit_length()
            if decile > self._last_decile or done == total:
                self._last_decile = decile
                self.stream.write(line + "\n")
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
                self.stream.write(f"{self.program}: {name}: tiled, {done}/{total} tile steps\n")
        self.stream.flush()

    def message(self, line):
        """Prints `line` on its own line, clearing the bar first."""
        if self._line_open:
            self.stream.write("\r\033[K")
            self._line_open = False
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        """Ends the bar's line."""
        if self._line_open:
            self.stream.write("\n")
            self._line_open = False
