r"""A local web demo: mix styles with sliders, paint where each style goes, the webcam live.

    pip install -e ".[demo]"
    python -m magenta_style.demo --checkpoint=/tmp/magenta_style_quickstart/train

prints the address to open (http://127.0.0.1:7860 by default). `--checkpoint` is any
model the project loads: a training directory, a native or Magenta checkpoint, an export.

The page (Gradio, see docs/demo.md):
- Photo: upload one (or take it with the webcam); the result follows the controls.
- Styles: one slider per style, named from the model's metadata, mixed as given (not
  normalized, as --which_styles={0:0.3,2:0.7}); strength; colour preservation.
- Paint styles: paint on the photo with one brush colour per style (or upload a map in
  those colours); unpainted parts take the sliders' mix.
- Webcam live: every frame stylized at a chosen size; frames per second on the page.
  Frames that arrive while the model is busy are dropped, never queued.
- Download the result (PNG); the model's style grid.
- Magenta's arbitrary-style model: upload up to MAX_STYLE_IMAGES style images (the
  page starts with --style_images, or the project's drawn textures); each gets a
  slider and a brush colour. Each browser tab keeps its own style images.

Everything runs through the one inference path (magenta_style.inference: stylizer.load,
StylizeOptions, the pixel caps) via inference.live. The server listens on --host
(127.0.0.1) only, never makes a Gradio share link, and sends nothing to other hosts:
Gradio's analytics and version check are off and its theme uses the fonts it bundles.
"""
# Before anything imports TensorFlow or Gradio: TensorFlow reads its C++ log level once,
# Gradio and huggingface_hub read these when imported.
import os  # pylint: disable=g-bad-import-order

from magenta_style import cli  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

# Offline: no analytics, no version check, no Hugging Face Hub calls.
OFFLINE_ENVIRONMENT = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}

import collections  # pylint: disable=g-import-not-at-top,wrong-import-position
import dataclasses  # pylint: disable=g-import-not-at-top,wrong-import-position
import logging  # pylint: disable=g-import-not-at-top,wrong-import-position
import sys  # pylint: disable=g-import-not-at-top,wrong-import-position
import tempfile  # pylint: disable=g-import-not-at-top,wrong-import-position
import threading  # pylint: disable=g-import-not-at-top,wrong-import-position
import uuid  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from magenta_style import config as config_lib  # pylint: disable=g-import-not-at-top
from magenta_style.networks import transformer  # pylint: disable=g-import-not-at-top

PROG = "magenta_style.demo"
# The webcam sizes the page offers (longer side, pixels).
WEBCAM_SIZES = (128, 192, 256, 320, 384, 512)
# Demo content images (data/demo_images.py) in the style grid.
GRID_CONTENT = (0, 2)
# The most style images (sliders, brush colours) an arbitrary-style model's page takes.
MAX_STYLE_IMAGES = 8
# Tabs whose uploaded style images are kept (each holds a compiled copy of the calls).
MAX_STYLE_SESSIONS = 8
_INSTALL_HINT = 'the demo needs Gradio: pip install -e ".[demo]"'


def _define_flags(fv):
    cli.define_field_flags(fv, config_lib.DemoConfig, {
        "checkpoint": "Model: a training directory, a native or Magenta checkpoint, or an "
                      "export.",
        "host": "Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every "
                "interface, no authentication).",
        "port": "TCP port (0: any free port).",
        "photo_size": "Photos are scaled down to this longer side (pixels) before "
                      "stylizing.",
        "webcam_size": "Default longer side of webcam frames (pixels); the page offers "
                       + ", ".join(map(str, WEBCAM_SIZES)) + ".",
        "webcam_fps": "Most webcam frames per second sent (never one while the previous "
                      "is being stylized).",
        "compute_dtype": "What the network computes in (bfloat16: about 2x faster on CPUs "
                         "with AVX512_BF16 or AMX).",
        "max_upload_pixels": "Uploads with more pixels are refused before decoding.",
        "max_upload_mb": "Uploads larger than this (MB) are refused.",
        "grid_size": "Cell size of the style grid on the page (pixels).",
        "style_images": "Arbitrary-style model only: the style images the page starts with "
                        "(comma-separated files, folders or quoted globs; default: the "
                        "project's drawn textures).",
    }, choices={"compute_dtype": transformer.COMPUTE_DTYPES})


