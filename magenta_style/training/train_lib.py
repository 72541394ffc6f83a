"""Training: one custom loop for every tf.distribute strategy (Magenta's trainer, in TF2).

`run(experiment_config)` reads top to bottom, in four phases:

  set-up      `_strategy` (--num_cpu_devices, --strategy), `_read_inputs` (style
              dataset, content images, --finetune_from base: fail fast, before any
              model is built), `_model_config`, `_prepare_train_dir` (lock, clean-up),
              `_build_trainer` (model, VGG, optimizer inside strategy.scope(), under
              the mixed precision policy; the optimizer is built before the first
              step: a lazily built Keras 3 optimizer fails under MirroredStrategy)
  restore     `_restore`, in order: (1) resume from train_dir, (2) --finetune_from
              [--add_styles], (3) from scratch (seeded); then config.json and the
              input pipeline (`_input_iterator`, from the restored data position)
  the steps   `Trainer.train_steps`: steps_per_loop steps per tf.function call
  after each  `_Loop._after_call`, in Python: the NaN check, the data position,
  call        summaries (summaries.py), checkpoints and the progress line, each on
              its own trigger; the loop stops at train_steps.

Numerics are Magenta's: content + style loss from VGG-16 features, one random style
per example with that style's Gram matrices, style weights scaled per example by
`style_coefficients`, Adam(1e-3, 0.9, 0.999, 1e-8), optional per-variable gradient
clipping (slim's clip_gradient_norm). Per-example losses are averaged over the GLOBAL
batch (tf.nn.compute_average_loss), because replicas' gradients are summed.

The checkpoint holds the transformer, the optimizer, the step and the data position
(never VGG, which always comes from its own weights). With a fixed seed a resumed run
ends with the same weights as an uninterrupted one: see data/pipeline.py.
"""
import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import threading
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from magenta_style import config as config_lib
from magenta_style.data import pipeline
from magenta_style.data import style_dataset
from magenta_style.media import fileio
from magenta_style.networks import checkpoints
from magenta_style.networks import generators
from magenta_style.networks import losses
from magenta_style.networks import transformer
from magenta_style.networks import vgg
from magenta_style.training import dirlock
from magenta_style.training import summaries

ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
# TF1's AdamOptimizer default; Keras' default (1e-7) would change the numerics.
ADAM_EPSILON = 1e-8
# The variables finetuning trains: the conditional instance-norm tables.
NORM_SCOPE = "InstanceNorm"


class TrainError(RuntimeError):
    """The run cannot start or continue; the message is one line for the user."""


class NonFiniteLossError(TrainError):
    """The loss became NaN or infinite; `step` is the first bad step (1-based)."""

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


class Interrupted(KeyboardInterrupt):
    """Training stopped on SIGINT (Ctrl-C) or SIGTERM (how schedulers and containers stop
    a job), after saving a checkpoint of the step it reached.

    A KeyboardInterrupt, so callers that catch Ctrl-C keep working.

    Attributes:
      signum: the signal (signal.SIGINT or signal.SIGTERM).
      step: the step reached (None when a second signal stopped it without saving).
      checkpoint: the checkpoint that holds that step ("" when none was written).
    """

    def __init__(self, signum, step=None, checkpoint=""):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        if step is None:
            message = (f"interrupted by a second {name}; stopped without saving (the "
                       "checkpoints already in the train_dir are kept)")
        elif checkpoint:
            message = (f"interrupted by {name} at step {step}; saved {checkpoint}; the same "
                       "command resumes from it")
        else:
            message = f"interrupted by {name} at step {step}; no checkpoint was written"
        super().__init__(message)


@dataclasses.dataclass
class RunResult:
    """What run() did.

    Attributes:
      train_dir: where checkpoints, config.json and events are.
      step: the step reached.
      checkpoint: prefix of the last checkpoint written or restored.
      losses: dict of the last logged batch-mean losses (Magenta names, floats).
      model_config: config.ModelConfig of the trained model.
      skipped_images: undecodable content images skipped so far.
      resumed_from_step: the step restored from train_dir (0 when none).
      wall_seconds: time spent in run().
      total_losses: {step: batch-mean total_loss} of every step run here.
    """

    train_dir: str
    step: int
    checkpoint: str
    losses: dict
    model_config: config_lib.ModelConfig
    skipped_images: int = 0
    resumed_from_step: int = 0
    wall_seconds: float = 0.0
    total_losses: dict = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------------
# Devices and strategy.
# ----------------------------------------------------------------------------------

def split_cpu(num_devices):
    """Splits the first physical CPU into `num_devices` logical devices.

    Must run before TensorFlow initialises its devices (before any op).

    Raises:
      TrainError: devices were already initialised with another layout.
    """
    if num_devices <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is not None and len(current) == num_devices:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)])
    except RuntimeError as e:
        raise TrainError(f"--num_cpu_devices={num_devices}: TensorFlow devices are already "
                         f"initialised ({e})") from None


