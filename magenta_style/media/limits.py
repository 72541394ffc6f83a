"""How much memory one stylization request costs, and the pixel cap derived from it.

An untiled request holds every activation of the network for the whole image at
once, so its memory grows with its pixels (batch x height x width): a valid 186 KB
PNG of 8000 x 8000 needs about 24 GB at alpha 0.5, and a 69-byte PNG header may
claim 20000 x 20000. Exports therefore refuse, in the graph, requests above
`max_pixels(model_config, memory_budget_bytes)`, and the encoded-image signatures
read the size from the file header (`encoded_image_size`) before decoding anything.
See docs/limits.md for the figures and how they were measured
(tools/benchmarks/measure_memory.py).
"""
import math

from absl import logging
import tensorflow as tf

# The default memory budget of one request (export --memory_budget_gib).
DEFAULT_MEMORY_BUDGET_BYTES = 4 * 2**30

# generator -> {alpha: peak bytes per pixel of one request}, the larger of the float and
# the encoded-image signatures, measured with tools/benchmarks/measure_memory.py on CPU (oneDNN,
# TF 2.21, square requests of 512-1536 px; docs/limits.md). A new generator adds its own
# row, measured the same way.
BYTES_PER_PIXEL = {
    "magenta": {0.25: 261.0, 0.5: 503.0, 0.75: 630.0, 1.0: 977.0},
    # BOE's YUV-split generators (one style, as their configs train them), measured
    # 2026-12-07 with tools/measure_memory.py --generator=...: full-resolution branches
    # cost about twice Magenta's network per pixel (4:4:4), 4:2:0 about 1.3x.
    "boe_yuv444": {0.5: 979.0, 1.0: 1993.0},
    "boe_yuv420": {0.5: 614.0, 1.0: 1277.0},
}
_WARNED = set()  # Generators already warned about (once per process, not per call).
# The arbitrary-style model's transformer is Magenta's network at the same widths, and its
# style predictor sees a 256 px style image: Magenta's row until measured on its own.
BYTES_PER_PIXEL["arbitrary"] = BYTES_PER_PIXEL["magenta"]
DEFAULT_GENERATOR = "magenta"


def generator_name(model_config):
    """The generator architecture of a ModelConfig ("magenta" unless it names another)."""
    return getattr(model_config, "generator", None) or DEFAULT_GENERATOR


def bytes_per_pixel(model_config):
    """Peak bytes one pixel of an untiled request costs for this model (float).

    Measured points are interpolated linearly in alpha (activation memory grows with the
    layer widths, which are linear in alpha) and extrapolated from the nearest two
    points outside them (never below the smallest measured figure).
    """
    generator = generator_name(model_config)
    table = BYTES_PER_PIXEL.get(generator)
    if table is None and generator not in _WARNED:
        _WARNED.add(generator)
        logging.warning("no measured memory cost for generator %r; using %r's (add a row "
                        "to limits.BYTES_PER_PIXEL with tools/benchmarks/measure_memory.py)",
                        generator, DEFAULT_GENERATOR)
    if table is None:
        table = BYTES_PER_PIXEL[DEFAULT_GENERATOR]
    alphas = sorted(table)
    alpha = float(model_config.alpha)
    if alpha in table:
        return table[alpha]
    if len(alphas) == 1:
        return table[alphas[0]]
    if alpha < alphas[0]:
        low, high = alphas[0], alphas[1]
    elif alpha > alphas[-1]:
        low, high = alphas[-2], alphas[-1]
    else:
        high = next(a for a in alphas if a > alpha)
        low = alphas[alphas.index(high) - 1]
    slope = (table[high] - table[low]) / (high - low)
    return max(min(table.values()), table[low] + slope * (alpha - low))


