"""A client of TF Serving for an export: one image in, the stylized PNG out (the library
of `python -m magenta_style.serving_client`).

`stylize_remote` (an N-style export) reads the image with its EXIF orientation applied,
sends it as PNG bytes and gets PNG bytes back (signatures `serving_bytes`, or
`stylize_bytes_advanced` with a strength or preserve_colors), so requests stay small: REST
base64-encodes them in JSON. With `send_floats` it sends float32 pixels instead
(`serving_default`, `stylize_advanced`) and encodes the float answer as PNG itself.

An export of Magenta's arbitrary-style model (serving/arbitrary_signatures.py):
`stylize_remote_arbitrary` sends the image and a style image (resized here so that its
shorter side is `style_image_size`, 256 as TF Hub's callers do; the export resizes
nothing) to `serving_bytes`, or as float32 pixels to `serving_default`, or with a
strength (Magenta's) to `stylize_strength`; given a style bottleneck instead, it calls
`transfer`. `predict_style_remote` asks `predict_style` for a style image's bottleneck
once, and `write_bottleneck` / `read_bottleneck` keep it in a JSON file for reuse.

REST needs only the standard library, numpy and Pillow; gRPC needs the optional
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

import numpy as np
from PIL import Image

from magenta_style import config
from magenta_style.media import fileio
from magenta_style.media import images

DEFAULT_REST_SERVER = "http://localhost:8501"
DEFAULT_GRPC_SERVER = "localhost:8500"
OUTPUT_KEY = "stylized_image_bytes"
# The float32 outputs: the stylized pixels, and predict_style's bottleneck.
FLOAT_OUTPUT_KEY = "stylized_image"
BOTTLENECK_KEY = "style_bottleneck"
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


def read_image_rgb(path, flag="--image"):
    """The image at `path` as uint8 RGB [H, W, 3] (EXIF orientation applied)."""
    try:
        rgb, _ = images.load_image(path)
    except images.ImageError as e:
        raise ClientError(f"{flag}: {e}") from None
    return images.to_uint8(rgb)


def encode_png(rgb):
    """uint8 [H, W, 3] -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def read_image_png(path):
    """The image at `path` as PNG bytes of its RGB pixels (EXIF orientation applied)."""
    return encode_png(read_image_rgb(path))


def read_style_image(path, style_image_size=config.DEFAULT_STYLE_IMAGE_SIZE):
    """A style image file as uint8 RGB [h, w, 3] whose shorter side is `style_image_size`
    (0: as it is), resized with Pillow's bilinear filter.

    The sides are rounded as arbitrary.prepared_size rounds them (Magenta's resize); the
    filter is Pillow's, which averages when it shrinks, so the pixels differ slightly
    from `stylize`'s (TF1's bilinear resize, Magenta's).
    """
    rgb = read_image_rgb(path, "--style_image")
    if not style_image_size:
        return rgb
    height, width = rgb.shape[:2]
    scale = style_image_size / min(height, width)
    size = (int(np.round(width * scale)), int(np.round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))


def _pixels(rgb):
    """uint8 [H, W, 3] -> float32 [1, H, W, 3] in [0, 1], a batch of one."""
    return (np.asarray(rgb, np.float32) / 255.0)[None]


def build_request(png, weights, strength=None, preserve_colors=False, rgb=None):
    """(signature_name, inputs) for one image of an N-style export: inputs maps names to
    Python values or numpy arrays.

    image_bytes stays raw bytes here; each protocol encodes it its own way. With `rgb`
    (uint8 [H, W, 3]) the image goes as float32 pixels instead (`png` is unused) to the
    float signatures, serving_default or stylize_advanced.
    """
    if rgb is not None:
        inputs = {"image": _pixels(rgb), "style_weights": [list(weights)]}
        plain, advanced = "serving_default", "stylize_advanced"
    else:
        inputs = {"image_bytes": [png], "style_weights": [list(weights)]}
        plain, advanced = "serving_bytes", "stylize_bytes_advanced"
    if strength is None and not preserve_colors:
        return plain, inputs
    inputs["strength"] = [1.0 if strength is None else float(strength)]
    inputs["preserve_colors"] = [bool(preserve_colors)]
    return advanced, inputs