def make_strategy(train_config):
    """Returns the tf.distribute.Strategy named by train_config.strategy.

    "auto": multi_worker when TF_CONFIG names several workers, else mirrored over all
    GPUs (or all logical CPUs when the CPU was split), else one_device.

    Raises:
      TrainError: TPU not reachable, or no devices for the strategy.
    """
    kind = train_config.strategy
    if kind == "auto":
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
        if sum(len(v) for v in cluster.values()) > 1:
            kind = "multi_worker"
    if kind == "multi_worker":
        # Before anything lists logical devices: that initialises the TF context, after
        # which collective ops can no longer be configured.
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    if kind == "auto":
        if len(gpus) > 1 or (not gpus and len(cpus) > 1):
            kind = "mirrored"
        else:
            kind = "one_device"
    if kind == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
                tpu=train_config.tpu or "local")
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as e:
            detail = " ".join(str(e).split())[:200]
            raise TrainError(f"--strategy=tpu: cannot reach TPU {train_config.tpu or 'local'!r}: "
                             f"{detail}") from None
        return tf.distribute.TPUStrategy(resolver)
    if kind == "mirrored":
        return mirrored_strategy([d.name for d in (gpus or cpus)])
    return tf.distribute.OneDeviceStrategy((gpus or cpus)[0].name)


def mirrored_strategy(devices):
    """MirroredStrategy over `devices` (names); CPU replicas reduce on one device.

    MirroredStrategy's default all-reduce on CPUs is collective ops, whose instance keys
    are process-global: a second mirrored training in the same process (a notebook, a
    test session) then aborted with "Shape mismatch in the collective instance".
    ReductionToOneDevice sums on one device, which on CPUs sharing memory costs the same.
    """
    if all("GPU" not in d.upper() and "TPU" not in d.upper() for d in devices):
        return tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    return tf.distribute.MirroredStrategy(devices)


def device_kind(strategy):
    """"tpu", "gpu" or "cpu": where the replicas compute."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    devices = getattr(strategy.extended, "worker_devices", ()) or ()
    return "gpu" if any("GPU" in d.upper() for d in devices) else "cpu"


def mixed_precision_policy(strategy):
    """The Keras dtype policy for --mixed_precision on this strategy's devices."""
    return "mixed_float16" if device_kind(strategy) == "gpu" else "mixed_bfloat16"


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0)


# ----------------------------------------------------------------------------------
# Model, loss network and the per-replica step.
# ----------------------------------------------------------------------------------

# The weight-bias-ratio terms, reported for every generator with conv biases (BOE).
WEIGHT_BIAS_TERMS = ("weight_bias_ratio/W", "weight_bias_ratio/B", "weight_bias_ratio_loss",
                     "weighted_weight_bias_ratio_loss")


def loss_term_names(loss_config, with_weight_bias=False):
    """Names of the batch-mean terms a step reports (Magenta's names + ours)."""
    names = []
    for name, _ in loss_config.content_weights:
        names += [f"content_loss/{name}", f"weighted_content_loss/{name}"]
    names.append("total_content_loss")
    for name, _ in loss_config.style_weights:
        names += [f"style_loss/{name}", f"weighted_style_loss/{name}"]
    names += ["total_style_loss", "total_variation_loss", "weighted_total_variation_loss"]
    if loss_config.stability_weight > 0:
        names += ["stability_loss", "weighted_stability_loss"]
    if with_weight_bias:
        names += list(WEIGHT_BIAS_TERMS)
    names.append("total_loss")
    return sorted(names)


def train_variables(model, train_scope):
    """The variables a run trains: all ("all") or the instance-norm tables ("norm")."""
    if train_scope == "norm":
        return [v for v in model.trainable_variables if NORM_SCOPE in v.path]
    return list(model.trainable_variables)


def make_optimizer(kind, learning_rate, loss_scale=False):
    """Magenta's Adam ("adam") or plain SGD ("sgd"), in a LossScaleOptimizer if asked."""
    if kind == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate)
    else:
        optimizer = keras.optimizers.Adam(learning_rate, beta_1=ADAM_BETA_1,
                                          beta_2=ADAM_BETA_2, epsilon=ADAM_EPSILON)
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


