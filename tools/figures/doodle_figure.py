"""Draws the README's neural-doodle figure (Champandard 2016) with the patch loss.

    python tools/figures/doodle_figure.py --vgg_checkpoint=vgg_19.ckpt [--output=docs/doodle.png]
        [--size=128] [--iterations=100] [--scales=3] [--semantic_weight=50]

    # Try a doodle with no download: write the drawn inputs, then run the printed
    # optimize command (HED's VGG-16, installed with the package).
    python tools/figures/doodle_figure.py --write_inputs=/tmp/doodle_demo

Everything is drawn by code, nothing is downloaded: a two-region "painting" (a sky of
blue horizontal strokes over a field of green grass strokes, with a wavy horizon), its
hand-painted semantic map (sky blue, field green), and a doodle of another layout (two
hills). The doodle is turned into a picture by `optimize_lib.optimize` with
style_loss="patch" in doodle mode (no content image, no content loss): the map alone
says where sky and field go.

The figure is one row, style | style map | doodle | result, with a caption naming the
VGG weights. With `--vgg_checkpoint=standin:SEED` (random stand-in weights, the only
ones this project can use without a download) the caption says so in capitals, and
`--semantic_weight` defaults to 4 x gamma_eq measured on the style (see
docs/semantic.md): 50 is the paper's value for ImageNet VGG-19 only.
"""
import os
import tempfile
import textwrap

# Before anything imports TensorFlow (cli.quiet_tf_logging: its start-up lines, cuInit).
from magenta_style import cli  # pylint: disable=g-bad-import-order
cli.quiet_tf_logging()

from absl import flags  # noqa: E402
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont
import tensorflow as tf

from magenta_style import config
from magenta_style.media import images
from magenta_style.networks import patch_loss
from magenta_style.networks import vgg
from magenta_style.networks import vgg_weights
from magenta_style.optimization import optimize_lib

_VGG = flags.DEFINE_string("vgg_checkpoint", None,
                           "VGG-19 weights (vgg_19.ckpt, a Keras .h5, 'imagenet'), 'hed' "
                           "(HED's VGG-16, no download) or standin:SEED (random; labelled "
                           "on the figure). Needed for the figure, not for --write_inputs.")
_WRITE_INPUTS = flags.DEFINE_string(
    "write_inputs", None, "Only write the drawn style image, its semantic map and the "
    "doodle into this folder, and print the optimize command that turns them into a "
    "picture with --vgg_checkpoint=hed (no download).")
_OUTPUT = flags.DEFINE_string("output", "docs/doodle.png", "Where the PNG goes.")
_SIZE = flags.DEFINE_integer("size", 128, "Side of the style image and of the result.")
_ITERATIONS = flags.DEFINE_integer("iterations", 100, "L-BFGS iterations per scale.")
_SCALES = flags.DEFINE_integer("scales", 3, "Scales, coarse to fine (x1/4, x1/2, x1).")
_SEMANTIC_WEIGHT = flags.DEFINE_float(
    "semantic_weight", None, "gamma; default 50 (the paper's) with real weights, "
    "4 x gamma_eq with stand-in weights.")
_STYLE_WEIGHTS = flags.DEFINE_string(
    "style_weights", "conv3_1:25.0,conv4_1:25.0",
    "Patch loss layers (the paper's sem3_1 and sem4_1 by default).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the drawing and of the noise start.")

SKY, FIELD = (40, 110, 230), (40, 170, 40)  # Colours of the hand-painted maps.
_GAP = 4


def _smooth(rng, size, cells):
    """Value noise in [0, 1], [size, size]: a random grid upsampled bilinearly."""
    grid = rng.rand(1, cells, cells, 1).astype(np.float32)
    return tf.image.resize(grid, (size, size), method="bilinear").numpy()[0, ..., 0]