def _flag_values():
    fv = flags.FlagValues()  # Private: importing this module defines no global flags.
    _define_flags(fv)
    return fv


def usage_text():
    return f"{__doc__}\nFlags:\n{_flag_values().get_help()}\n"


def parse_args(argv):
    """argv -> config.DemoConfig (validated; nothing is read). cli.UsageError if bad."""
    fv = cli.parse_flag_values(_flag_values(), argv, required=("checkpoint",))
    values = {f.name: fv[f.name].value for f in dataclasses.fields(config_lib.DemoConfig)}
    try:
        return config_lib.DemoConfig(**values)
    except config_lib.ConfigError as e:
        raise cli.UsageError(str(e)) from None


def import_gradio():
    """Imports Gradio offline (OFFLINE_ENVIRONMENT); cli.UsageError when not installed."""
    for name, value in OFFLINE_ENVIRONMENT.items():
        os.environ[name] = value
    try:
        import gradio  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise cli.UsageError(_INSTALL_HINT) from None
    if not hasattr(gradio, "Blocks"):  # A half-removed install leaves a bare namespace.
        raise cli.UsageError(_INSTALL_HINT)
    return gradio


# ---------------------------------------------------------------------------------------
# The app: what each control does (no Gradio here, so it can be tested without it).


class DemoApp:
    """The demo's callbacks over LiveStylizers; each returns what the page shows.

    An N-style model has one LiveStylizer (`live`). Magenta's arbitrary-style model
    starts bound to some style images (`live`); a tab that uploads its own gets a
    LiveStylizer of its own (`bind_style_images`), found again by its key.

    Args:
      live: inference.live.LiveStylizer, the page's model at start.
      demo_config: config.DemoConfig.
      output_dir: where downloadable results are written.
      rebind: for an arbitrary-style model, a function (style image paths, their
        names) -> LiveStylizer of the same network bound to them
        (style_images.StyleImagesError for an unusable image); None for other models.
    """

    def __init__(self, live, demo_config, output_dir, rebind=None):
        from magenta_style.inference import live as live_lib  # pylint: disable=import-outside-toplevel
        self.live = live
        self.config = demo_config
        self.output_dir = output_dir
        self.names = live.style_names()
        self._rebind = rebind
        # Sliders and brush colours: one per style, or room for uploaded style images.
        self.slots = MAX_STYLE_IMAGES if rebind is not None else live.num_styles
        self.colors = live_lib.palette(self.slots)
        self._sessions = collections.OrderedDict()  # key -> LiveStylizer, oldest first
        self._sessions_lock = threading.Lock()

    @property
    def takes_style_images(self):
        """True for an arbitrary-style model: the page takes style image uploads."""
        return self._rebind is not None

    def default_weights(self):
        """The sliders at start: the first style at 1, the others at 0."""
        return [1.0] + [0.0] * (self.slots - 1)

    def live_for(self, key):
        """The LiveStylizer of a tab's uploaded style images (`key`), or the page's."""
        with self._sessions_lock:
            return self._sessions.get(key, self.live)

    def bind_style_images(self, paths, names=None):
        """Uploaded style images -> (key of their LiveStylizer, its style names).

        Args:
          paths: 1..MAX_STYLE_IMAGES image files (the server's temporary copies).
          names: the user's file names, to name them in messages and sliders.

        Raises:
          LiveError: not an arbitrary-style model, too many files, or a file that
            cannot be used (one line, naming the user's file).
        """
        from magenta_style.inference import live as live_lib  # pylint: disable=import-outside-toplevel
        from magenta_style.inference import style_images  # pylint: disable=import-outside-toplevel
        if not self.takes_style_images:
            raise live_lib.LiveError("this model's styles are fixed: it takes no style images")
        paths = list(paths)
        names = list(names or [os.path.basename(p) for p in paths])
        if not 1 <= len(paths) <= MAX_STYLE_IMAGES:
            raise live_lib.LiveError(f"give 1 to {MAX_STYLE_IMAGES} style images, got "
                                     f"{len(paths)}")
        try:
            live = self._rebind(paths, names)
        except style_images.StyleImagesError as e:
            # The message names the server's temporary copy; name the user's file instead.
            message = str(e).replace("--style_images: ", "style image ")
            for path, name in zip(paths, names):
                message = message.replace(str(path), name)
            raise live_lib.LiveError(message) from None
        key = uuid.uuid4().hex
        with self._sessions_lock:
            self._sessions[key] = live
            while len(self._sessions) > MAX_STYLE_SESSIONS:
                self._sessions.popitem(last=False)
        return key, live.style_names()

    def load_photo(self, path, name=None):
        """An uploaded file -> (float32 [h, w, 3] photo, status line). LiveError if bad."""
        from magenta_style.inference import live as live_lib  # pylint: disable=import-outside-toplevel
        photo = live_lib.load_photo(path, self.config.photo_size,
                                    self.config.max_upload_pixels, name=name)
        height, width = photo.shape[:2]
        return photo, f"photo {name or os.path.basename(path)}: stylized at {width}x{height}"

    def options(self, weights, strength, preserve_colors, layer=None, blur=0.0, live=None):
        """The controls as StylizeOptions (a painted `layer` gives a style map); `live`'s
        styles take the first sliders and brush colours (default: the page's model)."""
        from magenta_style.inference import live as live_lib  # pylint: disable=import-outside-toplevel
        from magenta_style.inference import stylizer  # pylint: disable=import-outside-toplevel
        count = (live or self.live).num_styles
        weights = list(weights)[:count]
        style_map = None
        if layer is not None:
            style_map = live_lib.painted_style_map(layer, weights, self.colors[:count], blur)
        styles = None if style_map is not None else live_lib.mix_spec(weights)
        return stylizer.StylizeOptions(styles=styles, strength=float(strength),
                                       preserve_colors=bool(preserve_colors),
                                       style_map=style_map)

    def stylize_photo(self, photo, options, live=None):
        """(path of the result's PNG for the image and for the download, status line);
        `live` as in `options`.

        The image is shown from that uniquely named file, not handed to Gradio as an
        array: Gradio caches an array under a hash of its bytes and rewrites that file on
        every hit, so two tabs making the same picture truncated a file the server was
        sending ("Too much data for declared Content-Length")."""
        from magenta_style.media import images  # pylint: disable=import-outside-toplevel
        live = live or self.live
        result = live(photo, options)
        # A new name each time: a file replaced while the server sends it would no longer
        # match the Content-Length it declared (two tabs, or a slider moved meanwhile).
        path = os.path.join(self.output_dir, f"stylized_{uuid.uuid4().hex[:12]}.png")
        images.save_image_atomic(path, result.image)
        height, width = result.image.shape[:2]
        what = "painted style map" if options.style_map is not None else _describe_mix(
            options.styles, live.style_names())
        return path, path, (f"{width}x{height}, {what}, strength {options.strength:g}"
                           f"{', colours kept' if options.preserve_colors else ''}: model "
                           f"{result.seconds * 1000:.0f} ms")

    def stylize_frame(self, meter, frame, size, options, live=None):
        """One webcam frame -> (uint8 result, fps line), or None when the model was busy
        (the frame is dropped and counted in `meter`, the session's live.FpsMeter)."""
        from magenta_style.inference import live as live_lib  # pylint: disable=import-outside-toplevel
        from magenta_style.media import images  # pylint: disable=import-outside-toplevel
        rgb = live_lib.fit_image(frame, int(size))
        result = (live or self.live)(rgb, options, block=False)
        if result is None:
            meter.dropped += 1
            return None
        meter.tick()
        height, width = rgb.shape[:2]
        return images.to_uint8(result.image), (
            f"**{meter.fps():.1f} frames/s** shown · model {result.seconds * 1000:.0f} ms "
            f"per frame · {width}x{height} · {meter.dropped} dropped while busy")

    def style_grid(self):
        """float32 grid: demo content images (rows) in every style (columns)."""
        import numpy as np  # pylint: disable=import-outside-toplevel
        from magenta_style.data import demo_images  # pylint: disable=import-outside-toplevel
        from magenta_style.inference import stylizer  # pylint: disable=import-outside-toplevel
        from magenta_style.training import evaluate_lib  # pylint: disable=import-outside-toplevel
        size = self.config.grid_size
        content = np.stack([demo_images.content_image(i, size=size) for i in GRID_CONTENT])
        batch = stylizer.Stylizer(self.live.model, self.live.model_config)
        stylized = np.stack([batch(image) for image in content], axis=1)
        return evaluate_lib.style_grid(stylized, content)

    def legend_markdown(self, names=None):
        """The brush colour of each style (default: the page's styles), as Markdown."""
        return " ".join(
            f'<span style="display:inline-block;padding:2px 8px;margin:2px;border-radius:4px;'
            f'background:{color};color:#fff;text-shadow:0 0 2px #000">{_html(name)}</span>'
            for color, name in zip(self.colors, names or self.names))


