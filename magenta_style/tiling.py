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

Everything here works on one image at a time (batch 1) in float32.
"""
import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from magenta_style import layers
from magenta_style import transformer

# Largest window (core + halo) computed at once, in pixels. About 1 Mpx keeps the peak
# memory of an alpha=1 network well under 2 GB on CPU.
DEFAULT_MAX_TILE_PIXELS = 1024 * 1024

STATISTICS_MODES = ("exact", "downscaled")

# Tile cores smaller than this waste most of the work on the halo.
MIN_CORE_SIDE = 32


class TilingError(ValueError):
    """The tiling settings cannot work for this image; the message is one line."""


@dataclasses.dataclass(frozen=True)
class _Conv:
    """One ConvInstanceNorm of the network, in forward order."""

    layer: layers.ConvInstanceNorm
    upsample: int  # Nearest upsampling factor applied to its input (1: none).
    residual: str  # "begin": its input is a residual block's input; "end": add it after.


def _program(model):
    """The network as a flat list of _Conv, in the order `StyleTransferNetwork.call` runs them."""
    program = [_Conv(model.contract_conv1, 1, ""), _Conv(model.contract_conv2, 1, ""),
               _Conv(model.contract_conv3, 1, "")]
    for i in range(1, transformer.RESIDUAL_BLOCKS + 1):
        block = getattr(model, f"residual{i}")
        program += [_Conv(block.conv1, 1, "begin"), _Conv(block.conv2, 1, "end")]
    for expand in (model.expand_conv1, model.expand_conv2, model.expand_conv3):
        program.append(_Conv(expand.conv, expand.upsample.factor, ""))
    return program


def _norm_factors(program):
    """The resolution divisor (1, 2 or 4) of each norm's input, in program order."""
    factors, factor = [], 1
    for conv in program:
        factor = factor // conv.upsample * conv.layer.strides
        factors.append(factor)
    return factors


