"""Per-image style transfer by optimization (Gatys et al.): the command.

    python -m magenta_style.optimize --content_image=photo.jpg --style_images=starry.jpg \\
        --output_image=out.png --vgg_checkpoint=/path/to/vgg_16.ckpt

Slower than the fast network (minutes, not milliseconds) but needs no training, works
for any style image, and gives the best image for its loss. Options: several styles
mixed (--style_images=a.jpg,b.jpg --style_mix=0.7,0.3), --recipe=gatys|johnson|magenta,
--init=content|noise|style|network:CHECKPOINT:STYLE (refine a fast network's output),
--optimizer=lbfgs|adam, --scales (coarse to fine), --report=report.json, and the
patch-based semantic loss (--style_loss=patch, --style_semantic_map,
--content_semantic_map; a content map without --content_image is a doodle).
Ctrl-C writes the best image so far. See docs/optimize.md.
"""
import os
import sys
import time

from absl import flags

from magenta_style import cli
from magenta_style import config as config_lib

PROGRAM = "optimize"


def _define_flags(fv):
    d = dict(flag_values=fv)
    flags.DEFINE_string("content_image", None, "The photo (omit for a doodle: see "
                        "--content_semantic_map).", **d)
    flags.DEFINE_list("style_images", [], "Style image(s), comma-separated.", **d)
    flags.DEFINE_string("output_image", None, "Result (.png, .jpg, .webp); written atomically.",
                        **d)
    flags.DEFINE_list("style_mix", [], "Blend weights of the style images' Gram targets, "
                      "e.g. 0.7,0.3 (default: equal).", **d)
    flags.DEFINE_integer("image_size", 512, "Longer side of the output in pixels (aspect "
                         "kept); 0 keeps the content's size.", **d)
    flags.DEFINE_float("style_scale", 1.0, "Style image size relative to the output "
                       "(larger: bigger strokes).", **d)
    flags.DEFINE_string("init", "content", "content, noise, style or network:CHECKPOINT:STYLE "
                        "(start from a fast network's stylization and refine it).", **d)
    flags.DEFINE_integer("seed", 0, "Noise seed; the same seed gives the same image.", **d)
    flags.DEFINE_string("recipe", "gatys", "gatys, johnson or magenta: default layers, "
                        "weights, normalization and total variation.", **d)
    flags.DEFINE_string("vgg", "vgg_16", "Loss network: vgg_16 or vgg_19.", **d)
    flags.DEFINE_string("vgg_checkpoint", None, "VGG weights: TF-slim vgg_16.ckpt / "
                        "vgg_19.ckpt, 'imagenet', a Keras .h5, or standin:SEED (tests only).",
                        **d)
    flags.DEFINE_string("vgg_pooling", "avg", "avg (Gatys, Magenta) or max.", **d)
    flags.DEFINE_string("content_weights", None, "end_point:weight list, e.g. conv4_2:1.0 "
                        "(short names take --vgg; default: the recipe's).", **d)
    flags.DEFINE_string("style_weights", None, "end_point:weight list, e.g. "
                        "conv1_1:200,conv2_1:200 (default: the recipe's).", **d)
    flags.DEFINE_string("normalization", "", "gatys, johnson or magenta (default: the "
                        "recipe's).", **d)
    flags.DEFINE_float("tv_weight", None, "Total variation weight (default: the recipe's).",
                       **d)
    flags.DEFINE_bool("preserve_colors", False, "Keep the content's colours.", **d)
    flags.DEFINE_string("optimizer", "lbfgs", "lbfgs (scipy L-BFGS-B, pixels in [0, 1]) or "
                        "adam.", **d)
    flags.DEFINE_float("learning_rate", 0.02, "Adam's step size.", **d)
    flags.DEFINE_integer("scales", 1, "Number of scales, coarse to fine, each twice the "
                         "size of the one before.", **d)
    flags.DEFINE_integer("iterations", 300, "Iterations per scale.", **d)
    flags.DEFINE_integer("save_every", 0, "Write the image every N iterations "
                         "(<output>_s<scale>_<iteration>.<ext>).", **d)
    flags.DEFINE_string("report", None, "Write a JSON report (settings, per-scale losses).",
                        **d)
    flags.DEFINE_integer("max_pixels", config_lib.DEFAULT_OPTIMIZE_MAX_PIXELS,
                         "Refuse inputs and outputs with more pixels than this.", **d)
    flags.DEFINE_bool("jit_compile", False, "Compile the loss and gradient with XLA.", **d)
    flags.DEFINE_string("style_loss", "gram", "gram (Gatys) or patch (Li and Wand / "
                        "Champandard's semantic patches).", **d)
    flags.DEFINE_string("style_semantic_map", None, "Patch loss: semantic map of the style.",
                        **d)
    flags.DEFINE_string("content_semantic_map", None, "Patch loss: semantic map of the "
                        "output; without --content_image it is a doodle.", **d)
    flags.DEFINE_float("semantic_weight", 50.0, "Patch loss: gamma, the weight of the maps.",
                       **d)
    flags.DEFINE_integer("patch_size", 3, "Patch loss: patch side k.", **d)


