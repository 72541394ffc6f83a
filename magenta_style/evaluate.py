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
import sys

from magenta_style import cli
from magenta_style import config as config_lib

PROGRAM = "magenta_style.evaluate"

@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluateArgs:
    """The parsed command line: what to evaluate and where to (the fields with defaults
    are flags), and how (`settings`, whose fields are flags with EvalConfig's defaults)."""

    checkpoint: str = None
    eval_dir: str = None
    content_images: str = None
    style_dataset_file: str = None
    vgg_checkpoint: str = None
    settings: config_lib.EvalConfig


def _define_flags(fv):
    cli.define_field_flags(fv, EvaluateArgs, {
        "checkpoint": "Training dir or checkpoint prefix.",
        "eval_dir": "Output dir (default <checkpoint dir>/eval).",
        "content_images": "Evaluation images: glob/folder/list.",
        "style_dataset_file": "Default: the training run's.",
        "vgg_checkpoint": "Default: the training run's.",
    })
    cli.define_field_flags(fv, config_lib.EvalConfig, {
        "image_size": "Evaluation crop size.",
        "num_evaluation_images": "At most this many images.",
        "batch_size": "Images per model call.",
        "style_grid": "Write a style grid PNG.",
        "style_crossover": "Add the stylized style images.",
        "eval_interval_secs": "> 0: keep evaluating new checkpoints of --checkpoint.",
        "eval_timeout_secs": "With --eval_interval_secs: stop after this long idle.",
        "optimum_iterations": "> 0: also the loss of the per-image optimum (this many "
                              "L-BFGS iterations from the network's output, on its training "
                              "loss) and the amortization gap.",
    })


def usage_text():
    return cli.usage_text(__doc__, _define_flags)


def parse_args(argv):
    """argv -> EvaluateArgs (validated; nothing is read). cli.UsageError if bad."""
    fv = cli.parse_flag_values(cli.new_flag_values(_define_flags), argv,
                               required=("checkpoint", "content_images"))
    fields = [field.name for field in dataclasses.fields(config_lib.EvalConfig)]
    try:
        settings = config_lib.EvalConfig(**{name: fv[name].value for name in fields})
    except config_lib.ConfigError as e:
        raise cli.UsageError(str(e)) from None
    base = fv.checkpoint if os.path.isdir(fv.checkpoint) else os.path.dirname(fv.checkpoint)
    return EvaluateArgs(
        checkpoint=fv.checkpoint, eval_dir=fv.eval_dir or os.path.join(base or ".", "eval"),
        content_images=fv.content_images, style_dataset_file=fv.style_dataset_file,
        vgg_checkpoint=fv.vgg_checkpoint, settings=settings)


def run(args):
    """Evaluates as parsed (once, or each new checkpoint); returns the exit status."""
    from magenta_style.training import evaluate_lib  # pylint: disable=import-outside-toplevel
    settings = args.settings

    def evaluate(checkpoint):
        return evaluate_lib.evaluate_checkpoint(
            checkpoint, args.eval_dir, args.content_images,
            style_dataset_file=args.style_dataset_file, vgg_checkpoint=args.vgg_checkpoint,
            image_size=settings.image_size, max_images=settings.num_evaluation_images,
            batch_size=settings.batch_size, grid=settings.style_grid,
            crossover=settings.style_crossover,
            optimum_iterations=settings.optimum_iterations)

    try:
        if settings.eval_interval_secs > 0:
            evaluated, failed = evaluate_lib.watch(args.checkpoint, settings.eval_interval_secs,
                                                   evaluate, settings.eval_timeout_secs)
            if failed and not evaluated:  # Nothing was written: not a success.
                cli.print_error(PROGRAM, f"every evaluation failed ({len(failed)} checkpoint(s)); "
                                f"the last, {failed[-1][0]}: {failed[-1][1]}")
                return 1
            if failed:
                sys.stderr.write(f"{PROGRAM}: evaluated {evaluated} checkpoint(s); {len(failed)} "
                                 "failed (see the warnings above)\n")
            return 0
        result = evaluate(args.checkpoint)
    except evaluate_lib.EvalError as e:
        raise cli.UsageError(str(e)) from None
    if result["losses"]:
        print(f"per-style losses, each the mean over the {len(result['images'])} evaluation "
              f"image(s) at {settings.image_size}x{settings.image_size} px (the trainer's "
              "logged losses average one batch of random styles at the crop size instead):")
    for entry in result["losses"]:
        print(f"style {entry['style']} ({entry['name']}): total_loss {entry['total_loss']:.4g} "
              f"content {entry['total_content_loss']:.4g} style {entry['total_style_loss']:.4g}"
              + (f" optimum {entry['optimum_total_loss']:.4g} (gap "
                 f"{entry['amortization_gap']:.3g}x)" if "optimum_total_loss" in entry else ""))
    print(f"written to {args.eval_dir}")
    return 0


def main(argv):
    """The command: argv (argv[0] the program name) -> exit status (2: usage error)."""
    return cli.run_command(argv, PROGRAM, parse_args, run, usage_text)


def run_main():
    """Console entry point."""
    cli.run_with_private_flags(main)


if __name__ == "__main__":
    run_main()
