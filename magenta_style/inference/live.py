"""Live stylization for the demo: one photo or webcam frame at a time.

The web demo (magenta_style/demo.py) turns what the page sends into the project's own
inputs and calls the model through the one inference path (stylizer.py):

- a photo is read with `images.load_image` under a pixel cap (nothing is decoded above
  it) and scaled down to the demo's working size (`fit_size`);
- the sliders become a `style_spec.StyleSpec` mix (weights not normalized, as
  `--which_styles={0:0.3,2:0.7}`); a painted layer becomes a `style_maps.StyleMap` whose
  colour mapping sends each brush colour to its style and unpainted pixels to the
  sliders' mix (`painted_style_map`);
- `LiveStylizer` applies a `stylizer.StylizeOptions` (styles or a style map, strength,
  colour preservation) with functions from `stylizer.make_interactive_fn`, compiled
  once per kind of call, so moving a control never retraces. Inputs are held to the
  model's untiled pixel cap (`stylizer.untiled_pixel_cap`).

One model call runs at a time (a lock): a webcam frame that arrives while the model is
busy is dropped (`block=False`), so the delay never grows beyond about one frame's
processing time; a photo waits its turn. Calls from one tab may still run at once (two
sliders moved in quick succession); `ResultOrder` keeps an older call's result from
replacing a newer one.
"""
import colorsys
import collections
import dataclasses
import os
import threading
import time

import numpy as np
from PIL import Image
import tensorflow as tf

from magenta_style.inference import style_maps
from magenta_style.inference import style_spec
from magenta_style.inference import stylizer
from magenta_style.media import images

# The mask colour of unpainted pixels in a painted style map; no brush colour is grey.
BACKGROUND_COLOR = "#808080"
# The first brush colours: far apart in RGB, and far from BACKGROUND_COLOR.
_FIRST_COLORS = ("#e6194b", "#1f5fe0", "#ffe119", "#3cb44b", "#f032e6", "#42d4f4",
                 "#f58231", "#911eb4")
# A stroke pixel counts as painted from this alpha on (brush edges are anti-aliased).
_PAINTED_ALPHA = 128


class LiveError(ValueError):
    """An input the demo cannot use; the message is one line, shown on the page."""