class Trainer:
    """The model, its frozen loss network, the optimizer and the compiled steps.

    Build it inside `strategy.scope()`. Everything it runs per step is TensorFlow
    only (no numpy), so the loop compiles for TPU.

    Args:
      model: a generator (generators.build; num_styles S).
      vgg_net: vgg.VGG16Features.
      style_grams: dict {end point: float32 [K, C, C]}, the style dataset's Grams.
      loss_config: config.LossConfig.
      global_batch_size: int.
      learning_rate: float.
      optimizer: "adam" (Magenta's) or "sgd" (plain SGD, the BOE patent's), or None for
        a Trainer that only computes losses (evaluation): no optimizer, no slots.
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
        self.model = model
        self.vgg = vgg_net
        self.loss_config = loss_config
        self.global_batch_size = int(global_batch_size)
        self.label_offset = int(label_offset)
        self.frozen_style_rows = int(frozen_style_rows)
        self.clip_gradient_norm = float(clip_gradient_norm)
        self.loss_hook = loss_hook
        self.content_weights = dict(loss_config.content_weights)
        self.style_weights = dict(loss_config.style_weights)
        num_dataset_styles = int(next(iter(style_grams.values())).shape[0])
        # Frozen, replicated, never checkpointed: the targets of the style loss.
        self.style_grams = {
            name: tf.Variable(np.asarray(style_grams[name], np.float32), trainable=False,
                              name=f"grams_{name.replace('/', '_')}")
            for name in self.style_weights}
        coefficients = loss_config.style_coefficients or (1.0,) * num_dataset_styles
        self.style_coefficients = tf.constant(coefficients, tf.float32)
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
        # W, B and L_L1 are logged for every generator with conv biases, also at chi = 0.
        self.with_weight_bias = hasattr(model, "kernels_and_biases")
        self.term_names = loss_term_names(loss_config, with_weight_bias=self.with_weight_bias)
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

    def per_example_losses(self, images, labels, noise=None):
        """Magenta's losses for a batch, per example.

        Args:
          images: float32 [B, H, W, 3] in [0, 1], content images.
          labels: int32 [B], model style ids (dataset style + label_offset).
          noise: float32 [B, H, W, 3] input noise for the stability term, or None.

        Returns:
          (total float32 [B], terms {name: float32 [B]}) with Magenta's names,
          plus `stability_loss` / `weighted_stability_loss` when the weight is > 0.
        """
        stylized = self.model(images, labels)
        # Two VGG calls, as Magenta makes them, rather than one on the concatenated batch:
        # nothing trainable feeds the content branch, so the tape records none of it and
        # the backward pass runs through VGG for the stylized half only (one concatenated
        # call would backpropagate through both halves: ~25% more work per step).
        content_features = self.vgg(images)
        stylized_features = self.vgg(stylized)
        dataset_labels = labels - self.label_offset
        grams = losses.gather_style_grams(self.style_grams, dataset_labels)
        coefficients = losses.gather_style_coefficients(self.style_coefficients, dataset_labels)
        total, terms = losses.total_loss(
            content_features, stylized_features, grams, self.content_weights,
            self.style_weights, coefficients, stylized_images=stylized,
            total_variation_weight=self.loss_config.total_variation_weight)
        if self.loss_config.stability_weight > 0:
            if noise is None:
                raise ValueError("stability_weight > 0 needs the batch's noise")
            noisy = tf.clip_by_value(images + noise, 0.0, 1.0)
            change = tf.reduce_mean(tf.square(self.model(noisy, labels) - stylized),
                                    axis=[1, 2, 3])
            weighted = self.loss_config.stability_weight * change
            terms["stability_loss"] = change
            terms["weighted_stability_loss"] = weighted
            total = total + weighted
            terms["total_loss"] = total
        if self.with_weight_bias:
            # A term of the parameters, not of the examples: added to every example's
            # total, so the global-batch mean (and hence every strategy) counts it once.
            ratio, w, b = losses.weight_bias_ratio(*self.model.kernels_and_biases(),
                                                   mode=self.loss_config.weight_bias_ratio_mode)
            weighted = self.loss_config.weight_bias_ratio_weight * ratio
            ones = tf.ones_like(total)
            for name, value in zip(WEIGHT_BIAS_TERMS, (w, b, ratio, weighted)):
                terms[name] = value * ones
            total = total + weighted * ones
            terms["total_loss"] = total
        return total, terms

    def compute_gradients(self, images, labels, noise=None, step=None):
        """This replica's share of d(global mean loss)/d(train_vars).

        Returns:
          (gradients list aligned with train_vars, terms {name: float32 [b]},
           per-example total [b]). With a LossScaleOptimizer the gradients are scaled.
        """
        with tf.GradientTape() as tape:
            total, terms = self.per_example_losses(images, labels, noise)
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
                                              batch.get("noise"), self.step)
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


# ----------------------------------------------------------------------------------
# Helpers of run().
# ----------------------------------------------------------------------------------

def _base_model(finetune_from):
    """Loads the finetuning base (outside any strategy); returns (model, ModelConfig)."""
    try:
        return checkpoints.load_model(finetune_from)
    except checkpoints.CheckpointError as e:
        raise TrainError(f"--finetune_from: {e}") from None


def _init_from_base(model, base, add_styles):
    """Copies the base's weights: convolutions always; with add_styles also the old
    gamma/beta rows (new rows start at the mean of the old ones). Without add_styles
    the tables keep their fresh init (gamma 1, beta 0), as Magenta's finetune does."""
    base_weights = {v.path.split("/", 1)[1]: v for v in base.weights}
    for variable in model.weights:
        key = variable.path.split("/", 1)[1]
        source = base_weights[key]
        if NORM_SCOPE not in key:
            variable.assign(source)
        elif add_styles:
            old = source.numpy()
            new_rows = variable.shape[0] - old.shape[0]
            mean = np.repeat(old.mean(axis=0, keepdims=True), new_rows, axis=0)
            variable.assign(np.concatenate([old, mean], axis=0))


def _read_style_dataset(path):
    try:
        info = style_dataset.read_style_dataset(path, with_images=True)
    except style_dataset.StyleDatasetError as e:
        raise TrainError(str(e)) from None
    if info.grams is None:
        raise TrainError(f"style dataset {path} has no Gram matrices (rebuild it with "
                         "python -m magenta_style.create_style_dataset --compute_gram_matrices)")
    return info


