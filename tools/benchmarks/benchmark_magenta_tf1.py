"""Magenta's own TF1 graphs (transformer; transformer + VGG-16 loss + Adam), for timing.

Magenta's code cannot be installed here, so this file rebuilds its graphs op for op
the way `magenta/models/image_stylization/{model,ops,vgg,learning}.py` build them
under `tf.compat.v1` (graph mode, one Session):

- `ops.conv2d`: `tf.pad(mode="REFLECT")` by k // 2, VALID bias-free conv, normalizer,
  activation;
- `ops.conditional_instance_norm`: `tf.nn.moments` over H, W, `tf.gather` of the
  per-style gamma/beta rows, `tf.nn.batch_normalization` (epsilon 1e-5);
  `ops.weighted_instance_norm`: the rows mixed by a `tf.matmul` of the weights;
- `ops.upsampling`: `tf.image.resize_nearest_neighbor` x stride, then conv2d;
- `ops.residual_block`: x + conv2(relu(conv1(x))); the last conv ends in a sigmoid;
- `vgg.vgg_16`: x * 255 - RGB means, 3x3 SAME convs with bias + ReLU, 2x2 average pools;
- `learning.content_loss` / `style_loss`: mean squared feature and Gram differences,
  the content and stylized images through *separate* VGG calls (so no gradient is
  taken through the content branch).

The variable names are Magenta's checkpoint keys, so `--checkpoint` loads a Magenta
checkpoint (the fixture's `nstyle_a05_s3`) with a plain `tf.compat.v1.train.Saver`.
`--verify` checks the graph against the fixtures' expected outputs (Magenta's own
outputs): max abs difference < 1e-4 for the transformer, 1e-4 relative for the
training losses before step 1. That is what makes the timings below Magenta's.

    python tools/benchmarks/benchmark_magenta_tf1.py --verify
    python tools/benchmarks/benchmark_magenta_tf1.py --sizes=512 --repeats=10          # inference
    python tools/benchmarks/benchmark_magenta_tf1.py --train --train_size=256 --batch_size=2

Other tools (benchmark_inference.py, benchmark_train.py) import `InferenceGraph` and
`TrainingGraph` to time Magenta side by side with ours in one process.
"""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1

RGB_MEANS = (123.68, 116.779, 103.939)
VGG_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
CONTENT_WEIGHTS = {"vgg_16/conv3": 1.0}
STYLE_WEIGHTS = {f"vgg_16/conv{i}": 1e-4 for i in range(1, 5)}


def _fixtures_root():
    here = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    return os.environ.get("MAGENTA_STYLE_FIXTURES", os.path.join(here, "..", "shared",
                                                                 "fixtures"))


# ---------------------------------------------------------------------------------
# Magenta's ops.py / model.py, in tf.compat.v1.


def _instance_norm(x, style, num_styles):
    """ops.conditional_instance_norm (int ids [B]) / weighted_instance_norm ([B, S])."""
    channels = x.shape[-1]
    with tf1.variable_scope("InstanceNorm"):
        beta = tf1.get_variable("beta", [num_styles, channels], initializer=tf1.zeros_initializer())
        gamma = tf1.get_variable("gamma", [num_styles, channels],
                                 initializer=tf1.ones_initializer())
        if style.dtype.is_integer:
            beta, gamma = tf.gather(beta, style), tf.gather(gamma, style)
        else:
            beta, gamma = tf.matmul(style, beta), tf.matmul(style, gamma)
        beta, gamma = beta[:, None, None, :], gamma[:, None, None, :]
        mean, variance = tf.nn.moments(x, [1, 2], keepdims=True)
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, 1e-5)


def _conv2d(x, kernel_size, stride, filters, scope, style, num_styles, activation=tf.nn.relu):
    """ops.conv2d under model.transform's arg_scope (normalizer, no bias)."""
    with tf1.variable_scope(scope):
        p = kernel_size // 2
        x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        weights = tf1.get_variable(
            "weights", [kernel_size, kernel_size, x.shape[-1], filters],
            initializer=tf1.random_normal_initializer(0.0, 0.01))
        h = tf.nn.conv2d(x, weights, strides=stride, padding="VALID")
        h = _instance_norm(h, style, num_styles)
        return activation(h) if activation is not None else h


def _upsampling(x, kernel_size, stride, filters, scope, style, num_styles,
                activation=tf.nn.relu):
    with tf1.variable_scope(scope):
        shape = tf.shape(x)
        x = tf1.image.resize_nearest_neighbor(x, [stride * shape[1], stride * shape[2]])
        return _conv2d(x, kernel_size, 1, filters, "conv", style, num_styles, activation)


