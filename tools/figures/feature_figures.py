"""Draws the README figures for --strength and --style_map from a checkpoint.

    python tools/figures/feature_figures.py --checkpoint=DIR [--output_dir=docs] [--size=128]
        [--style=0] [--map_styles=0,1]

Writes (PNG, small):
- strength.png: a demo content image, then the stylized image at strengths 0, 0.25,
  0.5, 0.75 and 1 (network strength: every conditional instance norm's gamma/beta
  blended toward 1/0 by the strength, and the content mixed back in by 1 - strength,
  so strength 0 is the content itself), then with --preserve_colors at strength 1.
- style_map.png: the mask, then the image stylized with the mask (left style
  `map_styles[0]`, right `map_styles[1]`, soft edge), next to each style alone.
Content images come from magenta_style.data.demo_images (drawn by code, no downloads).
"""
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from magenta_style.data import demo_images
from magenta_style.inference import style_maps
from magenta_style.media import color
from magenta_style.media import images
from magenta_style.networks import checkpoints

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Model to draw with.", required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "docs", "Where the PNGs go.")
_SIZE = flags.DEFINE_integer("size", 128, "Side of each panel.")
_STYLE = flags.DEFINE_integer("style", 0, "Style for the strength strip.")
_MAP_STYLES = flags.DEFINE_list("map_styles", ["0", "1"], "Left and right styles of the map.")
_SCENE = flags.DEFINE_integer("scene", 0, "Demo content scene.")
_GAP = 4


def _strip(panels):
    height = panels[0].shape[0]
    gap = np.ones([height, _GAP, 3], np.float32)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.concatenate(row, axis=1)


def main(argv):
    del argv
    model, model_config = checkpoints.load_model(_CHECKPOINT.value)
    size = _SIZE.value
    content = demo_images.content_image(_SCENE.value, size=size)
    batch = tf.constant(content[None])
    style = tf.constant([_STYLE.value])
    panels = [content]
    for strength in (0.0, 0.25, 0.5, 0.75, 1.0):
        panels.append(model(batch, style, tf.constant([strength])).numpy()[0])
    panels.append(color.preserve_colors(batch, model(batch, style)).numpy()[0])
    os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
    strength_path = os.path.join(_OUTPUT_DIR.value, "strength.png")
    images.save_image_atomic(strength_path, _strip(panels))

    left, right = (int(s) for s in _MAP_STYLES.value)
    mask = np.zeros([size, size, 3], np.float32)
    yy, xx = np.mgrid[:size, :size]
    mask[(xx - size * 0.5) ** 2 + (yy - size * 0.5) ** 2 < (size * 0.3) ** 2] = 1.0
    weights = style_maps.style_map_weights(mask, f"#000:{left},#fff:{right}",
                                           model_config.num_styles, (size, size),
                                           blur=size / 40)
    mapped = model(batch, tf.constant(weights[None])).numpy()[0]
    alone = [model(batch, tf.constant([s])).numpy()[0] for s in (left, right)]
    map_path = os.path.join(_OUTPUT_DIR.value, "style_map.png")
    images.save_image_atomic(map_path, _strip([content, mask, mapped] + alone))
    for path in (strength_path, map_path):
        print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB)")


if __name__ == "__main__":
    app.run(main)
