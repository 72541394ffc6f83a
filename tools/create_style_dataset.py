"""Alias of `python -m magenta_style.create_style_dataset`, with the same flags (kept so
that existing scripts keep working):

    python tools/create_style_dataset.py --vgg_checkpoint=/path/vgg_16.ckpt \\
        --style_files='/path/styles/*.jpg' --output_file=/tmp/styles.tfrecord
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Before anything imports TensorFlow (cli.quiet_tf_logging: its start-up lines, cuInit).
from magenta_style import cli  # noqa: E402  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

from magenta_style import create_style_dataset  # noqa: E402  # command

if __name__ == "__main__":
    create_style_dataset.run_main(program="create_style_dataset")
