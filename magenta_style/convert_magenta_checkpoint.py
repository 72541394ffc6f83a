"""Converts a Magenta TF1 stylization checkpoint into a native magenta_style checkpoint.

    python -m magenta_style.convert_magenta_checkpoint \\
        --magenta_checkpoint=multistyle-pastiche-generator-monet.ckpt \\
        --output_dir=models/monet [--style_names=a,b,...]

Writes `output_dir/ckpt-0.*`, `output_dir/checkpoint` and `output_dir/config.json`
(num_styles and alpha inferred from the checkpoint's shapes), which every other
command reads: `--checkpoint=models/monet`. Prints what was loaded, what was
ignored (global_step, optimizer slots, vgg_16/*) and anything not mapped.
`tools/convert_magenta_checkpoint.py` is an alias with the same flags.
"""
# Before anything imports TensorFlow, which reads its C++ log level once: no
# "failed call to cuInit" line on machines without a GPU (cli.quiet_tf_logging).
from magenta_style import cli  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

import dataclasses
import os

from magenta_style import config as config_lib

PROGRAM = "convert_magenta_checkpoint"


def _define_flags(fv):
    """Defines the command's flags in `fv` (defaults: config.ConvertMagentaConfig)."""
    cli.define_field_flags(fv, config_lib.ConvertMagentaConfig, {
        "magenta_checkpoint": "Magenta TF1 checkpoint prefix (V1 or V2 format).",
        "output_dir": "Directory for the native checkpoint.",
        "style_names": "Optional name per style, in order.",
        "num_styles": "Optional check of the style count.",
        "alpha": "Optional check of the width multiplier.",
    })


def usage_text():
    return cli.usage_text(__doc__, _define_flags)


def parse_args(argv):
    """argv -> config.ConvertMagentaConfig (checked; nothing is read). cli.UsageError if bad."""
    fv = cli.parse_flag_values(cli.new_flag_values(_define_flags), argv,
                               required=("magenta_checkpoint", "output_dir"))
    values = fv.flag_values_dict()
    values["style_names"] = tuple(values["style_names"] or ())
    names = values["style_names"]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:  # Styles are looked up by name (--which_styles=monet): names must differ.
        raise cli.UsageError(f"--style_names repeats {', '.join(repeated)}; give each style "
                             "its own name")
    return config_lib.ConvertMagentaConfig(
        **{field.name: values[field.name]
           for field in dataclasses.fields(config_lib.ConvertMagentaConfig)})


def run(cfg):
    """Converts and writes the checkpoint; returns 0. cli.UsageError (one line) if not."""
    # Imported late: TensorFlow starts in seconds and flag errors should not wait for it.
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from magenta_style.media import fileio  # pylint: disable=import-outside-toplevel
    from magenta_style.networks import checkpoints  # pylint: disable=import-outside-toplevel
    from magenta_style.networks import transformer  # pylint: disable=import-outside-toplevel

    output_dir = cfg.output_dir
    if os.path.exists(os.path.join(output_dir, config_lib.CONFIG_FILENAME)):
        raise cli.UsageError(f"--output_dir={output_dir} already holds a converted model "
                             "(choose another --output_dir)")
    try:
        prefix, _ = checkpoints.resolve_checkpoint(cfg.magenta_checkpoint)
        if not checkpoints.is_magenta_checkpoint(prefix):
            raise checkpoints.CheckpointError(f"{prefix!r} is not a Magenta stylization checkpoint")
        model_config = checkpoints.infer_magenta_config(prefix)
        if cfg.style_names:
            model_config = config_lib.ModelConfig(model_config.num_styles, model_config.alpha,
                                                  cfg.style_names)
        checkpoints.check_agrees(model_config, cfg.num_styles, cfg.alpha, prefix)
        model = transformer.build_transformer(model_config)
        report = checkpoints.load_magenta_weights(model, prefix)
    except (checkpoints.CheckpointError, config_lib.ConfigError) as e:
        raise cli.UsageError(str(e)) from None
    try:
        # Only now, so that a bad --magenta_checkpoint creates no directory.
        fileio.ensure_writable_dir(output_dir)
    except OSError as e:
        raise cli.UsageError(f"--output_dir={output_dir}: cannot be created or written "
                             f"({e.strerror or e})") from None
    try:
        saved = checkpoints.save_model(model, model_config, output_dir)
    except (OSError, tf.errors.OpError) as e:
        raise cli.UsageError(
            f"--output_dir={output_dir}: cannot be written "
            f"({getattr(e, 'strerror', None) or getattr(e, 'message', None) or e})") from None
    print(f"num_styles={model_config.num_styles} alpha={model_config.alpha}")
    print(report.summary())
    print(f"wrote {saved} and {os.path.join(output_dir, config_lib.CONFIG_FILENAME)}")
    return 0


def main(argv):
    """The command: argv (argv[0] the program name) -> exit status (2: usage error)."""
    return cli.run_command(argv, PROGRAM, parse_args, run, usage_text)


def run_main():
    """Console entry point."""
    cli.run_with_private_flags(main)


if __name__ == "__main__":
    run_main()
