"""Style images for training the arbitrary-style model: sources and Magenta's augmentation.

The arbitrary generator trains on (content, style image) pairs: every example of the
content pipeline (pipeline.make_dataset_fn) gets a random style image, augmented as
Magenta's `image_utils.arbitrary_style_image_inputs` does with its training defaults
(augment_style_images and random_style_image_size on):

    decode (uint8) -> random brightness (delta up to 0.8), saturation (0.5 .. 1.5) and
    hue (delta up to 0.2), each back to uint8 as TF's image ops do on uint8 images ->
    random left-right and up-down flips -> aspect-preserving resize of the shorter side
    to a random size in [S + 2, S + 200) -> random S x S crop -> / 255
    then each global batch resized to one random side in [min, max) (Magenta: 128, 300)

(S = image_size.) Without augmentation the image is resized to S + 2 and its central
S x S crop taken (Magenta's center_crop). Sources (`resolve_style_source`):
- `--style_images`: files, folders, globs (stylize's form). Example g's image is a
  stateless draw from (seed, g), so a resumed run and 1 or N replicas see the same
  styles; an undecodable file is redrawn, counted with the skipped images and, after
  MAX_TRIES failures for one example, the run stops with one line.
- `--style_dataset_file`: a TFRecord with `image_raw` (Magenta's style dataset layout;
  labels and Grams are not needed), read as content records are: a seeded shuffle, a
  fresh seeded pass on resume; undecodable records are dropped.
Every random draw is stateless in (seed, example index), as in pipeline.py.
"""
import dataclasses

import tensorflow as tf

from magenta_style.data import pipeline
from magenta_style.media import images
from magenta_style.media import limits

# Draws per example before a style source counts as broken.
MAX_TRIES = 10
# Magenta's augmentation (image_utils.arbitrary_style_image_inputs).
BRIGHTNESS_DELTA = 0.8
SATURATION_RANGE = (0.5, 1.5)
HUE_DELTA = 0.2
LARGER_SIZE_MARGINS = (2, 200)
# Salts of the style draws (pipeline.py's are below 100).
_SALT_PICK, _SALT_AUGMENT, _SALT_SIZE, _SALT_RECORDS = 101, 103, 107, 109
STYLE_IMAGE_KEY = "image_raw"


@dataclasses.dataclass(frozen=True)
class StyleSource:
    """Resolved style images: kind "files" (paths) or "records" (TFRecord paths)."""

    kind: str
    paths: tuple
    description: str


def resolve_style_source(data_config):
    """The style images of a DataConfig (style_images or style_dataset_file).

    Raises:
      pipeline.DataError: nothing matches, a folder without images, a missing file, or
        a TFRecord whose first record has no `image_raw` or does not decode (one line).
    """
    if data_config.style_images:
        try:
            paths = images.expand_inputs(data_config.style_images)
        except images.ImageError as e:
            raise pipeline.DataError(f"--style_images: {e}") from None
        return StyleSource("files", tuple(paths),
                           f"{len(paths)} style image files ({data_config.style_images})")
    path = data_config.style_dataset_file
    if not tf.io.gfile.exists(path):
        raise pipeline.DataError(f"--style_dataset_file={path}: no such file")
    try:
        first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except tf.errors.OpError as e:
        raise pipeline.DataError(f"--style_dataset_file={path}: not a readable TFRecord "
                                 f"({' '.join(e.message.split())[:160]})") from None
    if first is None:
        raise pipeline.DataError(f"--style_dataset_file={path}: the file holds no records")
    example = tf.train.Example()
    try:
        example.ParseFromString(first.numpy())
    except Exception:  # pylint: disable=broad-except  (protobuf's DecodeError)
        raise pipeline.DataError(f"--style_dataset_file={path}: its records are not "
                                 "tf.train.Example") from None
    feature = example.features.feature.get(STYLE_IMAGE_KEY)
    if feature is None or not feature.bytes_list.value:
        raise pipeline.DataError(
            f"--style_dataset_file={path}: its records have no {STYLE_IMAGE_KEY} feature "
            "(the encoded style image of Magenta's style dataset layout)")
    try:
        pipeline.decode_image(feature.bytes_list.value[0])
    except tf.errors.OpError:
        raise pipeline.DataError(f"--style_dataset_file={path}: the {STYLE_IMAGE_KEY} of "
                                 "its first record is not a decodable image") from None
    return StyleSource("records", (path,), f"style TFRecord {path}")


