"""Inference speed, side by side: the export's signatures, the Keras model, Magenta's TF1 graph.

    python tools/benchmarks/benchmark_inference.py                        # 512, 1024, 2048 px, batch 1
    python tools/benchmarks/benchmark_inference.py --sizes=512 --repeats=10 \\
        --targets=serving_float32,serving_bfloat16,magenta_tf1
    python tools/benchmarks/benchmark_inference.py --checkpoint=DIR --targets=keras_function,keras_xla

Targets (`--targets`, comma-separated):
- `serving_float32`, `serving_bfloat16`: what TF Serving runs. The model is exported
  with `export_lib.export_checkpoint`-equivalent code (`--compute_dtype` float32 or
  bfloat16) to a temporary directory, loaded back with `tf.saved_model.load`, and its
  `serving_default` signature is called (`image`, `style_weights` -> `stylized_image`);
- `keras_eager`, `keras_function`, `keras_xla`: the Keras network called eagerly, in a
  tf.function with unknown H and W (no retracing per size) and XLA-compiled (once per
  shape);
- `magenta_tf1`: Magenta's own graph in a tf.compat.v1 Session
  (tools/benchmarks/benchmark_magenta_tf1.py, verified against Magenta's outputs with `--verify`).

The targets are timed interleaved (A, B, C, A, B, C, ...) in one process, so machine
load hits them alike; each cell is the median over its runs after one warm-up call
(the warm-up, which pays tracing and compilation, is printed too). Runs per size:
`--repeats` up to 512 px, scaled by (512 / size)^2 (at least 2) for larger sizes. The
ratio column is Magenta's median over the target's when `magenta_tf1` is timed.

Without --checkpoint the network is alpha 1.0 with 4 styles and randomised gamma/beta
(Magenta's checkpoints have 10 or 32; the style count does not change the cost).

`--generators=arbitrary`: Magenta's arbitrary-style model (random weights, or an
arbitrary `--checkpoint`), its transfer network bound to `--num_styles` style
bottlenecks (the style bank's export, so the serving targets time exactly the transfer),
plus one row for the style predictor (InceptionV3 to Mixed_6e) at `--predictor_size`.

Rows are per (generator, target). `GENERATORS` maps a generator name to a function
building (model, model_config) and `TARGET_BUILDERS` says which targets apply to it;
`--generators` picks generators, so other networks can be added without touching
the timing loop.
"""
import os
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
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from magenta_style.networks import checkpoints  # noqa: E402
from magenta_style import config as config_lib  # noqa: E402
from magenta_style.serving import export_lib  # noqa: E402
from magenta_style.networks import generators  # noqa: E402
from magenta_style.networks import transformer  # noqa: E402

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Optional checkpoint to benchmark.")
_SIZES = flags.DEFINE_list("sizes", ["512", "1024", "2048"], "Square sizes.")
_BATCH = flags.DEFINE_integer("batch_size", 1, "Images per call.")
_TARGETS = flags.DEFINE_list(
    "targets", ["serving_float32", "serving_bfloat16", "magenta_tf1"], "What to time.")
_GENERATORS = flags.DEFINE_list("generators", ["transformer"], "Networks to time: "
                                "transformer (Magenta's), boe_yuv444, boe_yuv420.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed runs per cell at 512 px.")
_NUM_STYLES = flags.DEFINE_integer("num_styles", 4, "Styles of the random-weight network.")
_PREDICTOR_SIZE = flags.DEFINE_integer("predictor_size", 256, "Style image side for the "
                                       "arbitrary model's predictor row.")


def _transformer_generator():
    if _CHECKPOINT.value:
        return checkpoints.load_model(_CHECKPOINT.value)
    model_config = config_lib.ModelConfig(num_styles=_NUM_STYLES.value, alpha=1.0)
    model = transformer.build_transformer(model_config)
    rng = np.random.default_rng(0)
    for v in model.weights:  # Distinct styles, as a trained model has (speed is the same).
        if v.path.endswith("gamma") or v.path.endswith("beta"):
            base = 1.0 if v.path.endswith("gamma") else 0.0
            v.assign(base + 0.3 * rng.standard_normal(v.shape).astype(np.float32))
    return model, model_config


