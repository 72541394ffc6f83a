"""The training step: gradients of the objective, the optimizer, the traced loop.

`Trainer` holds the generator, its `objective.Objective` (the losses), the
optimizer and the step counters, and runs steps_per_loop steps per tf.function
call under any tf.distribute strategy (`train_steps`). Per replica, a step takes
this replica's share of the gradient of the global-batch mean loss
(tf.nn.compute_average_loss: the optimizer sums the replicas' gradients), clips it
as slim's clip_gradient_norm does (per variable, on the global-batch gradient),
zeroes the rows of frozen styles (add_styles) and applies Magenta's Adam(1e-3, 0.9,
0.999, 1e-8) or plain SGD.

train_lib.run builds the Trainer, restores it and calls `train_steps`.
"""
import keras
import tensorflow as tf

from magenta_style.networks import checkpoints
from magenta_style.training import objective

ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
# TF1's AdamOptimizer default; Keras' default (1e-7) would change the numerics.
ADAM_EPSILON = 1e-8
# The variables finetuning trains: the conditional instance-norm tables.
NORM_SCOPE = "InstanceNorm"


def train_variables(model, train_scope):
    """The variables a run trains: all ("all") or the instance-norm tables ("norm")."""
    if train_scope == "norm":
        return [v for v in model.trainable_variables if NORM_SCOPE in v.path]
    return list(model.trainable_variables)


class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam whose per-variable update is TensorFlow's fused ResourceApplyAdam.

    The kernel TF1's tf.train.AdamOptimizer (Magenta's) runs, with Keras' formula:
    m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); w -= lr sqrt(1 - b2^t) / (1 - b1^t)
    m / (sqrt(v) + eps). Same variables and checkpoint keys as keras.optimizers.Adam;
    one op per variable instead of about thirty, which is a third of the training step's
    graph for the transformer (about 1 s less tracing per run on the CPU, and fewer
    kernel launches per step on a GPU). Sparse gradients and amsgrad take Keras' path.
    """

    _scalars = None  # {(device, dtype): the kernel's scalar inputs}, during one apply.

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("name", "adam")  # Keras' Adam's: its variables' names.
        super().__init__(*args, **kwargs)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # The scalar inputs depend on the step only: made once per device and dtype for
        # all variables (about 15 ops each otherwise, half the optimizer's graph).
        self._scalars = {}
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._scalars = None

    def _scalar_inputs(self, var, learning_rate):
        # Outside _backend_update_step (a Keras whose apply no longer calls it) the inputs
        # are made per variable: more ops, the same numbers.
        key = (var.device, var.dtype)
        if self._scalars is not None and key in self._scalars:
            return self._scalars[key]
        step = tf.cast(self.iterations + 1, var.dtype)
        beta_1, beta_2, epsilon, lr = (tf.cast(value, var.dtype) for value in (
            self.beta_1, self.beta_2, self.epsilon, learning_rate))
        inputs = dict(beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
                      lr=lr, beta1=beta_1, beta2=beta_2, epsilon=epsilon)
        if self._scalars is not None:
            self._scalars[key] = inputs
        return inputs

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        var = variable.value if isinstance(variable, keras.Variable) else variable
        index = self._get_variable_index(variable)
        m, v = (slot.value for slot in (self._momentums[index], self._velocities[index]))
        return tf.raw_ops.ResourceApplyAdam(
            var=var.handle, m=m.handle, v=v.handle, grad=tf.cast(gradient, var.dtype),
            **self._scalar_inputs(var, learning_rate))


def make_optimizer(kind, learning_rate, loss_scale=False):
    """Magenta's Adam ("adam") or plain SGD ("sgd"), in a LossScaleOptimizer if asked."""
    if kind == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate)
    else:
        optimizer = FusedAdam(learning_rate, beta_1=ADAM_BETA_1, beta_2=ADAM_BETA_2,
                              epsilon=ADAM_EPSILON)
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


