"""The pixel cap: image headers read in the graph, exported signatures that refuse large
requests before decoding or running the network, the stylize CLI's default cap, and
training content whose header claims a huge image."""
import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from magenta_style import cli
from magenta_style import config as config_lib
from magenta_style.data import demo_images
from magenta_style.data import pipeline as data
from magenta_style import export
from magenta_style.inference import stylize_lib
from magenta_style.inference import stylizer
from magenta_style.media import images
from magenta_style.media import limits
from magenta_style.networks import transformer
from magenta_style.serving import export_lib
from magenta_style.serving import signatures as export_signatures
from magenta_style import stylize

MODEL_CONFIG = config_lib.ModelConfig(num_styles=2, alpha=0.25)


def png_header(width, height):
    """A PNG that is only a signature, an IHDR claiming width x height and an IEND."""
    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 4)) + chunk(b"IEND", b""))


def _encoded(fmt, width=37, height=23, **options):
    rgb = (np.random.default_rng(0).random([height, width, 3]) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt, options", [
    ("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}), ("GIF", {}), ("BMP", {}),
    ("WEBP", {"lossless": False}), ("WEBP", {"lossless": True})])
def test_header_size_of_real_files(fmt, options):
    size = limits.encoded_image_size(tf.constant(_encoded(fmt, **options))).numpy()
    assert size.tolist() == [23, 37]


def test_header_size_of_crafted_and_unknown_data():
    huge = png_header(20000, 20000)
    assert len(huge) < 80  # A few bytes that claim 1.2 GB of float pixels.
    assert limits.encoded_image_size(tf.constant(huge)).numpy().tolist() == [20000, 20000]
    gif = b"GIF89a" + struct.pack("<HH", 65535, 40000) + b"\0" * 10
    assert limits.encoded_image_size(tf.constant(gif)).numpy().tolist() == [40000, 65535]
    for junk in (b"", b"ab", b"not an image at all, just text"):
        assert limits.encoded_image_size(tf.constant(junk)).numpy().tolist() == [-1, -1]


def test_cap_follows_the_measured_cost_and_refuses_8000_squared():
    for alpha in (0.25, 0.5, 0.75, 1.0):
        cap = limits.max_pixels(config_lib.ModelConfig(1, alpha))
        assert cap < 8000 * 8000
        assert cap * limits.bytes_per_pixel(config_lib.ModelConfig(1, alpha)) <= 4 * 2**30
    costs = [limits.bytes_per_pixel(config_lib.ModelConfig(1, a)) for a in (0.1, 0.3, 0.6, 2.0)]
    assert costs == sorted(costs)  # Interpolated and extrapolated monotonically.
    assert limits.max_pixels(MODEL_CONFIG, 2 * 2**30) < limits.max_pixels(MODEL_CONFIG)
    with pytest.raises(ValueError):
        limits.max_pixels(MODEL_CONFIG, float("nan"))


@pytest.fixture(scope="module")
def module():
    model = transformer.build_transformer(MODEL_CONFIG)
    return export_signatures.StylizerModule(model, MODEL_CONFIG, "{}", max_pixels=1000)


def _weights(batch=1):
    return tf.constant([[1.0, 0.0]] * batch)


def test_float_signatures_refuse_requests_above_the_cap(module):
    ok = module.stylize(tf.zeros([1, 25, 40, 3]), _weights())["stylized_image"]
    assert ok.shape == (1, 25, 40, 3)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"1 image\(s\) of 40x26 .* 1040 pixels exceeds the cap of this "
                             r"model, 1000 pixels per request"):
        module.stylize(tf.zeros([1, 26, 40, 3]), _weights())
    with pytest.raises(tf.errors.InvalidArgumentError, match="2 image.* model, 1000 pixels"):
        module.stylize_advanced(tf.zeros([2, 20, 30, 3]), _weights(2), tf.ones([2]),
                                tf.zeros([2], tf.bool))
    with pytest.raises(tf.errors.InvalidArgumentError, match="model, 1000 pixels"):
        module.stylize_map(tf.zeros([1, 40, 40, 3]), tf.ones([1, 40, 40, 2]), tf.ones([1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="model, 1000 pixels"):
        module.__call__(tf.zeros([1, 40, 40, 3]), _weights())


def test_bytes_signatures_check_the_header_before_decoding(module):
    small = _encoded("PNG", 30, 20)
    assert module.stylize_bytes(tf.constant([small]), _weights())[
        "stylized_image_bytes"].shape == (1,)
    # The 69-byte PNG's pixel data is empty: decoding it would fail with another message.
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"is 20000x20000 .* 400000000 pixels, above the cap of this "
                             r"model, 1000 pixels .*nothing was decoded"):
        module.stylize_bytes(tf.constant([png_header(20000, 20000)]), _weights())
    for fmt in ("JPEG", "GIF", "BMP", "WEBP"):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"is 40x30 \(width x height\) by its header"):
            module.stylize_bytes_advanced(tf.constant([_encoded(fmt, 40, 30)]), _weights(),
                                          tf.ones([1]), tf.zeros([1], tf.bool))
    with pytest.raises(tf.errors.InvalidArgumentError, match="2 image.*1200 pixels"):
        module.stylize_bytes(tf.constant([small, small]), _weights(2))


