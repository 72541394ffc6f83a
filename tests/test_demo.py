"""The web demo (magenta_style.demo) driven in headless Chromium through Playwright.

One demo server (the real command, in a subprocess) serves every test of this file; each
test opens its own browser page. Every page routes its requests through a check that
aborts and records any request to a host other than this machine: the demo must work
offline.

Needs Gradio and Playwright (pip install -e ".[demo,test]") and Debian's chromium
(apt-get install chromium; Playwright's own browser download is not used). Without them
the tests skip with the reason (they fail instead under MAGENTA_STYLE_REQUIRE_BROWSER=1,
which .ci/run sets). MAGENTA_STYLE_CHROMIUM names another Chromium binary.

With MAGENTA_STYLE_DEMO_CHECKPOINT=model the tests run on that model instead of a tiny
random one, and with MAGENTA_STYLE_DEMO_SCREENSHOTS=dir they save screenshots there (the
README's, taken with the quickstart model).
"""
import io
import logging
import os
import pathlib
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import zlib

import numpy as np
from PIL import Image
import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("MAGENTA_STYLE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = os.environ.get("MAGENTA_STYLE_DEMO_SCREENSHOTS")
# Chromium's fake camera (a moving test pattern) and no permission prompt.
CHROMIUM_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
LOCAL_HOSTS = ("127.0.0.1", "localhost")
SERVER_START_SECONDS = 300  # TensorFlow, the model and Gradio on a loaded 2-core machine.
WAIT_MS = 120_000
# Test photos are tiny; screenshots for the README show a larger one.
PHOTO_SIZE = 256 if os.environ.get("MAGENTA_STYLE_DEMO_CHECKPOINT") else 64


def _requirements():
    """The reason the browser tests cannot run here, or None."""
    try:
        import gradio  # pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        return 'Gradio is not installed (pip install -e ".[demo]")'
    try:
        import playwright.sync_api  # pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        return 'Playwright is not installed (pip install -e ".[test]")'
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set "
                "MAGENTA_STYLE_CHROMIUM)")
    return None


_MISSING = _requirements()
if _MISSING and os.environ.get("MAGENTA_STYLE_REQUIRE_BROWSER") == "1":  # .ci/run
    pytest.fail(_MISSING + "; MAGENTA_STYLE_REQUIRE_BROWSER=1 forbids skipping", pytrace=False)
if _MISSING:
    pytest.skip(_MISSING, allow_module_level=True)

from playwright.sync_api import sync_playwright  # pylint: disable=wrong-import-position


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, randomize_norms):
    """A model with two distinct styles named in its metadata (or the user's model)."""
    if os.environ.get("MAGENTA_STYLE_DEMO_CHECKPOINT"):
        return os.environ["MAGENTA_STYLE_DEMO_CHECKPOINT"]
    from magenta_style import config as config_lib
    from magenta_style.networks import checkpoints
    from magenta_style.networks import transformer

    model_config = config_lib.ModelConfig(num_styles=2, alpha=0.25, style_names=("ink", "fire"))
    model = transformer.build_transformer(model_config)
    randomize_norms(model, seed=3)
    directory = tmp_path_factory.mktemp("demo_model")
    checkpoints.save_model(model, model_config, str(directory))
    return str(directory)


@pytest.fixture(scope="module")
def reference(model_dir):
    """`reference(photo, styles)`: the one inference path's output, float32 [H, W, 3]."""
    from magenta_style.inference import stylizer

    model, model_config = stylizer.load(model_dir)

    def stylize(photo, styles):
        options = stylizer.StylizeOptions(styles=styles)
        return stylizer.Stylizer(model, model_config, options)(photo)[0]

    return stylize


