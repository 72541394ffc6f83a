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
"""
import argparse
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
    args = parser.parse_args()
    paths = images.expand_inputs(args.content_images)[:args.max_images]
    cfg = config_lib.OptimizeConfig(
        content_image="content", init=f"network:{args.checkpoint}:{args.style}",
        image_size=args.image_size, iterations=args.iterations)
    saved, gaps = [], []
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
        print(f"{os.path.basename(path)[:28]:<28} {start:>10.4g} {target:>10.4g} {end:>10.4g} "
              f"{'>' + str(args.iterations) if needed is None else needed:>8} "
              f"{'-' if gain is None else gain:>6}", flush=True)
    known = [s for s in saved if s is not None]
    print(f"mean iterations saved: {np.mean(known) if known else float('nan'):.1f} "
          f"({len(known)} of {len(saved)} reached L); mean amortization gap after "
          f"{args.iterations} iterations: {np.mean(gaps):.3g}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
