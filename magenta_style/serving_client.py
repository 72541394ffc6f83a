"""Stylize an image with a model served by TF Serving, and write the PNG.

    python -m magenta_style.serving_client --image=photo.jpg --style_weights=0,1,0 \\
        --output=stylized.png [--server=http://localhost:8501] [--model=magenta_style]

    # Half strength, keeping the photo's colours, over gRPC:
    python -m magenta_style.serving_client --image=photo.jpg --style_weights=0.5,0.5,0 \\
        --strength=0.5 --preserve_colors --protocol=grpc --server=localhost:8500 \\
        --output=stylized.png

    # Magenta's arbitrary-style model (its export): a style image, or a style computed once.
    python -m magenta_style.serving_client --image=photo.jpg --style_image=starry.jpg \
        --output=stylized.png [--strength=0.5] [--style_image_size=256]
    python -m magenta_style.serving_client --style_image=starry.jpg \
        --save_bottleneck=starry.json
    python -m magenta_style.serving_client --image=photo.jpg --style_bottleneck=starry.json \
        --output=stylized.png

`--style_weights` lists one weight per style of the model (as many as it has; the
server names the expected count if it differs). The image is read with its EXIF
orientation applied, sent as PNG bytes and returned as PNG bytes (signatures
`serving_bytes`, or `stylize_bytes_advanced` when --strength or --preserve_colors
is given), so requests stay small: REST base64-encodes them in JSON. `--send_floats`
sends float32 pixels instead (`serving_default`, `stylize_advanced`).

An arbitrary-style export (docs/arbitrary.md) takes `--style_image` instead, resized here
so that its shorter side is `--style_image_size` (the export resizes nothing): PNG bytes to
`serving_bytes`, float32 pixels to `serving_default` with `--send_floats`, or to
`stylize_strength` with `--strength` (Magenta's: the style bottleneck content*(1-w) +
style*w, so 0 is not the photo; the export has no bytes form of it). `--save_bottleneck`
asks `predict_style` for the style's bottleneck and writes it as JSON (and with --image
stylizes too); `--style_bottleneck` then sends that file's bottleneck to `transfer`, with
no style image. The export has no colour option (--preserve_colors).

REST needs only the standard library, numpy and Pillow; gRPC needs the optional
`tensorflow-serving-api` package (and TensorFlow, which it depends on). The client:
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
        "style_weights": "N-style export: comma-separated weight per style, e.g. 0,1,0 "
                         "(style 1) or 0.3,0,0.7 (a mix).",
        "output": "Where to write the stylized PNG.",
        "strength": "Style strength in [0, 1] (default: full). Arbitrary-style export: "
                    "Magenta's, the style bottleneck content*(1-w) + style*w (0 is not the "
                    "photo), sent as float32 pixels to stylize_strength.",
        "preserve_colors": "Keep the image's colours (N-style export).",
        "style_image": "Arbitrary-style export: the style image (JPEG, PNG, ...).",
        "style_image_size": "Arbitrary-style export: the style image's shorter side before "
                            "it is sent (256: what the model was trained at); 0: as it is.",
        "style_bottleneck": "Arbitrary-style export: a style bottleneck file written by "
                            "--save_bottleneck, instead of --style_image (the transfer "
                            "signature).",
        "save_bottleneck": "Arbitrary-style export, with --style_image: write the style's "
                           "bottleneck (predict_style) to this JSON file, for "
                           "--style_bottleneck; --image and --output are then optional.",
        "send_floats": "Send float32 pixels (serving_default, stylize_advanced) instead of "
                       "PNG bytes (larger requests).",
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
                "max_message_mb": (1, None), "style_image_size": (0, None)})


def usage_text():
    return cli.usage_text(__doc__, _define_flags)


def parse_args(argv):
    """argv -> config.ServingClientConfig (checked; nothing is read). cli.UsageError if bad."""
    fv = cli.parse_flag_values(cli.new_flag_values(_define_flags), argv)
    styles = [f"--{name}" for name in ("style_weights", "style_image", "style_bottleneck")
              if fv[name].value]
    if len(styles) != 1:
        raise cli.UsageError("give one of --style_weights (an N-style export), --style_image "
                             "or --style_bottleneck (an arbitrary-style export)"
                             + (f", not {' and '.join(styles)}" if styles else ""))
    if fv.style_weights:
        for name in ("style_image_size", "save_bottleneck"):
            if fv[name].present:
                raise cli.UsageError(f"--{name} is for an arbitrary-style export; "
                                     "--style_weights is for an N-style one")
    else:
        if fv.preserve_colors:
            raise cli.UsageError("--preserve_colors: the arbitrary-style export has no colour "
                                 "option")
        if fv.save_bottleneck and not fv.style_image:
            raise cli.UsageError("--save_bottleneck needs --style_image")
    required = ("image", "output")
    if fv.save_bottleneck and not (fv.image or fv.output):
        required = ()  # Only the bottleneck.
    for name in required:
        if not fv[name].value:
            raise cli.UsageError(f"--{name} is required")
    values = fv.flag_values_dict()
    return config_lib.ServingClientConfig(
        **{field.name: values[field.name]
           for field in dataclasses.fields(config_lib.ServingClientConfig)})


def run(cfg):
    """Sends the request(s) and writes the answer; returns 0. cli.UsageError if it fails."""
    server = dict(protocol=cfg.protocol, server=cfg.server, model=cfg.model,
                  version=cfg.model_version, timeout=cfg.timeout,
                  max_message_mb=cfg.max_message_mb)
    try:
        if cfg.style_weights:
            size = predict_client.stylize_remote(
                cfg.image, predict_client.parse_weights(cfg.style_weights), cfg.output,
                strength=cfg.strength, preserve_colors=cfg.preserve_colors,
                send_floats=cfg.send_floats, **server)
        else:
            bottleneck = None
            if cfg.style_bottleneck:
                bottleneck = predict_client.read_bottleneck(cfg.style_bottleneck)
            elif cfg.save_bottleneck:
                bottleneck = predict_client.predict_style_remote(
                    cfg.style_image, style_image_size=cfg.style_image_size, **server)
                predict_client.write_bottleneck(cfg.save_bottleneck, bottleneck,
                                                cfg.style_image, cfg.style_image_size)
                sys.stderr.write(f"{PROGRAM}: wrote {cfg.save_bottleneck} (the style "
                                 f"bottleneck of {cfg.style_image})\n")
                if not cfg.image:
                    return 0
                if cfg.strength is not None:
                    bottleneck = None  # Magenta's strength: stylize_strength, from the image.
            size = predict_client.stylize_remote_arbitrary(
                cfg.image, cfg.output,
                style_image=None if bottleneck is not None else cfg.style_image,
                bottleneck=bottleneck, strength=cfg.strength,
                style_image_size=cfg.style_image_size, send_floats=cfg.send_floats,
                **server)
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
