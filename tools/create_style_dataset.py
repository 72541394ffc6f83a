"""Alias of `python -m magenta_style.create_style_dataset`, with the same flags (kept so
that existing scripts keep working):

    python tools/create_style_dataset.py --vgg_checkpoint=/path/vgg_16.ckpt \\
        --style_files='/path/styles/*.jpg' --output_file=/tmp/styles.tfrecord
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from magenta_style import create_style_dataset  # noqa: E402  # command

if __name__ == "__main__":
    create_style_dataset.run_main(program="create_style_dataset")