def _residual_block(x, scope, style, num_styles):
    with tf1.variable_scope(scope):
        channels = x.shape[-1]
        h = _conv2d(x, 3, 1, channels, "conv1", style, num_styles)
        return x + _conv2d(h, 3, 1, channels, "conv2", style, num_styles, activation=None)


def transform(images, style, num_styles, alpha=1.0):
    """model.transform: float32 [B, H, W, 3] in [0, 1] -> [B, H', W', 3] (sigmoid)."""
    a = lambda c: int(alpha * c)  # noqa: E731
    with tf1.variable_scope("transformer"):
        with tf1.variable_scope("contract"):
            h = _conv2d(images, 9, 1, a(32), "conv1", style, num_styles)
            h = _conv2d(h, 3, 2, a(64), "conv2", style, num_styles)
            h = _conv2d(h, 3, 2, a(128), "conv3", style, num_styles)
        with tf1.variable_scope("residual"):
            for i in range(1, 6):
                h = _residual_block(h, f"residual{i}", style, num_styles)
        with tf1.variable_scope("expand"):
            h = _upsampling(h, 3, 2, a(64), "conv1", style, num_styles)
            h = _upsampling(h, 3, 2, a(32), "conv2", style, num_styles)
            return _upsampling(h, 9, 1, 3, "conv3", style, num_styles, activation=tf.nn.sigmoid)


# ---------------------------------------------------------------------------------
# Magenta's vgg.py / learning.py.


def vgg_16(images, reuse, last_block=4):
    """vgg.vgg_16 end points {vgg_16/convK: ReLU output of block K}, avg pooling."""
    end_points = {}
    with tf1.variable_scope("vgg_16", reuse=reuse):
        h = images * 255.0 - tf.constant(RGB_MEANS)
        for block, reps, channels in VGG_BLOCKS[:last_block]:
            with tf1.variable_scope(f"conv{block}"):
                for j in range(1, reps + 1):
                    with tf1.variable_scope(f"conv{block}_{j}"):
                        w = tf1.get_variable("weights", [3, 3, h.shape[-1], channels],
                                             trainable=False)
                        b = tf1.get_variable("biases", [channels], trainable=False)
                        h = tf.nn.relu(tf.nn.conv2d(h, w, 1, "SAME") + b)
            end_points[f"vgg_16/conv{block}"] = h
            h = tf.nn.avg_pool2d(h, 2, 2, "VALID")
    return end_points


def _gram(features):
    shape = tf.shape(features)
    flat = tf.reshape(features, [shape[0], shape[1] * shape[2], features.shape[-1]])
    return tf.matmul(flat, flat, transpose_a=True) / tf.cast(shape[1] * shape[2], tf.float32)


def total_loss(images, stylized, grams, coefficients):
    """learning.total_loss with per-example style coefficients; returns (loss, terms)."""
    content = vgg_16(images, reuse=False)
    styled = vgg_16(stylized, reuse=True)
    terms, total = {}, 0.0
    for name, weight in CONTENT_WEIGHTS.items():
        loss = tf.reduce_mean(tf.square(content[name] - styled[name]), axis=[1, 2, 3])
        terms[f"content_loss/{name}"] = loss
        total += weight * loss
    for name, weight in STYLE_WEIGHTS.items():
        loss = tf.reduce_mean(tf.square(_gram(styled[name]) - grams[name]), axis=[1, 2])
        terms[f"style_loss/{name}"] = loss
        total += weight * coefficients * loss
    terms["total_loss"] = total
    return tf.reduce_mean(total), {k: tf.reduce_mean(v) for k, v in terms.items()}


# ---------------------------------------------------------------------------------
# Runnable graphs.


def _session(graph):
    # The process's inter-op setting (profile_ops.py --serial) applies here too.
    return tf1.Session(graph=graph, config=tf1.ConfigProto(
        allow_soft_placement=True,
        inter_op_parallelism_threads=tf.config.threading.get_inter_op_parallelism_threads()))