def _seed(seed, salt, index, extra=0):
    return tf.stack([tf.cast(seed, tf.int64) * 1000003 + salt,
                     tf.cast(index, tf.int64) * 1009 + tf.cast(extra, tf.int64)])


def augment(image, image_size, augment_images, seed, index):
    """One style image as Magenta's trainer prepares it (see the module docstring).

    Args:
      image: uint8 [H, W, 3].
      image_size: int S.
      augment_images: bool; False takes the central crop of the S + 2 resize.
      seed, index: the run seed and the example's index (stateless draws).

    Returns:
      float32 [S, S, 3] in [0, 1].
    """
    if augment_images:
        draw = lambda salt: _seed(seed, _SALT_AUGMENT + salt, index)  # noqa: E731
        image = tf.image.stateless_random_brightness(image, BRIGHTNESS_DELTA, draw(0))
        image = tf.image.stateless_random_saturation(image, *SATURATION_RANGE, draw(1))
        image = tf.image.stateless_random_hue(image, HUE_DELTA, draw(2))
        image = tf.image.stateless_random_flip_left_right(image, draw(3))
        image = tf.image.stateless_random_flip_up_down(image, draw(4))
        larger = tf.random.stateless_uniform(
            [], draw(5), minval=image_size + LARGER_SIZE_MARGINS[0],
            maxval=image_size + LARGER_SIZE_MARGINS[1], dtype=tf.int32)
        image = pipeline.magenta_resize(image, larger)
        image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], draw(6))
    else:
        image = pipeline.magenta_resize(image, image_size + pipeline.MAGENTA_RESIZE_MARGIN)
        shape = tf.shape(image)
        top, left = (shape[0] - image_size) // 2, (shape[1] - image_size) // 2
        image = image[top:top + image_size, left:left + image_size]
    image = tf.clip_by_value(image / 255.0, 0.0, 1.0)
    image.set_shape([image_size, image_size, 3])
    return image


