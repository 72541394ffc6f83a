"""Benchmarks the VGG-16 loss network: forward, and forward + backward to the input image.

Forward computes every end point (conv1 .. pool5). Forward + backward differentiates
a loss-like scalar over the default loss end points (conv1 .. conv4) with respect to
the input images, which is the VGG's share of a training step (the stylized images
go through VGG forward and backward; content images forward only). Each
configuration runs as a tf.function and as an XLA-compiled tf.function.

Uses random stand-in VGG weights (timing does not depend on the values).

    python tools/benchmarks/benchmark_vgg.py                      # 256x256, batch 1 and 16
    python tools/benchmarks/benchmark_vgg.py --sizes=128 --batches=1,4 --repeats=5

Prints one row per (size, batch, mode): median milliseconds per call and images/s.
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from magenta_style.networks import losses  # noqa: E402
from magenta_style.networks import vgg  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["256"], "Square image sizes in pixels (>= 32).")
flags.DEFINE_list("batches", ["1", "16"], "Batch sizes.")
flags.DEFINE_integer("repeats", 3, "Timed calls per configuration (after one warm-up call).")
flags.DEFINE_enum("pooling", "avg", vgg.POOLING_MODES, "VGG pooling mode.")


def _time(fn, images, repeats):
    fn(images).numpy()  # Trace / compile.
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(images).numpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def run_benchmark(sizes, batches, repeats, pooling):
    """Times every configuration; returns rows (size, batch, mode, seconds)."""
    logging.set_verbosity(logging.ERROR)  # The stand-in warning is expected here.
    model = vgg.build_vgg16("standin:0", pooling=pooling)
    loss_end_points = tuple(losses.DEFAULT_STYLE_WEIGHTS)

    def forward(images):
        features = model(images)
        return tf.add_n([tf.reduce_mean(f) for f in features.values()])

    def forward_backward(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            features = model(images)
            loss = tf.add_n([tf.reduce_mean(tf.square(features[n])) for n in loss_end_points])
        return tf.reduce_sum(tape.gradient(loss, images))

    modes = (("forward", tf.function(forward)),
             ("forward XLA", tf.function(forward, jit_compile=True)),
             ("fwd+bwd", tf.function(forward_backward)),
             ("fwd+bwd XLA", tf.function(forward_backward, jit_compile=True)))
    rows = []
    for size in sizes:
        for batch in batches:
            images = tf.random.stateless_uniform([batch, size, size, 3], seed=[0, 1])
            for mode, fn in modes:
                seconds = _time(fn, images, repeats)
                rows.append((size, batch, mode, seconds))
                print(f"{size:>5} {batch:>5}  {mode:<12} {seconds * 1e3:>10.1f} "
                      f"{batch / seconds:>9.2f}", flush=True)
    return rows


def main(argv):
    del argv
    try:
        sizes = [int(s) for s in FLAGS.sizes]
        batches = [int(b) for b in FLAGS.batches]
    except ValueError:
        print("benchmark_vgg: error: --sizes and --batches take integers", file=sys.stderr)
        sys.exit(2)
    if min(sizes) < 32 or min(batches) < 1 or FLAGS.repeats < 1:
        print("benchmark_vgg: error: sizes must be >= 32, batches and --repeats >= 1",
              file=sys.stderr)
        sys.exit(2)
    devices = [d.name for d in tf.config.list_logical_devices() if d.device_type != "CPU"]
    print(f"VGG-16 ({FLAGS.pooling} pooling), TF {tf.__version__}, "
          f"{os.cpu_count()} CPUs, accelerators: {devices or 'none'}; "
          f"median of {FLAGS.repeats} calls")
    print(f"{'size':>5} {'batch':>5}  {'mode':<12} {'ms/call':>10} {'images/s':>9}")
    run_benchmark(sizes, batches, FLAGS.repeats, FLAGS.pooling)


if __name__ == "__main__":
    app.run(main)
