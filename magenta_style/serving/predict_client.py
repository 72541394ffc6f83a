"""A client of TF Serving for an export: one image in, the stylized PNG out (the library
of `python -m magenta_style.serving_client`).

`stylize_remote` reads the image with its EXIF orientation applied, sends it as PNG bytes
and gets PNG bytes back (signatures `serving_bytes`, or `stylize_bytes_advanced` with a
strength or preserve_colors), so requests stay small: REST base64-encodes them in JSON.
REST needs only the standard library and Pillow; gRPC needs the optional
`tensorflow-serving-api` package (and TensorFlow, which it depends on). The defaults are
config.ServingClientConfig's.
"""
import base64
import http.client
import io
import json
import math
import os
import urllib.error
import urllib.parse
import urllib.request
import warnings

from PIL import Image

from magenta_style import config
from magenta_style.media import fileio
from magenta_style.media import images

DEFAULT_REST_SERVER = "http://localhost:8501"
DEFAULT_GRPC_SERVER = "localhost:8500"
OUTPUT_KEY = "stylized_image_bytes"
_DEFAULTS = config.ServingClientConfig()


class ClientError(Exception):
    """The request could not be made or the server refused it; the message is one line."""


def parse_weights(text):
    """'0,1,0.5' -> [0.0, 1.0, 0.5]; raises ClientError for empty or non-finite values."""
    try:
        weights = [float(part) for part in (text or "").split(",")]
    except ValueError:
        raise ClientError(f"--style_weights={text!r} must be comma-separated numbers, "
                          "e.g. 0,1,0") from None
    if not all(math.isfinite(w) for w in weights):
        raise ClientError(f"--style_weights={text!r} must be finite")
    return weights


def read_image_png(path):
    """The image at `path` as PNG bytes of its RGB pixels (EXIF orientation applied)."""
    try:
        rgb, _ = images.load_image(path)
    except images.ImageError as e:
        raise ClientError(f"--image: {e}") from None
    buffer = io.BytesIO()
    Image.fromarray(images.to_uint8(rgb)).save(buffer, format="PNG")
    return buffer.getvalue()


def build_request(png, weights, strength=None, preserve_colors=False):
    """(signature_name, inputs) for one image: inputs maps names to Python values.

    image_bytes stays raw bytes here; each protocol encodes it its own way.
    """
    inputs = {"image_bytes": [png], "style_weights": [list(weights)]}
    if strength is None and not preserve_colors:
        return "serving_bytes", inputs
    inputs["strength"] = [1.0 if strength is None else float(strength)]
    inputs["preserve_colors"] = [bool(preserve_colors)]
    return "stylize_bytes_advanced", inputs


def _first_line(text, limit=500):
    text = " ".join(str(text).split())
    return text[:limit]


