"""Tests for tools/serving_client.py against in-process stand-ins for TF Serving.

The REST stand-in is an http.server on 127.0.0.1 that answers like TF Serving's
predict API (columnar "inputs", {"b64": ...} for strings, `_bytes` outputs
base64-encoded, {"error": ...} on failure), computing with the loaded SavedModel.
The gRPC stand-in implements PredictionService.Predict the same way. Nothing
leaves 127.0.0.1 and every call has a timeout.
"""
import base64
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

# Every test here uses an export served over REST/gRPC, and the client as a subprocess.
pytestmark = pytest.mark.slow


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "serving_client.py")
NUM_STYLES = 2
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def client(load_script):
    return load_script(TOOL)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, export_tiny_model):
    return tf.saved_model.load(
        export_tiny_model(tmp_path_factory.mktemp("serving"), NUM_STYLES, seed=5))


def _to_tensor(name, value, signature):
    spec = signature.structured_input_signature[1][name]
    if spec.dtype == tf.string:
        return tf.constant([base64.b64decode(v["b64"]) for v in value])
    return tf.constant(value, dtype=spec.dtype)


def _run(loaded, signature_name, inputs):
    signature = loaded.signatures[signature_name]
    tensors = {k: _to_tensor(k, v, signature) for k, v in inputs.items()}
    return signature(**tensors)