def _describe_mix(spec, names):
    return "mix " + ", ".join(f"{names[s]} {w:g}" for s, w in zip(spec.styles, spec.weights))


def _html(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _error_line(e):
    return "⚠️ " + " ".join(str(e).split())


# ---------------------------------------------------------------------------------------
# The page.


def build_page(gr, app, model_label, grid):
    """The Gradio Blocks of the demo.

    Args:
      gr: the gradio module.
      app: DemoApp.
      model_label: str, shown in the title.
      grid: float32 style grid image or None.

    Returns:
      gr.Blocks.
    """
    from magenta_style.inference import live as live_lib  # pylint: disable=import-outside-toplevel
    from magenta_style.media import images  # pylint: disable=import-outside-toplevel
    config = app.config
    names = app.names
    user_errors = (live_lib.LiveError,)

    def safe(fn, outputs):
        """Runs a callback; a user error or anything unexpected becomes the status line,
        never a traceback page (the outputs it does not set keep their values)."""
        def wrapped(*args):
            try:
                return fn(*args)
            except user_errors as e:
                return [gr.skip()] * (outputs - 1) + [_error_line(e)]
            except Exception as e:  # pylint: disable=broad-except
                print(f"{PROG}: {type(e).__name__}: {e}", file=sys.stderr)
                return [gr.skip()] * (outputs - 1) + [_error_line(
                    f"could not stylize this ({type(e).__name__}: {e})")]
        return wrapped

    def in_order(fn, outputs, always=0):
        """`fn` with this tab's live.ResultOrder as its first input: a result that a newer
        call has overtaken is dropped, except its first `always` outputs (the state an
        upload sets)."""
        def wrapped(order_value, *args):
            ticket = order_value.start()
            result = fn(*args)
            if order_value.may_show(ticket):
                return result
            return list(result[:always]) + [gr.skip()] * (outputs - always)
        return wrapped

    with gr.Blocks(title="magenta_style demo", analytics_enabled=False) as page:
        photo_state = gr.State(None)
        order = gr.State(live_lib.ResultOrder)  # Called per session: one per tab.
        gr.Markdown(f"## magenta_style demo\n{_html(model_label)}")
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tabs():
                    with gr.Tab("Photo", id="photo-tab"):
                        photo = gr.Image(label="Photo: upload, paste or take one",
                                         type="filepath",
                                         sources=["upload", "webcam", "clipboard"],
                                         elem_id="photo")
                    # Rendered while hidden, so that the photo reaches the editor.
                    with gr.Tab("Paint styles", id="paint-tab", render_children=True):
                        gr.Markdown("Paint where each style goes, one brush colour per "
                                    "style; unpainted parts take the sliders' mix.")
                        legend = gr.HTML(app.legend_markdown(), elem_id="legend")
                        editor = gr.ImageEditor(
                            label="Style map", type="numpy", image_mode="RGBA",
                            sources=[], transforms=[], layers=False,
                            brush=gr.Brush(colors=app.colors, default_color=app.colors[0],
                                           color_mode="fixed"),
                            elem_id="paint")
                        blur = gr.Slider(0, 20, value=0, step=0.5,
                                         label="Soft edges (pixels)", elem_id="blur")
                        with gr.Row():
                            map_upload = gr.File(label="Or upload a map in these colours "
                                                 "(transparent or grey: the sliders' mix)",
                                                 file_types=["image"], elem_id="map-upload")
                            clear_map = gr.Button("Clear the map", elem_id="clear-map")
                    with gr.Tab("Webcam live", id="webcam-tab"):
                        gr.Markdown("Start the webcam: each frame is stylized with the "
                                    "controls on the right; frames that come while the "
                                    "model is busy are dropped.")
                        size = gr.Radio(list(WEBCAM_SIZES), value=config.webcam_size,
                                        label="Frame size (longer side, pixels)",
                                        elem_id="webcam-size")
                        # VGA frames: enough for every size offered, and a 1920x1440
                        # frame (the browser's default) costs more to send than to stylize.
                        camera = gr.Image(label="Webcam", sources=["webcam"], streaming=True,
                                          type="numpy", elem_id="camera",
                                          webcam_options=gr.WebcamOptions(constraints={
                                              "video": {"width": {"ideal": 640},
                                                        "height": {"ideal": 480}},
                                              "audio": False}))
                        live_out = gr.Image(label="Stylized live", interactive=False,
                                            elem_id="live", format="jpeg")
                        fps = gr.Markdown("", elem_id="fps")
            with gr.Column(scale=1):
                # The style controls: a slider per style. An arbitrary-style model has
                # MAX_STYLE_IMAGES sliders, those past its style images hidden.
                styles_key = gr.State(None)  # This tab's uploaded style images, if any.
                if app.takes_style_images:
                    style_upload = gr.File(
                        label=f"Style images: upload 1 to {MAX_STYLE_IMAGES} (any painting "
                              "or texture)", file_count="multiple", file_types=["image"],
                        type="filepath", elem_id="style-upload")
                with gr.Group(elem_id="styles"):
                    sliders = [gr.Slider(0, 1, value=w, step=0.05,
                                         label=names[i] if i < len(names) else f"style {i}",
                                         visible=i < len(names), elem_id=f"style-{i}")
                               for i, w in enumerate(app.default_weights())]
                strength = gr.Slider(0, 1, value=1, step=0.05,
                                     label="Strength (0: the photo, 1: the full style)",
                                     interactive=app.live.has_strength, elem_id="strength")
                preserve = gr.Checkbox(False, label="Keep the photo's colours",
                                       elem_id="preserve")
                result = gr.Image(label="Result", interactive=False, format="png",
                                  elem_id="result")
                download = gr.DownloadButton("Download PNG", value=None, elem_id="download")
                status = gr.Markdown("Upload a photo to start.", elem_id="status")
        with gr.Accordion("Style grid of this model", open=False):
            if grid is not None:
                gr.Image(images.to_uint8(grid), label="Demo images (left) in every style",
                         interactive=False, format="png", elem_id="style-grid")
            gr.Markdown(" · ".join(f"**{i}**: {_html(n)}" for i, n in enumerate(names)))

        # -- Photo and painted map --------------------------------------------------
        def on_photo(payload):
            if payload is None:
                return None, None, None, None, "Upload a photo to start."
            path = payload.get("path") if isinstance(payload, dict) else payload
            name = (payload.get("orig_name") if isinstance(payload, dict) else None) or None
            image, line = app.load_photo(path, name=name)
            background = images.to_uint8(image)
            return image, {"background": background, "layers": [], "composite": background}, \
                None, None, line

        photo.change(safe(on_photo, 5), photo,
                     [photo_state, editor, result, download, status], preprocess=False,
                     concurrency_limit=2)

        map_layer = gr.State(None)

        def on_map_upload(file):
            if file is None:
                return None, "map removed"
            path = file if isinstance(file, str) else file.get("path")
            name = os.path.basename(path)
            rgb, alpha = images.load_image(path, max_pixels=config.max_upload_pixels)
            import numpy as np  # pylint: disable=import-outside-toplevel
            rgba = np.concatenate([rgb, (np.ones_like(rgb[..., :1]) if alpha is None
                                         else alpha[..., None])], axis=-1)
            return images.to_uint8(rgba), f"map {name}: {rgb.shape[1]}x{rgb.shape[0]}"

        def map_upload_safe(file):
            try:
                return on_map_upload(file)
            except images.ImageError as e:
                return None, _error_line(f"style map: {e}")

        def stylize(photo_value, editor_value, uploaded_map, blur_value, strength_value,
                    preserve_value, key, *weights):
            if photo_value is None:
                return gr.skip(), gr.skip(), "Upload a photo to start."
            layer = uploaded_map
            if layer is None and editor_value and editor_value.get("layers"):
                layer = _merge_layers(editor_value["layers"])
            live = app.live_for(key)
            options = app.options(weights, strength_value, preserve_value, layer, blur_value,
                                  live=live)
            return app.stylize_photo(photo_value, options, live=live)

        controls = [photo_state, editor, map_layer, blur, strength, preserve,
                    styles_key] + sliders
        run = in_order(safe(stylize, 3), 3)
        ordered_controls = [order] + controls
        map_upload.change(map_upload_safe, map_upload, [map_layer, status]).then(
            run, ordered_controls, [result, download, status], concurrency_limit=2)
        clear_map.click(lambda image: (None, None if image is None else {
            "background": images.to_uint8(image), "layers": [],
            "composite": images.to_uint8(image)}), photo_state, [map_layer, editor])
        photo_state.change(run, ordered_controls, [result, download, status],
                           concurrency_limit=2, show_progress="minimal")
        for control in sliders + [strength, preserve, blur]:
            control.change(run, ordered_controls, [result, download, status],
                           concurrency_limit=2, show_progress="hidden",
                           trigger_mode="always_last")
        editor.change(run, ordered_controls, [result, download, status], concurrency_limit=2,
                      show_progress="hidden", trigger_mode="always_last")

        # -- Style images (arbitrary-style model) -------------------------------------
        if app.takes_style_images:
            def on_style_upload(files, photo_value, editor_value, uploaded_map, blur_value,
                                strength_value, preserve_value):
                if not files:  # Removed: back to the page's style images.
                    key, style_names, line = None, names, "style images: the page's own"
                else:  # Gradio's copies keep the user's file names.
                    paths = [f if isinstance(f, str) else f.name for f in files]
                    key, style_names = app.bind_style_images(
                        paths, [os.path.basename(p) for p in paths])
                    line = f"style images: {', '.join(style_names)}"
                weights = app.default_weights()
                updates = [gr.update(label=style_names[i], visible=True, value=w)
                           if i < len(style_names) else gr.update(visible=False, value=0)
                           for i, w in enumerate(weights)]
                shown = [gr.skip(), gr.skip(), line]
                if photo_value is not None:  # Stylized here: an error line stays shown.
                    image, path, what = stylize(photo_value, editor_value, uploaded_map,
                                                blur_value, strength_value, preserve_value,
                                                key, *weights)
                    shown = [image, path, f"{line} · {what}"]
                return [key, app.legend_markdown(style_names)] + updates + shown

            outputs = len(sliders) + 5
            style_upload.change(
                in_order(safe(on_style_upload, outputs), outputs, always=len(sliders) + 2),
                [order, style_upload] + controls[:6],
                [styles_key, legend] + sliders + [result, download, status],
                concurrency_limit=2)

        # -- Webcam -------------------------------------------------------------------
        meter = gr.State(live_lib.FpsMeter)  # Called per session: one meter per tab.

        def on_frame(frame, size_value, meter_value, strength_value, preserve_value, key,
                     *weights):
            if frame is None:
                return gr.skip(), gr.skip()
            try:
                live = app.live_for(key)
                options = app.options(weights, strength_value, preserve_value, live=live)
                shown = app.stylize_frame(meter_value, frame, size_value, options, live=live)
            except user_errors as e:
                return gr.skip(), _error_line(e)
            if shown is None:  # The model was busy: the frame is dropped.
                return gr.skip(), gr.skip()
            return shown

        camera.stream(on_frame, [camera, size, meter, strength, preserve, styles_key] + sliders,
                      [live_out, fps], stream_every=1.0 / config.webcam_fps,
                      concurrency_limit=None, show_progress="hidden")
        size.change(lambda meter_value: meter_value.reset(), meter, None)
    return page


def _merge_layers(layers):
    """The editor's RGBA layers merged top over bottom: uint8 [H, W, 4]."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    merged = None
    for layer in layers:
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[-1] != 4:
            continue
        if merged is None or merged.shape != layer.shape:
            merged = layer.copy()
            continue
        painted = layer[..., 3:] > 0
        merged = np.where(painted, layer, merged)
    return merged


# ---------------------------------------------------------------------------------------
# The command.


def load_model(demo_config, output_dir):
    """The page's model: (model, model_config, rebind).

    An N-style model comes as stylizer.load gives it, and rebind is None. Magenta's
    arbitrary-style model comes bound to --style_images (default: the project's drawn
    style textures, written to `output_dir`), and rebind(paths, names) gives a
    live.LiveStylizer of it bound to other style images. Both compute in
    --compute_dtype.

    Raises:
      cli.UsageError: the model or a style image cannot be used (one line).
    """
    from magenta_style.data import demo_images  # pylint: disable=import-outside-toplevel
    from magenta_style.inference import live as live_lib  # pylint: disable=import-outside-toplevel
    from magenta_style.inference import style_images  # pylint: disable=import-outside-toplevel
    from magenta_style.inference import stylizer  # pylint: disable=import-outside-toplevel
    from magenta_style.media import images  # pylint: disable=import-outside-toplevel
    from magenta_style.networks import arbitrary  # pylint: disable=import-outside-toplevel
    from magenta_style.networks import checkpoints  # pylint: disable=import-outside-toplevel
    try:
        model, model_config = stylizer.load(demo_config.checkpoint)
        if not style_images.is_arbitrary(model_config):
            if demo_config.style_images:
                raise cli.UsageError(
                    f"--style_images: --checkpoint holds an N-style model with "
                    f"{model_config.num_styles} style(s); its sliders choose them")
            return (transformer.with_compute_dtype(model, demo_config.compute_dtype),
                    model_config, None)
        if not isinstance(model, arbitrary.ArbitraryStyleNetwork):
            raise cli.UsageError("--checkpoint is an export of Magenta's arbitrary-style "
                                 "model; the demo takes its checkpoint (the painted style "
                                 "maps need it)")
        if demo_config.style_images:
            paths = style_images.expand(demo_config.style_images)
            if len(paths) > MAX_STYLE_IMAGES:
                raise cli.UsageError(f"--style_images: {len(paths)} images; the page takes "
                                     f"at most {MAX_STYLE_IMAGES}")
        else:
            paths = []
            for i, name in enumerate(demo_images.STYLE_NAMES):
                paths.append(os.path.join(output_dir, "styles", f"{name}.png"))
                os.makedirs(os.path.dirname(paths[-1]), exist_ok=True)
                images.save_image_atomic(paths[-1], demo_images.style_image(
                    i, size=arbitrary.DEFAULT_STYLE_IMAGE_SIZE))
        model, model_config = style_images.bind(model, model_config, paths,
                                                max_pixels=demo_config.max_upload_pixels)
        model = transformer.with_compute_dtype(model, demo_config.compute_dtype)
    except (checkpoints.CheckpointError, style_images.StyleImagesError, ValueError) as e:
        raise cli.UsageError(str(e)) from None

    def rebind(paths, names):
        return live_lib.LiveStylizer(*style_images.rebind(
            model, model_config, paths, demo_config.max_upload_pixels, names))

    return model, model_config, rebind


class _ClientGoneFilter(logging.Filter):
    """One line, not a traceback, when a browser goes away mid-request.

    A tab closed (or a page left) during an upload makes Starlette raise ClientDisconnect
    inside Gradio's upload route, and uvicorn logs any exception of a request with its
    traceback. Nothing failed on the server's side.
    """

    def filter(self, record):
        error = record.exc_info[1] if record.exc_info else None
        if type(error).__name__ == "ClientDisconnect":
            record.msg, record.args = f"{PROG}: a browser closed its connection mid-request", ()
            record.exc_info = record.exc_text = None
        return True


def run(demo_config, launch=True):
    """Loads the model, builds the page and serves it (blocks until Ctrl-C)."""
    gr = import_gradio()
    # Gradio checks its own server with httpx; those lines are noise on the console.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").addFilter(_ClientGoneFilter())
    from magenta_style.inference import live as live_lib  # pylint: disable=import-outside-toplevel
    output_dir = tempfile.mkdtemp(prefix="magenta_style_demo_")
    model, model_config, rebind = load_model(demo_config, output_dir)
    live = live_lib.LiveStylizer(model, model_config)
    kind = "style images" if rebind else "styles"
    print(f"{PROG}: {model_config.num_styles} {kind}, alpha {model_config.alpha:g}, "
          f"{demo_config.compute_dtype}; compiling and drawing the style grid", flush=True)
    live.warm_up()
    app = DemoApp(live, demo_config, output_dir, rebind)
    grid = app.style_grid()
    label = (f"Model `{demo_config.checkpoint}`: "
             + ("Magenta's arbitrary-style model (upload style images), " if rebind else
                f"{model_config.num_styles} styles, ")
             + f"alpha {model_config.alpha:g}, {demo_config.compute_dtype}")
    page = build_page(gr, app, label, grid)
    if not launch:
        return page
    page.queue(default_concurrency_limit=2)
    _, url, _ = page.launch(
        server_name=demo_config.host, server_port=demo_config.port or None, share=False,
        quiet=True, prevent_thread_lock=True, show_error=False, ssr_mode=False,
        max_file_size=demo_config.max_upload_mb * 2**20,
        allowed_paths=[output_dir], footer_links=[])
    print(f"{PROG}: open {url} (Ctrl-C to stop)", flush=True)
    try:
        page.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        page.close()
    return 0


def main(argv):
    """The command: argv (argv[0] the program name) -> exit status (2: usage error)."""
    return cli.run_command(argv, PROG, parse_args, run, usage_text,
                           interrupted="stopped")


def run_main():
    """Console entry point (`magenta-style-demo`)."""
    cli.quiet_tf_logging()
    cli.run_with_private_flags(main)


if __name__ == "__main__":
    run_main()

