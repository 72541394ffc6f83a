"""Writes a magenta_style model as a Magenta TF1 checkpoint (the reverse of
convert_magenta_checkpoint).

    python -m magenta_style.export_magenta_checkpoint --checkpoint=train_dir \\
        --output=models/mine.ckpt

Reads anything `--checkpoint` accepts elsewhere (a training directory, a native
checkpoint prefix) and writes `output.index` and `output.data-00000-of-00001` with
Magenta's variable names (`transformer/contract/conv1/weights`, ...) and a
`global_step`, so Magenta's `image_stylization_transform` and other TF1 scripts
load it with `--num_styles` and `--alpha` as printed here. A checkpoint of Magenta's
arbitrary-style model is written in that model's layout (`InceptionV3/...`, `Conv/...`,
`style_params/...`, `transformer/...`), which Magenta's arbitrary_image_stylization
scripts read. `tools/export_magenta_checkpoint.py` is an alias with the same flags.
"""
# Before anything imports TensorFlow, which reads its C++ log level once: no
# "failed call to cuInit" line on machines without a GPU (cli.quiet_tf_logging).
from magenta_style import cli  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

import dataclasses
import os

from magenta_style import config as config_lib

PROGRAM = "export_magenta_checkpoint"


def _define_flags(fv):
    """Defines the command's flags in `fv` (defaults: config.ExportMagentaConfig)."""
    cli.define_field_flags(fv, config_lib.ExportMagentaConfig, {
        "checkpoint": "Training directory or native checkpoint prefix.",
        "output": "Prefix of the Magenta checkpoint to write.",
    })


def usage_text():
    return cli.usage_text(__doc__, _define_flags)


def parse_args(argv):
    """argv -> config.ExportMagentaConfig. cli.UsageError if bad."""
    fv = cli.parse_flag_values(cli.new_flag_values(_define_flags), argv,
                               required=("checkpoint", "output"))
    return config_lib.ExportMagentaConfig(checkpoint=fv.checkpoint, output=fv.output)


def run(cfg):
    """Writes the Magenta checkpoint; returns 0. cli.UsageError (one line) if it cannot."""
    # Imported late: TensorFlow starts in seconds and flag errors should not wait for it.
    # pylint: disable=import-outside-toplevel
    from magenta_style.networks import arbitrary_checkpoints
    from magenta_style.networks import checkpoints

    output = cfg.output
    if os.path.exists(output + ".index"):
        raise cli.UsageError(f"--output={output} already exists ({output}.index); choose "
                             "another --output")
    try:
        arbitrary = arbitrary_checkpoints.is_arbitrary_checkpoint(cfg.checkpoint)
        kind = arbitrary_checkpoints if arbitrary else checkpoints
        model, model_config = kind.load_model(cfg.checkpoint)
        step = 0
        prefix, _ = checkpoints.resolve_checkpoint(cfg.checkpoint)
        if prefix.rsplit("-", 1)[-1].isdigit():
            step = int(prefix.rsplit("-", 1)[-1])
        kind.save_magenta_checkpoint(model, output, global_step=step)
    except (checkpoints.CheckpointError, config_lib.ConfigError) as e:
        raise cli.UsageError(str(e)) from None
    except OSError as e:
        raise cli.UsageError(f"cannot write --output={output}: {e.strerror}") from None
    what = ("arbitrary-style model" if arbitrary else f"num_styles={model_config.num_styles}")
    print(f"wrote Magenta checkpoint {output} ({what} alpha={model_config.alpha} "
          f"global_step={step})")
    return 0


def main(argv):
    """The command: argv (argv[0] the program name) -> exit status (2: usage error)."""
    return cli.run_command(argv, PROGRAM, parse_args, run, usage_text)


def run_main():
    """Console entry point."""
    cli.run_with_private_flags(main)


if __name__ == "__main__":
    run_main()
