"""Reading and writing image files for stylization (Pillow + numpy, no TensorFlow).

Reading turns whatever a user has into float32 RGB in [0, 1] plus an optional
alpha channel:
- JPEG, PNG, GIF (the first frame, at its own size when larger than the logical
  screen), BMP, WebP and anything else Pillow opens;
- the EXIF orientation is applied, so phone photos are upright and their width and
  height swap as the viewer shows them;
- grayscale, bilevel, palette (including palette transparency), CMYK, YCbCr and
  16-bit images are converted; 16-bit data keeps its precision (divided by 65535);
- images larger than a pixel cap are refused before their pixels are decoded, so a
  small file that expands to gigabytes ("decompression bomb") costs nothing.

Writing clips to [0, 1] and rounds to 8 bits (Magenta truncates, which darkens by
half a level on average), re-attaches the alpha channel, and is atomic: the image is
written to a temporary file in the destination directory and renamed over the
destination, so a crash never leaves a partial file behind.
"""
import glob
import os
import warnings

import numpy as np
from PIL import Image
from PIL import ImageOps

from magenta_style.media import fileio

# 100 million pixels (e.g. 12500 x 8000): above every phone or DSLR photo, far below
# what a decompression bomb asks for. The decoded float32 RGB is then at most 1.2 GB;
# stylizing such an image needs far more memory than decoding it.
DEFAULT_MAX_PIXELS = 100_000_000

# Suffixes picked up when --input_image is a directory or a glob.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")

# Output suffix -> Pillow format name and whether it can store alpha.
_OUTPUT_FORMATS = {
    ".png": ("PNG", True),
    ".jpg": ("JPEG", False),
    ".jpeg": ("JPEG", False),
    ".webp": ("WEBP", True),
    ".bmp": ("BMP", False),
}
OUTPUT_SUFFIXES = tuple(_OUTPUT_FORMATS)

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


class ImageError(ValueError):
    """An image cannot be used; the message names the file and what is wrong (one line)."""


def _describe_size(width, height):
    return f"{width}x{height} = {width * height / 1e6:.1f} Mpx"


def _open_checked(path, max_pixels):
    """Opens `path` (header only) and checks its size; returns the PIL image."""
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ImageError(f"{path}: is a directory, not an image")
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit; the cap below is the limit that counts.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError:
        # Pillow refuses above twice Image.MAX_IMAGE_PIXELS, before our cap is consulted.
        raise ImageError(
            f"{path}: too large for Pillow's decompression-bomb limit "
            f"({Image.MAX_IMAGE_PIXELS} pixels)") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (or a format Pillow cannot read)") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot be read ({e})") from None
    _check_size(image, path, max_pixels)
    return image


def _check_size(image, path, max_pixels):
    """Closes `image` and raises ImageError when its current size is above the cap."""
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        image.close()
        raise ImageError(
            f"{path}: too large, {_describe_size(width, height)} exceeds the cap of "
            f"{max_pixels / 1e6:g} Mpx (raise it with --max_pixels if this is intended)")


