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

from absl import flags

from magenta_style import cli
from magenta_style.media import fileio

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
cli.define_style_map_flags(flags.FLAGS)
flags.adopt_module_key_flags(cli)  # So that --help lists them with the others.
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
    from magenta_style.inference import style_spec

    for flag in (_CHECKPOINT, _INPUT, _OUTPUT):
        if not flag.value:
            raise cli.UsageError(f"--{flag.name} is required")
    if fileio.is_same_file(_INPUT.value, _OUTPUT.value):
        raise cli.UsageError(f"--output={_OUTPUT.value} is the --input video; it would be "
                             "overwritten, write to another file")
    strength = cli.parse_strength(_STRENGTH.value)
    if _BATCH_SIZE.value < 1:
        raise cli.UsageError(f"--batch_size={_BATCH_SIZE.value}: must be >= 1")
    if _MAX_FRAMES.value is not None and _MAX_FRAMES.value < 1:
        raise cli.UsageError(f"--max_frames={_MAX_FRAMES.value}: must be >= 1")
    style_map, mapping, blur = cli.parse_style_map_flags(flags.FLAGS)
    which_styles = "0" if _WHICH_STYLES.value is None else _WHICH_STYLES.value
    spec = style_spec.parse(which_styles)
    if spec.kind == "list" and len(spec.styles) != 1:
        raise cli.UsageError(f"--which_styles={which_styles}: a video takes one style or one "
                         "mix like {0:0.5,1:0.5}, not a list")
    return VideoJob(checkpoint=_CHECKPOINT.value, input=_INPUT.value, output=_OUTPUT.value,
                    which_styles=spec, strength=strength,
                    preserve_colors=_PRESERVE_COLORS.value, style_map=style_map,
                    style_map_colors=mapping, style_map_blur=blur,
                    batch_size=_BATCH_SIZE.value, crf=_CRF.value, max_frames=_MAX_FRAMES.value)


def run(job):
    """Stylizes `job.input` into `job.output`; returns the number of frames written."""
    from magenta_style.inference import stylizer as inference
    from magenta_style.media import video

    info = video.probe(job.input)
    model, model_config = inference.load(job.checkpoint)
    num_styles = model_config.num_styles
    if job.style_map:
        style = inference.load_style_map(job.style_map, job.style_map_colors, num_styles,
                                         job.style_map_blur).weights(
                                             num_styles, (info.height, info.width))
    else:
        style = job.which_styles.weight_rows(num_styles)[0]
    batch_size = _frames_per_call(job, info, model, model_config)
    stylizer = inference.make_frame_stylizer(model, style, strength=job.strength,
                                             preserve_colors=job.preserve_colors)
    bar = cli.Progress(info.frames, sys.stderr, PROGRAM, unit="frames", min_total=0)
    try:
        return video.stylize_video(
            job.input, job.output, stylizer, batch_size=batch_size, crf=job.crf,
            max_frames=job.max_frames,
            progress=lambda done, total, fps: bar.update(
                done, total, note=f"frames, {fps:.1f} frames/s"))
    finally:
        bar.close()


def _frames_per_call(job, info, model, model_config):
    """--batch_size, lowered so that one call stays under the model's pixel cap.

    Checked before anything is decoded or written: an export refuses a request over its
    cap in the graph, which would otherwise fail on the first batch.

    Raises:
      video.VideoError: one frame alone is over an export's cap.
    """
    from magenta_style.inference import stylizer as inference
    from magenta_style.media import limits
    from magenta_style.media import video

    cap = inference.untiled_pixel_cap(model, model_config)
    frame_pixels = info.width * info.height
    size = f"{info.width}x{info.height}"
    if frame_pixels > cap:
        if getattr(model, "max_pixels", None):  # An export: its graph refuses the frame.
            raise video.VideoError(
                f"{job.input}: frames of {size} are over this export's cap of {cap} pixels "
                "per request; scale the video down first (e.g. ffmpeg -vf scale=-2:720) or "
                "re-export with a larger --memory_budget_gib")
        gib = frame_pixels * limits.bytes_per_pixel(model_config) / 2**30
        print(f"{PROGRAM}: frames of {size} need about {gib:.1f} GiB each; stylizing them "
              "one at a time", file=sys.stderr)
        return 1
    if job.batch_size * frame_pixels > cap:
        batch_size = cap // frame_pixels
        print(f"{PROGRAM}: --batch_size={job.batch_size} lowered to {batch_size}: that many "
              f"frames of {size} fill the {cap}-pixel memory cap of one call", file=sys.stderr)
        return batch_size
    return job.batch_size


def main(argv):
    if len(argv) > 1:
        cli.fail(PROGRAM, f"unexpected arguments {argv[1:]}")
    from magenta_style.inference import style_maps
    from magenta_style.inference import style_spec
    from magenta_style.media import video
    from magenta_style.networks import checkpoints

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