def _lock_train_dir(train_dir, held):
    """Creates train_dir if needed and takes its lock into `held`; one-line TrainErrors."""
    if os.path.exists(train_dir) and not os.path.isdir(train_dir):
        raise TrainError(f"--train_dir={train_dir} exists and is not a directory")
    try:
        os.makedirs(train_dir, exist_ok=True)
        held.enter_context(dirlock.hold(train_dir))
        fileio.ensure_writable_dir(train_dir)  # The lock file may predate a chmod.
    except dirlock.LockError as e:
        raise TrainError(str(e)) from None
    except OSError as e:
        raise TrainError(f"--train_dir={train_dir} cannot be created or written: "
                         f"{e.strerror or e}") from None


def needs_conv_end_points(loss_config):
    """True when a loss weight names a single convolution (vgg_16/conv4/conv4_2)."""
    return any(name.count("/") == 2
               for name, _ in loss_config.content_weights + loss_config.style_weights)


def _check_resume_config(train_dir, model_config):
    saved = config_lib.load_model_config(train_dir)
    if saved is None:
        return
    if saved.generator_options() != model_config.generator_options():
        raise TrainError(
            f"--train_dir={train_dir} holds a {saved.generator} model "
            f"({saved.to_dict()}), but this run builds {model_config.to_dict()}; use a new "
            "--train_dir")
    if (saved.num_styles, transformer.layer_widths(saved.alpha)) != (
            model_config.num_styles, transformer.layer_widths(model_config.alpha)):
        raise TrainError(
            f"--train_dir={train_dir} holds a model with num_styles={saved.num_styles}, "
            f"alpha={saved.alpha}, but this run builds num_styles={model_config.num_styles}, "
            f"alpha={model_config.alpha}; use a new --train_dir")


def _format_eta(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class _Every:
    """A trigger that fires every `steps` steps or `secs` seconds (0 disables each)."""

    def __init__(self, steps, secs, step):
        self.steps, self.secs = int(steps), float(secs)
        self.last_step, self.last_time = step, time.monotonic()

    def steps_left(self, step):
        return self.steps - (step - self.last_step) if self.steps else None

    def due(self, step, slack_secs=0.0):
        """True when `steps` steps or `secs` seconds have passed since the last reset.

        slack_secs: fire this much early, e.g. half the duration of one loop call, so
          the seconds trigger fires at the call nearest the interval rather than the
          first one past it. Without it, 15 s at 13.5 s per 50 steps logged every 75
          steps now and then: the progress log skipped step 350.
        """
        return bool((self.steps and step - self.last_step >= self.steps)
                    or (self.secs and time.monotonic() - self.last_time + slack_secs
                        >= self.secs))

    def reset(self, step):
        self.last_step, self.last_time = step, time.monotonic()


def _agree(strategy, flag):
    """True on every worker when any worker says so (time-based triggers differ per
    worker, and checkpoints need every worker)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return flag
    value = strategy.run(lambda: tf.constant(1 if flag else 0, tf.int32))
    return bool(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) > 0)


# ----------------------------------------------------------------------------------
# run(): set-up, restore, the traced steps, after each call.
# ----------------------------------------------------------------------------------

def run(experiment, progress=None, loss_hook=None, strategy=None):
    """Trains (or resumes training) as configured; see the module docstring.

    Args:
      experiment: config.ExperimentConfig.
      progress: callable(str) for the console progress line (default logging.info).
      loss_hook: tests only; see Trainer.
      strategy: an existing tf.distribute.Strategy to use instead of building one from
        experiment.train.strategy (tests).

    Returns:
      RunResult.

    Raises:
      TrainError: bad input (dataset, content images, checkpoint, train_dir mismatch,
        a train_dir that cannot be written or that another trainer holds).
      NonFiniteLossError: the loss became NaN/inf; the last good checkpoint is kept.
    """
    # The train_dir lock (chief only) is held until run() returns or raises.
    with contextlib.ExitStack() as held:
        return _run(experiment, progress, loss_hook, strategy, held)


def _run(experiment, progress, loss_hook, strategy, held):
    """run(), with `held` (a contextlib.ExitStack) owning the train_dir lock."""
    started = time.monotonic()
    progress = progress or logging.info
    # Set-up: strategy, inputs, the model's config, train_dir, then the Trainer.
    strategy = _strategy(experiment.train, strategy)
    inputs = _read_inputs(experiment)
    model_config = _model_config(experiment, inputs)
    is_chief = _is_chief(strategy)
    if is_chief:
        _prepare_train_dir(experiment.train.train_dir, held, progress)
    _check_resume_config(experiment.train.train_dir, model_config)
    trainer = _build_trainer(experiment, strategy, model_config, inputs, loss_hook)
    # Restore: (1) resume from train_dir, (2) finetune base, (3) scratch.
    manager, latest = _restore(trainer, experiment, strategy, inputs, progress)
    preemption = _preemption_handler(strategy, manager)
    if is_chief:
        _save_run_config(experiment, model_config, inputs.label_offset)
    iterator = _input_iterator(experiment, strategy, inputs, trainer)
    progress(_describe_run(experiment, strategy, model_config, inputs))
    # The traced steps, and after each call: checks, summaries, checkpoints, progress.
    loop = _Loop(experiment, strategy, trainer, manager, preemption, iterator, latest,
                 progress)
    try:
        loop.run(inputs)
    finally:
        if not is_chief:
            shutil.rmtree(manager.directory, ignore_errors=True)
    return loop.result(model_config, time.monotonic() - started)


# --- Set-up --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Inputs:
    """What set-up read before any model is built.

    Attributes:
      info: style_dataset.StyleDataset (with images and Grams).
      source: pipeline.ContentSource, the content images.
      base: the finetuning base model, or None.
      base_config: its config.ModelConfig, or None.
      label_offset: model style id of the dataset's style 0 (add_styles: the base's
        style count; else 0).
    """

    info: object
    source: object
    base: object = None
    base_config: object = None
    label_offset: int = 0


def _strategy(cfg, strategy):
    """The run's strategy (built from cfg unless given); checks the batch splits over it."""
    if strategy is None:
        split_cpu(cfg.num_cpu_devices)
        strategy = make_strategy(cfg)
    replicas = strategy.num_replicas_in_sync
    if cfg.batch_size % replicas:
        raise TrainError(f"--batch_size={cfg.batch_size} does not split evenly over "
                         f"{replicas} replicas")
    return strategy