def _flag_values():
    fv = flags.FlagValues()  # Private: no global flags, no clash with other entry points.
    _define_flags(fv)
    return fv


def usage_text():
    return f"{__doc__}\nFlags:\n{_flag_values().get_help()}\n"


def parse_args(argv):
    """argv -> config.OptimizeConfig (validated; nothing is read). cli.UsageError if bad."""
    fv = cli.parse_flag_values(_flag_values(), argv, required=("output_image",))
    from magenta_style.optimization import optimize_lib  # pylint: disable=import-outside-toplevel
    try:
        mix = tuple(float(w) for w in fv.style_mix)
    except ValueError:
        raise cli.UsageError(f"--style_mix: not a list of numbers: {','.join(fv.style_mix)}") \
            from None
    if fv.vgg not in ("vgg_16", "vgg_19"):
        raise cli.UsageError(f"--vgg must be vgg_16 or vgg_19, got {fv.vgg!r}")
    weights = {}
    for name in ("content_weights", "style_weights"):
        if fv[name].value is None:
            weights[name] = None
            continue
        try:
            parsed = optimize_lib.qualify_layer_weights(fv[name].value, fv.vgg)
        except optimize_lib.OptimizeError as e:
            raise cli.UsageError(f"--{name}: {e}") from None
        weights[name] = tuple(parsed.items())
    try:
        return config_lib.OptimizeConfig(
            content_image=fv.content_image or "", style_images=tuple(fv.style_images),
            output_image=fv.output_image, style_mix=mix, image_size=fv.image_size,
            style_scale=fv.style_scale, init=fv.init, seed=fv.seed, recipe=fv.recipe,
            vgg=fv.vgg, vgg_checkpoint=fv.vgg_checkpoint or "", vgg_pooling=fv.vgg_pooling,
            normalization=fv.normalization, tv_weight=fv.tv_weight,
            preserve_colors=fv.preserve_colors, optimizer=fv.optimizer,
            learning_rate=fv.learning_rate, scales=fv.scales, iterations=fv.iterations,
            save_every=fv.save_every, report=fv.report or "", max_pixels=fv.max_pixels,
            jit_compile=fv.jit_compile, style_loss=fv.style_loss,
            style_semantic_map=fv.style_semantic_map or "",
            content_semantic_map=fv.content_semantic_map or "",
            semantic_weight=fv.semantic_weight, patch_size=fv.patch_size, **weights)
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


def run(cfg, stderr=None):
    """Runs the command for a parsed config; returns the exit status.

    Returns:
      0 done, 1 stopped by a non-finite loss (last good image written), 130
      interrupted (best image so far written).

    Raises:
      cli.UsageError: bad inputs (one line, exit status 2).
    """
    stderr = stderr or sys.stderr
    from magenta_style.media import images  # pylint: disable=import-outside-toplevel
    from magenta_style.networks import vgg_weights  # pylint: disable=import-outside-toplevel
    from magenta_style.optimization import optimize_lib  # pylint: disable=import-outside-toplevel
    if not cfg.output_image.lower().endswith(images.OUTPUT_SUFFIXES):
        raise cli.UsageError(f"--output_image={cfg.output_image}: use one of "
                             f"{', '.join(images.OUTPUT_SUFFIXES)}")
    if not cfg.vgg_checkpoint and not cfg.init.startswith(config_lib.NETWORK_INIT_PREFIX):
        raise cli.UsageError("--vgg_checkpoint is required (TF-slim vgg_16.ckpt, 'imagenet', "
                             "a Keras .h5, or standin:SEED for random test weights)")
    progress = IterationProgress(stderr)

    def snapshot(image, scale, iteration):
        images.save_image_atomic(snapshot_path(cfg.output_image, scale, iteration), image)

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
    try:
        images.save_image_atomic(cfg.output_image, result.image)
        if cfg.report:
            result.report["seconds"] = round(time.perf_counter() - began, 3)
            config_lib.write_json_atomic(cfg.report, result.report)
    except OSError as e:
        raise cli.UsageError(f"cannot write {e.filename or cfg.output_image}: "
                             f"{e.strerror or e}") from None
    final = result.report["scales"][-1]["end"]["total_loss"] if result.report["scales"] else None
    if result.stopped == "interrupted":
        stderr.write(f"\n{PROGRAM}: interrupted; wrote the best image so far to "
                     f"{cfg.output_image}\n")
        return 130
    if result.stopped:
        cli.print_error(PROGRAM, f"{result.stopped}; wrote the last good image to "
                        f"{cfg.output_image}")
        return 1
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