def _serve(checkpoint, tmp_path_factory):
    """Runs the demo command on `checkpoint` on a free local port; yields its URL."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("demo_server") / "server.log"
    command = [sys.executable, "-m", "magenta_style.demo", f"--checkpoint={checkpoint}",
               f"--port={port}", "--grid_size=32"]
    command.append(f"--photo_size={PHOTO_SIZE}")
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = None
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        match = re.search(r"open (http://\S+) ", log_path.read_text())
        if match:
            url = match.group(1)
            break
        time.sleep(0.5)
    if url is None:
        process.kill()
        process.wait()
        pytest.fail(f"the demo did not start: {log_path.read_text()[-3000:]}")
    yield url
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    text = log_path.read_text()
    assert "Traceback" not in text, text[-3000:]


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """The demo command, serving on a free local port: its URL."""
    yield from _serve(model_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Pages:
    """Opens pages of the demo; records every request that leaves this machine."""

    def __init__(self, browser, url):
        self.browser = browser
        self.url = url
        self.outside = []
        self.local = []
        self.contexts = []

    def _route(self, route):
        url = route.request.url
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme in ("data", "blob") or parsed.hostname in LOCAL_HOSTS:
            self.local.append(url)
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def open(self):
        context = self.browser.new_context(viewport={"width": 1300, "height": 1000},
                                           permissions=["camera"])
        context.route("**/*", self._route)
        self.contexts.append(context)
        page = context.new_page()
        page.goto(self.url)
        page.wait_for_selector("#style-1", timeout=WAIT_MS)
        return page

    def close(self):
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(browser, server):
    opened = Pages(browser, server)
    yield opened
    opened.close()
    assert not opened.outside, f"requests to other hosts: {opened.outside}"


def _write_photo(path, index=3, size=PHOTO_SIZE):
    from magenta_style.data import demo_images

    image = demo_images.content_image(index, size=size)
    Image.fromarray((image * 255).round().astype(np.uint8)).save(path)
    return np.asarray(Image.open(path), np.float32) / 255.0


def _wait_for_status(page, text):
    """Waits until the status line holds `text`; returns the line."""
    page.wait_for_function(
        "text => document.querySelector('#status').innerText.includes(text)", arg=text,
        timeout=WAIT_MS)
    return page.inner_text("#status")


def _upload_photo(page, path, expect=" ms"):
    """Uploads `path` as the photo; waits until the status line holds `expect` (default:
    a result's model time) and returns the line."""
    page.set_input_files("#photo input[type=file]", str(path))
    return _wait_for_status(page, expect)


def _image(page, selector):
    """The image shown in `selector`: float32 [H, W, 3] in [0, 1]."""
    src = page.get_attribute(f"{selector} img", "src")
    data = page.request.get(src).body()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32) / 255.0


def _wait_for_new_result(page, old_src):
    page.wait_for_function(
        "old => { const i = document.querySelector('#result img');"
        " return i && i.src && i.src !== old; }", arg=old_src, timeout=WAIT_MS)


def _move_slider(page, elem_id, value):
    page.locator(f"#{elem_id} input[type=range]").fill(str(value))


def _screenshot(page, name):
    if SCREENSHOTS:
        os.makedirs(SCREENSHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SCREENSHOTS, name), full_page=False)


def _diff(a, b):
    return float(np.mean(np.abs(a - b)))


def test_a_browser_gone_mid_upload_is_one_log_line():
    """uvicorn logs a request's exception with its traceback; a closed tab is not one."""
    requests = pytest.importorskip("starlette.requests")
    from magenta_style import demo  # pylint: disable=import-outside-toplevel
    try:
        raise requests.ClientDisconnect()
    except requests.ClientDisconnect:
        record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1,
                                   "Exception in ASGI application\n", (), sys.exc_info())
    assert demo._ClientGoneFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "Traceback" not in text and "closed its connection" in text
    try:
        raise ValueError("a real bug")
    except ValueError:
        other = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1,
                                  "Exception in ASGI application\n", (), sys.exc_info())
    demo._ClientGoneFilter().filter(other)
    assert "Traceback" in logging.Formatter().format(other)


def test_page_loads_offline_with_the_model_styles(pages):
    page = pages.open()
    for tab in ("Paint styles", "Webcam live", "Photo"):
        page.get_by_role("tab", name=tab).click()
    time.sleep(3)  # Gradio keeps a connection open: the network is never idle.
    labels = [page.inner_text(f"#style-{i} label") for i in range(2)]
    if not os.environ.get("MAGENTA_STYLE_DEMO_CHECKPOINT"):
        assert labels == ["ink", "fire"]
    assert pages.local, "the route check saw no request at all"
    assert not pages.outside


def test_upload_a_photo_and_move_a_slider(pages, tmp_path, reference):
    page = pages.open()
    photo = _write_photo(tmp_path / "photo.png")
    _upload_photo(page, tmp_path / "photo.png")
    first = _image(page, "#result")
    src = page.get_attribute("#result img", "src")
    assert first.shape == photo.shape
    # Style 0 alone, as the one inference path computes it (8-bit PNG rounding apart).
    assert _diff(first, reference(photo, "0")) < 0.01
    _move_slider(page, "style-0", 0)
    _move_slider(page, "style-1", 1)
    _wait_for_new_result(page, src)
    page.wait_for_function("() => document.querySelector('#status').innerText"
                           ".includes(' 1, strength') && !document.querySelector('#status')"
                           ".innerText.includes(' 0 ')", timeout=WAIT_MS)
    second = _image(page, "#result")
    assert _diff(second, first) > 0.02, "the result did not change with the sliders"
    assert _diff(second, reference(photo, "1")) < 0.01
    # Unnormalized mixes, as --which_styles={0:0.5,1:1}.
    src = page.get_attribute("#result img", "src")
    _move_slider(page, "style-0", 0.5)
    _wait_for_new_result(page, src)
    page.wait_for_function("() => document.querySelector('#status').innerText"
                           ".includes(' 0.5, ')", timeout=WAIT_MS)
    assert _diff(_image(page, "#result"), reference(photo, "{0:0.5,1:1}")) < 0.01
    _screenshot(page, "demo_photo.png")
    with page.expect_download(timeout=WAIT_MS) as download:
        page.click("#download")
    saved = np.asarray(Image.open(download.value.path()).convert("RGB"), np.float32) / 255
    assert saved.shape == photo.shape
    assert _diff(saved, _image(page, "#result")) < 0.002


