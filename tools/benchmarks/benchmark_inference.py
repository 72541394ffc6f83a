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
  (tools/benchmarks/benchmark_magenta_tf1.py, verified against Magenta's outputs with `--verify`);
- `tflite_float32`, `tflite_float16`, `tflite_int8`: the float32 export converted by
  magenta_style.export_tflite (`--quantize`), at a fixed input size (converted on the first call
  of each size, which the first-call column shows), run with LiteRT's interpreter
  (`ai_edge_litert`, XNNPACK, `--tflite_threads`).

The targets are timed interleaved (A, B, C, A, B, C, ...) in one process, so machine
load hits them alike; each cell is the median over its runs after one warm-up call
(the warm-up, which pays tracing and compilation, is printed too). Runs per size:
`--repeats` up to 512 px, scaled by (512 / size)^2 (at least 2) for larger sizes. The
ratio column is Magenta's median over the target's when `magenta_tf1` is timed.

Without --checkpoint the network is alpha 1.0 with 4 styles and randomised gamma/beta
(Magenta's checkpoints have 10 or 32; the style count does not change the cost).

`--generators=arbitrary`: Magenta's arbitrary-style model (random weights, or an
arbitrary `--checkpoint`). Its rows time the two halves that apps call, as TensorFlow
Lite's style-transfer example does: the transfer network at `--sizes` (a style bottleneck
per image, the weights mixing `--num_styles` random bottlenecks), and the style predictor
(InceptionV3 to Mixed_6e, style image -> bottleneck) at `--predictor_size`. The serving
targets export the model as `python -m magenta_style.export` does and call its `transfer`
and `predict_style` signatures; the TFLite targets convert those two signatures;
the Keras targets call the network's `transfer` (through arbitrary.StyleImageModel) and
`predict_style`. bfloat16 applies to the transfer network only (the predictor stays
float32 in every bfloat16 path, so its serving_bfloat16 row runs float32 too).

    python tools/benchmarks/benchmark_inference.py --generators=transformer,arbitrary \
        --sizes=512,1024 --targets=serving_float32,serving_bfloat16
    python tools/benchmarks/benchmark_inference.py --generators=arbitrary --sizes=384,512 \
        --targets=tflite_float32,tflite_float16,tflite_int8

Rows are per (generator, target). `GENERATORS` maps a generator name to a function
building (model, model_config) and `TARGET_BUILDERS` maps a target to a function building
its `Target` (the transfer call, and the predictor call for the arbitrary model);
`--generators` picks generators, so other networks can be added without touching
the timing loop.
"""
import collections
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
                                "transformer (Magenta's), arbitrary (Magenta's "
                                "arbitrary-style model), boe_yuv444, boe_yuv420.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed runs per cell at 512 px.")
_NUM_STYLES = flags.DEFINE_integer("num_styles", 4, "Styles of the random-weight network.")
_PREDICTOR_SIZE = flags.DEFINE_integer("predictor_size", 256, "Style image side for the "
                                       "arbitrary model's predictor rows.")
_TFLITE_THREADS = flags.DEFINE_integer("tflite_threads", os.cpu_count(), "Threads of the "
                                       "TFLite interpreter.")


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


# What a target times: `transfer(images [B,S,S,3], weights [B,N])` and, for the arbitrary
# model, `predict(style_images [1,P,P,3])` (None otherwise).
Target = collections.namedtuple("Target", ["transfer", "predict"])


def _is_arbitrary(model):
    from magenta_style.networks import arbitrary  # noqa: E402
    return isinstance(model, arbitrary.StyleImageModel)


def _export(model, model_config, workdir, compute_dtype):
    """The version directory of `model` exported in `compute_dtype` (once per workdir)."""
    base = os.path.join(workdir, f"export_{compute_dtype}")
    if os.path.isdir(os.path.join(base, "1")):
        return os.path.join(base, "1")
    if _is_arbitrary(model):  # As `python -m magenta_style.export` exports a checkpoint.
        from magenta_style.networks import arbitrary_checkpoints  # noqa: E402
        checkpoint = os.path.join(workdir, "checkpoint", "model")
        if not os.path.exists(checkpoint + ".index"):
            arbitrary_checkpoints.save_model(model.network, config_lib.ModelConfig(
                num_styles=1, alpha=model_config.alpha, generator="arbitrary"), checkpoint)
        version_dir, _ = export_lib.export_checkpoint(checkpoint, base, warmup_size=0,
                                                      compute_dtype=compute_dtype)
        return version_dir
    converted = (model.with_compute_dtype(compute_dtype)
                 if hasattr(model, "with_compute_dtype")
                 else transformer.with_compute_dtype(model, compute_dtype))
    return export_lib.export_saved_model(converted, model_config, base, warmup_size=0)


def _mixed_bottlenecks(model, weights):
    """The arbitrary model's per-image bottleneck [B, 100] for weights [B, N]."""
    return tf.matmul(weights, model.bottlenecks)


