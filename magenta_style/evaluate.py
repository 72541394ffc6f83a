"""Evaluates a trained model (Magenta's image_stylization_evaluate).

    python -m magenta_style.evaluate --checkpoint=/tmp/quickstart/train \\
        --content_images='/photos/*.jpg' --style_grid --style_crossover

Per-style losses go to <eval_dir>/losses_<step>.json and TensorBoard; --style_grid
writes <eval_dir>/style_grid_<step>.png. Evaluating a step again writes
losses_<step>_2.json / style_grid_<step>_2.png (and so on) instead of overwriting. The style dataset, VGG weights and loss
weights default to the training run's (its config.json).
"""
import dataclasses
import os

from absl import flags

from magenta_style import cli
from magenta_style import config as config_lib

PROG = "magenta_style.evaluate"

_EVAL = config_lib.EvalConfig()  # Every default is EvalConfig's (config.py).


def _flag_values():
    fv = flags.FlagValues()  # Private: importing this module defines no global flags.
    d = dict(flag_values=fv)
    flags.DEFINE_string("checkpoint", None, "Training dir or checkpoint prefix.", **d)
    flags.DEFINE_string("eval_dir", None, "Output dir (default <checkpoint dir>/eval).", **d)
    flags.DEFINE_string("content_images", None, "Evaluation images: glob/folder/list.", **d)
    flags.DEFINE_string("style_dataset_file", None, "Default: the training run's.", **d)
    flags.DEFINE_string("vgg_checkpoint", None, "Default: the training run's.", **d)
    flags.DEFINE_integer("image_size", _EVAL.image_size, "Evaluation crop size.", **d)
    flags.DEFINE_integer("num_evaluation_images", _EVAL.max_images,
                         "At most this many images.", **d)
    flags.DEFINE_integer("batch_size", _EVAL.batch_size, "Images per model call.", **d)
    flags.DEFINE_boolean("style_grid", _EVAL.grid, "Write a style grid PNG.", **d)
    flags.DEFINE_boolean("style_crossover", _EVAL.crossover, "Add the stylized style images.",
                         **d)
    flags.DEFINE_integer("eval_interval_secs", _EVAL.eval_interval_secs,
                         "> 0: keep evaluating new checkpoints of --checkpoint.", **d)
    flags.DEFINE_integer("eval_timeout_secs", _EVAL.eval_timeout_secs,
                         "With --eval_interval_secs: stop after this long idle.", **d)
    flags.DEFINE_integer("optimum_iterations", _EVAL.optimum_iterations,
                         "> 0: also the loss of the per-image optimum (this many L-BFGS "
                         "iterations from the network's output, on its training loss) and "
                         "the amortization gap.", **d)
    return fv


def usage_text():
    return f"{__doc__}\nFlags:\n{_flag_values().get_help()}\n"


@dataclasses.dataclass(frozen=True)
class EvaluateArgs:
    """The parsed command line: what to evaluate, where to, and how (config.EvalConfig)."""

    checkpoint: str
    eval_dir: str
    content_images: str
    style_dataset_file: object
    vgg_checkpoint: object
    settings: config_lib.EvalConfig


def parse_args(argv):
    """argv -> EvaluateArgs (validated; nothing is read). cli.UsageError if bad."""
    fv = cli.parse_flag_values(_flag_values(), argv, required=("checkpoint", "content_images"))
    for name in ("image_size", "num_evaluation_images", "batch_size"):
        if fv[name].value < 1:
            raise cli.UsageError(f"--{name} must be >= 1, got {fv[name].value}")
    if not config_lib.MIN_IMAGE_SIZE <= fv.image_size <= config_lib.MAX_IMAGE_SIZE:
        raise cli.UsageError(
            f"--image_size={fv.image_size} must be in [{config_lib.MIN_IMAGE_SIZE}, "
            f"{config_lib.MAX_IMAGE_SIZE}] (VGG-16 needs {config_lib.MIN_IMAGE_SIZE} px)")
    if fv.optimum_iterations < 0:
        raise cli.UsageError(f"--optimum_iterations must be >= 0, got {fv.optimum_iterations}")
    base = fv.checkpoint if os.path.isdir(fv.checkpoint) else os.path.dirname(fv.checkpoint)
    return EvaluateArgs(
        checkpoint=fv.checkpoint, eval_dir=fv.eval_dir or os.path.join(base or ".", "eval"),
        content_images=fv.content_images, style_dataset_file=fv.style_dataset_file,
        vgg_checkpoint=fv.vgg_checkpoint, settings=config_lib.EvalConfig(
            image_size=fv.image_size, max_images=fv.num_evaluation_images,
            batch_size=fv.batch_size, grid=fv.style_grid, crossover=fv.style_crossover,
            optimum_iterations=fv.optimum_iterations,
            eval_interval_secs=fv.eval_interval_secs, eval_timeout_secs=fv.eval_timeout_secs))


def run(args):
    """Evaluates as parsed (once, or each new checkpoint); returns the exit status."""
    from magenta_style.training import evaluate_lib  # pylint: disable=import-outside-toplevel
    settings = args.settings

    def evaluate(checkpoint):
        return evaluate_lib.evaluate_checkpoint(
            checkpoint, args.eval_dir, args.content_images,
            style_dataset_file=args.style_dataset_file, vgg_checkpoint=args.vgg_checkpoint,
            image_size=settings.image_size, max_images=settings.max_images,
            batch_size=settings.batch_size, grid=settings.grid, crossover=settings.crossover,
            optimum_iterations=settings.optimum_iterations)

    try:
        if settings.eval_interval_secs > 0:
            evaluate_lib.watch(args.checkpoint, settings.eval_interval_secs, evaluate,
                               settings.eval_timeout_secs)
            return 0
        result = evaluate(args.checkpoint)
    except evaluate_lib.EvalError as e:
        raise cli.UsageError(str(e)) from None
    for entry in result["losses"]:
        print(f"style {entry['style']} ({entry['name']}): total_loss {entry['total_loss']:.4g} "
              f"content {entry['total_content_loss']:.4g} style {entry['total_style_loss']:.4g}"
              + (f" optimum {entry['optimum_total_loss']:.4g} (gap "
                 f"{entry['amortization_gap']:.3g}x)" if "optimum_total_loss" in entry else ""))
    print(f"written to {args.eval_dir}")
    return 0


def main(argv):
    """The command: argv (argv[0] the program name) -> exit status (2: usage error)."""
    return cli.run_command(argv, PROG, parse_args, run, usage_text)


def run_main():
    """Console entry point."""
    cli.quiet_tf_logging()
    cli.run_with_private_flags(main)


if __name__ == "__main__":
    run_main()
