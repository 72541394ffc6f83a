"""Training throughput: steps/s and images/s of the real training step.

Times train_lib.Trainer's compiled loop (transformer forward/backward, VGG-16 loss
network, Adam) on synthetic batches, for each image size x {plain, XLA} x
{float32, mixed precision}. Mixed precision is bfloat16 on CPU/TPU and float16 with
loss scaling on GPU. The VGG weights are the random stand-in (speed does not depend
on their values).

    python tools/benchmark_train.py                      # CPU: 64 and 128 px
    python tools/benchmark_train.py --sizes=256 --batch_size=16 --steps=50   # GPU

Prints one line per configuration (median over --repeats timed loops).
"""
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from magenta_style import config as config_lib  # noqa: E402
from magenta_style import train_lib  # noqa: E402
from magenta_style import transformer  # noqa: E402
from magenta_style import vgg  # noqa: E402

_SIZES = flags.DEFINE_list("sizes", None, "Image sizes (default: 64,128 on CPU, 256 on GPU).")
_BATCH = flags.DEFINE_integer("batch_size", 4, "Global batch size.")
_ALPHA = flags.DEFINE_float("alpha", 1.0, "Width multiplier.")
_STYLES = flags.DEFINE_integer("num_styles", 10, "Styles.")
_STEPS = flags.DEFINE_integer("steps", 5, "Steps per timed loop.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed loops (after one warm-up loop).")
_MODES = flags.DEFINE_list("modes", ["fp32", "fp32+xla", "mixed", "mixed+xla"],
                           "Configurations to time.")


def _time_config(size, jit, mixed, strategy):
    policy = train_lib.mixed_precision_policy(strategy) if mixed else "float32"
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        with strategy.scope():
            model = transformer.StyleTransferNetwork(_STYLES.value, _ALPHA.value)
            model(tf.zeros([1, 16, 16, 3]), tf.zeros([1], tf.int32))
            grams = {f"vgg_16/conv{i}": np.zeros([_STYLES.value, c, c], np.float32)
                     for i, c in zip(range(1, 5), (64, 128, 256, 512))}
            trainer = train_lib.Trainer(
                model, vgg.get_vgg16("standin:0"), grams,
                config_lib.LossConfig(vgg_checkpoint="standin:0"), _BATCH.value, 1e-3,
                loss_scale=policy == "mixed_float16", jit_compile=jit)
    finally:
        keras.config.set_dtype_policy(previous)
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(size=[_BATCH.value, size, size, 3]).astype(np.float32),
             "label": rng.integers(0, _STYLES.value, [_BATCH.value]).astype(np.int32),
             "index": np.arange(_BATCH.value, dtype=np.int64),
             "skipped": np.zeros([_BATCH.value], np.int64)}
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    started = time.perf_counter()
    trainer.train_steps(strategy, iterator, _STEPS.value)  # Trace/compile + warm-up.
    first = time.perf_counter() - started
    times = []
    for _ in range(_REPEATS.value):
        started = time.perf_counter()
        trainer.train_steps(strategy, iterator, _STEPS.value)
        times.append(time.perf_counter() - started)
    return policy, _STEPS.value / statistics.median(times), first


def main(argv):
    del argv
    gpus = tf.config.list_logical_devices("GPU")
    strategy = tf.distribute.OneDeviceStrategy((gpus or tf.config.list_logical_devices("CPU"))[0]
                                               .name)
    sizes = [int(s) for s in (_SIZES.value or (["256"] if gpus else ["64", "128"]))]
    device = "GPU " + tf.config.experimental.get_device_details(
        tf.config.list_physical_devices("GPU")[0]).get("device_name", "") if gpus else (
        f"CPU ({os.cpu_count()} cores)")
    print(f"device: {device}; batch {_BATCH.value}, alpha {_ALPHA.value}, "
          f"{_STYLES.value} styles, {_STEPS.value} steps x {_REPEATS.value} timed loops")
    for size in sizes:
        for mode in _MODES.value:
            mixed, jit = mode.startswith("mixed"), mode.endswith("+xla")
            try:
                policy, steps_per_sec, first = _time_config(size, jit, mixed, strategy)
            except (tf.errors.OpError, ValueError) as e:
                print(f"{size:4d}px {mode:10s} FAILED: {' '.join(str(e).split())[:150]}")
                continue
            print(f"{size:4d}px {mode:10s} ({policy:14s}) {steps_per_sec:7.3f} steps/s "
                  f"{steps_per_sec * _BATCH.value:8.2f} images/s  (first loop {first:.1f} s)",
                  flush=True)


if __name__ == "__main__":
    app.run(main)