def fit_size(height, width, max_side):
    """(height, width) scaled down so that the longer side is at most `max_side`.

    Never scales up; each side is at least 1 pixel.
    """
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def fit_image(rgb, max_side):
    """An image scaled down (Lanczos) to fit `max_side`.

    Args:
      rgb: uint8 or float32 [H, W, 3] (float in [0, 1]); an alpha channel is dropped,
        a grey [H, W] image is repeated to RGB.
      max_side: int >= 1.

    Returns:
      float32 [h, w, 3] in [0, 1] with max(h, w) <= max_side.

    Raises:
      LiveError: not an image array.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4) or min(rgb.shape[:2]) < 1:
        raise LiveError(f"expected an RGB image, got an array of shape {rgb.shape}")
    rgb = rgb[..., :3]
    if rgb.dtype != np.uint8:
        rgb = images.to_uint8(np.asarray(rgb, np.float32))
    height, width = fit_size(rgb.shape[0], rgb.shape[1], max_side)
    if (height, width) != rgb.shape[:2]:
        rgb = np.asarray(Image.fromarray(rgb).resize((width, height), Image.LANCZOS))
    return rgb.astype(np.float32) / 255.0


def load_photo(path, max_side, max_pixels, name=None):
    """Reads an uploaded photo and scales it down to the demo's working size.

    Args:
      path: the uploaded file.
      max_side: int, the longest side stylized.
      max_pixels: int, files with more pixels are refused before decoding.
      name: what to call the file in messages (the user's file name), default its
        base name.

    Returns:
      float32 [h, w, 3] in [0, 1] (transparency dropped).

    Raises:
      LiveError: not an image, unreadable, or above `max_pixels` (one line, naming it).
    """
    name = name or os.path.basename(path)
    try:
        rgb, _ = images.load_image(path, max_pixels=max_pixels)
    except images.ImageError as e:
        # The message names the server's temporary copy; name the user's file instead.
        message = str(e)
        if message.startswith(str(path)):
            message = name + message[len(str(path)):]
        message = message.replace(" (raise it with --max_pixels if this is intended)",
                                  " (the demo's --max_upload_pixels)")
        raise LiveError(message) from None
    return fit_image(rgb, max_side)


def palette(num_styles):
    """One brush colour per style: list of "#rrggbb", all distinct and never grey."""
    colors = list(_FIRST_COLORS[:num_styles])
    for i in range(len(colors), num_styles):
        # Further colours go round the hue circle at two lightnesses.
        hue = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hls_to_rgb(hue, 0.4 if i % 2 else 0.6, 0.9)
        colors.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return colors


def mix_spec(weights):
    """The sliders' values as a StyleSpec mix (weights not normalized).

    Args:
      weights: sequence of float, one per style, each >= 0.

    Raises:
      LiveError: every weight is 0, or one is negative or not finite.
    """
    weights = [float(w) for w in weights]
    if any(not np.isfinite(w) or w < 0 for w in weights):
        raise LiveError(f"style weights must be finite and >= 0, got {weights}")
    pairs = [(s, w) for s, w in enumerate(weights) if w > 0]
    if not pairs:
        raise LiveError("every style slider is at 0: raise at least one")
    text = "{" + ",".join(f"{s}:{w:g}" for s, w in pairs) + "}"
    return style_spec.parse(text)


def painted_style_map(layer, weights, colors, blur=0.0):
    """A StyleMap from strokes painted in the brush `colors`, or None when nothing is.

    Painted pixels take the style of the nearest brush colour; unpainted pixels take the
    sliders' mix `weights`.

    Args:
      layer: uint8 [Hm, Wm, 4] RGBA strokes (alpha 0 where nothing is painted); any
        size, it is stretched to the photo.
      weights: the sliders, as `mix_spec`.
      colors: the brush colours, `palette(num_styles)`.
      blur: float >= 0, soft edges (Gaussian standard deviation in photo pixels).

    Returns:
      style_maps.StyleMap, or None when no pixel is painted.

    Raises:
      LiveError: the layer is not an RGBA image, or the sliders are all 0 while part
        of the photo is unpainted.
    """
    layer = np.asarray(layer)
    if layer.ndim != 3 or layer.shape[-1] != 4 or layer.dtype != np.uint8:
        raise LiveError(f"the painted layer must be an 8-bit RGBA image, got "
                        f"{layer.dtype} of shape {layer.shape}")
    painted = layer[..., 3] >= _PAINTED_ALPHA
    if not painted.any():
        return None
    background = np.array([int(BACKGROUND_COLOR[i:i + 2], 16) for i in (1, 3, 5)], np.uint8)
    mask = np.where(painted[..., None], layer[..., :3], background)
    entries = [f"{color}:{style}" for style, color in enumerate(colors)]
    if not painted.all():
        spec = mix_spec(weights)
        mix = ",".join(f"{s}:{w:g}" for s, w in zip(spec.styles, spec.weights))
        entries.insert(0, f"{BACKGROUND_COLOR}:{{{mix}}}")
    mapping = style_maps.parse_mapping(",".join(entries))
    return style_maps.StyleMap(mask=mask.astype(np.float32) / 255.0, mapping=mapping,
                             blur=float(blur))


class FpsMeter:
    """Frames per second over the last `window` seconds (frames shown, not received).

    Attributes:
      dropped: int, frames dropped because the model was busy (counted by the caller).
    """

    def __init__(self, window=2.0, clock=time.monotonic):
        self.window = window
        self.clock = clock
        self._times = collections.deque()
        self.dropped = 0

    def reset(self):
        """Forgets every frame (after a change of frame size)."""
        self._times.clear()
        self.dropped = 0

    def tick(self):
        """Records one frame now."""
        now = self.clock()
        self._times.append(now)
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()

    def fps(self):
        """float: frames per second in the window (0 before two frames)."""
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


class ResultOrder:
    """Keeps one tab's pictures in the order their requests were made.

    Two controls moved in quick succession start two stylizations that run at once and
    may finish in either order; the older one must not overwrite the newer picture or
    status line. Each call takes a ticket when it starts (`start`) and shows its result
    only if no call that started later has shown one already (`may_show`). Thread-safe.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._started = 0
        self._shown = 0

    def start(self):
        """int: this call's ticket."""
        with self._lock:
            self._started += 1
            return self._started

    def may_show(self, ticket):
        """bool: whether the call with `ticket` shows its result (it is then the newest)."""
        with self._lock:
            if ticket < self._shown:
                return False
            self._shown = ticket
            return True


@dataclasses.dataclass(frozen=True)
class LiveResult:
    """One stylized image: `image` float32 [H, W, 3] in [0, 1]; `seconds` of model time."""

    image: np.ndarray
    seconds: float


class LiveStylizer:
    """Applies StylizeOptions to one image at a time, for interactive use.

    Thread-safe: one model call at a time. Tiling and batching options are ignored
    (inputs are held to the untiled pixel cap instead; the demo scales them down).

    Args:
      model: callable `model(images, style[, strength])` (stylizer.load).
      model_config: config.ModelConfig of the model.
    """

    def __init__(self, model, model_config):
        self.model = model
        self.model_config = model_config
        self.num_styles = model_config.num_styles
        self.max_pixels = stylizer.untiled_pixel_cap(model, model_config)
        # A Magenta-compatible network has no strength input.
        self.has_strength = not getattr(model, "magenta_compatible", False)
        self._fns = {}
        self._fns_lock = threading.Lock()
        self._model_lock = threading.Lock()

    def style_names(self):
        """The model's style names (its metadata), or "style N" where it has none."""
        if self.model_config.style_names:
            return list(self.model_config.style_names)
        return [f"style {i}" for i in range(self.num_styles)]

    def _fn(self, style_map, with_strength):
        key = (style_map, with_strength)
        with self._fns_lock:
            if key not in self._fns:
                self._fns[key] = stylizer.make_interactive_fn(
                    self.model, self.num_styles, style_map=style_map,
                    with_strength=with_strength)
            return self._fns[key]

    def check(self, rgb, options):
        """Validates an input and options; returns the style tensor and the function.

        Raises:
          LiveError: too many pixels, a bad style, strength or style map.
        """
        height, width = rgb.shape[:2]
        if height * width > self.max_pixels:
            raise LiveError(f"{width}x{height} is over this model's cap of "
                            f"{self.max_pixels} pixels per call")
        try:
            strength = style_spec.check_strength(options.strength)
            if options.style_map is not None:
                style = options.style_map.weights(self.num_styles, (height, width))[None]
            else:
                spec = options.styles
                if spec is None:
                    spec = "0"
                if not isinstance(spec, style_spec.StyleSpec):
                    spec = style_spec.parse(spec)
                style = spec.weight_rows(self.num_styles)[:1]
        except (ValueError, style_maps.StyleMapError, style_spec.StyleSpecError) as e:
            raise LiveError(str(e)) from None
        with_strength = strength != 1.0
        if with_strength and not self.has_strength:
            raise LiveError("this model is a Magenta-compatible network without a strength "
                            "control; keep the strength at 1")
        return style, strength, self._fn(options.style_map is not None, with_strength)

    def __call__(self, rgb, options, block=True):
        """Stylizes one image.

        Args:
          rgb: float32 [H, W, 3] in [0, 1].
          options: stylizer.StylizeOptions (styles: a single style or one mix; or a
            style_map; strength; preserve_colors).
          block: False returns None at once when the model is busy (webcam frames).

        Returns:
          LiveResult, or None (busy, block=False).

        Raises:
          LiveError: see `check`.
        """
        rgb = np.asarray(rgb, np.float32)
        style, strength, fn = self.check(rgb, options)
        if not self._model_lock.acquire(blocking=block):
            return None
        try:
            start = time.perf_counter()
            out = fn(tf.constant(rgb[None]), tf.constant(style, tf.float32),
                     tf.constant([strength], tf.float32),
                     tf.constant([bool(options.preserve_colors)])).numpy()[0]
            seconds = time.perf_counter() - start
        finally:
            self._model_lock.release()
        return LiveResult(image=np.clip(out, 0.0, 1.0), seconds=seconds)

    def warm_up(self, size=64):
        """Traces the plain-weights functions (with and without strength) on a tiny image."""
        rgb = np.full([size, size, 3], 0.5, np.float32)
        self(rgb, stylizer.StylizeOptions(styles="0"))
        if self.has_strength:
            self(rgb, stylizer.StylizeOptions(styles="0", strength=0.5))
