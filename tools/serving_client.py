"""Alias of `python -m magenta_style.serving_client`, with the same flags (kept so that
existing scripts keep working):

    python tools/serving_client.py --image=photo.jpg --style_weights=0,1,0 \\
        --output=stylized.png [--server=http://localhost:8501] [--model=magenta_style]

Code that imported this file finds the client's API here as before (`stylize_remote`,
`ClientError`, `predict_rest`, ...: magenta_style/serving/predict_client.py).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Before anything imports TensorFlow (cli.quiet_tf_logging: its start-up lines, cuInit).
from magenta_style import cli  # noqa: E402  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

from magenta_style import serving_client  # noqa: E402  # command
from magenta_style.serving.predict_client import *  # noqa: E402,F401,F403  # The old API.

if __name__ == "__main__":
    serving_client.run_main()
