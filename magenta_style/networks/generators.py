"""The one place that builds a generator network from a config.ModelConfig.

`build(model_config)` dispatches on `model_config.generator`: "magenta" is
transformer.StyleTransferNetwork, "boe_yuv444" / "boe_yuv420" are boe.BoeGenerator
(Fig. 11A / 11B), "arbitrary" is arbitrary.ArbitraryStyleNetwork (called
`model(content, style_images)` instead; see arbitrary.py). Every consumer (checkpoints, training, tools) calls it, so a
config.json decides the network and nobody passes the generator by flag again.
Every generator has the same call, `model(images, style, strength=None)`, images
float32 [B, H, W, 3] in [0, 1] -> same shape, and the attributes `num_styles`,
`alpha` and `magenta_compatible`.
"""
import tensorflow as tf

from magenta_style import config
from magenta_style.networks import arbitrary
from magenta_style.networks import boe
from magenta_style.networks import transformer


def build(model_config, magenta_compatible=False):
    """Returns the generator for `model_config`, with all weights created.

    Args:
      model_config: config.ModelConfig.
      magenta_compatible: Magenta's output size for sizes that are not multiples of 4
        (Magenta generator only).

    Raises:
      ValueError: magenta_compatible with a BOE generator (one line).
    """
    if model_config.generator == "magenta":
        return transformer.build_transformer(model_config, magenta_compatible)
    if model_config.generator == config.ARBITRARY:
        return arbitrary.build_arbitrary(model_config.alpha,
                                         magenta_compatible=magenta_compatible)
    if magenta_compatible:
        raise ValueError(f"magenta_compatible applies to the Magenta generator only; this "
                         f"model is {model_config.generator} (its output size always equals "
                         "the input's)")
    return boe.build_boe(model_config)


def is_boe(model):
    """True for a BOE generator (it has conv biases; the commands do not tile it, see
    tiling.TILED_GENERATORS)."""
    return isinstance(model, boe.BoeGenerator)


def conv_macs(fn, *input_specs):
    """Multiply-accumulates of every convolution `fn(*inputs)` runs: int, exact.

    Traced once with `input_specs` (tf.TensorSpec with fully known shapes) and counted
    from the graph: a Conv2D costs out_elements * kh * kw * Cin, a transposed conv
    (Conv2DBackpropInput) in_elements * kh * kw * Cout. Element-wise ops, norms and
    resampling are not MACs and are not counted.
    """
    graph = tf.function(fn, autograph=False).get_concrete_function(*input_specs).graph
    total = 0
    for op in graph.get_operations():
        if op.type == "Conv2D":
            kh, kw, cin, _ = op.inputs[1].shape
            total += op.outputs[0].shape.num_elements() * kh * kw * cin
        elif op.type == "Conv2DBackpropInput":
            kh, kw, cout, _ = op.inputs[1].shape
            total += op.inputs[2].shape.num_elements() * kh * kw * cout
        elif op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            raise ValueError("conv_macs cannot look into nested functions")
    return int(total)
