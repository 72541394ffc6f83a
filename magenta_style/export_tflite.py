"""Convert an export (see magenta_style.export) to a TensorFlow Lite model.

    python -m magenta_style.export_tflite --saved_model=exports/magenta_style/1 \\
        --output=magenta_style.tflite [--quantize=float16] [--input_size=384x384]

`--quantize`: float32 (default), float16 (weights stored as float16, half the size)
or int8 (dynamic range: int8 weights, float activations). `--input_size=HxW` fixes
the image size (and the batch to `--batch_size`, default 1), which mobile GPU
delegates prefer; without it, batch, height and width stay dynamic.

`--signature`: serving_default (image, style_weights), stylize_advanced (+ strength,
preserve_colors) or stylize_map (image, style_map, strength); for an export of
Magenta's arbitrary-style model, predict_style or transfer (it converts as two
models). The converted model, its input checks and `checked_runner`:
magenta_style/serving/tflite.py. `tools/export_tflite.py` is an alias with the same
flags.
"""
# Before anything imports TensorFlow, which reads its C++ log level once: no
# "failed call to cuInit" line on machines without a GPU (cli.quiet_tf_logging).
from magenta_style import cli  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

import dataclasses
import sys

from magenta_style import config as config_lib

PROGRAM = "export_tflite"


def _define_flags(fv):
    """Defines the command's flags in the FlagValues `fv` (defaults: config.TFLiteConfig)."""
    cli.define_field_flags(fv, config_lib.TFLiteConfig, {
        "saved_model": "Export version directory, or the export base (its largest version "
                       "is used).",
        "output": "The .tflite file to write.",
        "quantize": "Weight precision.",
        "input_size": "HxW, e.g. 384x384, for a fixed-size model; default: dynamic size.",
        "batch_size": "Fixed batch size; default 1 with --input_size, dynamic otherwise.",
        "signature": "Which signature to convert (predict_style / transfer: arbitrary-style "
                     "exports).",
    }, choices={"quantize": config_lib.TFLITE_QUANTIZE,
                "signature": (config_lib.TFLITE_SIGNATURES
                              + config_lib.TFLITE_ARBITRARY_SIGNATURES)},
        bounds={"batch_size": (1, None)})


def usage_text():
    return cli.usage_text(__doc__, _define_flags)


def parse_args(argv):
    """argv -> config.TFLiteConfig (validated; nothing is read). cli.UsageError if bad."""
    fv = cli.parse_flag_values(cli.new_flag_values(_define_flags), argv,
                               required=("saved_model", "output"))
    values = fv.flag_values_dict()
    return config_lib.TFLiteConfig(**{field.name: values[field.name]
                                      for field in dataclasses.fields(config_lib.TFLiteConfig)})


def run(cfg):
    """Converts and writes the model; returns 0. cli.UsageError (one line) if it cannot."""
    # Imported late: TensorFlow starts in seconds and flag errors should not wait for it.
    from magenta_style.media import fileio  # pylint: disable=import-outside-toplevel
    from magenta_style.serving import tflite  # pylint: disable=import-outside-toplevel
    try:
        size = tflite.parse_size(cfg.input_size) if cfg.input_size else None
        data = tflite.convert(cfg.saved_model, cfg.signature, cfg.quantize, size,
                              cfg.batch_size)
        fileio.write_bytes_atomic(cfg.output, data)
    except tflite.TFLiteError as e:
        raise cli.UsageError(str(e)) from None
    except OSError as e:
        raise cli.UsageError(f"--output={cfg.output}: {e.strerror or e}") from None
    shape = "dynamic size" if size is None else f"{size[0]}x{size[1]}"
    sys.stderr.write(f"{PROGRAM}: wrote {cfg.output} ({len(data) / 1e6:.2f} MB, "
                     f"{cfg.signature}, {cfg.quantize}, {shape})\n")
    return 0


def main(argv):
    """The command: argv (argv[0] the program name) -> exit status (2: usage error)."""
    return cli.run_command(argv, PROGRAM, parse_args, run, usage_text)


def run_main():
    """Console entry point."""
    cli.run_with_private_flags(main)


if __name__ == "__main__":
    run_main()
