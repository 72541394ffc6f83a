"""Style datasets: Magenta's TFRecord layout, its writer and its readers.

One `tf.train.Example` per style image, exactly as Magenta's
`image_stylization_create_dataset` writes them:

- `label`: int64, the image's position in the file list (its style index);
- `image_raw`: the image as JPEG bytes;
- `vgg_16/conv1` .. `vgg_16/conv5`, `vgg_16/pool1` .. `vgg_16/pool5`: float lists, the
  flattened [C, C] Gram matrix (normalised by h * w) of the image at that end point,
  computed from the input file's pixels / 255.0 (not from the JPEG re-encoding).
  Absent when the dataset was written without Gram matrices.

We add one feature, `style_name` (bytes, UTF-8: the file stem unless named
otherwise). Parsers with a fixed feature spec, as Magenta's is, ignore features
they do not ask for, so Magenta reads our files and we read Magenta's (whose
styles are then named by their label: "0", "1", ...).

Readers:
- `parse_example` / `make_dataset`: tf.data / tf.function friendly, one record at
  a time: (label, image in [0, 1], Grams).
- `read_style_dataset`: eager, the whole file at once; gives num_styles, the style
  names and per-style Gram tables [num_styles, C, C] ready for
  `losses.gather_style_grams`. This is what the trainer uses.
"""
import dataclasses
import io
import os

from google.protobuf import message
import numpy as np
from PIL import Image
import tensorflow as tf

from magenta_style import config
from magenta_style.media import fileio
from magenta_style.networks import losses
from magenta_style.networks import vgg

# Gram matrix channels per end point (VGG-16): the layout's fixed feature lengths.
GRAM_CHANNELS = {
    f"vgg_16/{kind}{block}": channels
    for block, channels in zip(range(1, 6), (64, 128, 256, 512, 512))
    for kind in ("conv", "pool")}
GRAM_END_POINTS = config.END_POINTS

LABEL_FEATURE = "label"
IMAGE_FEATURE = "image_raw"
NAME_FEATURE = "style_name"

# Below this many pixels on a side VGG's pool5 is empty and its Gram is undefined.
MIN_STYLE_SIDE = 32

JPEG_QUALITY = 95


class StyleDatasetError(ValueError):
    """A style image or style dataset cannot be read or written; the message names it."""


def load_style_image(path, style_size=None):
    """Reads an image file as RGB float32 in [0, 1].

    Grayscale and palette images become RGB; an alpha channel is dropped.

    Args:
      path: image file (any format Pillow reads).
      style_size: optional int > 0: resize (Lanczos) so the shorter side has this
        many pixels, keeping the aspect ratio.

    Returns:
      np.float32 [H, W, 3] in [0, 1] (pixels / 255.0).

    Raises:
      StyleDatasetError: the file is missing or not a readable image.
    """
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if style_size:
                width, height = image.size
                scale = style_size / min(width, height)
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                if size != image.size:
                    image = image.resize(size, Image.Resampling.LANCZOS)
            pixels = np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise StyleDatasetError(f"style image {path}: no such file") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        detail = " ".join(str(e).split()) or type(e).__name__
        raise StyleDatasetError(f"cannot read style image {path}: {detail}") from None
    return pixels.astype(np.float32) / 255.0


def encode_jpeg(image):
    """JPEG bytes of a float [H, W, 3] image in [0, 1]."""
    pixels = np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY,
                                              subsampling=0)  # 4:4:4: keep colour detail.
    return buffer.getvalue()


def compute_grams(vgg_model, image):
    """Gram matrices of one image at every end point.

    Args:
      vgg_model: a vgg.VGG16Features or VGG19Features (or any callable returning its end point dict).
      image: float32 [H, W, 3] in [0, 1], H and W >= MIN_STYLE_SIDE.

    Returns:
      dict {end point: np.float32 [C, C]} for every name in GRAM_END_POINTS.
    """
    features = vgg_model(tf.constant(np.asarray(image, np.float32)[None]))
    return {name: losses.gram_matrix(features[name])[0].numpy()
            for name in GRAM_END_POINTS}