def _boe_generator(name):
    def build():
        # Conditional norm, so the same style weights [B, N] drive every generator.
        model_config = config_lib.ModelConfig(num_styles=_NUM_STYLES.value, alpha=1.0,
                                              generator=name, boe_norm="conditional")
        return generators.build(model_config), model_config
    return build


def _arbitrary_generator():
    from magenta_style.networks import arbitrary  # noqa: E402
    from magenta_style.networks import arbitrary_checkpoints  # noqa: E402
    if _CHECKPOINT.value:
        network, model_config = arbitrary_checkpoints.load_model(_CHECKPOINT.value)
    else:
        network = arbitrary.build_arbitrary(alpha=1.0)
        model_config = config_lib.ModelConfig(num_styles=1, alpha=1.0, generator="arbitrary")
        rng = np.random.default_rng(0)
        for v in network.weights:
            if v.trainable:
                v.assign((0.3 if "StyleNorm" in v.path else 0.05)
                         * rng.standard_normal(v.shape).astype(np.float32))
    bottlenecks = np.random.default_rng(1).standard_normal(
        [_NUM_STYLES.value, network.bottleneck]).astype(np.float32)
    bound = arbitrary.StyleImageModel(network, bottlenecks, strength_mode="nstyle")
    return bound, config_lib.ModelConfig(num_styles=_NUM_STYLES.value, alpha=model_config.alpha)


# name -> () -> (Keras model, config.ModelConfig).
GENERATORS = {"transformer": _transformer_generator,
              "arbitrary": _arbitrary_generator,
              "boe_yuv444": _boe_generator("boe_yuv444"),
              "boe_yuv420": _boe_generator("boe_yuv420")}


def describe(model, model_config, size=64):
    """Parameters and exact convolution MACs per pixel (generators.conv_macs)."""
    spec = tf.TensorSpec([1, size, size, 3], tf.float32)
    style = tf.TensorSpec([1, model_config.num_styles], tf.float32)
    macs = generators.conv_macs(lambda x, w: model(x, w), spec, style) / size ** 2
    params = (model.count_params() if hasattr(model, "count_params")
              else sum(int(np.prod(v.shape)) for v in model.variables))
    text = f"{params:,} parameters, {macs:,.0f} MACs/pixel"
    if generators.is_boe(model):
        net = model.u_net
        u_macs = generators.conv_macs(lambda x: net(x, tf.zeros([1], tf.int32)),
                                      tf.TensorSpec([1, size, size, 1], tf.float32)) / size ** 2
        text += f" (U sub-network: {net.count_params():,} parameters, {u_macs:,.0f} MACs/pixel)"
    return text


def _serving(compute_dtype):
    def build(model, model_config, workdir):
        converted = (model.with_compute_dtype(compute_dtype)
                     if hasattr(model, "with_compute_dtype")
                     else transformer.with_compute_dtype(model, compute_dtype))
        version_dir = export_lib.export_saved_model(
            converted, model_config,
            os.path.join(workdir, f"export_{compute_dtype}"), warmup_size=0)
        signature = tf.saved_model.load(version_dir).signatures["serving_default"]
        return lambda x, w: signature(image=x, style_weights=w)["stylized_image"]
    return build


def _keras(mode):
    def build(model, model_config, workdir):
        del workdir
        if mode == "eager":
            return lambda x, w: model(x, w)
        signature = [tf.TensorSpec([None, None, None, 3], tf.float32),
                     tf.TensorSpec([None, model_config.num_styles], tf.float32)]
        return tf.function(lambda x, w: model(x, w), input_signature=signature,
                           jit_compile=mode == "xla")
    return build


def _magenta_tf1(model, model_config, workdir):
    del workdir
    import benchmark_magenta_tf1
    graph = benchmark_magenta_tf1.InferenceGraph(model_config.num_styles, model_config.alpha)
    return lambda x, w: graph.run(x.numpy(), w.numpy())