def draw_style(size, seed):
    """The two-region painting and its map: (float32 [S, S, 3] in [0, 1], uint8 map)."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    horizon = 0.5 + 0.06 * np.sin(2 * np.pi * 1.5 * xx + 0.7)
    sky = yy < horizon
    # Sky: a blue gradient crossed by long horizontal strokes and pale cloud bands.
    strokes = np.sin(2 * np.pi * (yy * 22 + 0.6 * _smooth(rng, size, 6)))
    clouds = np.clip(_smooth(rng, size, 5) * 1.6 - 0.7, 0, 1)
    sky_rgb = np.stack([0.25 + 0.1 * yy, 0.45 + 0.15 * yy, 0.85 + 0.0 * yy], -1)
    sky_rgb += 0.08 * strokes[..., None] + clouds[..., None] * [[0.5, 0.4, 0.1]]
    # Field: green with short dark and light vertical grass strokes.
    grass = np.sin(2 * np.pi * (xx * 40 + 1.5 * _smooth(rng, size, 10)))
    dots = (rng.rand(size, size) < 0.04).astype(np.float32)
    field_rgb = np.stack([0.25 + 0.2 * yy, 0.55 + 0.0 * yy, 0.15 + 0.0 * yy], -1)
    field_rgb += 0.12 * grass[..., None] * [[0.3, 1.0, 0.3]] + dots[..., None] * [[0.5, 0.4, 0]]
    image = np.where(sky[..., None], sky_rgb, field_rgb)
    semantic = np.where(sky[..., None], SKY, FIELD).astype(np.uint8)
    return np.clip(image, 0, 1).astype(np.float32), semantic


def draw_doodle(size):
    """Another layout: field in two hills under the sky. uint8 [S, S, 3]."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    hills = 0.75 - 0.35 * np.exp(-((xx - 0.28) / 0.16) ** 2) \
        - 0.25 * np.exp(-((xx - 0.78) / 0.12) ** 2)
    return np.where((yy > hills)[..., None], FIELD, SKY).astype(np.uint8)