@pytest.mark.slow
def test_export_records_the_cap_and_its_graph_enforces_it(tmp_path):
    model = transformer.build_transformer(MODEL_CONFIG)
    budget = 5000 * limits.bytes_per_pixel(MODEL_CONFIG)
    version_dir = export_lib.export_saved_model(model, MODEL_CONFIG, str(tmp_path / "export"),
                                                warmup_size=16, memory_budget_bytes=budget)
    recorded = stylizer.read_metadata(version_dir)["limits"]
    assert recorded["max_pixels_per_request"] == 5000
    assert recorded["memory_budget_bytes"] == int(budget)
    loaded = tf.saved_model.load(version_dir)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"is 20000x20000 \(width x height\) by its header"):
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([png_header(20000, 20000)]),
                                           style_weights=_weights())
    with pytest.raises(tf.errors.InvalidArgumentError, match="model, 5000 pixels"):
        loaded.signatures["serving_default"](image=tf.zeros([1, 80, 80, 3]),
                                             style_weights=_weights())
    out = loaded.signatures["serving_default"](image=tf.zeros([1, 50, 100, 3]),
                                               style_weights=_weights())
    assert out["stylized_image"].shape == (1, 50, 100, 3)
    with pytest.raises(export_lib.ExportError, match="warmup image"):
        export_lib.export_saved_model(model, MODEL_CONFIG, str(tmp_path / "export"),
                                      warmup_size=80, memory_budget_bytes=budget)

    # stylize with this export: too large for one call of 2 styles, so one at a time; an
    # input above the export's cap is refused by the loader, without decoding it.
    exported, model_config = stylizer.load_export(version_dir)
    assert exported.max_pixels == 5000
    photo = tmp_path / "photo.png"
    images.save_image_atomic(photo, demo_images.content_image(0, 60))
    big = tmp_path / "big.png"
    big.write_bytes(png_header(100, 60))
    summary = stylize_lib.stylize_files(exported, model_config, [str(photo), str(big)],
                                        str(tmp_path / "out"), stylizer.StylizeOptions(styles="[0,1]"))
    assert len(summary.written) == 2
    assert [p for p, _ in summary.failed] == [str(big)]
    assert "100x60 = 0.0 Mpx exceeds the cap" in summary.failed[0][1]


def test_stylize_default_cap_refuses_8000_squared_untiled_only(tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(8000, 8000))
    model = transformer.build_transformer(MODEL_CONFIG)
    untiled = stylize_lib.stylize_files(model, MODEL_CONFIG, [str(huge)], str(tmp_path / "a"),
                                        stylizer.StylizeOptions(styles="[0]", max_tile_pixels=0))
    assert "8000x8000 = 64.0 Mpx exceeds the cap" in untiled.failed[0][1]
    # Tiled, memory is bounded by the tile: the size is allowed (this file then fails to
    # decode, having no pixel data, which shows the cap let it through).
    tiled = stylize_lib.stylize_files(model, MODEL_CONFIG, [str(huge)], str(tmp_path / "b"),
                                      stylizer.StylizeOptions(styles="[0]"))
    assert "exceeds the cap" not in tiled.failed[0][1]
    args = stylize.parse_args(["stylize", "--checkpoint=c", "--input_image=i", "--output_dir=o"])
    assert args.max_pixels is None


def test_export_memory_budget_flag():
    argv = ["export", "--checkpoint=c", "--export_dir=e"]
    assert export.parse_args(argv + ["--memory_budget_gib=2"]).memory_budget_bytes == 2 * 2**30
    assert export.parse_args(argv).memory_budget_bytes == limits.DEFAULT_MEMORY_BUDGET_BYTES
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(cli.UsageError, match="--memory_budget_gib"):
            export.parse_args(argv + [f"--memory_budget_gib={bad}"])


def test_training_skips_content_whose_header_claims_a_huge_image(tmp_path):
    images.save_image_atomic(tmp_path / "good.png", demo_images.content_image(0, 40))
    (tmp_path / "huge.png").write_bytes(png_header(20000, 20000))
    config = config_lib.DataConfig(style_dataset_file="x", content_images=str(tmp_path),
                                   image_size=32)
    source = data.resolve_content_source(config)
    batch = next(iter(data.make_dataset_fn(source, config, 4, 2, seed=0)(None)))
    assert int(tf.reduce_sum(batch["skipped"])) >= 1
    # Evaluation images too.
    (tmp_path / "zz_huge.png").write_bytes(png_header(20000, 20000))
    _, used = data.load_eval_images(str(tmp_path), 16)
    assert [p.rsplit("/", 1)[1] for p in used] == ["good.png"]


# ---------------------------------------------------------------------------------------
# GIF frames (issue 28 item 1): the decoder decodes every frame at the size of its own
# descriptor; the logical screen size says nothing about either.