class _RestHandler(http.server.BaseHTTPRequestHandler):
    loaded = None
    requests = []

    def do_POST(self):  # pylint: disable=invalid-name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body))
        match = re.fullmatch(r"/v1/models/(\w+)(?:/versions/(\d+))?:predict", self.path)
        if not match or match.group(1) != "magenta_style":
            return self._send(404, {"error": f"Servable not found for request: {self.path}"})
        try:
            outputs = _run(self.loaded, body.get("signature_name", "serving_default"),
                           body["inputs"])
        except (tf.errors.OpError, KeyError, TypeError, ValueError) as e:
            message = e.message if isinstance(e, tf.errors.OpError) else str(e)
            return self._send(400, {"error": message})
        encoded = {k: [{"b64": base64.b64encode(b).decode()} for b in v.numpy()]
                   if k.endswith("_bytes") else v.numpy().tolist() for k, v in outputs.items()}
        # Columnar request, one output: TF Serving returns the bare value.
        return self._send(200, {"outputs": next(iter(encoded.values())) if len(encoded) == 1
                                else encoded})

    def _send(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _serve(loaded):
    """A TF-Serving-like REST server of `loaded` on a free port, in a thread: yields
    (its URL, its handler class, whose `requests` lists what it was sent)."""
    handler = type("Handler", (_RestHandler,), {"loaded": loaded, "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()
    thread.join(timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def rest_server(loaded):
    yield from _serve(loaded)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    rng = np.random.default_rng(0)
    pixels = (rng.random((18, 22, 3)) * 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    return str(path)


def _read_png(path_or_bytes):
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(source) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def _expected(client, loaded, photo, weights, strength=None, preserve=False):
    signature, inputs = client.build_request(client.read_image_png(photo), weights, strength,
                                             preserve)
    inputs = dict(inputs, image_bytes=[{"b64": base64.b64encode(inputs["image_bytes"][0])}])
    return _read_png(_run(loaded, signature, inputs)["stylized_image_bytes"].numpy()[0])


def test_rest_round_trip(client, loaded, rest_server, photo, tmp_path):
    url, handler = rest_server
    output = tmp_path / "out" / "stylized.png"
    size = client.stylize_remote(photo, [0.0, 1.0], str(output), server=url, timeout=TIMEOUT_S)
    assert size == (22, 18)
    path, body = handler.requests[-1]
    assert path == "/v1/models/magenta_style:predict"
    assert body["signature_name"] == "serving_bytes"
    assert set(body["inputs"]) == {"image_bytes", "style_weights"}
    np.testing.assert_array_equal(_read_png(str(output)),
                                  _expected(client, loaded, photo, [0.0, 1.0]))
    assert os.listdir(output.parent) == ["stylized.png"]


def test_rest_strength_preserve_colors_and_version(client, loaded, rest_server, photo,
                                                   tmp_path):
    url, handler = rest_server
    output = tmp_path / "mix.png"
    client.stylize_remote(photo, [0.3, 0.7], str(output), server=url, version=3,
                          strength=0.5, preserve_colors=True, timeout=TIMEOUT_S)
    path, body = handler.requests[-1]
    assert path == "/v1/models/magenta_style/versions/3:predict"
    assert body["signature_name"] == "stylize_bytes_advanced"
    assert body["inputs"]["strength"] == [0.5] and body["inputs"]["preserve_colors"] == [True]
    got = _read_png(str(output))
    np.testing.assert_array_equal(
        got, _expected(client, loaded, photo, [0.3, 0.7], strength=0.5, preserve=True))
    assert np.abs(got.astype(int) - _expected(client, loaded, photo, [0.3, 0.7])).max() > 5


def test_server_errors_are_reported_in_one_line(client, rest_server, photo, tmp_path):
    url, _ = rest_server
    output = tmp_path / "never.png"
    with pytest.raises(client.ClientError, match=r"HTTP 400: .*num_styles=2"):
        client.stylize_remote(photo, [1.0, 0.0, 0.0], str(output), server=url,
                              timeout=TIMEOUT_S)
    with pytest.raises(client.ClientError, match="HTTP 404: Servable not found"):
        client.stylize_remote(photo, [1.0, 0.0], str(output), server=url, model="other",
                              timeout=TIMEOUT_S)
    assert not output.exists()


def test_client_side_errors(client, tmp_path, photo):
    with pytest.raises(client.ClientError, match="cannot reach"):
        # Port 9 (discard) on localhost: nothing listens there in the test environment.
        client.stylize_remote(photo, [1.0, 0.0], str(tmp_path / "o.png"),
                              server="http://127.0.0.1:9", timeout=10)
    with pytest.raises(client.ClientError, match="no such file"):
        client.stylize_remote(str(tmp_path / "missing.jpg"), [1.0], str(tmp_path / "o.png"))
    with pytest.raises(client.ClientError, match="strength"):
        client.stylize_remote(photo, [1.0], str(tmp_path / "o.png"), strength=1.5)
    assert client.parse_weights("0, 1,0.5") == [0.0, 1.0, 0.5]
    for bad in ("", "a,b", "1,nan"):
        with pytest.raises(client.ClientError, match="--style_weights"):
            client.parse_weights(bad)


def test_command_line(rest_server, photo, tmp_path):
    url, _ = rest_server
    output = tmp_path / "cli.png"
    env = dict(os.environ, no_proxy="127.0.0.1,localhost")
    result = subprocess.run(
        [sys.executable, TOOL, f"--image={photo}", "--style_weights=1,0",
         f"--output={output}", f"--server={url}"],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _read_png(str(output)).shape == (18, 22, 3)

    result = subprocess.run(
        [sys.executable, TOOL, f"--image={photo}", "--style_weights=1,0,0",
         f"--output={output}", f"--server={url}"],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False, env=env)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "num_styles=2" in errors[0]
    assert "Traceback" not in result.stderr


def _start_grpc_server(loaded, seen):
    """A gRPC PredictionService stand-in computing with `loaded`; appends each request to
    `seen`. Returns (server, port)."""
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # pylint: disable=invalid-name
            seen.append(request)
            signature = loaded.signatures[request.model_spec.signature_name]
            tensors = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            try:
                outputs = signature(**tensors)
            except tf.errors.InvalidArgumentError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.message)
            response = predict_pb2.PredictResponse()
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def test_grpc_round_trip(client, loaded, photo, tmp_path):
    seen = []
    server, port = _start_grpc_server(loaded, seen)
    try:
        output = tmp_path / "grpc.png"
        client.stylize_remote(photo, [0.0, 1.0], str(output), protocol="grpc",
                              server=f"127.0.0.1:{port}", version=2, timeout=TIMEOUT_S)
        request = seen[-1]
        assert request.model_spec.name == "magenta_style"
        assert request.model_spec.signature_name == "serving_bytes"
        assert request.model_spec.version.value == 2
        np.testing.assert_array_equal(_read_png(str(output)),
                                      _expected(client, loaded, photo, [0.0, 1.0]))
        with pytest.raises(client.ClientError, match="INVALID_ARGUMENT.*num_styles=2"):
            client.stylize_remote(photo, [1.0], str(output), protocol="grpc",
                                  server=f"127.0.0.1:{port}", timeout=TIMEOUT_S)
    finally:
        server.stop(grace=None).wait(TIMEOUT_S)


def test_help_exits_zero():
    # absl exits 1 after --help; scripts read that as a failure.
    result = subprocess.run([sys.executable, TOOL, "--help"], capture_output=True, text=True,
                            timeout=TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--style_weights" in result.stdout
    result = subprocess.run([sys.executable, TOOL, "--no_such_flag"], capture_output=True,
                            text=True, timeout=TIMEOUT_S, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------
# Float pixels (send_floats), and an export of Magenta's arbitrary-style model.


def test_rest_float_pixels_give_the_bytes_forms_image(client, rest_server, photo, tmp_path):
    url, handler = rest_server
    by_bytes, by_floats = tmp_path / "bytes.png", tmp_path / "floats.png"
    for output, send_floats in ((by_bytes, False), (by_floats, True)):
        client.stylize_remote(photo, [0.3, 0.7], str(output), server=url, strength=0.5,
                              preserve_colors=True, send_floats=send_floats,
                              timeout=TIMEOUT_S)
    _, body = handler.requests[-1]
    assert body["signature_name"] == "stylize_advanced"
    assert np.asarray(body["inputs"]["image"]).shape == (1, 18, 22, 3)
    # The server rounds to 8 bits in one, the client in the other.
    assert np.abs(_read_png(str(by_floats)).astype(int)
                  - _read_png(str(by_bytes)).astype(int)).max() <= 1


@pytest.fixture(scope="module")
def arbitrary_loaded(tiny_arbitrary_export):
    return tf.saved_model.load(tiny_arbitrary_export)


@pytest.fixture(scope="module")
def arbitrary_server(arbitrary_loaded):
    yield from _serve(arbitrary_loaded)


@pytest.fixture(scope="module")
def style_photo(tmp_path_factory):
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("style") / "starry.png"
    Image.fromarray((rng.random((60, 72, 3)) * 255).astype(np.uint8)).save(path)
    return str(path)


def _served(loaded, signature, **inputs):
    return loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})


def test_rest_arbitrary_export_every_form(client, arbitrary_loaded, arbitrary_server, photo,
                                         style_photo, tmp_path, capsys):
    """serving_bytes, serving_default (--send_floats), stylize_strength (--strength) and
    predict_style + transfer (--save_bottleneck, --style_bottleneck) against the stand-in."""
    from magenta_style import serving_client

    url, handler = arbitrary_server
    rgb = client.read_image_rgb(photo)
    style = client.read_style_image(style_photo, 48)
    assert style.shape == (48, 58, 3)  # Shorter side 48, the aspect ratio kept.
    pixels = rgb[None].astype(np.float32) / 255
    style_pixels = style[None].astype(np.float32) / 255
    reference = _served(arbitrary_loaded, "serving_default", image=pixels,
                        style_image=style_pixels)["stylized_image"].numpy()[0]

    out = tmp_path / "bytes.png"
    assert client.stylize_remote_arbitrary(photo, str(out), style_image=style_photo,
                                           server=url, style_image_size=48,
                                           timeout=TIMEOUT_S) == (22, 18)
    _, body = handler.requests[-1]
    assert body["signature_name"] == "serving_bytes"
    assert set(body["inputs"]) == {"image_bytes", "style_image_bytes"}
    expected = _served(arbitrary_loaded, "serving_bytes",
                       image_bytes=[client.encode_png(rgb)],
                       style_image_bytes=[client.encode_png(style)])
    np.testing.assert_array_equal(
        _read_png(str(out)), _read_png(expected["stylized_image_bytes"].numpy()[0]))
    assert np.abs(_read_png(str(out)) / 255 - reference).max() <= 1 / 255 + 1e-6

    out = tmp_path / "floats.png"
    client.stylize_remote_arbitrary(photo, str(out), style_image=style_photo, server=url,
                                    style_image_size=48, send_floats=True, timeout=TIMEOUT_S)
    assert handler.requests[-1][1]["signature_name"] == "serving_default"
    assert np.abs(_read_png(str(out)) / 255 - reference).max() <= 1 / 255 + 1e-6

    out = tmp_path / "strength.png"
    client.stylize_remote_arbitrary(photo, str(out), style_image=style_photo, server=url,
                                    style_image_size=48, strength=0.3, timeout=TIMEOUT_S)
    _, body = handler.requests[-1]
    assert body["signature_name"] == "stylize_strength" and body["inputs"]["strength"] == [0.3]
    weak = _served(arbitrary_loaded, "stylize_strength", image=pixels, style_image=style_pixels,
                   strength=[0.3])["stylized_image"].numpy()[0]
    assert np.abs(_read_png(str(out)) / 255 - weak).max() <= 1 / 255 + 1e-6
    assert np.abs(weak - reference).mean() > 0.01  # Strength 0.3 is another picture.

    # The style computed once, through the command: predict_style, then transfer.
    saved, out = tmp_path / "starry.json", tmp_path / "transfer.png"
    common = [f"--server={url}", f"--timeout={TIMEOUT_S}"]
    assert serving_client.main(["serving_client", f"--style_image={style_photo}",
                                "--style_image_size=48", f"--save_bottleneck={saved}"]
                               + common) == 0, capsys.readouterr().err
    assert handler.requests[-1][1]["signature_name"] == "predict_style"
    bottleneck = client.read_bottleneck(str(saved))
    np.testing.assert_allclose(bottleneck, _served(
        arbitrary_loaded, "predict_style", style_image=style_pixels)["style_bottleneck"].numpy()[0],
        atol=1e-5)
    assert serving_client.main(["serving_client", f"--image={photo}", f"--output={out}",
                                f"--style_bottleneck={saved}"] + common) == 0
    assert handler.requests[-1][1]["signature_name"] == "transfer"
    assert np.abs(_read_png(str(out)) / 255 - reference).max() <= 1 / 255 + 1e-4
    capsys.readouterr()

    # Mistakes: one line each, nothing written.
    never = tmp_path / "never.png"
    for argv, message in (
            ([f"--image={photo}", f"--output={never}", f"--style_image={style_photo}",
              "--preserve_colors"], "no colour option"),
            ([f"--image={photo}", f"--output={never}", f"--style_image={style_photo}",
              "--style_weights=1,0"], "give one of --style_weights"),
            ([f"--image={photo}", f"--output={never}", f"--style_image={style_photo}",
              "--style_image_size=30"], "at least 43x43"),
            ([f"--image={photo}", f"--output={never}", f"--style_bottleneck={photo}"],
             "not a bottleneck file")):
        assert serving_client.main(["serving_client"] + argv + common) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not never.exists()


def test_grpc_arbitrary_export_float_outputs(client, arbitrary_loaded, photo, style_photo,
                                             tmp_path):
    seen = []
    server, port = _start_grpc_server(arbitrary_loaded, seen)
    try:
        common = dict(protocol="grpc", server=f"127.0.0.1:{port}", style_image_size=48,
                      timeout=TIMEOUT_S)
        bottleneck = client.predict_style_remote(style_photo, **common)
        assert seen[-1].model_spec.signature_name == "predict_style" and len(bottleneck) == 100
        by_bytes, by_transfer = tmp_path / "bytes.png", tmp_path / "transfer.png"
        client.stylize_remote_arbitrary(photo, str(by_bytes), style_image=style_photo,
                                        **common)
        assert seen[-1].model_spec.signature_name == "serving_bytes"
        client.stylize_remote_arbitrary(photo, str(by_transfer), bottleneck=bottleneck,
                                        **common)
        assert seen[-1].model_spec.signature_name == "transfer"
        assert np.abs(_read_png(str(by_transfer)).astype(int)
                      - _read_png(str(by_bytes)).astype(int)).max() <= 1
    finally:
        server.stop(grace=None).wait(TIMEOUT_S)
