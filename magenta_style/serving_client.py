"""Stylize an image with a model served by TF Serving, and write the PNG.

    python -m magenta_style.serving_client --image=photo.jpg --style_weights=0,1,0 \\
        --output=stylized.png [--server=http://localhost:8501] [--model=magenta_style]

    # Half strength, keeping the photo's colours, over gRPC:
    python -m magenta_style.serving_client --image=photo.jpg --style_weights=0.5,0.5,0 \\
        --strength=0.5 --preserve_colors --protocol=grpc --server=localhost:8500 \\
        --output=stylized.png

`--style_weights` lists one weight per style of the model (as many as it has; the
server names the expected count if it differs). The image is read with its EXIF
orientation applied, sent as PNG bytes and returned as PNG bytes (signatures
`serving_bytes`, or `stylize_bytes_advanced` when --strength or --preserve_colors
is given), so requests stay small: REST base64-encodes them in JSON. REST needs only
the standard library and Pillow; gRPC needs the optional `tensorflow-serving-api`
package (and TensorFlow, which it depends on). The client:
magenta_style/serving/predict_client.py. `tools/serving_client.py` is an alias with the
same flags.
"""
# Before anything imports TensorFlow (gRPC does), which reads its C++ log level once
# (cli.quiet_tf_logging).
from magenta_style import cli  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

import dataclasses
import sys

from magenta_style import config as config_lib
from magenta_style.serving import predict_client

PROGRAM = "serving_client"


def _define_flags(fv):
    """Defines the command's flags in `fv` (defaults: config.ServingClientConfig)."""
    cli.define_field_flags(fv, config_lib.ServingClientConfig, {
        "image": "The image to stylize (JPEG, PNG, ...).",
        "style_weights": "Comma-separated weight per style, e.g. 0,1,0 (style 1) or "
                         "0.3,0,0.7 (a mix).",
        "output": "Where to write the stylized PNG.",
        "strength": "Style strength in [0, 1] (default: full).",
        "preserve_colors": "Keep the image's colours.",
        "protocol": "REST (JSON) or gRPC.",
        "server": f"REST: base URL (default {predict_client.DEFAULT_REST_SERVER}); gRPC: "
                  f"host:port (default {predict_client.DEFAULT_GRPC_SERVER}).",
        "model": "The served model's name.",
        "model_version": "A specific version (default: the latest).",
        "timeout": "Seconds to wait for the answer.",
        "max_message_mb": "Largest answer read, MiB (REST and gRPC; gRPC's default of 4 MiB "
                          "is too small for large images).",
    }, choices={"protocol": ("rest", "grpc")},
        bounds={"model_version": (1, None), "timeout": (0.1, None),
                "max_message_mb": (1, None)})


def usage_text():
    return cli.usage_text(__doc__, _define_flags)


def parse_args(argv):
    """argv -> config.ServingClientConfig (checked; nothing is read). cli.UsageError if bad."""
    fv = cli.parse_flag_values(cli.new_flag_values(_define_flags), argv,
                               required=("image", "style_weights", "output"))
    values = fv.flag_values_dict()
    return config_lib.ServingClientConfig(
        **{field.name: values[field.name]
           for field in dataclasses.fields(config_lib.ServingClientConfig)})


def run(cfg):
    """Sends the request and writes the answer; returns 0. cli.UsageError if it fails."""
    try:
        size = predict_client.stylize_remote(
            cfg.image, predict_client.parse_weights(cfg.style_weights), cfg.output,
            protocol=cfg.protocol, server=cfg.server, model=cfg.model,
            version=cfg.model_version, strength=cfg.strength,
            preserve_colors=cfg.preserve_colors, timeout=cfg.timeout,
            max_message_mb=cfg.max_message_mb)
    except predict_client.ClientError as e:
        raise cli.UsageError(str(e)) from None
    sys.stderr.write(f"{PROGRAM}: wrote {cfg.output} ({size[0]}x{size[1]})\n")
    return 0


def main(argv):
    """The command: argv (argv[0] the program name) -> exit status (2: usage error)."""
    return cli.run_command(argv, PROGRAM, parse_args, run, usage_text)


def run_main():
    """Console entry point."""
    cli.run_with_private_flags(main)


if __name__ == "__main__":
    run_main()
