"""Style maps: different styles (or mixes) in different regions of one image.

A mask image plus a mapping from mask colours or grey levels to styles gives
per-pixel style weights `[H, W, num_styles]`, which the network takes directly
(`ConditionalInstanceNorm` mixes gamma/beta per pixel, at every layer's resolution).

Mapping syntax (`--style_map_colors`), comma-separated `KEY:TARGET` entries:

- KEY is either a colour `#rrggbb` / `#rgb` (hex), or a grey level `0`..`255`. All
  keys of one mapping are of the same kind.
- TARGET is a style index (`2`) or a mix in braces with unnormalized weights, as
  `--which_styles` writes it (`{0:0.5,1:0.5}`).

Examples: `#ff0000:0,#0000ff:1` (red regions in style 0, blue in style 1);
`0:0,255:{0:0.5,2:0.5}` (black in style 0, white in a 50/50 mix of styles 0 and 2).

How pixels are assigned:
- colour keys: each mask pixel takes the mapping of the *nearest* key colour
  (Euclidean RGB), so anti-aliased edges and JPEG noise need no exact match;
- grey keys: the mask is read as luma (ITU-R 601, as Pillow's "L"), and a level
  between two keys is a linear blend of their targets, so a grey ramp in the mask
  becomes a gradual transition; levels outside the keys take the nearest key.

The mask is resized to the image (bilinear on the weights) and then blurred with a
Gaussian of standard deviation `blur` pixels (the "soft edge radius"; 0: hard edges).
The text is parsed by a strict hand-written grammar; nothing is evaluated.
"""
import dataclasses
import math
import re

import numpy as np
import tensorflow as tf

from magenta_style import config
from magenta_style.media import images

_COLOR_RE = re.compile(r"#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
_GREY_RE = re.compile(r"[0-9]{1,3}")
_INDEX_RE = re.compile(r"[0-9]+")

# A Gaussian is truncated at this many standard deviations.
_TRUNCATE = 3.0


class StyleMapError(ValueError):
    """The style map or its mapping is unusable; the message is one line."""


@dataclasses.dataclass(frozen=True)
class StyleMapping:
    """A parsed `--style_map_colors` value.

    Attributes:
      kind: "color" or "grey".
      keys: tuple of keys: (r, g, b) int tuples for "color", ints 0..255 for "grey".
      targets: tuple, per key, of ((style, weight), ...) pairs.
      text: the original text, for messages.
    """

    kind: str
    keys: tuple
    targets: tuple
    text: str = ""

    def max_style(self):
        return max(s for target in self.targets for s, _ in target)

    def rows(self, num_styles):
        """float32 [num_keys, num_styles]: each key's style weights.

        Raises:
          StyleMapError: a style index is >= num_styles.
        """
        if self.max_style() >= num_styles:
            raise StyleMapError(
                f"--style_map_colors={self.text}: style {self.max_style()} does not exist; the "
                f"model has {num_styles} style(s), 0..{num_styles - 1}")
        rows = np.zeros([len(self.keys), num_styles], np.float32)
        for i, target in enumerate(self.targets):
            for style, weight in target:
                rows[i, style] = weight
        return rows


def _fail(text, what):
    raise StyleMapError(f"--style_map_colors={text}: {what}")


def _split_entries(text, body):
    """Splits at commas outside braces."""
    entries, depth, current = [], 0, ""
    for char in body:
        if char == "{":
            depth += 1
            if depth > 1:
                _fail(text, "nested '{'")
        elif char == "}":
            depth -= 1
            if depth < 0:
                _fail(text, "unbalanced '}'")
        if char == "," and depth == 0:
            entries.append(current)
            current = ""
        else:
            current += char
    if depth:
        _fail(text, "unbalanced '{'")
    entries.append(current)
    return entries


def _parse_key(text, token):
    if token.startswith("#"):
        if not _COLOR_RE.fullmatch(token):
            _fail(text, f"{token!r} is not a colour (#rrggbb or #rgb)")
        digits = token[1:]
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return "color", tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))
    if not _GREY_RE.fullmatch(token) or int(token) > 255:
        _fail(text, f"{token!r} is neither a colour (#rrggbb) nor a grey level (0..255)")
    return "grey", int(token)


def _parse_index(text, token):
    if not _INDEX_RE.fullmatch(token):
        _fail(text, f"{token!r} is not a style index (a non-negative integer)")
    return int(token)