def max_pixels(model_config, memory_budget_bytes=DEFAULT_MEMORY_BUDGET_BYTES):
    """The most pixels (batch x height x width) one untiled request may hold: int >= 1.

    Raises:
      ValueError: the budget is not a positive finite number.
    """
    if not (isinstance(memory_budget_bytes, (int, float)) and math.isfinite(memory_budget_bytes)
            and memory_budget_bytes > 0):
        raise ValueError(f"memory budget must be a positive number of bytes, got "
                         f"{memory_budget_bytes!r}")
    return max(1, int(memory_budget_bytes // bytes_per_pixel(model_config)))


def describe(model_config, memory_budget_bytes=DEFAULT_MEMORY_BUDGET_BYTES):
    """The "limits" section of an export's metadata (JSON-ready dict)."""
    return {
        "max_pixels_per_request": max_pixels(model_config, memory_budget_bytes),
        "memory_budget_bytes": int(memory_budget_bytes),
        "bytes_per_pixel": bytes_per_pixel(model_config),
        "generator": generator_name(model_config),
        "note": "requests above max_pixels_per_request (batch x height x width) fail "
                "with InvalidArgument; the encoded-image signatures check the file header "
                "before decoding",
    }


# ---------------------------------------------------------------------------------------
# Image size from the file header, in the graph (no decoding).

_HEAD = 32


def encoded_image_size(data):
    """(height, width) of an encoded image from its header, without decoding it.

    Graph ops only (it runs inside the exported signatures and tf.data). Formats:
    PNG (IHDR), JPEG (the SOF marker, via tf.image.extract_jpeg_shape), GIF (logical
    screen), BMP (BITMAPINFOHEADER or BITMAPCOREHEADER) and WebP (VP8, VP8L, VP8X).

    Args:
      data: scalar string, the file's bytes.

    Returns:
      int64 [2]: (height, width), or (-1, -1) when the format is not one of these
      (the decoder then reports it). Each side is clipped to 2^31.
    """
    head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, _HEAD),
                                              tf.constant(b"\0" * _HEAD)]), 0, _HEAD)
    raw = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)

    def starts(offset, magic):
        return tf.equal(tf.strings.substr(head, offset, len(magic)), magic)

    def big_endian(offset, size):
        return sum(raw[offset + k] * (1 << (8 * (size - 1 - k))) for k in range(size))

    def little_endian(offset, size):
        return sum(raw[offset + k] * (1 << (8 * k)) for k in range(size))

    def signed32(value):
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    unknown = tf.constant([-1, -1], tf.int64)
    png = tf.stack([big_endian(20, 4), big_endian(16, 4)])
    gif = tf.stack([little_endian(8, 2), little_endian(6, 2)])
    core_bmp = tf.equal(little_endian(14, 4), 12)
    bmp = tf.where(core_bmp, tf.stack([little_endian(20, 2), little_endian(18, 2)]),
                   tf.stack([signed32(little_endian(22, 4)), signed32(little_endian(18, 4))]))
    vp8l_bits = little_endian(21, 4)
    webp = tf.where(
        starts(12, b"VP8X"), tf.stack([little_endian(27, 3) + 1, little_endian(24, 3) + 1]),
        tf.where(starts(12, b"VP8L"),
                 tf.stack([(vp8l_bits // 2**14) % 2**14 + 1, vp8l_bits % 2**14 + 1]),
                 tf.where(starts(12, b"VP8 "),
                          tf.stack([little_endian(28, 2) % 2**14,
                                    little_endian(26, 2) % 2**14]), unknown)))
    is_webp = tf.logical_and(starts(0, b"RIFF"), starts(8, b"WEBP"))
    size = tf.where(starts(0, b"\x89PNG\r\n\x1a\n"), png,
                    tf.where(starts(0, b"GIF8"), gif,
                             tf.where(starts(0, b"BM"), bmp,
                                      tf.where(is_webp, webp, unknown))))

    def jpeg_size():
        return tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)

    size = tf.cond(starts(0, b"\xff\xd8\xff"), jpeg_size, lambda: size)
    return tf.minimum(size, 2**31)