def predict_rest(server, model, signature, inputs, version=None, timeout=_DEFAULTS.timeout,
                 max_message_mb=_DEFAULTS.max_message_mb):
    """POSTs a columnar predict request; returns the first output's PNG bytes.

    An answer longer than max_message_mb MiB is refused rather than read into memory.
    """
    try:
        parts = urllib.parse.urlsplit(server)
        parts.port  # pylint: disable=pointless-statement  # Raises for "85x1".
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("it needs http:// or https:// and a host")
    except ValueError as e:
        raise ClientError(f"--server={server!r} is not a valid URL ({_first_line(e)}); "
                          f"e.g. {DEFAULT_REST_SERVER}") from None
    url = f"{server.rstrip('/')}/v1/models/{model}"
    if version is not None:
        url += f"/versions/{version}"
    url += ":predict"
    body = dict(inputs)
    body["image_bytes"] = [{"b64": base64.b64encode(b).decode("ascii")}
                           for b in inputs["image_bytes"]]
    data = json.dumps({"signature_name": signature, "inputs": body}).encode()
    limit = max_message_mb * 1024 * 1024
    try:
        request = urllib.request.Request(url, data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read(limit + 1)
            declared = response.getheader("Content-Length")
            # read(n) returns what arrived when the server closes early; the header says
            # what should have.
            if declared and declared.isdigit() and len(payload) < min(int(declared),
                                                                      limit + 1):
                raise http.client.IncompleteRead(payload, int(declared) - len(payload))
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise ClientError(f"{url}: HTTP {e.code}: {_first_line(detail)}") from None
    except urllib.error.URLError as e:
        raise ClientError(f"cannot reach {url}: {_first_line(e.reason)}") from None
    except TimeoutError:
        raise ClientError(f"{url}: no answer within {timeout} s (--timeout)") from None
    except ValueError as e:  # No scheme, a bad port or host (http.client.InvalidURL too).
        raise ClientError(f"--server={server!r} is not a valid URL ({_first_line(e)}); "
                          f"e.g. {DEFAULT_REST_SERVER}") from None
    except (http.client.HTTPException, OSError) as e:  # Dropped or cut short.
        raise ClientError(f"{url}: the connection broke before the whole answer arrived "
                          f"({type(e).__name__}: {_first_line(e, 200)})") from None
    if len(payload) > limit:
        raise ClientError(f"{url}: the answer is larger than --max_message_mb="
                          f"{max_message_mb} MiB; not reading it")
    try:
        outputs = json.loads(payload)["outputs"]
        if isinstance(outputs, dict):  # Several outputs: keyed by name.
            outputs = outputs[OUTPUT_KEY]
        return base64.b64decode(outputs[0]["b64"])
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise ClientError(f"{url}: unexpected answer ({type(e).__name__}: "
                          f"{_first_line(payload[:200])})") from None


def predict_grpc(server, model, signature, inputs, version=None, timeout=_DEFAULTS.timeout,
                 max_message_mb=_DEFAULTS.max_message_mb):
    """Sends a gRPC PredictRequest; returns the first output's PNG bytes."""
    try:
        import grpc
        import numpy as np
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2
        from tensorflow_serving.apis import prediction_service_pb2_grpc
    except ImportError as e:
        raise ClientError(f"gRPC needs tensorflow-serving-api (pip install "
                          f"tensorflow-serving-api): {e}") from None
    limit = max_message_mb * 1024 * 1024
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for key, value in inputs.items():
        array = (np.array(value, dtype=object) if key == "image_bytes"
                 else np.array(value, dtype=bool if key == "preserve_colors" else np.float32))
        request.inputs[key].CopyFrom(tf.make_tensor_proto(array))
    options = [("grpc.max_send_message_length", limit),
               ("grpc.max_receive_message_length", limit)]
    with grpc.insecure_channel(server, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            result = stub.Predict(request, timeout)
        except grpc.RpcError as e:
            raise ClientError(f"{server}: gRPC {e.code().name}: {_first_line(e.details())}") \
                from None
    if OUTPUT_KEY not in result.outputs:
        raise ClientError(f"{server}: the answer has no {OUTPUT_KEY!r} output")
    return result.outputs[OUTPUT_KEY].string_val[0]


def stylize_remote(image_path, weights, output, protocol=_DEFAULTS.protocol,
                   server=_DEFAULTS.server, model=_DEFAULTS.model,
                   version=_DEFAULTS.model_version, strength=_DEFAULTS.strength,
                   preserve_colors=_DEFAULTS.preserve_colors, timeout=_DEFAULTS.timeout,
                   max_message_mb=_DEFAULTS.max_message_mb):
    """Reads the image, asks the server, checks the answer is an image, writes it.

    Returns:
      (width, height) of the stylized image.

    Raises:
      ClientError: unreadable image, bad settings, unreachable server, refused request.
    """
    if strength is not None and not 0.0 <= strength <= 1.0:
        raise ClientError(f"--strength={strength} must be in [0, 1]")
    # Before the request: the answer would replace the photo (also through a symlink,
    # a hard link or `..`), and a directory cannot take it.
    if fileio.is_same_file(image_path, output):
        raise ClientError(f"--output={output} is the input --image={image_path}; writing it "
                          "would replace the photo: choose another path")
    if os.path.isdir(output):
        raise ClientError(f"--output={output}: is a directory")
    signature, inputs = build_request(read_image_png(image_path), weights, strength,
                                      preserve_colors)
    if protocol == "rest":
        png = predict_rest(server or DEFAULT_REST_SERVER, model, signature, inputs, version,
                           timeout, max_message_mb)
    elif protocol == "grpc":
        png = predict_grpc(server or DEFAULT_GRPC_SERVER, model, signature, inputs, version,
                           timeout, max_message_mb)
    else:
        raise ClientError(f"protocol must be rest or grpc, got {protocol!r}")
    with Image.open(io.BytesIO(inputs["image_bytes"][0])) as sent:
        expected = sent.size
    try:
        with Image.open(io.BytesIO(png)) as answer:
            # The stylized image has the sent image's size. Checked from the header,
            # before decoding: a small answer claiming 20000 x 20000 would take gigabytes.
            if answer.size != expected:
                raise ClientError(f"the server's answer is {answer.size[0]}x"
                                  f"{answer.size[1]}, not the sent image's {expected[0]}x"
                                  f"{expected[1]}; not decoding it")
            with warnings.catch_warnings():  # Its size is the sent image's: allowed.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                answer.load()
            size = answer.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ClientError(f"the server's answer is not an image: {e}") from None
    try:
        fileio.write_bytes_atomic(output, png)
    except OSError as e:
        raise ClientError(f"--output={output}: {e.strerror or e}") from None
    return size
