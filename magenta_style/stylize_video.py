r"""Stylizes a video: every frame in one style (or mix), audio copied unchanged.

    python -m magenta_style.stylize_video --checkpoint=model_dir --input=clip.mp4 \
        --which_styles=3 --output=clip_styled.mp4 [--strength=0.7] [--preserve_colors]

Frames are decoded and encoded with PyAV (FFmpeg bundled in its wheel), stylized in
batches of --batch_size, and written with the source's timestamps (same frame rate).
Output: H.264 for .mp4/.mov/.mkv/.m4v, VP9 for .webm. Optional: a style map applied to
every frame (--style_map, --style_map_colors, --style_map_blur).
"""
import dataclasses
import sys
import time

from absl import flags

from magenta_style import cli
from magenta_style import fileio

PROGRAM = "stylize_video"

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Model: a Magenta checkpoint prefix, a "
                                  "directory with config.json and checkpoints, or an export.")
_INPUT = flags.DEFINE_string("input", None, "Input video (anything FFmpeg decodes).")
_OUTPUT = flags.DEFINE_string("output", None, "Output video: .mp4, .m4v, .mov, .mkv or .webm.")
_WHICH_STYLES = flags.DEFINE_string(
    "which_styles", None, "Default 0. One style index (e.g. 3, or [3]) or a mix {0:0.3,2:0.7} (weights not "
    "normalized).")
_STRENGTH = flags.DEFINE_float("strength", 1.0, "Style strength in [0, 1].")
_PRESERVE_COLORS = flags.DEFINE_bool("preserve_colors", False,
                                     "Keep each frame's colours; take only the stylized "
                                     "luminance.")
_STYLE_MAP = flags.DEFINE_string("style_map", None, "Optional mask image: different styles in "
                                 "different regions (replaces --which_styles).")
_STYLE_MAP_COLORS = flags.DEFINE_string(
    "style_map_colors", None, "Mask colour or grey level -> style or mix, e.g. "
    "'#ff0000:0,#0000ff:1' or '0:0,255:{0:0.5,1:0.5}'.")