def _parse_target(text, token):
    if not token:
        _fail(text, "an entry has no style after ':'")
    if not token.startswith("{"):
        return ((_parse_index(text, token), 1.0),)
    if not token.endswith("}"):
        _fail(text, f"{token!r}: a mix must end with '}}'")
    pairs = {}
    for pair in token[1:-1].split(","):
        pair = pair.strip()
        if pair.count(":") != 1:
            _fail(text, f"{pair!r} in {token} is not a 'style:weight' pair")
        style_text, weight_text = (p.strip() for p in pair.split(":"))
        style = _parse_index(text, style_text)
        if style in pairs:
            _fail(text, f"style {style} appears twice in {token}")
        if not config.NUMBER_RE.fullmatch(weight_text) or not math.isfinite(float(weight_text)):
            _fail(text, f"weight {weight_text!r} of style {style} is not a finite number")
        pairs[style] = float(weight_text)
    return tuple(sorted(pairs.items()))


def parse_mapping(text):
    """Parses a `--style_map_colors` value.

    Args:
      text: str, e.g. "#ff0000:0,#0000ff:1" or "0:0,255:{0:0.5,1:0.5}". Whitespace
        around tokens is ignored.

    Returns:
      StyleMapping.

    Raises:
      StyleMapError: malformed text, mixed colour and grey keys, a duplicate key, a
        bad index or weight.
    """
    if not isinstance(text, str) or not text.strip():
        raise StyleMapError("--style_map_colors is empty; give entries like "
                            "'#ff0000:0,#0000ff:1' or '0:0,255:1'")
    keys, targets, kinds = [], [], set()
    for entry in _split_entries(text, text.strip()):
        entry = entry.strip()
        if not entry:
            _fail(text, "empty entry (a stray comma?)")
        if ":" not in entry:
            _fail(text, f"{entry!r} is not a 'key:style' entry")
        key_text, target_text = entry.split(":", 1)
        kind, key = _parse_key(text, key_text.strip())
        kinds.add(kind)
        if len(kinds) > 1:
            _fail(text, "mixes colour keys (#rrggbb) and grey levels; use one kind")
        if key in keys:
            _fail(text, f"key {key_text.strip()} appears twice")
        keys.append(key)
        targets.append(_parse_target(text, target_text.strip()))
    return StyleMapping(kind=kinds.pop(), keys=tuple(keys), targets=tuple(targets), text=text)


def mask_weights(mask, mapping, num_styles):
    """Per-pixel style weights of a mask at the mask's own size.

    Args:
      mask: float32 [Hm, Wm, 3] RGB in [0, 1] (an 8-bit mask read as level / 255).
      mapping: StyleMapping.
      num_styles: int, the model's number of styles.

    Returns:
      float32 [Hm, Wm, num_styles]; each pixel is its key's (or, for grey keys, the
      blend of two keys') weight row.

    Raises:
      StyleMapError: a style index is >= num_styles.
    """
    rows = mapping.rows(num_styles)
    mask = np.asarray(mask, np.float32) * 255.0
    if mapping.kind == "color":
        colors = np.asarray(mapping.keys, np.float32)
        nearest = np.empty(mask.shape[:2], np.int64)
        best = np.full(mask.shape[:2], np.inf, np.float32)
        # Key by key keeps memory at a few [Hm, Wm] arrays, whatever the number of keys.
        for i, color in enumerate(colors):
            distance = np.sum((mask - color) ** 2, axis=-1)
            closer = distance < best
            nearest[closer] = i
            best[closer] = distance[closer]
        return rows[nearest]
    luma = mask @ np.array([0.299, 0.587, 0.114], np.float32)
    order = np.argsort(mapping.keys)
    levels = np.asarray(mapping.keys, np.float32)[order]
    rows = rows[order]
    weights = np.empty(mask.shape[:2] + (num_styles,), np.float32)
    for s in range(num_styles):
        weights[..., s] = np.interp(luma, levels, rows[:, s])
    return weights


