"""Training: one custom loop for every tf.distribute strategy (Magenta's trainer, in TF2).

`run(experiment_config)` reads top to bottom, in four phases:

  set-up      `_strategy` (--num_cpu_devices, --strategy: devices.py),
              `_style_images` (N-style generators' --style_images: their style
              dataset, built or reused in train_dir by style_cache.py), `_read_inputs`
              (style dataset, content images, --finetune_from base: fail fast, before
              any model is built), `_model_config`, `_prepare_train_dir` (lock,
              clean-up), `_build_trainer` (model, VGG, optimizer inside
              strategy.scope(), under the mixed precision policy; the optimizer is
              built before the first step: a lazily built Keras 3 optimizer fails
              under MirroredStrategy)
  restore     `_restore`, in order: (1) resume from train_dir, (2) --finetune_from
              [--add_styles], (3) from scratch (seeded); then config.json and the
              input pipeline (`_input_iterator`, from the restored data position)
  the steps   `train_step.Trainer.train_steps`: steps_per_loop steps per tf.function
              call, each step the gradient of `objective.Objective`'s losses
  after each  `_Loop._after_call`, in Python: the NaN check, the data position,
  call        summaries (summaries.py), checkpoints and the progress line, each on
              its own trigger; the loop stops at train_steps.

The losses are objective.py's, the step and optimizer train_step.py's, the strategies
devices.py's. The checkpoint holds the transformer, the optimizer, the step and the
data position (never VGG, which always comes from its own weights). With a fixed seed
a resumed run ends with the same weights as an uninterrupted one: the input pipeline
restarts at the saved data position (data/pipeline.py).
"""
import contextlib
import dataclasses
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
from magenta_style.data import style_pipeline
from magenta_style.media import fileio
from magenta_style.networks import arbitrary_checkpoints
from magenta_style.networks import batch_norm
from magenta_style.networks import checkpoints
from magenta_style.networks import generators
from magenta_style.networks import inception_weights
from magenta_style.networks import kernels
from magenta_style.networks import transformer
from magenta_style.networks import vgg
from magenta_style.networks import vgg_weights
from magenta_style.training import devices
from magenta_style.training import dirlock
from magenta_style.training import objective
from magenta_style.training import resume
from magenta_style.training import style_cache
from magenta_style.training import summaries
from magenta_style.training import train_step

# The step's class, where callers have always found it (the step has its own module).
Trainer = train_step.Trainer


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
      experiment: the config.ExperimentConfig trained; with style_images, its
        style_dataset_file is their cached style dataset.
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
    experiment: object = None


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
        if train_step.NORM_SCOPE not in key:
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
                         "tools/create_style_dataset.py --compute_gram_matrices)")
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
    # The train_dir lock (chief only) is held until run() returns or raises. The run's
    # traced steps are dropped when it ends, and so are their custom gradients.
    with contextlib.ExitStack() as held, kernels.custom_gradients_released():
        return _run(experiment, progress, loss_hook, strategy, held)


def _run(experiment, progress, loss_hook, strategy, held):
    """run(), with `held` (a contextlib.ExitStack) owning the train_dir lock."""
    started = time.monotonic()
    progress = progress or logging.info
    # Set-up: strategy, inputs, the model's config, train_dir, then the Trainer.
    strategy = _strategy(experiment.train, strategy)
    experiment = _style_images(experiment, progress)
    inputs = _read_inputs(experiment)
    model_config = _model_config(experiment, inputs)
    is_chief = devices.is_chief(strategy)
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
    return dataclasses.replace(loop.result(model_config, time.monotonic() - started),
                               experiment=experiment)


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
      styles: the arbitrary generator's style_pipeline.StyleSource (info is None then).
      inception: the arbitrary generator's InceptionV3 start, {slim key: array}, or None
        (with init_checkpoint).
      init_prefix: the arbitrary generator's --init_checkpoint prefix, or "".
    """

    info: object
    source: object
    base: object = None
    base_config: object = None
    label_offset: int = 0
    styles: object = None
    inception: object = None
    init_prefix: str = ""


def _strategy(cfg, strategy):
    """The run's strategy (built from cfg unless given); checks the batch splits over it."""
    if strategy is None:
        try:
            devices.split_cpu(cfg.num_cpu_devices)
            strategy = devices.make_strategy(cfg)
        except devices.DeviceError as e:
            raise TrainError(str(e)) from None
    replicas = strategy.num_replicas_in_sync
    if cfg.batch_size % replicas:
        raise TrainError(f"--batch_size={cfg.batch_size} does not split evenly over "
                         f"{replicas} replicas")
    return strategy


