"""Alias of `python -m magenta_style.export_tflite`, with the same flags (kept so that
existing scripts keep working):

    python tools/export_tflite.py --saved_model=exports/magenta_style/1 \\
        --output=magenta_style.tflite [--quantize=float16] [--input_size=384x384]

Code that imported this file finds the converter's API here as before (`convert`,
`checked_runner`, `check_inputs`, `parse_size`, ...: magenta_style/serving/tflite.py).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Before anything imports TensorFlow (cli.quiet_tf_logging: its start-up lines, cuInit).
from magenta_style import cli  # noqa: E402  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

from magenta_style import export_tflite  # noqa: E402  # command
from magenta_style.serving.tflite import *  # noqa: E402,F401,F403  # The old API.
from magenta_style.serving import tflite  # noqa: E402

# The name this script's error class had; callers catch it.
UsageError = tflite.TFLiteError

if __name__ == "__main__":
    export_tflite.run_main()
