"""High-resolution stylization in bounded memory: tiles that share instance-norm statistics.

Every layer of the network is a convolution except the 16 instance norms, which take
a mean and a variance per channel over the *whole* image. Stylizing tiles one by one
with the plain network therefore gives each tile its own statistics and visible seams
(the classic complaint about tiled style transfer). Here the statistics are the whole
image's, and each tile sees its full receptive field, so the tiled result is the
untiled result up to float rounding; no seam blending is needed.

How (`statistics="exact"`, the default):
1. The image is reflect-padded at the bottom/right to a multiple of 4 exactly as
   `StyleTransferNetwork` pads it, and split into tile *cores* whose edges are multiples
   of 4 (so the two stride-2 convolutions keep the global pixel grid).
2. Each core is computed from a *window*: the core plus a halo (`halo_pixels`, by
   default the network's receptive-field radius rounded up to a multiple of 4) on every
   side that is not the image border. The reflect padding at a window's inner edges
   corrupts at most the halo; at the image border the window edge is the image edge, so
   padding there is exactly the untiled network's.
3. Statistics are accumulated layer by layer: pass k runs every tile up to norm k
   (using the finished statistics of norms 0..k-1), and merges the per-core mean and
   variance of norm k's input into the global ones (Chan et al.'s parallel formula, in
   float64). After 16 passes a last pass writes the output cores. This recomputes the
   early layers (about 7x the work of one untiled pass) but holds only one window's
   activations at a time: peak memory depends on the tile size, not the image size.

`statistics="downscaled"` takes all 16 statistics from one untiled run on a copy of the
image scaled to fit one tile, then makes a single tiled pass: about as fast as
untiled, but approximate (fine detail has less variance at low resolution, so the
result is close to, not equal to, the untiled one).

Tiling is a scheduler only: it plans the windows, merges the statistics and runs the
network's own layers on each window through `model.forward` (the network between its
padding and its crop), reading the norms and the receptive field from
`model.structure()` (layers.Stage). Every norm asks a `_Statistics` object for its
moments (the `moments=` argument of layers.ConditionalInstanceNorm), which hands out
the merged whole-image statistics, or ends the pass at the norm being collected.

Everything here works on one image at a time (batch 1); statistics are merged in float64.
"""
import dataclasses
import math

import numpy as np
import tensorflow as tf

from magenta_style.networks import arbitrary
from magenta_style.networks import kernels
from magenta_style.networks import layers
from magenta_style.networks import transformer

# Largest window (core + halo) computed at once, in pixels. About 1 Mpx keeps the peak
# memory of an alpha=1 network well under 2 GB on CPU.
DEFAULT_MAX_TILE_PIXELS = 1024 * 1024

STATISTICS_MODES = ("exact", "downscaled")

# Tile cores smaller than this waste most of the work on the halo.
MIN_CORE_SIDE = 32

# The generators tiled. Tiling reads only their `structure()`, `forward` and
# `min_padded_size`; boe.BoeGenerator has them too and tiles exactly
# (tests/test_tiling.py), but stays out of this tuple (which stylizer.can_tile reads)
# until test_boe's refusal test admits it.
TILED_GENERATORS = (transformer.StyleTransferNetwork, arbitrary.StyleImageModel)


class TilingError(ValueError):
    """The tiling settings cannot work for this image; the message is one line."""


class _Reached(Exception):
    """Raised by `_Statistics` to end a pass at the input of the norm it is collecting.

    It carries nothing: Keras re-creates exceptions raised inside a layer's call (to
    add the call's arguments to the message), so the tensor stays on `_Statistics`.
    """


class _Statistics:
    """The `moments` callable the network's norms ask (layers.ConditionalInstanceNorm).

    Norms 0..len(known)-1 get the whole image's statistics in `known`. The next norm
    either ends the run (its input is kept in `captured` for the caller to merge) or,
    with record=True, uses and records its own input's statistics.
    """

    def __init__(self, model, record=False):
        self.norms = layers.all_norms(model.structure())
        self._index = {id(norm): i for i, norm in enumerate(self.norms)}
        self.record = record
        self.known = []
        self.captured = None

    def __call__(self, norm, x):
        index = self._index[id(norm)]
        if index < len(self.known):
            return self.known[index]
        if index != len(self.known):
            raise AssertionError(f"norm {index} ran before norm {len(self.known)}")
        if self.record:
            self.known.append(tf.nn.moments(x, axes=[1, 2], keepdims=True))
            return self.known[-1]
        self.captured = x
        raise _Reached()


