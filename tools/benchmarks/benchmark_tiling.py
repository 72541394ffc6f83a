"""Peak memory and time of tiled high-resolution stylization on the CPU.

    python tools/benchmarks/benchmark_tiling.py [--height=3000] [--width=4000] [--alpha=1.0]
        [--max_tile_pixels=1048576] [--statistics=exact|downscaled] [--untiled]

Builds a network (initial weights with random gamma/beta: speed and memory do not
depend on the values; or --checkpoint), stylizes a synthetic image of the given size
through the stylize command's path (`stylizer.Stylizer`), and prints the wall time and the process's peak
resident memory (ru_maxrss) before and after, so the figure is what stylizing costs
on top of TensorFlow and the image itself. --untiled runs the plain network on the
whole image instead (for comparison; may run out of memory on large sizes).
"""
import resource
import sys
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style.inference import stylizer
from magenta_style.inference import tiling
from magenta_style.networks import checkpoints
from magenta_style.networks import transformer

_HEIGHT = flags.DEFINE_integer("height", 3000, "Image height.")
_WIDTH = flags.DEFINE_integer("width", 4000, "Image width.")
_ALPHA = flags.DEFINE_float("alpha", 1.0, "Width multiplier (ignored with --checkpoint).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Optional model to use.")
_MAX_TILE = flags.DEFINE_integer("max_tile_pixels", tiling.DEFAULT_MAX_TILE_PIXELS,
                                 "Largest window computed at once.")
_STATISTICS = flags.DEFINE_enum("statistics", "exact", list(tiling.STATISTICS_MODES),
                                "How the instance-norm statistics are taken.")
_UNTILED = flags.DEFINE_bool("untiled", False, "Run the whole image in one call instead.")


def _peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux.


def main(argv):
    del argv
    if _CHECKPOINT.value:
        model, model_config = checkpoints.load_model(_CHECKPOINT.value)
    else:
        model_config = config_lib.ModelConfig(1, _ALPHA.value)
        model = transformer.build_transformer(model_config)
        rng = np.random.default_rng(0)
        for weight in model.weights:
            if weight.name in ("gamma", "beta"):
                weight.assign(rng.normal(1.0 if weight.name == "gamma" else 0.0, 0.3,
                                         weight.shape))
    height, width = _HEIGHT.value, _WIDTH.value
    y, x = np.mgrid[:height, :width].astype(np.float32)
    image = np.stack([0.5 + 0.5 * np.sin(x / 97.0), 0.5 + 0.5 * np.cos(y / 61.0),
                      (x + y) / (height + width)], axis=-1).astype(np.float32)
    del y, x
    before = _peak_mib()
    start = time.monotonic()
    last = [0.0]

    def progress(done, total):
        if time.monotonic() - last[0] > 10 or done == total:
            last[0] = time.monotonic()
            print(f"  {done}/{total} tile runs, {time.monotonic() - start:.0f}s",
                  file=sys.stderr, flush=True)

    if _UNTILED.value:
        out = model(tf.constant(image[None]), tf.constant([0])).numpy()[0]
        mode = "untiled"
    else:
        options = stylizer.StylizeOptions(styles="[0]", max_tile_pixels=_MAX_TILE.value,
                                          tile_statistics=_STATISTICS.value)
        out = stylizer.Stylizer(model, model_config, options)(image, progress)[0]
        mode = f"tiled ({_STATISTICS.value} statistics, max_tile_pixels={_MAX_TILE.value})"
    seconds = time.monotonic() - start
    assert out.shape == image.shape and np.isfinite(out).all()
    print(f"{width}x{height} ({width * height / 1e6:.1f} Mpx), alpha {_ALPHA.value}, {mode}: "
          f"{seconds:.0f} s; peak RSS {_peak_mib():.0f} MiB (before stylizing {before:.0f} "
          f"MiB; image float32 {image.nbytes / 2**20:.0f} MiB, output {out.nbytes / 2**20:.0f} "
          f"MiB)")


if __name__ == "__main__":
    app.run(main)