def _read_inputs(experiment):
    """Style dataset, content images and finetuning base (fail fast, before any model)."""
    cfg = experiment.train
    info = _read_style_dataset(experiment.data.style_dataset_file)
    if experiment.loss.style_coefficients and (
            len(experiment.loss.style_coefficients) != info.num_styles):
        raise TrainError(f"--style_coefficients has {len(experiment.loss.style_coefficients)} "
                         f"values but the style dataset has {info.num_styles} styles")
    try:
        source = pipeline.resolve_content_source(experiment.data)
    except pipeline.DataError as e:
        raise TrainError(str(e)) from None
    if not cfg.finetune_from:
        return _Inputs(info, source)
    base, base_config = _base_model(cfg.finetune_from)
    if not math.isclose(base_config.alpha, experiment.alpha) and (
            transformer.layer_widths(base_config.alpha)
            != transformer.layer_widths(experiment.alpha)):
        raise TrainError(f"--alpha={experiment.alpha} disagrees with --finetune_from "
                         f"(alpha={base_config.alpha})")
    return _Inputs(info, source, base, base_config,
                   label_offset=base_config.num_styles if cfg.add_styles else 0)


def _model_config(experiment, inputs):
    """The config.ModelConfig this run trains: styles from the dataset (and the base)."""
    info, base_config, label_offset = inputs.info, inputs.base_config, inputs.label_offset
    if experiment.train.add_styles:
        names = tuple(base_config.style_names or
                      [str(i) for i in range(base_config.num_styles)]) + tuple(info.names)
    else:
        names = tuple(info.names)
    num_styles = label_offset + info.num_styles
    if experiment.num_styles is not None and experiment.num_styles != num_styles:
        raise TrainError(f"--num_styles={experiment.num_styles} disagrees with the style "
                         f"dataset ({info.num_styles} styles"
                         + (f" + {label_offset} of the base model)" if label_offset else ")"))
    alpha = base_config.alpha if base_config is not None else experiment.alpha
    options = experiment.generator_options()
    if base_config is not None:
        base_options = {k: getattr(base_config, k) for k in options}
        if base_config.generator != experiment.generator or (
                experiment.generator != "magenta" and base_options != options):
            raise TrainError(f"--finetune_from holds a {base_config.generator} generator "
                             f"({base_options}), this run asks for {options}")
        if experiment.generator != "magenta" and experiment.boe_norm == "plain":
            raise TrainError("--finetune_from trains only the instance-norm tables, and a "
                             "--boe_norm=plain model has none; use --boe_norm=conditional")
    try:
        return config_lib.ModelConfig(num_styles=num_styles, alpha=alpha,
                                      style_names=names, **options)
    except config_lib.ConfigError as e:  # e.g. --boe_norm=plain with a multi-style dataset.
        raise TrainError(str(e)) from None


def _prepare_train_dir(train_dir, held, progress):
    """Chief only: locks train_dir, then removes what a killed run's save left there."""
    # The lock comes before anything else touches train_dir, the clean-up of a
    # killed run's leftovers included: those look like a live trainer's save.
    _lock_train_dir(train_dir, held)
    removed = checkpoints.clean_checkpoint_leftovers(train_dir)
    if removed:
        progress(f"removed what an interrupted save left in {train_dir}: "
                 f"{', '.join(removed)}")