def make_example(label, jpeg_bytes, name=None, grams=None):
    """Serialises one style as Magenta's tf.train.Example.

    Args:
      label: int, the style index.
      jpeg_bytes: bytes, the JPEG-encoded style image.
      name: optional str, recorded as `style_name`.
      grams: optional dict {end point: [C, C]} for every name in GRAM_END_POINTS.

    Returns:
      bytes: the serialised tf.train.Example.
    """
    feature = {
        LABEL_FEATURE: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        IMAGE_FEATURE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg_bytes])),
    }
    if name is not None:
        feature[NAME_FEATURE] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[name.encode("utf-8")]))
    if grams is not None:
        for end_point in GRAM_END_POINTS:
            values = np.asarray(grams[end_point], np.float32).reshape(-1)
            feature[end_point] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString()


def default_style_names(style_files):
    """File stems, made unique with a "_2", "_3", ... suffix on repeats."""
    names, seen = [], {}
    for path in style_files:
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def load_style_images(style_files, style_size=None):
    """Reads every style image (see load_style_image); fails on the first bad file.

    Returns:
      list of np.float32 [H, W, 3] in [0, 1].
    """
    return [load_style_image(path, style_size) for path in style_files]


def write_style_dataset(output_file, style_files, vgg_model=None, style_size=None,
                        names=None, progress=None, images=None):
    """Writes a style dataset in Magenta's layout, atomically.

    Every image is read (and checked) before anything is written; the records go to
    a temporary file in the output directory which replaces `output_file` only
    when complete.

    Args:
      output_file: path of the TFRecord file to write.
      style_files: list of image paths; label i is style_files[i].
      vgg_model: a vgg.VGG16Features to compute Gram matrices, or None to write
        labels, images and names only (Magenta's `--compute_gram_matrices=false`).
      style_size: optional int: resize each image's shorter side to this first.
      names: optional list of style names (default: file stems).
      progress: optional callable(done, total, path) called after each image.
      images: optional list of the already loaded images (load_style_images with the
        same style_size), e.g. to check every file before building the VGG.

    Returns:
      list of the style names written, by label.

    Raises:
      StyleDatasetError: no files, unreadable or too small image, or names of the
        wrong length.
    """
    style_files = list(style_files)
    if not style_files:
        raise StyleDatasetError("no style images given")
    names = default_style_names(style_files) if names is None else list(names)
    if len(names) != len(style_files):
        raise StyleDatasetError(
            f"{len(names)} style names given for {len(style_files)} style images")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:  # Styles are picked by name (--which_styles, --init=network:M:NAME).
        raise StyleDatasetError(f"style names must differ; repeated: {', '.join(repeated)}")
    if images is None:
        images = load_style_images(style_files, style_size)
    if len(images) != len(style_files):
        raise ValueError(f"{len(images)} images given for {len(style_files)} style files")
    if vgg_model is not None:
        for path, image in zip(style_files, images):
            if min(image.shape[:2]) < MIN_STYLE_SIDE:
                raise StyleDatasetError(
                    f"style image {path} is {image.shape[1]}x{image.shape[0]}: Gram matrices "
                    f"need at least {MIN_STYLE_SIDE} pixels per side")
    with fileio.atomic_output(output_file) as tmp:
        with tf.io.TFRecordWriter(tmp) as writer:
            for label, (path, image, name) in enumerate(zip(style_files, images, names)):
                grams = None if vgg_model is None else compute_grams(vgg_model, image)
                writer.write(make_example(label, encode_jpeg(image), name, grams))
                if progress is not None:
                    progress(label + 1, len(style_files), path)
    return names


