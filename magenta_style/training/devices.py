"""Devices and tf.distribute strategies of a training run.

- `split_cpu`: one CPU as N logical devices (--num_cpu_devices), to try distribution
  on one CPU; must run before TensorFlow initialises its devices.
- `make_strategy`: the strategy --strategy names ("auto", one_device, mirrored,
  multi_worker, tpu); `mirrored_strategy` over named devices.
- `device_kind`, `mixed_precision_policy`: what the replicas compute on, and the
  Keras dtype policy --mixed_precision means there (float16 on GPUs, else bfloat16).
- `is_chief`, `agree`: which worker writes, and a flag every worker agrees on.
"""
import json
import os

import tensorflow as tf


class DeviceError(RuntimeError):
    """The devices or strategy cannot be set up; the message is one line for the user."""


def split_cpu(num_devices):
    """Splits the first physical CPU into `num_devices` logical devices.

    Must run before TensorFlow initialises its devices (before any op).

    Raises:
      DeviceError: devices were already initialised with another layout.
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
        raise DeviceError(f"--num_cpu_devices={num_devices}: TensorFlow devices are already "
                          f"initialised ({e})") from None


def make_strategy(train_config):
    """Returns the tf.distribute.Strategy named by train_config.strategy.

    "auto": multi_worker when TF_CONFIG names several workers, else mirrored over all
    GPUs (or all logical CPUs when the CPU was split), else one_device.

    Raises:
      DeviceError: TPU not reachable, or no devices for the strategy.
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
            raise DeviceError(f"--strategy=tpu: cannot reach TPU {train_config.tpu or 'local'!r}: "
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


def is_chief(strategy):
    """True unless this is a multi-worker run's non-chief worker (which saves nothing)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0)


def agree(strategy, flag):
    """True on every worker when any worker says so (time-based triggers differ per
    worker, and checkpoints need every worker)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return flag
    value = strategy.run(lambda: tf.constant(1 if flag else 0, tf.int32))
    return bool(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) > 0)
