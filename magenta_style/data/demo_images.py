"""Procedural demo content and style images, so the quickstart needs no downloads.

Everything here is drawn by numpy from a seed: the same seed gives the same bytes on
every machine. Three kinds of image:
- content images (`content/`): six named scenes with large shapes, gradients and edges,
  the rows of the quickstart's grid;
- training photos (`training/`): many photo-like scenes (`photo_like_image`), what the
  quickstart trains on. A network trained on the six scenes alone learnt them, not
  photos: on real photos it kept almost no edges (issue 27). These follow the "dead
  leaves" model of natural images (occluding shapes with power-law sizes, so edges at
  every scale), with shading, textures, soft and sharp edges, thin lines, faces and
  sensor noise;
- style images (`styles/`): strongly coloured textures (stripes, waves, dots, cells,
  marbling, zigzags) with distinct Gram statistics.

`prepare_demo_data(directory, vgg_checkpoint)` writes them as PNG files plus a style
dataset built with the given VGG weights.
"""
import json
import os

import numpy as np

from magenta_style import config as config_lib
from magenta_style.data import pipeline
from magenta_style.data import style_dataset
from magenta_style.media import images
from magenta_style.networks import vgg

CONTENT_NAMES = ("sunset", "blocks", "orbits", "valley", "tiles", "bubbles")
STYLE_NAMES = ("stripes", "waves", "dots", "cells", "marble", "zigzag")
CONTENT_DIR = "content"
TRAINING_DIR = "training"
STYLE_DIR = "styles"
# The quickstart's training photos: how many and their side. 64 px training crops are
# taken from images resized to 66 px (pipeline.MAGENTA_RESIZE_MARGIN), so drawing them
# at 66 px trains on every drawn pixel.
NUM_TRAINING_IMAGES = 240
TRAINING_SIZE = 66
STYLE_DATASET = "styles.tfrecord"
# Written last, next to the dataset: what the data was made with. Data made by another
# version of the drawings or with other VGG weights is redrawn, not silently reused.
DEMO_INFO = "demo_data.json"
DEMO_VERSION = 3
# Two-colour palettes per style (RGB in [0, 1]): bold, so stylization is visible.
_PALETTES = (
    ((0.95, 0.80, 0.10), (0.10, 0.15, 0.55)),
    ((0.05, 0.45, 0.75), (0.95, 0.95, 0.85)),
    ((0.85, 0.10, 0.15), (0.98, 0.90, 0.60)),
    ((0.10, 0.55, 0.25), (0.95, 0.65, 0.20)),
    ((0.45, 0.20, 0.55), (0.90, 0.85, 0.95)),
    ((0.05, 0.05, 0.05), (0.95, 0.35, 0.10)),
)


def _grid(size):
    y, x = np.meshgrid(np.linspace(0.0, 1.0, size), np.linspace(0.0, 1.0, size), indexing="ij")
    return y, x


def _mix(mask, color_a, color_b):
    mask = np.clip(mask, 0.0, 1.0)[..., None]
    return (1.0 - mask) * np.asarray(color_a) + mask * np.asarray(color_b)