def build_style_dataset(output_file, style_files, vgg_checkpoint, style_size=None,
                        names=None, compute_gram_matrices=True, progress=None):
    """Builds a style dataset from image files: what create_style_dataset and the
    trainer's --style_images (training/style_cache.py) both run.

    Every image is read and checked before the (slow) VGG is built; the file is then
    written atomically by write_style_dataset.

    Args:
      output_file: path of the TFRecord file to write.
      style_files: list of image paths; label i is style_files[i].
      vgg_checkpoint: VGG-16 weights for the Gram matrices (vgg.build_vgg's sources:
        TF-slim checkpoint, "imagenet", Keras .h5, "hed", "standin:SEED").
      style_size: optional int: resize each image's shorter side to this first.
      names: optional list of style names (default: file stems).
      compute_gram_matrices: False writes labels, images and names only.
      progress: optional callable(done, total, path) called after each image.

    Returns:
      list of the style names written, by label.

    Raises:
      StyleDatasetError: see write_style_dataset.
      vgg_weights.VGGWeightsError: the VGG source cannot be read.
      OSError, tf.errors.OpError: the output cannot be written.
    """
    images = load_style_images(style_files, style_size)
    vgg_model = vgg.build_vgg(vgg_checkpoint) if compute_gram_matrices else None
    return write_style_dataset(output_file, style_files, vgg_model=vgg_model,
                               style_size=style_size, names=names, progress=progress,
                               images=images)


def feature_spec(with_grams=True, with_name=False):
    """The tf.io.parse_single_example spec of the layout.

    Args:
      with_grams: include the ten Gram matrix features (fixed length C * C).
      with_name: include `style_name` (default "" when absent, e.g. Magenta's files).

    Returns:
      dict {feature name: tf.io.FixedLenFeature}.
    """
    spec = {
        LABEL_FEATURE: tf.io.FixedLenFeature([], tf.int64),
        IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string),
    }
    if with_name:
        spec[NAME_FEATURE] = tf.io.FixedLenFeature([], tf.string, default_value="")
    if with_grams:
        for name in GRAM_END_POINTS:
            spec[name] = tf.io.FixedLenFeature([GRAM_CHANNELS[name] ** 2], tf.float32)
    return spec


def parse_example(serialized, with_grams=True):
    """Parses one record; works eagerly and inside tf.function / tf.data.

    Args:
      serialized: string scalar tensor, one serialised tf.train.Example.
      with_grams: parse the Gram matrices (the record must hold them).

    Returns:
      (label int64 scalar, image float32 [H, W, 3] in [0, 1],
       grams dict {end point: float32 [C, C]}, empty when with_grams is False).
    """
    parsed = tf.io.parse_single_example(serialized, feature_spec(with_grams))
    image = tf.io.decode_jpeg(parsed[IMAGE_FEATURE], channels=3)
    image = tf.cast(image, tf.float32) / 255.0
    grams = {}
    if with_grams:
        for name in GRAM_END_POINTS:
            channels = GRAM_CHANNELS[name]
            grams[name] = tf.reshape(parsed[name], [channels, channels])
    return parsed[LABEL_FEATURE], image, grams


def make_dataset(path, with_grams=True):
    """tf.data.Dataset of (label, image, grams) records of a style dataset file.

    Args:
      path: TFRecord file in Magenta's style dataset layout.
      with_grams: as for parse_example.

    Returns:
      tf.data.Dataset yielding parse_example's tuples, in file order.
    """
    return tf.data.TFRecordDataset(path).map(
        lambda record: parse_example(record, with_grams))


@dataclasses.dataclass(frozen=True)
class StyleDatasetInfo:
    """A whole style dataset, read eagerly.

    Attributes:
      num_styles: int, number of styles (labels are 0 .. num_styles - 1).
      names: tuple of str by label (file stems; str(label) for Magenta's files).
      grams: dict {end point: np.float32 [num_styles, C, C]} by label, or None when
        the file has no Gram matrices.
      images: tuple of np.float32 [H, W, 3] in [0, 1] by label (decoded JPEGs), or
        None unless requested.
    """

    num_styles: int
    names: tuple
    grams: dict = None
    images: tuple = None


