"""Measures the memory one stylization request costs per pixel, for docs/limits.md and
`limits.BYTES_PER_PIXEL`.

    python tools/benchmarks/measure_memory.py --alphas=0.25,0.5,0.75,1.0 --sides=512,1024,1536
    python tools/benchmarks/measure_memory.py --generator=boe_yuv444 --alphas=0.5,1.0

    python tools/benchmarks/measure_memory.py --optimize=gram:vgg_16,gram:vgg_19,patch:vgg_16 \
        --sides=128,256,384,512

For each alpha and signature a fresh process builds the network (random weights:
memory does not depend on them), wraps it in the export's own serving functions
(signatures.StylizerModule, without a pixel cap), runs one small request to trace
it, then requests of increasing size, and reports its peak resident memory
(ru_maxrss) after each. The slope of a least-squares line through (pixels, peak) is
the cost of one more pixel; the intercept is the process's fixed cost (TensorFlow,
the traced graph). Peaks, not averages, are what kills a server. CPU (oneDNN)
figures; other devices allocate differently.

--optimize measures `optimize` instead (config.OPTIMIZE_BYTES_PER_PIXEL): for each
style loss and VGG, one fresh process per side runs 3 L-BFGS iterations of the default
recipe (every VGG layer up to conv5_1 for Gram, conv3_1 and conv4_1 for the patch loss)
on a square content and style image of that side, through the real VGG path (stand-in
weights have the real shapes: memory does not depend on their values), and reports
its peak. A fresh process per side, because each size traces its own functions.
"""
import argparse
import json
import os
import resource
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

SIGNATURES = ("serving_default", "serving_bytes")


def _peak_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB.


def child(alpha, signature, sides, generator="magenta"):
    """Runs in its own process; prints one JSON line {side: peak bytes}."""
    import numpy as np
    import tensorflow as tf

    from magenta_style import config as config_lib
    from magenta_style.networks import generators
    from magenta_style.serving import signatures

    # BOE's networks as its configs train them (plain norm: one style); the norm's
    # tables are a few numbers, the activations are what cost memory.
    model_config = (config_lib.ModelConfig(num_styles=2, alpha=alpha)
                    if generator == "magenta" else
                    config_lib.ModelConfig(num_styles=1, alpha=alpha, generator=generator))
    model = generators.build(model_config)
    module = signatures.StylizerModule(model, model_config, "{}", max_pixels=0)
    weights = tf.constant([[1.0, 0.0][:model_config.num_styles]])
    rng = np.random.default_rng(0)

    def request(side):
        pixels = rng.integers(0, 256, [side, side, 3], dtype=np.uint8)
        if signature == "serving_bytes":
            png = tf.io.encode_png(pixels)[None]
            module.stylize_bytes(png, weights)["stylized_image_bytes"].numpy()
        else:
            image = tf.constant(pixels[None].astype(np.float32) / 255.0)
            module.stylize(image, weights)["stylized_image"].numpy()

    request(64)  # Traces; later sizes do not retrace.
    peaks = {}
    for side in sides:
        request(side)
        peaks[side] = _peak_bytes()
    print(json.dumps({"alpha": alpha, "signature": signature, "peaks": peaks}))


def optimize_child(style_loss, architecture, side):
    """Runs in its own process; prints one JSON line {side: peak bytes} of `optimize`."""
    import numpy as np

    from magenta_style import config as config_lib
    from magenta_style.optimization import optimize_lib

    rng = np.random.default_rng(0)
    content, style = (rng.random([side, side, 3], dtype=np.float32) for _ in range(2))
    cfg = config_lib.OptimizeConfig(
        content_image="content", style_images=("style",), image_size=side, vgg=architecture,
        vgg_checkpoint="standin:0", iterations=3, style_loss=style_loss, max_pixels=2**40)
    optimize_lib.optimize(cfg, content=content, styles=[style])
    print(json.dumps({"peaks": {side: _peak_bytes()}}))


def measure_optimize(runs, sides):
    """Prints a table row per style_loss:vgg of `runs` (see the module docstring)."""
    print("| style loss | vgg | bytes per pixel | fixed (MiB) | peaks (MiB) at sides "
          f"{', '.join(map(str, sides))} |")
    print("|---|---|---|---|---|")
    for run in runs:
        style_loss, architecture = run.split(":")
        peaks = {}
        for side in sides:
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", f"--optimize={run}",
                 f"--sides={side}"], capture_output=True, text=True, check=False)
            if out.returncode:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            peaks.update(json.loads(out.stdout.strip().splitlines()[-1])["peaks"])
        slope, fixed = fit(peaks)
        shown = ", ".join(f"{p / 2**20:.0f}" for p in peaks.values())
        print(f"| {style_loss} | {architecture} | {slope:.0f} | {fixed / 2**20:.0f} | {shown} |",
              flush=True)
    return 0


def fit(peaks):
    """Least-squares (bytes per pixel, fixed bytes) through {side: peak bytes}."""
    xs = [int(side) ** 2 for side in peaks]
    ys = list(peaks.values())
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    slope = (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
             / sum((x - mean_x) ** 2 for x in xs))
    return slope, mean_y - slope * mean_x


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alphas", default="0.25,0.5,0.75,1.0")
    parser.add_argument("--sides", default="512,1024,1536",
                        help="square request sizes, ascending (at least two)")
    parser.add_argument("--signatures", default=",".join(SIGNATURES))
    parser.add_argument("--generator", default="magenta",
                        help="magenta, boe_yuv444 or boe_yuv420")
    parser.add_argument("--optimize", default="",
                        help="measure optimize instead: style_loss:vgg,... (gram:vgg_19)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--alpha", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--signature", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sides = sorted(int(s) for s in args.sides.split(","))
    if args.child and args.optimize:
        optimize_child(*args.optimize.split(":"), sides[0])
        return 0
    if args.child:
        child(args.alpha, args.signature, sides, args.generator)
        return 0
    if len(sides) < 2:
        parser.error("--sides needs at least two sizes")
    if args.optimize:
        return measure_optimize(args.optimize.split(","), sides)
    print(f"{args.generator}:")
    print("| alpha | signature | bytes per pixel | fixed (MiB) | peaks (MiB) at sides "
          f"{', '.join(map(str, sides))} |")
    print("|---|---|---|---|---|")
    for alpha in (float(a) for a in args.alphas.split(",")):
        for signature in args.signatures.split(","):
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", f"--alpha={alpha}",
                 f"--signature={signature}", f"--sides={args.sides}",
                 f"--generator={args.generator}"],
                capture_output=True, text=True, check=False)
            if out.returncode:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            result = json.loads(out.stdout.strip().splitlines()[-1])
            slope, fixed = fit(result["peaks"])
            peaks = ", ".join(f"{p / 2**20:.0f}" for p in result["peaks"].values())
            print(f"| {alpha} | {signature} | {slope:.0f} | {fixed / 2**20:.0f} | {peaks} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