def _build_trainer(experiment, strategy, model_config, inputs, loss_hook):
    """Model, loss network and optimizer, seeded, all inside the strategy scope."""
    cfg = experiment.train
    previous_policy = keras.config.dtype_policy()
    policy = _policy(cfg, strategy)
    keras.utils.set_random_seed(cfg.seed)
    keras.config.set_dtype_policy(policy)
    try:
        with strategy.scope():
            model = generators.build(model_config)
            try:
                vgg_net = vgg.build_vgg16(experiment.loss.vgg_checkpoint,
                                          experiment.loss.vgg_pooling, experiment.loss.vgg,
                                          conv_end_points=needs_conv_end_points(experiment.loss))
            except vgg.VGGWeightsError as e:
                raise TrainError(str(e)) from None
            try:
                style_grams = style_dataset.dataset_grams(
                    vgg_net, inputs.info, dict(experiment.loss.style_weights))
            except style_dataset.StyleDatasetError as e:
                raise TrainError(str(e)) from None
            return Trainer(
                model, vgg_net, style_grams, experiment.loss, cfg.batch_size, cfg.learning_rate,
                label_offset=inputs.label_offset,
                train_scope="norm" if inputs.base is not None else "all",
                frozen_style_rows=inputs.label_offset, clip_gradient_norm=cfg.clip_gradient_norm,
                loss_scale=policy == "mixed_float16",
                jit_compile=cfg.jit_compile and device_kind(strategy) != "tpu",
                loss_hook=loss_hook, optimizer=cfg.optimizer)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _policy(cfg, strategy):
    """The Keras dtype policy of the run: float32, or --mixed_precision's."""
    return mixed_precision_policy(strategy) if cfg.mixed_precision else "float32"


# --- Restore -------------------------------------------------------------------------

def _restore(trainer, experiment, strategy, inputs, progress):
    """Resumes from train_dir, else starts from the finetuning base, else from scratch.

    Returns:
      (tf.train.CheckpointManager saving into train_dir, or a worker's scratch dir;
       the prefix resumed from, or "").
    """
    cfg = experiment.train
    train_dir = cfg.train_dir
    is_chief = _is_chief(strategy)
    checkpoint = trainer.checkpoint()
    save_dir = train_dir if is_chief else os.path.join(
        train_dir, f".worker_tmp_{strategy.cluster_resolver.task_id}")
    try:
        latest = checkpoints.find_resume_checkpoint(train_dir, repair=is_chief,
                                                    report=progress)
    except checkpoints.CheckpointError as e:
        raise TrainError(str(e)) from None
    manager = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=cfg.max_to_keep)
    if latest:
        legacy = not checkpoints.has_named_layout(latest, trainer.model)
        status = (trainer.checkpoint(legacy=True) if legacy else checkpoint).read(latest)
        try:
            status.assert_existing_objects_matched()
        except AssertionError as e:
            raise TrainError(f"cannot resume from {latest}: {e}") from None
        # Every object of the run got its value (checked above); what the checkpoint holds
        # beyond them (e.g. a legacy layout's extras) is not news: without this, TF warns
        # twice about "unrestored values" when the status is garbage-collected.
        status.expect_partial()
        progress(f"resuming from {latest} at step {int(trainer.step.numpy())}")
    elif inputs.base is not None:
        _init_from_base(trainer.model, inputs.base, cfg.add_styles)
        what = (f"adding {inputs.info.num_styles} style(s) to the {inputs.label_offset} of"
                if cfg.add_styles else "finetuning gamma/beta on top of")
        progress(f"{what} {cfg.finetune_from}: convolutions frozen")
    else:
        progress(f"training from scratch (seed {cfg.seed})")
    return manager, latest or ""


def _save_run_config(experiment, model_config, label_offset):
    """Chief only: writes train_dir/config.json (the model and how it was trained)."""
    cfg = experiment.train
    try:
        config_lib.save_model_config(cfg.train_dir, model_config, extra={
            "train": experiment.to_dict(),
            "finetune": {"from": cfg.finetune_from, "add_styles": cfg.add_styles,
                         "base_num_styles": label_offset},
            "vgg_checkpoint": experiment.loss.vgg_checkpoint})
    except OSError as e:
        raise TrainError(f"cannot write "
                         f"{os.path.join(cfg.train_dir, config_lib.CONFIG_FILENAME)}: "
                         f"{e.strerror or e}") from None


def _input_iterator(experiment, strategy, inputs, trainer):
    """The distributed input pipeline, starting at the restored data position."""
    dataset_fn = pipeline.make_dataset_fn(
        inputs.source, experiment.data, experiment.train.batch_size, inputs.info.num_styles,
        seed=experiment.train.seed, start_index=int(trainer.next_index.numpy()),
        label_offset=inputs.label_offset,
        stability_stddev=(experiment.loss.stability_noise_stddev
                          if experiment.loss.stability_weight > 0 else 0.0))
    return iter(strategy.distribute_datasets_from_function(dataset_fn))


def _describe_run(experiment, strategy, model_config, inputs):
    """The progress line that says what trains, on what, where."""
    cfg = experiment.train
    return (f"{model_config.generator} generator, "
            f"{model_config.num_styles} styles, alpha {model_config.alpha}, content: "
            f"{inputs.source.description}; {strategy.num_replicas_in_sync} replica(s) "
            f"({type(strategy).__name__}, {device_kind(strategy)}), "
            f"global batch {cfg.batch_size}, {experiment.data.image_size}px, "
            f"policy {_policy(cfg, strategy)}")


# --- The traced steps, and after each call ------------------------------------------

