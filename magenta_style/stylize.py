"""Stylize image files with a trained multi-style network.

    python -m magenta_style.stylize --checkpoint=CKPT --input_image=photo.jpg \\
        --output_dir=out --which_styles="[0,3]"
    python -m magenta_style.stylize --checkpoint=CKPT --input_image='photos/*.jpg' \\
        --output_dir=out --which_styles="{0:0.3,2:0.7}" --strength=0.6 --preserve_colors
    python -m magenta_style.stylize --checkpoint=CKPT --input_image=photo.jpg \\
        --output_dir=out --style_map=mask.png --style_map_colors="#000:0,#fff:1"
    python -m magenta_style.stylize --checkpoint=ARBITRARY_CKPT --input_image=photo.jpg \\
        --output_dir=out --style_images=starry.jpg,wave.jpg [--style_mix=0.7,0.3]

Magenta's arbitrary-style model (arbitrary_style_transfer, or its export; docs/arbitrary.md)
takes its styles from images: `--style_images` is a comma-separated list of files, folders and
quoted globs, expanded in order (a folder's or glob's files sorted by name); that order
indexes `--style_mix` and `--style_map_colors`. Outputs are `{basename}_{style stem}.png`,
or one `{basename}_{stem}_700_{stem}_300.png` with `--style_mix` (weights normalized).
For this model `--strength=w` is Magenta's: the style bottleneck is
`content * (1 - w) + style * w`, the content fed as its own style (so 0 is not the photo).

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
import os
import sys

from magenta_style.inference import style_images
from magenta_style.inference import style_maps
from magenta_style.inference import style_spec
from magenta_style.inference import stylize_lib
from magenta_style.inference import stylizer
from magenta_style.inference import tiling
from magenta_style.media import images
from magenta_style.networks import checkpoints
from magenta_style.networks import generators
from magenta_style.networks import transformer

PROGRAM = "stylize"
# Show a progress bar from this many input images on.
PROGRESS_MIN_IMAGES = 2


@dataclasses.dataclass(frozen=True, kw_only=True)
class StylizeArgs:
    """The validated command line (see `parse_args`); a field with a default is a flag.

    How to stylize (strength, colours, tiling, batch size) is `options`, whose fields
    are flags too, with StylizeOptions' defaults; run() adds the styles and the loaded
    style map to it. `style_map_colors` is the parsed
    style_maps.StyleMapping; `tiling_flags` lists the tiling flags given explicitly (a
    SavedModel cannot be tiled, so they are refused there).
    """

    checkpoint: str = None
    input_image: str = None
    output_dir: str = None
    output_basename: str = None
    which_styles: style_spec.StyleSpec = None
    num_styles: int = None
    alpha: float = None
    output_format: str = "png"
    max_pixels: int = None  # None: `stylizer.default_max_pixels` for the model.
    compute_dtype: str = None
    style_map: str
    style_map_colors: style_maps.StyleMapping
    style_map_blur: float
    options: stylizer.StylizeOptions
    tiling_flags: tuple
    style_image_choice: cli.StyleImageFlags  # --style_images, --style_mix, --style_image_size.


def _define_flags(fv):
    cli.define_field_flags(fv, StylizeArgs, {
        "checkpoint": "Magenta TF1 checkpoint prefix, native checkpoint prefix, a directory "
                      "holding a checkpoint (and config.json), or an exported SavedModel "
                      "(version directory or export base: highest version).",
        "input_image": "An image file, a directory of images, or a glob such as "
                       "'photos/*.jpg' (quote it).",
        "output_dir": "Directory for the outputs (created if missing).",
        "output_basename": "Output name prefix; default: each input's file stem. With "
                           "several inputs it prefixes the stems.",
        "which_styles": "[0,1,2]: one image per style; {0:0.3,2:0.7}: one image mixing the "
                        "styles with these (unnormalized) weights. Default: every style.",
        "num_styles": "Optional check: the number of styles the checkpoint must have.",
        "alpha": "Optional check: the width multiplier the checkpoint must have.",
        "output_format": "Output file format (jpg drops transparency).",
        "max_pixels": "Refuse inputs with more pixels than this. Default: what the model can "
                      "stylize in a 4 GiB memory budget when untiled (an export's own cap; "
                      "docs/limits.md), 100 million when tiled.",
        "compute_dtype": "What a checkpoint's convolutions compute in (default float32). "
                         "bfloat16 is about 2x faster on CPUs with AVX512_BF16/AMX and on "
                         "GPUs, mean error ~1 grey level (docs/speed.md). An export computes "
                         "in what it was exported with; tiled images compute in float32.",
    }, choices={"output_format": stylize_lib.OUTPUT_FORMATS,
                "compute_dtype": transformer.COMPUTE_DTYPES},
        bounds={"num_styles": (1, None), "alpha": (0.0, None), "max_pixels": (1, None)})
    cli.define_style_image_flags(fv, "One output per image, named {basename}_{style stem}.")
    # No absl bounds on --strength: they let NaN through; `cli.parse_strength` validates.
    cli.define_field_flags(fv, stylizer.StylizeOptions, {
        "batch_size": "Styles of one image computed per model call (memory vs speed).",
        "strength": "How strongly the style is applied, in [0, 1]: 0 returns the photo, 1 "
                    "the full style. Below 1 the outputs get a _s{1000*strength} suffix "
                    "(0.5: _s500). Arbitrary-style model: Magenta's meaning, the style "
                    "bottleneck content*(1-w) + style*w with the content fed as its own "
                    "style (0 is that stylization, not the photo).",
        "preserve_colors": "Keep the input's colours, take only the stylized luminance "
                           "(YUV). Outputs get a _pc suffix.",
        "max_tile_pixels": "Images the network pads to more pixels than this are stylized "
                           "tile by tile with whole-image statistics (bounded memory, no "
                           "seams). 0: never tile. Checkpoints only.",
        "tile_statistics": "Tiled images: 'exact' (equals the untiled result, ~7x the work) "
                           "or 'downscaled' (statistics from a downscaled copy: ~1x, "
                           "approximate).",
    }, choices={"tile_statistics": tiling.STATISTICS_MODES},
        bounds={"batch_size": (1, None), "max_tile_pixels": (0, None)})
    cli.define_style_map_flags(fv)


def usage_text():
    """The --help text: this module's docstring and the flags."""
    return cli.usage_text(__doc__, _define_flags)


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
    fv = cli.parse_flag_values(cli.new_flag_values(_define_flags), argv,
                               required=("checkpoint", "input_image", "output_dir"))
    spec = None
    if fv.which_styles is not None:
        try:
            spec = style_spec.parse(fv.which_styles)
        except style_spec.StyleSpecError as e:
            raise cli.UsageError(str(e)) from None
    try:
        stylize_lib.check_basename(fv.output_basename)
    except ValueError as e:
        raise cli.UsageError(str(e)) from None
    strength = cli.parse_strength(fv.strength)
    style_map, mapping, blur = cli.parse_style_map_flags(fv)
    if os.path.exists(fv.output_dir) and not os.path.isdir(fv.output_dir):
        raise cli.UsageError(f"--output_dir={fv.output_dir!r} exists and is not a directory")
    options = stylizer.StylizeOptions(
        strength=strength, preserve_colors=fv.preserve_colors,
        max_tile_pixels=fv.max_tile_pixels, tile_statistics=fv.tile_statistics,
        batch_size=fv.batch_size)
    return StylizeArgs(
        checkpoint=fv.checkpoint, input_image=fv.input_image, output_dir=fv.output_dir,
        output_basename=fv.output_basename, which_styles=spec, num_styles=fv.num_styles,
        alpha=fv.alpha, output_format=fv.output_format, max_pixels=fv.max_pixels,
        compute_dtype=fv.compute_dtype, style_map=style_map, style_map_colors=mapping,
        style_map_blur=blur, options=options,
        tiling_flags=tuple(f"--{name}" for name in ("max_tile_pixels", "tile_statistics")
                           if fv[name].present),
        style_image_choice=cli.parse_style_image_flags(fv))


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
    cli.check_style_image_flags_before_load(args.style_image_choice, args.checkpoint,
                                            which_styles=args.which_styles,
                                            style_map=args.style_map)
    try:
        model, model_config = stylizer.load(args.checkpoint, args.num_styles, args.alpha)
    except checkpoints.CheckpointError as e:
        raise cli.UsageError(f"--checkpoint: {e}") from None
    model, model_config, bound_spec = cli.bind_style_images(
        args.style_image_choice, model, model_config, which_styles=args.which_styles,
        style_map=args.style_map, max_pixels=args.max_pixels)
    # The arbitrary model's outputs are named by style image stems, not indices.
    names = model_config.style_names if style_images.is_arbitrary(model_config) else None
    if generators.is_boe(model) and args.options.max_tile_pixels and args.tiling_flags:
        raise cli.UsageError(f"{' and '.join(args.tiling_flags)}: tiling supports the Magenta "
                             "generator only; this BOE model stylizes each image whole")
    if args.compute_dtype:
        try:
            model = transformer.with_compute_dtype(model, args.compute_dtype)
        except ValueError as e:
            raise cli.UsageError(str(e)) from None
    if not stylizer.can_tile(model) and args.options.max_tile_pixels and args.tiling_flags:
        raise cli.UsageError(f"{' and '.join(args.tiling_flags)} need a checkpoint: tiling runs the "
                         "Keras network layer by layer, and a SavedModel stylizes each image "
                         "whole (use the checkpoint it was exported from)")
    spec = bound_spec or args.which_styles or style_spec.all_styles(model_config.num_styles)
    try:
        spec.validate(model_config.num_styles)
    except style_spec.StyleSpecError as e:
        raise cli.UsageError(str(e)) from None
    style_map = None
    if args.style_map is not None:
        try:
            style_map = style_maps.read_style_map(
                args.style_map, args.style_map_colors, model_config.num_styles,
                args.style_map_blur, max_pixels=args.max_pixels)
        except style_maps.StyleMapError as e:
            raise cli.UsageError(str(e)) from None
    max_pixels = args.max_pixels or stylizer.default_max_pixels(
        model, model_config, args.options.max_tile_pixels)
    cli.raise_pillow_limit(max_pixels)
    options = dataclasses.replace(args.options, styles=spec, style_map=style_map)

    progress = cli.Progress(len(inputs), stderr, PROGRAM, min_total=PROGRESS_MIN_IMAGES)
    try:
        summary = stylize_lib.stylize_files(
            model, model_config, inputs, args.output_dir, options,
            output_basename=args.output_basename, output_format=args.output_format,
            max_pixels=max_pixels, on_progress=progress.update,
            on_tile_progress=progress.tiles,
            on_error=lambda path, message: progress.message(f"{PROGRAM}: error: {message}"),
            style_names=names)
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
