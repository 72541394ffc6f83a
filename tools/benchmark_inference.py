"""Inference speed of the transformer: eager vs tf.function vs XLA, CPU and GPU.

    python tools/benchmark_inference.py [--checkpoint=DIR] [--sizes=256,512,1024]
        [--modes=eager,function,xla] [--batch8_size=256] [--repeats=5]

Prints ms/image at each size (batch 1) and images/s at `batch8_size` with batch 8,
per mode and device. Timings are medians over `--repeats` runs after one warm-up
call (the warm-up pays tracing and XLA compilation and is reported separately).
Without --checkpoint the network is alpha=1.0 with 32 styles and its initial
weights: speed does not depend on the weight values.

The `function` mode uses one tf.function with unknown H and W, so new image sizes
do not retrace (the trace count is printed); XLA compiles once per input shape.

    python tools/benchmark_inference.py --compare_generators=magenta,boe_yuv444,boe_yuv420
        [--compare_size=512] [--repeats=5]

compares the generators instead (one style, alpha 1, initial weights): parameters
(exact), convolution MACs per pixel (exact, `generators.conv_macs`), and the ms/image
of the `function` mode at `compare_size`, batch 1; for BOE also the parameters and
MACs of one chroma (U) sub-network, which 4:2:0 is meant to shrink.
"""
import statistics
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from magenta_style import checkpoints
from magenta_style import config as config_lib
from magenta_style import generators
from magenta_style import transformer

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Optional checkpoint to benchmark.")
_SIZES = flags.DEFINE_list("sizes", ["256", "512", "1024"], "Square sizes for batch 1.")
_MODES = flags.DEFINE_list("modes", ["eager", "function", "xla"], "Execution modes.")
_BATCH8_SIZE = flags.DEFINE_integer("batch8_size", 256, "Size for the batch-8 throughput row.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per cell.")
_COMPARE = flags.DEFINE_list("compare_generators", [], "Compare these generators (params, "
                             "MACs/pixel, ms) instead: magenta, boe_yuv444, boe_yuv420.")
_COMPARE_SIZE = flags.DEFINE_integer("compare_size", 512, "Square size of the comparison.")


def compare_generators(names, size, repeats):
    """Prints params, MACs/pixel and ms/image (batch 1, `size` px) per generator; returns rows."""
    rows = []
    spec = tf.TensorSpec([1, size, size, 3], tf.float32)
    style_spec = tf.TensorSpec([1, 1], tf.float32)
    print(f"{'generator':11} {'params':>9} {'MACs/pixel':>11} {'ms/image':>9} "
          f"{'U-net params':>12} {'U-net MACs/px':>13}   ({size} px, batch 1, tf.function)")
    for name in names:
        model = generators.build(config_lib.ModelConfig(num_styles=1, alpha=1.0,
                                                        generator=name))
        macs = generators.conv_macs(lambda x, w, m=model: m(x, w), spec, style_spec)
        fn = _callables(model, 1)["function"]
        images = tf.constant(np.random.default_rng(0).random((1, size, size, 3), np.float32))
        _, median = _time(fn, images, tf.ones([1, 1]), repeats)
        row = {"generator": name, "params": model.count_params(),
               "macs_per_pixel": macs / size ** 2, "ms": 1000 * median}
        chroma = ""
        if generators.is_boe(model):
            net = model.u_net
            row["u_params"] = net.count_params()
            row["u_macs_per_pixel"] = generators.conv_macs(
                lambda x, n=net: n(x, tf.zeros([1], tf.int32)),
                tf.TensorSpec([1, size, size, 1], tf.float32)) / size ** 2
            chroma = f"{row['u_params']:12d} {row['u_macs_per_pixel']:13.0f}"
        print(f"{name:11} {row['params']:9d} {row['macs_per_pixel']:11.0f} {row['ms']:9.1f} "
              f"{chroma}", flush=True)
        rows.append(row)
    return rows


def _callables(model, num_styles):
    signature = [tf.TensorSpec([None, None, None, 3], tf.float32),
                 tf.TensorSpec([None, num_styles], tf.float32)]
    return {
        "eager": lambda x, w: model(x, w),
        "function": tf.function(lambda x, w: model(x, w), input_signature=signature),
        "xla": tf.function(lambda x, w: model(x, w), input_signature=signature,
                           jit_compile=True),
    }


def _time(fn, images, weights, repeats):
    start = time.perf_counter()
    fn(images, weights).numpy()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(images, weights).numpy()  # .numpy() waits for the device.
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def main(argv):
    del argv
    if _COMPARE.value:
        compare_generators(_COMPARE.value, _COMPARE_SIZE.value, _REPEATS.value)
        return
    if _CHECKPOINT.value:
        model, model_config = checkpoints.load_model(_CHECKPOINT.value)
    else:
        model_config = config_lib.ModelConfig(num_styles=32, alpha=1.0)
        model = transformer.build_transformer(model_config)
    devices = ["CPU"] + (["GPU"] if tf.config.list_physical_devices("GPU") else [])
    print(f"TensorFlow {tf.__version__}; alpha={model_config.alpha} "
          f"num_styles={model_config.num_styles}; params={model.count_params()}")
    print(f"{'device':6} {'mode':9} {'shape':>16} {'first call s':>12} {'ms/image':>10} "
          f"{'images/s':>9}")
    rows = [(int(s), 1) for s in _SIZES.value] + [(_BATCH8_SIZE.value, 8)]
    for device in devices:
        with tf.device(f"/{device}:0"):
            fns = _callables(model, model_config.num_styles)
            for mode in _MODES.value:
                fn = fns[mode]
                for size, batch in rows:
                    rng = np.random.default_rng(0)
                    images = tf.constant(rng.random((batch, size, size, 3), np.float32))
                    weights = tf.one_hot([i % model_config.num_styles for i in range(batch)],
                                         model_config.num_styles)
                    first, median = _time(fn, images, weights, _REPEATS.value)
                    print(f"{device:6} {mode:9} {str((batch, size, size)):>16} {first:12.2f} "
                          f"{1000 * median / batch:10.1f} {batch / median:9.2f}", flush=True)
                if mode == "function":
                    print(f"{'':6} {'':9} traces for {len(rows)} shapes: "
                          f"{fn.experimental_get_tracing_count()}")


if __name__ == "__main__":
    app.run(main)