def read_style_dataset(path, with_images=False):
    """Reads a whole style dataset file (ours or Magenta's).

    Args:
      path: TFRecord file in Magenta's style dataset layout.
      with_images: also decode the style images.

    Returns:
      StyleDatasetInfo.

    Raises:
      StyleDatasetError: missing or unreadable file, no records, labels that are not
        0 .. N-1 exactly once each, or Gram matrices in some records only or of the
        wrong length.
    """
    if not tf.io.gfile.exists(path):
        raise StyleDatasetError(f"style dataset {path}: no such file")
    try:
        raws = [raw.numpy() for raw in tf.data.TFRecordDataset(path)]
        examples = [tf.train.Example.FromString(raw) for raw in raws]
    except (tf.errors.OpError, message.DecodeError) as e:
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise StyleDatasetError(f"cannot read style dataset {path}: {detail}") from None
    records = {}
    for example in examples:
        features = example.features.feature
        if LABEL_FEATURE not in features or IMAGE_FEATURE not in features:
            raise StyleDatasetError(
                f"style dataset {path}: a record lacks '{LABEL_FEATURE}' or "
                f"'{IMAGE_FEATURE}' (is it a style dataset?)")
        label = int(features[LABEL_FEATURE].int64_list.value[0])
        if label in records:
            raise StyleDatasetError(f"style dataset {path}: label {label} appears twice")
        records[label] = features
    if not records:
        raise StyleDatasetError(f"style dataset {path} holds no records")
    num_styles = len(records)
    if sorted(records) != list(range(num_styles)):
        raise StyleDatasetError(
            f"style dataset {path}: labels {sorted(records)} are not 0..{num_styles - 1}")
    ordered = [records[label] for label in range(num_styles)]
    names = tuple(
        f[NAME_FEATURE].bytes_list.value[0].decode("utf-8")
        if NAME_FEATURE in f and f[NAME_FEATURE].bytes_list.value else str(label)
        for label, f in enumerate(ordered))
    has_grams = [all(name in f for name in GRAM_END_POINTS) for f in ordered]
    grams = None
    if any(has_grams):
        if not all(has_grams):
            raise StyleDatasetError(
                f"style dataset {path}: only some records hold Gram matrices")
        grams = {}
        for name in GRAM_END_POINTS:
            channels = GRAM_CHANNELS[name]
            rows = [np.asarray(f[name].float_list.value, np.float32) for f in ordered]
            for label, row in enumerate(rows):
                if row.size != channels * channels:
                    raise StyleDatasetError(
                        f"style dataset {path}: {name} of label {label} has {row.size} "
                        f"values, expected {channels * channels}")
            grams[name] = np.stack(rows).reshape(num_styles, channels, channels)
    images = None
    if with_images:
        images = tuple(
            tf.io.decode_jpeg(f[IMAGE_FEATURE].bytes_list.value[0], channels=3).numpy()
            .astype(np.float32) / 255.0 for f in ordered)
    return StyleDatasetInfo(num_styles=num_styles, names=names, grams=grams, images=images)


def dataset_grams(vgg_net, info, names):
    """The style dataset's Grams, recomputed from its images for end points it lacks.

    A style dataset stores Grams of VGG-16's block end points; VGG-19 or per-convolution
    layers need them computed with `vgg_net` from the stored style images.

    Returns:
      dict {end point: float32 [num_styles, C, C]} with every name in `names`.
    """
    grams = dict(info.grams)
    missing = [name for name in names if name not in grams]
    if missing:
        if info.images is None:
            raise StyleDatasetError(f"the style dataset has no Grams for {', '.join(missing)} and "
                             "no images to compute them from")
        per_style = [vgg_net(tf.constant(np.asarray(image, np.float32)[None]))
                     for image in info.images]
        for name in missing:
            grams[name] = np.stack([losses.gram_matrix(f[name]).numpy()[0] for f in per_style])
    return grams


def style_names(path):
    """(num_styles, names tuple) of a style dataset file; see read_style_dataset."""
    info = read_style_dataset(path)
    return info.num_styles, info.names
