"""Writes a magenta_style model as a Magenta TF1 checkpoint (the reverse of the converter).

    python tools/export_magenta_checkpoint.py --checkpoint=train_dir \
        --output=models/mine.ckpt

Reads anything `--checkpoint` accepts elsewhere (a training directory, a native
checkpoint prefix) and writes `output.index` and `output.data-00000-of-00001` with
Magenta's variable names (`transformer/contract/conv1/weights`, ...) and a
`global_step`, so Magenta's `image_stylization_transform` and other TF1 scripts
load it with `--num_styles` and `--alpha` as printed here. A checkpoint of Magenta's
arbitrary-style model is written in that model's layout (`InceptionV3/...`, `Conv/...`,
`style_params/...`, `transformer/...`), which Magenta's arbitrary_image_stylization
scripts read.
"""
import os
import sys

# Before anything imports TensorFlow (cli.quiet_tf_logging: its start-up lines, cuInit).
from magenta_style import cli  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

from absl import flags  # noqa: E402

from magenta_style import config as config_lib  # noqa: E402
from magenta_style.networks import arbitrary_checkpoints  # noqa: E402
from magenta_style.networks import checkpoints  # noqa: E402

PROGRAM = "export_magenta_checkpoint"

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Training directory or native checkpoint prefix.", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Prefix of the Magenta checkpoint to write.",
                              required=True)


def main(argv):
    del argv
    output = _OUTPUT.value
    if os.path.exists(output + ".index"):
        print(f"{PROGRAM}: error: --output={output} already exists ({output}.index); choose "
              "another --output", file=sys.stderr)
        return 2
    try:
        arbitrary = arbitrary_checkpoints.is_arbitrary_checkpoint(_CHECKPOINT.value)
        kind = arbitrary_checkpoints if arbitrary else checkpoints
        model, model_config = kind.load_model(_CHECKPOINT.value)
        step = 0
        prefix, _ = checkpoints.resolve_checkpoint(_CHECKPOINT.value)
        if prefix.rsplit("-", 1)[-1].isdigit():
            step = int(prefix.rsplit("-", 1)[-1])
        kind.save_magenta_checkpoint(model, output, global_step=step)
    except (checkpoints.CheckpointError, config_lib.ConfigError) as e:
        print(f"{PROGRAM}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{PROGRAM}: error: cannot write --output={output}: {e.strerror}", file=sys.stderr)
        return 2
    what = ("arbitrary-style model" if arbitrary else f"num_styles={model_config.num_styles}")
    print(f"wrote Magenta checkpoint {output} ({what} alpha={model_config.alpha} "
          f"global_step={step})")
    return 0


if __name__ == "__main__":
    cli.run_with_global_flags(main, PROGRAM)