def _to_arrays(image):
    """Converts a loaded PIL image to (rgb float32 [H, W, 3], alpha float32 [H, W] or None)."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        # 16-bit grayscale (PNG, TIFF); Pillow hands some of it over as 32-bit "I".
        gray = np.asarray(image).astype(np.float32) / 65535.0
        gray = np.clip(gray, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=-1), None
    if mode == "F":
        gray = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=-1), None
    has_alpha = (mode in ("RGBA", "LA", "PA", "RGBa", "La")
                 or (mode in ("P", "L", "RGB", "1") and "transparency" in image.info))
    target = "RGBA" if has_alpha else "RGB"
    if mode != target:
        image = image.convert(target)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    if has_alpha:
        return np.ascontiguousarray(pixels[..., :3]), np.ascontiguousarray(pixels[..., 3])
    return pixels, None


def load_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """Reads an image file as float RGB plus optional alpha.

    Args:
      path: str or os.PathLike, the image file.
      max_pixels: int or None; images with more than this many pixels (width x height)
        are refused before decoding. None: no cap beyond Pillow's own
        (2 x PIL.Image.MAX_IMAGE_PIXELS).

    Returns:
      (rgb, alpha): rgb float32 [H, W, 3] in [0, 1]; alpha float32 [H, W] in [0, 1], or
      None when the image has no transparency. H, W are after the EXIF orientation.

    Raises:
      ImageError: the file is missing, not an image, truncated/corrupt, too large or in
        a mode that cannot be converted to RGB.
    """
    path = os.fspath(path)
    image = _open_checked(path, max_pixels)
    try:
        with image:
            image.seek(0)  # The first frame of an animation.
            # The size again, from the frame's own header this time: a GIF's frame may be
            # larger than its logical screen (Pillow then grows the image, as TF's decoder
            # does), and only the first frame is decoded here.
            _check_size(image, path, max_pixels)
            image.load()
            try:
                image = ImageOps.exif_transpose(image) or image
            except (ValueError, KeyError, TypeError, OSError, SyntaxError):
                pass  # Unreadable EXIF: keep the stored orientation rather than fail.
            return _to_arrays(image)
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: a frame is too large for Pillow's decompression-bomb "
                         "limit") from None
    except (OSError, SyntaxError, ValueError) as e:
        message = str(e) or type(e).__name__
        if "truncated" in message:
            raise ImageError(f"{path}: truncated or corrupt image ({message})") from None
        raise ImageError(f"{path}: cannot be decoded ({message})") from None


def to_uint8(x):
    """Clips to [0, 1] and rounds to 8 bits.

    Args:
      x: float array in [0, 1] (values outside are clipped).

    Returns:
      uint8 array of the same shape in [0, 255].

    Raises:
      ValueError: `x` holds NaN or infinity (a broken model; never written silently).
    """
    x = np.asarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError("the image holds NaN or infinite values")
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_image_atomic(path, rgb, alpha=None, quality=95):
    """Writes an image so that `path` is either the complete new file or untouched.

    The format follows the suffix: .png (default choice, lossless, keeps alpha), .webp
    (lossy at `quality`, keeps alpha), .jpg/.jpeg and .bmp (alpha dropped).

    Args:
      path: str or os.PathLike; its directory must exist.
      rgb: float [H, W, 3] in [0, 1]; clipped, then rounded to uint8.
      alpha: optional float [H, W] in [0, 1], stored as the alpha channel.
      quality: int 1..100 for JPEG and WebP.

    Returns:
      str, the path written.

    Raises:
      ValueError: an unknown suffix, wrong shapes, or NaN/inf values.
      OSError: the file cannot be written (the destination is left as it was).
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _OUTPUT_FORMATS:
        raise ValueError(f"{path}: unknown output format {suffix!r}; use one of "
                         f"{', '.join(OUTPUT_SUFFIXES)}")
    pil_format, keeps_alpha = _OUTPUT_FORMATS[suffix]
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"{path}: rgb must be [H, W, 3], got {list(rgb.shape)}")
    pixels = to_uint8(rgb)
    if alpha is not None and keeps_alpha:
        alpha = np.asarray(alpha)
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(f"{path}: alpha must be {list(rgb.shape[:2])}, got "
                             f"{list(alpha.shape)}")
        pixels = np.concatenate([pixels, to_uint8(alpha)[..., None]], axis=-1)
    image = Image.fromarray(pixels)

    options = {"quality": quality} if pil_format in ("JPEG", "WEBP") else {}
    with fileio.atomic_output(path) as tmp:
        with open(tmp, "xb") as f:
            image.save(f, format=pil_format, **options)
    return path


def map_file_size(path):
    """(height, width) of an image or .npy map file from its header, without reading its
    pixels (.npy: the array header; images: the file header). None when it cannot be
    told (the file's own loader then reports the problem)."""
    try:
        if path.lower().endswith(".npy"):
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape  # Header only.
            return (int(shape[0]), int(shape[1])) if len(shape) >= 2 else None
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def expand_inputs(spec):
    """Expands `--input_image` into the image files to process.

    Args:
      spec: str, one of: an existing file (always taken, whatever its suffix); a
        directory (its files with an image suffix, not recursive); a glob pattern
        (matching files with an image suffix; `**` recurses); or a comma-separated
        list of those (as train's --content_images takes). `~` is expanded.

    Returns:
      list of str, never empty: sorted within each part, the parts in order, each file
      once.

    Raises:
      ImageError: nothing matches.
    """
    spec = os.path.expanduser(os.fspath(spec))
    if os.path.isfile(spec):
        return [spec]
    if "," in spec:  # Not one file whose name has a comma: a list.
        found = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                raise ImageError(f"{spec}: empty item in the comma-separated list")
            found += [path for path in expand_inputs(part) if path not in found]
        return found
    suffixes = ", ".join(IMAGE_SUFFIXES)
    if os.path.isdir(spec):
        found = sorted(
            os.path.join(spec, name) for name in os.listdir(spec)
            if os.path.isfile(os.path.join(spec, name)) and _has_image_suffix(name))
        if not found:
            raise ImageError(f"{spec}: directory holds no images ({suffixes})")
        return found
    if any(c in spec for c in "*?["):
        found = sorted(p for p in glob.glob(spec, recursive=True)
                       if os.path.isfile(p) and _has_image_suffix(p))
        if not found:
            raise ImageError(f"{spec}: no image files match ({suffixes})")
        return found
    raise ImageError(f"{spec}: no such file or directory")


def _has_image_suffix(name):
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