class InferenceGraph:
    """Magenta's stylization graph in its own tf.Graph and Session.

    Args:
      num_styles, alpha: the network; weights random (Magenta's initialisers, gamma/beta
        randomised so that styles differ) unless `checkpoint` is a Magenta checkpoint.
      checkpoint: optional Magenta checkpoint prefix.

    Call `run(images float32 [B, H, W, 3], style)`: style int ids [B] or float weights
    [B, num_styles] (weighted_instance_norm). Returns float32 numpy [B, H', W', 3].
    """

    def __init__(self, num_styles, alpha=1.0, checkpoint=None, seed=0):
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(seed)
            self.images = tf1.placeholder(tf.float32, [None, None, None, 3])
            self.ids = tf1.placeholder(tf.int32, [None])
            self.weights = tf1.placeholder(tf.float32, [None, num_styles])
            with tf1.variable_scope("", reuse=tf1.AUTO_REUSE):
                self.by_ids = transform(self.images, self.ids, num_styles, alpha)
                self.by_weights = transform(self.images, self.weights, num_styles, alpha)
            variables = tf1.global_variables()
            init = tf1.global_variables_initializer()
            saver = tf1.train.Saver(variables) if checkpoint else None
            self.session = _session(self.graph)
            if checkpoint:
                saver.restore(self.session, checkpoint)
            else:
                self.session.run(init)
                rng = np.random.default_rng(seed)
                for v in variables:
                    if v.name.endswith("gamma:0") or v.name.endswith("beta:0"):
                        base = 1.0 if "gamma" in v.name else 0.0
                        v.load(base + 0.3 * rng.standard_normal(v.shape).astype(np.float32),
                               self.session)

    def run(self, images, style):
        style = np.asarray(style)
        if style.dtype.kind in "iu":
            return self.session.run(self.by_ids, {self.images: images, self.ids: style})
        return self.session.run(self.by_weights, {self.images: images, self.weights: style})


class TrainingGraph:
    """Magenta's training step: transform -> VGG-16 losses -> Adam(1e-3, eps 1e-8).

    Args:
      num_styles, alpha: the transformer.
      vgg_arrays: {slim name: array} VGG-16 weights (e.g. the fixtures' slim_vgg16.arrays).
      grams: {vgg_16/convK: float32 [num_styles, C, C]} the style dataset's Grams.
      coefficients: per-style style coefficients (default 1).
      checkpoint: optional Magenta checkpoint prefix of the transformer's initial weights.

    `step(images [B, H, W, 3], labels [B])` runs one Adam step; `losses(...)` evaluates
    the loss terms only (batch means, Magenta's names).
    """

    def __init__(self, num_styles, alpha, vgg_arrays, grams, coefficients=None,
                 checkpoint=None, seed=0):
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(seed)
            self.images = tf1.placeholder(tf.float32, [None, None, None, 3])
            self.labels = tf1.placeholder(tf.int32, [None])
            stylized = transform(self.images, self.labels, num_styles, alpha)
            transformer_vars = tf1.global_variables()
            table = {k: tf.constant(np.asarray(v, np.float32)) for k, v in grams.items()}
            coefficients = tf.constant(coefficients or [1.0] * num_styles, tf.float32)
            self.loss, self.terms = total_loss(
                self.images, stylized, {k: tf.gather(v, self.labels) for k, v in table.items()},
                tf.gather(coefficients, self.labels))
            vgg_vars = [v for v in tf1.global_variables() if v.name.startswith("vgg_16/")]
            optimizer = tf1.train.AdamOptimizer(1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8)
            self.global_step = tf1.train.get_or_create_global_step()
            self.train_op = optimizer.minimize(self.loss, global_step=self.global_step,
                                               var_list=transformer_vars)
            init = tf1.global_variables_initializer()
            self.session = _session(self.graph)
            self.session.run(init)
            for v in vgg_vars:
                v.load(vgg_arrays[v.op.name], self.session)
            if checkpoint:
                tf1.train.Saver(transformer_vars).restore(self.session, checkpoint)

    def step(self, images, labels):
        return self.session.run([self.train_op, self.loss],
                                {self.images: images, self.labels: labels})[1]

    def losses(self, images, labels):
        return self.session.run(self.terms, {self.images: images, self.labels: labels})


# ---------------------------------------------------------------------------------
# Verification against the fixtures, and the standalone benchmark.


def _png(path):
    return tf.io.decode_png(tf.io.read_file(path), channels=3).numpy().astype(np.float32) / 255.0