def _compose(panels, titles, caption):
    """One row of panels with titles, then the caption lines (the first in red)."""
    height = panels[0].shape[0]
    width = sum(p.shape[1] for p in panels) + _GAP * (len(panels) - 1)
    # Pillow's bundled font at 11 px: about 6 pixels a character.
    font = ImageFont.load_default(size=11)
    caption = [(i, part) for i, line in enumerate(caption)
               for part in textwrap.wrap(line, max(width // 6 - 1, 20))]
    canvas = Image.new("RGB", (width, height + 18 + 13 * len(caption)), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for panel, title in zip(panels, titles):
        canvas.paste(Image.fromarray(images.to_uint8(panel)), (x, 14))
        draw.text((x + 2, 0), title, fill="black", font=font)
        x += panel.shape[1] + _GAP
    for row, (i, line) in enumerate(caption):
        draw.text((2, height + 16 + 13 * row), line, fill=(180, 0, 0) if i == 0 else "black",
                  font=font)
    return np.asarray(canvas, np.float32) / 255.0


def write_inputs(directory, size, seed):
    """Writes style.png, style_map.png and doodle.png into `directory`; returns the
    optimize command (str) that paints the doodle with HED's VGG-16."""
    style, style_map = draw_style(size, seed)
    paths = {name: os.path.join(directory, f"{name}.png")
             for name in ("style", "style_map", "doodle")}
    images.save_image_atomic(paths["style"], style)
    for name, array in (("style_map", style_map), ("doodle", draw_doodle(size))):
        images.save_image_atomic(paths[name], array.astype(np.float32) / 255.0)
    return ("python -m magenta_style.optimize --style_loss=patch --vgg_checkpoint=hed "
            f"--style_images={paths['style']} --style_semantic_map={paths['style_map']} "
            f"--content_semantic_map={paths['doodle']} "
            f"--output_image={os.path.join(directory, 'result.png')} --image_size={size} "
            "--scales=2 --iterations=100")


def main(argv):
    del argv
    size = _SIZE.value
    if _WRITE_INPUTS.value:
        try:
            command = write_inputs(_WRITE_INPUTS.value, size, _SEED.value)
        except OSError as e:
            cli.fail("doodle_figure", f"--write_inputs={_WRITE_INPUTS.value}: "
                                      f"{e.strerror or e}")
        print(f"wrote style.png, style_map.png and doodle.png to {_WRITE_INPUTS.value}; "
              f"paint the doodle (a few minutes on 2 CPU cores) with:\n  {command}")
        return
    if not _VGG.value:
        cli.fail("doodle_figure", "--vgg_checkpoint is required for the figure (or give "
                                  "--write_inputs)")
    style, style_map = draw_style(size, _SEED.value)
    doodle = draw_doodle(size)
    standin = vgg_weights.parse_standin_seed(_VGG.value) is not None
    # HED's weights are a VGG-16; the figure's default is the paper's VGG-19.
    architecture = "vgg_16" if _VGG.value == "hed" else "vgg_19"
    try:
        net = vgg.build_vgg(_VGG.value, architecture=architecture, conv_end_points=True)
        style_weights = optimize_lib.qualify_layer_weights(_STYLE_WEIGHTS.value, architecture)
    except (vgg_weights.VGGWeightsError, optimize_lib.OptimizeError) as e:
        cli.fail("doodle_figure", e)
    gamma = _SEMANTIC_WEIGHT.value
    features = net(tf.constant(style[None]), up_to=max(
        style_weights, key=vgg.end_points(architecture, True).index))
    gamma_eq = patch_loss.equalizing_gamma(
        {name: features[name] for name in style_weights}, style_map[None].astype(np.float32))
    if gamma is None:
        gamma = 4 * max(gamma_eq.values()) if standin else patch_loss.DEFAULT_SEMANTIC_WEIGHT
    with tempfile.TemporaryDirectory() as scratch:
        paths = {}
        for name, array in (("style_map", style_map), ("doodle", doodle)):
            paths[name] = os.path.join(scratch, f"{name}.png")
            Image.fromarray(array).save(paths[name])
        cfg = config.OptimizeConfig(
            style_images=("drawn-style",), style_loss="patch", vgg=architecture,
            vgg_checkpoint=_VGG.value, style_semantic_map=paths["style_map"],
            content_semantic_map=paths["doodle"], semantic_weight=float(gamma),
            style_weights=tuple(style_weights.items()), image_size=size,
            scales=_SCALES.value, iterations=_ITERATIONS.value, init="noise",
            seed=_SEED.value)
        try:
            result = optimize_lib.optimize(cfg, styles=[style], vgg_net=net)
        except optimize_lib.OptimizeError as e:
            cli.fail("doodle_figure", e)
    usage = result.report["scales"][-1].get("distinct_style_patches", {})
    layers = ", ".join(name.split("/")[-1] for name in style_weights)
    caption = [
        (f"STAND-IN VGG-19 ({_VGG.value}: random weights, not ImageNet): this shows "
         "the mechanism, not the paper's quality") if standin else f"VGG-19 weights: {_VGG.value}",
        f"doodle mode, layers {layers}, gamma {gamma:.3g} (gamma_eq "
        f"{max(gamma_eq.values()):.3g}), {_SCALES.value} scales x {_ITERATIONS.value} "
        f"L-BFGS iterations; distinct style patches used: "
        + ", ".join(f"{name.split('/')[-1]} {count}" for name, count in usage.items()),
    ]
    figure = _compose([style, style_map / 255.0, doodle / 255.0, result.image],
                      ["style (drawn)", "style map", "doodle", "result"], caption)
    directory = os.path.dirname(_OUTPUT.value)
    if directory:
        os.makedirs(directory, exist_ok=True)
    images.save_image_atomic(_OUTPUT.value, figure)
    print(f"wrote {_OUTPUT.value} ({os.path.getsize(_OUTPUT.value) / 1024:.0f} KiB); "
          f"gamma {gamma:.4g}, gamma_eq {gamma_eq}")


if __name__ == "__main__":
    cli.run_with_global_flags(main, "doodle_figure")
