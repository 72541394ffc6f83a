"""InceptionV3 as TF-slim's `inception_v3_base` builds it, up to an end point (`Mixed_6e`).

The style-prediction trunk of Magenta's arbitrary-style model (Ghiasi et al. 2017), under
Magenta's `_inception_v3_arg_scope`: every convolution has no bias, then
`slim.batch_norm` (no scale, epsilon 1e-3, decay 0.9997: batch_norm.BatchNorm), then
ReLU6. Inputs are fed in [0, 1] as Magenta feeds them (no rescaling to [-1, 1]).

    Conv2d_1a_3x3 (32, stride 2) - Conv2d_2a_3x3 (32) - Conv2d_2b_3x3 (64, SAME)
    - MaxPool_3a_3x3 (stride 2) - Conv2d_3b_1x1 (80) - Conv2d_4a_3x3 (192)
    - MaxPool_5a_3x3 (stride 2)                      [VALID padding up to here]
    - Mixed_5b, 5c, 5d (256, 288, 288 channels)      [SAME padding from here]
    - Mixed_6a (768, stride 2) - Mixed_6b .. 6e (768)

Weights are keyed exactly as slim names them (`checkpoint_keys`), e.g.
`InceptionV3/Mixed_5b/Branch_1/Conv2d_0b_5x5/BatchNorm/moving_mean`, including slim's
oddities (Mixed_5c's `Branch_1/Conv2d_0b_1x1` and `Conv_1_0c_5x5`; Mixed_6a's 3x3
convolutions named `..._1x1`).
"""
import keras
import tensorflow as tf

from magenta_style.networks import batch_norm

SCOPE = "InceptionV3"
END_POINTS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_3a_3x3",
              "Conv2d_3b_1x1", "Conv2d_4a_3x3", "MaxPool_5a_3x3", "Mixed_5b", "Mixed_5c",
              "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")
# The smallest input side that reaches Mixed_6e (one pixel after Mixed_6a's stride-2
# VALID convolution).
MIN_INPUT_SIZE = 43
# Magenta's arg scope: batch norm decay and the truncated-normal init of the convolutions.
BATCH_NORM_DECAY = 0.9997
INIT_STDDEV = 0.1


