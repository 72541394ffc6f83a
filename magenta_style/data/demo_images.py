"""Procedural demo content and style images, so the quickstart needs no downloads.

Everything here is drawn by numpy from a seed: the same seed gives the same bytes on
every machine. Content images are scenes with large shapes, gradients and edges
(something for a style to restyle); style images are strongly coloured textures
(stripes, waves, dots, cells, marbling, zigzags) with distinct Gram statistics.

`prepare_demo_data(directory, vgg_checkpoint)` writes both sets as PNG files plus a
style dataset built with the given VGG weights (the quickstart passes the random
stand-in explicitly, which vgg_weights.py logs loudly).
"""
import json
import os

import numpy as np

from magenta_style import config as config_lib
from magenta_style.data import style_dataset
from magenta_style.media import images
from magenta_style.networks import vgg

CONTENT_NAMES = ("sunset", "blocks", "orbits", "valley", "tiles", "bubbles")
STYLE_NAMES = ("stripes", "waves", "dots", "cells", "marble", "zigzag")
CONTENT_DIR = "content"
STYLE_DIR = "styles"
STYLE_DATASET = "styles.tfrecord"
# Written last, next to the dataset: what the data was made with. Data made by another
# version of the drawings or with other VGG weights is redrawn, not silently reused.
DEMO_INFO = "demo_data.json"
DEMO_VERSION = 2
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


def demo_data_paths(directory):
    """(content folder, style dataset path) that prepare_demo_data writes in `directory`."""
    return os.path.join(directory, CONTENT_DIR), os.path.join(directory, STYLE_DATASET)


def prepare_demo_data(directory, vgg_checkpoint, num_styles=len(STYLE_NAMES), seed=0,
                      log=print):
    """Writes the demo images and their style dataset unless already there.

    Args:
      directory: output folder.
      vgg_checkpoint: VGG-16 weight source for the style Gram matrices (the
        quickstart uses "hed"; see vgg_weights.read_weights).
      num_styles: number of demo styles.
      seed: int.
      log: callable(str) for progress lines.

    Returns:
      (content folder, style dataset path).
    """
    content_dir, dataset = demo_data_paths(directory)
    info_path = os.path.join(directory, DEMO_INFO)
    info = {"version": DEMO_VERSION, "vgg_checkpoint": vgg_checkpoint,
            "num_styles": num_styles, "seed": seed}
    if os.path.exists(dataset) and os.path.isdir(content_dir) and _read_json(info_path) == info:
        log(f"demo data: reusing {directory}")
        return content_dir, dataset
    log(f"demo data: drawing {len(CONTENT_NAMES)} content and {num_styles} style images "
        f"into {directory}")
    _, styles = write_demo_images(directory, num_styles=num_styles, seed=seed)
    log(f"demo data: reading VGG-16 weights {vgg_checkpoint!r} for the style Gram matrices")
    model = vgg.build_vgg(vgg_checkpoint)
    names = [os.path.splitext(os.path.basename(p))[0].split("_", 1)[1] for p in styles]
    style_dataset.write_style_dataset(
        dataset, styles, vgg_model=model, names=names,
        progress=lambda done, total, path: log(
            f"demo data: style {done}/{total} ({names[done - 1]}) -> {dataset}"))
    config_lib.write_json_atomic(info_path, info)
    return content_dir, dataset


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
