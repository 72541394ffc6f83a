"""Sweeps the style weight of an `optimize` recipe and scores each run (issue 27 item 3).

    python tools/benchmarks/sweep_recipe.py --strengths=0.3,1,3,10 --image_size=128 --iterations=50 \\
        --output=/tmp/sweep.jsonl [--recipe=hed] [--content_weights=conv4_2:1] ...

For every style strength (a factor on the recipe's style weights, `--style_strength`)
and every anchor pair (the 10 (photo, style) pairs of ../shared/data/magenta_arbitrary_outputs,
or --pairs=PHOTO:STYLE,...), runs `optimize_lib.optimize` with `--vgg_checkpoint=hed`
and scores the result with `networks/quality.py` (content kept, style taken). One JSON
line per run is appended to --output (so an interrupted sweep resumes: runs already
in the file are skipped). `--plot=sweep.png` draws style taken against content kept,
one point per strength (the mean over the pairs), the anchor as a star.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools", "benchmarks"))

import benchmark_quality  # pylint: disable=wrong-import-position
from magenta_style import config as config_lib  # pylint: disable=wrong-import-position
from magenta_style.networks import quality  # pylint: disable=wrong-import-position
from magenta_style.networks import vgg  # pylint: disable=wrong-import-position
from magenta_style.optimization import optimize_lib  # pylint: disable=wrong-import-position


def _done(path):
    if not os.path.exists(path):
        return set()
    with open(path) as f:
        return {(r["label"], r["photo"], r["style"]) for r in map(json.loads, f) if r}


def plot(path, rows, anchor, title):
    """style taken vs content kept: one point per label (mean over pairs), anchor star.

    Drawn with Pillow (matplotlib is not a dependency): axes 0..1 both ways, a grey
    dot per run, a blue dot and label per --style_strength, the anchor in red.
    """
    from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
    from magenta_style.media import images  # pylint: disable=import-outside-toplevel
    width, height, left, bottom, top, right = 640, 470, 60, 50, 40, 100
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)

    def xy(content, style):
        return (left + content * (width - left - right),
                height - bottom - style * (height - bottom - top))

    for tick in range(11):
        value = tick / 10
        x, _ = xy(value, 0)
        _, y = xy(0, value)
        draw.line([x, top, x, height - bottom], fill=(230, 230, 230))
        draw.line([left, y, width - right, y], fill=(230, 230, 230))
        draw.text((x - 8, height - bottom + 4), f"{value:.1f}", fill="black")
        draw.text((left - 28, y - 6), f"{value:.1f}", fill="black")
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    draw.text((left + 120, height - 22), "content kept (HED edge correlation)", fill="black")
    draw.text((4, top - 16), "style taken (1 - Gram distance ratio)", fill="black")
    draw.text((4, 4), title[:95], fill="black")
    labels = list(dict.fromkeys(r["label"] for r in rows))
    means = []
    for label in labels:
        mine = [r for r in rows if r["label"] == label]
        for r in mine:
            x, y = xy(r["content_kept"], r["style_taken"])
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(170, 170, 170))
        means.append((float(np.mean([r["content_kept"] for r in mine])),
                      float(np.mean([r["style_taken"] for r in mine])), label, len(mine)))
    means.sort()
    draw.line([xy(c, s) for c, s, _, _ in means], fill=(40, 80, 200), width=2) \
        if len(means) > 1 else None
    for content, style, label, count in means:
        x, y = xy(content, style)
        draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=(40, 80, 200))
        draw.text((x + 7, y - 14), f"strength {label} ({count} pairs)", fill=(40, 80, 200))
    if anchor is not None:
        x, y = xy(*anchor)
        draw.regular_polygon((x, y, 9), 5, fill=(220, 30, 30))
        draw.text((x + 10, y + 2), "anchor: Magenta arbitrary model", fill=(220, 30, 30))
    draw.text((left + 8, height - bottom - 16), "grey: single pairs; blue: means",
              fill=(90, 90, 90))
    images.save_image_atomic(path, np.asarray(canvas, np.float32) / 255.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--strengths", default="1")
    parser.add_argument("--recipe", default="hed")
    parser.add_argument("--content_weights", default=None)
    parser.add_argument("--style_weights", default=None)
    parser.add_argument("--label_prefix", default="")
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--scales", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--style_scale", type=float, default=1.0,
                        help="style size relative to the output (2 at 128 px gives the "
                        "256 px style the metric sees)")
    parser.add_argument("--vgg_pooling", default="", help="default: the recipe's")
    parser.add_argument("--pairs", default="", help="PHOTO:STYLE,... (default: the anchor's)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--plot", default="")
    parser.add_argument("--plot_only", action="store_true")
    parser.add_argument("--title", default="")
    args = parser.parse_args()

    anchor_pairs = benchmark_quality.anchor_pairs()
    if args.pairs:
        pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
    else:
        pairs = [(photo, style) for photo, style, _ in anchor_pairs]
    if not args.plot_only:
        scorer = quality.QualityScorer()
        pooling = config_lib.OptimizeConfig(
            content_image="x", style_images=("y",), vgg_checkpoint="hed", recipe=args.recipe,
            vgg_pooling=args.vgg_pooling).vgg_pooling
        vgg_net = vgg.get_vgg16("hed", pooling, "vgg_16", conv_end_points=True)
        done = _done(args.output)
        for strength in [float(s) for s in args.strengths.split(",")]:
            label = f"{args.label_prefix}{strength:g}"
            for photo_path, style_path in pairs:
                key = (label, os.path.basename(photo_path), os.path.basename(style_path))
                if key in done:
                    continue
                extra = {}
                for name in ("content_weights", "style_weights"):
                    text = getattr(args, name)
                    if text:
                        extra[name] = tuple(optimize_lib.qualify_layer_weights(
                            text, "vgg_16").items())
                cfg = config_lib.OptimizeConfig(
                    content_image=photo_path, style_images=(style_path,),
                    vgg_checkpoint="hed", recipe=args.recipe, style_strength=strength,
                    image_size=args.image_size, scales=args.scales,
                    iterations=args.iterations, style_scale=args.style_scale,
                    vgg_pooling=args.vgg_pooling, **extra)
                began = time.perf_counter()
                result = optimize_lib.optimize(cfg, vgg_net=vgg_net)
                seconds = time.perf_counter() - began
                photo = benchmark_quality.load_rgb(photo_path)
                style = benchmark_quality.load_rgb(style_path)
                score = scorer.score(photo, style, result.image)
                row = {"label": label, "photo": key[1], "style": key[2], "seconds": seconds,
                       "recipe": args.recipe, "strength": strength,
                       "content_weights": args.content_weights,
                       "style_weights": args.style_weights, "image_size": args.image_size,
                       "scales": args.scales, "iterations": args.iterations,
                       "style_scale": args.style_scale, "vgg_pooling": pooling,
                       **score.to_dict()}
                with open(args.output, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    if args.plot:
        with open(args.output) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        anchor = benchmark_quality.ANCHOR_MEANS
        plot(args.plot, rows, anchor, args.title or " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
