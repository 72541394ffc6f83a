r"""Stylizes a video: every frame in one style (or mix), audio copied unchanged.

    python -m magenta_style.stylize_video --checkpoint=model_dir --input=clip.mp4 \
        --which_styles=3 --output=clip_styled.mp4 [--strength=0.7] [--preserve_colors]
    python -m magenta_style.stylize_video --checkpoint=ARBITRARY --input=clip.mp4 \
        --style_images=starry.jpg,wave.jpg --style_mix=0.7,0.3 --output=clip_styled.mp4

Magenta's arbitrary-style model (a checkpoint or its export; docs/arbitrary.md) takes
its style from `--style_images`: one image, or several mixed by `--style_mix`
(`--style_image_size` as in stylize). The style is predicted once per video, not per
frame: the style images' bottlenecks before the first frame, and with `--strength` below
1 (Magenta's: the bottleneck content*(1-w) + style*w) the content bottleneck from the
first frame, so every frame gets the same gamma/beta (a per-frame content style would
flicker, and cost a style prediction per frame).

Frames are decoded and encoded with PyAV (FFmpeg bundled in its wheel), stylized in
batches of --batch_size, and written with the source's timestamps (same frame rate).
Output: H.264 for .mp4/.mov/.mkv/.m4v, VP9 for .webm. Optional: a style map applied to
every frame (--style_map, --style_map_colors, --style_map_blur).
"""
import dataclasses
import sys

# Before anything imports TensorFlow (cli.quiet_tf_logging: its start-up lines, cuInit).
from magenta_style import cli  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

from magenta_style.media import fileio

PROGRAM = "stylize_video"


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoJob:
    """Validated settings of one run; a field with a default is a flag.

    `which_styles` is the parsed style_spec.StyleSpec (one style or one mix); the
    style-map fields are cli.parse_style_map_flags' values.
    """

    checkpoint: str = None
    input: str = None
    output: str = None
    which_styles: object = None  # style_spec.StyleSpec; None: style 0 (N-style models).
    strength: float = 1.0
    preserve_colors: bool = False
    batch_size: int = 4
    crf: int = 18
    max_frames: int = None
    style_map: str
    style_map_colors: object  # style_maps.StyleMapping or None
    style_map_blur: float
    style_image_choice: cli.StyleImageFlags = cli.StyleImageFlags()


def _define_flags(fv):
    cli.define_field_flags(fv, VideoJob, {
        "checkpoint": "Model: a Magenta checkpoint prefix, a directory with config.json and "
                      "checkpoints, or an export.",
        "input": "Input video (anything FFmpeg decodes).",
        "output": "Output video: .mp4, .m4v, .mov, .mkv or .webm.",
        "which_styles": "Default 0. One style index (e.g. 3, or [3]) or a mix "
                        "{0:0.3,2:0.7} (weights not normalized).",
        "strength": "Style strength in [0, 1] (0: the photo). Arbitrary-style model: "
                    "Magenta's, the bottleneck content*(1-w) + style*w with the first "
                    "frame fed as its own style (0 is that stylization, not the photo).",
        "preserve_colors": "Keep each frame's colours; take only the stylized luminance.",
        "batch_size": "Frames stylized per step.",
        "crf": "Encoder quality, lower is better (H.264: 0-51, VP9: 0-63).",
        "max_frames": "Stop after this many frames.",
    }, bounds={"crf": (0, 63)})
    cli.define_style_map_flags(fv)
    cli.define_style_image_flags(fv, "One image, or several mixed by --style_mix.")


def usage_text():
    return cli.usage_text(__doc__, _define_flags)