class Trainer:
    """The model, its objective (losses), the optimizer and the compiled steps.

    Build it inside `strategy.scope()`. Everything it runs per step is TensorFlow
    only (no numpy), so the loop compiles for TPU.

    Args:
      model: a generator (generators.build; num_styles S).
      vgg_net: vgg.VGG16Features or VGG19Features, frozen.
      style_grams: dict {end point: float32 [K, C, C]}, the style dataset's Grams; None
        for the arbitrary generator (the batch's style images give them).
      loss_config: config.LossConfig.
      global_batch_size: int.
      learning_rate: float.
      optimizer: "adam" (Magenta's) or "sgd" (plain SGD, the BOE patent's), or None for
        a Trainer that only computes losses and gradients: no optimizer, no slots.
      label_offset: first model style id the dataset's styles map to (add_styles).
      train_scope: "all" or "norm" (only gamma/beta: finetuning).
      frozen_style_rows: rows 0..frozen_style_rows-1 of every gamma/beta table get no
        update (add_styles keeps the old styles bit-identical).
      clip_gradient_norm: > 0 clips each variable's global-batch gradient to this norm.
      loss_scale: wrap Adam in a LossScaleOptimizer (float16 training).
      jit_compile: XLA-compile the forward/backward computation.
      loss_hook: tests only: callable(per_example_total [B], step int64) -> [B].
    """

    def __init__(self, model, vgg_net, style_grams, loss_config, global_batch_size,
                 learning_rate, label_offset=0, train_scope="all", frozen_style_rows=0,
                 clip_gradient_norm=0.0, loss_scale=False, jit_compile=False, loss_hook=None,
                 optimizer="adam"):
        self.objective = objective.Objective(model, vgg_net, style_grams, loss_config,
                                             label_offset)
        self.model = model
        self.global_batch_size = int(global_batch_size)
        self.frozen_style_rows = int(frozen_style_rows)
        self.clip_gradient_norm = float(clip_gradient_norm)
        self.loss_hook = loss_hook
        self.train_vars = train_variables(model, train_scope)
        self.optimizer = None
        if optimizer is not None:
            self.optimizer = make_optimizer(optimizer, learning_rate, loss_scale)
            # Built now, under the strategy scope: built lazily inside the first step it
            # fails under MirroredStrategy.
            self.optimizer.build(self.train_vars)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.next_index = tf.Variable(0, dtype=tf.int64, trainable=False, name="next_index")
        self.skipped_images = tf.Variable(0, dtype=tf.int64, trainable=False,
                                          name="skipped_images")
        self.with_weight_bias = self.objective.with_weight_bias
        self.term_names = self.objective.term_names
        self._gradients = (tf.function(self.compute_gradients, jit_compile=True)
                           if jit_compile else self.compute_gradients)
        self._loop = None

    def checkpoint(self, legacy=False):
        """tf.train.Checkpoint of what a training run saves (never VGG).

        The transformer's weights are keyed by Magenta's names (`checkpoints.
        training_checkpoint`); `legacy=True` gives the layout of checkpoints written
        before that, for resuming them.
        """
        make = (checkpoints.legacy_training_checkpoint if legacy
                else checkpoints.training_checkpoint)
        return make(self.model, self.optimizer, step=self.step, next_index=self.next_index,
                    skipped_images=self.skipped_images)

    def per_example_losses(self, images, labels, noise=None, style_images=None):
        """The objective's per-example losses (objective.Objective.per_example_losses)."""
        return self.objective.per_example_losses(images, labels, noise, style_images)

    def compute_gradients(self, images, labels, noise=None, step=None, style_images=None):
        """This replica's share of d(global mean loss)/d(train_vars).

        style_images: the arbitrary generator's, float32 [b, Hs, Ws, 3] in [0, 1].

        Returns:
          (gradients list aligned with train_vars, terms {name: float32 [b]},
           per-example total [b]). With a LossScaleOptimizer the gradients are scaled.
        """
        with tf.GradientTape() as tape:
            total, terms = self.per_example_losses(images, labels, noise, style_images)
            if self.loss_hook is not None:
                total = self.loss_hook(total, step)
                terms["total_loss"] = total
            loss = tf.nn.compute_average_loss(total, global_batch_size=self.global_batch_size)
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                loss = self.optimizer.scale_loss(loss)
        # tf.gather of the gamma/beta tables gives IndexedSlices; the tables are small,
        # and clipping and row masking want dense tensors.
        gradients = [tf.convert_to_tensor(g) for g in tape.gradient(loss, self.train_vars)]
        return gradients, terms, total

    def _postprocess(self, gradients):
        """Clipping and row freezing, on the gradients of one replica."""
        if self.clip_gradient_norm > 0:
            context = tf.distribute.get_replica_context()
            replicas = context.num_replicas_in_sync
            # Magenta clips each variable's full-batch gradient, so sum over replicas
            # first; the optimizer sums again, hence the division.
            summed = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
            threshold = self.clip_gradient_norm
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                threshold = threshold * tf.cast(self.optimizer.dynamic_scale, tf.float32)
            gradients = [tf.clip_by_norm(g, threshold) / replicas for g in summed]
        if self.frozen_style_rows:
            out = []
            for g, v in zip(gradients, self.train_vars):
                if NORM_SCOPE in v.path:
                    rows = tf.range(tf.shape(g)[0])[:, None]
                    g = tf.where(rows < self.frozen_style_rows, tf.zeros_like(g), g)
                out.append(g)
            gradients = out
        return gradients

    def replica_step(self, batch):
        """One optimizer step on this replica's batch; returns reported values."""
        gradients, terms, _ = self._gradients(batch["image"], batch["label"],
                                              batch.get("noise"), self.step,
                                              batch.get("style"))
        gradients = self._postprocess(gradients)
        self.optimizer.apply_gradients(zip(gradients, self.train_vars))
        # Summed over replicas by the caller: contributions to global-batch means.
        reported = {name: tf.reduce_sum(terms[name]) / self.global_batch_size
                    for name in self.term_names}
        return reported, tf.reduce_max(batch["index"])[None], tf.reduce_sum(batch["skipped"])

    def make_loop(self, strategy):
        """Returns loop(iterator, num_steps) -> (per-step total_loss [n], last terms,
        last max index, skipped sum), one tf.function call for num_steps steps."""

        # Autograph is for the loop only: the step has no tensor-dependent Python control
        # flow, and converting it (the transformer, VGG and losses) cost seconds per trace.
        replica_step = tf.autograph.experimental.do_not_convert(self.replica_step)

        def loop(iterator, num_steps):
            totals = tf.TensorArray(tf.float32, size=num_steps)
            terms = {name: tf.constant(0.0) for name in self.term_names}
            max_index = tf.constant(-1, tf.int64)
            skipped = tf.constant(0, tf.int64)
            for i in tf.range(num_steps):
                reported, index, gaps = strategy.run(replica_step, args=(next(iterator),))
                terms = {name: strategy.reduce(tf.distribute.ReduceOp.SUM, reported[name],
                                               axis=None) for name in self.term_names}
                # ReduceOp has no MAX: gather the per-replica maxima.
                max_index = tf.reduce_max(strategy.gather(index, axis=0))
                skipped += strategy.reduce(tf.distribute.ReduceOp.SUM, gaps, axis=None)
                totals = totals.write(i, terms["total_loss"])
                self.step.assign_add(1)
            return totals.stack(), terms, max_index, skipped

        return tf.function(loop)

    def train_steps(self, strategy, iterator, num_steps):
        """Runs num_steps steps; returns numpy (totals [n], terms dict, max index, skipped)."""
        if self._loop is None:
            self._loop = self.make_loop(strategy)
        totals, terms, max_index, skipped = self._loop(iterator, tf.constant(num_steps))
        return (totals.numpy(), {k: float(v) for k, v in terms.items()}, int(max_index),
                int(skipped))
