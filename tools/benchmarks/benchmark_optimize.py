"""Speed and memory of the optimization mode: ms per iteration and peak memory.

    python tools/benchmarks/benchmark_optimize.py --vgg_checkpoint=/path/to/vgg_16.ckpt
    python tools/benchmarks/benchmark_optimize.py --sizes=64 --iterations=4   # a quick smoke run

For every size (default 256 and 512), optimizer (L-BFGS, Adam) and XLA setting, a
child process runs `--iterations` iterations of the Gatys recipe (VGG-16 trunk to
conv5_1, Gram losses on conv1_1..conv5_1, content on conv4_2, gradient to the
pixels: the PyTorch baseline's iteration) and reports:
- ms/iteration: the median time between iterations, the first (tracing) excluded;
  L-BFGS iterations can take more than one loss evaluation (line search), so "ms/eval"
  is also given (total time / evaluations);
- growth: the median of the last third of iterations over that of the first third
  (1.0: no slow-down over the iterations);
- peak RSS of the child (MB) and its RSS growth between iteration 2 and the end.
Each configuration runs in its own process so the peaks do not mix. With
`--style_loss=patch` the semantic patch loss is timed instead (style as large as the
output, two-label semantic maps on both, the paper's conv3_1 and conv4_1). Stand-in weights are fine for timing (the numbers do not depend on the
values); the images are the shared photos when present, else procedural.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "..", "shared", "data")


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _peak_rss_mb():
    import resource  # pylint: disable=import-outside-toplevel
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _images(size):
    from magenta_style.media import images  # pylint: disable=import-outside-toplevel
    content = os.path.join(DATA, "content", "golden_gate_sq.jpg")
    style = os.path.join(DATA, "styles", "red_texture_sq.jpg")
    if os.path.exists(content) and os.path.exists(style):
        return images.load_image(content)[0], images.load_image(style)[0]
    y, x = np.mgrid[0:size, 0:size] / size
    photo = np.stack([x, y, 1 - x], -1).astype(np.float32)
    stripes = (((np.mgrid[0:size, 0:size].sum(0) // 8) % 2)[..., None] * [0.8, 0.1, 0.1] + 0.1)
    return photo, stripes.astype(np.float32)


def _semantic_maps(content_hw, style_hw):
    """Two-label RGB maps (left / right halves; the content's mirrored) in a temp dir.

    The patch loss is timed with its semantic channels, the issue's use; their cost
    is the M = 3 extra channels of the match.
    """
    import tempfile  # pylint: disable=import-outside-toplevel
    from PIL import Image  # pylint: disable=import-outside-toplevel
    directory = tempfile.mkdtemp(prefix="benchmark_optimize_")
    paths = {}
    for name, (height, width), flip in (("style_semantic_map", style_hw, False),
                                        ("content_semantic_map", content_hw, True)):
        left = (np.arange(width) < width // 2) != flip
        rgb = np.where(left[None, :, None], [255, 0, 0], [0, 0, 255]).astype(np.uint8)
        paths[name] = os.path.join(directory, f"{name}.png")
        Image.fromarray(np.repeat(rgb, height, axis=0)).save(paths[name])
    return paths


def child(args):
    """Runs one configuration; prints one JSON line."""
    sys.path.insert(0, ROOT)
    from magenta_style import config as config_lib  # pylint: disable=import-outside-toplevel
    from magenta_style.optimization import optimize_lib  # pylint: disable=import-outside-toplevel
    content, style = _images(args.size)
    maps = {}
    if args.style_loss == "patch":
        maps = _semantic_maps(content.shape[:2], style.shape[:2])
    cfg = config_lib.OptimizeConfig(
        content_image="content", style_images=("style",), image_size=args.size,
        vgg_checkpoint=args.vgg_checkpoint, optimizer=args.optimizer,
        iterations=args.iterations, jit_compile=args.xla, vgg=args.vgg,
        style_loss=args.style_loss, **maps)
    stamps, rss = [], []

    def on_iteration(progress):
        stamps.append(time.perf_counter())
        rss.append(_rss_mb())

    began = time.perf_counter()
    result = optimize_lib.optimize(cfg, content=content, styles=[style],
                                   on_iteration=on_iteration)
    total = time.perf_counter() - began
    evaluations = len(result.history)
    deltas = np.diff(stamps) * 1e3
    third = max(1, len(deltas) // 3)
    print(json.dumps({
        "size": args.size, "optimizer": args.optimizer, "xla": args.xla,
        "style_loss": args.style_loss, "iterations": len(stamps),
        "ms_per_iteration": float(np.median(deltas)) if len(deltas) else None,
        "growth": (float(np.median(deltas[-third:]) / np.median(deltas[:third]))
                   if len(deltas) >= 3 else None),
        "seconds_total": round(total, 2), "evaluations_logged": evaluations,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_growth_mb": round(rss[-1] - rss[min(1, len(rss) - 1)], 1) if rss else None,
        "trace_count": result.report["trace_count"],
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--optimizers", default="lbfgs,adam")
    parser.add_argument("--xla", default="off,on", help="off, on or off,on")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--vgg_checkpoint", default="standin:0")
    parser.add_argument("--vgg", default="vgg_16")
    parser.add_argument("--style_loss", default="gram")
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--optimizer", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.child:
        args.xla = args.xla == "on"
        child(args)
        return 0
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print(f"{'size':>5} {'optimizer':>9} {'xla':>4} {'ms/iter':>9} {'growth':>7} "
          f"{'peak MB':>8} {'RSS +MB':>8} {'traces':>6}")
    for size in (int(s) for s in args.sizes.split(",")):
        for optimizer in args.optimizers.split(","):
            for xla in args.xla.split(","):
                cmd = [sys.executable, os.path.abspath(__file__), "--child",
                       f"--size={size}", f"--optimizer={optimizer}", f"--xla={xla}",
                       f"--iterations={args.iterations}", f"--vgg={args.vgg}",
                       f"--vgg_checkpoint={args.vgg_checkpoint}",
                       f"--style_loss={args.style_loss}"]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                      timeout=args.timeout)
                lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
                if proc.returncode or not lines:
                    tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"{size:>5} {optimizer:>9} {xla:>4} failed: {tail}")
                    continue
                r = json.loads(lines[-1])
                ms = "-" if r["ms_per_iteration"] is None else f"{r['ms_per_iteration']:.0f}"
                growth = "-" if r["growth"] is None else f"{r['growth']:.2f}"
                print(f"{size:>5} {optimizer:>9} {xla:>4} {ms:>9} {growth:>7} "
                      f"{r['peak_rss_mb']:>8.0f} {r['rss_growth_mb']:>8.1f} "
                      f"{r['trace_count']:>6}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
