"""Evaluates a trained model (Magenta's image_stylization_evaluate).

    python -m magenta_style.evaluate --checkpoint=/tmp/quickstart/train \
        --content_images='/photos/*.jpg' --style_grid --style_crossover

Per-style losses go to <eval_dir>/losses_<step>.json and TensorBoard; --style_grid
writes <eval_dir>/style_grid_<step>.png. Evaluating a step again writes
losses_<step>_2.json / style_grid_<step>_2.png (and so on) instead of overwriting. The style dataset, VGG weights and loss
weights default to the training run's (its config.json).
"""
import os

from absl import flags

from magenta_style import cli
from magenta_style import config as config_lib

_CKPT = flags.DEFINE_string("checkpoint", None, "Training dir or checkpoint prefix.")
_EVAL_DIR = flags.DEFINE_string("eval_dir", None, "Output dir (default <checkpoint dir>/eval).")
_CONTENT = flags.DEFINE_string("content_images", None, "Evaluation images: glob/folder/list.")
_STYLES = flags.DEFINE_string("style_dataset_file", None, "Default: the training run's.")
_VGG = flags.DEFINE_string("vgg_checkpoint", None, "Default: the training run's.")
_SIZE = flags.DEFINE_integer("image_size", 256, "Evaluation crop size.")
_MAX = flags.DEFINE_integer("num_evaluation_images", 16, "At most this many images.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Images per model call.")
_GRID = flags.DEFINE_boolean("style_grid", False, "Write a style grid PNG.")
_CROSS = flags.DEFINE_boolean("style_crossover", False, "Add the stylized style images.")
_INTERVAL = flags.DEFINE_integer("eval_interval_secs", 0,
                                 "> 0: keep evaluating new checkpoints of --checkpoint.")
_TIMEOUT = flags.DEFINE_integer("eval_timeout_secs", None,
                                "With --eval_interval_secs: stop after this long idle.")
_OPTIMUM = flags.DEFINE_integer("optimum_iterations", 0,
                                "> 0: also the loss of the per-image optimum (this many "
                                "L-BFGS iterations from the network's output, on its "
                                "training loss) and the amortization gap.")

PROG = "magenta_style.evaluate"


def main(argv):
    if len(argv) > 1:
        cli.fail(PROG, f"unexpected arguments: {' '.join(argv[1:])}")
    for holder in (_CKPT, _CONTENT):
        if not holder.value:
            cli.fail(PROG, f"--{holder.name} is required")
    for holder in (_SIZE, _MAX, _BATCH):
        if holder.value < 1:
            cli.fail(PROG, f"--{holder.name} must be >= 1, got {holder.value}")
    if not config_lib.MIN_IMAGE_SIZE <= _SIZE.value <= config_lib.MAX_IMAGE_SIZE:
        cli.fail(PROG, f"--image_size={_SIZE.value} must be in [{config_lib.MIN_IMAGE_SIZE}, "
                 f"{config_lib.MAX_IMAGE_SIZE}] (VGG-16 needs {config_lib.MIN_IMAGE_SIZE} px)")
    if _OPTIMUM.value < 0:
        cli.fail(PROG, f"--optimum_iterations must be >= 0, got {_OPTIMUM.value}")
    from magenta_style import evaluate_lib  # pylint: disable=import-outside-toplevel
    base = _CKPT.value if os.path.isdir(_CKPT.value) else os.path.dirname(_CKPT.value)
    eval_dir = _EVAL_DIR.value or os.path.join(base or ".", "eval")

    def evaluate(checkpoint):
        return evaluate_lib.evaluate_checkpoint(
            checkpoint, eval_dir, _CONTENT.value, style_dataset_file=_STYLES.value,
            vgg_checkpoint=_VGG.value, image_size=_SIZE.value, max_images=_MAX.value,
            batch_size=_BATCH.value, grid=_GRID.value, crossover=_CROSS.value,
            optimum_iterations=_OPTIMUM.value)

    try:
        if _INTERVAL.value > 0:
            evaluate_lib.watch(_CKPT.value, _INTERVAL.value, evaluate, _TIMEOUT.value)
            return
        result = evaluate(_CKPT.value)
    except evaluate_lib.EvalError as e:
        cli.fail(PROG, str(e))
    for entry in result["losses"]:
        print(f"style {entry['style']} ({entry['name']}): total_loss {entry['total_loss']:.4g} "
              f"content {entry['total_content_loss']:.4g} style {entry['total_style_loss']:.4g}"
              + (f" optimum {entry['optimum_total_loss']:.4g} (gap "
                 f"{entry['amortization_gap']:.3g}x)" if "optimum_total_loss" in entry else ""))
    print(f"written to {eval_dir}")


def run_main():
    """Console entry point."""
    cli.run_with_global_flags(main, PROG)


if __name__ == "__main__":
    run_main()
