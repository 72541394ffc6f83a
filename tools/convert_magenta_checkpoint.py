"""Alias of `python -m magenta_style.convert_magenta_checkpoint`, with the same flags (kept so
that existing scripts keep working):

    python tools/convert_magenta_checkpoint.py \\
        --magenta_checkpoint=multistyle-pastiche-generator-monet.ckpt \\
        --output_dir=models/monet [--style_names=a,b,...]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Before anything imports TensorFlow (cli.quiet_tf_logging: its start-up lines, cuInit).
from magenta_style import cli  # noqa: E402  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

from magenta_style import convert_magenta_checkpoint  # noqa: E402  # command

if __name__ == "__main__":
    convert_magenta_checkpoint.run_main()
