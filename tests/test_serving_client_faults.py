"""tools/serving_client.py against a misbehaving server on 127.0.0.1: a malformed
--server URL, a dropped connection, a truncated body, an oversized answer and a
decompression bomb are each one ClientError line (exit status 2 from the command),
never a traceback, and nothing is written."""
import base64
import http.server
import io
import json
import os
import struct
import threading
import zlib

import numpy as np
from PIL import Image
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "serving_client.py")


def _png_claiming(width, height):
    """A valid ~70-byte PNG whose header says width x height (RGB, 8 bits)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


class _Handler(http.server.BaseHTTPRequestHandler):
    """The model name in the URL picks the fault."""

    def do_POST(self):  # pylint: disable=invalid-name
        self.rfile.read(int(self.headers["Content-Length"]))
        model = self.path.split("/")[3].split(":")[0]
        if model == "drop":
            self.close_connection = True  # No answer at all.
            return
        if model == "truncated":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"outputs": [{"b64": "iVBO')
            self.close_connection = True
            return
        if model == "bomb":  # Under Pillow's own refusal (2 x 89 Mpx), above its warning.
            png = _png_claiming(10000, 10000)
        elif model == "bigbomb":
            png = _png_claiming(20000, 20000)
        else:  # "huge": 2 MiB of answer.
            png = b"\0" * (2 << 20)
        data = json.dumps({"outputs": [{"b64": base64.b64encode(png).decode()}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=60)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def client(load_script):
    return load_script(TOOL)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(np.full((12, 16, 3), 90, np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("server_url, expected", [
    ("127.0.0.1:8501", "is not a valid URL"),           # No scheme.
    ("http://127.0.0.1:85x1", "is not a valid URL"),    # Not a port.
    ("http://[::1", "is not a valid URL"),              # Unclosed IPv6 bracket.
])
def test_malformed_server_url(client, photo, tmp_path, server_url, expected):
    out = tmp_path / "out.png"
    with pytest.raises(client.ClientError, match=expected) as info:
        client.stylize_remote(photo, [1.0], str(out), server=server_url, timeout=10)
    assert "\n" not in str(info.value)
    assert not out.exists()


@pytest.mark.parametrize("model, expected", [
    ("drop", "the connection broke before the whole answer arrived"),
    ("truncated", "the connection broke before the whole answer arrived"),
    ("bomb", "is 10000x10000, not the sent image's 16x12; not decoding it"),
    ("bigbomb", "decompression bomb"),
    ("huge", "larger than --max_message_mb=1 MiB"),
])
def test_misbehaving_server(client, server, photo, tmp_path, model, expected):
    out = tmp_path / "out.png"
    with pytest.raises(client.ClientError) as info:
        client.stylize_remote(photo, [1.0], str(out), server=server, model=model, timeout=30,
                              max_message_mb=1)
    message = str(info.value)
    assert expected in message and "\n" not in message, message
    assert not out.exists()


def test_decompression_bomb_png_is_small():
    assert len(_png_claiming(10000, 10000)) < 100  # What the server sent, base64 aside.
    with Image.open(io.BytesIO(_png_claiming(10000, 10000))) as image:
        assert image.size == (10000, 10000)
