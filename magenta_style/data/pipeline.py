"""Content-image input pipelines for training (pure tf.data, no Python in the graph).

Sources (exactly one, see config.DataConfig):
- image files: a glob, a folder or a comma-separated list of JPEG/PNG/GIF/BMP files;
- TFRecord files of tf.train.Example with the image bytes under `image/encoded`
  (ImageNet, most converters) or `image_raw` (Magenta's layout): `--content_images`
  naming `*.tfrecord*` / `*.record*` files, or `--imagenet_data_dir` (its `train-*`);
- a tensorflow-datasets dataset with an `image` feature (optional dependency).
Paths go through tf.io.gfile, so `gs://` works.

Every example carries its GLOBAL INDEX g: the position in the run's stream of
examples, step s holding g = s * global_batch .. (s + 1) * global_batch - 1 whatever
the number of replicas. Everything random about example g is a stateless function of
(seed, g): which file (files are visited in a seeded permutation per epoch), which
style (uniform over the styles, one per example as in Magenta), the random crop and
flip, and the stability noise. So a run that resumes at step s rebuilds exactly the
stream an uninterrupted run would see from step s on, and 1 or N replicas see the same
global batches. (Record sources cannot seek: a resume starts a new seeded pass over
the records; labels, crops and noise still follow g.)

Images that cannot be read or decoded are dropped and counted: each example carries
`skipped`, the number of items dropped just before it in its pipeline, so the trainer
sums them into an exact total. The first few dropped files are named on stderr, once
each (not one warning per failure: a broken folder used to write gigabytes of them).
A source whose images keep failing stops the pipeline with an InvalidArgumentError
that `content_failure_message` turns into one line (it used to loop forever), and a
TFRecord source without a single record is refused up front.
"""
import importlib.util
import os
import re
import sys

from absl import logging
import tensorflow as tf

from magenta_style.media import limits

# Magenta resizes the shorter side to image_size + MAGENTA_RESIZE_MARGIN, then takes
# the central image_size x image_size crop (image_utils.imagenet_inputs).
MAGENTA_RESIZE_MARGIN = 2
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
RECORD_MARKERS = (".tfrecord", ".record", ".tfrec")
# Feature keys tried, in order, for the encoded image of a content TFRecord.
RECORD_IMAGE_KEYS = ("image/encoded", "image_raw")
RECORD_SHUFFLE_BUFFER = 1024
# Content images whose header claims more pixels are skipped without being decoded.
MAX_CONTENT_PIXELS = 100_000_000
# Epochs are unbounded in practice; the stream is cut by the step count.
_MAX_EPOCHS = 1 << 40
# Distinct salts so label, crop and noise draws of one example are independent.
_SALT_LABEL, _SALT_CROP, _SALT_FLIP, _SALT_NOISE, _SALT_ORDER = 11, 23, 37, 41, 53
_SALT_SHUFFLE = 67
# Consecutive undecodable items after which a pipeline gives up: the source is broken.
# Image files: 10 per file (up to MAX_CONSECUTIVE_FAILURES). A pipeline's 10 * N own
# items span 10 * P passes over the N files with P pipelines, so a single good file
# among bad ones is missed with probability about e^-10; and an all-bad folder stops
# soon (each failure may print a line of the image library's own).
MAX_CONSECUTIVE_FAILURES = 10000
_FAILURES_PER_FILE = 10
# Records and TFDS: the number of items is unknown.
MAX_CONSECUTIVE_RECORD_FAILURES = 1000
# Undecodable items named on stderr per pipeline (the rest are only counted).
MAX_NAMED_FAILURES = 5
# The marker of the give-up error, found again by `content_failure_message`.
# (style_pipeline.py's style images fail with the same marker.)
FAILURE_MARKER = "images in a row could not be decoded"


class DataError(ValueError):
    """No usable content images; the message names the input."""