def _serving(compute_dtype):
    def build(model, model_config, workdir):
        signatures = tf.saved_model.load(
            _export(model, model_config, workdir, compute_dtype)).signatures
        if _is_arbitrary(model):
            transfer, predict = signatures["transfer"], signatures["predict_style"]
            return Target(
                lambda x, w: transfer(image=x, style_bottleneck=_mixed_bottlenecks(model, w))[
                    "stylized_image"],
                lambda s: predict(style_image=s)["style_bottleneck"])
        signature = signatures["serving_default"]
        return Target(lambda x, w: signature(image=x, style_weights=w)["stylized_image"], None)
    return build


def _keras(mode):
    def build(model, model_config, workdir):
        del workdir
        predict = None
        if _is_arbitrary(model):
            predict = model.network.predict_style
        if mode == "eager":
            return Target(lambda x, w: model(x, w), predict)
        signature = [tf.TensorSpec([None, None, None, 3], tf.float32),
                     tf.TensorSpec([None, model_config.num_styles], tf.float32)]
        transfer = tf.function(lambda x, w: model(x, w), input_signature=signature,
                               jit_compile=mode == "xla")
        if predict is not None:
            predict = tf.function(predict, input_signature=signature[:1],
                                  jit_compile=mode == "xla")
        return Target(transfer, predict)
    return build


def _tflite(quantize):
    def build(model, model_config, workdir):
        from magenta_style.serving import tflite  # noqa: E402  (export_tflite's converter)
        from ai_edge_litert.interpreter import Interpreter  # noqa: E402
        version_dir = _export(model, model_config, workdir, "float32")
        loaded = tf.saved_model.load(version_dir)
        runners = {}

        def runner(signature, size):
            """The signature converted at a fixed size, the first time it is asked for."""
            key = (signature, size)
            if key not in runners:
                interpreter = Interpreter(
                    model_content=tflite.convert(version_dir, signature, quantize, size,
                                                 loaded=loaded),
                    num_threads=_TFLITE_THREADS.value)
                runners[key] = interpreter.get_signature_runner()
            return runners[key]

        def size(x):
            return tuple(int(d) for d in x.shape[1:3])

        if _is_arbitrary(model):
            def transfer(x, w):
                return runner("transfer", size(x))(
                    image=x.numpy(), style_bottleneck=_mixed_bottlenecks(model, w).numpy())[
                        "stylized_image"]

            def predict(s):
                return runner("predict_style", size(s))(style_image=s.numpy())[
                    "style_bottleneck"]
            return Target(transfer, predict)
        return Target(lambda x, w: runner("serving_default", size(x))(
            image=x.numpy(), style_weights=w.numpy())["stylized_image"], None)
    return build


def _magenta_tf1(model, model_config, workdir):
    del workdir
    import benchmark_magenta_tf1
    graph = benchmark_magenta_tf1.InferenceGraph(model_config.num_styles, model_config.alpha)
    return Target(lambda x, w: graph.run(x.numpy(), w.numpy()), None)


# target -> builder(model, model_config, workdir) -> Target.
TARGET_BUILDERS = {
    "serving_float32": _serving("float32"),
    "serving_bfloat16": _serving("bfloat16"),
    "keras_eager": _keras("eager"),
    "keras_function": _keras("function"),
    "keras_xla": _keras("xla"),
    "tflite_float32": _tflite("float32"),
    "tflite_float16": _tflite("float16"),
    "tflite_int8": _tflite("int8"),
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
        generator_dir = os.path.join(workdir, generator)  # Its exports and conversions.
        os.makedirs(generator_dir, exist_ok=True)
        targets = {t: TARGET_BUILDERS[t](model, model_config, generator_dir)
                   for t in _TARGETS.value
                   if generator == "transformer" or t not in TRANSFORMER_ONLY}
        fns = {name: target.transfer for name, target in targets.items()}
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
        predictors = {f"predictor ({name})": target.predict
                      for name, target in targets.items() if target.predict is not None}
        if predictors:  # The arbitrary model's style predictor, one style image per call.
            size = _PREDICTOR_SIZE.value
            style = tf.constant(np.random.default_rng(0).random((1, size, size, 3), np.float32))
            results = time_interleaved(predictors, (style,), _REPEATS.value)
            for name, (first, median) in results.items():
                print(f"| {generator} | {name} | {size} | {first:.2f} | {1000 * median:.1f} | "
                      f"{1 / median:.2f} | |", flush=True)
            print(f"load after the predictor ({_REPEATS.value} runs each): {_load()}",
                  flush=True)


if __name__ == "__main__":
    app.run(main)