class _StopRequests:
    """While entered: SIGINT and SIGTERM ask the loop to stop instead of stopping the
    process, so that it finishes the call in progress (TensorFlow runs it in C++ anyway),
    saves a checkpoint and raises Interrupted. A second signal raises Interrupted at once,
    without saving. Main thread only (Python delivers signals there); elsewhere a no-op.
    The previous handlers come back on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, progress, enabled=True):
        self.progress = progress
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum = None
        self._previous = {}

    def __enter__(self):
        if self.enabled:
            for signum in self.SIGNALS:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous = {}
        return False

    def _handle(self, signum, frame):
        del frame
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum
        self.progress(f"{signal.Signals(signum).name}: stopping after the steps in progress "
                      "and saving a checkpoint (send it again to stop without saving)")



class _Loop:
    """Calls the traced steps until train_steps; after each call: checks the losses,
    records the data position, writes summaries, saves, prints the progress line."""

    def __init__(self, experiment, strategy, trainer, manager, preemption, iterator, latest,
                 progress):
        self.experiment, self.cfg = experiment, experiment.train
        self.strategy, self.trainer, self.manager = strategy, trainer, manager
        self.preemption, self.iterator, self.progress = preemption, iterator, progress
        self.step = self.resumed_from = int(trainer.step.numpy())
        self.save_trigger = _Every(self.cfg.save_interval_steps, self.cfg.save_interval_secs,
                                   self.step)
        self.summary_trigger = _Every(self.cfg.summary_interval_steps,
                                      self.cfg.save_summaries_secs, self.step)
        self.log_trigger = _Every(0, self.cfg.log_interval_secs, self.step)
        self.last_checkpoint = latest
        self.last_terms = {}
        self.history = {}
        self.rate_time, self.rate_step = time.monotonic(), self.step
        self.steps_per_sec = float("nan")
        self.first = True
        # The step the newest checkpoint holds (-1: none): an interrupted run saves only
        # when it got further.
        self.saved_step = self.step if latest else -1
        # The preemption handler of multi-worker and TPU runs watches SIGTERM itself.
        self.stop = _StopRequests(progress, enabled=preemption is None)

    def run(self, inputs):
        """Trains to train_steps; raises NonFiniteLossError or a one-line TrainError."""
        cfg = self.cfg
        try:
            writer = summaries.file_writer(cfg.train_dir, _is_chief(self.strategy))
        except tf.errors.OpError as e:
            raise TrainError(f"cannot write TensorBoard events in {cfg.train_dir}: "
                             f"{checkpoints.write_error_reason(e)}") from None
        try:
            preview = _preview(inputs.source, self.experiment, inputs.info,
                               inputs.label_offset, cfg.image_summary_count,
                               self.trainer.model)
        except tf.errors.InvalidArgumentError as e:
            _raise_content_failure(e)
        if self.step < cfg.train_steps:  # The first call traces the step: tens of seconds.
            self.progress("tracing the training step (tens of seconds on a CPU) before the "
                          "first progress line")
        try:
            try:
                with self.stop:
                    while self.step < cfg.train_steps:
                        num = self._call_size()
                        call_started = time.monotonic()
                        out = self._call(num)
                        self._after_call(num, out, time.monotonic() - call_started, writer,
                                         preview)
                        if _agree(self.strategy, self.stop.signum is not None):
                            self._stop_interrupted()
            except tf.errors.InvalidArgumentError as e:
                _raise_content_failure(e)
        except BaseException:
            # The error in flight is the one to report, not a full disk's failed flush.
            with contextlib.suppress(tf.errors.OpError):
                writer.flush()
            raise
        self._write_summaries(writer.flush)

    def _stop_interrupted(self):
        """Saves the step reached (unless the newest checkpoint holds it); raises
        Interrupted."""
        if self.step != self.saved_step:
            self._save()
        raise Interrupted(self.stop.signum or signal.SIGTERM, self.step, self.last_checkpoint)

    def _write_summaries(self, write):
        """Runs `write` (summaries, a flush); a failed write (a full disk) is one line."""
        try:
            write()
        except tf.errors.OpError as e:
            if isinstance(e, tf.errors.InvalidArgumentError):
                raise  # The preview's content images: _raise_content_failure reports it.
            raise TrainError(f"cannot write TensorBoard events in {self.cfg.train_dir}: "
                             f"{checkpoints.write_error_reason(e)}") from None

    def _save(self):
        try:
            self.last_checkpoint = checkpoints.save_quietly(self.manager, self.step)
        except checkpoints.CheckpointWriteError as e:
            kept = (f"the last good checkpoint {self.last_checkpoint} is kept"
                    if self.last_checkpoint else "no checkpoint was written")
            raise TrainError(f"{e}; {kept}") from None
        self.saved_step = self.step

    def _call_size(self):
        """Steps in the next call: steps_per_loop, cut to reach the next step trigger."""
        limits = [self.cfg.steps_per_loop, self.cfg.train_steps - self.step]
        limits += [t.steps_left(self.step) for t in (self.save_trigger, self.summary_trigger)
                   if t.steps_left(self.step)]
        return max(1, min(limits))

    def _call(self, num):
        """One call of the traced steps (under the preemption handler when there is one)."""
        if self.preemption is not None:
            return self.preemption.run(self.trainer.train_steps, self.strategy,
                                       self.iterator, num)
        return self.trainer.train_steps(self.strategy, self.iterator, num)

    def _after_call(self, num, out, call_secs, writer, preview):
        totals, terms, max_index, skipped = out
        self._check_finite(totals)
        self._record(num, totals, terms, max_index, skipped)
        done = self.step >= self.cfg.train_steps
        if _agree(self.strategy, self.summary_trigger.due(self.step) or done):
            self._write_summaries(lambda: summaries.write_training_summaries(
                writer, self.step, terms, self.cfg.learning_rate, self.cfg.batch_size,
                self.steps_per_sec, int(self.trainer.skipped_images.numpy()),
                preview=preview))
            self.summary_trigger.reset(self.step)
        if _agree(self.strategy, self.save_trigger.due(self.step) or done):
            self._save()
            self.save_trigger.reset(self.step)
        if (self.log_trigger.due(self.step, slack_secs=call_secs / 2) or done
                or self.step == self.resumed_from + num):
            self.progress(self._progress_line(terms))
            self.log_trigger.reset(self.step)
        if self.first:
            # The first call traced the step, and its summaries traced the preview: the
            # rate counts from here, so one-time costs do not skew it.
            self.rate_time, self.rate_step, self.first = time.monotonic(), self.step, False

    def _check_finite(self, totals):
        """Stops the run, without saving, at the first step whose loss is NaN or inf."""
        bad = np.flatnonzero(~np.isfinite(totals))
        if bad.size:
            bad_step = self.step + int(bad[0]) + 1
            kept = (f"last good checkpoint {self.last_checkpoint}" if self.last_checkpoint
                    else "no checkpoint was written")
            raise NonFiniteLossError(
                f"total_loss is {totals[bad[0]]} at step {bad_step}; stopped without "
                f"saving ({kept})", bad_step)

    def _record(self, num, totals, terms, max_index, skipped):
        """Advances the step, the data position, the skipped count and the step rate."""
        self.history.update({self.step + i + 1: float(t) for i, t in enumerate(totals)})
        self.step += num
        self.trainer.next_index.assign(max_index + 1)
        self.trainer.skipped_images.assign_add(skipped)
        if skipped:
            logging.warning("skipped %d undecodable content image(s) (%d so far)", skipped,
                            int(self.trainer.skipped_images.numpy()))
        self.last_terms = terms
        now = time.monotonic()
        if now > self.rate_time and self.step > self.rate_step:
            self.steps_per_sec = (self.step - self.rate_step) / (now - self.rate_time)

    def _progress_line(self, terms):
        cfg, rate = self.cfg, self.steps_per_sec
        eta = (cfg.train_steps - self.step) / rate if rate > 0 else math.inf
        return (f"step {self.step}/{cfg.train_steps} | total_loss {terms['total_loss']:.4g} "
                f"(content {terms['total_content_loss']:.4g}, style "
                f"{terms['total_style_loss']:.4g}) | "
                + (f"W {terms['weight_bias_ratio/W']:.3g}, B "
                   f"{terms['weight_bias_ratio/B']:.3g}, W/B "
                   f"{terms['weight_bias_ratio_loss']:.4g} | "
                   if self.trainer.with_weight_bias else "")
                + f"{rate:.2f} steps/s, {rate * cfg.batch_size:.1f} img/s | ETA "
                f"{_format_eta(eta)}")

    def result(self, model_config, wall_seconds):
        """The RunResult of the loop's run."""
        last_checkpoint = self.last_checkpoint
        if not last_checkpoint and self.step >= self.cfg.train_steps:
            last_checkpoint = tf.train.latest_checkpoint(self.cfg.train_dir) or ""
        return RunResult(train_dir=self.cfg.train_dir, step=self.step,
                         checkpoint=last_checkpoint, losses=self.last_terms,
                         model_config=model_config,
                         skipped_images=int(self.trainer.skipped_images.numpy()),
                         resumed_from_step=self.resumed_from, wall_seconds=wall_seconds,
                         total_losses=self.history)


