"""Draws docs/optimize_example.png: content | style | optimized result, labelled.

    python tools/figures/optimize_figure.py [--vgg_checkpoint=standin:0] [--output=docs/optimize_example.png]

Content and style are the shared photos (`../shared/data`, read by path, never copied
into the project). With stand-in VGG weights (the default, as the project ships no
ImageNet weights) the panel says so in red: random filters still transfer colour and
fine texture statistics but not a painter's strokes, so the picture shows what the
command does, not how good real-weights results look. Pass real weights
(`--vgg_checkpoint=/path/to/vgg_16.ckpt`) to redraw it for real.
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image
from PIL import ImageDraw

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, "..", "shared", "data")

from magenta_style import config as config_lib  # pylint: disable=wrong-import-position
from magenta_style.media import images  # pylint: disable=wrong-import-position
from magenta_style.optimization import optimize_lib  # pylint: disable=wrong-import-position

GAP = 4
LABEL_HEIGHT = 14


def _panel(image, size, caption, colour=(0, 0, 0)):
    pil = Image.fromarray(images.to_uint8(image)).resize((size, size), Image.BICUBIC)
    canvas = Image.new("RGB", (size, size + LABEL_HEIGHT), "white")
    canvas.paste(pil, (0, LABEL_HEIGHT))
    ImageDraw.Draw(canvas).text((2, 1), caption, fill=colour)
    return np.asarray(canvas, np.float32) / 255.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--content", default=os.path.join(DATA, "content", "golden_gate_sq.jpg"))
    parser.add_argument("--style", default=os.path.join(DATA, "styles", "red_texture_sq.jpg"))
    parser.add_argument("--vgg_checkpoint", default="standin:0")
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "optimize_example.png"))
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--iterations", type=int, default=60)
    args = parser.parse_args()
    cfg = config_lib.OptimizeConfig(
        content_image=args.content, style_images=(args.style,), image_size=args.size,
        vgg_checkpoint=args.vgg_checkpoint, iterations=args.iterations, scales=2,
        # Shallower style layers than Gatys' conv5_1: with random weights the deep
        # layers carry nothing one can see.
        style_weights=(("conv1_1", 1.0), ("conv2_1", 1.0), ("conv3_1", 1.0)))
    result = optimize_lib.optimize(cfg)
    content, _ = images.load_image(args.content)
    style, _ = images.load_image(args.style)
    standin = args.vgg_checkpoint.startswith("standin:")
    label = "STAND-IN VGG (random)" if standin else "optimized (Gatys)"
    panels = [_panel(content, args.size * 2, "content"),
              _panel(style, args.size * 2, "style"),
              _panel(result.image, args.size * 2, label, (200, 0, 0) if standin else (0, 0, 0))]
    height = panels[0].shape[0]
    gap = np.ones([height, GAP, 3], np.float32)
    row = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    images.save_image_atomic(args.output, row)
    end = result.report["scales"][-1]["end"]["total_loss"]
    start = result.report["scales"][0]["start"]["total_loss"]
    print(f"wrote {args.output} (loss {start:.4g} -> {end:.4g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