def build_arbitrary_request(image, style_image=None, bottleneck=None, strength=None):
    """(signature_name, inputs) for one image of an arbitrary-style export.

    Args:
      image: PNG bytes (the bytes form, serving_bytes) or uint8 RGB [H, W, 3] (sent as
        float32 pixels).
      style_image: the style image in the same form as `image` (already resized).
      bottleneck: instead of style_image, a style bottleneck (list of floats, from
        predict_style): the `transfer` signature.
      strength: optional float in [0, 1], Magenta's (stylize_strength; pixels only).

    Returns:
      (signature name, inputs).
    """
    if bottleneck is not None:
        return "transfer", {"image": _pixels(image), BOTTLENECK_KEY: [list(bottleneck)]}
    if isinstance(image, bytes):
        return "serving_bytes", {"image_bytes": [image], "style_image_bytes": [style_image]}
    inputs = {"image": _pixels(image), "style_image": _pixels(style_image)}
    if strength is None:
        return "serving_default", inputs
    inputs["strength"] = [float(strength)]
    return "stylize_strength", inputs


def _output_key(signature, inputs):
    """The output a request's answer is read from."""
    if signature == "predict_style":
        return BOTTLENECK_KEY
    return OUTPUT_KEY if "image_bytes" in inputs else FLOAT_OUTPUT_KEY