def _preemption_handler(strategy, manager):
    """A PreemptionCheckpointHandler on multi-worker and TPU strategies, else None."""
    if not isinstance(strategy, (tf.distribute.MultiWorkerMirroredStrategy,
                                 tf.distribute.TPUStrategy)):
        return None
    try:
        return tf.distribute.experimental.PreemptionCheckpointHandler(
            strategy.cluster_resolver, manager)
    except (ValueError, NotImplementedError, TypeError) as e:
        logging.warning("no preemption handling: %s", e)
        return None


def _raise_content_failure(error):
    """Re-raises a pipeline that gave up on its content images as a one-line TrainError."""
    message = pipeline.content_failure_message(error)
    if message is None:
        raise error
    raise TrainError(message) from None


def _preview(source, experiment, info, label_offset, count, model):
    """The summaries.Preview of `count` content images (None when count is 0)."""
    if not count:
        return None
    fn = pipeline.make_dataset_fn(source, experiment.data, count, info.num_styles,
                              seed=experiment.train.seed, label_offset=label_offset)
    batch = next(iter(fn(None)))
    dataset_labels = batch["label"].numpy() - label_offset
    size = experiment.data.image_size
    styles = tf.stack([tf.image.resize(info.images[i], [size, size]) for i in dataset_labels])
    return summaries.Preview(batch["image"], batch["label"], styles, model)
