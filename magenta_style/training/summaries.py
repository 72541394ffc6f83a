"""TensorBoard summaries of training and evaluation, written without importing tensorboard.

TensorBoard is an optional extra, so the summaries are written as raw `tf.summary.write`
tensors with the plugin metadata TensorBoard's scalar and image dashboards expect.

- `file_writer`: a train_dir's event writer (a no-op writer on non-chief workers).
- `write_scalar`, `write_images`: one scalar / one image batch to the default writer.
- `Preview`: the fixed batch of image summaries and its stylization.
- `write_training_summaries`: what the trainer writes after a loop call: the loss
  terms, learning rate, throughput, skipped images and the Preview.
"""
import math

from absl import logging
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def file_writer(directory, is_chief=True):
    """A tf.summary writer for `directory`; a no-op writer when not `is_chief`."""
    return tf.summary.create_file_writer(directory) if is_chief else tf.summary.create_noop_writer()


def write_scalar(name, value, step):
    """Writes a TensorBoard scalar to the default writer (no tensorboard import needed)."""
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
        data_class=summary_pb2.DATA_CLASS_SCALAR)
    tf.summary.write(name, tf.constant(value, tf.float32), step=step, metadata=metadata)


def encode_images(images):
    """The image plugin's tensor of a batch: string [2 + N], width, height, N PNGs.

    images: float [N, H, W, 3] in [0, 1] (clipped, rounded to uint8).
    """
    images = tf.convert_to_tensor(images, tf.float32)
    pngs = tf.map_fn(lambda x: tf.io.encode_png(tf.image.convert_image_dtype(
        tf.clip_by_value(x, 0.0, 1.0), tf.uint8, saturate=True)),
        images, fn_output_signature=tf.string)
    shape = tf.shape(images)
    return tf.concat([tf.strings.as_string([shape[2], shape[1]]), pngs], axis=0)


def _write_encoded(name, tensor, step):
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="images"),
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE)
    tf.summary.write(name, tensor, step=step, metadata=metadata)


def write_images(name, images, step):
    """Writes TensorBoard images (float [N, H, W, 3] in [0, 1]) to the default writer."""
    _write_encoded(name, encode_images(images), step)


class Preview:
    """A fixed batch written with its stylization at every training summary.

    content float32 [n, S, S, 3] in [0, 1], labels int32 [n] (model style ids), styles
    float32 [n, S, S, 3] in [0, 1], model the generator being trained. The content and
    style pictures never change, so they are PNG-encoded once; the stylization runs
    traced (on the 2-core CPU, 3 images of 256 px: 210 ms traced against 360 ms eager,
    and the whole summary 0.43 -> 0.25 s; one every 15 s by default).
    """

    def __init__(self, content, labels, styles, model):
        self.content, self.labels = content, labels
        self._fixed = {"image/0_content": encode_images(content),
                       "image/1_style": encode_images(styles)}
        self._stylize = tf.function(lambda images, labels: model(images, labels),
                                    autograph=False)  # Nothing to convert; saves a second.

    def write(self, step):
        """Writes the three image summaries to the default writer (or warns, if the
        model cannot run here, e.g. TPU variables on the host)."""
        try:
            stylized = self._stylize(self.content, self.labels)
        except (ValueError, tf.errors.OpError) as e:
            logging.warning("image summaries skipped: %s", str(e).splitlines()[0])
            return
        for name, tensor in self._fixed.items():
            _write_encoded(name, tensor, step)
        write_images("image/2_stylized", stylized, step)


def write_training_summaries(writer, step, terms, learning_rate, batch_size, steps_per_sec,
                             skipped_images, preview=None):
    """Writes one training step's summaries with `writer`, then flushes it.

    Args:
      writer: a tf.summary writer (file_writer).
      step: int, the step reached.
      terms: {Magenta loss name: float}, the last step's batch means.
      learning_rate: float.
      batch_size: int, the global batch size (images per step).
      steps_per_sec: float, NaN while unknown (then no throughput is written).
      skipped_images: int, undecodable content images skipped so far.
      preview: None, or a Preview to write.
    """
    with writer.as_default(step=step):
        for name, value in terms.items():
            write_scalar(name, value, step)
        write_scalar("learning_rate", float(learning_rate), step)
        if math.isfinite(steps_per_sec):
            write_scalar("throughput/steps_per_sec", steps_per_sec, step)
            write_scalar("throughput/images_per_sec", steps_per_sec * batch_size, step)
        write_scalar("skipped_images", float(skipped_images), step)
        if preview is not None:
            preview.write(step)
    writer.flush()
