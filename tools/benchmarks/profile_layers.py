"""Per-layer times: each transformer layer and each VGG-16 block timed on its own.

    python tools/benchmarks/profile_layers.py --what=infer --size=512 --batch_size=1
    python tools/benchmarks/profile_layers.py --what=train --size=256 --batch_size=2 --repeats=5
    python tools/benchmarks/profile_layers.py --what=infer --parts   # + pad / conv / norm per layer

`--what=infer`: every layer of the float32 StyleTransferNetwork called in its own
tf.function on a random input of the shape it sees in the network (forward only).
`--what=train`: the same layers forward + backward (gradients w.r.t. the input and the
layer's weights, as the training step needs), plus VGG-16's blocks at the same
resolution: forward only for the content images, forward + backward w.r.t. the input
for the stylized ones (Magenta's and our step do both), plus the Gram matrices of the
style end points.

Every item is timed interleaved with the others (one call each per round, `--repeats`
rounds after one warm-up call), so machine load hits them alike; the table gives the
median and its share of the sum. The sum is close to, but not the same as, one
whole-network call (no inter-layer fusion, per-call overhead counted per item).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import tensorflow as tf  # noqa: E402

from magenta_style import config as config_lib  # noqa: E402
from magenta_style.networks import kernels  # noqa: E402
from magenta_style.networks import losses  # noqa: E402
from magenta_style.networks import transformer  # noqa: E402
from magenta_style.networks import vgg  # noqa: E402


def _layer_inputs(model, size, batch):
    """[(name, layer, input shape)] in network order."""
    w1, w2, w3 = transformer.layer_widths(model.alpha)
    s = size
    items = [("contract_conv1 9x9 3->%d" % w1, model.contract_conv1, [batch, s, s, 3]),
             ("contract_conv2 3x3/2 %d->%d" % (w1, w2), model.contract_conv2, [batch, s, s, w1]),
             ("contract_conv3 3x3/2 %d->%d" % (w2, w3), model.contract_conv3,
              [batch, s // 2, s // 2, w2])]
    for i in range(1, transformer.RESIDUAL_BLOCKS + 1):
        items.append((f"residual{i}", getattr(model, f"residual{i}"),
                      [batch, s // 4, s // 4, w3]))
    items += [("expand_conv1 up2 3x3 %d->%d" % (w3, w2), model.expand_conv1,
               [batch, s // 4, s // 4, w3]),
              ("expand_conv2 up2 3x3 %d->%d" % (w2, w1), model.expand_conv2,
               [batch, s // 2, s // 2, w2]),
              ("expand_conv3 9x9 %d->3" % w1, model.expand_conv3, [batch, s, s, w1])]
    return items


def _parts(name, layer, shape, labels):
    """pad / conv / norm+activation of one plain ConvInstanceNorm, forward only."""
    conv = getattr(layer, "conv", layer)
    if not hasattr(conv, "kernel") or name.startswith("expand_conv1") or \
            name.startswith("expand_conv2"):
        return {}
    p = conv.kernel_size // 2
    x = tf.random.uniform(shape)
    padded = kernels.mirror_pad(x, (p, p), (p, p))
    h = tf.nn.conv2d(padded, conv.kernel, strides=conv.strides, padding="VALID")
    pad = tf.function(lambda x: kernels.mirror_pad(x, (p, p), (p, p)))
    if conv.strides == 1 and conv.kernel_size >= 5 and conv.filters < 8:
        # The blocked form ConvInstanceNorm uses for few output channels.
        cv = tf.function(lambda x: kernels.space_to_depth_conv(x, conv.kernel))
    else:
        cv = tf.function(lambda x: tf.nn.conv2d(x, conv.kernel, strides=conv.strides,
                                                padding="VALID"))
    norm = tf.function(lambda x: conv._activation_fn(conv.norm(x, labels)))
    return {f"  {name}: pad": lambda: pad(x), f"  {name}: conv": lambda: cv(padded),
            f"  {name}: norm+act": lambda: norm(h)}


def infer_items(model, size, batch, parts):
    labels = tf.zeros([batch], tf.int32)
    items = {}
    for name, layer, shape in _layer_inputs(model, size, batch):
        x = tf.random.uniform(shape)
        fn = tf.function(lambda x, layer=layer: layer(x, labels))
        items[name] = (lambda fn=fn, x=x: fn(x))
        if parts:
            items.update(_parts(name, layer, shape, labels))
    return items


def train_items(model, vgg_net, size, batch, style_layers):
    labels = tf.zeros([batch], tf.int32)
    items = {}
    for name, layer, shape in _layer_inputs(model, size, batch):
        x = tf.random.uniform(shape)

        @tf.function
        def fwd_bwd(x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, labels)
                loss = tf.reduce_sum(y * y)
            return tape.gradient(loss, [x] + layer.trainable_variables)
        items[name + " fwd+bwd"] = (lambda fn=fwd_bwd, x=x: fn(x))
    # VGG blocks at their resolution.
    blocks, convs = vgg_net.blocks, iter(vgg_net.convs)
    cin, s = 3, size
    for (block, reps, cout), pool in zip(blocks, vgg_net.pools):
        block_convs = [next(convs) for _ in range(reps)]
        x = tf.random.uniform([batch, s, s, cin])

        def run(x, block_convs=block_convs, pool=pool):
            for c in block_convs:
                x = c(x)
            return x, pool(x)

        fwd = tf.function(lambda x, run=run: run(x))

        @tf.function
        def bwd(x, run=run):
            with tf.GradientTape() as tape:
                tape.watch(x)
                features, pooled = run(x)
                loss = tf.reduce_sum(features * features) + tf.reduce_sum(pooled)
            return tape.gradient(loss, x)
        items[f"vgg block{block} ({s} px, {cin}->{cout}) fwd"] = (lambda f=fwd, x=x: f(x))
        items[f"vgg block{block} fwd+bwd"] = (lambda f=bwd, x=x: f(x))
        if f"vgg_16/conv{block}" in style_layers:
            f = tf.random.uniform([batch, s, s, cout])

            @tf.function
            def gram(f):
                with tf.GradientTape() as tape:
                    tape.watch(f)
                    loss = tf.reduce_sum(losses.gram_matrix(f))
                return tape.gradient(loss, f)
            items[f"gram conv{block} fwd+bwd"] = (lambda g=gram, f=f: g(f))
        cin, s = cout, s // 2
    return items


def interleaved(items, repeats):
    for fn in items.values():
        fn()
    times = {name: [] for name in items}
    for _ in range(repeats):
        for name, fn in items.items():
            started = time.perf_counter()
            out = fn()
            tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--what", default="infer", choices=["infer", "train"])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--num_styles", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--parts", action="store_true", help="also pad / conv / norm per layer")
    a = p.parse_args(argv[1:])
    load = lambda: subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"load before: {load()}")
    model = transformer.build_transformer(config_lib.ModelConfig(num_styles=a.num_styles))
    if a.what == "infer":
        items = infer_items(model, a.size, a.batch_size, a.parts)
    else:
        loss_config = config_lib.LossConfig(vgg_checkpoint="standin:0")
        items = train_items(model, vgg.get_vgg16("standin:0"), a.size, a.batch_size,
                            dict(loss_config.style_weights))
    result = interleaved(items, a.repeats)
    total = sum(v for k, v in result.items() if not k.startswith("  "))
    print(f"{a.what}: batch {a.batch_size}, {a.size} px, {a.repeats} interleaved rounds, median")
    print("| item | ms | % of the sum |")
    print("|---|---|---|")
    for name, seconds in result.items():
        print(f"| {name} | {1000 * seconds:.1f} | {100 * seconds / total:.1f} |")
    print(f"sum of the top-level items: {1000 * total:.1f} ms; load after: {load()}")


if __name__ == "__main__":
    main(sys.argv)