def _rest_value(key, value):
    """An input as TF Serving's JSON takes it: strings as {"b64": ...}, arrays as lists."""
    if key.endswith("_bytes"):
        return [{"b64": base64.b64encode(b).decode("ascii")} for b in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _answer_value(key, value):
    """The first example of an output: bytes for a string output, else float32 numpy."""
    if key.endswith("_bytes"):
        return value
    return np.asarray(value, np.float32)


def _first_line(text, limit=500):
    text = " ".join(str(text).split())
    return text[:limit]


def predict_rest(server, model, signature, inputs, version=None, timeout=_DEFAULTS.timeout,
                 max_message_mb=_DEFAULTS.max_message_mb, output_key=OUTPUT_KEY):
    """POSTs a columnar predict request; returns output `output_key`'s first example: PNG
    bytes for a string output (`..._bytes`), else a float32 numpy array.

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
    body = {key: _rest_value(key, value) for key, value in inputs.items()}
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
            outputs = outputs[output_key]
        if output_key.endswith("_bytes"):
            return base64.b64decode(outputs[0]["b64"])
        return _answer_value(output_key, outputs[0])
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise ClientError(f"{url}: unexpected answer ({type(e).__name__}: "
                          f"{_first_line(payload[:200])})") from None


def predict_grpc(server, model, signature, inputs, version=None, timeout=_DEFAULTS.timeout,
                 max_message_mb=_DEFAULTS.max_message_mb, output_key=OUTPUT_KEY):
    """Sends a gRPC PredictRequest; returns output `output_key`'s first example, as
    `predict_rest` does."""
    try:
        import grpc
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
        array = (np.array(value, dtype=object) if key.endswith("_bytes")
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
    if output_key not in result.outputs:
        raise ClientError(f"{server}: the answer has no {output_key!r} output")
    if output_key.endswith("_bytes"):
        return result.outputs[output_key].string_val[0]
    return _answer_value(output_key, tf.make_ndarray(result.outputs[output_key])[0])


def predict(protocol, server, model, signature, inputs, version=None,
            timeout=_DEFAULTS.timeout, max_message_mb=_DEFAULTS.max_message_mb):
    """One request over `protocol` ("rest" or "grpc"; server None: its local default):
    the answer's first example of the signature's output (see predict_rest)."""
    output_key = _output_key(signature, inputs)
    if protocol == "rest":
        return predict_rest(server or DEFAULT_REST_SERVER, model, signature, inputs, version,
                            timeout, max_message_mb, output_key)
    if protocol == "grpc":
        return predict_grpc(server or DEFAULT_GRPC_SERVER, model, signature, inputs, version,
                            timeout, max_message_mb, output_key)
    raise ClientError(f"protocol must be rest or grpc, got {protocol!r}")


def _check_output(image_path, output, strength):
    """Refuses, before any request, a strength out of range and an output that would
    replace the photo (also through a symlink, a hard link or `..`) or is a directory."""
    if strength is not None and not 0.0 <= strength <= 1.0:
        raise ClientError(f"--strength={strength} must be in [0, 1]")
    if fileio.is_same_file(image_path, output):
        raise ClientError(f"--output={output} is the input --image={image_path}; writing it "
                          "would replace the photo: choose another path")
    if os.path.isdir(output):
        raise ClientError(f"--output={output}: is a directory")


def _write_answer(answer, expected, output):
    """Checks that the answer is an image of the sent image's size (width, height), and
    writes it as PNG atomically; returns its (width, height).

    `answer` is PNG bytes, or float32 pixels [H, W, 3] in [0, 1] (a float signature's),
    which are rounded to 8 bits here.
    """
    if not isinstance(answer, bytes):
        if answer.shape != (expected[1], expected[0], 3):
            raise ClientError(f"the server's answer has shape {list(answer.shape)}, not the "
                              f"sent image's [{expected[1]}, {expected[0]}, 3]")
        try:
            answer = encode_png(images.to_uint8(answer))
        except ValueError as e:  # NaN or infinity.
            raise ClientError(f"the server's answer is not an image: {e}") from None
    try:
        with Image.open(io.BytesIO(answer)) as image:
            # The stylized image has the sent image's size. Checked from the header,
            # before decoding: a small answer claiming 20000 x 20000 would take gigabytes.
            if image.size != expected:
                raise ClientError(f"the server's answer is {image.size[0]}x"
                                  f"{image.size[1]}, not the sent image's {expected[0]}x"
                                  f"{expected[1]}; not decoding it")
            with warnings.catch_warnings():  # Its size is the sent image's: allowed.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.load()
            size = image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ClientError(f"the server's answer is not an image: {e}") from None
    try:
        fileio.write_bytes_atomic(output, answer)
    except OSError as e:
        raise ClientError(f"--output={output}: {e.strerror or e}") from None
    return size


def stylize_remote(image_path, weights, output, protocol=_DEFAULTS.protocol,
                   server=_DEFAULTS.server, model=_DEFAULTS.model,
                   version=_DEFAULTS.model_version, strength=_DEFAULTS.strength,
                   preserve_colors=_DEFAULTS.preserve_colors, timeout=_DEFAULTS.timeout,
                   max_message_mb=_DEFAULTS.max_message_mb, send_floats=_DEFAULTS.send_floats):
    """Reads the image, asks an N-style export, checks the answer is an image, writes it.

    `send_floats`: float32 pixels to serving_default / stylize_advanced instead of PNG
    bytes to serving_bytes / stylize_bytes_advanced.

    Returns:
      (width, height) of the stylized image.

    Raises:
      ClientError: unreadable image, bad settings, unreachable server, refused request.
    """
    _check_output(image_path, output, strength)
    rgb = read_image_rgb(image_path)
    signature, inputs = build_request(None if send_floats else encode_png(rgb), weights,
                                      strength, preserve_colors,
                                      rgb=rgb if send_floats else None)
    answer = predict(protocol, server, model, signature, inputs, version, timeout,
                     max_message_mb)
    return _write_answer(answer, (rgb.shape[1], rgb.shape[0]), output)


def stylize_remote_arbitrary(image_path, output, style_image=None, bottleneck=None,
                             protocol=_DEFAULTS.protocol, server=_DEFAULTS.server,
                             model=_DEFAULTS.model, version=_DEFAULTS.model_version,
                             strength=_DEFAULTS.strength,
                             style_image_size=_DEFAULTS.style_image_size,
                             timeout=_DEFAULTS.timeout,
                             max_message_mb=_DEFAULTS.max_message_mb,
                             send_floats=_DEFAULTS.send_floats):
    """Stylizes an image with an arbitrary-style export and writes the PNG.

    Args:
      image_path: the image file.
      output: the PNG to write (atomically).
      style_image: a style image file, resized so that its shorter side is
        `style_image_size` (0: as it is): serving_bytes, or serving_default with
        `send_floats`, or stylize_strength with `strength` (Magenta's: the style
        bottleneck content*(1-w) + style*w; float32 pixels, no bytes form exists).
      bottleneck: instead of style_image, a style bottleneck (list of floats,
        `predict_style_remote` / `read_bottleneck`): the transfer signature.
      the others: as `stylize_remote`.

    Returns:
      (width, height) of the stylized image.

    Raises:
      ClientError: unreadable images, bad settings, unreachable server, refused request.
    """
    _check_output(image_path, output, strength)
    if (style_image is None) == (bottleneck is None):
        raise ClientError("give a style image (--style_image) or a style bottleneck "
                          "(--style_bottleneck), one of them")
    if bottleneck is not None and strength is not None:
        raise ClientError("--strength needs --style_image: Magenta's strength feeds the image "
                          "as its own style, which the export's stylize_strength computes "
                          "(transfer takes the bottleneck as it is)")
    rgb = read_image_rgb(image_path)
    if bottleneck is not None:
        signature, inputs = build_arbitrary_request(rgb, bottleneck=bottleneck)
    else:
        style = read_style_image(style_image, style_image_size)
        if send_floats or strength is not None:
            signature, inputs = build_arbitrary_request(rgb, style, strength=strength)
        else:
            signature, inputs = build_arbitrary_request(encode_png(rgb), encode_png(style))
    answer = predict(protocol, server, model, signature, inputs, version, timeout,
                     max_message_mb)
    return _write_answer(answer, (rgb.shape[1], rgb.shape[0]), output)


def predict_style_remote(style_image, protocol=_DEFAULTS.protocol, server=_DEFAULTS.server,
                         model=_DEFAULTS.model, version=_DEFAULTS.model_version,
                         style_image_size=_DEFAULTS.style_image_size,
                         timeout=_DEFAULTS.timeout, max_message_mb=_DEFAULTS.max_message_mb):
    """A style image's bottleneck from an arbitrary-style export's predict_style: list of
    floats (100), computed once and reused with `stylize_remote_arbitrary(bottleneck=...)`.

    Raises:
      ClientError: unreadable image, unreachable server, refused request, or an answer
        that is not a finite vector.
    """
    style = read_style_image(style_image, style_image_size)
    answer = predict(protocol, server, model, "predict_style",
                     {"style_image": _pixels(style)}, version, timeout, max_message_mb)
    if answer.ndim != 1 or not answer.size or not np.all(np.isfinite(answer)):
        raise ClientError(f"the server's {BOTTLENECK_KEY} is not a finite vector (shape "
                          f"{list(answer.shape)})")
    return [float(v) for v in answer]


def write_bottleneck(path, bottleneck, style_image=None, style_image_size=None):
    """Writes a bottleneck as JSON, atomically: {"style_bottleneck": [...], ...}."""
    payload = {BOTTLENECK_KEY: list(bottleneck), "style_image": style_image,
               "style_image_size": style_image_size}
    try:
        fileio.write_bytes_atomic(path, (json.dumps(payload) + "\n").encode())
    except OSError as e:
        raise ClientError(f"--save_bottleneck={path}: {e.strerror or e}") from None


def read_bottleneck(path):
    """The bottleneck of a file `write_bottleneck` wrote: list of finite floats.

    Raises:
      ClientError: unreadable, or not such a file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)[BOTTLENECK_KEY]
        values = [float(v) for v in values]
    except OSError as e:
        raise ClientError(f"--style_bottleneck={path}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError):
        raise ClientError(f"--style_bottleneck={path}: not a bottleneck file (JSON with a "
                          f"{BOTTLENECK_KEY!r} list, as --save_bottleneck writes)") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise ClientError(f"--style_bottleneck={path}: the bottleneck must be finite numbers")
    return values