def test_paint_two_styles_in_two_regions(pages, tmp_path, reference):
    page = pages.open()
    photo = _write_photo(tmp_path / "photo.png", index=1)
    _upload_photo(page, tmp_path / "photo.png")
    # Unpainted parts take the sliders: style 1.
    _move_slider(page, "style-0", 0)
    _move_slider(page, "style-1", 1)
    page.wait_for_function("() => document.querySelector('#status').innerText"
                           ".includes(' 1, strength')", timeout=WAIT_MS)
    page.get_by_role("tab", name="Paint styles").click()
    page.click("#paint button[aria-label='Brush']")
    page.click("#paint button[aria-label='Color']")
    page.locator("#paint .color").first.click()  # Style 0's colour.
    page.keyboard.press("Escape")
    # The photo is centred in the canvas at the zoom the editor shows.
    box = page.locator("#paint canvas").last.bounding_box()
    zoom = float(re.search(r"(\d+)%", page.inner_text("#paint")).group(1)) / 100
    side = PHOTO_SIZE * zoom
    left = box["x"] + (box["width"] - side) / 2
    top = box["y"] + (box["height"] - side) / 2
    # Paint the left third of the photo in style 0: a few strokes of a wide brush (each
    # stroke sends the map to the server).
    page.click("#paint button[aria-label='Brush Size']")
    page.locator("#paint input[type=range]").fill(str(max(1, PHOTO_SIZE // 12)))
    page.keyboard.press("Escape")
    for fraction in (0.06, 0.16, 0.26):
        x = left + side * fraction
        page.mouse.move(x, top + 1)
        page.mouse.down()
        page.mouse.move(x, top + side - 1, steps=4)
        page.mouse.up()
    _screenshot(page, "demo_paint.png")

    ref0, ref1 = reference(photo, "0"), reference(photo, "1")
    cols = PHOTO_SIZE // 8  # Away from the border, whose outputs see both regions.

    def two_regions():
        result = _image(page, "#result")
        painted, rest = result[:, 1:cols], result[:, -cols:]
        return (_diff(painted, ref0[:, 1:cols]) < _diff(painted, ref1[:, 1:cols])
                and _diff(rest, ref1[:, -cols:]) < _diff(rest, ref0[:, -cols:]))

    deadline = time.monotonic() + WAIT_MS / 1000
    while not two_regions():
        assert time.monotonic() < deadline, (
            f"no two regions; status: {page.inner_text('#status')}")
        time.sleep(1)
    assert "painted style map" in page.inner_text("#status")


def test_webcam_streams_stylized_frames_with_fps(pages):
    page = pages.open()
    page.get_by_role("tab", name="Webcam live").click()
    page.locator("#webcam-size").get_by_text("128", exact=True).click()  # Fastest here.
    page.click("#camera button:has-text('Click to Access Webcam')")
    page.click("#camera button[aria-label='capture photo']", timeout=WAIT_MS)
    page.wait_for_function(
        "() => /[1-9][0-9.]* frames\\/s/.test(document.querySelector('#fps').innerText)",
        timeout=WAIT_MS)
    # Frames keep coming: three different ones (slowly, on a loaded machine).
    sources = set()
    deadline = time.monotonic() + WAIT_MS / 1000
    while len(sources - {None}) < 3 and time.monotonic() < deadline:
        sources.add(page.evaluate("() => document.querySelector('#live img')?.src"))
        time.sleep(0.02)
    text = page.inner_text("#fps")
    fps = float(re.search(r"([0-9.]+) frames/s", text).group(1))
    print(f"webcam: {text}")
    assert fps > 0
    assert len(sources - {None}) >= 3, "the stylized frames did not change"
    assert re.search(r"model \d+ ms per frame · 128x96", text), text
    _screenshot(page, "demo_webcam.png")


def _png_header(width, height):
    """A PNG whose header claims width x height, with no pixel data (a 'bomb')."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height,
                                                               8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


def test_bad_uploads_give_a_clear_message(pages, tmp_path):
    page = pages.open()
    notes = tmp_path / "notes.png"
    notes.write_text("not an image at all")
    status = _upload_photo(page, notes, expect="⚠️")
    assert "notes.png" in status and "not an image" in status, status

    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header(30000, 30000))
    status = _upload_photo(page, huge, expect="huge.png")
    assert "too large" in status and "⚠️" in status, status

    # A broken style map: one line, and the page goes on working.
    _write_photo(tmp_path / "photo.png")
    _upload_photo(page, tmp_path / "photo.png")
    page.get_by_role("tab", name="Paint styles").click()
    bad_map = tmp_path / "map.png"
    bad_map.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    page.set_input_files("#map-upload input[type=file]", str(bad_map))
    page.wait_for_function("() => document.querySelector('#status').innerText"
                           ".includes('style map')", timeout=WAIT_MS)
    assert "map.png" in page.inner_text("#status")
    assert not page.locator("text=Traceback").count()


def test_two_tabs_at_once(pages, tmp_path):
    first, second = pages.open(), pages.open()
    for index, page in ((0, first), (2, second)):
        _write_photo(tmp_path / f"photo{index}.png", index=index)
        page.set_input_files("#photo input[type=file]", str(tmp_path / f"photo{index}.png"))
    for page in (first, second):
        page.wait_for_selector("#result img", timeout=WAIT_MS)
        page.wait_for_function("() => document.querySelector('#status').innerText"
                               ".includes('model')", timeout=WAIT_MS)
    assert _diff(_image(first, "#result"), _image(second, "#result")) > 0.02


def _arbitrary_checkpoint(fixtures_dir):
    return str(fixtures_dir / "magenta" / "arbitrary_s5" / "model.ckpt")


@pytest.fixture(scope="module")
def arbitrary_server(fixtures_dir, tmp_path_factory):
    """The demo on the fixture's Magenta arbitrary-style checkpoint: its URL."""
    yield from _serve(_arbitrary_checkpoint(fixtures_dir), tmp_path_factory)


def _write_style(path, index):
    from magenta_style.data import demo_images

    image = demo_images.style_image(index, size=48)
    Image.fromarray((image * 255).round().astype(np.uint8)).save(path)
    return str(path)


def test_arbitrary_model_takes_style_images_per_tab(browser, arbitrary_server, tmp_path,
                                                    fixtures_dir):
    from magenta_style.inference import style_images
    from magenta_style.inference import stylizer

    pages = Pages(browser, arbitrary_server)
    try:
        page, other = pages.open(), pages.open()
        # The page starts with the project's drawn textures, one slider each.
        assert page.inner_text("#style-0 label") == "stripes"
        photo = _write_photo(tmp_path / "photo.png")
        _upload_photo(page, tmp_path / "photo.png")
        styles = [_write_style(tmp_path / "b_wave.png", 1), _write_style(tmp_path / "a_ink.png", 3)]
        src = page.get_attribute("#result img", "src")
        page.set_input_files("#style-upload input[type=file]", styles)
        _wait_for_new_result(page, src)
        _wait_for_status(page, "mix b_wave 1")
        assert [page.inner_text(f"#style-{i} label") for i in range(2)] == ["b_wave", "a_ink"]
        assert not page.locator("#style-2").is_visible()
        network, model_config = stylizer.load(_arbitrary_checkpoint(fixtures_dir))
        model, bound_config = style_images.bind(network, model_config, styles)

        def reference(spec):
            options = stylizer.StylizeOptions(styles=spec)
            return stylizer.Stylizer(model, bound_config, options)(photo)[0]

        first = _image(page, "#result")
        assert _diff(first, reference("0")) < 0.01
        src = page.get_attribute("#result img", "src")
        _move_slider(page, "style-0", 0)
        _move_slider(page, "style-1", 1)
        _wait_for_new_result(page, src)
        page.wait_for_function("() => document.querySelector('#status').innerText"
                               ".includes('a_ink 1') && !document.querySelector('#status')"
                               ".innerText.includes('b_wave')", timeout=WAIT_MS)
        assert _diff(_image(page, "#result"), reference("1")) < 0.01
        # The other tab keeps the page's own style images.
        assert other.inner_text("#style-0 label") == "stripes"
        # An unusable style image: one line naming it; the page keeps its styles.
        notes = tmp_path / "notes.png"
        notes.write_text("not an image at all")
        page.set_input_files("#style-upload input[type=file]", [str(notes)])
        status = _wait_for_status(page, "⚠️")
        assert "notes.png" in status and "not an image" in status, status
        assert page.inner_text("#style-1 label") == "a_ink"
    finally:
        pages.close()
    assert not pages.outside, f"requests to other hosts: {pages.outside}"