_STYLE_MAP_BLUR = flags.DEFINE_float("style_map_blur", 0.0, "Soft mask edges: Gaussian "
                                     "standard deviation in pixels.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 4, "Frames stylized per step.")
_CRF = flags.DEFINE_integer("crf", 18, "Encoder quality, lower is better (H.264: 0-51, "
                            "VP9: 0-63).", lower_bound=0, upper_bound=63)
_MAX_FRAMES = flags.DEFINE_integer("max_frames", None, "Stop after this many frames.")


@dataclasses.dataclass(frozen=True)
class VideoJob:
    """Validated settings of one run."""

    checkpoint: str
    input: str
    output: str
    which_styles: object  # style_spec.StyleSpec
    strength: float
    preserve_colors: bool
    style_map: str
    style_map_colors: object  # style_maps.StyleMapping or None
    style_map_blur: float
    batch_size: int
    crf: int
    max_frames: int


def _job_from_flags():
    # Imported here so that flag errors come back before TensorFlow loads.
    from magenta_style import style_maps
    from magenta_style import style_spec

    for flag in (_CHECKPOINT, _INPUT, _OUTPUT):
        if not flag.value:
            raise cli.UsageError(f"--{flag.name} is required")
    if fileio.is_same_file(_INPUT.value, _OUTPUT.value):
        raise cli.UsageError(f"--output={_OUTPUT.value} is the --input video; it would be "
                             "overwritten, write to another file")
    if not 0.0 <= _STRENGTH.value <= 1.0:
        raise cli.UsageError(f"--strength={_STRENGTH.value}: must be in [0, 1]")
    if _BATCH_SIZE.value < 1:
        raise cli.UsageError(f"--batch_size={_BATCH_SIZE.value}: must be >= 1")
    if _MAX_FRAMES.value is not None and _MAX_FRAMES.value < 1:
        raise cli.UsageError(f"--max_frames={_MAX_FRAMES.value}: must be >= 1")
    if _STYLE_MAP.value and _WHICH_STYLES.value is not None:
        raise cli.UsageError("--style_map replaces --which_styles; give one of them")
    which_styles = "0" if _WHICH_STYLES.value is None else _WHICH_STYLES.value
    spec = style_spec.parse(which_styles)
    if spec.kind == "list" and len(spec.styles) != 1:
        raise cli.UsageError(f"--which_styles={which_styles}: a video takes one style or one "
                         "mix like {0:0.5,1:0.5}, not a list")
    mapping = None
    if _STYLE_MAP.value:
        if not _STYLE_MAP_COLORS.value:
            raise cli.UsageError("--style_map needs --style_map_colors")
        mapping = style_maps.parse_mapping(_STYLE_MAP_COLORS.value)
    if _STYLE_MAP_BLUR.value < 0:
        raise cli.UsageError(f"--style_map_blur={_STYLE_MAP_BLUR.value}: must be >= 0")
    return VideoJob(checkpoint=_CHECKPOINT.value, input=_INPUT.value, output=_OUTPUT.value,
                    which_styles=spec, strength=_STRENGTH.value,
                    preserve_colors=_PRESERVE_COLORS.value, style_map=_STYLE_MAP.value,
                    style_map_colors=mapping, style_map_blur=_STYLE_MAP_BLUR.value,
                    batch_size=_BATCH_SIZE.value, crf=_CRF.value, max_frames=_MAX_FRAMES.value)


class _Progress:
    """A one-line progress bar on stderr: frames done, total, frames/s."""

    def __init__(self):
        self._last = 0.0

    def __call__(self, done, total, fps):
        now = time.monotonic()
        if now - self._last < 0.5 and done != total:
            return
        self._last = now
        if total:
            bar = "#" * int(30 * done / total)
            text = f"\r[{bar:<30}] {done}/{total} frames, {fps:.1f} frames/s"
        else:
            text = f"\r{done} frames, {fps:.1f} frames/s"
        sys.stderr.write(text)
        sys.stderr.flush()


def run(job):
    """Stylizes `job.input` into `job.output`; returns the number of frames written."""
    from magenta_style import export_lib
    from magenta_style import style_maps
    from magenta_style import video

    info = video.probe(job.input)
    model, model_config = export_lib.load_any(job.checkpoint)
    if job.style_map:
        style = style_maps.load_style_map(job.style_map, job.style_map_colors,
                                          model_config.num_styles, (info.height, info.width),
                                          job.style_map_blur)
    else:
        style = job.which_styles.weight_rows(model_config.num_styles)[0]
    stylizer = video.make_frame_stylizer(model, style, strength=job.strength,
                                         preserve_colors=job.preserve_colors)
    frames = video.stylize_video(job.input, job.output, stylizer, batch_size=job.batch_size,
                                 crf=job.crf, max_frames=job.max_frames, progress=_Progress())
    sys.stderr.write("\n")
    return frames


def main(argv):
    if len(argv) > 1:
        cli.fail(PROGRAM, f"unexpected arguments {argv[1:]}")
    from magenta_style import checkpoints
    from magenta_style import style_maps
    from magenta_style import style_spec
    from magenta_style import video

    user_errors = (cli.UsageError, style_spec.StyleSpecError, style_maps.StyleMapError,
                   video.VideoError, checkpoints.CheckpointError)
    try:
        job = _job_from_flags()
        frames = run(job)
    except user_errors as e:
        cli.fail(PROGRAM, e)
    print(f"wrote {job.output} ({frames} frames)", file=sys.stderr)


def run_main():
    """Console-script entry point (`magenta-style-stylize-video`)."""
    cli.run_with_global_flags(main, PROGRAM)


if __name__ == "__main__":
    run_main()