class ContentSource:
    """A resolved content source.

    Attributes:
      kind: "files" (image files, seekable), "records" (TFRecord files) or "tfds".
      paths: tuple of str (files or TFRecord files); () for tfds.
      description: one line for logs.
      tfds: (name, split, data_dir) for kind "tfds".
    """

    def __init__(self, kind, paths=(), description="", tfds=None):
        self.kind = kind
        self.paths = tuple(paths)
        self.description = description
        self.tfds = tfds

    def __repr__(self):
        return f"ContentSource({self.kind}, {self.description})"


def _is_record(path):
    base = os.path.basename(path).lower()
    return any(marker in base for marker in RECORD_MARKERS)


def _is_image(path):
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def _expand(spec):
    """Files named by a glob, a folder or a comma-separated list of either."""
    found = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        part = os.path.expanduser(part)
        if tf.io.gfile.isdir(part):
            found.extend(tf.io.gfile.join(part, name) for name in tf.io.gfile.listdir(part)
                         if not tf.io.gfile.isdir(tf.io.gfile.join(part, name)))
        elif any(c in part for c in "*?["):
            found.extend(tf.io.gfile.glob(part))
        elif tf.io.gfile.exists(part):
            found.append(part)
        else:
            raise DataError(f"content images {part}: no such file or directory")
    return sorted(set(found))


def resolve_content_source(data_config):
    """Finds the training content images named by a DataConfig.

    Args:
      data_config: config.DataConfig with one content source set.

    Returns:
      ContentSource.

    Raises:
      DataError: no source given, nothing matches, a mix of images and TFRecords, or
        TFDS asked for but not installed.
    """
    if data_config.tfds_name:
        # Only an availability check: importing TFDS here would cost seconds and memory.
        if importlib.util.find_spec("tensorflow_datasets") is None:
            raise DataError(f"--tfds_name={data_config.tfds_name} needs tensorflow-datasets "
                            "(pip install tensorflow-datasets)")
        return ContentSource("tfds", (), f"TFDS {data_config.tfds_name} "
                             f"[{data_config.tfds_split}]",
                             tfds=(data_config.tfds_name, data_config.tfds_split,
                                   data_config.tfds_data_dir or None))
    if data_config.imagenet_data_dir:
        directory = data_config.imagenet_data_dir
        if not tf.io.gfile.isdir(directory):
            raise DataError(f"--imagenet_data_dir {directory}: no such directory")
        paths = sorted(tf.io.gfile.glob(tf.io.gfile.join(directory, "train-*")))
        if not paths:
            raise DataError(f"--imagenet_data_dir {directory}: no train-* TFRecord files")
        _check_records_not_empty(paths, directory)
        return ContentSource("records", paths, f"{len(paths)} ImageNet TFRecord files in "
                             f"{directory}")
    if not data_config.content_images:
        raise DataError("no content images: give --content_images, --imagenet_data_dir or "
                        "--tfds_name")
    spec = data_config.content_images
    paths = _expand(spec)
    records = [p for p in paths if _is_record(p)]
    images = [p for p in paths if _is_image(p)]
    if records and images:
        raise DataError(f"--content_images {spec} matches both image files and TFRecord "
                        "files; use one kind")
    if records:
        _check_records_not_empty(records, spec)
        return ContentSource("records", records, f"{len(records)} TFRecord files ({spec})")
    if not images:
        raise DataError(f"--content_images {spec}: no image files "
                        f"({', '.join(IMAGE_SUFFIXES)}) or TFRecord files found")
    return ContentSource("files", images, f"{len(images)} image files ({spec})")


def _check_records_not_empty(paths, spec):
    """Raises DataError unless some file of `paths` holds a readable first record.

    Without a record every epoch of the stream is empty, and the trainer would wait
    forever for its first batch. Only first records are read: cheap for any source.
    """
    for path in paths:
        try:
            for _ in tf.data.TFRecordDataset(path).take(1):
                return
        except tf.errors.OpError as e:
            raise DataError(f"content TFRecord {path}: unreadable "
                            f"({' '.join(e.message.split())[:200]})") from None
    raise DataError(f"content TFRecords {spec}: the {len(paths)} file(s) hold no records")


