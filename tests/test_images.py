"""Tests for magenta_style.media.images: every input mode/format, size cap, bad files, atomic writes."""
import os
import struct
import zlib

import numpy as np
from PIL import Image
import pytest

from magenta_style.media import images

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def _halves(width=16, height=8, left=RED, right=BLUE):
    """RGB uint8 [height, width, 3]: left half `left`, right half `right`."""
    pixels = np.zeros([height, width, 3], np.uint8)
    pixels[:, :width // 2] = left
    pixels[:, width // 2:] = right
    return pixels


def _gradient(height=12, width=20):
    """RGB uint8 [height, width, 3] with distinct values per pixel and channel."""
    y, x = np.mgrid[:height, :width]
    return np.stack([x * 12, y * 20, (x + y) * 7], axis=-1).astype(np.uint8)


def _assert_rgb(rgb, alpha, shape, has_alpha=False):
    assert rgb.dtype == np.float32 and rgb.shape == shape + (3,)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    if has_alpha:
        assert alpha is not None and alpha.dtype == np.float32 and alpha.shape == shape
    else:
        assert alpha is None


def test_png_rgb_exact(tmp_path):
    pixels = _gradient()
    path = tmp_path / "rgb.png"
    Image.fromarray(pixels).save(path)
    rgb, alpha = images.load_image(path)
    _assert_rgb(rgb, alpha, (12, 20))
    np.testing.assert_array_equal(rgb, pixels.astype(np.float32) / 255.0)


def test_jpeg(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(_halves()).save(path, quality=95)
    rgb, alpha = images.load_image(path)
    _assert_rgb(rgb, alpha, (8, 16))
    np.testing.assert_allclose(rgb[4, 1], [1, 0, 0], atol=0.1)
    np.testing.assert_allclose(rgb[4, 14], [0, 0, 1], atol=0.1)


def test_png_rgba_keeps_alpha(tmp_path):
    pixels = np.concatenate([_gradient(), np.full([12, 20, 1], 7, np.uint8)], axis=-1)
    pixels[3, 4, 3] = 0
    pixels[5, 6, 3] = 255
    path = tmp_path / "rgba.png"
    Image.fromarray(pixels).save(path)
    rgb, alpha = images.load_image(path)
    _assert_rgb(rgb, alpha, (12, 20), has_alpha=True)
    np.testing.assert_array_equal(rgb, pixels[..., :3] / np.float32(255))
    np.testing.assert_array_equal(alpha, pixels[..., 3] / np.float32(255))


def test_palette_without_transparency(tmp_path):
    path = tmp_path / "palette.png"
    Image.fromarray(_halves()).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)
    assert Image.open(path).mode == "P"
    rgb, alpha = images.load_image(path)
    _assert_rgb(rgb, alpha, (8, 16))
    np.testing.assert_array_equal(rgb[0, 0], [1, 0, 0])
    np.testing.assert_array_equal(rgb[0, 15], [0, 0, 1])


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (6, 4))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * (254 * 3))
    indices = np.zeros([4, 6], np.uint8)
    indices[:, 3:] = 1
    image.putdata(indices.ravel().tolist())
    path = tmp_path / "transparent.png"
    image.save(path, transparency=1)  # palette index 1 (green) is fully transparent
    rgb, alpha = images.load_image(path)
    _assert_rgb(rgb, alpha, (4, 6), has_alpha=True)
    np.testing.assert_array_equal(alpha[:, :3], 1.0)
    np.testing.assert_array_equal(alpha[:, 3:], 0.0)
    np.testing.assert_array_equal(rgb[0, 0], [1, 0, 0])


def test_grayscale(tmp_path):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    path = tmp_path / "gray.png"
    Image.fromarray(gray).save(path)
    assert Image.open(path).mode == "L"
    rgb, alpha = images.load_image(path)
    _assert_rgb(rgb, alpha, (6, 8))
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], gray / np.float32(255))


def test_grayscale_with_alpha(tmp_path):
    image = Image.fromarray(np.full([3, 5], 200, np.uint8)).convert("LA")
    image.putalpha(51)
    path = tmp_path / "la.png"
    image.save(path)
    assert Image.open(path).mode == "LA"
    rgb, alpha = images.load_image(path)
    _assert_rgb(rgb, alpha, (3, 5), has_alpha=True)
    np.testing.assert_array_equal(rgb, np.float32(200) / 255)
    np.testing.assert_array_equal(alpha, np.float32(51) / 255)


