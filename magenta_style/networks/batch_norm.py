"""TF-slim's `batch_norm` as Magenta's arbitrary-style model uses it: centre, no scale.

`slim.batch_norm` with its defaults (center=True, scale=False) holds `beta`,
`moving_mean` and `moving_variance` and no gamma. At inference it applies the moving
statistics; in training it normalises with the batch's own statistics (over B, H, W)
and updates the moving averages. Used by InceptionV3 (inception_v3.py: epsilon 1e-3,
decay 0.9997) and by the arbitrary transformer's three contract convolutions
(arbitrary.py: slim's defaults, epsilon 1e-3, decay 0.999).
"""
import keras
import tensorflow as tf

# slim.batch_norm's default epsilon (and the InceptionV3 arg scope's).
SLIM_EPSILON = 1e-3


def _replica_sum(context, values):
    """The sum of each of `values` over the replicas of `context`, with the sum's gradient
    (the upstream gradients summed over the replicas): what `context.all_reduce` gives.

    Built for tracing time. Under MirroredStrategy on CPUs `all_reduce` is a merge
    call, and the custom gradient TensorFlow wraps it in walks the graph back from its
    result to its inputs to find variables; the result also depends on the other
    replicas' inputs, so that walk crossed the other replicas' whole graphs, for each of
    the 73 batch norms of the arbitrary model (a 2-replica run at alpha 0.25 took 362 s
    instead of 70 s, nearly all of it tracing). Here every all-reduce sums tensors behind
    tf.stop_gradient, where that walk stops, and the gradient is given explicitly.
    """
    sum_op = tf.distribute.ReduceOp.SUM

    @tf.custom_gradient
    def summed(*local):
        result = context.all_reduce(sum_op, [tf.stop_gradient(v) for v in local])

        def gradient(*upstream):
            upstream = [tf.zeros_like(r) if u is None else u for u, r in zip(upstream, result)]
            return context.all_reduce(sum_op, [tf.stop_gradient(u) for u in upstream])

        return result, gradient

    return summed(*values)


@keras.saving.register_keras_serializable(package="magenta_style")
class BatchNorm(keras.layers.Layer):
    """y = activation((x - mean) / sqrt(variance + epsilon) + beta), per channel.

    Call arguments:
      inputs: [B, H, W, C] (any float dtype; computed in float32).
      style, strength: ignored; accepted so that the layer can stand in for
        layers.ConditionalInstanceNorm inside layers.ConvInstanceNorm.
      moments: ignored (the statistics are the moving ones, not the image's: tiling
        needs nothing from this layer, see `norm_layers`).
      activation: optional elementwise callable applied last.
      training: True normalises with the batch's statistics over (B, H, W) and
        updates the moving averages by `decay`; False/None uses the moving statistics.
        With the attribute `sync` set (train's --sync_batch_norm), the statistics are
        those of the global batch, all-reduced over the replicas of a tf.distribute
        strategy (E[x^2] - E[x]^2 from summed moments).

    Returns float32 [B, H, W, C].

    Weights (Magenta's names): `beta`, `moving_mean`, `moving_variance`, each [C].
    """

    def __init__(self, epsilon=SLIM_EPSILON, decay=0.999, **kwargs):
        kwargs["dtype"] = "float32"  # Statistics in float32 under any policy.
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.decay = float(decay)
        self.sync = False  # Set by the trainer; not a saved option of the layer.

    def build(self, inputs_shape, *args, **kwargs):
        channels = int(inputs_shape[-1])
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        # "mean": under a tf.distribute strategy each replica updates the average in
        # replica context, and the replicas' new values are averaged (a MirroredVariable
        # without an aggregation refuses updates there).
        self.moving_mean = self.add_weight(name="moving_mean", shape=(channels,),
                                           initializer="zeros", trainable=False,
                                           aggregation="mean")
        self.moving_variance = self.add_weight(name="moving_variance", shape=(channels,),
                                               initializer="ones", trainable=False,
                                               aggregation="mean")

    def norm_layers(self):
        """No instance norms: the statistics do not depend on the image (tiling skips it)."""
        return ()

    def call(self, inputs, style=None, strength=None, moments=None, activation=None,
             training=None):
        x = tf.cast(inputs, tf.float32)
        if training:
            mean, variance = self._batch_moments(x)
            for var, value in ((self.moving_mean, mean), (self.moving_variance, variance)):
                var.assign(self.decay * var + (1.0 - self.decay) * tf.stop_gradient(value))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        y = tf.nn.batch_normalization(x, mean, variance, self.beta, None, self.epsilon)
        return y if activation is None else activation(y)

    def _batch_moments(self, x):
        context = tf.distribute.get_replica_context()
        if not (self.sync and context is not None and context.num_replicas_in_sync > 1):
            return tf.nn.moments(x, axes=[0, 1, 2])
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), tf.float32)
        total, squares = tf.reduce_sum(x, [0, 1, 2]), tf.reduce_sum(tf.square(x), [0, 1, 2])
        count, total, squares = _replica_sum(context, [count, total, squares])
        mean = total / count
        return mean, tf.maximum(squares / count - tf.square(mean), 0.0)

    def compute_output_shape(self, inputs_shape, *args, **kwargs):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "decay": self.decay}
