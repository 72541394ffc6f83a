"""Training speed, side by side: our training step in several configurations and Magenta's.

Times train_lib.Trainer's compiled loop (transformer forward/backward, VGG-16 loss
network, Adam) on a synthetic batch, and Magenta's TF1 training graph
(tools/benchmarks/benchmark_magenta_tf1.py: transform -> two VGG-16 calls -> Magenta's losses ->
tf.train.AdamOptimizer, verified against Magenta's losses with `--verify` there).
VGG weights are the fixtures' seed-7 stand-in for Magenta and the stand-in VGG for
ours (speed does not depend on the values).

    python tools/benchmarks/benchmark_train.py                      # the issue's table: batch 2, 256 px
    python tools/benchmarks/benchmark_train.py --modes=fp32,magenta_tf1 --sizes=256 --repeats=5
    python tools/benchmarks/benchmark_train.py --end_to_end_steps=30 # + python -m magenta_style.train
    python tools/benchmarks/benchmark_train.py --sizes=256 --batch_size=16 --steps=20   # GPU

Modes (`--modes`): `fp32`, `fp32+xla`, `mixed` (bfloat16 on CPU/TPU, float16 with loss
scaling on GPU), `mixed+xla`, `magenta_tf1`. They are timed interleaved (one loop of
each in turn, `--repeats` rounds, after one warm-up loop each) in one process, so
machine load hits them alike; each figure is the median s/step. The ratio column is
Magenta's s/step over the mode's.

`--end_to_end_steps=N` also runs `python -m magenta_style.train` with its defaults
(strategy auto, steps_per_loop 10, summaries and checkpoints every 15 s, its input
pipeline) except --batch_size/--image_size from this tool's flags, N steps on the demo
images with the stand-in VGG, and reports the steps/s of its last progress line, next
to Magenta's training graph timed right before and after it.
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from magenta_style import config as config_lib  # noqa: E402
from magenta_style.training import devices  # noqa: E402
from magenta_style.training import train_lib  # noqa: E402
from magenta_style.networks import transformer  # noqa: E402
from magenta_style.networks import vgg  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

_SIZES = flags.DEFINE_list("sizes", ["256"], "Image sizes.")
_BATCH = flags.DEFINE_integer("batch_size", 2, "Global batch size.")
_ALPHA = flags.DEFINE_float("alpha", 1.0, "Width multiplier.")
_STYLES = flags.DEFINE_integer("num_styles", 4, "Styles.")
_STEPS = flags.DEFINE_integer("steps", 2, "Steps per timed loop.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed loops per mode (after one warm-up loop).")
_MODES = flags.DEFINE_list("modes", ["fp32", "fp32+xla", "mixed", "magenta_tf1"],
                           "Configurations to time.")
_END_TO_END = flags.DEFINE_integer("end_to_end_steps", 0,
                                   "Also time python -m magenta_style.train for N steps.")


def _strategy():
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy((gpus or tf.config.list_logical_devices("CPU"))[0]
                                           .name)


def make_step(mode, size, batch_size, num_styles, alpha, strategy=None, steps=1):
    """A callable running `steps` training steps of `mode` on one synthetic batch."""
    rng = np.random.default_rng(0)
    images = rng.uniform(size=[batch_size, size, size, 3]).astype(np.float32)
    labels = (np.arange(batch_size) % num_styles).astype(np.int32)
    if mode == "magenta_tf1":
        import benchmark_magenta_tf1
        graph = benchmark_magenta_tf1.training_graph_for_benchmark(num_styles, alpha)

        def magenta_steps():
            for _ in range(steps):
                graph.step(images, labels)
        return magenta_steps
    strategy = strategy or _strategy()
    mixed, jit = mode.startswith("mixed"), mode.endswith("+xla")
    policy = devices.mixed_precision_policy(strategy) if mixed else "float32"
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        with strategy.scope():
            model = transformer.StyleTransferNetwork(num_styles, alpha)
            model(tf.zeros([1, 16, 16, 3]), tf.zeros([1], tf.int32))
            grams = {f"vgg_16/conv{i}": np.zeros([num_styles, c, c], np.float32)
                     for i, c in zip(range(1, 5), (64, 128, 256, 512))}
            trainer = train_lib.Trainer(
                model, vgg.get_vgg16("standin:0"), grams,
                config_lib.LossConfig(vgg_checkpoint="standin:0"), batch_size, 1e-3,
                loss_scale=policy == "mixed_float16", jit_compile=jit)
    finally:
        keras.config.set_dtype_policy(previous)
    batch = {"image": images, "label": labels,
             "index": np.arange(batch_size, dtype=np.int64),
             "skipped": np.zeros([batch_size], np.int64)}
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    return lambda: trainer.train_steps(strategy, iterator, steps)


def _load():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _interleaved(fns, repeats):
    first, times = {}, {name: [] for name in fns}
    for name, fn in fns.items():
        started = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - started
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return {name: (first[name], statistics.median(times[name])) for name in fns}


def end_to_end(steps, batch_size, image_size, workdir):
    """steps/s of `python -m magenta_style.train` (its last progress line), defaults."""
    command = [sys.executable, "-m", "magenta_style.train",
               f"--demo_data_dir={workdir}/data", "--vgg_checkpoint=standin:0",
               f"--train_dir={workdir}/train", f"--batch_size={batch_size}",
               f"--image_size={image_size}", f"--train_steps={steps}"]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    rates = re.findall(r"([0-9.]+) steps/s", result.stderr + result.stdout)
    if result.returncode != 0 or not rates:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr[-2000:]}")
    return float(rates[-1]), " ".join(command[1:])


def main(argv):
    del argv
    strategy = _strategy()
    print(f"TensorFlow {tf.__version__}; {os.cpu_count()} CPU cores; GPU: "
          f"{bool(tf.config.list_logical_devices('GPU'))}; batch {_BATCH.value}, alpha "
          f"{_ALPHA.value}, {_STYLES.value} styles, {_STEPS.value} steps x {_REPEATS.value} "
          "timed loops per mode")
    print(f"load before: {_load()}")
    print("| size | mode | s/step | steps/s | images/s | first loop s | Magenta / this |")
    print("|---|---|---|---|---|---|---|")
    for size in [int(s) for s in _SIZES.value]:
        fns = {}
        for mode in _MODES.value:
            try:
                fns[mode] = make_step(mode, size, _BATCH.value, _STYLES.value, _ALPHA.value,
                                      strategy, _STEPS.value)
            except (tf.errors.OpError, ValueError) as e:
                print(f"| {size} | {mode} | FAILED: {' '.join(str(e).split())[:150]} |")
        results = _interleaved(fns, _REPEATS.value)
        reference = results.get("magenta_tf1", (None, None))[1]
        for mode, (first, seconds) in results.items():
            per_step = seconds / _STEPS.value
            ratio = f"{reference / seconds:.2f}x" if reference else ""
            print(f"| {size} | {mode} | {per_step:.3f} | {1 / per_step:.3f} | "
                  f"{_BATCH.value / per_step:.2f} | {first:.1f} | {ratio} |", flush=True)
        print(f"load after {size} px: {_load()}", flush=True)
    if _END_TO_END.value:
        size = int(_SIZES.value[0])
        magenta = make_step("magenta_tf1", size, _BATCH.value, _STYLES.value, _ALPHA.value,
                            steps=_STEPS.value)
        before = _interleaved({"magenta_tf1": magenta}, _REPEATS.value)["magenta_tf1"][1]
        rate, command = end_to_end(_END_TO_END.value, _BATCH.value, size,
                                   tempfile.mkdtemp(prefix="benchmark_train_"))
        after = _interleaved({"magenta_tf1": magenta}, _REPEATS.value)["magenta_tf1"][1]
        magenta_rate = _STEPS.value / statistics.mean([before, after])
        print(f"end to end: `{command}`: {rate:.3f} steps/s ({1 / rate:.3f} s/step); Magenta's "
              f"training graph before/after: {magenta_rate:.3f} steps/s; ratio "
              f"{rate / magenta_rate:.2f}x; load: {_load()}")


if __name__ == "__main__":
    app.run(main)