def parse_args(argv):
    """argv (argv[0] the program name) -> VideoJob (nothing is read); cli.UsageError."""
    fv = cli.parse_flag_values(cli.new_flag_values(_define_flags), argv,
                               required=("checkpoint", "input", "output"))
    # Imported here so that flag errors come back before TensorFlow loads.
    from magenta_style.inference import style_spec  # pylint: disable=import-outside-toplevel

    if fileio.is_same_file(fv.input, fv.output):
        raise cli.UsageError(f"--output={fv.output} is the --input video; it would be "
                             "overwritten, write to another file")
    strength = cli.parse_strength(fv.strength)
    if fv.batch_size < 1:
        raise cli.UsageError(f"--batch_size={fv.batch_size}: must be >= 1")
    if fv.max_frames is not None and fv.max_frames < 1:
        raise cli.UsageError(f"--max_frames={fv.max_frames}: must be >= 1")
    style_map, mapping, blur = cli.parse_style_map_flags(fv)
    spec = None
    if fv.which_styles is not None:
        try:
            spec = style_spec.parse(fv.which_styles)
        except style_spec.StyleSpecError as e:
            raise cli.UsageError(str(e)) from None
        if spec.kind == "list" and len(spec.styles) != 1:
            raise cli.UsageError(f"--which_styles={fv.which_styles}: a video takes one style or "
                                 "one mix like {0:0.5,1:0.5}, not a list")
    return VideoJob(checkpoint=fv.checkpoint, input=fv.input, output=fv.output,
                    which_styles=spec, strength=strength, preserve_colors=fv.preserve_colors,
                    style_map=style_map, style_map_colors=mapping, style_map_blur=blur,
                    batch_size=fv.batch_size, crf=fv.crf, max_frames=fv.max_frames,
                    style_image_choice=cli.parse_style_image_flags(fv))


def run(job):
    """Stylizes `job.input` into `job.output`; returns the number of frames written.

    Raises:
      video.VideoError, checkpoints.CheckpointError, style_maps.StyleMapError,
        style_spec.StyleSpecError: bad inputs (`main` turns them into one-line usage
        errors).
      cli.UsageError: the style flags do not fit the model.
    """
    # pylint: disable=import-outside-toplevel
    from magenta_style.inference import style_maps
    from magenta_style.inference import stylizer
    from magenta_style.media import video

    from magenta_style.inference import style_spec

    info = video.probe(job.input)
    cli.check_style_image_flags_before_load(job.style_image_choice, job.checkpoint,
                                            which_styles=job.which_styles,
                                            style_map=job.style_map or None, one_style=True)
    model, model_config = stylizer.load(job.checkpoint)
    # Binds an arbitrary model's style images (their style predicted once, here).
    model, model_config, mix = cli.bind_style_images(
        job.style_image_choice, model, model_config, which_styles=job.which_styles,
        style_map=job.style_map or None, one_style=True)
    num_styles = model_config.num_styles
    if job.style_map:
        style = style_maps.read_style_map(job.style_map, job.style_map_colors, num_styles,
                                          job.style_map_blur).weights(
                                              num_styles, (info.height, info.width))
    else:
        spec = mix or job.which_styles or style_spec.parse("0")
        style = spec.weight_rows(num_styles)[0]
    batch_size = _frames_per_call(job, info, model, model_config)
    stylize_frames = stylizer.make_frame_stylizer(model, style, strength=job.strength,
                                                  preserve_colors=job.preserve_colors)
    bar = cli.Progress(info.frames, sys.stderr, PROGRAM, unit="frames", min_total=0)
    try:
        return video.stylize_video(
            job.input, job.output, stylize_frames, batch_size=batch_size, crf=job.crf,
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
    # pylint: disable=import-outside-toplevel
    from magenta_style.inference import stylizer
    from magenta_style.media import limits
    from magenta_style.media import video

    cap = stylizer.untiled_pixel_cap(model, model_config)
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


def _run_job(job):
    """`run`, with bad inputs as usage errors and a closing line; returns 0."""
    # pylint: disable=import-outside-toplevel
    from magenta_style.inference import style_maps
    from magenta_style.inference import style_spec
    from magenta_style.media import video
    from magenta_style.networks import checkpoints

    try:
        frames = run(job)
    except (style_maps.StyleMapError, style_spec.StyleSpecError, video.VideoError,
            checkpoints.CheckpointError) as e:
        raise cli.UsageError(str(e)) from None
    print(f"wrote {job.output} ({frames} frames)", file=sys.stderr)
    return 0


def main(argv):
    """The command: argv (argv[0] the program name) -> exit status (2: usage error)."""
    return cli.run_command(argv, PROGRAM, parse_args, _run_job, usage_text)


def run_main():
    """Console-script entry point (`magenta-style-stylize-video`)."""
    cli.run_with_private_flags(main)


if __name__ == "__main__":
    run_main()