def _style_images(experiment, progress):
    """--style_images: the experiment reading their style dataset, which is built in
    train_dir, or reused when the images, VGG source and size are unchanged."""
    data = experiment.data
    # The arbitrary generator reads the images themselves (style_pipeline.py).
    if not data.style_images or experiment.generator == config_lib.ARBITRARY:
        return experiment
    try:
        path, _ = style_cache.ensure_style_dataset(
            experiment.train.train_dir, data.style_images, experiment.loss.vgg_checkpoint,
            data.style_image_size, progress=progress)
    except style_cache.StyleCacheError as e:
        raise TrainError(str(e)) from None
    # config.json then records the file read, which evaluate and optimize's
    # --init=network: find there as for any run.
    return dataclasses.replace(experiment, data=dataclasses.replace(
        data, style_dataset_file=path, style_images="", style_image_size=0))


def _read_arbitrary_inputs(experiment):
    """The arbitrary generator's inputs: style images, content images, and the start
    (InceptionV3 weights, or --init_checkpoint's prefix), read before anything is built
    or written so that a wrong one is a one-line error."""
    cfg = experiment.train
    try:
        styles = style_pipeline.resolve_style_source(experiment.data)
        source = pipeline.resolve_content_source(experiment.data)
    except pipeline.DataError as e:
        raise TrainError(str(e)) from None
    inception, init_prefix = None, ""
    if cfg.init_checkpoint:
        try:
            init_prefix, _ = checkpoints.resolve_checkpoint(cfg.init_checkpoint)
            init_config = arbitrary_checkpoints.infer_config(init_prefix)
        except checkpoints.CheckpointError as e:
            raise TrainError(f"--init_checkpoint: {e}") from None
        if transformer.layer_widths(init_config.alpha) != transformer.layer_widths(
                experiment.alpha):
            raise TrainError(f"--alpha={experiment.alpha} disagrees with --init_checkpoint "
                             f"(alpha={init_config.alpha})")
    else:
        try:
            inception = inception_weights.read_inception_weights(
                cfg.inception_v3_checkpoint, inception_weights.wanted_shapes())
        except inception_weights.InceptionWeightsError as e:
            raise TrainError(str(e)) from None
    return _Inputs(None, source, styles=styles, inception=inception, init_prefix=init_prefix)


def _read_inputs(experiment):
    """Style dataset, content images and finetuning base (fail fast, before any model)."""
    if experiment.generator == config_lib.ARBITRARY:
        return _read_arbitrary_inputs(experiment)
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
    if experiment.generator == config_lib.ARBITRARY:
        return config_lib.ModelConfig(num_styles=1, alpha=experiment.alpha,
                                      generator=config_lib.ARBITRARY)
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
    removed = resume.clean_checkpoint_leftovers(train_dir)
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
            if cfg.sync_batch_norm:
                for layer in model._flatten_layers():  # pylint: disable=protected-access
                    if isinstance(layer, batch_norm.BatchNorm):
                        layer.sync = True
            conv_end_points = objective.needs_conv_end_points(experiment.loss)
            try:
                vgg_net = vgg.build_vgg(experiment.loss.vgg_checkpoint,
                                        experiment.loss.vgg_pooling, experiment.loss.vgg,
                                        conv_end_points=conv_end_points)
            except vgg_weights.VGGWeightsError as e:
                raise TrainError(str(e)) from None
            style_grams = None  # The arbitrary generator's come from its style batch.
            if inputs.info is not None:
                try:
                    style_grams = style_dataset.dataset_grams(
                        vgg_net, inputs.info, dict(experiment.loss.style_weights))
                except style_dataset.StyleDatasetError as e:
                    raise TrainError(str(e)) from None
            return train_step.Trainer(
                model, vgg_net, style_grams, experiment.loss, cfg.batch_size, cfg.learning_rate,
                label_offset=inputs.label_offset,
                train_scope="norm" if inputs.base is not None else "all",
                frozen_style_rows=inputs.label_offset, clip_gradient_norm=cfg.clip_gradient_norm,
                loss_scale=policy == "mixed_float16",
                jit_compile=cfg.jit_compile and devices.device_kind(strategy) != "tpu",
                loss_hook=loss_hook, optimizer=cfg.optimizer)
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _policy(cfg, strategy):
    """The Keras dtype policy of the run: float32, or --mixed_precision's."""
    return devices.mixed_precision_policy(strategy) if cfg.mixed_precision else "float32"


# --- Restore -------------------------------------------------------------------------