def test_bilevel(tmp_path):
    path = tmp_path / "bits.png"
    Image.fromarray(_halves(left=(255, 255, 255), right=(0, 0, 0))).convert("1").save(path)
    rgb, alpha = images.load_image(path)
    _assert_rgb(rgb, alpha, (8, 16))
    np.testing.assert_array_equal(rgb[:, :8], 1.0)
    np.testing.assert_array_equal(rgb[:, 8:], 0.0)


def test_sixteen_bit_keeps_precision(tmp_path):
    data = (np.arange(40, dtype=np.uint16).reshape(5, 8) * 1601 + 3)
    path = tmp_path / "deep.png"
    Image.fromarray(data).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb, alpha = images.load_image(path)
    _assert_rgb(rgb, alpha, (5, 8))
    # /65535, not clipped or truncated to 8 bits: 3 and 1604 stay distinct from 0 and 1542.
    np.testing.assert_allclose(rgb[..., 1], data / 65535.0, rtol=0, atol=1e-7)
    assert rgb.max() == pytest.approx((39 * 1601 + 3) / 65535.0)


def test_sixteen_bit_tiff(tmp_path):
    data = np.full([4, 4], 65535, np.uint16)
    data[0, 0] = 0
    path = tmp_path / "deep.tif"
    Image.fromarray(data).save(path)
    rgb, _ = images.load_image(path)
    assert rgb[0, 0, 0] == 0.0 and rgb[1, 1, 2] == 1.0


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    path = tmp_path / "cmyk.jpg"
    cmyk.save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    rgb, alpha = images.load_image(path)
    _assert_rgb(rgb, alpha, (8, 8))
    np.testing.assert_allclose(rgb[4, 4], [1, 0, 0], atol=0.05)


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.fromarray(np.full([6, 10, 3], c, np.uint8)) for c in (RED, BLUE, (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 3
    rgb, alpha = images.load_image(path)
    assert rgb.shape == (6, 10, 3)
    np.testing.assert_array_equal(rgb[3, 5], [1, 0, 0])


def test_bmp(tmp_path):
    pixels = _gradient()
    path = tmp_path / "image.bmp"
    Image.fromarray(pixels).save(path)
    rgb, alpha = images.load_image(path)
    _assert_rgb(rgb, alpha, (12, 20))
    np.testing.assert_array_equal(rgb, pixels / np.float32(255))


def test_webp_lossless_with_alpha(tmp_path):
    pixels = np.concatenate([_gradient(), np.full([12, 20, 1], 128, np.uint8)], axis=-1)
    path = tmp_path / "image.webp"
    Image.fromarray(pixels).save(path, lossless=True)
    rgb, alpha = images.load_image(path)
    _assert_rgb(rgb, alpha, (12, 20), has_alpha=True)
    np.testing.assert_array_equal(rgb, pixels[..., :3] / np.float32(255))
    np.testing.assert_array_equal(alpha, np.float32(128) / 255)


@pytest.mark.parametrize("orientation, top, bottom", [
    (6, RED, BLUE),   # stored 16 wide x 8 high; shown rotated 90 degrees clockwise
    (8, BLUE, RED),   # shown rotated 90 degrees counter-clockwise
])
def test_exif_orientation_applied(tmp_path, orientation, top, bottom):
    image = Image.fromarray(_halves(width=16, height=8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=95)
    rgb, alpha = images.load_image(path)
    _assert_rgb(rgb, alpha, (16, 8))  # width and height swapped
    np.testing.assert_allclose(rgb[2, 4], np.array(top) / 255, atol=0.1)
    np.testing.assert_allclose(rgb[13, 4], np.array(bottom) / 255, atol=0.1)


def test_pixel_cap(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(_gradient(12, 20)).save(path)
    assert images.load_image(path, max_pixels=240)[0].shape == (12, 20, 3)
    with pytest.raises(images.ImageError) as info:
        images.load_image(path, max_pixels=239)
    message = str(info.value)
    assert str(path) in message and "too large" in message and "20x12" in message
    assert "\n" not in message


def test_default_cap_refuses_a_bomb_without_decoding(tmp_path):
    # A 1-bit 12000 x 9000 PNG: 108 Mpx, a few kilobytes on disk.
    path = tmp_path / "bomb.png"
    Image.new("1", (12000, 9000)).save(path)
    assert os.path.getsize(path) < 100_000
    with pytest.raises(images.ImageError, match="too large"):
        images.load_image(path)


def test_pillow_bomb_limit_is_reported(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.fromarray(_gradient(12, 20)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # Pillow refuses above 2 x 50
    with pytest.raises(images.ImageError, match="decompression-bomb"):
        images.load_image(path, max_pixels=None)


@pytest.mark.parametrize("suffix, fmt", [(".png", "PNG"), (".jpg", "JPEG")])
def test_truncated(tmp_path, suffix, fmt):
    path = tmp_path / f"cut{suffix}"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, [32, 32, 3], dtype=np.uint8)).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(images.ImageError) as info:
        images.load_image(path)
    message = str(info.value)
    assert message.startswith(str(path)) and ("truncated" in message or "decoded" in message)
    assert "\n" not in message


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    with pytest.raises(images.ImageError, match="not an image"):
        images.load_image(path)


def test_missing_and_directory(tmp_path):
    with pytest.raises(images.ImageError, match="no such file"):
        images.load_image(tmp_path / "nope.jpg")
    with pytest.raises(images.ImageError, match="is a directory"):
        images.load_image(tmp_path)


def test_image_error_is_value_error():
    assert issubclass(images.ImageError, ValueError)


# ---- writing ----------------------------------------------------------------------


def test_to_uint8_rounds_and_clips():
    x = np.array([-0.5, 0.0, 100.6 / 255, 100.4 / 255, 0.999, 1.0, 7.0], np.float32)
    # Magenta's np.uint8(x * 255) would give 100 for 100.6 / 255 and 254 for 0.999.
    np.testing.assert_array_equal(images.to_uint8(x), [0, 0, 101, 100, 255, 255, 255])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_to_uint8_refuses_non_finite(bad):
    with pytest.raises(ValueError, match="NaN or infinite"):
        images.to_uint8(np.array([0.5, bad]))


def test_save_png_round_trip(tmp_path):
    pixels = _gradient()
    path = tmp_path / "out.png"
    assert images.save_image_atomic(path, pixels / 255.0) == str(path)
    with Image.open(path) as saved:
        assert saved.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(saved), pixels)
    assert os.listdir(tmp_path) == ["out.png"]


def test_save_png_with_alpha(tmp_path):
    rgb = _gradient() / 255.0
    alpha = np.linspace(0, 1, 240).reshape(12, 20)
    path = tmp_path / "out.png"
    images.save_image_atomic(path, rgb, alpha)
    with Image.open(path) as saved:
        assert saved.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(saved)[..., 3], images.to_uint8(alpha))
    loaded_rgb, loaded_alpha = images.load_image(path)
    np.testing.assert_array_equal(loaded_rgb, _gradient() / np.float32(255))
    np.testing.assert_allclose(loaded_alpha, alpha, atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize("suffix, fmt, mode", [
    (".jpg", "JPEG", "RGB"), (".jpeg", "JPEG", "RGB"), (".webp", "WEBP", "RGBA"),
    (".bmp", "BMP", "RGB"), (".PNG", "PNG", "RGBA"),
])
def test_save_format_by_suffix(tmp_path, suffix, fmt, mode):
    path = tmp_path / f"out{suffix}"
    alpha = np.ones([8, 8])
    alpha[0, 0] = 0.5  # WebP drops an all-opaque alpha channel
    images.save_image_atomic(path, np.full([8, 8, 3], 0.5), alpha)
    with Image.open(path) as saved:
        assert saved.format == fmt and saved.mode == mode and saved.size == (8, 8)


def test_save_unknown_suffix_and_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="unknown output format"):
        images.save_image_atomic(tmp_path / "out.gifx", np.zeros([4, 4, 3]))
    with pytest.raises(ValueError, match=r"rgb must be \[H, W, 3\]"):
        images.save_image_atomic(tmp_path / "out.png", np.zeros([4, 4]))
    with pytest.raises(ValueError, match="alpha must be"):
        images.save_image_atomic(tmp_path / "out.png", np.zeros([4, 4, 3]), np.zeros([4, 5]))
    assert os.listdir(tmp_path) == []


def test_save_nan_writes_nothing_and_keeps_old_file(tmp_path):
    path = tmp_path / "out.png"
    images.save_image_atomic(path, np.zeros([4, 4, 3]))
    before = path.read_bytes()
    bad = np.zeros([4, 4, 3])
    bad[1, 1, 1] = np.nan
    with pytest.raises(ValueError):
        images.save_image_atomic(path, bad)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.png"]


def test_save_failure_midway_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "out.png"
    images.save_image_atomic(path, np.zeros([4, 4, 3]))
    before = path.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        images.save_image_atomic(path, np.ones([4, 4, 3]))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.png"]


def test_save_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        images.save_image_atomic(tmp_path / "out.png", np.zeros([2, 2, 3]))
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "out.png").st_mode & 0o777 == 0o644


# ---- --input_image expansion --------------------------------------------------------


def _touch_images(directory, names):
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(b"x")


def test_expand_file(tmp_path):
    _touch_images(tmp_path, ["a.txt"])
    # A file named explicitly is taken whatever its suffix (load_image judges it).
    assert images.expand_inputs(str(tmp_path / "a.txt")) == [str(tmp_path / "a.txt")]


def test_expand_directory(tmp_path):
    _touch_images(tmp_path, ["b.PNG", "a.jpg", "c.webp", "notes.txt", "d.gif", "e.bmp",
                             "f.jpeg"])
    (tmp_path / "sub").mkdir()
    _touch_images(tmp_path / "sub", ["z.png"])
    found = images.expand_inputs(str(tmp_path))
    assert [os.path.basename(p) for p in found] == [
        "a.jpg", "b.PNG", "c.webp", "d.gif", "e.bmp", "f.jpeg"]


def test_expand_glob(tmp_path):
    _touch_images(tmp_path, ["x1.jpg", "x2.jpg", "y.jpg", "x3.txt"])
    _touch_images(tmp_path / "deep", ["x4.jpg"])
    assert [os.path.basename(p) for p in images.expand_inputs(str(tmp_path / "x*"))] == [
        "x1.jpg", "x2.jpg"]
    recursive = images.expand_inputs(str(tmp_path / "**" / "x*.jpg"))
    assert recursive == sorted(recursive)  # by full path
    assert sorted(os.path.basename(p) for p in recursive) == ["x1.jpg", "x2.jpg", "x4.jpg"]


def test_expand_nothing(tmp_path):
    with pytest.raises(images.ImageError, match="no such file or directory"):
        images.expand_inputs(str(tmp_path / "missing.jpg"))
    with pytest.raises(images.ImageError, match="no image files match"):
        images.expand_inputs(str(tmp_path / "*.jpg"))
    _touch_images(tmp_path / "empty", ["readme.txt"])
    with pytest.raises(images.ImageError, match="holds no images"):
        images.expand_inputs(str(tmp_path / "empty"))


def _write_png16(path, pixels, color_type):
    """Writes uint16 [H, W, C] as a 16-bit PNG by hand (Pillow cannot write 16-bit RGB)."""
    height, width = pixels.shape[:2]
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_sixteen_bit_rgb_and_rgba_png(tmp_path):
    pixels = np.zeros([4, 5, 4], np.uint16)
    pixels[..., 0] = 65535
    pixels[..., 1] = 32896
    pixels[..., 2] = 3000
    pixels[..., 3] = 16384
    _write_png16(tmp_path / "rgb16.png", pixels[..., :3], color_type=2)
    _write_png16(tmp_path / "rgba16.png", pixels, color_type=6)
    rgb, alpha = images.load_image(tmp_path / "rgb16.png")
    _assert_rgb(rgb, alpha, (4, 5))
    # Pillow reduces 16-bit colour to 8 bits; the scale must still be right.
    np.testing.assert_allclose(rgb[2, 3], pixels[2, 3, :3] / 65535.0, atol=1 / 255)
    rgb, alpha = images.load_image(tmp_path / "rgba16.png")
    _assert_rgb(rgb, alpha, (4, 5), has_alpha=True)
    np.testing.assert_allclose(rgb[1, 1], pixels[1, 1, :3] / 65535.0, atol=1 / 255)
    np.testing.assert_allclose(alpha, 0.25, atol=1 / 255)
