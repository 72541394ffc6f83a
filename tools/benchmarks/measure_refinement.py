"""How many optimization iterations a fast network's output saves.

    python tools/benchmarks/measure_refinement.py --checkpoint=/tmp/magenta_style_quickstart/train \
        --content_images='/tmp/magenta_style_quickstart/data/content/*.png' --style=0

For each content image, on the network's own training loss (`--init=network:...`):
1. baseline: `--iterations` (100) L-BFGS iterations from the content image; its final
   loss is the target L;
2. refined: up to the same number of iterations from the network's stylization; the
   first iteration whose loss is <= L.
Prints, per image, the network's loss (iteration 0 of the refined run), L, the
iterations the refined run needed and the iterations saved; then the means. Also the
amortization gap: the network's loss over the loss after the refinement.

`--plot=gap.png` draws Johnson et al.'s Figure 5 for the model: per image, the loss
against L-BFGS iterations from the photo and from the network's output, and the
network's own loss as a horizontal line (log loss axis). `--output_json` keeps the
per-iteration losses.

    python tools/benchmarks/measure_refinement.py --checkpoint=/tmp/magenta_style_quickstart/train \
        --content_images=../shared/data/content --max_images=3 --image_size=256 \
        --plot=docs/amortization_gap.png --output_json=/tmp/gap.json
"""
import argparse
import json
import math
import os
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)

from magenta_style import config as config_lib  # pylint: disable=wrong-import-position
from magenta_style.media import images  # pylint: disable=wrong-import-position
from magenta_style.optimization import optimize_lib  # pylint: disable=wrong-import-position


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--content_images", required=True, help="file, folder or glob")
    parser.add_argument("--style", default="0")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--max_images", type=int, default=2)
    parser.add_argument("--plot", default="", help="PNG: loss against iterations")
    parser.add_argument("--output_json", default="", help="per-iteration losses")
    args = parser.parse_args()
    paths = images.expand_inputs(args.content_images)[:args.max_images]
    cfg = config_lib.OptimizeConfig(
        content_image="content", init=f"network:{args.checkpoint}:{args.style}",
        image_size=args.image_size, iterations=args.iterations)
    saved, gaps, curves = [], [], []
    print(f"{'image':<28} {'network':>10} {'target L':>10} {'refined':>10} "
          f"{'its to L':>8} {'saved':>6}")
    for path in paths:
        content, _ = images.load_image(path)
        baseline = optimize_lib.optimize(cfg, content=content, start_from_content=True)
        target = baseline.report["scales"][-1]["end"]["total_loss"]
        refined = optimize_lib.optimize(cfg, content=content)
        start = refined.report["scales"][0]["start"]["total_loss"]
        end = refined.report["scales"][-1]["end"]["total_loss"]
        needed = 0 if start <= target else optimize_lib.iterations_to_reach(
            refined.history, target)
        gain = None if needed is None else args.iterations - needed
        saved.append(gain)
        gaps.append(start / end)
        curves.append({
            "image": os.path.basename(path), "network_loss": start, "target": target,
            "from_photo": [baseline.report["scales"][0]["start"]["total_loss"]]
                          + [h["total_loss"] for h in baseline.history],
            "from_network": [start] + [h["total_loss"] for h in refined.history]})
        print(f"{os.path.basename(path)[:28]:<28} {start:>10.4g} {target:>10.4g} {end:>10.4g} "
              f"{'>' + str(args.iterations) if needed is None else needed:>8} "
              f"{'-' if gain is None else gain:>6}", flush=True)
    known = [s for s in saved if s is not None]
    print(f"mean iterations saved: {np.mean(known) if known else float('nan'):.1f} "
          f"({len(known)} of {len(saved)} reached L); mean amortization gap after "
          f"{args.iterations} iterations: {np.mean(gaps):.3g}x")
    title = (f"{args.checkpoint}, style {args.style}, {args.image_size} px, L-BFGS on the "
             "network's own loss")
    if args.output_json:
        with open(args.output_json, "w", encoding="utf-8") as f:
            json.dump({"title": title, "curves": curves}, f, indent=1)
    if args.plot:
        plot(args.plot, curves, title)
        print(f"plot: {args.plot}")
    return 0


def plot(path, curves, title):
    """One panel per image: log loss against iteration (Pillow; matplotlib is no dependency).

    Blue: L-BFGS from the photo; orange: from the network's output; grey dashed: the
    network's own loss (a fast network's one pass).
    """
    from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
    panel_w, panel_h, left, bottom, top, gap = 300, 240, 58, 36, 30, 16
    width = len(curves) * (panel_w + gap) + gap
    canvas = Image.new("RGB", (width, panel_h + 60), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 4), title[:150], fill="black")
    blue, orange, grey = (31, 119, 180), (230, 120, 20), (120, 120, 120)
    for k, curve in enumerate(curves):
        x0, y0 = gap + k * (panel_w + gap), 20
        values = curve["from_photo"] + curve["from_network"] + [curve["network_loss"]]
        low, high = math.log10(min(values)), math.log10(max(values))
        low, high = math.floor(low * 4) / 4, math.ceil(high * 4) / 4 + 1e-9
        steps = max(len(curve["from_photo"]), len(curve["from_network"])) - 1
        inner_w, inner_h = panel_w - left, panel_h - top - bottom

        def xy(iteration, loss, x0=x0, y0=y0, low=low, high=high, steps=steps,
               inner_w=inner_w, inner_h=inner_h):
            fraction = (math.log10(loss) - low) / (high - low)
            return (x0 + left + iteration / max(steps, 1) * inner_w,
                    y0 + top + (1 - fraction) * inner_h)

        draw.rectangle([x0 + left, y0 + top, x0 + panel_w, y0 + top + inner_h],
                       outline="black")
        for q in range(int(low * 4), int(high * 4) + 1):
            _, y = xy(0, 10 ** (q / 4))
            draw.line([x0 + left, y, x0 + panel_w, y], fill=(232, 232, 232))
            draw.text((x0 + 2, y - 6), f"{10 ** (q / 4):.3g}", fill="black")
        for tick in range(0, steps + 1, max(1, steps // 4)):
            x, _ = xy(tick, 10 ** low)
            draw.text((x - 6, y0 + top + inner_h + 4), str(tick), fill="black")
        _, y = xy(0, curve["network_loss"])
        for x in range(x0 + left, x0 + panel_w, 8):
            draw.line([x, y, x + 4, y], fill=grey, width=2)
        for key, colour in (("from_photo", blue), ("from_network", orange)):
            points = [xy(i, v) for i, v in enumerate(curve[key])]
            draw.line(points, fill=colour, width=2)
        draw.text((x0 + left + 4, y0 + 8), curve["image"][:36], fill="black")
        draw.text((x0 + left + 60, y0 + top + inner_h + 18), "L-BFGS iteration",
                  fill="black")
    legend_y = panel_h + 42
    for i, (text, colour) in enumerate((("from the photo", blue),
                                        ("from the network's output", orange),
                                        ("the network (one pass)", grey))):
        x = gap + i * 220
        draw.line([x, legend_y + 6, x + 24, legend_y + 6], fill=colour, width=3)
        draw.text((x + 30, legend_y), text, fill="black")
    canvas.save(path)


if __name__ == "__main__":
    sys.exit(main())