def _restore(trainer, experiment, strategy, inputs, progress):
    """Resumes from train_dir, else starts from the finetuning base, else from scratch.

    Returns:
      (tf.train.CheckpointManager saving into train_dir, or a worker's scratch dir;
       the prefix resumed from, or "").
    """
    cfg = experiment.train
    train_dir = cfg.train_dir
    is_chief = devices.is_chief(strategy)
    checkpoint = trainer.checkpoint()
    save_dir = train_dir if is_chief else os.path.join(
        train_dir, f".worker_tmp_{strategy.cluster_resolver.task_id}")
    try:
        latest = resume.find_resume_checkpoint(train_dir, repair=is_chief, report=progress)
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
    elif inputs.init_prefix:
        try:
            report = arbitrary_checkpoints.load_magenta_weights(trainer.model,
                                                               inputs.init_prefix)
        except checkpoints.CheckpointError as e:
            raise TrainError(f"--init_checkpoint: {e}") from None
        progress(f"starting every variable from {inputs.init_prefix}: loaded "
                 f"{len(report.loaded)}; skipped {len(report.ignored + report.unmapped)}"
                 + (f": {', '.join(report.ignored + report.unmapped)}"
                    if report.ignored or report.unmapped else ""))
    elif inputs.inception is not None:
        keys = trainer.model.predictor.inception.checkpoint_keys()
        for key, variable in keys.items():
            variable.assign(inputs.inception[key])
        progress(f"training from scratch (seed {cfg.seed}), InceptionV3 from "
                 f"{cfg.inception_v3_checkpoint}")
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
    cfg = experiment.train
    start = int(trainer.next_index.numpy())
    styles = None
    if inputs.styles is not None:
        styles = style_pipeline.StyleImages(inputs.styles, experiment.data, cfg.batch_size,
                                            seed=cfg.seed, start_index=start)
    dataset_fn = pipeline.make_dataset_fn(
        inputs.source, experiment.data, cfg.batch_size,
        inputs.info.num_styles if inputs.info is not None else 1,
        seed=cfg.seed, start_index=start, label_offset=inputs.label_offset,
        stability_stddev=(experiment.loss.stability_noise_stddev
                          if experiment.loss.stability_weight > 0 else 0.0), styles=styles)
    return iter(strategy.distribute_datasets_from_function(dataset_fn))


def _describe_run(experiment, strategy, model_config, inputs):
    """The progress line that says what trains, on what, where."""
    cfg = experiment.train
    styles = (f"styles: {inputs.styles.description}" if inputs.styles is not None
              else f"{model_config.num_styles} styles")
    return (f"{model_config.generator} generator, "
            f"{styles}, alpha {model_config.alpha}, content: "
            f"{inputs.source.description}; {strategy.num_replicas_in_sync} replica(s) "
            f"({type(strategy).__name__}, {devices.device_kind(strategy)}), "
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
            writer = summaries.file_writer(cfg.train_dir, devices.is_chief(self.strategy))
        except tf.errors.OpError as e:
            raise TrainError(f"cannot write TensorBoard events in {cfg.train_dir}: "
                             f"{checkpoints.write_error_reason(e)}") from None
        try:
            preview = _preview(inputs, self.experiment, cfg.image_summary_count,
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
                        if devices.agree(self.strategy, self.stop.signum is not None):
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
        if devices.agree(self.strategy, self.summary_trigger.due(self.step) or done):
            self._write_summaries(lambda: summaries.write_training_summaries(
                writer, self.step, terms, self.cfg.learning_rate, self.cfg.batch_size,
                self.steps_per_sec, int(self.trainer.skipped_images.numpy()),
                preview=preview))
            self.summary_trigger.reset(self.step)
        if devices.agree(self.strategy, self.save_trigger.due(self.step) or done):
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


def _preview(inputs, experiment, count, model):
    """The summaries.Preview of `count` content images (None when count is 0)."""
    if not count:
        return None
    info, label_offset = inputs.info, inputs.label_offset
    fn = pipeline.make_dataset_fn(inputs.source, experiment.data, count,
                                  info.num_styles if info is not None else 1,
                                  seed=experiment.train.seed, label_offset=label_offset)
    batch = next(iter(fn(None)))
    size = experiment.data.image_size
    if inputs.styles is not None:
        # The arbitrary model is called model(content, style images): the "labels".
        # At least InceptionV3's smallest input, and the smallest training style side.
        side = max(size, experiment.data.min_style_image_size
                   if experiment.data.random_style_image_size else 0)
        styles = style_pipeline.preview_styles(inputs.styles, side, count)
        if styles is None:
            return None
        return summaries.Preview(batch["image"][:styles.shape[0]], styles, styles, model)
    dataset_labels = batch["label"].numpy() - label_offset
    styles = tf.stack([tf.image.resize(info.images[i], [size, size]) for i in dataset_labels])
    return summaries.Preview(batch["image"], batch["label"], styles, model)