def receptive_radius(model):
    """How far (in input pixels) an error at a window edge can travel inward: int.

    Each k x k convolution at 1/f resolution widens the reach by (k // 2) * f pixels;
    every stride-2 step also rounds the reach up to its coarser grid.
    """
    radius, factor = 0, 1
    for conv in _program(model):
        factor //= conv.upsample
        radius += (conv.layer.kernel_size // 2) * factor
        factor *= conv.layer.strides
        radius = -(-radius // factor) * factor
    return radius


def default_halo(model):
    """The default halo: the receptive radius rounded up to a multiple of 4, plus 4."""
    size = transformer.SIZE_MULTIPLE
    return -(-receptive_radius(model) // size) * size + size


def _reflect_indices(size, padded):
    """numpy version of the network's bottom/right reflect padding of one axis: int [padded]."""
    i = np.arange(padded)
    period = max(2 * (size - 1), 1)
    j = np.mod(i, period)
    return np.minimum(j, period - j) * (1 if size > 1 else 0)


def _padded_size(size):
    size = max(size, transformer.MIN_PADDED_SIZE)
    multiple = transformer.SIZE_MULTIPLE
    return -(-size // multiple) * multiple


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
        """The style tensors for a window: ([1, N] row, ()) or ((), maps at 1/1, 1/2, 1/4)."""
        if not self.is_map:
            return tf.constant(self.weights[None]), ()
        maps = []
        for factor in (1, 2, 4):
            height, width = (d // factor for d in self.padded_shape)
            window = resize_window(self.weights, height, width,
                                   (rows[0] // factor, rows[1] // factor),
                                   (cols[0] // factor, cols[1] // factor))
            maps.append(tf.constant(window[None]))
        return tf.zeros([1, self.weights.shape[-1]]), tuple(maps)


def _params(norm, row, maps, factor, strength):
    """(gamma, beta) float32 for `norm`, mixed by the layer itself.

    Maps are already windowed at the feature map's resolution, so the layer's resize
    to `feature_shape` is the identity.
    """
    style = maps[{1: 0, 2: 1, 4: 2}[factor]] if maps else row
    strength = None if strength is None else tf.reshape(strength, [1])
    return norm.mixed_params(style, tf.shape(style), strength)


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


def _run(program, x, params, stats, stop_at):
    """Runs the network on one window.

    Args:
      program: list of _Conv.
      x: float32 [1, h, w, 3], the window of the padded image.
      params: callable(index, norm, factor) -> (gamma, beta) of norm `index` for
        this window (see `_params`).
      stats: tuple of (mean, variance) for the first len(stats) norms; the other norms
        use their own window's moments (so with no stats and the whole padded image as
        the window, this is the untiled network).
      stop_at: int or None; return the input of norm `stop_at` (pre-norm) instead of
        the output.

    Returns:
      (result, new_stats): with stop_at, the pre-norm tensor at 1/f resolution;
      otherwise the output [1, h, w, 3]. new_stats: the moments this run computed.
    """
    factor = 1
    residual_input = None
    new_stats = []
    for index, conv in enumerate(program):
        layer = conv.layer
        if conv.upsample > 1:
            x = tf.repeat(tf.repeat(x, conv.upsample, axis=1), conv.upsample, axis=2)
            factor //= conv.upsample
        if conv.residual == "begin":
            residual_input = x
        p = layer.kernel_size // 2
        padded = tf.pad(x, tf.constant([[0, 0], [p, p], [p, p], [0, 0]]), mode="REFLECT")
        h = tf.nn.conv2d(padded, tf.cast(layer.kernel, tf.float32), strides=layer.strides,
                         padding="VALID")
        factor *= layer.strides
        if index == stop_at:
            return h, ()
        if index < len(stats):
            mean, variance = stats[index]
        else:
            mean, variance = tf.nn.moments(h, axes=[1, 2], keepdims=True)
            new_stats.append((mean, variance))
        gamma, beta = params(index, layer.norm, factor)
        h = tf.nn.batch_normalization(h, mean, variance, beta, gamma, layer.norm.epsilon)
        x = keras.activations.get(layer.activation)(h)
        if conv.residual == "end":
            x = residual_input + x
    return x, tuple(new_stats)


class _Runner:
    """Runs `_run` eagerly (windows are large, so per-op overhead is small and no shape
    retraces), caching the mixed (gamma, beta) of a fixed style across windows."""

    def __init__(self, program, strength):
        self._program = program
        self._strength = None if strength is None else tf.constant(strength, tf.float32)
        self._cache = {}

    def __call__(self, x, row, maps, stats, stop_at):
        if maps:
            params = lambda index, norm, factor: _params(norm, row, maps, factor, self._strength)
        else:
            def params(index, norm, factor):
                if index not in self._cache:
                    self._cache[index] = _params(norm, row, maps, factor, self._strength)
                return self._cache[index]
        return _run(self._program, x, params, stats, stop_at)


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


def _downscaled_stats(model, program, image, style, strength, max_tile_pixels):
    """All norm statistics from one untiled run on a downscaled copy of the image."""
    height, width = image.shape[:2]
    scale = min(1.0, math.sqrt(max_tile_pixels / (height * width)))
    size = [max(1, round(height * scale)), max(1, round(width * scale))]
    small = tf.image.resize(image[None], size, method="area").numpy()[0]
    small_style = style.weights
    if style.is_map:
        small_style = tf.image.resize(style.weights[None], size, method="bilinear").numpy()[0]
    padded = (_padded_size(size[0]), _padded_size(size[1]))
    x = tf.constant(small[_reflect_indices(size[0], padded[0])[:, None],
                          _reflect_indices(size[1], padded[1])[None, :]][None])
    small = _Style(small_style, model.num_styles, padded)
    row, maps = small.inputs((0, padded[0]), (0, padded[1]))
    strength = None if strength is None else tf.constant(strength, tf.float32)
    _, stats = _run(program, x, lambda i, norm, f: _params(norm, row, maps, f, strength), (),
                    None)
    return list(stats)


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
    if not isinstance(model, transformer.StyleTransferNetwork):
        # The tile program mirrors the Magenta network's layers; other generators (BOE)
        # have no program yet and are stylized whole.
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
    padded = (_padded_size(height), _padded_size(width))
    style = _Style(style, model.num_styles, padded)
    program = _program(model)
    tiles = plan_tiles(padded[0], padded[1], max_tile_pixels, halo)
    row_index = _reflect_indices(height, padded[0])
    col_index = _reflect_indices(width, padded[1])

    stats = []
    passes = len(program) + 1
    if statistics == "downscaled":
        stats = _downscaled_stats(model, program, image, style, strength, max_tile_pixels)
        passes = 1
    total = passes * len(tiles)
    done = 0

    def tick():
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    runner = _Runner(program, strength)
    factors = _norm_factors(program)
    while len(stats) < len(program):
        moments = _Moments()
        for tile in tiles:
            x = _window(image, row_index, col_index, tile)
            h, _ = runner(x, *style.inputs(tile.rows, tile.cols), stats, len(stats))
            moments.add(_core(h, tile, factors[len(stats)]))
            tick()
        stats.append(moments.result())

    output = np.empty([height, width, 3], np.float32)
    for tile in tiles:
        x = _window(image, row_index, col_index, tile)
        y, _ = runner(x, *style.inputs(tile.rows, tile.cols), stats, None)
        y = _core(y, tile, 1).numpy()[0]
        r0, r1 = tile.core_rows
        c0, c1 = tile.core_cols
        # Cores in the padding (bottom/right) are cropped off, as the network crops.
        output[r0:min(r1, height), c0:min(c1, width)] = y[:max(0, min(r1, height) - r0),
                                                         :max(0, min(c1, width) - c0)]
        tick()
    if strength is not None:
        # As the network does: the content is mixed back in by (1 - strength).
        output = strength * output + (1.0 - strength) * image
    return output


def stylize_image(model, image, style, strength=None, max_tile_pixels=DEFAULT_MAX_TILE_PIXELS,
                  statistics="exact", progress=None):
    """Stylizes one image, tiling automatically when it is larger than one tile.

    Args:
      model, image, style, strength, statistics, progress: as `stylize_tiled`.
      max_tile_pixels: int; images with at most this many pixels (after padding to a
        multiple of 4) run untiled in one call; larger ones are tiled. None: never tile.

    Returns:
      float32 numpy [H, W, 3] in [0, 1].
    """
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    if max_tile_pixels is None or _padded_size(height) * _padded_size(width) <= max_tile_pixels:
        style_arg = np.asarray(style)
        if style_arg.ndim == 0:
            style_arg = tf.constant([int(style_arg)], tf.int32)
        else:
            style_arg = tf.constant(style_arg[None], tf.float32)
        strength_arg = None if strength is None else tf.constant([strength], tf.float32)
        return model(tf.constant(image[None]), style_arg, strength_arg).numpy()[0]
    return stylize_tiled(model, image, style, strength, max_tile_pixels,
                         statistics=statistics, progress=progress)