def content_failure_message(error):
    """The one-line message of a pipeline that gave up on its images, or None.

    Args:
      error: a tf.errors.OpError raised while iterating a `make_dataset_fn` dataset.

    Returns:
      str (names the source, the count and the last file that failed), or None when
      `error` is something else.
    """
    text = " ".join(str(getattr(error, "message", error)).split())
    match = re.search(r"assertion failed: \[([^\[\]]*" + FAILURE_MARKER
                      + r"[^\[\]]*)\](?: \[([^\[\]]*)\])?", text)
    if match is None:
        return None
    message = match.group(1)
    if match.group(2):
        message += f" (the last: {match.group(2)})"
    return message


def _seed(seed, salt, index):
    """A stateless-op seed [2] int64 from the run seed, a salt and an example index."""
    return tf.stack([tf.cast(seed, tf.int64) * 1000003 + salt, tf.cast(index, tf.int64)])


def decode_image(encoded):
    """Decodes JPEG/PNG/GIF/BMP bytes to uint8 [H, W, 3] (fails on bad data)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def magenta_resize(image, smallest_side):
    """Aspect-preserving bilinear resize so that the shorter side is `smallest_side`.

    Uses TF1's resize_bilinear (no half-pixel centers) as Magenta did.

    Args:
      image: uint8 or float [H, W, 3].
      smallest_side: int scalar.

    Returns:
      float32 [H', W', 3], same value range as the input.
    """
    shape = tf.shape(image)
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    scale = tf.cast(smallest_side, tf.float32) / tf.minimum(height, width)
    new_height = tf.cast(tf.math.rint(height * scale), tf.int32)
    new_width = tf.cast(tf.math.rint(width * scale), tf.int32)
    resized = tf.raw_ops.ResizeBilinear(
        images=tf.cast(image, tf.float32)[None], size=tf.stack([new_height, new_width]),
        align_corners=False, half_pixel_centers=False)
    return resized[0]


def preprocess(image, image_size, random_crop=False, random_flip=False, seed=0, index=0):
    """Magenta's training preprocessing of one content image.

    Args:
      image: uint8 [H, W, 3] (decoded), any size >= 1.
      image_size: int, side of the output.
      random_crop: take a random (not central) crop after the resize.
      random_flip: random horizontal flip.
      seed, index: the run seed and the example's global index (stateless randomness).

    Returns:
      float32 [image_size, image_size, 3] in [0, 1].
    """
    image = tf.cast(image, tf.float32) / 255.0
    image = magenta_resize(image, image_size + MAGENTA_RESIZE_MARGIN)
    if random_crop:
        image = tf.image.stateless_random_crop(image, [image_size, image_size, 3],
                                               seed=_seed(seed, _SALT_CROP, index))
    else:
        shape = tf.shape(image)
        top = (shape[0] - image_size) // 2
        left = (shape[1] - image_size) // 2
        image = image[top:top + image_size, left:left + image_size, :]
    if random_flip:
        image = tf.image.stateless_random_flip_left_right(image,
                                                          seed=_seed(seed, _SALT_FLIP, index))
    image = tf.clip_by_value(image, 0.0, 1.0)
    image.set_shape([image_size, image_size, 3])
    return image


def style_label(seed, index, num_styles, label_offset=0):
    """The style of example `index`: uniform over num_styles, plus label_offset (int32)."""
    label = tf.random.stateless_uniform([], seed=_seed(seed, _SALT_LABEL, index), minval=0,
                                        maxval=num_styles, dtype=tf.int32)
    return label + label_offset


def stability_noise(seed, index, image_size, stddev):
    """Gaussian input noise of example `index`: float32 [S, S, 3] with this stddev."""
    return stddev * tf.random.stateless_normal([image_size, image_size, 3],
                                               seed=_seed(seed, _SALT_NOISE, index))


def _file_index_stream(num_files, seed, start_index):
    """(global index, file index) from start_index on; a seeded permutation per epoch."""
    first_epoch = start_index // num_files
    offset = start_index % num_files

    def permutation(epoch):
        keys = tf.random.stateless_uniform([num_files], seed=_seed(seed, _SALT_ORDER, epoch))
        return tf.data.Dataset.from_tensor_slices(tf.argsort(keys))

    files = tf.data.Dataset.range(first_epoch, _MAX_EPOCHS).flat_map(permutation).skip(offset)
    return tf.data.Dataset.zip(tf.data.Dataset.range(start_index, _MAX_EPOCHS), files)


def _record_bytes(serialized):
    spec = {key: tf.io.FixedLenFeature([], tf.string, default_value="")
            for key in RECORD_IMAGE_KEYS}
    parsed = tf.io.parse_single_example(serialized, spec)
    encoded = parsed[RECORD_IMAGE_KEYS[0]]
    for key in RECORD_IMAGE_KEYS[1:]:
        encoded = tf.where(tf.strings.length(encoded) > 0, encoded, parsed[key])
    return encoded


def _record_stream(paths, seed, start_index, pipeline_id, num_pipelines):
    """Encoded images from TFRecord files: per epoch a seeded file order, then a seeded
    shuffle buffer. A resume (start_index > 0) starts a fresh pass seeded by start_index."""
    num_files = len(paths)
    paths = tf.constant(list(paths))
    shard_files = num_files >= num_pipelines > 1

    def epoch_records(epoch):
        order = tf.argsort(tf.random.stateless_uniform(
            [num_files], seed=_seed(seed, _SALT_ORDER + start_index, epoch)))
        files = tf.data.Dataset.from_tensor_slices(tf.gather(paths, order))
        if shard_files:
            files = files.shard(num_pipelines, pipeline_id)
        records = files.interleave(tf.data.TFRecordDataset, cycle_length=min(8, num_files),
                                   num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        # A stateless shuffle of blocks of RECORD_SHUFFLE_BUFFER records. Not
        # Dataset.shuffle: its seed goes through random_seed.get_seed, which compares it
        # with 0 in Python, and a tensor seed (the epoch) fails there once a global seed
        # of 0 is set, as training does.
        epoch_seed = tf.random.experimental.stateless_fold_in(
            _seed(seed, _SALT_SHUFFLE, start_index), epoch)

        def shuffle_block(block_index, block):
            block_seed = tf.random.experimental.stateless_fold_in(epoch_seed, block_index)
            return tf.random.experimental.stateless_shuffle(block, block_seed)

        return records.batch(RECORD_SHUFFLE_BUFFER).enumerate().map(shuffle_block).unbatch()

    records = tf.data.Dataset.range(_MAX_EPOCHS).flat_map(epoch_records)
    return records.map(_record_bytes, num_parallel_calls=tf.data.AUTOTUNE), shard_files


def _tfds_stream(source, seed, input_context):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    name, split, data_dir = source.tfds
    read_config = tfds.ReadConfig(shuffle_seed=seed, input_context=input_context)
    ds = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=True,
                   read_config=read_config, decoders={"image": tfds.decode.SkipDecoding()})
    return ds.repeat().shuffle(RECORD_SHUFFLE_BUFFER, seed=seed).map(lambda x: x["image"])


def make_dataset_fn(source, data_config, global_batch_size, num_styles, seed=0,
                    start_index=0, label_offset=0, stability_stddev=0.0, styles=None):
    """Returns `dataset_fn(input_context)` for strategy.distribute_datasets_from_function.

    Each input pipeline yields per-replica batches (static shapes, drop_remainder) of
    dicts:
      image: float32 [b, S, S, 3] in [0, 1] (S = data_config.image_size);
      label: int32 [b], style of each example (label_offset .. + num_styles - 1);
      index: int64 [b], global example index;
      skipped: int64 [b], undecodable items dropped just before each example;
      noise: float32 [b, S, S, 3], only when stability_stddev > 0;
      style: float32 [b, s, s, 3] in [0, 1], only with `styles`: each example's style
        image (the arbitrary generator's), s the same within a global batch.
    Pipeline i of n gets, for every step, the i-th of n equal slices of the global batch,
    which the strategy hands to its local replicas in order.

    Args:
      source: ContentSource from resolve_content_source.
      data_config: config.DataConfig.
      global_batch_size: int, divisible by the number of replicas.
      num_styles: number of styles to draw labels from.
      seed: int run seed.
      start_index: global index of the first example (step * global_batch_size).
      label_offset: added to every label (add_styles: the base model's style count).
      stability_stddev: > 0 adds per-example Gaussian `noise`.
      styles: None, or a style_pipeline.StyleImages: adds `style` (and its undecodable
        style images to `skipped`).

    Returns:
      callable(tf.distribute.InputContext or None) -> tf.data.Dataset.
    """
    image_size = data_config.image_size

    def dataset_fn(input_context=None):
        num_pipelines = input_context.num_input_pipelines if input_context else 1
        pipeline_id = input_context.input_pipeline_id if input_context else 0
        per_replica = (input_context.get_per_replica_batch_size(global_batch_size)
                       if input_context else global_batch_size)
        if global_batch_size % num_pipelines:
            raise DataError(f"batch size {global_batch_size} does not split over "
                            f"{num_pipelines} input pipelines")
        chunk = global_batch_size // num_pipelines
        if source.kind == "files":
            stream = _file_index_stream(len(source.paths), seed, start_index)
            # Keep this pipeline's slice of every global batch.
            stream = stream.batch(chunk).shard(num_pipelines, pipeline_id).unbatch()
            paths = tf.constant(list(source.paths))
            # The file is read in `load`, where a read error counts as a skipped file.
            stream = stream.map(lambda g, f: (g, tf.gather(paths, f), tf.gather(paths, f)))
            limit = min(MAX_CONSECUTIVE_FAILURES, _FAILURES_PER_FILE * len(source.paths))
        else:
            if source.kind == "records":
                encoded, sharded = _record_stream(source.paths, seed, start_index,
                                                  pipeline_id, num_pipelines)
            else:
                encoded, sharded = _tfds_stream(source, seed, input_context), True
            if not sharded and num_pipelines > 1:
                encoded = encoded.shard(num_pipelines, pipeline_id)
            positions = tf.data.Dataset.range(_MAX_EPOCHS)
            # Global index of this pipeline's p-th item: slice pipeline_id of step p // chunk.
            stream = tf.data.Dataset.zip(positions, encoded).map(
                lambda p, e: (start_index + (p // chunk) * global_batch_size
                              + pipeline_id * chunk + p % chunk, e,
                              tf.strings.format("record #{} of the content TFRecords", p)))
            limit = MAX_CONSECUTIVE_RECORD_FAILURES
        is_files = source.kind == "files"
        name_of = (lambda payload: payload) if is_files else (lambda payload: "a record")
        blank = tf.zeros([image_size, image_size, 3], tf.float32)

        def load(index, payload):
            encoded = tf.io.read_file(payload) if is_files else payload
            # A 69-byte header may claim 20000 x 20000: refused (skipped) before decoding.
            # Every frame of an animated GIF counts (encoded_image_cost).
            pixels = limits.encoded_image_cost(encoded)[2]
            with tf.control_dependencies([tf.debugging.Assert(
                    pixels <= MAX_CONTENT_PIXELS, [name_of(payload)])]):
                encoded = tf.identity(encoded)
            return preprocess(decode_image(encoded), image_size, data_config.random_crop,
                              data_config.random_flip, seed, index)

        def attempt(index, payload, name):
            """One item as a 1-element dataset: (True, image) or, if it fails, (False, 0s).

            ignore_errors on the whole stream would drop failures unseen, so nothing
            downstream could notice a source that never yields an image."""
            loaded = tf.data.Dataset.from_tensors((index, payload)).map(
                lambda i, p: (True, i, load(i, p), name)).ignore_errors()
            failed = tf.data.Dataset.from_tensors((False, index, blank, name))
            return loaded.concatenate(failed).take(1)

        # Deterministic: each inner dataset has one element, so the order is kept while
        # items are read and decoded in parallel.
        examples = stream.interleave(attempt, num_parallel_calls=tf.data.AUTOTUNE,
                                     deterministic=True)
        description = source.description

        def count_failures(state, element):
            failures, named = state
            ok, index, image, name = element
            fresh = (index - start_index < len(source.paths)) if is_files else True
            name_it = tf.logical_and(tf.logical_not(ok), tf.logical_and(
                named < MAX_NAMED_FAILURES, fresh))

            def report():
                with tf.control_dependencies([tf.print(
                        "magenta_style.data.pipeline: skipping undecodable content image", name,
                        output_stream=sys.stderr)]):
                    return named + 1

            named = tf.cond(name_it, report, lambda: named)
            gap = tf.where(ok, failures, failures + 1)
            with tf.control_dependencies([tf.debugging.Assert(
                    gap < limit, [f"{description}: {limit} content {FAILURE_MARKER}; check the "
                                  "content source", name])]):
                gap = tf.identity(gap)
            return (tf.where(ok, tf.constant(0, tf.int64), gap), named), (ok, index, image, gap)

        examples = examples.scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)),
                                 count_failures)
        examples = examples.filter(lambda ok, index, image, gap: ok)

        def to_example(ok, index, image, skipped, *style):
            del ok
            example = {"image": image,
                       "label": style_label(seed, index, num_styles, label_offset),
                       "index": index, "skipped": skipped}
            if stability_stddev > 0:
                example["noise"] = stability_noise(seed, index, image_size, stability_stddev)
            if style:
                example["style"] = style[0]
                example["skipped"] = skipped + style[1]
            return example

        if styles is not None:
            examples = styles.attach(examples, pipeline_id, num_pipelines, chunk)
        examples = examples.map(to_example, num_parallel_calls=tf.data.AUTOTUNE,
                                deterministic=True)
        batches = examples.batch(per_replica, drop_remainder=True)
        if styles is not None:
            batches = batches.map(styles.resize_batch)
        return batches.prefetch(tf.data.AUTOTUNE)

    return dataset_fn


def load_eval_images(spec, image_size, limit=None):
    """Evaluation images: Magenta's resize + central crop, eagerly.

    Args:
      spec: glob, folder or comma-separated list of image files.
      image_size: int >= 1.
      limit: optional maximum number of images (sorted order).

    Returns:
      (float32 [N, S, S, 3] in [0, 1] as a tf.Tensor, list of the N paths).

    Raises:
      DataError: nothing matches or no image decodes.
    """
    paths = [p for p in _expand(spec) if _is_image(p)]
    if limit:
        paths = paths[:limit]
    images, used = [], []
    for path in paths:
        try:
            encoded = tf.io.read_file(path)
            height, width, pixels = limits.encoded_image_cost(encoded).numpy()
            if pixels > MAX_CONTENT_PIXELS:
                logging.warning("%s: skipped, %dx%d (%d pixels in all frames) is above %d "
                                "pixels", path, width, height, pixels, MAX_CONTENT_PIXELS)
                continue
            image = decode_image(encoded)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
            continue
        images.append(preprocess(image, image_size))
        used.append(path)
    if not images:
        raise DataError(f"{spec}: no decodable image files")
    return tf.stack(images), used