def _load_script(path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def style_dataset_grams(path, names):
    """{name: float32 [K, C, C]} from a Magenta style dataset TFRecord (label order)."""
    rows = {}
    for record in tf.data.TFRecordDataset(path):
        example = tf.train.Example.FromString(record.numpy())
        label = example.features.feature["label"].int64_list.value[0]
        rows[label] = {n: np.asarray(example.features.feature[n].float_list.value, np.float32)
                       for n in names}
    out = {}
    for n in names:
        flat = [rows[k][n] for k in sorted(rows)]
        c = int(round(np.sqrt(flat[0].size)))
        out[n] = np.stack(flat).reshape(len(flat), c, c)
    return out


def verify(fixtures=None):
    """Checks both graphs against Magenta's stored outputs; returns a list of report lines.

    Raises AssertionError on a mismatch.
    """
    root = os.path.join(fixtures or _fixtures_root(), "magenta")
    lines = []
    d = os.path.join(root, "nstyle_a05_s3")
    meta = json.load(open(os.path.join(d, "meta.json")))
    graph = InferenceGraph(meta["num_styles"], meta["alpha"], os.path.join(d, "model.ckpt"))
    content = _png(os.path.join(d, "content.png"))[None]
    for name, got, want in [
            ("styles (conditional_instance_norm)",
             graph.run(np.repeat(content, 3, 0), np.array(meta["which_styles"], np.int32)),
             np.load(os.path.join(d, "expected_styles.npy"))),
            ("mixture (weighted_instance_norm)",
             graph.run(content, np.array([meta["mixture_vector"]], np.float32)),
             np.load(os.path.join(d, "expected_mixture.npy"))),
            # The fixture stylizes the odd input with the last of which_styles.
            ("odd size 93x129", graph.run(np.load(os.path.join(d, "odd_input.npy")),
                                          np.array(meta["which_styles"][-1:], np.int32)),
             np.load(os.path.join(d, "expected_odd.npy")))]:
        assert got.shape == want.shape, (name, got.shape, want.shape)
        diff = float(np.max(np.abs(got - want)))
        lines.append(f"transformer {name}: max abs diff {diff:.2e}")
        assert diff < 1e-4, lines[-1]
    d = os.path.join(root, "trainstep_a025_s2")
    expected = json.load(open(os.path.join(d, "expected_training.json")))
    vgg_arrays = _load_script(os.path.join(os.path.dirname(root), "slim_vgg16.py")).arrays(
        expected["vgg_seed"])
    grams = style_dataset_grams(os.path.join(root, "styledata_s7", "style_dataset.tfrecord"),
                                list(STYLE_WEIGHTS))
    train = TrainingGraph(expected["num_styles"], expected["alpha"], vgg_arrays, grams,
                          expected["style_coefficients"], os.path.join(d, "init.ckpt"))
    images = np.stack([_png(os.path.join(d, f"content_{i}.png")) for i in range(2)])
    labels = np.array(expected["labels"], np.int32)
    for when in ("losses_before_step_1", "losses_before_step_2"):
        got = train.losses(images, labels)
        worst = 0.0
        for key, value in got.items():
            want = expected[when][key]
            worst = max(worst, abs(float(value) - want) / abs(want))
        lines.append(f"training {when}: max relative diff {worst:.2e} over {len(got)} terms")
        assert worst < (1e-4 if when.endswith("1") else 1e-3), lines[-1]
        train.step(images, labels)
    return lines


def training_graph_for_benchmark(num_styles, alpha=1.0, fixtures=None):
    """A TrainingGraph with the fixtures' seed-7 stand-in VGG and zero Grams (speed does
    not depend on the values)."""
    vgg_arrays = _load_script(os.path.join(fixtures or _fixtures_root(),
                                           "slim_vgg16.py")).arrays(7)
    grams = {n: np.zeros([num_styles, c, c], np.float32)
             for n, c in zip(STYLE_WEIGHTS, (64, 128, 256, 512))}
    return TrainingGraph(num_styles, alpha, vgg_arrays, grams)


def _median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv):
    import argparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--verify", action="store_true", help="check against the fixtures")
    p.add_argument("--sizes", default="512", help="inference sizes, batch 1")
    p.add_argument("--num_styles", type=int, default=4)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--train", action="store_true", help="time the training step too")
    p.add_argument("--train_size", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=2)
    a = p.parse_args(argv[1:])
    if a.verify:
        for line in verify():
            print(line)
    rng = np.random.default_rng(0)
    if a.sizes:
        graph = InferenceGraph(a.num_styles, a.alpha)
        weights = np.eye(a.num_styles, dtype=np.float32)[:1]
        for size in [int(s) for s in a.sizes.split(",")]:
            image = rng.random((1, size, size, 3), np.float32)
            ms = 1000 * _median_time(lambda: graph.run(image, weights), a.repeats)
            print(f"magenta tf1 inference {size}px batch 1: {ms:.1f} ms "
                  f"(median of {a.repeats})", flush=True)
    if a.train:
        train = training_graph_for_benchmark(a.num_styles, a.alpha)
        images = rng.random((a.batch_size, a.train_size, a.train_size, 3), np.float32)
        labels = np.arange(a.batch_size, dtype=np.int32) % a.num_styles
        s = _median_time(lambda: train.step(images, labels), a.repeats)
        print(f"magenta tf1 training step batch {a.batch_size} {a.train_size}px: "
              f"{s:.3f} s/step (median of {a.repeats})")


if __name__ == "__main__":
    main(sys.argv)