def gaussian_blur(weights, sigma):
    """Blurs each channel with a Gaussian (reflected borders).

    Args:
      weights: float32 [H, W, N].
      sigma: float >= 0, the standard deviation in pixels; 0 returns the input.

    Returns:
      float32 [H, W, N]. Blurring is linear, so mixes stay mixes of the same rows.
    """
    if sigma <= 0:
        return np.asarray(weights, np.float32)
    height, width = weights.shape[:2]
    x = tf.constant(np.asarray(weights, np.float32)[None])
    for axis, size in ((1, height), (2, width)):
        # Reflect padding cannot exceed size - 1.
        radius = min(int(math.ceil(_TRUNCATE * sigma)), size - 1)
        if radius < 1:
            continue
        taps = np.arange(-radius, radius + 1, dtype=np.float64)
        kernel = np.exp(-0.5 * (taps / sigma) ** 2)
        kernel = (kernel / kernel.sum()).astype(np.float32)
        channels = weights.shape[-1]
        shape = [len(taps), 1] if axis == 1 else [1, len(taps)]
        filt = np.tile(kernel.reshape(shape + [1, 1]), [1, 1, channels, 1])
        pad = [[0, 0], [radius, radius], [0, 0], [0, 0]] if axis == 1 else [
            [0, 0], [0, 0], [radius, radius], [0, 0]]
        x = tf.nn.depthwise_conv2d(tf.pad(x, pad, mode="REFLECT"), filt, [1, 1, 1, 1], "VALID")
    return x.numpy()[0]


def style_map_weights(mask, mapping, num_styles, size, blur=0.0):
    """Per-pixel style weights for an image of `size` from a mask.

    Args:
      mask: float32 [Hm, Wm, 3] RGB in [0, 1]. Any size; it is stretched to `size`.
      mapping: StyleMapping or its text.
      num_styles: int, the model's number of styles.
      size: (height, width) of the image to stylize.
      blur: float >= 0, Gaussian standard deviation in image pixels (soft edges).

    Returns:
      float32 [height, width, num_styles], ready for `model(image, weights[None])` or
      `tiling.stylize_tiled(model, image, weights)`.

    Raises:
      StyleMapError: a bad mapping, a bad blur or a style index out of range.
    """
    if isinstance(mapping, str):
        mapping = parse_mapping(mapping)
    if not math.isfinite(blur) or blur < 0:
        raise StyleMapError(f"--style_map_blur={blur}: must be a finite number >= 0")
    weights = mask_weights(mask, mapping, num_styles)
    if weights.shape[:2] != tuple(size):
        weights = tf.image.resize(weights[None], size, method="bilinear").numpy()[0]
    return gaussian_blur(weights, blur)


@dataclasses.dataclass(frozen=True, eq=False)  # eq would compare arrays elementwise.
class StyleMap:
    """A style map ready to be fitted to each input (see `style_map_weights`).

    Attributes:
      mask: float32 [Hm, Wm, 3] RGB in [0, 1], the mask image (stretched to each input).
      mapping: StyleMapping, mask colour or grey level -> style or mix.
      blur: float >= 0, Gaussian standard deviation of the soft edges, in input pixels.
    """

    mask: np.ndarray
    mapping: StyleMapping
    blur: float = 0.0

    def weights(self, num_styles, size):
        """float32 [height, width, num_styles] per-pixel weights for an input of `size`."""
        return style_map_weights(self.mask, self.mapping, num_styles, size, self.blur)


def read_style_map(path, mapping, num_styles, blur=0.0, max_pixels=None):
    """Reads a mask file into a StyleMap whose mapping fits a model of `num_styles`.

    The one reader of mask files (stylize, stylize_video, `load_style_map`).

    Args:
      path: str, the mask image (PNG recommended; any format `images.load_image` reads;
        EXIF orientation applied, alpha ignored).
      mapping: StyleMapping or its text.
      num_styles: int, the model's number of styles.
      blur: float >= 0, as `style_map_weights`.
      max_pixels: the mask's pixel cap (default images.DEFAULT_MAX_PIXELS).

    Raises:
      StyleMapError: the mask cannot be read ("--style_map: ..."), or the mapping is
        malformed or names a style the model does not have.
    """
    if isinstance(mapping, str):
        mapping = parse_mapping(mapping)
    try:
        mask, _ = images.load_image(path, max_pixels=max_pixels or images.DEFAULT_MAX_PIXELS)
    except images.ImageError as e:
        raise StyleMapError(f"--style_map: {e}") from None
    mapping.rows(num_styles)  # Unknown styles fail here, before any work.
    return StyleMap(mask=mask, mapping=mapping, blur=blur)


def load_style_map(path, mapping, num_styles, size, blur=0.0):
    """Per-pixel style weights for an image of `size` from a mask file.

    Args:
      path, mapping, num_styles, blur: as `read_style_map`.
      size: (height, width) of the image to stylize.

    Returns:
      float32 [height, width, num_styles].

    Raises:
      StyleMapError: the mask cannot be read, or the mapping/blur is bad.
    """
    return read_style_map(path, mapping, num_styles, blur).weights(num_styles, size)