def _smooth_noise(rng, size, cells):
    """Bilinearly upsampled random grid: float [size, size] in [0, 1]."""
    coarse = rng.uniform(size=(cells + 1, cells + 1))
    t = np.linspace(0.0, cells, size)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = coarse[i] * (1 - f)[:, None] + coarse[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def content_image(index, size=128, seed=0):
    """Demo content image `index` (0..len(CONTENT_NAMES)-1).

    Args:
      index: which scene.
      size: side in pixels (>= 8).
      seed: varies the details.

    Returns:
      np.float32 [size, size, 3] in [0, 1].
    """
    rng = np.random.RandomState(seed * 1000 + index)
    y, x = _grid(size)
    kind = index % len(CONTENT_NAMES)
    if kind == 0:  # Sky gradient, sun disc, dark hills.
        img = _mix(y, (0.98, 0.55, 0.25), (0.20, 0.25, 0.60))
        sun = ((x - 0.65) ** 2 + (y - 0.35) ** 2) < 0.02
        img[sun] = (1.0, 0.92, 0.55)
        hills = y > 0.72 + 0.08 * np.sin(9 * x + rng.uniform(0, 6))
        img[hills] = (0.12, 0.20, 0.12)
    elif kind == 1:  # Overlapping rectangles.
        img = _mix(x, (0.85, 0.85, 0.80), (0.65, 0.70, 0.75))
        for _ in range(6):
            y0, x0 = rng.uniform(0, 0.7, 2)
            h, w = rng.uniform(0.15, 0.4, 2)
            box = (y >= y0) & (y < y0 + h) & (x >= x0) & (x < x0 + w)
            img[box] = rng.uniform(0.05, 0.95, 3)
    elif kind == 2:  # Concentric rings and a planet.
        r = np.sqrt((x - 0.5) ** 2 + (y - 0.5) ** 2)
        img = _mix(0.5 + 0.5 * np.cos(40 * r), (0.05, 0.05, 0.15), (0.30, 0.35, 0.60))
        img[r < 0.18] = (0.85, 0.60, 0.30)
    elif kind == 3:  # Valley: layered silhouettes.
        img = _mix(y, (0.75, 0.85, 0.95), (0.95, 0.95, 0.90))
        for layer, shade in enumerate((0.55, 0.40, 0.25)):
            ridge = 0.35 + 0.17 * layer + 0.07 * np.sin((5 + 3 * layer) * x + rng.uniform(0, 6))
            img[y > ridge] = (0.25 * shade, 0.45 * shade + 0.1, 0.3 * shade)
    elif kind == 4:  # Checkerboard in perspective-free tiles with a border.
        tiles = (np.floor(x * 6) + np.floor(y * 6)) % 2
        img = _mix(tiles, (0.90, 0.88, 0.80), (0.20, 0.30, 0.35))
        border = (x < 0.05) | (x > 0.95) | (y < 0.05) | (y > 0.95)
        img[border] = (0.55, 0.15, 0.10)
    else:  # Soft bubbles on a gradient.
        img = _mix(x * y, (0.10, 0.35, 0.40), (0.85, 0.95, 0.80))
        for _ in range(7):
            cy, cx = rng.uniform(0.1, 0.9, 2)
            radius = rng.uniform(0.05, 0.18)
            disc = np.clip(1.0 - np.sqrt((x - cx) ** 2 + (y - cy) ** 2) / radius, 0, 1)
            img = img * (1 - disc[..., None]) + disc[..., None] * rng.uniform(0.3, 1.0, 3)
    img = img + 0.02 * rng.standard_normal(img.shape)  # Film grain: realistic statistics.
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _pink_noise(rng, size, octaves=(2, 4, 8, 16, 32)):
    """About 1/f noise (natural images' spectrum): float [size, size], mean 0, std 1."""
    total = sum(_smooth_noise(rng, size, c) / c for c in octaves if c < size)
    if np.isscalar(total):  # Smaller than the coarsest octave: flat.
        return np.zeros((size, size))
    total = total - total.mean()
    return total / (total.std() + 1e-6)


def _hsv(hue, saturation, value):
    """RGB [3] in [0, 1] of an HSV colour (all in [0, 1])."""
    sector, f = int(hue * 6) % 6, hue * 6 - int(hue * 6)
    p, q, t = (value * (1 - saturation), value * (1 - f * saturation),
               value * (1 - (1 - f) * saturation))
    return np.array([(value, t, p), (q, value, p), (p, value, t), (p, q, value),
                     (t, p, value), (value, p, q)][sector])


def _natural_colour(rng):
    # Mostly muted colours at every brightness: photos are rarely saturated.
    return _hsv(rng.uniform(), rng.uniform(0.05, 0.7) ** 1.3, rng.uniform(0.08, 0.97))


def _paint(img, window, distance, blur, fill):
    """Alpha-blends `fill` where the signed `distance` (< 0 inside) is, in place.

    window: (row slice, column slice) of img that distance/fill cover; blur: edge width
    in image units (1 px: a sharp edge, several: out of focus).
    """
    mask = np.clip(0.5 - distance / blur, 0.0, 1.0)[..., None]
    img[window] = img[window] * (1.0 - mask) + mask * fill


def _leaf(rng, img, y, x, px):
    """One occluding shape (the dead-leaves model) with shading and a texture."""
    # Radius from p(r) ~ r^-2.5 between 3 % and 45 % of the side: near the dead-leaves
    # model's scale-invariant r^-3, with more large shapes (15 % above 10 %), as photos
    # of a few objects have.
    r_min, r_max = 0.03, 0.45
    r = (r_min ** -1.5 + rng.uniform() * (r_max ** -1.5 - r_min ** -1.5)) ** (-1 / 1.5)
    cy, cx = rng.uniform(-0.1, 1.1, 2)
    kind = rng.randint(5)
    theta = rng.uniform(0, np.pi)
    cos, sin = np.cos(theta), np.sin(theta)
    extent = {0: 1.0, 1: 1.0, 2: 1.5, 3: 2.5, 4: 3.1}[kind] * r + 8 * px
    n = x.shape[1]
    rows = slice(max(0, int((cy - extent) * n)), max(0, min(n, int((cy + extent) * n) + 1)))
    cols = slice(max(0, int((cx - extent) * n)), max(0, min(n, int((cx + extent) * n) + 1)))
    if rows.stop <= rows.start or cols.stop <= cols.start:
        rng.uniform(size=8)  # Same draws whether or not the shape is visible.
        return
    window = (rows, cols)
    dy, dx = y[window] - cy, x[window] - cx
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    if kind == 0:  # Disc.
        distance = np.sqrt(dx ** 2 + dy ** 2) - r
    elif kind == 1:  # Ellipse (approximate distance).
        e = rng.uniform(0.3, 1.0)
        distance = (np.sqrt(u ** 2 + (v / e) ** 2) - r) * np.sqrt(e)
    elif kind == 2:  # Rectangle: walls, windows, boxes.
        distance = np.maximum(np.abs(u) - r, np.abs(v) - r * rng.uniform(0.2, 1.0))
    elif kind == 3:  # Convex polygon: evenly spread half-planes (so it is bounded).
        sides = rng.randint(3, 7)
        distance = np.full(u.shape, -np.inf)
        for k in range(sides):
            t = theta + 2 * np.pi * (k + rng.uniform(-0.3, 0.3)) / sides
            distance = np.maximum(distance, np.cos(t) * dx + np.sin(t) * dy
                                  - r * rng.uniform(0.5, 1.0))
    else:  # Long bar: a trunk, a pole, a building's edge.
        distance = np.maximum(np.abs(u) - 3 * r, np.abs(v) - r * rng.uniform(0.05, 0.25))
    blur = px * rng.choice([0.7, 1.0, 1.0, 1.5, 3.0, 6.0])
    gradient = rng.uniform(-1, 1, 2)  # Lighting: a linear shading across the shape.
    shade = 1 + rng.uniform(0, 0.6) * (dx * gradient[0] + dy * gradient[1]) / max(r, 0.05)
    fill = _natural_colour(rng) * np.clip(shade, 0.3, 1.6)[..., None]
    texture = rng.randint(4)
    if texture == 1:  # Foliage, clouds, rock: 1/f noise.
        side = max(u.shape)
        noise = _pink_noise(rng, side, (4, 8, 16, 32, 64))[:u.shape[0], :u.shape[1]]
        fill = fill + rng.uniform(0.03, 0.2) * noise[..., None]
    elif texture == 2:  # Fabric, bricks, blinds: fine stripes.
        period = rng.uniform(3, 12) * px
        stripes = (np.sin(2 * np.pi * u / period) > 0)[..., None]
        fill = fill * (0.85 + rng.uniform(0.1, 0.5) * stripes)
    elif texture == 3:  # Grain: sand, asphalt.
        fill = fill + rng.uniform(0.03, 0.12) * rng.standard_normal(u.shape + (1,))
    _paint(img, window, distance, blur, fill)


def _face(rng, img, y, x, px):
    """A frontal face: skin-toned head, hair, eyes, nose and mouth."""
    cy, cx = rng.uniform(0.25, 0.75, 2)
    r = rng.uniform(0.08, 0.25)
    skin = _hsv(rng.uniform(0.02, 0.1), rng.uniform(0.25, 0.6), rng.uniform(0.35, 0.95))
    whole = (slice(None), slice(None))
    _paint(img, whole, np.sqrt(((x - cx) / 0.85) ** 2 + (y - cy + 0.1 * r) ** 2) - 1.05 * r,
           px, _natural_colour(rng) * 0.5)
    shade = np.clip(1 - 0.4 * rng.uniform(-1, 1) * (x - cx) / r, 0.5, 1.3)[..., None]
    _paint(img, whole, np.sqrt(((x - cx) / 0.8) ** 2 + (y - cy) ** 2) - r, px, skin * shade)
    for side in (-1, 1):
        ex, ey = cx + side * 0.35 * r, cy - 0.1 * r
        _paint(img, whole, np.sqrt((x - ex) ** 2 + ((y - ey) / 0.6) ** 2) - 0.12 * r, px,
               np.array([0.95, 0.95, 0.95]))
        _paint(img, whole, np.sqrt((x - ex) ** 2 + (y - ey) ** 2) - 0.06 * r, px,
               np.array([0.1, 0.08, 0.06]))
    _paint(img, whole, np.maximum(np.abs(x - cx) - 0.02 * r, np.abs(y - cy - 0.15 * r)
                                  - 0.15 * r), 2 * px, skin * 0.7)
    _paint(img, whole, np.maximum(np.abs(y - cy - 0.45 * r) - 0.03 * r, np.abs(x - cx)
                                  - 0.3 * r), px, skin * 0.45)


def photo_like_image(index, size=TRAINING_SIZE, seed=0):
    """A photo-like training scene (the dead-leaves model of natural images).

    A sky/ground background with a horizon and 1/f colour variation; 15-60 occluding
    shapes (discs, ellipses, rectangles, polygons, bars) with power-law sizes, shading,
    a texture (1/f noise, fine stripes or grain) and sharp or out-of-focus edges; a face
    in 40 % of the scenes; thin lines; exposure, vignetting and sensor noise. Drawn at
    twice the size and averaged down, so edges are anti-aliased as a camera's are.

    Args:
      index: which scene (any int >= 0).
      size: side in pixels (>= 8).
      seed: varies the scenes.

    Returns:
      np.float32 [size, size, 3] in [0, 1].
    """
    rng = np.random.RandomState(seed * 100003 + 7919 + index)
    n = 2 * size
    y, x = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
    px = 1.0 / n
    top, bottom = _natural_colour(rng), _natural_colour(rng)
    img = (1 - y[..., None]) * top + y[..., None] * bottom
    if rng.uniform() < 0.6:  # A horizon: ground below, lit from above.
        horizon, tilt = rng.uniform(0.3, 0.8), rng.uniform(-0.2, 0.2)
        ground = _natural_colour(rng) * (0.7 + 0.3 * (1 - y[..., None]))
        _paint(img, (slice(None), slice(None)), horizon + tilt * (x - 0.5) - y,
               px * rng.uniform(1, 4), ground)
    img += 0.06 * _pink_noise(rng, n)[..., None] * rng.uniform(0.5, 1.5, 3)
    for _ in range(rng.randint(15, 60)):
        _leaf(rng, img, y, x, px)
    if rng.uniform() < 0.4:
        _face(rng, img, y, x, px)
    for _ in range(rng.randint(0, 6)):  # Thin lines: branches, cables, frames.
        (y0, x0), theta, length = rng.uniform(0, 1, 2), rng.uniform(0, np.pi), rng.uniform(0.1, 0.8)
        along = (x - x0) * np.cos(theta) + (y - y0) * np.sin(theta)
        across = (y - y0) * np.cos(theta) - (x - x0) * np.sin(theta)
        _paint(img, (slice(None), slice(None)),
               np.maximum(np.abs(across) - px * rng.uniform(0.5, 2.5), np.abs(along) - length / 2),
               px, _natural_colour(rng))
    img = np.clip(img, 0.0, 1.0) ** rng.uniform(0.8, 1.25)  # Exposure.
    img *= (1 - rng.uniform(0, 0.35) * ((x - 0.5) ** 2 + (y - 0.5) ** 2))[..., None]
    img = img.reshape(size, 2, size, 2, 3).mean(axis=(1, 3))
    img += rng.uniform(0.005, 0.03) * rng.standard_normal(img.shape)  # Sensor noise.
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def style_image(index, size=128, seed=0):
    """Demo style image `index` (0..len(STYLE_NAMES)-1): a bold two-colour texture.

    Args:
      index: which texture.
      size: side in pixels (>= 32 for Gram matrices).
      seed: varies the details.

    Returns:
      np.float32 [size, size, 3] in [0, 1].
    """
    rng = np.random.RandomState(seed * 1000 + 500 + index)
    y, x = _grid(size)
    kind = index % len(STYLE_NAMES)
    color_a, color_b = _PALETTES[kind]
    if kind == 0:  # Diagonal stripes.
        mask = (np.sin(2 * np.pi * 9 * (x + y)) > 0).astype(float)
    elif kind == 1:  # Waves.
        mask = 0.5 + 0.5 * np.sin(2 * np.pi * (7 * y + 0.6 * np.sin(2 * np.pi * 3 * x)))
    elif kind == 2:  # Polka dots.
        cx, cy = (x * 8) % 1.0 - 0.5, (y * 8) % 1.0 - 0.5
        mask = (cx ** 2 + cy ** 2 < 0.09).astype(float)
    elif kind == 3:  # Voronoi-like cells with dark borders.
        points = rng.uniform(size=(24, 2))
        d = np.sqrt((y[..., None] - points[:, 0]) ** 2 + (x[..., None] - points[:, 1]) ** 2)
        d.sort(axis=-1)
        mask = np.clip((d[..., 1] - d[..., 0]) * 25, 0, 1)
    elif kind == 4:  # Marbling: turbulent sine.
        turbulence = sum(_smooth_noise(rng, size, c) / c for c in (4, 8, 16))
        mask = 0.5 + 0.5 * np.sin(2 * np.pi * (5 * x + 3 * turbulence))
    else:  # Zigzag.
        mask = ((np.abs(((x * 10) % 2) - 1) * 0.3 + y * 6) % 1.0 > 0.5).astype(float)
    img = _mix(mask, color_a, color_b)
    img = img + 0.03 * rng.standard_normal(img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def write_demo_images(directory, num_content=len(CONTENT_NAMES), num_styles=len(STYLE_NAMES),
                      content_size=160, style_size=128, seed=0):
    """Writes demo content and style PNGs (atomically) under `directory`.

    Args:
      directory: output folder; gets `content/` and `styles/` sub-folders.
      num_content: number of content images (<= len(CONTENT_NAMES) keeps names unique).
      num_styles: number of style images (<= len(STYLE_NAMES)).
      content_size, style_size: sides in pixels.
      seed: int.

    Returns:
      (list of content paths, list of style paths), in name order.
    """
    content_dir = os.path.join(directory, CONTENT_DIR)
    style_dir = os.path.join(directory, STYLE_DIR)
    os.makedirs(content_dir, exist_ok=True)
    os.makedirs(style_dir, exist_ok=True)
    contents, styles = [], []
    for i in range(num_content):
        path = os.path.join(content_dir, f"{i:02d}_{CONTENT_NAMES[i % len(CONTENT_NAMES)]}.png")
        images.save_image_atomic(path, content_image(i, content_size, seed))
        contents.append(path)
    for i in range(num_styles):
        path = os.path.join(style_dir, f"{i:02d}_{STYLE_NAMES[i % len(STYLE_NAMES)]}.png")
        images.save_image_atomic(path, style_image(i, style_size, seed))
        styles.append(path)
    return contents, styles


def write_training_images(directory, count=NUM_TRAINING_IMAGES, size=TRAINING_SIZE, seed=0):
    """Writes `count` photo-like training scenes (atomically) to `directory/training/`.

    Returns:
      list of the paths, in name order.
    """
    training_dir = os.path.join(directory, TRAINING_DIR)
    os.makedirs(training_dir, exist_ok=True)
    paths = []
    for i in range(count):
        path = os.path.join(training_dir, f"photo_{i:04d}.png")
        images.save_image_atomic(path, photo_like_image(i, size, seed))
        paths.append(path)
    return paths


def demo_data_paths(directory):
    """(training photos folder, style dataset path) that prepare_demo_data writes.

    The grid's six named scenes are in `directory/content/` (CONTENT_DIR).
    """
    return os.path.join(directory, TRAINING_DIR), os.path.join(directory, STYLE_DATASET)


def prepare_demo_data(directory, vgg_checkpoint, num_styles=len(STYLE_NAMES), seed=0,
                      log=print, image_size=TRAINING_SIZE - pipeline.MAGENTA_RESIZE_MARGIN,
                      num_training=NUM_TRAINING_IMAGES):
    """Writes the demo images and their style dataset unless already there.

    Args:
      directory: output folder.
      vgg_checkpoint: VGG-16 weight source for the style Gram matrices (the
        quickstart uses "hed"; see vgg_weights.read_weights).
      num_styles: number of demo styles.
      seed: int.
      log: callable(str) for progress lines.
      image_size: the training crop size; the training photos are drawn at it plus
        Magenta's resize margin, so that training sees every drawn pixel.
      num_training: number of photo-like training images.

    Returns:
      (training photos folder, style dataset path).
    """
    training_dir, dataset = demo_data_paths(directory)
    info_path = os.path.join(directory, DEMO_INFO)
    training_size = image_size + pipeline.MAGENTA_RESIZE_MARGIN
    info = {"version": DEMO_VERSION, "vgg_checkpoint": vgg_checkpoint,
            "num_styles": num_styles, "seed": seed, "num_training": num_training,
            "training_size": training_size}
    if (os.path.exists(dataset) and os.path.isdir(training_dir)
            and _read_json(info_path) == info):
        log(f"demo data: reusing {directory}")
        return training_dir, dataset
    log(f"demo data: drawing {len(CONTENT_NAMES)} content, {num_training} photo-like "
        f"training ({training_size} px) and {num_styles} style images into {directory}")
    if os.path.isdir(training_dir):  # Another count or size: no stale photos stay.
        for name in os.listdir(training_dir):
            if name.startswith("photo_") and name.endswith(".png"):
                os.remove(os.path.join(training_dir, name))
    _, styles = write_demo_images(directory, num_styles=num_styles, seed=seed)
    write_training_images(directory, num_training, training_size, seed)
    log(f"demo data: reading VGG-16 weights {vgg_checkpoint!r} for the style Gram matrices")
    model = vgg.build_vgg(vgg_checkpoint)
    names = [os.path.splitext(os.path.basename(p))[0].split("_", 1)[1] for p in styles]
    style_dataset.write_style_dataset(
        dataset, styles, vgg_model=model, names=names,
        progress=lambda done, total, path: log(
            f"demo data: style {done}/{total} ({names[done - 1]}) -> {dataset}"))
    config_lib.write_json_atomic(info_path, info)
    return training_dir, dataset


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
