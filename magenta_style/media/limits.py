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


def _gif_frames(data):
    """(tallest frame, widest frame, pixels of all frames) from a GIF's image descriptors.

    TF's decoder (giflib's DGifSlurp) decodes every frame of the file, at the size its
    own descriptor gives, even when only the first frame is returned, and returns a
    canvas as large as the largest frame: the logical screen size says nothing about
    either (a 190 KB GIF with a 16 x 16 screen held a 16000 x 16000 frame). So the
    blocks are walked, one step per block or data sub-block (a few hundred steps per
    100 KB), without decoding anything: 0x21 extensions and 0x2C image descriptors
    (followed by an optional local colour table and LZW data), up to the 0x3B trailer
    or the first byte that is neither (the decoder then reports the damage).

    Args:
      data: scalar string, a GIF file's bytes.

    Returns:
      int64 [3]: (height, width, pixels), 0s when there is no frame.
    """
    raw = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int64)
    length = tf.size(raw, out_type=tf.int64)
    # Padding keeps reads a few bytes past the end inside the array (as zeros).
    padded = tf.concat([raw, tf.zeros([_HEAD], tf.int64)], 0)
    last = length + _HEAD - 1

    def byte(position):
        position = tf.convert_to_tensor(position, tf.int64)
        return tf.gather(padded, tf.clip_by_value(position, tf.constant(0, tf.int64), last))

    def little_endian16(position):
        return byte(position) + 256 * byte(position + 1)

    def colour_table(packed):
        # Flag 0x80: a table of 2^(size + 1) RGB entries follows.
        return tf.where(tf.bitwise.bitwise_and(packed, 0x80) > 0,
                        3 * tf.bitwise.left_shift(tf.constant(2, tf.int64),
                                                  tf.bitwise.bitwise_and(packed, 7)),
                        tf.constant(0, tf.int64))

    zero = tf.constant(0, tf.int64)
    start = 13 + colour_table(byte(tf.constant(10, tf.int64)))  # Header 6, screen 7 bytes.
    steps = tf.cast(tf.minimum(length + 1, 2**31 - 1), tf.int32)  # Each step moves on.

    def skip_data(position):
        # A chain of data sub-blocks: a length byte, that many bytes; a 0 length ends it
        # (so does the padding past the end). A tight loop: it runs once per 255 bytes.
        end = tf.while_loop(lambda p: byte(p) > 0, lambda p: (p + 1 + byte(p),), (position,),
                            maximum_iterations=steps)[0]
        return end + 1

    def step(position, height, width, pixels, done):
        value = byte(position)
        # An extension (introducer, label, data) or a frame (descriptor, optional colour
        # table, LZW code size, data); anything else (0x3B trailer, damage, the end) stops.
        is_frame = tf.equal(value, 0x2C)
        stop = tf.logical_or(position >= length,
                             tf.logical_not(tf.logical_or(is_frame, tf.equal(value, 0x21))))
        frame_width = little_endian16(position + 5)
        frame_height = little_endian16(position + 7)
        data = tf.where(is_frame, position + 11 + colour_table(byte(position + 9)),
                        position + 2)
        counted = tf.logical_and(is_frame, tf.logical_not(stop))
        return (tf.cond(stop, lambda: position, lambda: skip_data(data)),
                tf.where(counted, tf.maximum(height, frame_height), height),
                tf.where(counted, tf.maximum(width, frame_width), width),
                tf.where(counted, tf.minimum(pixels + frame_width * frame_height, 2**50),
                         pixels),
                stop)

    _, height, width, pixels, _ = tf.while_loop(
        lambda *state: tf.logical_not(state[-1]), step,
        (start, zero, zero, zero, tf.constant(False)), maximum_iterations=steps)
    return tf.stack([height, width, pixels])


def encoded_image_cost(data):
    """(height, width, pixels) of an encoded image from its headers, without decoding it.

    `pixels` is what the decoder allocates, in pixels: height x width, except for a GIF,
    where every frame is decoded (see _gif_frames): the larger of its canvas and the sum
    of its frames' pixels. Height and width are the size the decoder returns (for a GIF
    the largest frame or the logical screen, whichever is larger). Graph ops only.

    Args:
      data: scalar string, the file's bytes.

    Returns:
      int64 [3]; (-1, -1, -1) when the format is not known (the decoder then reports it).
    """
    size = encoded_image_size(data, _gif_canvas=False)

    def gif():
        frames = _gif_frames(data)
        height = tf.maximum(size[0], frames[0])
        width = tf.maximum(size[1], frames[1])
        return tf.stack([height, width, tf.maximum(height * width, frames[2])])

    def other():
        return tf.concat([size, [tf.where(size[0] >= 0, size[0] * size[1], -1)]], 0)

    is_gif = tf.equal(tf.strings.substr(data, 0, 4), b"GIF8")
    return tf.cond(is_gif, gif, other)


def encoded_image_size(data, _gif_canvas=True):
    """(height, width) of an encoded image from its header, without decoding it.

    Graph ops only (it runs inside the exported signatures and tf.data). Formats:
    PNG (IHDR), JPEG (the SOF marker, via tf.image.extract_jpeg_shape), GIF (the
    logical screen and every frame's descriptor, see _gif_frames), BMP
    (BITMAPINFOHEADER or BITMAPCOREHEADER) and WebP (VP8, VP8L, VP8X). A pixel cap
    must use `encoded_image_cost`, which also counts every frame of an animated GIF.

    Args:
      data: scalar string, the file's bytes.
      _gif_canvas: False reads a GIF's logical screen alone (encoded_image_cost's use).

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
    if _gif_canvas:
        size = tf.cond(starts(0, b"GIF8"),
                       lambda: tf.maximum(size, _gif_frames(data)[:2]), lambda: size)
    return tf.minimum(size, 2**31)