# target -> builder(model, model_config, workdir) -> fn(images, weights) -> result.
TARGET_BUILDERS = {
    "serving_float32": _serving("float32"),
    "serving_bfloat16": _serving("bfloat16"),
    "keras_eager": _keras("eager"),
    "keras_function": _keras("function"),
    "keras_xla": _keras("xla"),
    "magenta_tf1": _magenta_tf1,
}
# Targets that only exist for the transformer (Magenta's graph is that network).
TRANSFORMER_ONLY = ("magenta_tf1",)


def _wait(result):
    return result.numpy() if hasattr(result, "numpy") else result


def time_interleaved(fns, args, repeats):
    """{name: (first call s, median s)}; the callables run in turn, `repeats` rounds."""
    first, times = {}, {name: [] for name in fns}
    for name, fn in fns.items():
        started = time.perf_counter()
        _wait(fn(*args))
        first[name] = time.perf_counter() - started
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            _wait(fn(*args))
            times[name].append(time.perf_counter() - started)
    return {name: (first[name], statistics.median(times[name])) for name in fns}


def _load():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv):
    del argv
    from absl import logging
    logging.set_verbosity(logging.WARNING)  # SavedModel export chatter.
    tf.get_logger().setLevel("ERROR")
    for name in _TARGETS.value:
        if name not in TARGET_BUILDERS:
            raise app.UsageError(f"--targets: unknown {name!r}; one of {sorted(TARGET_BUILDERS)}")
    workdir = tempfile.mkdtemp(prefix="benchmark_inference_")
    print(f"TensorFlow {tf.__version__}; {os.cpu_count()} CPU cores; GPU: "
          f"{bool(tf.config.list_physical_devices('GPU'))}; batch {_BATCH.value}")
    print(f"load before: {_load()}")
    print("| generator | target | size | first call s | ms/image | images/s | Magenta / this |")
    print("|---|---|---|---|---|---|---|")
    for generator in _GENERATORS.value:
        model, model_config = GENERATORS[generator]()
        print(f"{generator}: {describe(model, model_config)}", flush=True)
        fns = {t: TARGET_BUILDERS[t](model, model_config, workdir) for t in _TARGETS.value
               if generator == "transformer" or t not in TRANSFORMER_ONLY}
        for size in [int(s) for s in _SIZES.value]:
            repeats = max(2, round(_REPEATS.value * min(1.0, (512 / size) ** 2)))
            rng = np.random.default_rng(0)
            images = tf.constant(rng.random((_BATCH.value, size, size, 3), np.float32))
            weights = tf.one_hot(np.arange(_BATCH.value) % model_config.num_styles,
                                 model_config.num_styles)
            results = time_interleaved(fns, (images, weights), repeats)
            reference = results.get("magenta_tf1", (None, None))[1]
            for name, (first, median) in results.items():
                ratio = f"{reference / median:.2f}x" if reference else ""
                print(f"| {generator} | {name} | {size} | {first:.2f} | "
                      f"{1000 * median / _BATCH.value:.1f} | {_BATCH.value / median:.2f} | "
                      f"{ratio} |", flush=True)
            print(f"load after {size} px ({repeats} runs each): {_load()}", flush=True)
        if generator == "arbitrary":
            size = _PREDICTOR_SIZE.value
            predict = tf.function(model.network.predict_style, input_signature=[
                tf.TensorSpec([None, None, None, 3], tf.float32)])
            style = tf.constant(np.random.default_rng(0).random((1, size, size, 3), np.float32))
            first, median = time_interleaved({"predictor_float32": predict}, (style,),
                                             _REPEATS.value)["predictor_float32"]
            print(f"| arbitrary | predictor_float32 | {size} | {first:.2f} | "
                  f"{1000 * median:.1f} | {1 / median:.2f} | |", flush=True)


if __name__ == "__main__":
    app.run(main)