@keras.saving.register_keras_serializable(package="magenta_style")
class ConvBatchNorm(keras.layers.Layer):
    """slim.conv2d under the InceptionV3 arg scope: conv (no bias) -> BatchNorm -> ReLU6.

    Call: inputs [B, H, W, Cin] -> [B, H', W', filters] (float32), `training` as
    batch_norm.BatchNorm's. Weights: `weights` [kh, kw, Cin, filters] and
    `BatchNorm/{beta, moving_mean, moving_variance}`.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="SAME", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.strides = int(strides)
        self.padding = padding
        self.norm = batch_norm.BatchNorm(epsilon=batch_norm.SLIM_EPSILON,
                                         decay=BATCH_NORM_DECAY, name="BatchNorm")

    def build(self, inputs_shape):
        shape = self.kernel_size + (int(inputs_shape[-1]), self.filters)
        self.kernel = self.add_weight(
            name="weights", shape=shape,
            initializer=keras.initializers.TruncatedNormal(stddev=INIT_STDDEV))

    def call(self, inputs, training=None):
        h = tf.nn.conv2d(tf.cast(inputs, tf.float32), self.kernel, self.strides, self.padding)
        return self.norm(h, activation=tf.nn.relu6, training=training)

    def checkpoint_keys(self, scope):
        """{slim key: variable} under `scope` (e.g. 'InceptionV3/Conv2d_1a_3x3')."""
        return {f"{scope}/weights": self.kernel,
                f"{scope}/BatchNorm/beta": self.norm.beta,
                f"{scope}/BatchNorm/moving_mean": self.norm.moving_mean,
                f"{scope}/BatchNorm/moving_variance": self.norm.moving_variance}

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding}


def _avg_pool(x):
    # slim.avg_pool2d [3, 3], stride 1, SAME: the average over the pixels inside the image.
    return tf.nn.avg_pool2d(x, 3, 1, "SAME")


def _max_pool(x):
    return tf.nn.max_pool2d(x, 3, 2, "VALID")


# Mixed blocks: {block: [branch: [(conv name, filters, kernel, stride, padding) or "avg"/"max"]]}.
def _mixed_5(first_branch1, pool_filters):
    return [[("Conv2d_0a_1x1", 64, (1, 1), 1, "SAME")],
            first_branch1,
            [("Conv2d_0a_1x1", 64, (1, 1), 1, "SAME"), ("Conv2d_0b_3x3", 96, (3, 3), 1, "SAME"),
             ("Conv2d_0c_3x3", 96, (3, 3), 1, "SAME")],
            ["avg", ("Conv2d_0b_1x1", pool_filters, (1, 1), 1, "SAME")]]


def _mixed_6(mid):
    return [[("Conv2d_0a_1x1", 192, (1, 1), 1, "SAME")],
            [("Conv2d_0a_1x1", mid, (1, 1), 1, "SAME"), ("Conv2d_0b_1x7", mid, (1, 7), 1, "SAME"),
             ("Conv2d_0c_7x1", 192, (7, 1), 1, "SAME")],
            [("Conv2d_0a_1x1", mid, (1, 1), 1, "SAME"), ("Conv2d_0b_7x1", mid, (7, 1), 1, "SAME"),
             ("Conv2d_0c_1x7", mid, (1, 7), 1, "SAME"), ("Conv2d_0d_7x1", mid, (7, 1), 1, "SAME"),
             ("Conv2d_0e_1x7", 192, (1, 7), 1, "SAME")],
            ["avg", ("Conv2d_0b_1x1", 192, (1, 1), 1, "SAME")]]


_BRANCH_5X5 = [("Conv2d_0a_1x1", 48, (1, 1), 1, "SAME"), ("Conv2d_0b_5x5", 64, (5, 5), 1, "SAME")]
BLOCKS = {
    "Mixed_5b": _mixed_5(_BRANCH_5X5, 32),
    # slim's own (historical) names for Mixed_5c's 5x5 branch.
    "Mixed_5c": _mixed_5([("Conv2d_0b_1x1", 48, (1, 1), 1, "SAME"),
                          ("Conv_1_0c_5x5", 64, (5, 5), 1, "SAME")], 64),
    "Mixed_5d": _mixed_5(_BRANCH_5X5, 64),
    "Mixed_6a": [[("Conv2d_1a_1x1", 384, (3, 3), 2, "VALID")],
                 [("Conv2d_0a_1x1", 64, (1, 1), 1, "SAME"), ("Conv2d_0b_3x3", 96, (3, 3), 1, "SAME"),
                  ("Conv2d_1a_1x1", 96, (3, 3), 2, "VALID")],
                 ["max"]],
    "Mixed_6b": _mixed_6(128),
    "Mixed_6c": _mixed_6(160),
    "Mixed_6d": _mixed_6(160),
    "Mixed_6e": _mixed_6(192),
}
# The stem: (conv name, filters, kernel, stride, padding) or a 3x3 stride-2 VALID max pool.
STEM = (("Conv2d_1a_3x3", 32, (3, 3), 2, "VALID"), ("Conv2d_2a_3x3", 32, (3, 3), 1, "VALID"),
        ("Conv2d_2b_3x3", 64, (3, 3), 1, "SAME"), "MaxPool_3a_3x3",
        ("Conv2d_3b_1x1", 80, (1, 1), 1, "VALID"), ("Conv2d_4a_3x3", 192, (3, 3), 1, "VALID"),
        "MaxPool_5a_3x3")


def _attr(scope):
    return scope.replace("/", "__")


@keras.saving.register_keras_serializable(package="magenta_style")
class InceptionV3Base(keras.layers.Layer):
    """slim's `inception_v3_base(..., final_endpoint=final_endpoint)` (depth multiplier 1).

    Call: images float32 [B, H, W, 3] in [0, 1], H and W >= MIN_INPUT_SIZE (for
    Mixed_6e), `training` as batch_norm.BatchNorm's -> the end point's features
    float32 [B, h, w, C] (Mixed_6e: 768 channels, h = 14 for H = 256).
    """

    def __init__(self, final_endpoint="Mixed_6e", **kwargs):
        super().__init__(**kwargs)
        if final_endpoint not in END_POINTS:
            raise ValueError(f"final_endpoint must be one of {END_POINTS}, got "
                             f"{final_endpoint!r}")
        self.final_endpoint = final_endpoint
        self._convs = {}  # slim scope below InceptionV3/ -> ConvBatchNorm, in creation order.
        for entry in STEM:
            if isinstance(entry, tuple):
                self._add_conv(*entry)
            if (entry if isinstance(entry, str) else entry[0]) == final_endpoint:
                return
        for block, branches in BLOCKS.items():
            for b, branch in enumerate(branches):
                for op in branch:
                    if isinstance(op, tuple):
                        name, filters, kernel, stride, padding = op
                        self._add_conv(f"{block}/Branch_{b}/{name}", filters, kernel, stride,
                                       padding)
            if block == final_endpoint:
                return

    def _add_conv(self, scope, filters, kernel, stride, padding):
        conv = ConvBatchNorm(filters, kernel, stride, padding, name=_attr(scope))
        setattr(self, _attr(scope), conv)  # Attributes: Keras tracks (and builds) them.
        self._convs[scope] = conv

    def build(self, images_shape):
        # The convs build on their first call. Without this method Keras builds them by
        # tracing the whole network once more in a scratch graph (~1800 ops, seconds).
        pass

    def call(self, images, training=None):
        x = tf.cast(images, tf.float32)
        for entry in STEM:
            if isinstance(entry, tuple):
                x = self._convs[entry[0]](x, training=training)
                name = entry[0]
            else:
                x = _max_pool(x)
                name = entry
            if name == self.final_endpoint:
                return x
        for block, branches in BLOCKS.items():
            outputs = []
            for b, branch in enumerate(branches):
                h = x
                for op in branch:
                    if op == "avg":
                        h = _avg_pool(h)
                    elif op == "max":
                        h = _max_pool(h)
                    else:
                        h = self._convs[f"{block}/Branch_{b}/{op[0]}"](h, training=training)
                outputs.append(h)
            x = tf.concat(outputs, axis=3)
            if block == self.final_endpoint:
                return x
        raise AssertionError("unreachable")

    def checkpoint_keys(self):
        """{slim key: variable}, e.g. 'InceptionV3/Conv2d_1a_3x3/weights' (built layer only)."""
        keys = {}
        for scope, conv in self._convs.items():
            keys.update(conv.checkpoint_keys(f"{SCOPE}/{scope}"))
        return keys

    def get_config(self):
        return {**super().get_config(), "final_endpoint": self.final_endpoint}