class StyleImages:
    """The style half of the arbitrary generator's input pipeline.

    Passed as `styles` to pipeline.make_dataset_fn, which calls `attach` on its
    examples and `resize_batch` on its per-replica batches.

    Args:
      source: StyleSource.
      data_config: config.DataConfig (image_size and the style augmentation fields).
      global_batch_size: int.
      seed: the run seed.
      start_index: global index of the first example (a resumed run's).
    """

    def __init__(self, source, data_config, global_batch_size, seed=0, start_index=0):
        self.source, self.cfg = source, data_config
        self.global_batch_size = int(global_batch_size)
        self.seed, self.start_index = int(seed), int(start_index)

    def _prepare(self, encoded, index):
        # A header that claims too many pixels is refused before decoding (as content).
        pixels = limits.encoded_image_cost(encoded)[2]
        with tf.control_dependencies([tf.debugging.Assert(
                pixels <= pipeline.MAX_CONTENT_PIXELS, ["style image too large"])]):
            encoded = tf.identity(encoded)
        return augment(pipeline.decode_image(encoded), self.cfg.image_size,
                       self.cfg.augment_style_images, self.seed, index)

    def _from_files(self, index):
        """A 1-element dataset (style image, undecodable draws before it) for example
        `index`: up to MAX_TRIES stateless draws over the files."""
        paths = tf.constant(list(self.source.paths))
        count = len(self.source.paths)

        def load(attempt):
            pick = tf.random.stateless_uniform([], _seed(self.seed, _SALT_PICK, index, attempt),
                                               maxval=count, dtype=tf.int32)
            return self._prepare(tf.io.read_file(tf.gather(paths, pick)), index), attempt

        size = self.cfg.image_size
        loaded = tf.data.Dataset.range(MAX_TRIES).map(load).ignore_errors()
        failed = tf.data.Dataset.from_tensors(
            (tf.zeros([size, size, 3]), tf.constant(MAX_TRIES, tf.int64)))

        def check(image, attempts):
            message = (f"{self.source.description}: {MAX_TRIES} style {pipeline.FAILURE_MARKER}"
                       "; check the style images")
            with tf.control_dependencies([tf.debugging.Assert(attempts < MAX_TRIES,
                                                              [message])]):
                return tf.identity(image), attempts

        return loaded.concatenate(failed).take(1).map(check)

    def _from_records(self, pipeline_id, num_pipelines):
        spec = {STYLE_IMAGE_KEY: tf.io.FixedLenFeature([], tf.string, default_value="")}
        paths = tf.constant(list(self.source.paths))

        # Per epoch, blocks of records shuffled by a stateless seed of (seed, start, epoch):
        # as pipeline.py's content records (Dataset.shuffle cannot take a tensor seed).
        def shuffled(epoch):
            epoch_seed = _seed(self.seed, _SALT_RECORDS, self.start_index, epoch)
            records = tf.data.TFRecordDataset(paths).batch(pipeline.RECORD_SHUFFLE_BUFFER)
            return records.map(lambda block: tf.random.experimental.stateless_shuffle(
                block, epoch_seed)).unbatch()

        records = tf.data.Dataset.range(1 << 40).flat_map(shuffled)
        if num_pipelines > 1:
            records = records.shard(num_pipelines, pipeline_id)
        positions = tf.data.Dataset.range(self.start_index, 1 << 40)

        def load(position, serialized):
            encoded = tf.io.parse_single_example(serialized, spec)[STYLE_IMAGE_KEY]
            return self._prepare(encoded, position), tf.constant(0, tf.int64)

        return tf.data.Dataset.zip(positions, records).map(load).ignore_errors()

    def attach(self, examples, pipeline_id, num_pipelines, chunk):
        """(ok, index, image, skipped) examples -> (ok, index, image, skipped, style,
        style draws that failed)."""
        del chunk
        if self.source.kind == "files":
            return examples.interleave(
                lambda ok, index, image, gap: self._from_files(index).map(
                    lambda style, failed: (ok, index, image, gap, style, failed)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        styles = self._from_records(pipeline_id, num_pipelines)
        return tf.data.Dataset.zip(examples, styles).map(
            lambda example, style: (*example, *style))

    def resize_batch(self, batch):
        """Magenta's random_style_image_size: the batch's style images resized to one
        random side in [min, max), drawn from the global step (same on every replica)."""
        if not self.cfg.random_style_image_size:
            return batch
        step = batch["index"][0] // self.global_batch_size
        side = tf.random.stateless_uniform(
            [], _seed(self.seed, _SALT_SIZE, step), minval=self.cfg.min_style_image_size,
            maxval=self.cfg.max_style_image_size, dtype=tf.int32)
        style = tf.raw_ops.ResizeBilinear(images=batch["style"], size=tf.stack([side, side]),
                                          align_corners=False, half_pixel_centers=False)
        return {**batch, "style": style}


def preview_styles(source, image_size, count):
    """The first `count` decodable style images, un-augmented (Magenta's summaries'
    `image_orig`: S + 2 resize, central crop): float32 [n, S, S, 3], n <= count."""
    found = []
    if source.kind == "files":
        encoded = (tf.io.read_file(p) for p in source.paths)
    else:
        spec = {STYLE_IMAGE_KEY: tf.io.FixedLenFeature([], tf.string, default_value="")}
        encoded = (tf.io.parse_single_example(r, spec)[STYLE_IMAGE_KEY]
                   for r in tf.data.TFRecordDataset(list(source.paths)).take(4 * count))
    for data in encoded:
        if len(found) == count:
            break
        try:
            found.append(augment(pipeline.decode_image(data), image_size, False, 0, 0))
        except tf.errors.OpError:
            continue
    return tf.stack(found) if found else None
