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
"""
import statistics
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from magenta_style import checkpoints
from magenta_style import config as config_lib
from magenta_style import transformer

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Optional checkpoint to benchmark.")
_SIZES = flags.DEFINE_list("sizes", ["256", "512", "1024"], "Square sizes for batch 1.")
_MODES = flags.DEFINE_list("modes", ["eager", "function", "xla"], "Execution modes.")
_BATCH8_SIZE = flags.DEFINE_integer("batch8_size", 256, "Size for the batch-8 throughput row.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per cell.")


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
