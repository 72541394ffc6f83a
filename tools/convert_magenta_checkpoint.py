"""Converts a Magenta TF1 stylization checkpoint into a native magenta_style checkpoint.

    python tools/convert_magenta_checkpoint.py \
        --magenta_checkpoint=multistyle-pastiche-generator-monet.ckpt \
        --output_dir=models/monet [--style_names=a,b,...]

Writes `output_dir/ckpt-0.*`, `output_dir/checkpoint` and `output_dir/config.json`
(num_styles and alpha inferred from the checkpoint's shapes), which every other
command reads: `--checkpoint=models/monet`. Prints what was loaded, what was
ignored (global_step, optimizer slots, vgg_16/*) and anything not mapped.
"""
import os
import sys

# Before anything imports TensorFlow (cli.quiet_tf_logging: its start-up lines, cuInit).
from magenta_style import cli  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

from absl import flags  # noqa: E402
import tensorflow as tf  # noqa: E402

from magenta_style import config as config_lib
from magenta_style.media import fileio
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer

PROGRAM = "convert_magenta_checkpoint"

_MAGENTA_CHECKPOINT = flags.DEFINE_string(
    "magenta_checkpoint", None, "Magenta TF1 checkpoint prefix (V1 or V2 format).", required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Directory for the native checkpoint.",
                                  required=True)
_STYLE_NAMES = flags.DEFINE_list("style_names", [], "Optional name per style, in order.")
_NUM_STYLES = flags.DEFINE_integer("num_styles", None, "Optional check of the style count.")
_ALPHA = flags.DEFINE_float("alpha", None, "Optional check of the width multiplier.")


def main(argv):
    del argv
    output_dir = _OUTPUT_DIR.value
    names = _STYLE_NAMES.value
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:  # Styles are looked up by name (--which_styles=monet): names must differ.
        print(f"{PROGRAM}: error: --style_names repeats {', '.join(repeated)}; give each "
              "style its own name", file=sys.stderr)
        return 2
    if os.path.exists(os.path.join(output_dir, config_lib.CONFIG_FILENAME)):
        print(f"{PROGRAM}: error: --output_dir={output_dir} already holds a converted model "
              "(choose another --output_dir)", file=sys.stderr)
        return 2
    try:
        prefix, _ = checkpoints.resolve_checkpoint(_MAGENTA_CHECKPOINT.value)
        if not checkpoints.is_magenta_checkpoint(prefix):
            raise checkpoints.CheckpointError(f"{prefix!r} is not a Magenta stylization checkpoint")
        model_config = checkpoints.infer_magenta_config(prefix)
        if _STYLE_NAMES.value:
            model_config = config_lib.ModelConfig(model_config.num_styles, model_config.alpha,
                                                  tuple(_STYLE_NAMES.value))
        checkpoints.check_agrees(model_config, _NUM_STYLES.value, _ALPHA.value, prefix)
        model = transformer.build_transformer(model_config)
        report = checkpoints.load_magenta_weights(model, prefix)
    except (checkpoints.CheckpointError, config_lib.ConfigError) as e:
        print(f"{PROGRAM}: error: {e}", file=sys.stderr)
        return 2
    try:
        # Only now, so that a bad --magenta_checkpoint creates no directory.
        fileio.ensure_writable_dir(output_dir)
    except OSError as e:
        print(f"{PROGRAM}: error: --output_dir={output_dir}: cannot be created or written "
              f"({e.strerror or e})", file=sys.stderr)
        return 2
    try:
        saved = checkpoints.save_model(model, model_config, output_dir)
    except (OSError, tf.errors.OpError) as e:
        print(f"{PROGRAM}: error: --output_dir={output_dir}: cannot be written "
              f"({getattr(e, 'strerror', None) or getattr(e, 'message', None) or e})",
              file=sys.stderr)
        return 2
    print(f"num_styles={model_config.num_styles} alpha={model_config.alpha}")
    print(report.summary())
    print(f"wrote {saved} and {os.path.join(output_dir, config_lib.CONFIG_FILENAME)}")
    return 0


if __name__ == "__main__":
    cli.run_with_global_flags(main, PROGRAM)
