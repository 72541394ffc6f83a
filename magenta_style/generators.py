"""The one place that builds a generator network from a config.ModelConfig.

`build(model_config)` dispatches on `model_config.generator`: "magenta" is
transformer.StyleTransferNetwork, "boe_yuv444" / "boe_yuv420" are boe.BoeGenerator
(Fig. 11A / 11B). Every consumer (checkpoints, training, tools) calls it, so a
config.json decides the network and nobody passes the generator by flag again.
Every generator has the same call, `model(images, style, strength=None)`, images
float32 [B, H, W, 3] in [0, 1] -> same shape, and the attributes `num_styles`,
`alpha` and `magenta_compatible`.
"""
from magenta_style import boe
from magenta_style import transformer


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
    if magenta_compatible:
        raise ValueError(f"magenta_compatible applies to the Magenta generator only; this "
                         f"model is {model_config.generator} (its output size always equals "
                         "the input's)")
    return boe.build_boe(model_config)


def is_boe(model):
    """True for a BOE generator (it has conv biases and no tiling program)."""
    return isinstance(model, boe.BoeGenerator)