def _radius(stages, radius=0, factor=1):
    """(radius, factor) after `stages`, from their geometry (see `receptive_radius`)."""
    for stage in stages:
        if stage.branches:
            ends = [_radius(branch, radius, factor) for branch in stage.branches]
            radius, factor = max(r for r, _ in ends), ends[0][1]
        for kernel_size, stride, upsample in stage.geometry:
            factor //= upsample
            radius += (kernel_size // 2) * factor
            factor *= stride
            radius = -(-radius // factor) * factor
    return radius, factor


def receptive_radius(model):
    """How far (in input pixels) an error at a window edge can travel inward: int.

    Read from the network's `structure()`: each k x k window at 1/f resolution widens
    the reach by (k // 2) * f pixels; every stride-2 step also rounds the reach up to
    its coarser grid; parallel branches reach as far as the farthest.
    """
    return _radius(model.structure())[0]


def default_halo(model):
    """The default halo: the receptive radius rounded up to a multiple of 4, plus 4."""
    size = transformer.SIZE_MULTIPLE
    return -(-receptive_radius(model) // size) * size + size


def _pad_indices(size, minimum):
    """Source indices of the network's bottom/right reflect padding of one axis: int numpy."""
    padded = transformer.padded_size(size, minimum)
    return np.asarray(kernels.reflect_indices(size, 0, padded - size))


def _bilinear_axis(in_size, out_size, start, stop):
    """Source indices and weights of TF's half-pixel bilinear resize for outputs start..stop-1."""
    scale = np.float32(in_size) / np.float32(out_size)
    src = (np.arange(start, stop, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(src)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(src), in_size - 1).astype(np.int64)
    return lower, upper, (src - floor).astype(np.float32)


def resize_window(weights, out_height, out_width, rows, cols):
    """A window of `tf.image.resize(weights, [out_height, out_width])` (bilinear), computed alone.

    Args:
      weights: float32 numpy [H, W, N], e.g. a per-pixel style map.
      out_height, out_width: int, the size of the whole resized map.
      rows, cols: (start, stop) of the window in the resized map.

    Returns:
      float32 numpy [stop - start rows, stop - start cols, N], equal (to float rounding)
      to the same window of the full resize, without materialising the full resize.
    """
    top, bottom, dy = _bilinear_axis(weights.shape[0], out_height, *rows)
    left, right, dx = _bilinear_axis(weights.shape[1], out_width, *cols)
    dx = dx[None, :, None]

    def horizontal(r):
        band = weights[r]
        a, b = band[:, left], band[:, right]
        return a + (b - a) * dx

    upper, lower = horizontal(top), horizontal(bottom)
    return upper + (lower - upper) * dy[:, None, None]


class _Style:
    """The style of one image: a fixed weight row [N] or a per-pixel map [Hm, Wm, N]."""

    def __init__(self, style, num_styles, padded_shape):
        style = np.asarray(style)
        if style.ndim == 0:
            if not np.issubdtype(style.dtype, np.integer):
                raise TilingError(f"a scalar style must be an integer id, got {style.dtype}")
            if not 0 <= int(style) < num_styles:
                raise TilingError(f"style id {int(style)} is outside 0..{num_styles - 1}")
            row = np.zeros([num_styles], np.float32)
            row[int(style)] = 1.0
            style = row
        if style.shape[-1] != num_styles:
            raise TilingError(f"style has {style.shape[-1]} entries in its last axis, the model "
                              f"has {num_styles} styles")
        if style.ndim not in (1, 3):
            raise TilingError(f"style must be an id, weights [N] or a map [H, W, N]; got shape "
                              f"{list(style.shape)}")
        self.weights = style.astype(np.float32)
        self.is_map = style.ndim == 3
        self.padded_shape = padded_shape

    def inputs(self, rows, cols):
        """The style tensor for a window: the weights [1, N], or the map's window [1, h, w, N].

        The map is resized to the padded image here, a window at a time; each norm then
        resizes the window to its own resolution as in the untiled network, which is exact
        because windows start on the 4-pixel grid (a 2x or 4x bilinear down-sampling then
        reads only pixels of the window).
        """
        if not self.is_map:
            return tf.constant(self.weights[None])
        window = resize_window(self.weights, *self.padded_shape, rows, cols)
        return tf.constant(window[None])


class _Moments:
    """Running per-channel mean and variance over many blocks (Chan et al., float64)."""

    def __init__(self):
        self.count = 0
        self.mean = None
        self.m2 = None

    def add(self, block):
        n = int(np.prod(block.shape[:-1]))
        mean, variance = tf.nn.moments(block, axes=[0, 1, 2])
        mean = mean.numpy().astype(np.float64)
        m2 = variance.numpy().astype(np.float64) * n
        if self.count == 0:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta ** 2 * (self.count * n / total)
        self.count = total

    def result(self):
        """(mean, variance) float32 tensors [1, 1, 1, C]."""
        shape = [1, 1, 1, -1]
        return (tf.constant(np.reshape(self.mean, shape), tf.float32),
                tf.constant(np.reshape(self.m2 / self.count, shape), tf.float32))


@dataclasses.dataclass(frozen=True)
class _Tile:
    core_rows: tuple
    core_cols: tuple
    rows: tuple  # The window, in the padded image.
    cols: tuple


def _splits(size, pieces):
    """`pieces` boundaries over [0, size) at multiples of 4, as even as possible."""
    multiple = transformer.SIZE_MULTIPLE
    units = size // multiple
    edges = [round(i * units / pieces) * multiple for i in range(pieces + 1)]
    return list(zip(edges[:-1], edges[1:]))


def plan_tiles(height, width, max_tile_pixels, halo):
    """The tiles for a padded image.

    Args:
      height, width: int, the padded size (multiples of 4).
      max_tile_pixels: int, the largest window area (core plus halo) allowed.
      halo: int, multiple of 4.

    Returns:
      list of _Tile, row-major; their cores partition the padded image.

    Raises:
      TilingError: max_tile_pixels leaves a core smaller than MIN_CORE_SIDE.
    """
    side = math.isqrt(int(max_tile_pixels))
    core = (side - 2 * halo) // transformer.SIZE_MULTIPLE * transformer.SIZE_MULTIPLE
    if core < MIN_CORE_SIDE:
        smallest = (MIN_CORE_SIDE + 2 * halo) ** 2
        raise TilingError(f"max_tile_pixels={max_tile_pixels} is too small: a tile needs a "
                          f"{halo}-pixel halo on each side; use at least {smallest}")
    tiles = []
    for r0, r1 in _splits(height, -(-height // core)):
        for c0, c1 in _splits(width, -(-width // core)):
            tiles.append(_Tile((r0, r1), (c0, c1), (max(r0 - halo, 0), min(r1 + halo, height)),
                               (max(c0 - halo, 0), min(c1 + halo, width))))
    return tiles


def _window(image, row_index, col_index, tile):
    """The window of the padded image for `tile`: float32 [1, h, w, 3] tensor."""
    rows = row_index[tile.rows[0]:tile.rows[1]]
    cols = col_index[tile.cols[0]:tile.cols[1]]
    return tf.constant(image[rows[:, None], cols[None, :]][None])


def _core(tensor, tile, factor):
    """The core of a window's result at 1/factor resolution."""
    top = (tile.core_rows[0] - tile.rows[0]) // factor
    left = (tile.core_cols[0] - tile.cols[0]) // factor
    height = (tile.core_rows[1] - tile.core_rows[0]) // factor
    width = (tile.core_cols[1] - tile.core_cols[0]) // factor
    return tensor[:, top:top + height, left:left + width, :]


def _downscaled_stats(model, image, style, strength, max_tile_pixels):
    """All norm statistics from one untiled run on a downscaled copy of the image: list."""
    height, width = image.shape[:2]
    scale = min(1.0, math.sqrt(max_tile_pixels / (height * width)))
    size = [max(1, round(height * scale)), max(1, round(width * scale))]
    small = tf.image.resize(image[None], size, method="area").numpy()[0]
    small_style = style.weights
    if style.is_map:
        small_style = tf.image.resize(style.weights[None], size, method="bilinear").numpy()[0]
    rows = _pad_indices(size[0], model.min_padded_size)
    cols = _pad_indices(size[1], model.min_padded_size)
    x = tf.constant(small[rows[:, None], cols[None, :]][None])
    small = _Style(small_style, model.num_styles, (len(rows), len(cols)))
    statistics = _Statistics(model, record=True)
    model.forward(x, small.inputs((0, len(rows)), (0, len(cols))), strength, moments=statistics)
    return statistics.known


def stylize_tiled(model, image, style, strength=None, max_tile_pixels=DEFAULT_MAX_TILE_PIXELS,
                  halo_pixels=None, statistics="exact", progress=None):
    """Stylizes one image tile by tile with whole-image instance-norm statistics.

    Args:
      model: a built transformer.StyleTransferNetwork (not magenta_compatible).
      image: float32 numpy [H, W, 3] in [0, 1].
      style: an int style id, float32 weights [num_styles] (not normalised), or a
        per-pixel weight map float32 [Hm, Wm, num_styles] (resized to each feature map
        as the network does).
      strength: optional float in [0, 1], as the network's `strength`.
      max_tile_pixels: int, the largest window (core + halo) computed at once; bounds
        the peak memory.
      halo_pixels: int multiple of 4, context around each core; default
        `default_halo(model)`. Smaller values are faster but no longer exact.
      statistics: "exact" (accumulated over tiles, layer by layer) or "downscaled"
        (from one pass on a downscaled copy; faster, approximate).
      progress: optional callable(done, total) called after each tile of each pass.

    Returns:
      float32 numpy [H, W, 3] in [0, 1]. With "exact" it equals
      `model(image[None], style)` up to float rounding (see tests/test_tiling.py).

    Raises:
      TilingError: bad settings, a style that does not fit the model, or a
        magenta_compatible model.
    """
    if not isinstance(model, TILED_GENERATORS):
        raise TilingError(f"tiling supports the Magenta generator only, not "
                          f"{type(model).__name__}; stylize the image whole "
                          "(--max_tile_pixels=0)")
    if getattr(model, "magenta_compatible", False):
        raise TilingError("tiling needs a model built with magenta_compatible=False")
    if statistics not in STATISTICS_MODES:
        raise TilingError(f"statistics must be one of {STATISTICS_MODES}, got {statistics!r}")
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise TilingError(f"image must be [H, W, 3], got {list(image.shape)}")
    halo = default_halo(model) if halo_pixels is None else int(halo_pixels)
    if halo < 0 or halo % transformer.SIZE_MULTIPLE:
        raise TilingError(f"halo_pixels must be a non-negative multiple of "
                          f"{transformer.SIZE_MULTIPLE}, got {halo}")
    height, width = image.shape[:2]
    row_index = _pad_indices(height, model.min_padded_size)
    col_index = _pad_indices(width, model.min_padded_size)
    style = _Style(style, model.num_styles, (len(row_index), len(col_index)))
    tiles = plan_tiles(len(row_index), len(col_index), max_tile_pixels, halo)
    strength_arg = None if strength is None else tf.constant([strength], tf.float32)

    merged = _Statistics(model)
    passes = len(merged.norms) + 1
    if statistics == "downscaled":
        merged.known = _downscaled_stats(model, image, style, strength_arg, max_tile_pixels)
        passes = 1
    total = passes * len(tiles)
    done = 0

    def run(tile):
        """The network on `tile`'s window, with the statistics known so far."""
        nonlocal done
        x = _window(image, row_index, col_index, tile)
        try:
            y = model.forward(x, style.inputs(tile.rows, tile.cols), strength_arg,
                              moments=merged)
        except _Reached:
            y = None  # Stopped at the next norm's input: merged.captured.
        done += 1
        if progress is not None:
            progress(done, total)
        return y

    # Pass k runs every window up to norm k and merges the cores' moments of its input.
    while len(merged.known) < len(merged.norms):
        moments = _Moments()
        for tile in tiles:
            run(tile)
            h = merged.captured
            moments.add(_core(h, tile, (tile.rows[1] - tile.rows[0]) // h.shape[1]))
        merged.known.append(moments.result())

    output = np.empty([height, width, 3], np.float32)
    for tile in tiles:
        y = _core(tf.cast(run(tile), tf.float32), tile, 1).numpy()[0]
        r0, r1 = tile.core_rows
        c0, c1 = tile.core_cols
        # Cores in the padding (bottom/right) are cropped off, as the network crops.
        output[r0:min(r1, height), c0:min(c1, width)] = y[:max(0, min(r1, height) - r0),
                                                         :max(0, min(c1, width) - c0)]
    if strength is not None and getattr(model, "strength_mode", None) != "magenta":
        # As the network does: the content is mixed back in by (1 - strength). (Not with
        # the arbitrary model's Magenta strength, which lives in its style bottleneck.)
        output = strength * output + (1.0 - strength) * image
    return output


def stylize_image(model, image, style, strength=None, max_tile_pixels=DEFAULT_MAX_TILE_PIXELS,
                  statistics="exact", progress=None):
    """Stylizes one image, tiling automatically when it is larger than one tile.

    Not the inference path: commands, the export and the library go through
    stylizer.Stylizer, which adds batching, strength, colours and pixel caps. This
    bare form checks the tiling against the untiled network in tiling's own tests.

    Args:
      model, image, style, strength, statistics, progress: as `stylize_tiled`.
      max_tile_pixels: int; images with at most this many pixels (after padding to a
        multiple of 4) run untiled in one call; larger ones are tiled. None: never tile.

    Returns:
      float32 numpy [H, W, 3] in [0, 1].
    """
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    pixels = transformer.padded_size(height) * transformer.padded_size(width)
    if max_tile_pixels is None or pixels <= max_tile_pixels:
        style_arg = np.asarray(style)
        if style_arg.ndim == 0:
            style_arg = tf.constant([int(style_arg)], tf.int32)
        else:
            style_arg = tf.constant(style_arg[None], tf.float32)
        strength_arg = None if strength is None else tf.constant([strength], tf.float32)
        return model(tf.constant(image[None]), style_arg, strength_arg).numpy()[0]
    return stylize_tiled(model, image, style, strength, max_tile_pixels,
                         statistics=statistics, progress=progress)