def gif_file(screen, frames, pixel_data=True):
    """A GIF89a with a 2-colour global table and one frame per (left, top, width, height).

    Each frame's LZW data is one colour (a clear code before every other code keeps the
    code width at 3 bits), or, with pixel_data=False, 4 codes only: a frame that claims
    its size but would fail to decode.
    """
    def lzw(count):
        codes, left = [], count
        while left > 0:
            codes += [4, 0] + ([0] if left > 1 else [])  # clear, pixel(, pixel)
            left -= 2
        bits = sum(code << (3 * k) for k, code in enumerate(codes + [5]))  # 5: end.
        return bits.to_bytes((3 * (len(codes) + 1) + 7) // 8, "little")

    out = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    for left, top, width, height in frames:
        data = lzw(width * height if pixel_data else 2)
        blocks = b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255]
                          for i in range(0, len(data), 255))
        out += (b"\x21\xf9\x04\0\0\0\0\0"  # A graphic control extension before each frame.
                + b"\x2c" + struct.pack("<HHHHB", left, top, width, height, 0)
                + b"\x02" + blocks + b"\0")
    return out + b"\x3b"


def _pillow_animation():
    frames = [Image.fromarray(np.full([20, 30, 3], 60 * k, np.uint8)) for k in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def test_gif_size_and_cost_come_from_every_frame_descriptor():
    def cost(data):
        return limits.encoded_image_cost(tf.constant(data)).numpy().tolist()

    bigger_frame = gif_file((16, 16), [(0, 0, 64, 48)])
    # TF's decoder returns the largest frame, not the screen: the header says so too.
    assert tf.io.decode_image(bigger_frame, expand_animations=False).shape[:2] == (48, 64)
    assert limits.encoded_image_size(tf.constant(bigger_frame)).numpy().tolist() == [48, 64]
    assert cost(bigger_frame) == [48, 64, 48 * 64]
    # A later frame, and the frames' sum: every frame is decoded.
    assert cost(gif_file((16, 16), [(0, 0, 16, 16), (3, 0, 40, 8)])) == [16, 40, 16 * 40]
    assert cost(gif_file((16, 16), [(0, 0, 16, 16)] * 5)) == [16, 16, 5 * 256]
    # Pillow's animations (local colour tables, application extension) parse the same way.
    assert cost(_pillow_animation()) == [20, 30, 3 * 600]
    assert cost(_encoded("GIF", 37, 23)) == [23, 37, 851]
    # Other formats: height x width; unknown data: -1.
    assert cost(png_header(300, 200)) == [200, 300, 60000]
    assert cost(b"not an image") == [-1, -1, -1]


def test_bytes_signatures_refuse_a_gif_frame_larger_than_its_screen(module):
    # 16x16 by its screen; a 4000x4000 frame: refused before giflib allocates it.
    crafted = gif_file((16, 16), [(0, 0, 4000, 4000)], pixel_data=False)
    assert len(crafted) < 80
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"is 4000x4000 \(width x height\) by its header.*16000000 "
                             r"pixels.*nothing was decoded"):
        module.stylize_bytes(tf.constant([crafted]), _weights())
    # An animation of small frames whose frames together are above the cap.
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"is 16x16 .* 1280 pixels"):
        module.stylize_bytes_advanced(tf.constant([gif_file((16, 16), [(0, 0, 16, 16)] * 5)]),
                                      _weights(), tf.ones([1]), tf.zeros([1], tf.bool))
    ok = module.stylize_bytes(tf.constant([gif_file((8, 8), [(0, 0, 8, 8)] * 3)]), _weights())
    assert ok["stylized_image_bytes"].shape == (1,)


def test_training_content_and_eval_images_count_every_gif_frame(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_CONTENT_PIXELS", 1000)
    images.save_image_atomic(tmp_path / "good.png", demo_images.content_image(0, 24))
    (tmp_path / "frame.gif").write_bytes(gif_file((16, 16), [(0, 0, 64, 48)]))
    (tmp_path / "frames.gif").write_bytes(gif_file((16, 16), [(0, 0, 16, 16)] * 5))
    _, used = data.load_eval_images(str(tmp_path), 16)
    assert [p.rsplit("/", 1)[1] for p in used] == ["good.png"]
    config = config_lib.DataConfig(style_dataset_file="x", content_images=str(tmp_path),
                                   image_size=32)
    source = data.resolve_content_source(config)
    batch = next(iter(data.make_dataset_fn(source, config, 6, 2, seed=0)(None)))
    assert int(tf.reduce_sum(batch["skipped"])) >= 2


def test_python_loader_checks_the_first_frames_own_size(tmp_path):
    path = tmp_path / "frame.gif"
    path.write_bytes(gif_file((16, 16), [(0, 0, 64, 48)]))
    rgb, _ = images.load_image(path)
    assert rgb.shape == (48, 64, 3)
    with pytest.raises(images.ImageError, match=r"64x48 = 0.0 Mpx exceeds the cap"):
        images.load_image(path, max_pixels=1000)
    # Later frames are never decoded by the Python loader: the first one decides.
    path.write_bytes(gif_file((16, 16), [(0, 0, 16, 16), (0, 0, 64, 48)]))
    assert images.load_image(path, max_pixels=1000)[0].shape == (16, 16, 3)
